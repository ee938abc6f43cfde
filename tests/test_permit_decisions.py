"""Deciding permits (docs/RULES.md #roles, #permits): approvers and their capacities, who may act,
the state machine, If-Match, expiry with and without the sweep, workspace conflicts, a permit's
events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.sweeper import sweep_database
from tests.permits_support import Office, audit_actions, move_window, stored_status
from tests.support import ADMIN_NIP, Org, assert_problem

pytestmark = pytest.mark.anyio

REASON = {"reason": "Jadwal berubah"}
ACTIONS = ("approve", "deny", "cancel", "revoke")


def _body(action: str) -> dict[str, Any]:
    return REASON if action in ("deny", "revoke") else {}


async def _read(client: httpx.AsyncClient, org: Org, permit_id: str, nip: str) -> httpx.Response:
    return await client.get(f"/api/v1/permits/{permit_id}", headers=org.as_(nip))


async def _booking_office(org: Org) -> tuple[Office, str, datetime]:
    """An office, its head's NIP, and 09:00 UTC tomorrow, for booking windows."""
    office = await Office.create(org)
    nine = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    return office, office.head["nip"], nine


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- approvers and their capacities ------------------------------------------------------


async def test_the_head_approves(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    response = await office.act(permit["id"], "approve", office.head["nip"], {"note": "Silakan"})
    body = await _ok(response)
    assert body["status"] == "approved"
    assert (body["decided_by"], body["decided_as"], body["decision_note"]) == (
        office.head["nip"],
        "head",
        "Silakan",
    )
    assert body["decided_at"].endswith("Z")
    assert body["version"] == 2
    assert body["approvers"] == []
    assert response.headers["ETag"] == '"2"'
    read = await _read(client, org, permit["id"], office.staff["nip"])
    assert read.json() == body
    assert read.headers["ETag"] == '"2"'
    assert await audit_actions(app, permit["id"]) == [
        ("permit.submitted", office.staff["nip"]),
        ("permit.approved", office.head["nip"]),
    ]


async def test_approve_needs_no_body(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    response = await client.post(
        f"/api/v1/permits/{permit['id']}/approve", headers=org.as_(office.head["nip"])
    )
    body = await _ok(response)
    assert (body["status"], body["decision_note"]) == ("approved", None)


@pytest.mark.parametrize("kind", ["plh", "plt"])
async def test_a_delegate_in_force_decides_in_their_capacity(
    client: httpx.AsyncClient, org: Org, kind: str
) -> None:
    office = await Office.create(org)
    await office.delegate(office.colleague["nip"], kind)
    approved = await office.submit()
    denied = await office.submit(starts_in=timedelta(hours=3))
    assert approved["approvers"] == [office.head["nip"], office.colleague["nip"]]
    read = await _read(client, org, approved["id"], office.colleague["nip"])
    assert read.status_code == 200
    body = await _ok(await office.act(approved["id"], "approve", office.colleague["nip"]))
    assert (body["status"], body["decided_by"], body["decided_as"]) == (
        "approved",
        office.colleague["nip"],
        kind,
    )
    body = await _ok(await office.act(denied["id"], "deny", office.colleague["nip"], REASON))
    assert (body["status"], body["decided_as"], body["decision_note"]) == (
        "denied",
        kind,
        REASON["reason"],
    )
    # The delegate may also revoke what was approved.
    body = await _ok(await office.act(approved["id"], "revoke", office.colleague["nip"], REASON))
    assert (body["status"], body["closed_by"]) == ("revoked", office.colleague["nip"])


async def test_delegations_not_in_force_give_no_say(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    await office.delegate(office.colleague["nip"], "plh", starts_in=timedelta(hours=1))
    withdrawn = await office.delegate(office.staff["nip"], "plh")
    requester = await org.employee(unit_code=office.unit["code"])
    permit = await office.submit(requester["nip"])
    assert set(permit["approvers"]) == {office.head["nip"], office.staff["nip"]}
    revoked = await client.delete(f"/api/v1/delegations/{withdrawn['id']}", headers=org.admin)
    assert revoked.status_code in (200, 204), revoked.text
    for former in (office.colleague["nip"], office.staff["nip"]):
        assert_problem(await _read(client, org, permit["id"], former), 404)
        assert_problem(await office.act(permit["id"], "approve", former), 404)
    read = await _read(client, org, permit["id"], requester["nip"])
    assert read.json()["approvers"] == [office.head["nip"]]


async def test_a_head_asking_for_their_own_unit_goes_up_to_the_parent_head(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    await office.delegate(office.staff["nip"], "plh")  # the head's own Plh
    permit = await office.submit(office.head["nip"])
    assert permit["unit_code"] == office.unit["code"]
    assert permit["approvers"] == [parent.head["nip"]]
    # The Plh acts for the requester: not an approver here, so the permit is not theirs to see.
    assert_problem(await _read(client, org, permit["id"], office.staff["nip"]), 404)
    assert_problem(await office.act(permit["id"], "approve", office.staff["nip"]), 404)
    assert_problem(
        await office.act(permit["id"], "approve", office.head["nip"]),
        403,
        "self_decision_forbidden",
    )
    assert (await _read(client, org, permit["id"], parent.head["nip"])).status_code == 200
    body = await _ok(await office.act(permit["id"], "approve", parent.head["nip"]))
    assert (body["decided_by"], body["decided_as"]) == (parent.head["nip"], "parent_head")
    # The staff's own permits still go to their head (and the Plh).
    staff_permit = await office.submit(office.colleague["nip"], starts_in=timedelta(hours=3))
    assert staff_permit["approvers"] == [office.head["nip"], office.staff["nip"]]


async def test_the_parent_units_plh_may_decide_an_escalated_permit(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    await parent.delegate(parent.staff["nip"], "plh")
    permit = await office.submit(office.head["nip"])
    assert permit["approvers"] == [parent.head["nip"], parent.staff["nip"]]
    body = await _ok(await office.act(permit["id"], "deny", parent.staff["nip"], REASON))
    assert (body["status"], body["decided_by"]) == ("denied", parent.staff["nip"])


async def test_a_vacant_unit_is_decided_by_its_plt_or_else_the_parent_head(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    vacated = await client.patch(
        f"/api/v1/units/{office.unit['code']}", json={"head_nip": None}, headers=org.admin
    )
    assert vacated.status_code == 200, vacated.text
    nobody = await office.submit()
    assert nobody["approvers"] == [parent.head["nip"]]
    await office.delegate(office.colleague["nip"], "plt")
    with_plt = await office.submit(starts_in=timedelta(hours=3))
    assert with_plt["approvers"] == [office.colleague["nip"]]
    body = await _ok(await office.act(with_plt["id"], "approve", office.colleague["nip"]))
    assert body["decided_as"] == "plt"
    # The first permit is the Plt's now too: approvers are resolved at decision time.
    assert_problem(await office.act(nobody["id"], "approve", parent.head["nip"]), 404)
    body = await _ok(await office.act(nobody["id"], "deny", office.colleague["nip"], REASON))
    assert (body["status"], body["decided_as"]) == ("denied", "plt")


async def test_at_the_top_with_nobody_left_no_decision_is_possible(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)  # a top unit: no parent
    permit = await office.submit(office.head["nip"])
    assert permit["approvers"] == []
    for action in ("approve", "deny"):
        problem = assert_problem(
            await office.act(permit["id"], action, ADMIN_NIP, _body(action)), 409, "no_approver"
        )
        assert "Nobody can decide" in problem["detail"]
        assert office.unit["code"] in problem["detail"]
    assert_problem(
        await office.act(permit["id"], "approve", office.head["nip"]),
        403,
        "self_decision_forbidden",
    )
    read = await _read(client, org, permit["id"], office.head["nip"])
    assert (read.json()["status"], read.json()["version"]) == ("pending", 1)
    # The requester may still withdraw it.
    assert (await _ok(await office.act(permit["id"], "cancel", office.head["nip"])))[
        "status"
    ] == "cancelled"


# --- who may act --------------------------------------------------------------------------


async def test_nobody_decides_their_own_permit(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    for action in ("approve", "deny"):
        assert_problem(
            await office.act(permit["id"], action, office.staff["nip"], _body(action)),
            403,
            "self_decision_forbidden",
        )
    await _ok(await office.act(permit["id"], "approve", office.head["nip"]))
    assert_problem(
        await office.act(permit["id"], "revoke", office.staff["nip"], REASON),
        403,
        "self_decision_forbidden",
    )


async def test_a_colleague_cannot_see_the_permit(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    other = await Office.create(org)
    permit = await office.submit()
    for stranger in (office.colleague["nip"], other.head["nip"], other.staff["nip"]):
        assert_problem(await _read(client, org, permit["id"], stranger), 404, "not_found")
        for action in ACTIONS:
            assert_problem(
                await office.act(permit["id"], action, stranger, _body(action)), 404, "not_found"
            )
        events = await client.get(
            f"/api/v1/permits/{permit['id']}/events", headers=org.as_(stranger)
        )
        assert_problem(events, 404)
    # Exactly what an id that never existed gets.
    missing = "01jzzzzzzzzzzzzzzzzzzzzzzz"
    assert_problem(await _read(client, org, missing, office.colleague["nip"]), 404, "not_found")
    assert_problem(await office.act(missing, "approve", office.head["nip"]), 404, "not_found")


async def test_auditors_and_admins_read_but_do_not_decide(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    permit = await office.submit()
    for nip in (auditor["nip"], ADMIN_NIP):
        read = await _read(client, org, permit["id"], nip)
        assert read.status_code == 200
        assert read.json()["id"] == permit["id"]
        for action in ("approve", "deny"):
            problem = assert_problem(
                await office.act(permit["id"], action, nip, _body(action)), 403, "not_an_approver"
            )
            assert office.head["nip"] in problem["detail"]
        assert_problem(await office.act(permit["id"], "cancel", nip), 403, "not_requester")
    await _ok(await office.act(permit["id"], "approve", office.head["nip"]))
    for nip in (auditor["nip"], ADMIN_NIP):
        assert_problem(
            await office.act(permit["id"], "revoke", nip, REASON), 403, "not_an_approver"
        )


@pytest.mark.parametrize("action", ["deny", "revoke"])
async def test_deny_and_revoke_need_a_reason(
    client: httpx.AsyncClient, org: Org, action: str
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    if action == "revoke":
        await _ok(await office.act(permit["id"], "approve", office.head["nip"]))
    path = f"/api/v1/permits/{permit['id']}/{action}"
    head = org.as_(office.head["nip"])
    assert_problem(await client.post(path, headers=head), 422)
    for body in (
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": None},
        {"note": "x"},
        {"reason": "  Tidak sesuai  "},  # text is taken as sent: padding is refused
    ):
        assert_problem(await client.post(path, json=body, headers=head), 422, "validation_error")
    read = await _read(client, org, permit["id"], office.head["nip"])
    assert read.json()["version"] == (1 if action == "deny" else 2)
    body = await _ok(await client.post(path, json={"reason": "Tidak sesuai"}, headers=head))
    reason = body["decision_note"] if action == "deny" else body["close_reason"]
    assert reason == "Tidak sesuai"


# --- the state machine ------------------------------------------------------------------


async def _permit_in(office: Office, app: FastAPI, state: str, hours: int) -> dict[str, Any]:
    """A permit of `office.staff` brought into `state` through the API (expired: by time)."""
    head, staff = office.head["nip"], office.staff["nip"]
    permit = await office.submit(starts_in=timedelta(hours=hours))
    if state in ("approved", "revoked"):
        await _ok(await office.act(permit["id"], "approve", head))
    if state == "denied":
        await _ok(await office.act(permit["id"], "deny", head, REASON))
    if state == "cancelled":
        await _ok(await office.act(permit["id"], "cancel", staff))
    if state == "revoked":
        await _ok(await office.act(permit["id"], "revoke", head, REASON))
    if state == "expired":
        await move_window(app, permit["id"], timedelta(minutes=-1))
    return permit


DISALLOWED = [
    ("pending", "revoke"),
    ("approved", "approve"),
    ("approved", "deny"),
    *(
        (state, action)
        for state in ("denied", "cancelled", "revoked", "expired")
        for action in ACTIONS
    ),
]


@pytest.mark.parametrize(("state", "action"), DISALLOWED)
async def test_disallowed_transitions_are_409(
    client: httpx.AsyncClient, org: Org, app: FastAPI, state: str, action: str
) -> None:
    office = await Office.create(org)
    permit = await _permit_in(office, app, state, 2)
    before = (await _read(client, org, permit["id"], office.head["nip"])).json()
    assert before["status"] == state
    nip = office.staff["nip"] if action == "cancel" else office.head["nip"]
    problem = assert_problem(
        await office.act(permit["id"], action, nip, _body(action)), 409, "invalid_transition"
    )
    assert problem["current_status"] == state
    assert state in problem["detail"]
    after = (await _read(client, org, permit["id"], office.head["nip"])).json()
    assert after == before


@pytest.mark.parametrize(
    ("state", "action", "result"),
    [
        ("pending", "approve", "approved"),
        ("pending", "deny", "denied"),
        ("pending", "cancel", "cancelled"),
        ("approved", "revoke", "revoked"),
        ("approved", "cancel", "cancelled"),
    ],
)
async def test_allowed_transitions(
    client: httpx.AsyncClient, org: Org, app: FastAPI, state: str, action: str, result: str
) -> None:
    office = await Office.create(org)
    permit = await _permit_in(office, app, state, 2)
    nip = office.staff["nip"] if action == "cancel" else office.head["nip"]
    version = (await _read(client, org, permit["id"], nip)).json()["version"]
    body = await _ok(await office.act(permit["id"], action, nip, _body(action)))
    assert (body["status"], body["version"], body["approvers"]) == (result, version + 1, [])
    assert (await audit_actions(app, permit["id"]))[-1] == (f"permit.{result}", nip)


async def test_cancel_by_the_requester_is_recorded(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    pending = await office.submit()
    body = await _ok(
        await office.act(pending["id"], "cancel", office.staff["nip"], {"reason": "Batal"})
    )
    assert (body["status"], body["closed_by"], body["close_reason"]) == (
        "cancelled",
        office.staff["nip"],
        "Batal",
    )
    assert body["closed_at"].endswith("Z")
    assert (body["decided_by"], body["decided_as"]) == (None, None)
    approved = await office.submit(starts_in=timedelta(hours=3))
    await _ok(await office.act(approved["id"], "approve", office.head["nip"]))
    body = await _ok(await office.act(approved["id"], "cancel", office.staff["nip"]))
    assert (body["status"], body["closed_by"], body["close_reason"]) == (
        "cancelled",
        office.staff["nip"],
        None,
    )
    assert body["decided_by"] == office.head["nip"]  # the approval stays on record


async def test_only_the_requester_cancels(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    permit = await office.submit()
    for nip in (office.head["nip"], auditor["nip"], ADMIN_NIP):
        assert_problem(await office.act(permit["id"], "cancel", nip), 403, "not_requester")
    assert_problem(await office.act(permit["id"], "cancel", office.colleague["nip"]), 404)
    read = await _read(client, org, permit["id"], office.staff["nip"])
    assert read.json()["status"] == "pending"


async def test_a_started_permit_can_no_longer_be_cancelled_but_can_be_revoked(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    await _ok(await office.act(permit["id"], "approve", office.head["nip"]))
    await move_window(app, permit["id"], timedelta(minutes=-10))
    problem = assert_problem(
        await office.act(permit["id"], "cancel", office.staff["nip"]), 409, "invalid_transition"
    )
    assert problem["current_status"] == "approved"
    assert "revoke" in problem["detail"]
    body = await _ok(await office.act(permit["id"], "revoke", office.head["nip"], REASON))
    assert body["status"] == "revoked"


async def test_an_ended_permit_cannot_be_revoked(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    await _ok(await office.act(permit["id"], "approve", office.head["nip"]))
    await move_window(app, permit["id"], timedelta(hours=-3))
    problem = assert_problem(
        await office.act(permit["id"], "revoke", office.head["nip"], REASON),
        409,
        "invalid_transition",
    )
    assert problem["current_status"] == "approved"
    assert "ended" in problem["detail"]
    read = await _read(client, org, permit["id"], office.staff["nip"])
    assert read.json()["status"] == "approved"


# --- If-Match ------------------------------------------------------------------------------


async def test_if_match(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    read = await _read(client, org, permit["id"], office.head["nip"])
    assert read.headers["ETag"] == '"1"'
    for stale in ('"0"', '"2"', 'W/"2"', "7"):
        problem = assert_problem(
            await office.act(
                permit["id"], "approve", office.head["nip"], None, **{"If-Match": stale}
            ),
            412,
            "version_mismatch",
        )
        assert problem["current_version"] == 1
    for garbled in ("garbage", '""', "null", "1" * 19):
        problem = assert_problem(
            await office.act(
                permit["id"], "approve", office.head["nip"], None, **{"If-Match": garbled}
            ),
            422,
            "invalid_if_match",
        )
        assert [e["loc"] for e in problem["errors"]] == [["header", "If-Match"]]
    unchanged = await _read(client, org, permit["id"], office.head["nip"])
    assert (unchanged.json()["status"], unchanged.json()["version"]) == ("pending", 1)
    fresh = await office.act(
        permit["id"], "approve", office.head["nip"], None, **{"If-Match": read.headers["ETag"]}
    )
    body = await _ok(fresh)
    assert (body["status"], body["version"]) == ("approved", 2)
    assert fresh.headers["ETag"] == '"2"'
    # The old ETag is stale now, for every decision.
    assert_problem(
        await office.act(permit["id"], "revoke", office.head["nip"], REASON, **{"If-Match": '"1"'}),
        412,
        "version_mismatch",
    )
    body = await _ok(
        await office.act(permit["id"], "revoke", office.head["nip"], REASON, **{"If-Match": "*"})
    )
    assert body["version"] == 3


# --- expiry ---------------------------------------------------------------------------------


async def test_a_pending_permit_past_its_start_is_expired(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    permit = await office.submit()
    await move_window(app, permit["id"], timedelta(minutes=-1))
    # Before any sweep: every read says expired, and so does every decision attempt.
    read = (await _read(client, org, permit["id"], office.staff["nip"])).json()
    assert (read["status"], read["approvers"], read["version"]) == ("expired", [], 1)
    assert await stored_status(app, permit["id"]) == "pending"
    problem = assert_problem(
        await office.act(permit["id"], "approve", office.head["nip"]), 409, "invalid_transition"
    )
    assert problem["current_status"] == "expired"
    assert "expired" in problem["detail"]

    assert await sweep_database(app.state.db) == (1, 0, 0)

    assert await stored_status(app, permit["id"]) == "expired"
    assert await audit_actions(app, permit["id"]) == [
        ("permit.submitted", office.staff["nip"]),
        ("permit.expired", "system"),
    ]
    read = (await _read(client, org, permit["id"], office.staff["nip"])).json()
    assert (read["status"], read["version"]) == ("expired", 2)
    events = await client.get(
        f"/api/v1/permits/{permit['id']}/events", headers=org.as_(auditor["nip"])
    )
    expired = events.json()[-1]
    assert (expired["action"], expired["actor"]) == ("permit.expired", "system")
    assert expired["data"]["from"] == "pending"
    assert expired["data"]["to"] == "expired"
    assert_problem(
        await office.act(permit["id"], "approve", office.head["nip"]), 409, "invalid_transition"
    )
    assert await sweep_database(app.state.db) == (0, 0, 0)


async def test_the_sweep_leaves_other_permits_alone(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    future = await office.submit(starts_in=timedelta(hours=2))
    running = await office.submit(starts_in=timedelta(hours=4))
    await _ok(await office.act(running["id"], "approve", office.head["nip"]))
    await move_window(app, running["id"], timedelta(minutes=-5))
    denied = await office.submit(starts_in=timedelta(hours=6))
    await _ok(await office.act(denied["id"], "deny", office.head["nip"], REASON))
    await move_window(app, denied["id"], timedelta(minutes=-5))
    assert await sweep_database(app.state.db) == (0, 0, 0)
    for permit, status in ((future, "pending"), (running, "approved"), (denied, "denied")):
        assert await stored_status(app, permit["id"]) == status


# --- workspace conflicts ----------------------------------------------------------------


async def test_approved_permits_of_one_workspace_never_overlap(
    client: httpx.AsyncClient, org: Org
) -> None:
    office, head, nine = await _booking_office(org)
    first = await office.submit(start=nine, minutes=60)
    inside = await office.submit(
        office.colleague["nip"], start=nine + timedelta(minutes=15), minutes=30
    )
    straddling = await office.submit(start=nine + timedelta(minutes=30), minutes=60)
    around = await office.submit(start=nine - timedelta(minutes=30), minutes=120)
    await _ok(await office.act(first["id"], "approve", head))
    for overlapping in (inside, straddling, around):
        problem = assert_problem(
            await office.act(overlapping["id"], "approve", head), 409, "workspace_conflict"
        )
        assert problem["conflicting_permit_id"] == first["id"]
        assert first["id"] in problem["detail"]
        read = await _read(client, org, overlapping["id"], head)
        assert (read.json()["status"], read.json()["version"]) == ("pending", 1)
    # A refused approval can still be denied.
    await _ok(await office.act(inside["id"], "deny", head, {"reason": "Ruang sudah dipakai"}))


async def test_back_to_back_windows_and_other_workspaces_do_not_conflict(
    client: httpx.AsyncClient, org: Org
) -> None:
    office, head, nine = await _booking_office(org)
    morning = await office.submit(start=nine, minutes=60)
    next_hour = await office.submit(start=nine + timedelta(hours=1), minutes=60)
    hour_before = await office.submit(start=nine - timedelta(hours=1), minutes=60)
    elsewhere = await org.workspace(office.unit["code"])
    same_time = await office.submit(start=nine, minutes=60, workspace_code=elsewhere["code"])
    for permit in (morning, next_hour, hour_before, same_time):
        assert (await _ok(await office.act(permit["id"], "approve", head)))["status"] == "approved"


async def test_a_withdrawn_approval_frees_the_workspace(
    client: httpx.AsyncClient, org: Org
) -> None:
    office, head, nine = await _booking_office(org)
    first = await office.submit(start=nine, minutes=60)
    second = await office.submit(start=nine + timedelta(minutes=30), minutes=60)
    third = await office.submit(start=nine + timedelta(minutes=45), minutes=30)
    await _ok(await office.act(first["id"], "approve", head))
    assert_problem(await office.act(second["id"], "approve", head), 409, "workspace_conflict")
    await _ok(await office.act(first["id"], "revoke", head, REASON))
    await _ok(await office.act(second["id"], "approve", head))
    problem = assert_problem(
        await office.act(third["id"], "approve", head), 409, "workspace_conflict"
    )
    assert problem["conflicting_permit_id"] == second["id"]
    await _ok(await office.act(second["id"], "cancel", office.staff["nip"]))
    await _ok(await office.act(third["id"], "approve", head))


# --- a permit's events -----------------------------------------------------------------------


async def test_a_permits_events_are_for_auditors_and_admins(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    permit = await office.submit()
    other = await office.submit(starts_in=timedelta(hours=3))
    await _ok(await office.act(permit["id"], "approve", office.head["nip"], {"note": "Ok"}))
    await _ok(await office.act(other["id"], "deny", office.head["nip"], REASON))
    await _ok(await office.act(permit["id"], "revoke", office.head["nip"], REASON))
    path = f"/api/v1/permits/{permit['id']}/events"
    for nip in (auditor["nip"], ADMIN_NIP):
        response = await client.get(path, headers=org.as_(nip))
        assert response.status_code == 200, response.text
        events = response.json()
        assert [e["action"] for e in events] == [
            "permit.submitted",
            "permit.approved",
            "permit.revoked",
        ]
        assert [e["actor"] for e in events] == [
            office.staff["nip"],
            office.head["nip"],
            office.head["nip"],
        ]
        assert {e["subject"] for e in events} == {f"permit:{permit['id']}"}
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs)
        assert events[0]["data"]["workspace_code"] == office.workspace["code"]
        assert events[1]["data"]["decided_as"] == "head"
        assert events[1]["data"]["note"] == "Ok"
        assert events[2]["data"]["reason"] == REASON["reason"]
    for nip in (office.staff["nip"], office.head["nip"]):
        assert_problem(await client.get(path, headers=org.as_(nip)), 403, "auditor_required")
    assert_problem(await client.get(path, headers=org.as_(office.colleague["nip"])), 404)
    assert_problem(
        await client.get("/api/v1/permits/01jzzzzzzzzzzzzzzzzzzzzzzz/events", headers=org.admin),
        404,
    )
