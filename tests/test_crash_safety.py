"""Crash safety: `kill -9` the server again and again under a steady write load.

One real uvicorn process per backend (SQLite on a file, PostgreSQL), a unit with a
head, a requester and several workspaces made through the API. Concurrent workers
run submit → approve → revoke cycles (with some denials, cancels of pending and of
approved permits, and approvals refused for a workspace conflict) while the
server is killed with SIGKILL at random moments and restarted on the same
database. Every write carries an `Idempotency-Key`; a request cut off by a kill is
retried with the same key once the new process is up, so it either replays (it
had committed) or runs now (it had not), and the test always knows what was
acknowledged.

Afterwards, through the API and directly in the database: every acknowledged
write is there (the permit, its status and version, its audit event), nothing
was applied that was not acknowledged, no two approved permits of a workspace
overlap, no permit has two decisions, and the audit chain verifies.

A longer run (documented in docs/RELIABILITY.md):

    CRASH_SECONDS=300 CRASH_KILLS=30 CRASH_WORKERS=12 \\
        .venv/bin/python -m pytest -s tests/test_crash_safety.py

CRASH_SEED fixes the random choices (not the timing); CRASH_REPORT=path.json
writes the figures of each backend (one JSON object per line).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.permits_support import permit_body
from tests.support import (
    ADMIN_NIP,
    KeyRing,
    ServerProcess,
    Tokens,
    assert_chain_verifies,
    fetch_rows,
    make_code,
    make_nip,
    server_env,
)
from tests.test_races import _verify_chain

pytestmark = pytest.mark.anyio

LOAD_SECONDS = float(os.environ.get("CRASH_SECONDS", "20"))
KILLS = int(os.environ.get("CRASH_KILLS", "3"))
WORKERS = int(os.environ.get("CRASH_WORKERS", "6"))
WORKSPACES = int(os.environ.get("CRASH_WORKSPACES", "4"))
SEED = int(os.environ.get("CRASH_SEED", str(random.randrange(1 << 32))))
# Acknowledged writes the current process must have served before it may be killed,
# so that every kill lands in the middle of the load.
ACKS_BEFORE_KILL = 5
# Window slots per workspace: 60-minute permits starting every 30 minutes, so
# neighbouring slots overlap and some approvals meet a workspace conflict.
SLOTS = 200
# A request is retried until it is answered; this bounds a server that never comes back.
GIVE_UP_SECONDS = 120.0

EVENT_OF = {
    "submit": "permit.submitted",
    "approve": "permit.approved",
    "deny": "permit.denied",
    "cancel": "permit.cancelled",
    "revoke": "permit.revoked",
}
# The statuses a permit may reach from a status (itself included).
REACHABLE = {
    "pending": {"pending", "approved", "denied", "cancelled", "expired", "revoked"},
    "approved": {"approved", "revoked", "cancelled"},
    "denied": {"denied"},
    "cancelled": {"cancelled"},
    "revoked": {"revoked"},
    "expired": {"expired"},
}


@dataclass(frozen=True)
class Ack:
    """One write answered 2xx."""

    permit_id: str
    action: str
    status: str
    version: int
    replayed: bool
    incarnation: int


@dataclass
class Figures:
    backend: str
    seed: int
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    phantom: int = 0
    failed_by_kills: int = 0  # attempts; a slow retry can be cut off by the next kill too
    writes_cut_off: int = 0  # distinct writes, each retried until answered
    in_flight_at_kill: int = 0
    refused_while_down: int = 0
    replayed_after_kill: int = 0
    rerun_after_kill: int = 0
    unresolved: int = 0
    in_flight_409: int = 0
    other_transport_errors: int = 0
    server_errors: int = 0
    conflicts: int = 0
    permits: int = 0
    audit_events: int = 0
    seconds: float = 0.0
    restart_seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"crash safety [{self.backend}]: kills survived {self.kills}, "
            f"acknowledged writes {self.acknowledged}, lost writes {self.lost}, "
            f"requests failed by the kills {self.failed_by_kills} "
            f"({self.in_flight_at_kill} in flight, {self.refused_while_down} refused while down; "
            f"{self.writes_cut_off} writes cut off, on retry {self.replayed_after_kill} had "
            f"committed and replayed, {self.rerun_after_kill} ran), "
            f"phantom writes {self.phantom}, permits {self.permits}, "
            f"audit events {self.audit_events}, workspace conflicts {self.conflicts}, "
            f"{self.seconds:.1f}s, seed {self.seed}"
        )


class Unresolved(Exception):
    """A write that could not be answered before GIVE_UP_SECONDS."""


class Service:
    """The current server process; replaced after every kill."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.server: ServerProcess | None = None
        self.incarnation = 0
        self.up = anyio.Event()
        self.busy = anyio.Event()  # ACKS_BEFORE_KILL acknowledged on this incarnation
        self.acks_here = 0

    async def start(self) -> float:
        began = time.monotonic()
        server = ServerProcess(self.env, self.folder)
        self.server = server
        await anyio.to_thread.run_sync(server.wait_ready)
        self.incarnation += 1
        self.acks_here = 0
        self.busy = anyio.Event()
        self.up.set()
        return time.monotonic() - began

    async def kill(self) -> None:
        assert self.server is not None
        self.up = anyio.Event()  # not set: requests wait for the next incarnation
        process = self.server.process
        process.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(process.wait)
        assert process.returncode == -signal.SIGKILL
        self.server.stop()  # closes the log; the process is gone already

    def acknowledged(self) -> None:
        self.acks_here += 1
        if self.acks_here >= ACKS_BEFORE_KILL:
            self.busy.set()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class Load:
    def __init__(
        self,
        service: Service,
        http: httpx.AsyncClient,
        tokens: Tokens,
        figures: Figures,
        head: str,
        requester: str,
        workspaces: list[str],
        rng: random.Random,
    ) -> None:
        self.service, self.http, self.tokens, self.figures = service, http, tokens, figures
        self.head, self.requester, self.workspaces, self.rng = head, requester, workspaces, rng
        self.acks: list[Ack] = []
        self.unresolved: set[str] = set()  # permits with a write never answered
        self.stopping = False
        self.origin = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
        self._tokens: dict[str, tuple[float, dict[str, str]]] = {}

    def auth(self, nip: str) -> dict[str, str]:
        # Minted again after 300 s (tokens live 600 s). Not "minted at 0.0": the monotonic
        # clock starts near 0 on a machine just booted.
        minted, headers = self._tokens.get(nip, (None, {}))
        if minted is None or time.monotonic() - minted > 300:
            headers = self.tokens.auth(nip)
            self._tokens[nip] = (time.monotonic(), headers)
        return headers

    async def write(self, path: str, body: dict[str, Any], nip: str, action: str) -> httpx.Response:
        """POST until answered, retrying with one Idempotency-Key across kills."""
        headers = {**self.auth(nip), "Idempotency-Key": uuid.uuid4().hex}
        cut_off = False
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while True:
            if time.monotonic() > deadline:
                raise Unresolved(f"{action} {path}")
            with anyio.move_on_after(max(deadline - time.monotonic(), 0.1)):
                await self.service.up.wait()
            if not self.service.up.is_set():
                raise Unresolved(f"{action} {path}: the server did not come back")
            assert self.service.server is not None
            url = self.service.server.base_url + path
            incarnation = self.service.incarnation
            try:
                response = await self.http.post(url, json=body, headers=headers)
            except httpx.TransportError as exc:
                if self.service.incarnation == incarnation and self.service.up.is_set():
                    # Not a kill: the process we asked is still the current one (e.g. a
                    # keep-alive connection it had just closed). Retried all the same.
                    self.figures.other_transport_errors += 1
                    continue
                self.figures.failed_by_kills += 1
                self.figures.writes_cut_off += 0 if cut_off else 1
                if isinstance(exc, httpx.ConnectError):
                    self.figures.refused_while_down += 1
                else:
                    self.figures.in_flight_at_kill += 1
                cut_off = True
                continue
            if response.status_code == 409 and response.json().get("code") == (
                "idempotency_in_flight"
            ):
                # The killed process's transaction still holds the key (PostgreSQL ends
                # it when it notices the dead connection): retry as Retry-After says.
                self.figures.in_flight_409 += 1
                await anyio.sleep(float(response.headers.get("Retry-After", "1")) / 4)
                continue
            if response.status_code >= 500:
                self.figures.server_errors += 1
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            if cut_off:
                if replayed:
                    self.figures.replayed_after_kill += 1
                else:
                    self.figures.rerun_after_kill += 1
            if response.is_success:
                permit = response.json()
                self.acks.append(
                    Ack(
                        permit["id"],
                        action,
                        permit["status"],
                        permit["version"],
                        replayed,
                        incarnation,
                    )
                )
                self.service.acknowledged()
            return response

    async def act(self, permit_id: str, action: str, nip: str, body: dict[str, Any]) -> str:
        response = await self.write(f"/api/v1/permits/{permit_id}/{action}", body, nip, action)
        if response.is_success:
            return str(response.json()["status"])
        assert response.status_code == 409, response.text
        code = response.json()["code"]
        assert code == "workspace_conflict", response.text
        assert action == "approve", response.text
        self.figures.conflicts += 1
        return "conflict"

    async def cycle(self) -> None:
        rng = self.rng
        workspace = rng.choice(self.workspaces)
        start = self.origin + timedelta(minutes=30 * rng.randrange(SLOTS))
        body = permit_body(workspace, start=start, minutes=60)
        response = await self.write("/api/v1/permits", body, self.requester, "submit")
        assert response.status_code == 201, response.text
        permit_id = str(response.json()["id"])
        try:
            roll = rng.random()
            if roll < 0.05:
                await self.act(permit_id, "cancel", self.requester, {"reason": "batal"})
                return
            if roll < 0.15:
                await self.act(permit_id, "deny", self.head, {"reason": "ruang dipakai rapat"})
                return
            if await self.act(permit_id, "approve", self.head, {"note": "silakan"}) == "conflict":
                await self.act(permit_id, "cancel", self.requester, {"reason": "bentrok"})
                return
            roll = rng.random()
            if roll < 0.65:
                await self.act(permit_id, "revoke", self.head, {"reason": "dicabut"})
            elif roll < 0.80:
                await self.act(permit_id, "cancel", self.requester, {"reason": "tidak jadi"})
            # else: left approved, so that later approvals meet workspace conflicts
        except Unresolved:
            self.unresolved.add(permit_id)
            self.figures.unresolved += 1

    async def worker(self) -> None:
        while not self.stopping:
            try:
                await self.cycle()
            except Unresolved:
                self.figures.unresolved += 1


async def _setup(
    http: httpx.AsyncClient, base_url: str, tokens: Tokens
) -> tuple[str, str, list[str]]:
    admin = tokens.auth(ADMIN_NIP)

    async def post(path: str, body: dict[str, Any]) -> None:
        response = await http.post(base_url + path, json=body, headers=admin)
        assert response.status_code == 201, response.text

    unit = make_code("K")
    await post("/api/v1/units", {"code": unit, "name": "Unit uji crash"})
    head, requester = make_nip(), make_nip()
    for nip in (head, requester):
        await post("/api/v1/employees", {"nip": nip, "name": "Pegawai", "unit_code": unit})
    response = await http.patch(
        f"{base_url}/api/v1/units/{unit}", json={"head_nip": head}, headers=admin
    )
    assert response.status_code == 200, response.text
    workspaces = [make_code("KW") for _ in range(WORKSPACES)]
    for code in workspaces:
        await post(
            "/api/v1/workspaces",
            {"code": code, "name": "Ruang", "unit_code": unit, "kind": "studio"},
        )
    return head, requester, workspaces


async def _controller(service: Service, load: Load, rng: random.Random) -> None:
    """Kill at a random moment of each segment of the run, restart, and keep going."""
    segment = LOAD_SECONDS / (KILLS + 1)
    for _ in range(KILLS):
        await service.busy.wait()
        await anyio.sleep(rng.uniform(0.2, 1.0) * segment)  # the random moment of the kill
        await service.kill()
        load.figures.kills += 1
        load.figures.restart_seconds.append(round(await service.start(), 2))
    await service.busy.wait()
    await anyio.sleep(segment)  # load on the last incarnation before stopping
    load.stopping = True


def _instant(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def _database_rows(database_url: str) -> tuple[list[Any], list[Any]]:
    permits, events = await fetch_rows(
        database_url,
        "SELECT id, workspace_code, status, version, starts_at, ends_at FROM permits",
        "SELECT seq, action, subject, data FROM audit_events "
        "WHERE subject LIKE 'permit:%' ORDER BY seq",
    )
    return permits, events


def _check_database(
    load: Load, permits: list[Any], events: list[Any]
) -> tuple[dict[Ack, str], list[str], list[str]]:
    """Lost acknowledged writes (with why), phantom writes, broken invariants."""
    lost: dict[Ack, str] = {}
    phantom: list[str] = []
    broken: list[str] = []
    by_id = {row.id: row for row in permits}
    events_of: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for event in events:
        data = event.data if isinstance(event.data, dict) else json.loads(event.data)
        events_of[event.subject.removeprefix("permit:")].append((event.action, data))

    last: dict[str, Ack] = {}
    for ack in load.acks:
        row = by_id.get(ack.permit_id)
        if row is None:
            lost[ack] = "permit missing"
            continue
        if row.version < ack.version or row.status not in REACHABLE[ack.status]:
            lost[ack] = f"database has {row.status} v{row.version}"
        recorded = [
            (action, data)
            for action, data in events_of[ack.permit_id]
            if action == EVENT_OF[ack.action]
            and (ack.action == "submit" or data.get("version") == ack.version)
        ]
        if len(recorded) != 1:
            lost[ack] = f"{len(recorded)} audit events for it"
        if ack.permit_id not in last or ack.version > last[ack.permit_id].version:
            last[ack.permit_id] = ack

    for permit_id, ack in last.items():
        row = by_id.get(permit_id)
        if row is None or permit_id in load.unresolved:
            continue
        if (row.status, row.version) != (ack.status, ack.version):
            phantom.append(
                f"{permit_id}: acknowledged {ack.status} v{ack.version}, "
                f"database has {row.status} v{row.version}"
            )
    unknown = set(by_id) - set(last)
    if len(unknown) > load.figures.unresolved:
        phantom.append(f"permits nobody was told about: {sorted(unknown)}")

    for permit_id, row in by_id.items():
        trail = events_of[permit_id]
        if len(trail) != row.version or trail[0][0] != "permit.submitted":
            broken.append(f"{permit_id} v{row.version}: audit trail {[a for a, _ in trail]}")
        decisions = [a for a, _ in trail if a in ("permit.approved", "permit.denied")]
        if len(decisions) > 1:
            broken.append(f"{permit_id}: {len(decisions)} decisions")

    approved: dict[str, list[Any]] = defaultdict(list)
    for row in permits:
        if row.status == "approved":
            approved[row.workspace_code].append(row)
    for workspace, rows in approved.items():
        for one, other in itertools.combinations(rows, 2):
            if _instant(one.starts_at) < _instant(other.ends_at) and _instant(
                other.starts_at
            ) < _instant(one.ends_at):
                broken.append(f"{workspace}: approved {one.id} and {other.id} overlap")
    return lost, phantom, broken


async def _check_api(base_url: str, tokens: Tokens, load: Load, old: Any) -> dict[Ack, str]:
    """Every acknowledged permit read back through the API of the last incarnation."""
    admin = tokens.auth(ADMIN_NIP)
    last: dict[str, Ack] = {}
    for ack in load.acks:
        if ack.permit_id not in last or ack.version > last[ack.permit_id].version:
            last[ack.permit_id] = ack
    lost: dict[Ack, str] = {}
    limiter = anyio.CapacityLimiter(8)

    async def read(ack: Ack) -> None:
        async with limiter:
            response = await old.get(f"{base_url}/api/v1/permits/{ack.permit_id}", headers=admin)
        if response.status_code != 200:
            lost[ack] = f"GET answered {response.status_code}"
            return
        permit = response.json()
        if permit["version"] < ack.version or permit["status"] not in REACHABLE[ack.status]:
            lost[ack] = f"API has {permit['status']} v{permit['version']}"

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        async with anyio.create_task_group() as group:
            for ack in last.values():
                group.start_soon(read, ack)
        await assert_chain_verifies(http, admin)
    return lost


def _report(figures: Figures, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():  # shown by CI even when output is captured
        print("\n" + figures.summary())
    path = os.environ.get("CRASH_REPORT")
    if path:
        with Path(path).open("a") as handle:
            handle.write(json.dumps(figures.__dict__) + "\n")


@pytest.mark.slow
async def test_kill_9_under_write_load_loses_no_acknowledged_write(
    backend: str,
    database_url: str,
    keyring: KeyRing,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = server_env(database_url, keyring, tmp_path / "data", SWEEP_INTERVAL_SECONDS="0")
    rng = random.Random(SEED)
    tokens = Tokens(keyring)
    figures = Figures(backend=backend, seed=SEED)
    service = Service(env, tmp_path)
    began = time.monotonic()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    try:
        await service.start()
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            assert service.server is not None
            head, requester, workspaces = await _setup(http, service.server.base_url, tokens)
            load = Load(service, http, tokens, figures, head, requester, workspaces, rng)
            async with anyio.create_task_group() as group:
                for _ in range(WORKERS):
                    group.start_soon(load.worker)
                group.start_soon(_controller, service, load, rng)
            figures.acknowledged = len(load.acks)
            assert service.server is not None
            api_lost = await _check_api(service.server.base_url, tokens, load, http)
        service.stop()
        permits, events = await _database_rows(database_url)
        lost, phantom, broken = _check_database(load, permits, events)
        figures.lost = len({*api_lost, *lost})  # acknowledged writes missing by either
        figures.phantom = len(phantom)
        figures.permits = len(permits)
        figures.audit_events = await _verify_chain(database_url)
        figures.seconds = round(time.monotonic() - began, 1)
    finally:
        service.stop()
        _report(figures, capsys)

    assert figures.kills >= KILLS
    assert figures.acknowledged > 0
    assert not api_lost, list(api_lost.items())[:20]
    assert not lost, list(lost.items())[:20]
    assert figures.lost == 0
    assert not phantom, phantom[:20]
    assert not broken, broken[:20]
    assert figures.server_errors == 0, f"server errors, see {tmp_path}/server-*.log"
    # Each incarnation served writes, so every kill cut a live load.
    assert {ack.incarnation for ack in load.acks} == set(range(1, KILLS + 2))
