"""PostgreSQL goes away under load, then comes back (docs/RULES.md #check, #conventions).

A throwaway PostgreSQL cluster of the test's own (initdb into a temporary folder,
its own loopback port; the machine's shared server is never touched) serves a
real `izin-siaran serve` process. A light, steady load runs throughout: checks
with an API key, reads of a permit, submissions, and /healthz + /readyz probes.
Mid-load the database goes away, killed (`pg_ctl stop -m immediate`) or frozen (every
process SIGSTOPped, as in a network partition). While it is away:

* every request is answered, within a few seconds (no hang, no dropped connection);
* API requests get a 503 problem (`database_unavailable`, or `auth_unavailable`),
  never a 500, and the check never says `authorized: true` (it fails closed);
* /readyz says 503, /healthz stays 200.

Then the database comes back (started again, or thawed) and the service must
recover by itself, with no restart: the first successful check and the first
/readyz 200 are timed, and afterwards every request succeeds and the audit chain
still verifies.

A one-line summary of the figures is printed; with OUTAGE_REPORT=path they are
also written there as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest

from tests.conftest import IN_CI, _blocking, run_cli
from tests.outage_support import ThrowawayPostgres, missing_prerequisites
from tests.permits_support import permit_body
from tests.support import (
    ADMIN_NIP,
    KeyRing,
    ServerProcess,
    Tokens,
    make_code,
    make_nip,
    server_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DATABASE = "izs_outage"
CHECK = "/api/v1/authorizations/check"
# Longer than the pool timeout and the connect timeout (5 s each, app/db.py): a request
# that waits on either would show up as a slow answer.
OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "8"))
# Frozen, every request waits out the service's timeouts: longer, for as many answers.
FROZEN_SECONDS = float(os.environ.get("FROZEN_SECONDS", "16"))
BASELINE_SECONDS = 1.5
STEADY_SECONDS = 2.0
MAX_ANSWER_SECONDS = 6.0
# The check and permit reads: the service's 2 s DATABASE_TIMEOUT_SECONDS, with room for a
# slow machine, but short of two timeouts (a statement's, then its cancellation's).
MAX_HOT_SECONDS = 3.5
MAX_RECOVERY_SECONDS = 15.0
PAUSE_SECONDS = 0.05  # between one worker's requests: a light load, not a flood
UNAVAILABLE_CODES = {"database_unavailable", "auth_unavailable"}


@dataclass
class Sample:
    kind: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    code: str | None = None
    authorized: bool | None = None
    problem_json: bool = False
    retry_after: str | None = None
    request_id: str | None = None  # to find the request in the server's log
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        if self.kind == "check":
            return self.status == 200 and self.authorized is True
        if self.kind == "submit":
            return self.status == 201
        return self.status == 200

    def label(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        return f"{self.status} {self.code}" if self.code else str(self.status)


def _sample(kind: str, started: float, response: httpx.Response) -> Sample:
    ended = time.monotonic()
    problem = response.headers.get("content-type", "").startswith("application/problem+json")
    code = authorized = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") if problem else None
        authorized = body.get("authorized") if kind == "check" else None
    return Sample(
        kind,
        started,
        ended,
        response.status_code,
        code=code,
        authorized=authorized,
        problem_json=problem,
        retry_after=response.headers.get("retry-after"),
        request_id=response.headers.get("x-request-id"),
    )


@pytest.fixture
def cluster() -> Iterator[ThrowawayPostgres]:
    """A migrated database on a PostgreSQL cluster of this test's own."""
    reason = missing_prerequisites()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"cannot make a throwaway PostgreSQL cluster: {reason}")
        pytest.skip(f"cannot make a throwaway PostgreSQL cluster: {reason}")
    postgres = ThrowawayPostgres()
    try:
        postgres.init()
        postgres.start()
        _blocking(_create_database(postgres.dsn()))
        migrated = run_cli("migrate", env={"DATABASE_URL": postgres.dsn(DATABASE)})
        assert migrated.returncode == 0, migrated.stderr
        yield postgres
    finally:
        postgres.destroy()


async def _create_database(dsn: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()


@pytest.fixture
def server(cluster: ThrowawayPostgres, keyring: KeyRing, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(
        cluster.dsn(DATABASE).replace("postgresql://", "postgresql+asyncpg://"),
        keyring,
        tmp_path / "data",
        # The periodic sweep runs through the outage too: it must neither die nor kill the process.
        SWEEP_INTERVAL_SECONDS="1",
    )
    process = ServerProcess(env, tmp_path)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


class Scene:
    """Through the API: a unit with its head, a requester, a studio, an approved permit,
    and an API key with the `check` scope."""

    def __init__(self, http: httpx.AsyncClient, tokens: Tokens) -> None:
        self.http, self.tokens = http, tokens

    async def _send(
        self, method: str, path: str, nip: str, body: Any = None, expect: int = 201
    ) -> dict[str, Any]:
        response = await self.http.request(method, path, json=body, headers=self.tokens.auth(nip))
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def build(self) -> Scene:
        self.unit = make_code("O")
        await self._send("POST", "/api/v1/units", ADMIN_NIP, {"code": self.unit, "name": "Unit"})
        self.head, self.requester = make_nip(), make_nip()
        for nip in (self.head, self.requester):
            body = {"nip": nip, "name": "Pegawai", "unit_code": self.unit}
            await self._send("POST", "/api/v1/employees", ADMIN_NIP, body)
        await self._send(
            "PATCH", f"/api/v1/units/{self.unit}", ADMIN_NIP, {"head_nip": self.head}, 200
        )
        self.workspace = make_code("OW")
        body = {"code": self.workspace, "name": "Studio", "unit_code": self.unit, "kind": "studio"}
        await self._send("POST", "/api/v1/workspaces", ADMIN_NIP, body)
        # A pending permit whose start has passed expires, so this one starts soon and the
        # check asks about an instant inside its window.
        start = datetime.now(UTC) + timedelta(minutes=10)
        self.at = (start + timedelta(minutes=30)).isoformat()
        permit = await self._send(
            "POST",
            "/api/v1/permits",
            self.requester,
            permit_body(self.workspace, start=start, minutes=120),
        )
        self.permit_id = str(permit["id"])
        approved = await self._send(
            "POST", f"/api/v1/permits/{self.permit_id}/approve", self.head, {}, 200
        )
        assert approved["status"] == "approved", approved
        key = await self._send(
            "POST", "/api/v1/api-keys", ADMIN_NIP, {"name": "gerbang", "scopes": ["check"]}
        )
        self.api_key = str(key["key"])
        return self

    def check(self) -> Awaitable[httpx.Response]:
        params = {"nip": self.requester, "workspace_code": self.workspace, "at": self.at}
        return self.http.get(CHECK, params=params, headers={"X-API-Key": self.api_key})

    def read_permit(self) -> Awaitable[httpx.Response]:
        return self.http.get(
            f"/api/v1/permits/{self.permit_id}", headers=self.tokens.auth(self.requester)
        )

    def submit(self, n: int) -> Awaitable[httpx.Response]:
        # Pending submissions may overlap; each is a new permit, later in the day.
        start = datetime.now(UTC) + timedelta(hours=3, minutes=n % 600)
        return self.http.post(
            "/api/v1/permits",
            json=permit_body(self.workspace, start=start, minutes=30, title=f"Siaran {n}"),
            headers={**self.tokens.auth(self.requester), "Idempotency-Key": f"outage-{n}"},
        )


class Load:
    """A few concurrent loops of requests, every answer (or its absence) recorded."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.samples: list[Sample] = []
        self.stop = asyncio.Event()
        self.submissions = 0

    async def _loop(self, kind: str, send: Callable[[], Awaitable[httpx.Response]]) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                response = await send()
            except httpx.HTTPError as exc:
                self.samples.append(
                    Sample(kind, started, time.monotonic(), None, error=type(exc).__name__)
                )
            else:
                self.samples.append(_sample(kind, started, response))
            await asyncio.sleep(PAUSE_SECONDS)

    def _next_submission(self) -> Awaitable[httpx.Response]:
        self.submissions += 1
        return self.scene.submit(self.submissions)

    def start(self) -> list[asyncio.Task[None]]:
        http = self.scene.http
        loops: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
            ("check", self.scene.check),
            ("check", self.scene.check),
            ("read", self.scene.read_permit),
            ("submit", self._next_submission),
            ("healthz", lambda: http.get("/healthz")),
            ("readyz", lambda: http.get("/readyz")),
        ]
        return [asyncio.create_task(self._loop(kind, send)) for kind, send in loops]


async def _first_success(
    send: Callable[[], Awaitable[httpx.Response]], ok: Callable[[httpx.Response], bool]
) -> float | None:
    """When (monotonic) `send` first answers `ok`, polling, or None after the recovery bound."""
    deadline = time.monotonic() + MAX_RECOVERY_SECONDS * 2
    while time.monotonic() < deadline:
        try:
            response = await send()
        except httpx.HTTPError:
            response = None
        if response is not None and ok(response):
            return time.monotonic()
        await asyncio.sleep(0.05)  # polling for the recovery, which is what is measured
    return None


@dataclass
class Outage:
    """How the database goes away and comes back; `back` returns once it accepts again."""

    name: str
    away: Callable[[], None]
    back: Callable[[], None]
    seconds: float


async def _through(outage: Outage, server: ServerProcess, tokens: Tokens) -> None:
    """Run the load through `outage`, report the figures, assert the requirements."""
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    # The client waits longer than any server-side timeout, so a hang is measured, not masked.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=45, limits=limits) as http:
        scene = await Scene(http, tokens).build()
        first = await scene.check()
        assert first.status_code == 200, first.text
        assert first.json()["authorized"] is True, first.text

        load = Load(scene)
        workers = load.start()
        try:
            await asyncio.sleep(BASELINE_SECONDS)  # the load runs against a healthy database
            away_issued = time.monotonic()
            await anyio.to_thread.run_sync(outage.away)
            away_done = time.monotonic()
            await asyncio.sleep(outage.seconds)  # the outage lasts this long, by design
            back_issued = time.monotonic()
            await anyio.to_thread.run_sync(outage.back)
            back_done = time.monotonic()
            check_back, ready_back = await asyncio.gather(
                _first_success(
                    scene.check,
                    lambda r: r.status_code == 200 and r.json().get("authorized") is True,
                ),
                _first_success(lambda: http.get("/readyz"), lambda r: r.status_code == 200),
            )
            steady_from = time.monotonic()
            await asyncio.sleep(STEADY_SECONDS)  # the load runs on the recovered service
        finally:
            load.stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
        steady_until = time.monotonic()
        verified = await http.get("/api/v1/audit/verify", headers=tokens.auth(ADMIN_NIP))
    alive = server.process.poll() is None

    samples = load.samples
    baseline = [s for s in samples if s.ended < away_issued]
    during = [s for s in samples if s.started >= away_done and s.ended < back_issued]
    since = [s for s in samples if s.ended >= away_issued]
    steady = [s for s in samples if s.started >= steady_from and s.ended <= steady_until]
    latencies = [s.latency for s in since]
    recovery = {
        "check": None if check_back is None else round(check_back - back_done, 3),
        "readyz": None if ready_back is None else round(ready_back - back_done, 3),
    }
    figures = {
        "outage_seconds": round(back_issued - away_done, 2),
        "database_away_seconds": round(away_done - away_issued, 2),
        "database_back_seconds": round(back_done - back_issued, 2),
        "requests_total": len(samples),
        "requests_during_outage": len(during),
        "requests_during_outage_by_kind": dict(Counter(s.kind for s in during)),
        "statuses_during_outage": dict(Counter(f"{s.kind} {s.label()}" for s in during)),
        "statuses_since_outage": dict(Counter(f"{s.kind} {s.label()}" for s in since)),
        "max_latency_seconds": round(max(latencies, default=0.0), 3),
        "median_latency_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "max_latency_by_kind_seconds": {
            kind: round(max(s.latency for s in since if s.kind == kind), 3)
            for kind in sorted({s.kind for s in since})
        },
        "max_latency_during_outage_seconds": round(
            max((s.latency for s in during), default=0.0), 3
        ),
        "recovery_seconds_after_database_back": recovery,
        "steady_requests_after_recovery": len(steady),
        "server_alive": alive,
    }
    print(
        f"\ndb-outage[{outage.name}]: {len(during)} requests during a "
        f"{figures['outage_seconds']}s outage ({figures['requests_during_outage_by_kind']}), "
        f"max latency {figures['max_latency_seconds']}s "
        f"(during outage {figures['max_latency_during_outage_seconds']}s), "
        f"statuses {figures['statuses_during_outage']}, "
        f"recovery after the database was back: check {recovery['check']}s, "
        f"readyz {recovery['readyz']}s"
    )
    report = os.environ.get("OUTAGE_REPORT")
    if report:
        path = anyio.Path(report)
        previous = json.loads(await path.read_text()) if await path.exists() else {}
        merged = (previous if isinstance(previous, dict) else {}) | {outage.name: figures}
        await path.write_text(json.dumps(merged, indent=2) + "\n")

    def show(selected: list[Sample]) -> list[dict[str, Any]]:
        return [asdict(s) | {"latency": round(s.latency, 3)} for s in selected[:10]]

    # The service works before the outage.
    assert baseline
    assert all(s.ok for s in baseline), show([s for s in baseline if not s.ok])
    # Every request got an answer, none a 500, none slow; the process lived through it.
    assert alive, server.log.read_text()
    unanswered = [s for s in samples if s.status is None]
    assert not unanswered, show(unanswered)
    errors = [s for s in samples if s.status is not None and s.status >= 500 and s.status != 503]
    assert not errors, show(errors)
    slow = [s for s in since if s.latency > MAX_ANSWER_SECONDS]
    assert not slow, show(slow)
    # The hot reads (the check, a permit read) fail within one timeout: they do not wait
    # for a timed-out statement's cancellation before answering (app/rawdb.py).
    slow_hot = [s for s in since if s.kind in ("check", "read") and s.latency > MAX_HOT_SECONDS]
    assert not slow_hot, show(slow_hot)
    # While the database is away: enough traffic of every kind to mean something ...
    kinds = Counter(s.kind for s in during)
    for kind in ("check", "read", "submit", "healthz", "readyz"):
        assert kinds[kind] >= 3, kinds
    # ... the API fails closed, with a 503 problem saying why; the check never authorises.
    api = [s for s in during if s.kind in ("check", "read", "submit")]
    wrong = [
        s
        for s in api
        if not (
            s.status == 503
            and s.problem_json
            and s.code in UNAVAILABLE_CODES
            and s.retry_after is not None
        )
    ]
    assert not wrong, show(wrong)
    opened = [s for s in during if s.kind == "check" and s.authorized is True]
    assert not opened, show(opened)
    # ... readiness says so, liveness does not.
    not_ready = [s for s in during if s.kind == "readyz"]
    assert all(
        s.status == 503 and s.problem_json and s.code == "database_unavailable" for s in not_ready
    ), show(not_ready)
    healthy = [s for s in during if s.kind == "healthz"]
    assert all(s.status == 200 for s in healthy), show(healthy)
    # The service recovers by itself, quickly, and fully.
    assert check_back is not None, recovery
    assert ready_back is not None, recovery
    assert check_back - back_done <= MAX_RECOVERY_SECONDS, recovery
    assert ready_back - back_done <= MAX_RECOVERY_SECONDS, recovery
    assert steady
    assert all(s.ok for s in steady), show([s for s in steady if not s.ok])
    assert verified.status_code == 200, verified.text
    assert verified.json()["valid"] is True, verified.text


async def test_database_stopped_fails_fast_and_closed_then_recovers_without_restart(
    cluster: ThrowawayPostgres, server: ServerProcess, tokens: Tokens
) -> None:
    """PostgreSQL is killed (`pg_ctl stop -m immediate`): connections break, new ones are
    refused. Then it is started again."""
    await _through(
        Outage("stopped", lambda: cluster.stop("immediate"), cluster.start, OUTAGE_SECONDS),
        server,
        tokens,
    )


async def test_database_frozen_fails_fast_and_closed_then_recovers_without_restart(
    cluster: ThrowawayPostgres, server: ServerProcess, tokens: Tokens
) -> None:
    """PostgreSQL stops answering but its connections stay open and new ones are accepted
    by the kernel (every process SIGSTOPped), as in a network partition or a hung host.
    Nothing is refused, so only the service's own timeouts bound a request. Then it thaws."""
    await _through(Outage("frozen", cluster.freeze, cluster.thaw, FROZEN_SECONDS), server, tokens)
