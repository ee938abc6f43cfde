"""The permit workflow (SPEC §4): submission under SE 47/2025, approvers, the state machine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.audit.models import AuditEvent
from app.config import Settings
from app.main import create_app
from app.permits.models import Permit
from app.sweeper import sweep_database
from tests.permits_support import Office, permit_body
from tests.support import ADMIN_NIP, Org, assert_problem

pytestmark = pytest.mark.anyio


async def _move_window(app: FastAPI, permit_id: str, starts: timedelta, minutes: int = 60) -> None:
    """Shift a permit's window relative to now, as time passing would."""
    begin = datetime.now(UTC) + starts
    async with app.state.db.write() as session, session.begin():
        await session.execute(
            update(Permit)
            .where(Permit.id == permit_id)
            .values(starts_at=begin, ends_at=begin + timedelta(minutes=minutes))
        )


# --- submission ---------------------------------------------------------------


async def test_submission_returns_the_permit(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    response = await client.post(
        "/api/v1/permits",
        json=permit_body(
            office.workspace["code"], start=datetime(2030, 1, 6, 9, tzinfo=UTC) - timedelta(days=0)
        ),
        headers=org.as_(office.staff["nip"]),
    )
    assert_problem(response, 422, "invalid_window")  # > 90 days ahead
    body = permit_body(office.workspace["code"])
    response = await client.post("/api/v1/permits", json=body, headers=org.as_(office.staff["nip"]))
    assert response.status_code == 201, response.text
    permit = response.json()
    assert response.headers["Location"] == f"/api/v1/permits/{permit['id']}"
    assert response.headers["ETag"] == '"1"'
    assert permit["status"] == "pending"
    assert permit["version"] == 1
    assert permit["requester_nip"] == office.staff["nip"]
    assert permit["unit_code"] == office.unit["code"]
    assert permit["approvers"] == [office.head["nip"]]
    assert permit["starts_at"].endswith("Z")
    assert datetime.fromisoformat(permit["starts_at"]) == datetime.fromisoformat(body["starts_at"])
    for name in ("decided_by", "decided_as", "decided_at", "decision_note"):
        assert permit[name] is None
    assert permit["attestations"] == body["attestations"]


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"purpose": "personal"}, "personal_stream_forbidden", "purpose"),
        ({"workspace_code": "NOPE"}, "unknown_workspace", "workspace_code"),
        ({"minutes": -30}, "invalid_window", "ends_at"),
        ({"minutes": 0}, "invalid_window", "ends_at"),
        ({"minutes": 481}, "invalid_window", "ends_at"),
        ({"starts_in": timedelta(minutes=-10)}, "invalid_window", "starts_at"),
        ({"starts_in": timedelta(days=91)}, "invalid_window", "starts_at"),
    ],
)
async def test_each_policy_rule_has_its_code_and_citation(
    client: httpx.AsyncClient, org: Org, change: dict[str, Any], code: str, field: str
) -> None:
    office = await Office.create(org)
    change = dict(change)  # the parameters are shared by both backends' runs
    workspace = change.pop("workspace_code", office.workspace["code"])
    body = permit_body(workspace, **change)
    problem = assert_problem(
        await client.post("/api/v1/permits", json=body, headers=org.as_(office.staff["nip"])),
        422,
        code,
    )
    assert problem["errors"][0]["loc"] == ["body", field]
    if code != "unknown_workspace":
        assert "47/2025" in problem["detail"]


async def test_a_start_just_past_is_still_accepted(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"], starts_in=timedelta(minutes=-3))
    assert (
        await client.post("/api/v1/permits", json=body, headers=org.as_(office.staff["nip"]))
    ).status_code == 201


async def test_every_attestation_is_required_and_listed(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    attestations = dict.fromkeys(permit_body("X")["attestations"], True)
    attestations["no_confidential_information"] = False
    del attestations["political_neutrality"]
    body = permit_body(office.workspace["code"], attestations=attestations)
    problem = assert_problem(
        await client.post("/api/v1/permits", json=body, headers=org.as_(office.staff["nip"])),
        422,
        "attestation_required",
    )
    assert [e["loc"][-1] for e in problem["errors"]] == [
        "no_confidential_information",
        "political_neutrality",
    ]
    assert "angka 3" in problem["detail"]
    assert "angka 6" in problem["detail"]
    none_at_all = {
        k: v for k, v in permit_body(office.workspace["code"]).items() if k != "attestations"
    }
    problem = assert_problem(
        await client.post(
            "/api/v1/permits", json=none_at_all, headers=org.as_(office.staff["nip"])
        ),
        422,
        "attestation_required",
    )
    assert len(problem["errors"]) == 6


async def test_inactive_workspace_naive_times_and_mass_assignment_are_refused(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    staff = org.as_(office.staff["nip"])
    naive = permit_body(office.workspace["code"], starts_at="2030-01-01T09:00:00")
    assert_problem(
        await client.post("/api/v1/permits", json=naive, headers=staff), 422, "validation_error"
    )
    for field, value in (
        ("status", "approved"),
        ("decided_by", office.head["nip"]),
        ("requester_nip", "x"),
    ):
        body = permit_body(office.workspace["code"], **{field: value})
        assert_problem(
            await client.post("/api/v1/permits", json=body, headers=staff), 422, "validation_error"
        )
    await client.patch(
        f"/api/v1/workspaces/{office.workspace['code']}", json={"active": False}, headers=org.admin
    )
    inactive = permit_body(office.workspace["code"])
    assert_problem(
        await client.post("/api/v1/permits", json=inactive, headers=staff),
        422,
        "workspace_inactive",
    )


async def test_policy_is_published_and_follows_settings(
    client: httpx.AsyncClient, org: Org, settings: Settings
) -> None:
    policy = (await client.get("/api/v1/policy", headers=org.admin)).json()
    assert [c["number"] for c in policy["clauses"]] == [1, 2, 3, 4, 5, 6]
    assert all(c["text_id"] and c["text_en"] for c in policy["clauses"])
    window = next(r for r in policy["rules"] if r["code"] == "invalid_window")
    assert window["limits"]["max_duration_minutes"] == 480
    assert {r["code"] for r in policy["rules"]} == {
        "personal_stream_forbidden",
        "attestation_required",
        "invalid_window",
        "unknown_workspace",
        "workspace_inactive",
    }
    strict = create_app(
        settings.model_copy(update={"policy_max_duration_minutes": 30, "policy_max_lead_days": 7})
    )
    async with strict.router.lifespan_context(strict):
        transport = httpx.ASGITransport(app=strict, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            office = await Office.create(Org(http, org.tokens))
            staff = org.as_(office.staff["nip"])
            long = permit_body(office.workspace["code"], minutes=45)
            assert_problem(
                await http.post("/api/v1/permits", json=long, headers=staff), 422, "invalid_window"
            )
            far = permit_body(office.workspace["code"], starts_in=timedelta(days=8))
            assert_problem(
                await http.post("/api/v1/permits", json=far, headers=staff), 422, "invalid_window"
            )
            limits = (await http.get("/api/v1/policy", headers=staff)).json()
            assert (
                next(r for r in limits["rules"] if r["code"] == "invalid_window")["limits"][
                    "max_lead_days"
                ]
                == 7
            )


# --- approvers and decisions ----------------------------------------------------


async def test_head_approves_and_the_decision_is_recorded(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    response = await office.act(permit["id"], "approve", office.head["nip"], {"note": "Silakan"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["decided_by"], body["decided_as"], body["decision_note"]) == (
        "approved",
        office.head["nip"],
        "head",
        "Silakan",
    )
    assert body["version"] == 2
    assert body["approvers"] == []
    assert body["decided_at"].endswith("Z")
    assert response.headers["ETag"] == '"2"'


@pytest.mark.parametrize("kind", ["plh", "plt"])
async def test_delegates_decide_in_their_capacity(
    client: httpx.AsyncClient, org: Org, kind: str
) -> None:
    office = await Office.create(org)
    await office.delegate(office.colleague["nip"], kind)
    permit = await office.submit()
    assert set(permit["approvers"]) == {office.head["nip"], office.colleague["nip"]}
    response = await office.act(
        permit["id"], "deny", office.colleague["nip"], {"reason": "Bentrok jadwal"}
    )
    assert (response.json()["status"], response.json()["decided_as"]) == ("denied", kind)


async def test_a_head_asking_for_their_own_unit_goes_to_the_parent_head(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    await office.delegate(office.staff["nip"], "plh")
    permit = await office.submit(office.head["nip"])
    assert permit["approvers"] == [parent.head["nip"]]  # not the head, not their own Plh
    assert_problem(
        await office.act(permit["id"], "approve", office.head["nip"]),
        403,
        "self_decision_forbidden",
    )
    assert_problem(await office.act(permit["id"], "approve", office.staff["nip"]), 404)
    approved = await office.act(permit["id"], "approve", parent.head["nip"])
    assert approved.json()["decided_as"] == "parent_head"


async def test_at_the_top_with_nobody_left_the_permit_cannot_be_decided(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    permit = await office.submit(office.head["nip"])
    assert permit["approvers"] == []
    problem = assert_problem(
        await office.act(permit["id"], "approve", ADMIN_NIP),
        409,
        "no_approver",
    )
    assert "Nobody can decide" in problem["detail"]


async def test_who_may_see_and_who_may_decide(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    other = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    permit = await office.submit()
    path = f"/api/v1/permits/{permit['id']}"
    assert (await client.get(path, headers=org.as_(office.staff["nip"]))).status_code == 200
    assert (await client.get(path, headers=org.as_(office.head["nip"]))).status_code == 200
    assert (await client.get(path, headers=org.as_(auditor["nip"]))).status_code == 200
    assert (await client.get(path, headers=org.admin)).status_code == 200
    for stranger in (office.colleague, other.head, other.staff):
        assert_problem(await client.get(path, headers=org.as_(stranger["nip"])), 404)
        assert_problem(await office.act(permit["id"], "approve", stranger["nip"]), 404)
    assert_problem(
        await office.act(permit["id"], "approve", office.staff["nip"]),
        403,
        "self_decision_forbidden",
    )
    assert_problem(
        await office.act(permit["id"], "approve", auditor["nip"]), 403, "not_an_approver"
    )
    assert_problem(
        await office.act(permit["id"], "cancel", office.head["nip"]), 403, "not_requester"
    )
    assert_problem(await client.get("/api/v1/permits/unknown", headers=org.admin), 404)


async def test_reasons_are_required_for_deny_and_revoke(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        assert_problem(await office.act(permit["id"], "deny", office.head["nip"], body), 422)
    await office.act(permit["id"], "approve", office.head["nip"])
    assert_problem(await office.act(permit["id"], "revoke", office.head["nip"], {}), 422)


async def test_the_state_machine(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    head, staff = office.head["nip"], office.staff["nip"]
    reason = {"reason": "Alasan"}

    denied = await office.submit()
    assert (await office.act(denied["id"], "deny", head, reason)).json()["status"] == "denied"
    for action, nip in (("approve", head), ("deny", head), ("revoke", head), ("cancel", staff)):
        body = {} if action == "approve" else reason
        problem = assert_problem(
            await office.act(denied["id"], action, nip, body), 409, "invalid_transition"
        )
        assert problem["current_status"] == "denied"

    cancelled = await office.submit()
    response = await office.act(cancelled["id"], "cancel", staff, {"reason": "Batal"})
    assert (
        response.json()["status"],
        response.json()["closed_by"],
        response.json()["close_reason"],
    ) == (
        "cancelled",
        staff,
        "Batal",
    )
    assert_problem(await office.act(cancelled["id"], "approve", head), 409, "invalid_transition")

    approved = await office.submit(starts_in=timedelta(hours=3))
    await office.act(approved["id"], "approve", head)
    assert_problem(await office.act(approved["id"], "approve", head), 409, "invalid_transition")
    assert_problem(
        await office.act(approved["id"], "deny", head, reason), 409, "invalid_transition"
    )
    assert (await office.act(approved["id"], "cancel", staff)).json()["status"] == "cancelled"

    revoked = await office.submit(starts_in=timedelta(hours=5))
    await office.act(revoked["id"], "approve", head)
    assert_problem(
        await office.act(revoked["id"], "revoke", staff, reason), 403, "self_decision_forbidden"
    )
    response = await office.act(revoked["id"], "revoke", head, {"reason": "Agenda berubah"})
    assert (response.json()["status"], response.json()["closed_by"]) == ("revoked", head)
    assert_problem(
        await office.act(revoked["id"], "revoke", head, reason), 409, "invalid_transition"
    )
    assert_problem(await office.act(revoked["id"], "cancel", staff), 409, "invalid_transition")


async def test_started_and_ended_windows(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    office = await Office.create(org)
    head, staff = office.head["nip"], office.staff["nip"]
    running = await office.submit()
    await office.act(running["id"], "approve", head)
    await _move_window(app, running["id"], timedelta(minutes=-10))
    problem = assert_problem(
        await office.act(running["id"], "cancel", staff), 409, "invalid_transition"
    )
    assert "revoke" in problem["detail"]
    assert (await office.act(running["id"], "revoke", head, {"reason": "Stop"})).status_code == 200

    ended = await office.submit()
    await office.act(ended["id"], "approve", head)
    await _move_window(app, ended["id"], timedelta(hours=-3))
    assert_problem(
        await office.act(ended["id"], "revoke", head, {"reason": "x"}), 409, "invalid_transition"
    )


async def test_pending_past_its_start_is_expired_everywhere(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    await _move_window(app, permit["id"], timedelta(minutes=-1))
    read = (
        await client.get(f"/api/v1/permits/{permit['id']}", headers=org.as_(office.staff["nip"]))
    ).json()
    assert (read["status"], read["approvers"]) == ("expired", [])
    for action, nip in (("approve", office.head["nip"]), ("cancel", office.staff["nip"])):
        problem = assert_problem(
            await office.act(permit["id"], action, nip), 409, "invalid_transition"
        )
        assert problem["current_status"] == "expired"
    assert await sweep_database(app.state.db) == (1, 0)
    async with app.state.db.read() as session:
        assert (await session.get(Permit, permit["id"])).status == "expired"  # type: ignore[union-attr]
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "permit.expired")
        )
    assert event is not None
    assert (event.actor, event.subject) == ("system", f"permit:{permit['id']}")
    assert await sweep_database(app.state.db) == (0, 0)


async def test_if_match(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    read = await client.get(f"/api/v1/permits/{permit['id']}", headers=org.as_(office.head["nip"]))
    assert read.headers["ETag"] == '"1"'
    stale = await office.act(
        permit["id"], "approve", office.head["nip"], None, **{"If-Match": '"0"'}
    )
    assert assert_problem(stale, 412, "version_mismatch")["current_version"] == 1
    fresh = await office.act(
        permit["id"], "approve", office.head["nip"], None, **{"If-Match": '"1"'}
    )
    assert fresh.json()["version"] == 2


async def test_approved_permits_of_a_workspace_never_overlap(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    head = office.head["nip"]
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    first = await office.submit(start=start, minutes=60)
    overlapping = await office.submit(start=start + timedelta(minutes=30), minutes=60)
    after = await office.submit(start=start + timedelta(minutes=60), minutes=60)
    before = await office.submit(start=start - timedelta(minutes=60), minutes=60)
    assert (await office.act(first["id"], "approve", head)).status_code == 200
    problem = assert_problem(
        await office.act(overlapping["id"], "approve", head), 409, "workspace_conflict"
    )
    assert problem["conflicting_permit_id"] == first["id"]
    assert first["id"] in problem["detail"]
    assert (await office.act(after["id"], "approve", head)).status_code == 200
    assert (await office.act(before["id"], "approve", head)).status_code == 200
    elsewhere = await org.workspace(office.unit["code"])
    other = await office.submit(start=start, minutes=60, workspace_code=elsewhere["code"])
    assert (await office.act(other["id"], "approve", head)).status_code == 200
    await office.act(first["id"], "revoke", head, {"reason": "Dipindah"})
    still = assert_problem(
        await office.act(overlapping["id"], "approve", head), 409, "workspace_conflict"
    )
    assert still["conflicting_permit_id"] == after["id"]
    await office.act(after["id"], "cancel", office.staff["nip"])
    assert (await office.act(overlapping["id"], "approve", head)).status_code == 200


async def test_permit_events_are_for_auditors(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    permit = await office.submit()
    await office.act(permit["id"], "approve", office.head["nip"])
    path = f"/api/v1/permits/{permit['id']}/events"
    events = (await client.get(path, headers=org.as_(auditor["nip"]))).json()
    assert [e["action"] for e in events] == ["permit.submitted", "permit.approved"]
    assert events[1]["actor"] == office.head["nip"]
    assert events[1]["data"]["decided_as"] == "head"
    assert_problem(
        await client.get(path, headers=org.as_(office.staff["nip"])), 403, "auditor_required"
    )
    assert_problem(await client.get(path, headers=org.as_(office.colleague["nip"])), 404)


# --- listing --------------------------------------------------------------------


async def test_listing_shows_what_each_caller_may_see(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    other = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    mine = [await office.submit(starts_in=timedelta(hours=h)) for h in (1, 2, 3)]
    theirs = await other.submit()

    async def ids(nip: str, **params: Any) -> list[str]:
        response = await client.get("/api/v1/permits", params=params, headers=org.as_(nip))
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert await ids(office.staff["nip"]) == [p["id"] for p in mine]
    assert await ids(office.head["nip"]) == [p["id"] for p in mine]
    assert await ids(office.colleague["nip"]) == []
    assert set(await ids(auditor["nip"])) == {*(p["id"] for p in mine), theirs["id"]}
    assert await ids(office.head["nip"], awaiting="me") == [p["id"] for p in mine]
    assert await ids(office.staff["nip"], awaiting="me") == []

    await office.act(mine[0]["id"], "approve", office.head["nip"])
    await _move_window(app, mine[2]["id"], timedelta(minutes=-5))
    assert await ids(office.head["nip"], awaiting="me") == [mine[1]["id"]]
    assert await ids(auditor["nip"], status="approved") == [mine[0]["id"]]
    assert await ids(auditor["nip"], status="expired") == [mine[2]["id"]]
    assert set(await ids(auditor["nip"], status="pending")) == {mine[1]["id"], theirs["id"]}
    assert await ids(auditor["nip"], workspace_code=other.workspace["code"]) == [theirs["id"]]
    assert await ids(
        auditor["nip"], unit_code=office.unit["code"], requester_nip=office.staff["nip"]
    ) == [p["id"] for p in mine]
    horizon = (datetime.now(UTC) + timedelta(minutes=150)).isoformat()
    assert await ids(office.staff["nip"], **{"from": horizon}) == [mine[1]["id"]]
    assert await ids(office.staff["nip"], to=horizon) == [
        mine[0]["id"],
        mine[1]["id"],
        mine[2]["id"],
    ]


async def test_listing_pages(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    created = [(await office.submit(starts_in=timedelta(hours=h)))["id"] for h in range(1, 6)]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/api/v1/permits", params=params, headers=org.as_(office.head["nip"]))
        ).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created
    bad = await client.get("/api/v1/permits", params={"cursor": "garbage!"}, headers=org.admin)
    assert_problem(bad, 422, "invalid_cursor")


# --- idempotency ------------------------------------------------------------------


async def test_idempotent_submission_and_decision(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    staff = {**org.as_(office.staff["nip"]), "Idempotency-Key": "submit-1"}
    body = permit_body(office.workspace["code"])
    first = await client.post("/api/v1/permits", json=body, headers=staff)
    again = await client.post("/api/v1/permits", json=body, headers=staff)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = await client.post("/api/v1/permits", json={**body, "title": "Lain"}, headers=staff)
    assert_problem(changed, 422, "idempotency_key_reused")
    colleague = {**org.as_(office.colleague["nip"]), "Idempotency-Key": "submit-1"}
    assert (await client.post("/api/v1/permits", json=body, headers=colleague)).json()[
        "id"
    ] != first.json()["id"]
    listed = await client.get(
        "/api/v1/permits", params={"requester_nip": office.staff["nip"]}, headers=org.admin
    )
    assert len(listed.json()["items"]) == 1

    key = {"Idempotency-Key": "approve-1"}
    approve = await office.act(first.json()["id"], "approve", office.head["nip"], None, **key)
    replay = await office.act(first.json()["id"], "approve", office.head["nip"], None, **key)
    assert (approve.status_code, replay.status_code) == (200, 200)
    assert replay.json() == approve.json()
    async with app.state.db.read() as session:
        approvals = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "permit.approved"))
        ).all()
    assert len(approvals) == 1
    too_long = {**staff, "Idempotency-Key": "k" * 201}
    assert_problem(await client.post("/api/v1/permits", json=body, headers=too_long), 422)


async def test_concurrent_duplicates_create_one_permit(
    client: httpx.AsyncClient, org: Org, backend: str
) -> None:
    office = await Office.create(org)
    headers = {**org.as_(office.staff["nip"]), "Idempotency-Key": "dup"}
    body = permit_body(office.workspace["code"])
    responses = await asyncio.gather(
        *(client.post("/api/v1/permits", json=body, headers=headers) for _ in range(10))
    )
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    others = [r for r in responses if r.status_code != 201]
    assert all(r.status_code == 409 and r.json()["code"] == "idempotency_in_flight" for r in others)
    if backend == "sqlite":
        assert not others  # writers queue; each duplicate replays the first response
