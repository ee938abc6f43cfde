"""Reminders and escalation of permits still pending near their start (SPEC §8,
docs/RULES.md#escalation), on both databases: escalation holds on every read and decision
whether or not the sweep ran; the sweep records each once, on any number of instances;
never an automatic approval.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.permits.approvers import session_policy
from app.sweeper import sweep_database
from tests.permits_support import Office, audit_actions, move_window
from tests.support import Org, audit_trail, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The contract's defaults: remind 120 minutes before the start, escalate 30."""
    return settings.model_copy(
        update={
            "policy_remind_before_start_minutes": 120,
            "policy_escalate_before_start_minutes": 30,
        }
    )


async def offices(org: Org) -> tuple[Office, Office]:
    """A unit (with a head and staff) under a parent unit with a head of its own."""
    parent = await Office.create(org)
    return await Office.create(org, parent_code=parent.unit["code"]), parent


async def read(client: httpx.AsyncClient, org: Org, permit_id: str, nip: str) -> httpx.Response:
    return await client.get(f"/api/v1/permits/{permit_id}", headers=org.as_(nip))


async def test_a_permit_soon_to_start_is_escalated_on_every_read_before_any_sweep(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office, parent = await offices(org)
    soon = await office.submit(starts_in=timedelta(minutes=20))
    later = await office.submit(starts_in=timedelta(hours=3))
    head, above = office.head["nip"], parent.head["nip"]
    assert soon["approvers"] == [head, above]  # the answer to the submission already
    assert later["approvers"] == [head]
    assert (await read(client, org, soon["id"], above)).json()["approvers"] == [head, above]
    assert (await read(client, org, later["id"], above)).status_code == 404
    listed = await client.get("/api/v1/permits", params={"awaiting": "me"}, headers=org.as_(above))
    assert [p["id"] for p in listed.json()["items"]] == [soon["id"]]
    # The parent unit's head decides it, as `parent_head`; no sweep has run.
    response = await office.act(soon["id"], "approve", above)
    assert response.status_code == 200, response.text
    assert response.json()["decided_as"] == "parent_head"
    refused = await office.act(later["id"], "approve", above)
    assert refused.status_code == 404  # not theirs to see before it escalates
    assert await audit_actions(app, soon["id"]) == [
        ("permit.submitted", office.staff["nip"]),
        ("permit.approved", above),
    ]


async def test_the_sweep_records_a_reminder_and_an_escalation_once(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office, parent = await offices(org)
    permit = await office.submit(starts_in=timedelta(minutes=20))
    far = await office.submit(starts_in=timedelta(hours=5))
    assert await sweep_database(app.state.db) == (0, 2, 0)
    assert await sweep_database(app.state.db) == (0, 0, 0)
    trail = await audit_trail(app, f"permit:{permit['id']}")
    assert [(action, actor) for action, actor, _ in trail] == [
        ("permit.submitted", office.staff["nip"]),
        ("permit.reminder", "system"),
        ("permit.escalated", "system"),
    ]
    # Who may decide it when the reminder is recorded: escalated already (a late sweep).
    assert trail[1][2]["approvers"] == [office.head["nip"], parent.head["nip"]]
    assert trail[2][2]["added_approvers"] == [parent.head["nip"]]
    assert await audit_actions(app, far["id"]) == [("permit.submitted", office.staff["nip"])]
    # Never an automatic approval: still pending, now with both approvers.
    shown = (await read(client, org, permit["id"], office.staff["nip"])).json()
    assert (shown["status"], shown["approvers"]) == (
        "pending",
        [office.head["nip"], parent.head["nip"]],
    )


async def test_a_delegate_of_the_parent_unit_joins_as_plh(
    client: httpx.AsyncClient, org: Org
) -> None:
    office, parent = await offices(org)
    deputy = await org.employee(unit_code=parent.unit["code"])
    await parent.delegate(deputy["nip"], kind="plh")
    permit = await office.submit(starts_in=timedelta(minutes=15))
    assert permit["approvers"] == [office.head["nip"], parent.head["nip"], deputy["nip"]]
    response = await office.act(permit["id"], "approve", deputy["nip"])
    assert response.status_code == 200, response.text
    assert response.json()["decided_as"] == "plh"


async def test_a_head_s_own_permit_escalates_one_level_further(
    client: httpx.AsyncClient, org: Org
) -> None:
    """A unit head's permit is decided a level up already; escalation adds the level above
    that one."""
    top = await Office.create(org)
    middle = await Office.create(org, parent_code=top.unit["code"])
    office = await Office.create(org, parent_code=middle.unit["code"])
    permit = await office.submit(office.head["nip"], starts_in=timedelta(minutes=10))
    assert permit["approvers"] == [middle.head["nip"], top.head["nip"]]


async def test_nothing_is_recorded_once_the_permit_started_or_was_decided(
    app: FastAPI, org: Org
) -> None:
    office, _ = await offices(org)
    decided = await office.submit(starts_in=timedelta(minutes=20))
    await office.act(decided["id"], "deny", office.head["nip"], {"reason": "Ruang dipakai"})
    assert await sweep_database(app.state.db) == (0, 0, 0)
    assert [a for a, _ in await audit_actions(app, decided["id"])] == [
        "permit.submitted",
        "permit.denied",
    ]


async def test_the_policy_in_force_decides_turned_off_there_is_neither(
    app: FastAPI, client: httpx.AsyncClient, org: Org, settings: Settings, tokens: Any
) -> None:
    """Like expiry, escalation is judged from the permit's start and the policy in force
    now: the same permit read by an instance with both turned off is neither."""
    office, parent = await offices(org)
    permit = await office.submit(starts_in=timedelta(minutes=10))
    assert permit["approvers"] == [office.head["nip"], parent.head["nip"]]
    off = settings.model_copy(
        update={
            "policy_remind_before_start_minutes": 0,
            "policy_escalate_before_start_minutes": 0,
        }
    )
    async with serving(create_app(off)) as other:
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            shown = await http.get(
                f"/api/v1/permits/{permit['id']}", headers=org.as_(office.staff["nip"])
            )
            hidden = await http.get(
                f"/api/v1/permits/{permit['id']}", headers=org.as_(parent.head["nip"])
            )
        assert shown.json()["approvers"] == [office.head["nip"]]
        assert hidden.status_code == 404
        assert await sweep_database(other.state.db) == (0, 0, 0)


async def test_sweeps_running_at_once_record_each_notice_once(
    app: FastAPI, org: Org, settings: Settings
) -> None:
    office, _ = await offices(org)
    permits: list[dict[str, Any]] = [
        await office.submit(starts_in=timedelta(minutes=20)) for _ in range(12)
    ]
    policy = session_policy(120, 30)
    sweepers = [Database.connect(settings.effective_database_url, info=policy) for _ in range(4)]
    try:
        results = await asyncio.gather(*(sweep_database(db) for db in sweepers))
    finally:
        for db in sweepers:
            await db.dispose()
    assert sum(noticed for _, noticed, _ in results) == 2 * len(permits)
    for permit in permits:
        actions = [a for a, _ in await audit_actions(app, permit["id"])]
        assert actions == ["permit.submitted", "permit.reminder", "permit.escalated"]


async def test_time_passing_escalates_on_every_path(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """Submitted hours ahead, a permit whose start draws near (moved in the database, as
    time passing would) is escalated at once on the read, the list, the check's disclosure
    and the decision: no sweep, no cache."""
    office, parent = await offices(org)
    permit = await office.submit(starts_in=timedelta(hours=3))
    above = org.as_(parent.head["nip"])
    check = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    check_at = {**check, "at": permit["starts_at"]}
    before = await client.get("/api/v1/authorizations/check", params=check_at, headers=above)
    assert (before.json()["reason"], before.json()["permit"]) == ("no_permit", None)
    await move_window(app, permit["id"], timedelta(minutes=20))
    shown = await read(client, org, permit["id"], parent.head["nip"])
    assert shown.status_code == 200
    assert shown.json()["approvers"] == [office.head["nip"], parent.head["nip"]]
    listed = await client.get("/api/v1/permits", params={"awaiting": "me"}, headers=above)
    assert [p["id"] for p in listed.json()["items"]] == [permit["id"]]
    moved_at = {**check, "at": shown.json()["starts_at"]}
    after = await client.get("/api/v1/authorizations/check", params=moved_at, headers=above)
    assert after.json()["reason"] == "pending"
    assert after.json()["permit"]["id"] == permit["id"]
    decided = await office.act(permit["id"], "deny", parent.head["nip"], {"reason": "Bentrok"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_as"] == "parent_head"
