"""Employees (pegawai/ASN), docs/RULES.md #resources, #roles, #conventions.

Admins register and change them; an employee record is visible to admins,
auditors and the employee themself (anyone else gets 404, not 403). Roles are a
subset of admin/auditor and come only from these records. Nobody is deleted.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import (
    ADMIN_NIP,
    Org,
    assert_patched,
    assert_problem,
    audit_trail,
    list_keys,
    make_code,
    make_nip,
)

pytestmark = pytest.mark.anyio

EMPLOYEES = "/api/v1/employees"


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    return await list_keys(client, EMPLOYEES, "nip", headers, **params)


# --- create -------------------------------------------------------------------------


async def test_admin_registers_an_employee(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    nip = make_nip()
    response = await client.post(EMPLOYEES, json={"nip": nip, "name": "Siti"}, headers=org.admin)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{EMPLOYEES}/{nip}"
    body = response.json()
    expected = {
        "nip": nip,
        "name": "Siti",
        "employment": "pns",
        "unit_code": None,
        "position": None,
        "roles": [],
        "active": True,
    }
    assert {k: v for k, v in body.items() if not k.endswith("_at")} == expected
    assert body["created_at"].endswith("Z")
    assert (await client.get(response.headers["Location"], headers=org.admin)).json() == body
    assert await audit_trail(app, f"employee:{nip}") == [("employee.created", ADMIN_NIP, expected)]


async def test_an_employee_with_every_field(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    nip = make_nip(employment="pppk", sex=2)
    body = {
        "nip": nip,
        "name": "Rina",
        "employment": "pppk",
        "unit_code": unit["code"],
        "position": "Pranata Humas",
        "roles": ["auditor"],
        "active": True,
    }
    response = await client.post(EMPLOYEES, json=body, headers=org.admin)
    assert response.status_code == 201, response.text
    assert {k: v for k, v in response.json().items() if not k.endswith("_at")} == body


@pytest.mark.parametrize(
    ("roles", "served"),
    [
        ([], []),
        (["admin"], ["admin"]),
        (["auditor"], ["auditor"]),
        (["admin", "auditor"], ["admin", "auditor"]),
        (["auditor", "admin"], ["admin", "auditor"]),
    ],
)
async def test_roles_are_a_subset_of_admin_and_auditor(
    client: httpx.AsyncClient, org: Org, roles: list[str], served: list[str]
) -> None:
    employee = await org.employee(roles=roles)
    assert employee["roles"] == served
    me = await client.get("/api/v1/me", headers=org.as_(employee["nip"]))
    assert me.json()["roles"] == served


@pytest.mark.parametrize(
    "roles",
    [["root"], ["Admin"], ["approver"], ["head"], ["admin", "superuser"], "admin", None, [""]],
)
async def test_any_other_role_is_422(client: httpx.AsyncClient, org: Org, roles: Any) -> None:
    nip = make_nip()
    response = await client.post(
        EMPLOYEES, json={"nip": nip, "name": "x", "roles": roles}, headers=org.admin
    )
    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"][:2] == [
        "body",
        "roles",
    ]
    assert_problem(await client.get(f"{EMPLOYEES}/{nip}", headers=org.admin), 404)
    staff = await org.employee()
    patched = await client.patch(
        f"{EMPLOYEES}/{staff['nip']}", json={"roles": roles}, headers=org.admin
    )
    assert_problem(patched, 422)
    assert (await client.get(f"{EMPLOYEES}/{staff['nip']}", headers=org.admin)).json() == staff


@pytest.mark.parametrize("employment", ["PNS", "honorer", "", None])
async def test_employment_is_pns_or_pppk(
    client: httpx.AsyncClient, org: Org, employment: Any
) -> None:
    response = await client.post(
        EMPLOYEES,
        json={"nip": make_nip(), "name": "x", "employment": employment},
        headers=org.admin,
    )
    assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", "employment"]


async def test_a_duplicate_nip_is_409(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    staff = await org.employee()
    for body in (
        {"nip": staff["nip"], "name": "Orang Lain"},
        {"nip": staff["nip"], "name": "x", "employment": "pppk"},
    ):
        response = await client.post(EMPLOYEES, json=body, headers=org.admin)
        assert staff["nip"] in assert_problem(response, 409, "already_exists")["detail"]
    assert (await client.get(f"{EMPLOYEES}/{staff['nip']}", headers=org.admin)).json() == staff
    assert len(await audit_trail(app, f"employee:{staff['nip']}")) == 1


async def test_the_unit_must_exist_and_be_active(client: httpx.AsyncClient, org: Org) -> None:
    closed = await org.unit(active=False)
    for unit_code, code in (("NOPE", "unknown_unit"), (closed["code"], "unit_inactive")):
        response = await client.post(
            EMPLOYEES,
            json={"nip": make_nip(), "name": "x", "unit_code": unit_code},
            headers=org.admin,
        )
        assert assert_problem(response, 422, code)["errors"][0]["loc"] == ["body", "unit_code"]
        staff = await org.employee()
        patched = await client.patch(
            f"{EMPLOYEES}/{staff['nip']}", json={"unit_code": unit_code}, headers=org.admin
        )
        assert assert_problem(patched, 422, code)["errors"][0]["loc"] == ["body", "unit_code"]


@pytest.mark.parametrize(
    "extra",
    [
        {"is_admin": True},
        {"is_auditor": True},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"heads": ["U1"]},
        {"foo": "bar"},
    ],
)
async def test_unknown_fields_are_refused_not_ignored(
    client: httpx.AsyncClient, org: Org, extra: dict[str, Any]
) -> None:
    nip = make_nip()
    response = await client.post(
        EMPLOYEES, json={"nip": nip, "name": "x", **extra}, headers=org.admin
    )
    (field,) = extra
    error = assert_problem(response, 422, "validation_error")["errors"][0]
    assert (error["loc"], error["code"]) == (["body", field], "unknown_field")
    assert_problem(await client.get(f"{EMPLOYEES}/{nip}", headers=org.admin), 404)
    staff = await org.employee()
    patched = await client.patch(f"{EMPLOYEES}/{staff['nip']}", json=extra, headers=org.admin)
    assert assert_problem(patched, 422)["errors"][0]["code"] == "unknown_field"
    assert (await client.get(f"{EMPLOYEES}/{staff['nip']}", headers=org.admin)).json() == staff


async def test_the_nip_cannot_be_changed(client: httpx.AsyncClient, org: Org) -> None:
    staff = await org.employee()
    response = await client.patch(
        f"{EMPLOYEES}/{staff['nip']}", json={"nip": make_nip()}, headers=org.admin
    )
    assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", "nip"]


# --- who sees whom ------------------------------------------------------------------


async def test_a_plain_employee_sees_only_themself(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    me = await org.employee(unit_code=unit["code"])
    colleague = await org.employee(unit_code=unit["code"])
    mine = org.as_(me["nip"])
    assert (await client.get(f"{EMPLOYEES}/{me['nip']}", headers=mine)).json() == me
    hidden = await client.get(f"{EMPLOYEES}/{colleague['nip']}", headers=mine)
    missing = await client.get(f"{EMPLOYEES}/{make_nip()}", headers=mine)
    # A colleague's record and one that does not exist look the same: no existence leak.
    assert_problem(hidden, 404, "not_found")
    assert_problem(missing, 404, "not_found")
    assert hidden.json()["title"] == missing.json()["title"]
    assert_problem(await client.get(f"{EMPLOYEES}/{ADMIN_NIP}", headers=mine), 404)
    assert await listed(client, mine) == [me["nip"]]
    assert await listed(client, mine, unit_code=unit["code"]) == [me["nip"]]
    assert await listed(client, mine, active="true") == [me["nip"]]


async def test_a_head_does_not_see_their_staff_records(client: httpx.AsyncClient, org: Org) -> None:
    unit, head = await org.unit_with_head()
    staff = await org.employee(unit_code=unit["code"])
    response = await client.get(f"{EMPLOYEES}/{staff['nip']}", headers=org.as_(head["nip"]))
    assert_problem(response, 404)


@pytest.mark.parametrize("roles", [["auditor"], ["admin"]])
async def test_auditors_and_admins_see_everyone(
    client: httpx.AsyncClient, org: Org, roles: list[str]
) -> None:
    first, second = await org.employee(), await org.employee(active=False)
    viewer = await org.employee(roles=roles)
    headers = org.as_(viewer["nip"])
    assert (await client.get(f"{EMPLOYEES}/{second['nip']}", headers=headers)).json() == second
    assert sorted(await listed(client, headers)) == sorted(
        [ADMIN_NIP, first["nip"], second["nip"], viewer["nip"]]
    )
    assert_problem(await client.get(f"{EMPLOYEES}/{make_nip()}", headers=headers), 404)


# --- who may change -----------------------------------------------------------------


async def test_only_admins_register_and_change_employees(
    client: httpx.AsyncClient, org: Org
) -> None:
    staff = await org.employee()
    auditor = await org.employee(roles=["auditor"])
    for caller in (staff, auditor):
        headers = org.as_(caller["nip"])
        created = await client.post(
            EMPLOYEES, json={"nip": make_nip(), "name": "x"}, headers=headers
        )
        assert_problem(created, 403, "admin_required")
        # Not even their own record: above all not their own roles.
        promoted = await client.patch(
            f"{EMPLOYEES}/{caller['nip']}", json={"roles": ["admin"]}, headers=headers
        )
        assert_problem(promoted, 403, "admin_required")
    assert (await client.get(f"{EMPLOYEES}/{staff['nip']}", headers=org.admin)).json() == staff
    assert_problem(await client.post(EMPLOYEES, json={"nip": make_nip(), "name": "x"}), 401)


async def test_roles_come_from_the_records_at_every_request(
    client: httpx.AsyncClient, org: Org
) -> None:
    deputy_admin = await org.employee(roles=["admin"])
    headers = org.as_(deputy_admin["nip"])
    created = await client.post(EMPLOYEES, json={"nip": make_nip(), "name": "x"}, headers=headers)
    assert created.status_code == 201, created.text
    demoted = await client.patch(
        f"{EMPLOYEES}/{deputy_admin['nip']}", json={"roles": []}, headers=org.admin
    )
    assert demoted.json()["roles"] == []
    again = await client.post(EMPLOYEES, json={"nip": make_nip(), "name": "x"}, headers=headers)
    assert_problem(again, 403, "admin_required")


# --- change -------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit = await org.unit()
    staff = await org.employee(unit_code=unit["code"], position="Analis")
    path = f"{EMPLOYEES}/{staff['nip']}"
    await assert_patched(
        client, path, staff, {"name": "Nama Baru", "roles": ["auditor"]}, org.admin
    )
    assert (await audit_trail(app, f"employee:{staff['nip']}"))[-1] == (
        "employee.updated",
        ADMIN_NIP,
        {
            "changes": {
                "name": {"from": staff["name"], "to": "Nama Baru"},
                "roles": {"from": [], "to": ["auditor"]},
            }
        },
    )


async def test_null_clears_the_unit_and_the_position(client: httpx.AsyncClient, org: Org) -> None:
    unit, other = await org.unit(), await org.unit()
    staff = await org.employee(unit_code=unit["code"], position="Analis")
    path = f"{EMPLOYEES}/{staff['nip']}"
    moved = await client.patch(path, json={"unit_code": other["code"]}, headers=org.admin)
    assert moved.json()["unit_code"] == other["code"]
    cleared = await client.patch(
        path, json={"unit_code": None, "position": None}, headers=org.admin
    )
    assert cleared.status_code == 200
    assert (cleared.json()["unit_code"], cleared.json()["position"]) == (None, None)


@pytest.mark.parametrize("field", ["name", "employment", "roles", "active"])
async def test_null_for_a_non_nullable_field_is_422(
    client: httpx.AsyncClient, org: Org, field: str
) -> None:
    staff = await org.employee(roles=["auditor"])
    path = f"{EMPLOYEES}/{staff['nip']}"
    response = await client.patch(path, json={field: None}, headers=org.admin)
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", field]
    assert (await client.get(path, headers=org.admin)).json() == staff


async def test_a_patch_that_changes_nothing_appends_no_event(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    staff = await org.employee(roles=["auditor"], position="Analis")
    same = {k: staff[k] for k in ("name", "employment", "unit_code", "position", "roles", "active")}
    response = await client.patch(f"{EMPLOYEES}/{staff['nip']}", json=same, headers=org.admin)
    assert response.json() == staff
    assert [a for a, _, _ in await audit_trail(app, f"employee:{staff['nip']}")] == [
        "employee.created"
    ]


async def test_an_unknown_employee_is_a_404_problem(client: httpx.AsyncClient, org: Org) -> None:
    nip = make_nip()
    assert (
        nip
        in assert_problem(
            await client.get(f"{EMPLOYEES}/{nip}", headers=org.admin), 404, "not_found"
        )["detail"]
    )
    patched = await client.patch(f"{EMPLOYEES}/{nip}", json={"name": "x"}, headers=org.admin)
    assert_problem(patched, 404, "not_found")


# --- deactivation: nobody is deleted ------------------------------------------------


async def test_a_unit_head_cannot_be_deactivated(client: httpx.AsyncClient, org: Org) -> None:
    unit, head = await org.unit_with_head()
    path = f"{EMPLOYEES}/{head['nip']}"
    refused = await client.patch(path, json={"active": False}, headers=org.admin)
    assert unit["code"] in assert_problem(refused, 409, "employee_is_head")["detail"]
    assert (await client.get(path, headers=org.admin)).json()["active"] is True
    # Appoint someone else first; then the former head may go.
    successor = await org.employee(unit_code=unit["code"])
    await client.patch(
        f"/api/v1/units/{unit['code']}", json={"head_nip": successor["nip"]}, headers=org.admin
    )
    done = await client.patch(path, json={"active": False}, headers=org.admin)
    assert done.status_code == 200, done.text
    assert done.json()["active"] is False


async def test_a_deactivated_employee_stays_on_record_but_cannot_sign_in(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    staff = await org.employee()
    headers = org.as_(staff["nip"])
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    off = await client.patch(
        f"{EMPLOYEES}/{staff['nip']}", json={"active": False}, headers=org.admin
    )
    assert off.json()["active"] is False
    assert_problem(await client.get("/api/v1/me", headers=headers), 401)
    assert (await client.get(f"{EMPLOYEES}/{staff['nip']}", headers=org.admin)).json() == off.json()
    assert await listed(client, org.admin, active="false") == [staff["nip"]]
    assert staff["nip"] not in await listed(client, org.admin, active="true")
    assert (await audit_trail(app, f"employee:{staff['nip']}"))[-1][2] == {
        "changes": {"active": {"from": True, "to": False}}
    }
    back = await client.patch(
        f"{EMPLOYEES}/{staff['nip']}", json={"active": True}, headers=org.admin
    )
    assert back.json()["active"] is True
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200


async def test_delete_is_405_and_deletes_nothing(client: httpx.AsyncClient, org: Org) -> None:
    staff = await org.employee()
    response = await client.delete(f"{EMPLOYEES}/{staff['nip']}", headers=org.admin)
    assert_problem(response, 405, "method_not_allowed")
    assert (await client.get(f"{EMPLOYEES}/{staff['nip']}", headers=org.admin)).json() == staff


# --- lists --------------------------------------------------------------------------


async def test_the_list_pages_by_nip_and_filters(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit(code=make_code("U"))
    members = [(await org.employee(unit_code=unit["code"]))["nip"] for _ in range(5)]
    await org.employee()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "unit_code": unit["code"]}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get(EMPLOYEES, params=params, headers=org.admin)).json()
        assert len(body["items"]) <= 2
        seen += [e["nip"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(members)
    everyone = await listed(client, org.admin, limit=200)
    assert everyone == sorted(everyone)
    assert len(everyone) == 7
    assert_problem(await client.get(EMPLOYEES, params={"limit": 0}, headers=org.admin), 422)
    assert_problem(
        await client.get(EMPLOYEES, params={"cursor": "?"}, headers=org.admin),
        422,
        "invalid_cursor",
    )
