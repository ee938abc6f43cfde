"""`GET /api/v1/permits` (docs/RULES.md #permits, #conventions): what each caller sees, the filters,
`awaiting=me`, keyset pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.sweeper import sweep_database
from tests.permits_support import PERMITS, WIB, Office, move_window
from tests.support import ADMIN_NIP, Org, assert_problem

pytestmark = pytest.mark.anyio

REASON = {"reason": "Tidak sesuai jadwal"}


async def _page(client: httpx.AsyncClient, org: Org, nip: str, **params: Any) -> dict[str, Any]:
    response = await client.get(PERMITS, params=params, headers=org.as_(nip))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _ids(client: httpx.AsyncClient, org: Org, nip: str, **params: Any) -> list[str]:
    """Every id the caller gets, across all pages."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await _page(client, org, nip, **params, **({"cursor": cursor} if cursor else {}))
        ids += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


# --- visibility ---------------------------------------------------------------------------


async def test_each_caller_sees_what_they_may_read(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    other = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    loner = await org.employee()
    staff = [(await office.submit(starts_in=timedelta(hours=h)))["id"] for h in (1, 2)]
    colleague = (await office.submit(office.colleague["nip"], starts_in=timedelta(hours=3)))["id"]
    elsewhere = (await other.submit(starts_in=timedelta(hours=4)))["id"]
    everything = [*staff, colleague, elsewhere]

    assert await _ids(client, org, office.staff["nip"]) == staff
    assert await _ids(client, org, office.colleague["nip"]) == [colleague]
    assert await _ids(client, org, office.head["nip"]) == [*staff, colleague]
    assert await _ids(client, org, other.head["nip"]) == [elsewhere]
    assert await _ids(client, org, other.staff["nip"]) == [elsewhere]
    assert await _ids(client, org, loner["nip"]) == []
    assert await _ids(client, org, auditor["nip"]) == everything
    assert await _ids(client, org, ADMIN_NIP) == everything
    # Filters never widen what a caller sees.
    assert await _ids(client, org, office.colleague["nip"], unit_code=office.unit["code"]) == [
        colleague
    ]
    assert await _ids(client, org, office.staff["nip"], requester_nip=office.colleague["nip"]) == []
    assert await _ids(client, org, office.head["nip"], unit_code=other.unit["code"]) == []


async def test_items_are_the_permits_as_read_one_by_one(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    await office.delegate(office.colleague["nip"])
    pending = await office.submit()
    approved = await office.submit(starts_in=timedelta(hours=2))
    await office.act(approved["id"], "approve", office.head["nip"])
    items = (await _page(client, org, office.head["nip"]))["items"]
    for item in items:
        read = await client.get(
            f"/api/v1/permits/{item['id']}", headers=org.as_(office.head["nip"])
        )
        assert item == read.json()
    assert [i["id"] for i in items] == [pending["id"], approved["id"]]
    assert items[0]["approvers"] == [office.head["nip"], office.colleague["nip"]]
    assert items[1]["approvers"] == []


async def test_delegates_and_deciders_see_what_they_may_read(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    plh = await org.employee(unit_code=office.unit["code"])
    delegation = await office.delegate(plh["nip"])
    staff_permit = (await office.submit())["id"]
    head_permit = (await office.submit(office.head["nip"], starts_in=timedelta(hours=2)))["id"]
    # The Plh decides the staff's permit; the head's own goes to the parent head.
    assert await _ids(client, org, plh["nip"]) == [staff_permit]
    assert await _ids(client, org, office.head["nip"]) == [staff_permit, head_permit]
    assert await _ids(client, org, parent.head["nip"]) == [head_permit]
    await office.act(staff_permit, "approve", plh["nip"])
    # Once the delegation ends, the Plh still sees what they decided.
    response = await client.delete(f"/api/v1/delegations/{delegation['id']}", headers=org.admin)
    assert response.status_code in (200, 204), response.text
    assert await _ids(client, org, plh["nip"]) == [staff_permit]


# --- filters -------------------------------------------------------------------------------


async def test_status_filters(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    office = await Office.create(org)
    head, staff = office.head["nip"], office.staff["nip"]
    auditor = (await org.employee(roles=["auditor"]))["nip"]
    permits = {
        name: (await office.submit(starts_in=timedelta(hours=hours)))["id"]
        for hours, name in enumerate(
            ["pending", "approved", "denied", "cancelled", "revoked", "overdue", "swept"], start=1
        )
    }
    await office.act(permits["approved"], "approve", head)
    await office.act(permits["denied"], "deny", head, REASON)
    await office.act(permits["cancelled"], "cancel", staff)
    await office.act(permits["revoked"], "approve", head)
    await office.act(permits["revoked"], "revoke", head, REASON)
    await move_window(app, permits["swept"], timedelta(minutes=-2))
    assert await sweep_database(app.state.db) == (1, 0, 0)
    await move_window(app, permits["overdue"], timedelta(minutes=-1))  # after the sweep

    expected = {
        "pending": [permits["pending"]],
        "approved": [permits["approved"]],
        "denied": [permits["denied"]],
        "cancelled": [permits["cancelled"]],
        "revoked": [permits["revoked"]],
        # Still pending in the table, expired to every reader; and one recorded by the sweep.
        "expired": [permits["overdue"], permits["swept"]],
    }
    for nip in (auditor, head, staff):
        for status, ids in expected.items():
            got = await _ids(client, org, nip, status=status)
            assert sorted(got) == sorted(ids), (nip, status)
    listed = (await _page(client, org, auditor, status="expired"))["items"]
    assert {p["status"] for p in listed} == {"expired"}
    assert_problem(await client.get(PERMITS, params={"status": "done"}, headers=org.admin), 422)


async def test_field_filters(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    other = await Office.create(org)
    second_room = await org.workspace(office.unit["code"])
    a = (await office.submit())["id"]
    b = (await office.submit(workspace_code=second_room["code"], starts_in=timedelta(hours=2)))[
        "id"
    ]
    c = (await office.submit(office.colleague["nip"], starts_in=timedelta(hours=3)))["id"]
    d = (await other.submit(starts_in=timedelta(hours=4)))["id"]
    # A visitor from the other unit asks for this unit's room: the permit is this unit's.
    e = (await office.submit(other.staff["nip"], starts_in=timedelta(hours=5)))["id"]

    async def admin(**params: Any) -> list[str]:
        return await _ids(client, org, ADMIN_NIP, **params)

    assert await admin(workspace_code=office.workspace["code"]) == [a, c, e]
    assert await admin(workspace_code=second_room["code"]) == [b]
    assert await admin(unit_code=office.unit["code"]) == [a, b, c, e]
    assert await admin(unit_code=other.unit["code"]) == [d]
    assert await admin(requester_nip=office.staff["nip"]) == [a, b]
    assert await admin(requester_nip=other.staff["nip"]) == [d, e]
    assert await admin(requester_nip=other.staff["nip"], unit_code=office.unit["code"]) == [e]
    assert await admin(workspace_code="NOPE") == []
    assert await _ids(client, org, office.head["nip"], requester_nip=other.staff["nip"]) == [e]


async def test_time_filters(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    nine = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    early = (await office.submit(start=nine, minutes=60))["id"]  # [09:00, 10:00)
    late = (await office.submit(start=nine + timedelta(hours=2), minutes=60))["id"]  # [11, 12)

    async def between(**params: datetime) -> list[str]:
        return await _ids(
            client,
            org,
            office.staff["nip"],
            **{("from" if k == "from_" else k): v.isoformat() for k, v in params.items()},
        )

    # `from`: windows ending after it; `to`: windows starting before it.
    assert await between(from_=nine) == [early, late]
    assert await between(from_=nine + timedelta(hours=1)) == [late]
    assert await between(from_=nine + timedelta(minutes=59)) == [early, late]
    assert await between(to=nine + timedelta(hours=2)) == [early]
    assert await between(to=nine + timedelta(hours=2, seconds=1)) == [early, late]
    assert await between(to=nine) == []
    assert await between(from_=nine + timedelta(minutes=30), to=nine + timedelta(hours=2)) == [
        early
    ]
    assert await between(from_=nine + timedelta(hours=3)) == []
    # Any offset works: 18:00 WIB is 11:00 UTC.
    eleven_wib = (nine + timedelta(hours=2)).astimezone(WIB).isoformat()
    assert eleven_wib.endswith("+07:00")
    assert await _ids(client, org, office.staff["nip"], to=eleven_wib) == [early]
    naive = await client.get(
        PERMITS, params={"from": "2030-01-01T09:00:00"}, headers=org.as_(office.staff["nip"])
    )
    assert_problem(naive, 422, "validation_error")


async def test_awaiting_me(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    office = await Office.create(org)
    other = await Office.create(org)
    await office.delegate(office.colleague["nip"], "plh")
    auditor = await org.employee(roles=["auditor"])
    first, second, third, fourth = [
        (await office.submit(starts_in=timedelta(hours=h)))["id"] for h in (1, 2, 3, 4)
    ]
    await other.submit()

    async def awaiting(nip: str) -> list[str]:
        return await _ids(client, org, nip, awaiting="me")

    assert await awaiting(office.head["nip"]) == [first, second, third, fourth]
    assert await awaiting(office.colleague["nip"]) == [first, second, third, fourth]
    for nip in (office.staff["nip"], auditor["nip"], ADMIN_NIP, other.staff["nip"]):
        assert await awaiting(nip) == []
    await office.act(first, "approve", office.head["nip"])
    await office.act(second, "deny", office.colleague["nip"], REASON)
    await office.act(third, "cancel", office.staff["nip"])
    await move_window(app, fourth, timedelta(minutes=-1))
    fifth = (await office.submit(starts_in=timedelta(hours=5)))["id"]
    assert await awaiting(office.head["nip"]) == [fifth]
    assert await awaiting(office.colleague["nip"]) == [fifth]
    assert await _ids(client, org, office.head["nip"], awaiting="me", status="pending") == [fifth]
    assert await _ids(client, org, office.head["nip"], awaiting="me", status="approved") == []
    assert_problem(await client.get(PERMITS, params={"awaiting": "you"}, headers=org.admin), 422)


async def test_awaiting_me_follows_escalation(client: httpx.AsyncClient, org: Org) -> None:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    staff_permit = (await office.submit())["id"]
    head_permit = (await office.submit(office.head["nip"], starts_in=timedelta(hours=2)))["id"]
    assert await _ids(client, org, office.head["nip"], awaiting="me") == [staff_permit]
    assert await _ids(client, org, parent.head["nip"], awaiting="me") == [head_permit]


# --- pagination ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "head"])
async def test_keyset_pages(client: httpx.AsyncClient, org: Org, who: str) -> None:
    office = await Office.create(org)
    created = [(await office.submit(starts_in=timedelta(hours=h)))["id"] for h in range(1, 6)]
    nip = ADMIN_NIP if who == "admin" else office.head["nip"]
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await _page(client, org, nip, **params)
        pages.append([p["id"] for p in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        assert cursor
    assert pages == [created[0:2], created[2:4], created[4:5]]
    assert (await _page(client, org, nip, limit=5))["next_cursor"] is None
    assert (await _page(client, org, nip, limit=200))["next_cursor"] is None
    assert (await _page(client, org, nip, limit=4))["next_cursor"] is not None


async def test_pages_are_stable_under_inserts(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    created = [(await office.submit(starts_in=timedelta(hours=h)))["id"] for h in range(1, 4)]
    first = await _page(client, org, ADMIN_NIP, limit=2)
    later = (await office.submit(starts_in=timedelta(hours=9)))["id"]
    rest = await _page(client, org, ADMIN_NIP, limit=2, cursor=first["next_cursor"])
    assert [p["id"] for p in first["items"]] + [p["id"] for p in rest["items"]] == [
        *created,
        later,
    ]
    assert rest["next_cursor"] is None


async def test_the_last_page_has_no_cursor_even_when_hidden_permits_follow(
    client: httpx.AsyncClient, org: Org
) -> None:
    """A parent unit's head narrows to the child units too, but sees only what escalates to
    them: permits they may not see after the last one they may must not promise a next page."""
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    visible = [(await parent.submit(starts_in=timedelta(hours=h)))["id"] for h in (1, 2)]
    for h in (3, 4, 5):
        await office.submit(starts_in=timedelta(hours=h))  # decided by the child unit's head
    page = await _page(client, org, parent.head["nip"], limit=2)
    assert [p["id"] for p in page["items"]] == visible
    assert page["next_cursor"] is None
    awaiting = await _page(client, org, parent.head["nip"], limit=2, awaiting="me")
    assert [p["id"] for p in awaiting["items"]] == visible
    assert awaiting["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "garbage!"},
        {"cursor": "bm90IGpzb24"},  # base64 of "not json"
        {"cursor": "MTIz"},  # base64 of the JSON number 123: not a key this list issues
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
    ],
)
async def test_bad_paging_parameters_are_422(
    client: httpx.AsyncClient, org: Org, params: dict[str, Any]
) -> None:
    response = await client.get(PERMITS, params=params, headers=org.admin)
    problem = assert_problem(response, 422)
    if "cursor" in params:
        assert problem["code"] == "invalid_cursor"
        assert [e["loc"] for e in problem["errors"]] == [["query", "cursor"]]
