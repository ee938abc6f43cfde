"""The operator's walk (docs/RULES.md #conventions) with real processes: `izin-siaran migrate`,
`demo`, `token`, `serve`, then real HTTP against uvicorn, on SQLite and on PostgreSQL.

The service refuses an unmigrated database and bad settings before it listens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import anyio
import asyncpg
import httpx
import pytest

from app.config import Settings
from app.demo import UNITS as DEMO_UNITS
from app.migrate import head_revision
from tests.conftest import PG_ADMIN_DSN, PROJECT_DIR, run_cli
from tests.support import assert_problem, make_code

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEMO_ADMIN = "198904042014021003"  # an admin of the demo organisation
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_environment(env: dict[str, str]) -> dict[str, str]:
    """The test runner's environment minus every setting, plus `env`."""
    settings = {name.upper() for name in Settings.model_fields}
    inherited = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    return {**inherited, **env}


class Server:
    """`izin-siaran serve` in a child process on a free loopback port.

    Entering waits (polling /healthz, with a deadline) until it answers; leaving
    stops it with SIGTERM and waits for it to exit.
    """

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = child_environment(env)
        self.log_path = folder / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=PROJECT_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.process

    async def __aenter__(self) -> Server:
        process = self.start()
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(base_url=self.base_url, timeout=1) as http:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"serve exited early:\n{self.output}")
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)  # polling start-up, with a deadline
        self.stop()
        raise RuntimeError(f"serve did not answer within {START_TIMEOUT}s:\n{self.output}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.returncode is not None:
            return
        self.process.terminate()
        try:
            self.returncode = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()


@pytest.fixture
async def fresh_database_url(backend: str, database_url: str) -> AsyncIterator[str]:
    """A database nobody migrated, as DATABASE_URL: none on SQLite (the default file in
    DATA_DIR, not yet created), else a new, empty PostgreSQL database given as a plain
    `postgresql://` URL, the way an operator would write it."""
    if backend == "sqlite":
        yield ""
        return
    name = f"izs_walk_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = database_url.rpartition("/")[0].replace("postgresql+asyncpg://", "postgresql://", 1)
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def environment(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {"DATA_DIR": str(data_dir), **extra}
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


async def _oversized_chunks() -> AsyncIterator[bytes]:
    yield b'{"code": "BIG", "name": "'
    for _ in range(12):
        yield b"z" * 100_000
    yield b'"}'


async def test_the_operator_walk_on_a_real_server(
    backend: str, fresh_database_url: str, tmp_path: Path
) -> None:
    """Fresh DATA_DIR, local mode: migrate, demo, token, serve, then call it over HTTP."""
    data_dir = tmp_path / "data"
    env = environment(data_dir, fresh_database_url, LOG_LEVEL="INFO")

    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"database at revision {head_revision()}"
    again = run_cli("migrate", env=env)
    assert again.returncode == 0, again.stderr
    for _ in range(2):  # the demo may be loaded twice
        demo = run_cli("demo", env=env)
        assert demo.returncode == 0, demo.stderr
    minted = run_cli("token", DEMO_ADMIN, env=env)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert token.count(".") == 2
    if backend == "sqlite":
        assert (data_dir / "izin-siaran.db").is_file()

    auth = {"Authorization": f"Bearer {token}"}
    request_id = f"walk-{backend}-{uuid.uuid4().hex[:8]}"
    async with (
        Server(env, tmp_path) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=10) as http,
    ):
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "database": backend,
            "schema_revision": head_revision(),
        }

        me = await http.get("/api/v1/me", headers={**auth, "X-Request-ID": request_id})
        assert me.status_code == 200, me.text
        assert me.headers["X-Request-ID"] == request_id
        assert me.json()["nip"] == DEMO_ADMIN
        assert "admin" in me.json()["roles"]

        units = await http.get("/api/v1/units", headers=auth)
        assert units.status_code == 200, units.text
        listed = {unit["code"] for unit in units.json()["items"]}
        assert listed == {code for code, *_ in DEMO_UNITS}
        assert units.json()["next_cursor"] is None

        code = make_code()
        created = await http.post(
            "/api/v1/units",
            json={"code": code, "name": "Unit Baru", "parent_code": "SETDA"},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        assert (await http.get(created.headers["Location"], headers=auth)).status_code == 200

        assert_problem(await http.get("/api/v1/units"), 401)
        assert (await http.get("/.well-known/jwks.json")).json()["keys"]
        streamed = await http.post(
            "/api/v1/units",
            content=_oversized_chunks(),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert "Content-Length" not in streamed.request.headers
        assert_problem(streamed, 413, "payload_too_large")
        verified = await http.get("/api/v1/audit/verify", headers=auth)
        assert verified.json()["valid"] is True, verified.text

    # SIGTERM shuts it down cleanly (uvicorn then re-raises the signal for the supervisor).
    assert server.returncode in (0, -signal.SIGTERM), server.output
    assert "Application shutdown complete" in server.output
    assert f"[{request_id}]" in server.output  # the request id is in its log lines
    assert "Traceback" not in server.output


async def test_serve_refuses_an_unmigrated_database(
    fresh_database_url: str, tmp_path: Path
) -> None:
    env = environment(tmp_path / "data", fresh_database_url)
    result = run_cli("serve", "--port", str(free_port()), env=env, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "izin-siaran migrate" in result.stderr
    assert "not migrated" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "command",
    [["migrate"], ["serve", "--port", "1"], ["demo"], ["token", DEMO_ADMIN], ["sweep"]],
)
def test_bad_settings_stop_every_command_with_exit_2(command: list[str], tmp_path: Path) -> None:
    result = run_cli(*command, env={"DATA_DIR": str(tmp_path), "LOG_LEVEL": "LOUD"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # it stopped before touching anything


def test_every_bad_setting_is_named_at_once(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        env={
            "DATA_DIR": str(tmp_path),
            "LOG_LEVEL": "LOUD",
            "DATABASE_URL": "mysql://u@h/db",
            "AUTH_JWKS_URL": "http://sso.example.go.id/jwks",
        },
    )
    assert result.returncode == 2
    for name in ("LOG_LEVEL", "DATABASE_URL", "AUTH_JWKS_URL"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", env={"DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr
