"""Organisation endpoints (SPEC §2, §3): units, workspaces, employees, delegations, /me."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.support import ADMIN_NIP, Org, assert_problem, make_code, make_nip

pytestmark = pytest.mark.anyio


async def _events(app: FastAPI, subject: str) -> list[tuple[str, Any]]:
    async with app.state.db.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT action, data FROM audit_events WHERE subject = :s ORDER BY seq"),
            {"s": subject},
        )
        return [(r.action, json.loads(r.data) if isinstance(r.data, str) else r.data) for r in rows]


# --- units --------------------------------------------------------------------


async def test_unit_is_created_with_location_and_audited(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    code = make_code("U")
    response = await client.post(
        "/api/v1/units", json={"code": code, "name": "Dinas Uji"}, headers=org.admin
    )
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/units/{code}"
    body = response.json()
    assert body | {"created_at": None, "updated_at": None} == {
        "code": code,
        "name": "Dinas Uji",
        "parent_code": None,
        "head_nip": None,
        "active": True,
        "created_at": None,
        "updated_at": None,
    }
    assert body["created_at"].endswith("Z")
    assert [a for a, _ in await _events(app, f"unit:{code}")] == ["unit.created"]


async def test_unit_rules(client: httpx.AsyncClient, org: Org) -> None:
    parent = await org.unit()
    dup = await client.post(
        "/api/v1/units", json={"code": parent["code"], "name": "x"}, headers=org.admin
    )
    assert_problem(dup, 409, "already_exists")
    for bad in ("a", "lower", "-DASH", "X" * 33, "SP ACE"):
        assert_problem(
            await client.post("/api/v1/units", json={"code": bad, "name": "x"}, headers=org.admin),
            422,
        )
    unknown_parent = await client.post(
        "/api/v1/units",
        json={"code": make_code(), "name": "x", "parent_code": "NOPE"},
        headers=org.admin,
    )
    assert assert_problem(unknown_parent, 422, "unknown_unit")["errors"][0]["loc"] == [
        "body",
        "parent_code",
    ]
    unknown_head = await client.post(
        "/api/v1/units",
        json={"code": make_code(), "name": "x", "head_nip": make_nip()},
        headers=org.admin,
    )
    assert assert_problem(unknown_head, 422, "unknown_employee")["errors"][0]["loc"] == [
        "body",
        "head_nip",
    ]
    inactive = await org.employee(active=False)
    inactive_head = await client.post(
        "/api/v1/units",
        json={"code": make_code(), "name": "x", "head_nip": inactive["nip"]},
        headers=org.admin,
    )
    assert_problem(inactive_head, 422, "employee_inactive")
    mass = await client.post(
        "/api/v1/units",
        json={"code": make_code(), "name": "x", "created_at": "2020-01-01T00:00:00Z"},
        headers=org.admin,
    )
    assert assert_problem(mass, 422, "validation_error")["errors"][0]["code"] == "unknown_field"


async def test_unit_patch_changes_only_what_is_sent(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit, head = await org.unit_with_head()
    path = f"/api/v1/units/{unit['code']}"
    assert (
        await client.patch(path, json={"name": unit["name"]}, headers=org.admin)
    ).status_code == 200
    before = await _events(app, f"unit:{unit['code']}")
    renamed = await client.patch(path, json={"name": "Nama Baru"}, headers=org.admin)
    assert renamed.json()["head_nip"] == head["nip"]
    after = await _events(app, f"unit:{unit['code']}")
    assert len(after) == len(before) + 1
    assert after[-1] == (
        "unit.updated",
        {"changes": {"name": {"from": unit["name"], "to": "Nama Baru"}}},
    )
    cleared = await client.patch(path, json={"head_nip": None}, headers=org.admin)
    assert cleared.json()["head_nip"] is None
    assert_problem(await client.patch(path, json={"name": None}, headers=org.admin), 422)
    assert_problem(
        await client.patch("/api/v1/units/NOPE", json={"name": "x"}, headers=org.admin),
        404,
        "not_found",
    )


async def test_units_form_a_tree(client: httpx.AsyncClient, org: Org) -> None:
    top = await org.unit()
    middle = await org.unit(parent_code=top["code"])
    bottom = await org.unit(parent_code=middle["code"])
    for parent in (top["code"], bottom["code"]):
        cycle = await client.patch(
            f"/api/v1/units/{top['code']}", json={"parent_code": parent}, headers=org.admin
        )
        assert_problem(cycle, 422, "unit_cycle")


async def test_unit_in_use_cannot_be_deactivated(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    path = f"/api/v1/units/{unit['code']}"
    assert_problem(
        await client.patch(path, json={"active": False}, headers=org.admin), 409, "unit_in_use"
    )
    await client.patch(
        f"/api/v1/workspaces/{workspace['code']}", json={"active": False}, headers=org.admin
    )
    assert (await client.patch(path, json={"active": False}, headers=org.admin)).json()[
        "active"
    ] is False
    assert_problem(
        await client.post(
            "/api/v1/workspaces",
            json={"code": make_code(), "name": "x", "unit_code": unit["code"], "kind": "studio"},
            headers=org.admin,
        ),
        422,
        "unit_inactive",
    )


async def test_only_admins_change_units_but_everyone_reads(
    client: httpx.AsyncClient, org: Org
) -> None:
    unit = await org.unit()
    staff = org.as_((await org.employee())["nip"])
    assert_problem(
        await client.post("/api/v1/units", json={"code": make_code(), "name": "x"}, headers=staff),
        403,
        "admin_required",
    )
    assert_problem(
        await client.patch(f"/api/v1/units/{unit['code']}", json={"name": "x"}, headers=staff), 403
    )
    assert (await client.get(f"/api/v1/units/{unit['code']}", headers=staff)).status_code == 200
    assert (await client.get("/api/v1/units", headers=staff)).status_code == 200
    assert_problem(await client.get("/api/v1/units"), 401)


async def test_unit_list_keyset_pages_are_stable_under_inserts(
    client: httpx.AsyncClient, org: Org
) -> None:
    codes = sorted([(await org.unit())["code"] for _ in range(7)])
    seen: list[str] = []
    cursor = None
    inserted = False
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/units", params=params, headers=org.admin)).json()
        seen += [u["code"] for u in page["items"]]
        if not inserted:
            await client.post(
                "/api/v1/units", json={"code": "A0-FIRST", "name": "x"}, headers=org.admin
            )
            inserted = True
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == codes  # the insert sorts before the cursor: no duplicates, no gaps
    assert_problem(await client.get("/api/v1/units", params={"limit": 201}, headers=org.admin), 422)
    assert_problem(
        await client.get("/api/v1/units", params={"cursor": "%%%"}, headers=org.admin),
        422,
        "invalid_cursor",
    )
    top = await client.get("/api/v1/units", params={"parent_code": codes[0]}, headers=org.admin)
    assert top.json() == {"items": [], "next_cursor": None}


# --- workspaces ---------------------------------------------------------------


async def test_workspaces(client: httpx.AsyncClient, org: Org) -> None:
    unit, other = await org.unit(), await org.unit()
    workspace = await org.workspace(unit["code"], kind="studio")
    path = f"/api/v1/workspaces/{workspace['code']}"
    dup = {"code": workspace["code"], "name": "x", "unit_code": unit["code"], "kind": "studio"}
    assert_problem(
        await client.post("/api/v1/workspaces", json=dup, headers=org.admin), 409, "already_exists"
    )
    bad_kind = {**dup, "code": make_code(), "kind": "kitchen"}
    assert_problem(await client.post("/api/v1/workspaces", json=bad_kind, headers=org.admin), 422)
    unknown = {**dup, "code": make_code(), "unit_code": "NOPE"}
    assert_problem(
        await client.post("/api/v1/workspaces", json=unknown, headers=org.admin),
        422,
        "unknown_unit",
    )
    moved = await client.patch(path, json={"unit_code": other["code"]}, headers=org.admin)
    assert moved.json()["unit_code"] == other["code"]
    listed = await client.get(
        "/api/v1/workspaces", params={"unit_code": other["code"]}, headers=org.admin
    )
    assert [w["code"] for w in listed.json()["items"]] == [workspace["code"]]
    assert_problem(await client.delete(path, headers=org.admin), 405, "method_not_allowed")
    assert_problem(await client.get("/api/v1/workspaces/NOPE", headers=org.admin), 404)


# --- employees ----------------------------------------------------------------


async def test_employees(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    staff = await org.employee(unit_code=unit["code"], position="Analis")
    assert staff["employment"] == "pns"
    assert staff["roles"] == []
    dup = await client.post(
        "/api/v1/employees", json={"nip": staff["nip"], "name": "x"}, headers=org.admin
    )
    assert_problem(dup, 409, "already_exists")
    bad_role = await client.post(
        "/api/v1/employees",
        json={"nip": make_nip(), "name": "x", "roles": ["root"]},
        headers=org.admin,
    )
    assert_problem(bad_role, 422)
    unknown_unit = await client.post(
        "/api/v1/employees",
        json={"nip": make_nip(), "name": "x", "unit_code": "NOPE"},
        headers=org.admin,
    )
    assert assert_problem(unknown_unit, 422, "unknown_unit")["errors"][0]["loc"] == [
        "body",
        "unit_code",
    ]
    pppk = await org.employee(employment="pppk")
    assert pppk["employment"] == "pppk"
    promoted = await client.patch(
        f"/api/v1/employees/{staff['nip']}", json={"roles": ["auditor"]}, headers=org.admin
    )
    assert promoted.json()["roles"] == ["auditor"]
    assert_problem(
        await client.patch(
            f"/api/v1/employees/{staff['nip']}", json={"roles": None}, headers=org.admin
        ),
        422,
    )
    assert_problem(await client.delete(f"/api/v1/employees/{staff['nip']}", headers=org.admin), 405)


async def test_employee_visibility(client: httpx.AsyncClient, org: Org) -> None:
    me, colleague = await org.employee(), await org.employee()
    auditor = await org.employee(roles=["auditor"])
    mine = org.as_(me["nip"])
    assert (await client.get(f"/api/v1/employees/{me['nip']}", headers=mine)).status_code == 200
    assert_problem(await client.get(f"/api/v1/employees/{colleague['nip']}", headers=mine), 404)
    assert [
        e["nip"] for e in (await client.get("/api/v1/employees", headers=mine)).json()["items"]
    ] == [me["nip"]]
    everyone = (await client.get("/api/v1/employees", headers=org.as_(auditor["nip"]))).json()[
        "items"
    ]
    assert {me["nip"], colleague["nip"], ADMIN_NIP} <= {e["nip"] for e in everyone}
    assert_problem(
        await client.patch(f"/api/v1/employees/{me['nip']}", json={"name": "x"}, headers=mine), 403
    )


async def test_a_head_cannot_be_deactivated(client: httpx.AsyncClient, org: Org) -> None:
    unit, head = await org.unit_with_head()
    response = await client.patch(
        f"/api/v1/employees/{head['nip']}", json={"active": False}, headers=org.admin
    )
    assert unit["code"] in assert_problem(response, 409, "employee_is_head")["detail"]


# --- delegations and /me ---------------------------------------------------------


def _window(
    start: timedelta = timedelta(0), length: timedelta = timedelta(days=3)
) -> dict[str, str]:
    begin = datetime.now(UTC) + start
    return {"starts_at": begin.isoformat(), "ends_at": (begin + length).isoformat()}


async def test_delegations_by_head_and_admin(client: httpx.AsyncClient, org: Org) -> None:
    unit, head = await org.unit_with_head()
    deputy = await org.employee(unit_code=unit["code"])
    path = f"/api/v1/units/{unit['code']}/delegations"
    body = {"delegate_nip": deputy["nip"], "kind": "plh", "reason": "Dinas luar", **_window()}
    by_head = await client.post(path, json=body, headers=org.as_(head["nip"]))
    assert by_head.status_code == 201, by_head.text
    delegation = by_head.json()
    assert delegation["in_force"] is True
    assert (
        await client.get(by_head.headers["Location"], headers=org.as_(deputy["nip"]))
    ).json() == delegation
    me = (await client.get("/api/v1/me", headers=org.as_(deputy["nip"]))).json()
    assert [(d["unit_code"], d["kind"]) for d in me["deputises"]] == [(unit["code"], "plh")]
    assert (
        await client.post(path, json={**body, "kind": "plt"}, headers=org.admin)
    ).status_code == 201
    other_head = (await org.unit_with_head())[1]
    assert_problem(
        await client.post(path, json=body, headers=org.as_(other_head["nip"])), 403, "not_unit_head"
    )
    assert_problem(await client.post(path, json=body, headers=org.as_(deputy["nip"])), 403)
    assert_problem(
        await client.post("/api/v1/units/NOPE/delegations", json=body, headers=org.admin), 404
    )
    listed = await client.get(path, params={"limit": 1}, headers=org.as_(deputy["nip"]))
    assert len(listed.json()["items"]) == 1
    assert listed.json()["next_cursor"]

    revoked = await client.delete(
        f"/api/v1/delegations/{delegation['id']}", headers=org.as_(head["nip"])
    )
    assert revoked.status_code == 200
    assert revoked.json()["in_force"] is False
    assert revoked.json()["revoked_by"] == head["nip"]
    assert_problem(
        await client.delete(f"/api/v1/delegations/{delegation['id']}", headers=org.admin),
        409,
        "delegation_ended",
    )
    me = (await client.get("/api/v1/me", headers=org.as_(deputy["nip"]))).json()
    assert [d["kind"] for d in me["deputises"]] == ["plt"]


async def test_delegation_rules(client: httpx.AsyncClient, org: Org) -> None:
    unit, head = await org.unit_with_head()
    deputy = await org.employee(unit_code=unit["code"])
    path = f"/api/v1/units/{unit['code']}/delegations"
    base = {"delegate_nip": deputy["nip"], "kind": "plh", "reason": "Cuti"}
    cases = [
        ({**base, **_window(length=timedelta(hours=-1))}, "invalid_window"),
        ({**base, **_window(start=timedelta(days=-5), length=timedelta(days=1))}, "invalid_window"),
        ({**base, **_window(length=timedelta(days=400))}, "invalid_window"),
        ({**base, "delegate_nip": make_nip(), **_window()}, "unknown_employee"),
        ({**base, "delegate_nip": head["nip"], **_window()}, "delegate_is_head"),
        (
            {**base, "starts_at": "2030-01-01T09:00:00", "ends_at": "2030-01-02T09:00:00"},
            "validation_error",
        ),
        ({**base, "kind": "acting", **_window()}, "validation_error"),
    ]
    for body, code in cases:
        assert_problem(await client.post(path, json=body, headers=org.admin), 422, code)
    offset = await client.post(
        path,
        json={
            **base,
            "starts_at": "2030-01-01T09:00:00+07:00",
            "ends_at": "2030-01-02T09:00:00+07:00",
        },
        headers=org.admin,
    )
    assert offset.json()["starts_at"] == "2030-01-01T02:00:00.000000Z"
