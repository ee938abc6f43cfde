"""The check (docs/RULES.md#check-window): both forms of the query, every `reason`, `at`,
who may ask, no caching, and never stale after a revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.sweeper import sweep_database
from tests.permits_support import WIB, Office, move_window
from tests.support import ADMIN_NIP, Org, assert_problem, make_nip

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/authorizations/check"
PERMIT_FIELDS = (
    "id",
    "requester_nip",
    "workspace_code",
    "platform",
    "channel",
    "starts_at",
    "ends_at",
)


async def _check(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(CHECK, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = dict(response.json())
    assert set(body) == {"authorized", "reason", "checked_at", "permit"}
    assert body["checked_at"].endswith("Z")
    return body


async def _api_key(
    client: httpx.AsyncClient, org: Org, scopes: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "gerbang-siaran"}
    if scopes is not None:
        body["scopes"] = scopes
    created = await client.post("/api/v1/api-keys", json=body, headers=org.admin)
    assert created.status_code == 201, created.text
    return dict(created.json())


def _at(permit: dict[str, Any], minutes: float) -> str:
    """An instant `minutes` after the permit's start, in UTC."""
    return (datetime.fromisoformat(permit["starts_at"]) + timedelta(minutes=minutes)).isoformat()


def _summary(permit: dict[str, Any]) -> dict[str, Any]:
    return {key: permit[key] for key in PERMIT_FIELDS}


class Asker:
    """Asks the check about one requester and workspace, and about one channel."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str], office: Office) -> None:
        self.client, self.headers, self.office = client, headers, office

    async def by_employee(self, at: str | None = None, **params: Any) -> dict[str, Any]:
        query = {"nip": self.office.staff["nip"], "workspace_code": self.office.workspace["code"]}
        return await _check(
            self.client, self.headers, **{**query, **params, **({"at": at} if at else {})}
        )

    async def by_channel(self, at: str | None = None, **params: Any) -> dict[str, Any]:
        query = {"platform": "youtube", "channel": "@diskominfotik.anambas"}
        return await _check(
            self.client, self.headers, **{**query, **params, **({"at": at} if at else {})}
        )

    async def both(self, at: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return await self.by_employee(at), await self.by_channel(at)


async def _asker(client: httpx.AsyncClient, org: Org) -> Asker:
    office = await Office.create(org)
    key = await _api_key(client, org)
    return Asker(client, {"X-API-Key": key["key"]}, office)


# --- authorised ----------------------------------------------------------------------------


async def test_an_approved_stream_is_authorised_inside_its_window(
    client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(client, org)
    office = ask.office
    permit = await office.submit(channel="@DiskominfoTik.Anambas")
    await office.act(permit["id"], "approve", office.head["nip"])
    for minutes in (0, 10, 59.99):
        for answer in await ask.both(_at(permit, minutes)):
            assert (answer["authorized"], answer["reason"]) == (True, "approved"), minutes
            assert answer["permit"] == _summary(permit)


@pytest.mark.parametrize(
    "channel",
    [
        "@diskominfotik.anambas",
        "diskominfotik.anambas",
        "@DISKOMINFOTIK.Anambas",
        "DiskominfoTik.ANAMBAS",
    ],
)
async def test_channels_match_without_case_or_a_leading_at(
    client: httpx.AsyncClient, org: Org, channel: str
) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit(channel="@DiskominfoTik.Anambas")
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    answer = await ask.by_channel(_at(permit, 1), channel=channel)
    assert (answer["authorized"], answer["reason"]) == (True, "approved")
    assert answer["permit"]["channel"] == "@DiskominfoTik.Anambas"  # as the requester wrote it
    for other in ({"platform": "tiktok"}, {"channel": "diskominfotik"}, {"channel": "x.anambas"}):
        missed = await ask.by_channel(_at(permit, 1), **{"channel": channel, **other})
        assert (missed["authorized"], missed["reason"], missed["permit"]) == (
            False,
            "no_permit",
            None,
        )


async def test_at_takes_any_offset(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit()
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    start = datetime.fromisoformat(permit["starts_at"])
    inside_wib = (start + timedelta(minutes=5)).astimezone(WIB).isoformat()
    assert inside_wib.endswith("+07:00")
    assert (await ask.by_employee(inside_wib))["authorized"] is True
    inside_z = (start + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await ask.by_channel(inside_z))["authorized"] is True
    before_wib = (start - timedelta(minutes=1)).astimezone(WIB).isoformat()
    assert (await ask.by_employee(before_wib))["reason"] == "not_started"


# --- every reason ------------------------------------------------------------------------


async def test_no_permit(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    for answer in await ask.both():
        assert (answer["authorized"], answer["reason"], answer["permit"]) == (
            False,
            "no_permit",
            None,
        )
    # A permit for another workspace is no permit for this one.
    elsewhere = await org.workspace(ask.office.unit["code"])
    permit = await ask.office.submit(workspace_code=elsewhere["code"])
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    assert (await ask.by_employee(_at(permit, 1)))["reason"] == "no_permit"
    # Another employee's permit for this workspace is not this employee's.
    theirs = await ask.office.submit(ask.office.colleague["nip"], starts_in=timedelta(hours=3))
    await ask.office.act(theirs["id"], "approve", ask.office.head["nip"])
    assert (await ask.by_employee(_at(theirs, 1)))["reason"] == "no_permit"


async def test_pending(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit(starts_in=timedelta(hours=2))
    # Still pending now: pending for any instant of its window, its start included.
    for minutes in (0, 5, 59.99):
        for answer in await ask.both(_at(permit, minutes)):
            assert (answer["authorized"], answer["reason"]) == (False, "pending")
            assert answer["permit"] == _summary(permit)
    # Outside its window a pending permit is no candidate.
    for at in (None, _at(permit, -1), _at(permit, 60)):
        for answer in await ask.both(at):
            assert (answer["authorized"], answer["reason"], answer["permit"]) == (
                False,
                "no_permit",
                None,
            )


@pytest.mark.parametrize(("action", "reason"), [("deny", "denied"), ("cancel", "cancelled")])
async def test_denied_and_cancelled(
    client: httpx.AsyncClient, org: Org, action: str, reason: str
) -> None:
    ask = await _asker(client, org)
    office = ask.office
    permit = await office.submit()
    nip = office.staff["nip"] if action == "cancel" else office.head["nip"]
    response = await office.act(permit["id"], action, nip, {"reason": "Tidak jadi"})
    assert response.status_code == 200, response.text
    assert (await ask.by_employee())["reason"] == "no_permit"  # outside its window
    for at in (_at(permit, 0), _at(permit, 5)):
        for answer in await ask.both(at):
            assert (answer["authorized"], answer["reason"]) == (False, reason)
            assert answer["permit"] == _summary(permit)


async def test_an_approval_cancelled_before_its_start(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit()
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    await ask.office.act(permit["id"], "cancel", ask.office.staff["nip"])
    for answer in await ask.both(_at(permit, 5)):
        assert (answer["authorized"], answer["reason"]) == (False, "cancelled")


async def test_revoked(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit()
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    revoked = await ask.office.act(permit["id"], "revoke", ask.office.head["nip"], {"reason": "X"})
    assert revoked.status_code == 200
    assert (await ask.by_channel())["reason"] == "no_permit"  # outside its window
    for at in (_at(permit, 0), _at(permit, 5)):
        for answer in await ask.both(at):
            assert (answer["authorized"], answer["reason"]) == (False, "revoked")
            assert answer["permit"] == _summary(permit)


async def test_expired(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit()
    await move_window(app, permit["id"], timedelta(minutes=-2))
    moved = await client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)
    # Before the sweep records it, and after.
    for swept in ((1, 0, 0), (0, 0, 0)):
        for answer in await ask.both():
            assert (answer["authorized"], answer["reason"]) == (False, "expired")
            assert answer["permit"] == _summary(moved.json())
        assert await sweep_database(app.state.db) == swept


async def test_not_started_and_ended(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit(starts_in=timedelta(hours=2))
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    for at in (None, _at(permit, -1), _at(permit, -0.001)):
        for answer in await ask.both(at):
            assert (answer["authorized"], answer["reason"]) == (False, "not_started")
            assert answer["permit"] == _summary(permit)
    for at in (_at(permit, 60), _at(permit, 61), _at(permit, 60 * 24 * 30)):
        for answer in await ask.both(at):
            assert (answer["authorized"], answer["reason"]) == (False, "ended")
            assert answer["permit"] == _summary(permit)


async def test_the_approved_permit_wins_over_others_at_the_same_time(
    client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(client, org)
    office = ask.office
    nine = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    denied = await office.submit(start=nine, minutes=60)
    await office.act(denied["id"], "deny", office.head["nip"], {"reason": "Bentrok"})
    approved = await office.submit(start=nine, minutes=60)
    await office.act(approved["id"], "approve", office.head["nip"])
    await office.submit(start=nine, minutes=60)  # and one still pending
    for answer in await ask.both(_at(approved, 30)):
        assert (answer["authorized"], answer["reason"]) == (True, "approved")
        assert answer["permit"]["id"] == approved["id"]
    # Without `at`: the next permit to come, approved before pending.
    for answer in await ask.both():
        assert (answer["reason"], answer["permit"]["id"]) == ("not_started", approved["id"])


async def test_unknown_employee_and_workspace(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    for nip in (make_nip(), make_nip(employment="pppk")):
        answer = await ask.by_employee(nip=nip)
        assert (answer["authorized"], answer["reason"], answer["permit"]) == (
            False,
            "unknown_employee",
            None,
        )
    for code in ("NO-SUCH-ROOM", "lower"):
        answer = await ask.by_employee(workspace_code=code)
        assert (answer["authorized"], answer["reason"], answer["permit"]) == (
            False,
            "unknown_workspace",
            None,
        )


async def test_employee_inactive(client: httpx.AsyncClient, org: Org) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit()
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    assert (await ask.by_channel(_at(permit, 1)))["authorized"] is True
    response = await client.patch(
        f"/api/v1/employees/{ask.office.staff['nip']}", json={"active": False}, headers=org.admin
    )
    assert response.status_code == 200, response.text
    for answer in await ask.both(_at(permit, 1)):
        assert (answer["authorized"], answer["reason"]) == (False, "employee_inactive")


# --- the query -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"nip": "198505012010031001"},
        {"workspace_code": "W00001"},
        {"platform": "youtube"},
        {"channel": "c"},
        {"nip": "198505012010031001", "channel": "c"},
        {"workspace_code": "W00001", "platform": "youtube"},
        {"nip": "198505012010031001", "workspace_code": "W00001", "platform": "youtube"},
        {
            "nip": "198505012010031001",
            "workspace_code": "W00001",
            "platform": "youtube",
            "channel": "c",
        },
        {"at": "2030-01-01T09:00:00Z"},
        {"nip": "", "workspace_code": "W00001"},
    ],
)
async def test_missing_or_mixed_parameters_are_422(
    client: httpx.AsyncClient, org: Org, params: dict[str, str]
) -> None:
    problem = assert_problem(
        await client.get(CHECK, params=params, headers=org.admin), 422, "invalid_check_query"
    )
    assert problem["errors"]


@pytest.mark.parametrize(
    "params",
    [
        {"at": "2030-01-01T09:00:00"},  # naive
        {"at": "2030-01-01"},
        {"at": "1893456000"},
        {"at": "soon"},
    ],
)
async def test_at_must_be_an_instant_with_an_offset(
    client: httpx.AsyncClient, org: Org, params: dict[str, str]
) -> None:
    for form in ({"nip": ADMIN_NIP, "workspace_code": "W00001"}, {"platform": "x", "channel": "c"}):
        problem = assert_problem(
            await client.get(CHECK, params={**form, **params}, headers=org.admin),
            422,
            "validation_error",
        )
        assert ["query", "at"] in [e["loc"] for e in problem["errors"]]


async def test_an_unknown_platform_is_422(client: httpx.AsyncClient, org: Org) -> None:
    problem = assert_problem(
        await client.get(CHECK, params={"platform": "myspace", "channel": "c"}, headers=org.admin),
        422,
        "validation_error",
    )
    assert ["query", "platform"] in [e["loc"] for e in problem["errors"]]


# --- who may ask ---------------------------------------------------------------------------------


async def test_who_may_check(client: httpx.AsyncClient, org: Org) -> None:
    params = {"platform": "youtube", "channel": "diskominfotik"}
    staff = await org.employee()
    auditor = await org.employee(roles=["auditor"])
    for nip in (staff["nip"], auditor["nip"], ADMIN_NIP):
        await _check(client, org.as_(nip), **params)
    key = await _api_key(client, org, ["check"])
    assert key["scopes"] == ["check"]
    await _check(client, {"X-API-Key": key["key"]}, **params)
    assert_problem(await client.get(CHECK, params=params), 401)
    assert_problem(await client.get(CHECK, params=params, headers={"X-API-Key": "not-a-key"}), 401)
    scopeless = await _api_key(client, org, [])
    assert_problem(
        await client.get(CHECK, params=params, headers={"X-API-Key": scopeless["key"]}),
        403,
        "insufficient_scope",
    )
    revoked = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=org.admin)
    assert revoked.status_code in (200, 204), revoked.text
    assert_problem(await client.get(CHECK, params=params, headers={"X-API-Key": key["key"]}), 401)


# --- never stale ---------------------------------------------------------------------------------


async def test_the_check_after_an_acknowledged_revoke_says_revoked(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    ask = await _asker(client, org)
    permit = await ask.office.submit()
    await ask.office.act(permit["id"], "approve", ask.office.head["nip"])
    await move_window(app, permit["id"], timedelta(minutes=-1))  # on air now
    for answer in await ask.both():
        assert (answer["authorized"], answer["reason"]) == (True, "approved")
    revoked = await ask.office.act(
        permit["id"], "revoke", ask.office.head["nip"], {"reason": "Melanggar angka 3"}
    )
    assert revoked.status_code == 200, revoked.text
    answer = await ask.by_channel()
    assert (answer["authorized"], answer["reason"]) == (False, "revoked")
    answer = await ask.by_employee()
    assert (answer["authorized"], answer["reason"]) == (False, "revoked")
    assert answer["permit"]["id"] == permit["id"]


async def test_many_overlapping_permits_do_not_hide_the_approved_one(
    client: httpx.AsyncClient, org: Org
) -> None:
    """Anyone may ask for a permit on any channel: a pile of pending ones overlapping a real
    approved broadcast (by the same requester too) must not make the check say no."""
    ask = await _asker(client, org)
    office = ask.office
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    approved = await office.submit(start=start, minutes=60)
    await office.act(approved["id"], "approve", office.head["nip"])
    room = await org.workspace(office.unit["code"])
    earlier = start - timedelta(minutes=1)
    for _ in range(25):
        # Starting a minute earlier and lasting all day, never approved: a colleague's on
        # the same channel from another room, and the requester's own in the same room.
        await office.submit(
            office.colleague["nip"], start=earlier, minutes=480, workspace_code=room["code"]
        )
        await office.submit(start=earlier, minutes=480)
    answer = await ask.by_channel(_at(approved, 10))
    assert (answer["authorized"], answer["reason"]) == (True, "approved")
    assert answer["permit"]["id"] == approved["id"]
    answer = await ask.by_employee(_at(approved, 10))
    assert (answer["authorized"], answer["reason"]) == (True, "approved")
