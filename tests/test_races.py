"""Races against real server processes: two uvicorn instances sharing one PostgreSQL database, one
instance on SQLite (docs/RULES.md #permits: exactly one concurrent decision wins; approved permits
of a workspace never overlap; concurrent idempotent retries create one permit; the audit chain stays
gap-free).

Repeat with RACE_REPEAT=20 to run each race twenty times in one session.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785

from app.permits import policy
from tests.support import (
    ADMIN_NIP,
    KeyRing,
    ServerProcess,
    Tokens,
    delegation_body,
    fetch_rows,
    make_code,
    make_nip,
    server_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPEAT = int(os.environ.get("RACE_REPEAT", "1"))
ATTESTATIONS = dict.fromkeys(policy.ATTESTATIONS, True)


def permit_body(workspace_code: str, start: datetime, minutes: int = 60) -> dict[str, Any]:
    return {
        "workspace_code": workspace_code,
        "platform": "youtube",
        "channel": "@uji.siaran",
        "purpose": "public_information",
        "title": "Siaran uji",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
        "attestations": ATTESTATIONS,
    }


@pytest.fixture
def servers(
    backend: str, database_url: str, keyring: KeyRing, tmp_path: Path
) -> Iterator[list[ServerProcess]]:
    # The claims here are about what commits, not how fast: a burst of 200 writes on two
    # cores shared with the other test workers may wait longer than the production default
    # for a pool connection, so these servers wait up to 30 s instead of answering 503.
    env = server_env(
        database_url,
        keyring,
        tmp_path / "data",
        SWEEP_INTERVAL_SECONDS="0",
        DATABASE_TIMEOUT_SECONDS="30",
    )
    count = 2 if backend == "postgresql" else 1
    started: list[ServerProcess] = []
    try:
        for _ in range(count):
            server = ServerProcess(env, tmp_path)
            started.append(server)
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections are dropped by the client (2 s) before the server closes them (its
    # 5 s keep-alive), so a request never races the server's close of a reused connection.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        yield client


class Scene:
    """An organisation made through server 0: a unit, its head, a Plh, a requester, a workspace."""

    def __init__(
        self, http: httpx.AsyncClient, servers: list[ServerProcess], tokens: Tokens
    ) -> None:
        self.http, self.servers, self.tokens = http, servers, tokens

    def url(self, i: int, path: str) -> str:
        return self.servers[i % len(self.servers)].base_url + path

    async def post(
        self, path: str, body: Any, nip: str, i: int = 0, **headers: str
    ) -> httpx.Response:
        return await self.http.post(
            self.url(i, path), json=body, headers={**self.tokens.auth(nip), **headers}
        )

    async def build(self) -> Scene:
        admin = ADMIN_NIP
        self.unit = make_code("R")
        assert (
            await self.post("/api/v1/units", {"code": self.unit, "name": "Unit"}, admin)
        ).status_code == 201
        self.head, self.plh, self.requester = make_nip(), make_nip(), make_nip()
        for nip in (self.head, self.plh, self.requester):
            body = {"nip": nip, "name": "Pegawai", "unit_code": self.unit}
            assert (await self.post("/api/v1/employees", body, admin)).status_code == 201
        patch = await self.http.patch(
            self.url(0, f"/api/v1/units/{self.unit}"),
            json={"head_nip": self.head},
            headers=self.tokens.auth(admin),
        )
        assert patch.status_code == 200
        delegation = delegation_body(self.plh, reason="Kepala dinas luar")
        assert (
            await self.post(f"/api/v1/units/{self.unit}/delegations", delegation, admin)
        ).status_code == 201
        self.workspace = make_code("RW")
        body = {"code": self.workspace, "name": "Ruang", "unit_code": self.unit, "kind": "studio"}
        assert (await self.post("/api/v1/workspaces", body, admin)).status_code == 201
        return self

    async def submit(self, start: datetime, minutes: int = 60, i: int = 0) -> str:
        response = await self.post(
            "/api/v1/permits", permit_body(self.workspace, start, minutes), self.requester, i
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


@pytest.fixture
async def scene(servers: list[ServerProcess], http: httpx.AsyncClient, tokens: Tokens) -> Scene:
    return await Scene(http, servers, tokens).build()


async def _verify_chain(database_url: str) -> int:
    (rows,) = await fetch_rows(
        database_url,
        "SELECT seq, at, actor, action, subject, data, prev_hash, hash "
        "FROM audit_events ORDER BY seq",
    )
    previous = "0" * 64
    for expected_seq, row in enumerate(rows, start=1):
        assert row.seq == expected_seq
        assert row.prev_hash == previous
        at = row.at if isinstance(row.at, datetime) else datetime.fromisoformat(str(row.at))
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        data = row.data if isinstance(row.data, dict) else __import__("json").loads(row.data)
        event = {
            "seq": row.seq,
            "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": row.actor,
            "action": row.action,
            "subject": row.subject,
            "data": data,
            "prev_hash": row.prev_hash,
        }
        assert hashlib.sha256(rfc8785.dumps(event)).hexdigest() == row.hash
        previous = row.hash
    return len(rows)


@pytest.mark.parametrize("round_", range(REPEAT))
async def test_exactly_one_concurrent_decision_wins(
    round_: int, scene: Scene, database_url: str
) -> None:
    permit_id = await scene.submit(datetime.now(UTC) + timedelta(hours=1))
    attempts = []
    for i in range(20):
        decider = (scene.head, scene.plh)[i % 2]
        if i % 3 == 0:
            attempts.append(
                scene.post(f"/api/v1/permits/{permit_id}/deny", {"reason": "bentrok"}, decider, i)
            )
        else:
            attempts.append(scene.post(f"/api/v1/permits/{permit_id}/approve", {}, decider, i))
    responses = await asyncio.gather(*attempts)
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 1, [r.text for r in responses if r.status_code != 409]
    assert statuses[409] == 19
    assert all(r.json()["code"] == "invalid_transition" for r in responses if r.status_code == 409)
    final = await scene.http.get(
        scene.url(1, f"/api/v1/permits/{permit_id}"), headers=scene.tokens.auth(ADMIN_NIP)
    )
    assert final.json()["version"] == 2
    assert await _verify_chain(database_url) > 0


@pytest.mark.parametrize("round_", range(REPEAT))
async def test_overlapping_approvals_of_one_workspace_admit_one(
    round_: int, scene: Scene, database_url: str
) -> None:
    start = datetime.now(UTC) + timedelta(hours=2)
    # Ten permits whose windows all share the hour [start+30m, start+60m).
    ids = [await scene.submit(start + timedelta(minutes=3 * k), minutes=60, i=k) for k in range(10)]
    responses = await asyncio.gather(
        *(
            scene.post(f"/api/v1/permits/{pid}/approve", {}, (scene.head, scene.plh)[k % 2], k)
            for k, pid in enumerate(ids)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 1, [r.text for r in responses]
    assert statuses[409] == 9
    winner = next(r.json()["id"] for r in responses if r.status_code == 200)
    for response in responses:
        if response.status_code == 409:
            problem = response.json()
            assert problem["code"] == "workspace_conflict"
            assert problem["conflicting_permit_id"] == winner
    assert await _verify_chain(database_url) > 0


@pytest.mark.parametrize("round_", range(REPEAT))
async def test_back_to_back_windows_all_approve(round_: int, scene: Scene) -> None:
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    ids = [await scene.submit(start + timedelta(minutes=30 * k), minutes=30, i=k) for k in range(8)]
    responses = await asyncio.gather(
        *(
            scene.post(f"/api/v1/permits/{pid}/approve", {}, scene.head, k)
            for k, pid in enumerate(ids)
        )
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]


@pytest.mark.parametrize("round_", range(REPEAT))
async def test_concurrent_retries_with_one_idempotency_key_create_one_permit(
    round_: int, scene: Scene
) -> None:
    body = permit_body(scene.workspace, datetime.now(UTC) + timedelta(hours=4))
    responses = await asyncio.gather(
        *(
            scene.post(
                "/api/v1/permits", body, scene.requester, i, **{"Idempotency-Key": "retry-1"}
            )
            for i in range(12)
        )
    )
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1, [r.text for r in responses]
    for response in responses:
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            assert response.json()["code"] == "idempotency_in_flight"
    listing = await scene.http.get(
        scene.url(0, f"/api/v1/permits?workspace_code={scene.workspace}"),
        headers=scene.tokens.auth(ADMIN_NIP),
    )
    assert [p["id"] for p in listing.json()["items"]] == list(created)


async def test_two_hundred_concurrent_changes_keep_one_gap_free_chain(
    scene: Scene, database_url: str
) -> None:
    start = (datetime.now(UTC) + timedelta(hours=5)).replace(second=0, microsecond=0)
    ids = [
        await scene.submit(start + timedelta(minutes=30 * k), minutes=30, i=k) for k in range(100)
    ]
    before = await _verify_chain(database_url)
    approvals = [
        scene.post(f"/api/v1/permits/{pid}/approve", {}, scene.head, k) for k, pid in enumerate(ids)
    ]
    later = start + timedelta(days=10)
    submissions = [
        scene.post(
            "/api/v1/permits",
            permit_body(scene.workspace, later + timedelta(minutes=30 * k), 30),
            scene.requester,
            k,
        )
        for k in range(100)
    ]
    responses = await asyncio.gather(*approvals, *submissions)
    assert [r.status_code for r in responses] == [200] * 100 + [201] * 100, {
        r.text for r in responses
    }
    assert await _verify_chain(database_url) == before + 200


async def test_two_admins_demoting_each_other_at_once_leave_one(scene: Scene) -> None:
    """docs/RULES.md#last-admin: when the only two admins demote each other at the same
    moment, through different instances, one change wins and the other is refused."""
    first, second = make_nip(), make_nip()
    for nip in (first, second):
        body = {"nip": nip, "name": "Admin", "unit_code": scene.unit, "roles": ["admin"]}
        assert (await scene.post("/api/v1/employees", body, ADMIN_NIP)).status_code == 201

    async def demote(nip: str, by: str, i: int) -> httpx.Response:
        return await scene.http.patch(
            scene.url(i, f"/api/v1/employees/{nip}"),
            json={"roles": []},
            headers=scene.tokens.auth(by),
        )

    assert (await demote(ADMIN_NIP, first, 0)).status_code == 200  # two admins left
    for round_ in range(6):
        one, other = await asyncio.gather(demote(second, first, 0), demote(first, second, 1))
        # One wins; the other finds the winner's change (409), or no longer holds the
        # role when its request is judged (403): either way one admin is left.
        assert sorted([one.status_code, other.status_code])[0] == 200, (one.text, other.text)
        refused = other if one.status_code == 200 else one
        assert refused.status_code in (403, 409), refused.text
        assert refused.json()["code"] in ("admin_required", "last_admin")
        winner = first if one.status_code == 200 else second
        loser = second if winner == first else first
        listing = await scene.http.get(
            scene.url(round_, "/api/v1/employees"),
            params={"limit": 200},
            headers=scene.tokens.auth(winner),
        )
        admins = [e["nip"] for e in listing.json()["items"] if "admin" in e["roles"]]
        assert admins == [winner]
        restored = await scene.http.patch(
            scene.url(0, f"/api/v1/employees/{loser}"),
            json={"roles": ["admin"]},
            headers=scene.tokens.auth(winner),
        )
        assert restored.status_code == 200
