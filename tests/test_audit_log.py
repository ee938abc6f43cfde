"""The audit log as stored (docs/RULES.md #audit): one gap-free, hash-chained, append-only sequence.

These tests read `audit_events` straight from the database and recompute every
hash with nothing but hashlib and an RFC 8785 library, as an auditor would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import rfc8785
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import BACKENDS
from tests.support import ADMIN_NIP, Org, assert_problem, make_code, make_nip

pytestmark = pytest.mark.anyio

GENESIS = "0" * 64
RFC3339_UTC_MICROS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def _instant(value: Any) -> str:
    """RFC 3339 in UTC with `Z` and microseconds, from whatever the driver returns."""
    if isinstance(value, str):  # SQLite: stored as text, in UTC, without an offset
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def stored_events(app: FastAPI) -> list[dict[str, Any]]:
    """Every row of audit_events, oldest first, shaped as the API serves an event."""
    query = text(
        "SELECT seq, at, actor, action, subject, data, prev_hash, hash "
        "FROM audit_events ORDER BY seq"
    )
    async with app.state.db.engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [
        {
            "seq": row["seq"],
            "at": _instant(row["at"]),
            "actor": row["actor"],
            "action": row["action"],
            "subject": row["subject"],
            "data": json.loads(row["data"]) if isinstance(row["data"], str) else row["data"],
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
        }
        for row in rows
    ]


def assert_chain(events: list[dict[str, Any]]) -> None:
    """seq 1..N without gaps; each prev_hash is the previous hash; each hash is recomputed."""
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    previous = GENESIS
    for event in events:
        assert event["prev_hash"] == previous, event["seq"]
        assert RFC3339_UTC_MICROS.fullmatch(event["at"]), event["at"]
        unhashed = {k: event[k] for k in ("seq", "at", "actor", "action", "subject", "data")}
        unhashed["prev_hash"] = event["prev_hash"]
        assert re.fullmatch(r"[0-9a-f]{64}", event["hash"])
        assert hashlib.sha256(rfc8785.dumps(unhashed)).hexdigest() == event["hash"], event["seq"]
        previous = event["hash"]


async def served_events(client: httpx.AsyncClient, org: Org) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/audit/events", params=params, headers=org.admin)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return events


async def test_admin_changes_form_a_gap_free_hash_chain(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    before = len(await stored_events(app))
    unit = await org.unit()
    employee = await org.employee(unit_code=unit["code"], position="Kepala")
    workspace = await org.workspace(unit["code"], kind="studio")
    patched = await client.patch(
        f"/api/v1/units/{unit['code']}",
        json={"head_nip": employee["nip"], "name": "Unit Berkepala"},
        headers=org.admin,
    )
    assert patched.status_code == 200, patched.text

    events = await stored_events(app)
    assert_chain(events)
    new = events[before:]
    assert [(e["action"], e["subject"]) for e in new] == [
        ("unit.created", f"unit:{unit['code']}"),
        ("employee.created", f"employee:{employee['nip']}"),
        ("workspace.created", f"workspace:{workspace['code']}"),
        ("unit.updated", f"unit:{unit['code']}"),
    ]
    assert {e["actor"] for e in new} == {ADMIN_NIP}
    assert all(isinstance(e["data"], dict) and e["data"] for e in new)
    # The stored rows are exactly the events the API serves, which is what the hash covers.
    assert await served_events(client, org) == events


async def test_the_first_event_links_to_sixty_four_zeros(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    await org.unit()
    events = await stored_events(app)
    assert events[0]["seq"] == 1
    assert events[0]["prev_hash"] == GENESIS


UnitAndEvents = tuple[dict[str, Any], list[dict[str, Any]]]


@pytest.fixture
async def unit_and_events(org: Org, app: FastAPI) -> UnitAndEvents:
    """A unit, then the stored events as they are once it is made."""
    unit = await org.unit()
    return unit, await stored_events(app)


async def test_a_change_that_fails_appends_no_event(
    client: httpx.AsyncClient, org: Org, app: FastAPI, unit_and_events: UnitAndEvents
) -> None:
    unit, events = unit_and_events
    duplicate = await client.post(
        "/api/v1/units", json={"code": unit["code"], "name": "Again"}, headers=org.admin
    )
    assert_problem(duplicate, 409)
    unknown_parent = await client.post(
        "/api/v1/units",
        json={"code": make_code(), "name": "Orphan", "parent_code": "NO-SUCH-UNIT"},
        headers=org.admin,
    )
    assert 400 <= unknown_parent.status_code < 500, unknown_parent.text
    not_admin = await client.post(
        "/api/v1/units", json={"code": make_code(), "name": "x"}, headers=org.as_(make_nip())
    )
    assert 400 <= not_admin.status_code < 500
    invalid = await client.patch(
        f"/api/v1/units/{unit['code']}", json={"active": "nope"}, headers=org.admin
    )
    assert_problem(invalid, 422, "validation_error")

    after = await stored_events(app)
    assert after == events
    assert_chain(after)


async def test_a_change_that_changes_nothing_appends_no_event(
    client: httpx.AsyncClient, org: Org, app: FastAPI, unit_and_events: UnitAndEvents
) -> None:
    unit, events = unit_and_events
    same = await client.patch(
        f"/api/v1/units/{unit['code']}", json={"name": unit["name"]}, headers=org.admin
    )
    assert same.status_code == 200, same.text
    assert await stored_events(app) == events


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 1",
        "UPDATE audit_events SET data = '{}'",
        "DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)",
        "DELETE FROM audit_events",
    ],
)
async def test_the_database_refuses_to_change_or_remove_events(
    client: httpx.AsyncClient, org: Org, app: FastAPI, statement: str
) -> None:
    await org.unit()
    events = await stored_events(app)
    with pytest.raises(DBAPIError, match="append-only"):
        async with app.state.db.engine.begin() as connection:
            await connection.execute(text(statement))
    assert await stored_events(app) == events


# SQLite has no TRUNCATE; its DELETE without WHERE is refused above.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"], indirect=True)
async def test_postgresql_refuses_to_truncate_events(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    await org.unit()
    events = await stored_events(app)
    with pytest.raises(DBAPIError, match="append-only"):
        async with app.state.db.engine.begin() as connection:
            await connection.execute(text("TRUNCATE audit_events"))
    assert await stored_events(app) == events


async def test_concurrent_admin_writes_keep_one_gap_free_chain(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit = await org.unit()
    before = len(await stored_events(app))

    async def create_employee() -> httpx.Response:
        body = {"nip": make_nip(), "name": "Pegawai", "employment": "pns", "roles": []}
        return await client.post("/api/v1/employees", json=body, headers=org.admin)

    async def create_unit() -> httpx.Response:
        body = {"code": make_code(), "name": "Unit", "parent_code": unit["code"]}
        return await client.post("/api/v1/units", json=body, headers=org.admin)

    responses = await asyncio.gather(
        *(create_employee() for _ in range(20)), *(create_unit() for _ in range(10))
    )
    assert [r.status_code for r in responses] == [201] * 30, [r.text for r in responses]

    events = await stored_events(app)
    assert_chain(events)
    new = events[before:]
    assert len(new) == 30
    created = {r.json().get("nip") or r.json()["code"] for r in responses}
    assert {e["subject"].split(":", 1)[1] for e in new} == created
