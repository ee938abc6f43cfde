"""Revoking an API key or deactivating an employee takes effect on every instance within
1 s (SPEC §3, docs/RULES.md#never-stale), through real server processes: two instances on
one database, the change made through one, its effect asked of the other.

Each instance is used first (the check's fast path, a verified token remembered, an open
event stream), so that anything a process kept would show. The check and every other
request must refuse at once — the very next request after the change is acknowledged, no
waiting; an open event stream must be closed within the second of the change (on
PostgreSQL a stream on the other instance; on SQLite, which serves one node, on the one
the change went through)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.secretbox import new_key
from tests.permits_support import Office
from tests.push_support import http_stream
from tests.support import ADMIN_NIP, KeyRing, Org, ServerProcess, Tokens, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHECK = "/api/v1/authorizations/check"


@pytest.fixture
def instances(
    backend: str, database_url: str, keyring: KeyRing, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two instances on one database, each with its own data folder (on SQLite, two
    processes on one file on one machine)."""
    key = new_key()
    servers = [
        ServerProcess(server_env(database_url, keyring, tmp_path / name, SECRETS_KEY=key), tmp_path)
        for name in ("a", "b")
    ]
    try:
        for server in servers:
            server.wait_ready()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def clients(
    instances: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """A client of each instance: the change is made through the first."""
    async with (
        httpx.AsyncClient(base_url=instances[0].base_url, timeout=30) as a,
        httpx.AsyncClient(base_url=instances[1].base_url, timeout=30) as b,
    ):
        yield a, b


def _streaming(backend: str, instances: tuple[ServerProcess, ServerProcess]) -> str:
    """Where a stream is held open: on PostgreSQL the instance the change is not made
    through (commits reach every instance through LISTEN/NOTIFY); on SQLite, which serves
    one node, the one it is made through."""
    return instances[1 if backend == "postgresql" else 0].base_url


async def _new_key(
    a: httpx.AsyncClient, admin: dict[str, str], scopes: list[str]
) -> dict[str, str]:
    created = await a.post(
        "/api/v1/api-keys", json={"name": "gerbang", "scopes": scopes}, headers=admin
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _used(
    other: httpx.AsyncClient, office: Office, key: str, staff_token: dict[str, str]
) -> dict[str, str]:
    """The key and the staff member's token used on `other` (several times each: a kept
    reading or a remembered token would be kept by now); the check's query."""
    query = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    for _ in range(3):
        answer = await other.get(CHECK, params=query, headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.text
        assert answer.json()["authorized"] is False
        answer = await other.get(CHECK, params=query, headers=staff_token)
        assert answer.status_code == 200, answer.text
        assert (await other.get("/api/v1/me", headers=staff_token)).status_code == 200
    return query


def _refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code, response.text


async def _closed_within(
    next_event: Callable[[float], Awaitable[Any]], changed: float, seconds: float
) -> float:
    """How long after `changed` (the change acknowledged, `time.monotonic`) the stream says
    it is closed for a revoked credential."""
    while True:
        left = seconds - (time.monotonic() - changed)
        assert left > 0, f"the stream was still open {seconds} s after the change"
        event = await next_event(left)
        if event.event == "close":
            assert event.json["code"] == "credential_revoked", event.json
            return time.monotonic() - changed


async def test_a_revoked_key_is_refused_by_every_instance_at_once(
    backend: str,
    instances: tuple[ServerProcess, ServerProcess],
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    tokens: Tokens,
) -> None:
    a, b = clients
    admin = tokens.auth(ADMIN_NIP)
    office = await Office.create(Org(a, tokens))
    created = await _new_key(a, admin, ["check", "events"])
    key = {"X-API-Key": created["key"]}
    query = await _used(b, office, created["key"], tokens.auth(office.staff["nip"]))
    async with http_stream(_streaming(backend, instances), key) as next_event:
        revoked = await a.delete(f"/api/v1/api-keys/{created['id']}", headers=admin)
        assert revoked.status_code == 200, revoked.text
        changed = time.monotonic()
        for instance in (b, a):
            _refused(await instance.get(CHECK, params=query, headers=key), "api_key_revoked")
        assert await _closed_within(next_event, changed, 1.0) < 1.0


async def test_a_deactivated_employee_is_refused_by_every_instance_at_once(
    backend: str,
    instances: tuple[ServerProcess, ServerProcess],
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    tokens: Tokens,
) -> None:
    a, b = clients
    admin = tokens.auth(ADMIN_NIP)
    org = Org(a, tokens)
    office = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])  # sees every event of the stream
    key = {"X-API-Key": (await _new_key(a, admin, ["check"]))["key"]}
    staff_token = tokens.auth(office.staff["nip"])
    query = await _used(b, office, key["X-API-Key"], staff_token)
    async with http_stream(
        _streaming(backend, instances), tokens.auth(auditor["nip"])
    ) as next_event:
        for nip in (office.staff["nip"], auditor["nip"]):
            off = await a.patch(f"/api/v1/employees/{nip}", json={"active": False}, headers=admin)
            assert off.status_code == 200, off.text
        changed = time.monotonic()  # the second (the auditor's) acknowledged
        for instance in (b, a):
            _refused(
                await instance.get(CHECK, params=query, headers=staff_token), "employee_inactive"
            )
            _refused(await instance.get("/api/v1/me", headers=staff_token), "employee_inactive")
        assert await _closed_within(next_event, changed, 1.0) < 1.0
    # The key still answers for the deactivated employee's pair (a gateway asks about
    # anyone): only the employee's own credential stopped.
    answer = await b.get(CHECK, params=query, headers=key)
    assert answer.status_code == 200, answer.text
