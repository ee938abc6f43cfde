"""The permit's lifecycle as a table (docs/RULES.md#transitions): every row it allows is taken
over HTTP and records its audit event; what it does not allow is a 409 naming the current
status; guards and parties hold; the expiry sweep goes through the same function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.permits.lifecycle import (
    ACTIONS,
    APPROVER,
    NO_OVERLAP,
    REQUESTER,
    SYSTEM,
    TRANSITIONS,
    UNENDED,
    UNSTARTED,
    Transition,
    Window,
    effective_status,
    is_overdue,
)
from app.permits.vocabulary import STATUSES
from app.sweeper import sweep_database
from tests.permits_support import Office, audit_actions, move_window, stored_status
from tests.support import Org, assert_problem

pytestmark = pytest.mark.anyio

PEOPLES = [t for t in TRANSITIONS if t.by is not SYSTEM]
TEXT = "Sesuai jadwal"

# The `data` of each transition's audit event beyond from, to and version: a public contract
# (docs/AUDIT.md), written out here rather than derived from the table.
EVENT_DATA = {
    "permit.approved": {"decided_as", "acting_for_unit", "note"},
    "permit.denied": {"decided_as", "acting_for_unit", "reason"},
    "permit.cancelled": {"reason"},
    "permit.revoked": {"acting_as", "acting_for_unit", "reason"},
    "permit.expired": {"starts_at"},
}


def _id(row: Transition) -> str:
    return f"{row.source}-{row.action}"


# --- the table itself ------------------------------------------------------------------------


def test_every_action_has_one_party_and_each_state_at_most_one_row() -> None:
    for action, rows in ACTIONS.items():
        assert len({row.by for row in rows}) == 1, action
        assert len({row.target for row in rows}) == 1, action
        assert len({row.source for row in rows}) == len(rows), action


def test_the_table_speaks_the_vocabulary() -> None:
    for row in TRANSITIONS:
        assert {row.source, row.target} <= set(STATUSES)
        assert row.audit == f"permit.{row.target}"
        assert row.audit in EVENT_DATA
    assert {row.action for row in TRANSITIONS} == {"approve", "deny", "cancel", "revoke", "expire"}


class _Permit:
    def __init__(self, status: str, starts_in: timedelta) -> None:
        self.status = status
        self.starts_at = datetime.now(UTC) + starts_in


@pytest.mark.parametrize("status", STATUSES)
def test_only_a_pending_permit_past_its_start_is_effectively_expired(status: str) -> None:
    now = datetime.now(UTC)
    assert effective_status(_Permit(status, timedelta(minutes=5)), now) == status
    past = _Permit(status, timedelta(minutes=-5))
    assert effective_status(past, now) == ("expired" if status == "pending" else status)
    assert is_overdue(past, now) == (status == "pending")


# --- every allowed transition, over HTTP ------------------------------------------------------


async def _in_state(office: Office, state: str) -> dict[str, Any]:
    """A permit of `office.staff`, two hours ahead, brought into `state` through the API."""
    permit = await office.submit(starts_in=timedelta(hours=2))
    if state == "approved":
        response = await office.act(permit["id"], "approve", office.head["nip"])
        assert response.status_code == 200, response.text
        return dict(response.json())
    assert state == "pending"
    return permit


def _party(office: Office, row: Transition) -> tuple[str, str]:
    """Who may take the row, and who may read the permit but not take it."""
    if row.by is APPROVER:
        return office.head["nip"], office.staff["nip"]
    assert row.by is REQUESTER
    return office.staff["nip"], office.head["nip"]


async def _events(org: Org, permit_id: str) -> list[dict[str, Any]]:
    response = await org.client.get(f"/api/v1/permits/{permit_id}/events", headers=org.admin)
    assert response.status_code == 200, response.text
    return list(response.json())


@pytest.mark.parametrize("row", PEOPLES, ids=_id)
async def test_every_allowed_transition(
    client: httpx.AsyncClient, org: Org, app: FastAPI, row: Transition
) -> None:
    office = await Office.create(org)
    before = await _in_state(office, row.source)
    nip, other = _party(office, row)
    body = {row.text: TEXT} if row.text else {}
    code = "self_decision_forbidden" if row.by is APPROVER else "not_requester"
    assert_problem(await office.act(before["id"], row.action, other, body), 403, code)

    response = await office.act(before["id"], row.action, nip, body)
    assert response.status_code == 200, response.text
    after = response.json()
    assert (after["status"], after["version"], after["approvers"]) == (
        row.target,
        before["version"] + 1,
        [],
    )
    assert response.headers["ETag"] == f'"{after["version"]}"'
    assert await stored_status(app, before["id"]) == row.target
    assert (await audit_actions(app, before["id"]))[-1] == (row.audit, nip)
    event = (await _events(org, before["id"]))[-1]
    assert (event["action"], event["actor"]) == (row.audit, nip)
    data = event["data"]
    assert set(data) == {"from", "to", "version"} | EVENT_DATA[row.audit]
    assert (data["from"], data["to"], data["version"]) == (row.source, row.target, after["version"])
    if row.text:
        assert data[row.text] == TEXT
    if row.by is APPROVER:
        capacity = data.get("decided_as", data.get("acting_as"))
        assert (capacity, data["acting_for_unit"]) == ("head", office.unit["code"])


# --- what the table does not allow -------------------------------------------------------------


async def _in_any_state(office: Office, app: FastAPI, state: str) -> dict[str, Any]:
    if state in ("pending", "approved"):
        return await _in_state(office, state)
    if state == "expired":
        permit = await office.submit()
        await move_window(app, permit["id"], timedelta(minutes=-1))
        return permit
    # The rows that end in `state`, taken by their party from their source state.
    row = next(t for t in PEOPLES if t.target == state)
    permit = await _in_state(office, row.source)
    body = {row.text: TEXT} if row.text else {}
    response = await office.act(permit["id"], row.action, _party(office, row)[0], body)
    assert response.status_code == 200, response.text
    return dict(response.json())


# For each state, the actions people may not take from it (every one of them for the first
# action in the table's order, a sample for the rest: tests/test_permit_decisions.py has all).
DISALLOWED = [
    (state, action)
    for state in STATUSES
    for action in ACTIONS
    if action != "expire" and all(t.source != state for t in ACTIONS[action])
]
SAMPLE = [pair for n, pair in enumerate(DISALLOWED) if pair[0] == "pending" or n % 3 == 0]


@pytest.mark.parametrize(("state", "action"), SAMPLE)
async def test_a_transition_the_table_does_not_hold_is_409(
    client: httpx.AsyncClient, org: Org, app: FastAPI, state: str, action: str
) -> None:
    office = await Office.create(org)
    permit = await _in_any_state(office, app, state)
    row = ACTIONS[action][0]
    events = await audit_actions(app, permit["id"])
    body = {row.text: TEXT} if row.text else {}
    problem = assert_problem(
        await office.act(permit["id"], action, _party(office, row)[0], body),
        409,
        "invalid_transition",
    )
    assert problem["current_status"] == state
    assert f"is {state}; it cannot be {row.target}" in problem["detail"]
    assert await audit_actions(app, permit["id"]) == events


# --- guards ----------------------------------------------------------------------------------

# Where a guard fails: the window moved so that it has begun (not ended), or has ended.
GUARD_FAILS = {UNSTARTED: timedelta(minutes=-10), UNENDED: timedelta(hours=-3)}


@pytest.mark.parametrize("row", [t for t in PEOPLES if t.guard is not None], ids=_id)
async def test_a_guard_that_does_not_hold_refuses_the_row(
    client: httpx.AsyncClient, org: Org, app: FastAPI, row: Transition
) -> None:
    office = await Office.create(org)
    permit = await _in_state(office, row.source)
    body = {row.text: TEXT} if row.text else {}
    nip = _party(office, row)[0]
    if row.guard is NO_OVERLAP:
        other = await office.submit(
            starts_in=timedelta(hours=2, minutes=30), nip=office.colleague["nip"]
        )
        response = await office.act(other["id"], "approve", office.head["nip"])
        assert response.status_code == 200, response.text
        problem = assert_problem(
            await office.act(permit["id"], row.action, nip, body), 409, "workspace_conflict"
        )
        assert problem["conflicting_permit_id"] == other["id"]
    else:
        assert isinstance(row.guard, Window)
        await move_window(app, permit["id"], GUARD_FAILS[row.guard])
        problem = assert_problem(
            await office.act(permit["id"], row.action, nip, body), 409, "invalid_transition"
        )
        assert problem["current_status"] == row.source
        assert row.guard.refusal in problem["detail"]
    assert await stored_status(app, permit["id"]) == row.source


# --- the sweep goes through the same function ------------------------------------------------


async def test_the_sweep_records_expiry_as_the_tables_system_row(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    (row,) = ACTIONS["expire"]
    office = await Office.create(org)
    permit = await office.submit()
    await move_window(app, permit["id"], timedelta(minutes=-1))
    stale = await office.client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)
    assert (stale.json()["status"], stale.json()["version"]) == (row.target, 1)

    assert await sweep_database(app.state.db) == (1, 0, 0)

    read = await office.client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)
    swept = read.json()
    assert (swept["status"], swept["version"], read.headers["ETag"]) == (row.target, 2, '"2"')
    assert swept["updated_at"] > stale.json()["updated_at"]
    assert (swept["decided_by"], swept["closed_by"]) == (None, None)
    event = (await _events(org, permit["id"]))[-1]
    assert (event["action"], event["actor"]) == (row.audit, "system")
    assert event["data"] == {
        "from": row.source,
        "to": row.target,
        "version": 2,
        "starts_at": swept["starts_at"],
    }
    # Recorded once: a second sweep finds nothing, and people still cannot act on it.
    assert await sweep_database(app.state.db) == (0, 0, 0)
    assert_problem(
        await office.act(permit["id"], "cancel", office.staff["nip"]), 409, "invalid_transition"
    )
    assert [a for a, _ in await audit_actions(app, permit["id"])] == [
        "permit.submitted",
        row.audit,
    ]
