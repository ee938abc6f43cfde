"""The check (SPEC §5): every reason, both forms, callers, never stale after a revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.permits.models import Permit
from tests.permits_support import Office
from tests.support import Org, assert_problem, make_nip

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/authorizations/check"


async def _check(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(CHECK, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return dict(response.json())


async def _api_key(client: httpx.AsyncClient, org: Org) -> dict[str, str]:
    created = await client.post("/api/v1/api-keys", json={"name": "gateway"}, headers=org.admin)
    return {"X-API-Key": created.json()["key"]}


def _at(permit: dict[str, Any], minutes: int) -> str:
    return (datetime.fromisoformat(permit["starts_at"]) + timedelta(minutes=minutes)).isoformat()


async def test_an_approved_stream_is_authorised_in_its_window_only(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    gateway = await _api_key(client, org)
    permit = await office.submit(channel="@DiskominfoTik.Anambas")
    await office.act(permit["id"], "approve", office.head["nip"])
    by_employee = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    inside = await _check(client, gateway, **by_employee, at=_at(permit, 10))
    assert inside["authorized"] is True
    assert inside["reason"] == "approved"
    assert inside["permit"] == {
        key: permit[key]
        for key in (
            "id",
            "requester_nip",
            "workspace_code",
            "platform",
            "channel",
            "starts_at",
            "ends_at",
        )
    }
    assert inside["checked_at"].endswith("Z")
    for channel in ("diskominfotik.anambas", "@DISKOMINFOTIK.ANAMBAS"):
        by_channel = await _check(
            client, gateway, platform="youtube", channel=channel, at=_at(permit, 59)
        )
        assert (by_channel["authorized"], by_channel["reason"]) == (True, "approved")
    other_platform = await _check(
        client, gateway, platform="tiktok", channel="diskominfotik.anambas"
    )
    assert (other_platform["reason"], other_platform["permit"]) == ("no_permit", None)
    assert (await _check(client, gateway, **by_employee))["reason"] == "not_started"
    assert (await _check(client, gateway, **by_employee, at=_at(permit, -1)))[
        "reason"
    ] == "not_started"
    assert (await _check(client, gateway, **by_employee, at=_at(permit, 60)))["reason"] == "ended"
    wib = (datetime.fromisoformat(permit["starts_at"]) + timedelta(minutes=5)).astimezone(
        timezone(timedelta(hours=7))
    )
    assert (await _check(client, gateway, **by_employee, at=wib.isoformat()))["authorized"] is True


async def test_every_negative_reason(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    office = await Office.create(org)
    staff = org.as_(office.colleague["nip"])  # any employee may ask
    head, requester = office.head["nip"], office.staff["nip"]
    workspace = office.workspace["code"]

    async def reason(nip: str = requester, at: str | None = None, ws: str = workspace) -> str:
        params = {"nip": nip, "workspace_code": ws, **({"at": at} if at else {})}
        return str((await _check(client, staff, **params))["reason"])

    assert await reason() == "no_permit"
    assert await reason(nip=make_nip()) == "unknown_employee"
    assert await reason(ws="NOPE") == "unknown_workspace"

    pending = await office.submit(starts_in=timedelta(hours=1))
    assert await reason() == "pending"
    assert await reason(at=_at(pending, 5)) == "expired"  # still pending once its window began
    await office.act(pending["id"], "deny", head, {"reason": "Tidak"})
    assert await reason(at=_at(pending, 5)) == "denied"

    cancelled = await office.submit(starts_in=timedelta(hours=3))
    await office.act(cancelled["id"], "cancel", requester)
    assert await reason(at=_at(cancelled, 5)) == "cancelled"

    revoked = await office.submit(starts_in=timedelta(hours=5))
    await office.act(revoked["id"], "approve", head)
    assert await reason(at=_at(revoked, 5)) == "approved"
    await office.act(revoked["id"], "revoke", head, {"reason": "Dicabut"})
    assert await reason(at=_at(revoked, 5)) == "revoked"

    expired = await office.submit(starts_in=timedelta(hours=7))
    begin = datetime.now(UTC) - timedelta(minutes=2)
    async with app.state.db.write() as session, session.begin():
        await session.execute(
            update(Permit)
            .where(Permit.id == expired["id"])
            .values(starts_at=begin, ends_at=begin + timedelta(hours=1))
        )
    assert await reason() == "expired"

    await client.patch(f"/api/v1/employees/{requester}", json={"active": False}, headers=org.admin)
    assert await reason() == "employee_inactive"


async def test_a_revoked_stream_is_refused_at_once(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    gateway = await _api_key(client, org)
    permit = await office.submit()
    await office.act(permit["id"], "approve", office.head["nip"])
    begin = datetime.now(UTC) - timedelta(minutes=1)
    async with app.state.db.write() as session, session.begin():
        await session.execute(
            update(Permit)
            .where(Permit.id == permit["id"])
            .values(starts_at=begin, ends_at=begin + timedelta(hours=1))
        )
    by_channel = {"platform": "youtube", "channel": permit["channel"]}
    assert (await _check(client, gateway, **by_channel))["authorized"] is True
    revoked = await office.act(
        permit["id"], "revoke", office.head["nip"], {"reason": "Melanggar angka 3"}
    )
    assert revoked.status_code == 200
    after = await _check(client, gateway, **by_channel)
    assert (after["authorized"], after["reason"]) == (False, "revoked")
    await client.patch(
        f"/api/v1/employees/{office.staff['nip']}", json={"active": False}, headers=org.admin
    )


async def test_an_inactive_requesters_channel_is_not_authorised(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    await office.act(permit["id"], "approve", office.head["nip"])
    await client.patch(
        f"/api/v1/employees/{office.staff['nip']}", json={"active": False}, headers=org.admin
    )
    answer = await _check(
        client, org.admin, platform="youtube", channel=permit["channel"], at=_at(permit, 1)
    )
    assert (answer["authorized"], answer["reason"]) == (False, "employee_inactive")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"nip": "1"},
        {"platform": "youtube"},
        {"nip": "1", "workspace_code": "W", "platform": "youtube", "channel": "c"},
        {"nip": "1", "channel": "c"},
    ],
)
async def test_malformed_queries_are_422(
    client: httpx.AsyncClient, org: Org, params: dict[str, str]
) -> None:
    assert_problem(
        await client.get(CHECK, params=params, headers=org.admin), 422, "invalid_check_query"
    )


async def test_bad_values_are_422(client: httpx.AsyncClient, org: Org) -> None:
    naive = {"nip": "1", "workspace_code": "W", "at": "2030-01-01T09:00:00"}
    assert_problem(
        await client.get(CHECK, params=naive, headers=org.admin), 422, "validation_error"
    )
    unknown_platform = {"platform": "myspace", "channel": "c"}
    assert_problem(
        await client.get(CHECK, params=unknown_platform, headers=org.admin), 422, "validation_error"
    )


async def test_who_may_check(client: httpx.AsyncClient, org: Org) -> None:
    params = {"platform": "youtube", "channel": "x"}
    staff = await org.employee()
    assert (
        await client.get(CHECK, params=params, headers=org.as_(staff["nip"]))
    ).status_code == 200
    assert (
        await client.get(CHECK, params=params, headers=await _api_key(client, org))
    ).status_code == 200
    assert_problem(await client.get(CHECK, params=params), 401)
