"""Builders shared by the tests: keys and tokens, NIPs, an organisation made through the API."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit.models import AuditEvent

ISSUER = "https://sso.anambaskab.go.id/realms/asn"
AUDIENCE = "izin-siaran"
ADMIN_NIP = "198904042014021003"

_sequence = itertools.count(1)


def make_nip(*, employment: str = "pns", sex: int = 1) -> str:
    """A fresh, valid NIP (PNS) or NI PPPK, different on every call."""
    n = next(_sequence)
    day = 1 + (n // 999) % 28
    seq = 1 + n % 999
    if employment == "pppk":
        return f"199001{day:02d}2023{1 + n % 99:02d}{sex}{seq:03d}"
    return f"198505{day:02d}201003{sex}{seq:03d}"


def make_code(prefix: str = "U") -> str:
    return f"{prefix}{next(_sequence):05d}"


@dataclass
class KeyRing:
    """Signing keys of a made-up identity provider, and its JWKS file."""

    folder: Path
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    ed: ed25519.Ed25519PrivateKey
    kids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def generate(cls, folder: Path) -> KeyRing:
        ring = cls(
            folder=folder,
            rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ec=ec.generate_private_key(ec.SECP256R1()),
            ed=ed25519.Ed25519PrivateKey.generate(),
            kids={"RS256": "rsa-1", "ES256": "ec-1", "EdDSA": "ed-1"},
        )
        ring.write_jwks()
        return ring

    @property
    def jwks_path(self) -> Path:
        return self.folder / "jwks.json"

    @property
    def jwks_url(self) -> str:
        return self.jwks_path.as_uri()

    def private_key(self, alg: str) -> Any:
        return {"RS256": self.rsa, "ES256": self.ec, "EdDSA": self.ed}[alg]

    def public_jwks(self, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        keys = []
        for alg, algorithm in (
            ("RS256", RSAAlgorithm),
            ("ES256", ECAlgorithm),
            ("EdDSA", OKPAlgorithm),
        ):
            jwk = json.loads(algorithm.to_jwk(self.private_key(alg).public_key()))  # type: ignore[attr-defined]
            jwk.update({"kid": self.kids[alg], "alg": alg, "use": "sig"})
            keys.append(jwk)
        return {"keys": keys + (extra or [])}

    def write_jwks(self, extra: list[dict[str, Any]] | None = None) -> None:
        self.jwks_path.write_text(json.dumps(self.public_jwks(extra)))


class Tokens:
    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def claims(self, nip: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": nip,
            "iat": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(
        self, nip: str, *, alg: str = "RS256", headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        header = {"kid": self.keyring.kids[alg], **(headers or {})}
        return jwt.encode(
            self.claims(nip, **claims), self.keyring.private_key(alg), algorithm=alg, headers=header
        )

    def auth(self, nip: str, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(nip, **kwargs)}"}


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    for member in ("type", "title", "status", "detail", "code"):
        assert member in body, body
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    assert "Traceback" not in response.text
    return body


async def assert_chain_verifies(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """The chain verifies through the service and, independently, by recomputing every hash
    from the served events with nothing but hashlib and an RFC 8785 library."""
    served = (await http.get("/api/v1/audit/verify", headers=headers)).json()
    previous, count, cursor = "0" * 64, 0, None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/api/v1/audit/events", params=params, headers=headers)).json()
        for event in page["items"]:
            count += 1
            assert event["seq"] == count
            assert event["prev_hash"] == previous
            body = {k: v for k, v in event.items() if k != "hash"}
            assert hashlib.sha256(rfc8785.dumps(body)).hexdigest() == event["hash"]
            previous = event["hash"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert served == {"valid": True, "count": count, "head": previous}


class Org:
    """Builds organisation records through the API, as the bootstrap admin."""

    def __init__(self, client: httpx.AsyncClient, tokens: Tokens) -> None:
        self.client = client
        self.tokens = tokens

    @property
    def admin(self) -> dict[str, str]:
        return self.tokens.auth(ADMIN_NIP)

    def as_(self, nip: str) -> dict[str, str]:
        return self.tokens.auth(nip)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def employee(
        self,
        *,
        unit_code: str | None = None,
        roles: list[str] | None = None,
        employment: str = "pns",
        **fields: Any,
    ) -> dict[str, Any]:
        body = {
            "nip": make_nip(employment=employment),
            "name": "Pegawai Uji",
            "employment": employment,
            "unit_code": unit_code,
            "roles": roles or [],
            **fields,
        }
        return await self._post("/api/v1/employees", body)

    async def unit(
        self, *, head_nip: str | None = None, parent_code: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {"parent_code": parent_code, "head_nip": head_nip, **fields}
        return await self._post(
            "/api/v1/units", {"code": make_code("U"), "name": "Unit Uji", **body}
        )

    async def workspace(
        self, unit_code: str, *, kind: str = "administrative", **fields: Any
    ) -> dict[str, Any]:
        body = {"unit_code": unit_code, "kind": kind, **fields}
        return await self._post(
            "/api/v1/workspaces", {"code": make_code("W"), "name": "Ruang Uji", **body}
        )

    async def unit_with_head(self, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """A unit whose head is a new employee of that unit."""
        unit = await self.unit(**fields)
        head = await self.employee(unit_code=unit["code"], position="Kepala")
        response = await self.client.patch(
            f"/api/v1/units/{unit['code']}", json={"head_nip": head["nip"]}, headers=self.admin
        )
        assert response.status_code == 200, response.text
        return response.json(), head


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """A real `izin-siaran serve` (uvicorn) in a child process, on a free loopback port."""

    def __init__(
        self, env: dict[str, str], cwd: Path, args: Sequence[str] = (), port: int | None = None
    ) -> None:
        import os
        import subprocess
        import sys

        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # Load tests send far more than a person would; the limit has tests of its own.
        full_env = {**os.environ, "RATE_LIMIT_PER_MINUTE": "1000000", **env}
        self.log = cwd / f"server-{self.port}.log"
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), *args],
            env=full_env,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling for start-up, not synchronising the test
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()
                self.process.wait()
        self._log_handle.close()


@contextlib.asynccontextmanager
async def serving(application: FastAPI) -> AsyncIterator[FastAPI]:
    """The app's lifespan (start-up, then shutdown), cheap enough to run for every test.

    Start-up runs a full `gc.collect()` before it freezes what it made (app/main.py,
    `_frozen_start_up`). In a test process that full pass walks every object of the whole
    session (the collected tests, pytest, hypothesis, schemathesis: 0.25 to 0.4 s) once per
    test. Freezing first leaves it only the objects made since; the app's shutdown unfreezes
    everything, as it always does, so no garbage is kept from the collector past the test.
    The app's own start-up and shutdown run unchanged."""
    gc.freeze()
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        gc.unfreeze()


async def audit_trail(app: FastAPI, subject: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, actor, data) of every audit event about `subject`, oldest first."""
    statement = (
        select(AuditEvent.action, AuditEvent.actor, AuditEvent.data)
        .where(AuditEvent.subject == subject)
        .order_by(AuditEvent.seq)
    )
    async with app.state.db.engine.connect() as connection:
        return [(r.action, r.actor, r.data) for r in await connection.execute(statement)]


async def assert_patched(
    client: httpx.AsyncClient,
    path: str,
    before: dict[str, Any],
    changes: dict[str, Any],
    headers: dict[str, str],
) -> dict[str, Any]:
    """PATCH `changes` to the record at `path`: 200, the record as it was `before` with
    `changes` applied (and a new `updated_at`), and a GET reads back the same."""
    response = await client.patch(path, json=changes, headers=headers)
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert body | {"updated_at": None} == before | changes | {"updated_at": None}
    assert (await client.get(path, headers=headers)).json() == body
    return body


async def list_keys(
    client: httpx.AsyncClient, path: str, key: str, headers: dict[str, str], **params: Any
) -> list[str]:
    """The `key` of every item of the first page of the list at `path`."""
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item[key] for item in response.json()["items"]]


def delegation_body(
    delegate_nip: str,
    *,
    kind: str = "plh",
    starts_in: timedelta = timedelta(0),
    length: timedelta = timedelta(days=1),
    reason: str = "Kepala dinas bertugas ke luar daerah",
) -> dict[str, Any]:
    """A delegation to `delegate_nip` from `starts_in` from now, for `length`."""
    begin = datetime.now(UTC) + starts_in
    return {
        "delegate_nip": delegate_nip,
        "kind": kind,
        "starts_at": begin.isoformat(),
        "ends_at": (begin + length).isoformat(),
        "reason": reason,
    }


def server_env(
    database_url: str, keyring: KeyRing, data_dir: Path, **settings: str
) -> dict[str, str]:
    """The environment of a `ServerProcess` on `database_url` that trusts `keyring`, with
    `ADMIN_NIP` as its bootstrap admin; `settings` adds or overrides variables."""
    return {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "AUTH_JWKS_URL": keyring.jwks_url,
        "AUTH_ISSUER": ISSUER,
        "AUTH_AUDIENCE": AUDIENCE,
        "BOOTSTRAP_ADMIN_NIPS": ADMIN_NIP,
        "LOG_LEVEL": "WARNING",
        **settings,
    }


def in_a_thread(work: Callable[[], None]) -> None:
    """Run `work` (an Alembic command: it runs its own event loop) away from the test's."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(work).result()


async def fetch_rows(database_url: str, *statements: str) -> list[list[Any]]:
    """The rows of each SQL statement, read straight from the database at `database_url`
    through an engine of its own (not the service's)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return [list((await connection.execute(text(sql))).all()) for sql in statements]
    finally:
        await engine.dispose()


def chromium() -> str:
    """Debian's Chromium (`.ci/run` installs it): its path; a failure in CI, a skip elsewhere."""
    import os
    import shutil

    import pytest

    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is needed for the browser tests (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


async def browse(url: str, *flags: str) -> tuple[str, str]:
    """Chromium, headless, opens `url` with `flags` (`--dump-dom`, `--screenshot=…`, …) in a
    profile of its own: its (stdout, stderr)."""
    import tempfile

    import anyio

    with tempfile.TemporaryDirectory() as profile:
        browser = await anyio.run_process(
            [
                chromium(),
                *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"),
                *("--no-first-run", "--disable-background-networking"),
                *("--disable-component-update", "--disable-sync", "--hide-scrollbars"),
                f"--user-data-dir={profile}",
                *("--enable-logging=stderr", "--v=0"),
                *flags,
                url,
            ],
            check=False,
        )
    return browser.stdout.decode(), browser.stderr.decode()
