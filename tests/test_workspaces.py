"""Workspaces (ruang kerja), docs/RULES.md #resources, #roles, #conventions: owned by a unit,
managed by admins, read by all.

A workspace is never deleted; it is deactivated, moved between units, and each
change is audited.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests import support
from tests.support import ADMIN_NIP, Org, assert_patched, assert_problem, audit_trail, make_code

pytestmark = pytest.mark.anyio

WORKSPACES = "/api/v1/workspaces"
KINDS = ["administrative", "service", "meeting", "studio", "other"]


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    return await support.list_keys(client, WORKSPACES, "code", headers, **params)


# --- create -------------------------------------------------------------------------


async def test_admin_creates_a_workspace(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    unit = await org.unit()
    code = make_code("W")
    sent = {"code": code, "name": "Studio DKI", "unit_code": unit["code"], "kind": "studio"}
    response = await client.post(WORKSPACES, json=sent, headers=org.admin)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{WORKSPACES}/{code}"
    body = response.json()
    expected = {**sent, "active": True}
    assert {k: v for k, v in body.items() if not k.endswith("_at")} == expected
    assert body["created_at"].endswith("Z")
    assert (await client.get(response.headers["Location"], headers=org.admin)).json() == body
    trail = await audit_trail(app, f"workspace:{code}")
    assert trail == [("workspace.created", ADMIN_NIP, expected)]


@pytest.mark.parametrize("kind", KINDS)
async def test_every_kind_is_accepted(client: httpx.AsyncClient, org: Org, kind: str) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"], kind=kind)
    assert workspace["kind"] == kind


@pytest.mark.parametrize("kind", ["kitchen", "Studio", "STUDIO", "", None, 1, ["studio"]])
async def test_any_other_kind_is_422(client: httpx.AsyncClient, org: Org, kind: Any) -> None:
    unit = await org.unit()
    body = {"code": make_code("W"), "name": "x", "unit_code": unit["code"], "kind": kind}
    response = await client.post(WORKSPACES, json=body, headers=org.admin)
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"][:2] == ["body", "kind"]
    workspace = await org.workspace(unit["code"])
    patched = await client.patch(
        f"{WORKSPACES}/{workspace['code']}", json={"kind": kind}, headers=org.admin
    )
    assert assert_problem(patched, 422)["errors"][0]["loc"][:2] == ["body", "kind"]


@pytest.mark.parametrize(
    ("missing", "loc"),
    [("code", "code"), ("name", "name"), ("unit_code", "unit_code"), ("kind", "kind")],
)
async def test_every_field_but_active_is_required(
    client: httpx.AsyncClient, org: Org, missing: str, loc: str
) -> None:
    unit = await org.unit()
    body = {"code": make_code("W"), "name": "x", "unit_code": unit["code"], "kind": "meeting"}
    del body[missing]
    response = await client.post(WORKSPACES, json=body, headers=org.admin)
    error = assert_problem(response, 422, "validation_error")["errors"][0]
    assert (error["loc"], error["code"]) == (["body", loc], "required")


async def test_a_duplicate_code_is_409(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    body = {"code": workspace["code"], "name": "x", "unit_code": unit["code"], "kind": "other"}
    response = await client.post(WORKSPACES, json=body, headers=org.admin)
    assert_problem(response, 409, "already_exists")
    fetched = await client.get(f"{WORKSPACES}/{workspace['code']}", headers=org.admin)
    assert fetched.json() == workspace


async def test_a_unit_and_a_workspace_may_share_a_code(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"], code=unit["code"])
    assert workspace["code"] == unit["code"]


@pytest.mark.parametrize("code", ["w1", "A", "-W", "W W", "W" * 33])
async def test_a_bad_code_is_422(client: httpx.AsyncClient, org: Org, code: str) -> None:
    unit = await org.unit()
    body = {"code": code, "name": "x", "unit_code": unit["code"], "kind": "other"}
    response = await client.post(WORKSPACES, json=body, headers=org.admin)
    assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", "code"]


async def test_an_unknown_unit_is_422_naming_unit_code(client: httpx.AsyncClient, org: Org) -> None:
    body = {"code": make_code("W"), "name": "x", "unit_code": "NOPE", "kind": "studio"}
    response = await client.post(WORKSPACES, json=body, headers=org.admin)
    problem = assert_problem(response, 422, "unknown_unit")
    assert problem["errors"] == [
        {"loc": ["body", "unit_code"], "msg": problem["errors"][0]["msg"], "code": "unknown_unit"}
    ]
    assert "NOPE" in problem["detail"]


async def test_an_inactive_unit_takes_no_new_workspace(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit(active=False)
    body = {"code": make_code("W"), "name": "x", "unit_code": unit["code"], "kind": "studio"}
    response = await client.post(WORKSPACES, json=body, headers=org.admin)
    assert assert_problem(response, 422, "unit_inactive")["errors"][0]["loc"] == [
        "body",
        "unit_code",
    ]
    assert_problem(await client.get(f"{WORKSPACES}/{body['code']}", headers=org.admin), 404)


@pytest.mark.parametrize(
    "extra", [{"created_at": "2020-01-01T00:00:00Z"}, {"foo": 1}, {"unit": "X1"}]
)
async def test_unknown_fields_are_refused(
    client: httpx.AsyncClient, org: Org, extra: dict[str, Any]
) -> None:
    unit = await org.unit()
    body = {"code": make_code("W"), "name": "x", "unit_code": unit["code"], "kind": "studio"}
    response = await client.post(WORKSPACES, json=body | extra, headers=org.admin)
    assert assert_problem(response, 422)["errors"][0]["code"] == "unknown_field"
    workspace = await org.workspace(unit["code"])
    patched = await client.patch(
        f"{WORKSPACES}/{workspace['code']}", json={"code": "NEW1"} | extra, headers=org.admin
    )
    assert {e["code"] for e in assert_problem(patched, 422)["errors"]} == {"unknown_field"}


# --- change -------------------------------------------------------------------------


async def test_patch_renames_and_changes_the_kind(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"], kind="meeting")
    path = f"{WORKSPACES}/{workspace['code']}"
    await assert_patched(client, path, workspace, {"name": "Studio", "kind": "studio"}, org.admin)
    assert (await audit_trail(app, f"workspace:{workspace['code']}"))[-1] == (
        "workspace.updated",
        ADMIN_NIP,
        {
            "changes": {
                "name": {"from": workspace["name"], "to": "Studio"},
                "kind": {"from": "meeting", "to": "studio"},
            }
        },
    )


async def test_a_workspace_moves_to_another_unit(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    first, second = await org.unit(), await org.unit()
    workspace = await org.workspace(first["code"])
    path = f"{WORKSPACES}/{workspace['code']}"
    moved = await client.patch(path, json={"unit_code": second["code"]}, headers=org.admin)
    assert moved.status_code == 200, moved.text
    assert moved.json()["unit_code"] == second["code"]
    assert await listed(client, org.admin, unit_code=second["code"]) == [workspace["code"]]
    assert await listed(client, org.admin, unit_code=first["code"]) == []
    assert (await audit_trail(app, f"workspace:{workspace['code']}"))[-1][2] == {
        "changes": {"unit_code": {"from": first["code"], "to": second["code"]}}
    }
    # The first unit no longer holds an active workspace, so it may be deactivated.
    freed = await client.patch(
        f"/api/v1/units/{first['code']}", json={"active": False}, headers=org.admin
    )
    assert freed.status_code == 200, freed.text


async def test_a_workspace_cannot_move_to_an_unknown_or_inactive_unit(
    client: httpx.AsyncClient, org: Org
) -> None:
    unit, closed = await org.unit(), await org.unit(active=False)
    workspace = await org.workspace(unit["code"])
    path = f"{WORKSPACES}/{workspace['code']}"
    for target, code in (("NOPE", "unknown_unit"), (closed["code"], "unit_inactive")):
        response = await client.patch(path, json={"unit_code": target}, headers=org.admin)
        assert assert_problem(response, 422, code)["errors"][0]["loc"] == ["body", "unit_code"]
    assert (await client.get(path, headers=org.admin)).json() == workspace


@pytest.mark.parametrize("field", ["name", "unit_code", "kind", "active"])
async def test_null_for_any_field_is_422(client: httpx.AsyncClient, org: Org, field: str) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    path = f"{WORKSPACES}/{workspace['code']}"
    response = await client.patch(path, json={field: None}, headers=org.admin)
    assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", field]
    assert (await client.get(path, headers=org.admin)).json() == workspace


async def test_a_patch_that_changes_nothing_appends_no_event(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    same = {k: workspace[k] for k in ("name", "unit_code", "kind", "active")}
    response = await client.patch(f"{WORKSPACES}/{workspace['code']}", json=same, headers=org.admin)
    assert response.json() == workspace
    assert [a for a, _, _ in await audit_trail(app, f"workspace:{workspace['code']}")] == [
        "workspace.created"
    ]


# --- deactivation: nothing is deleted -----------------------------------------------


async def test_a_workspace_is_deactivated_and_stays_readable(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    path = f"{WORKSPACES}/{workspace['code']}"
    off = await client.patch(path, json={"active": False}, headers=org.admin)
    assert off.json()["active"] is False
    staff = org.as_((await org.employee())["nip"])
    assert (await client.get(path, headers=staff)).json() == off.json()
    assert await listed(client, staff, active="false") == [workspace["code"]]
    assert await listed(client, staff, active="true") == []
    on = await client.patch(path, json={"active": True}, headers=org.admin)
    assert on.json()["active"] is True
    assert [a for a, _, _ in await audit_trail(app, f"workspace:{workspace['code']}")] == [
        "workspace.created",
        "workspace.updated",
        "workspace.updated",
    ]


async def test_a_workspace_of_an_inactive_unit_cannot_be_reactivated(
    client: httpx.AsyncClient, org: Org
) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    path = f"{WORKSPACES}/{workspace['code']}"
    await client.patch(path, json={"active": False}, headers=org.admin)
    closed = await client.patch(
        f"/api/v1/units/{unit['code']}", json={"active": False}, headers=org.admin
    )
    assert closed.status_code == 200
    revived = await client.patch(path, json={"active": True}, headers=org.admin)
    assert_problem(revived, 422, "unit_inactive")
    assert (await client.get(path, headers=org.admin)).json()["active"] is False
    # Moving it to an active unit while reactivating it is fine.
    other = await org.unit()
    moved = await client.patch(
        path, json={"active": True, "unit_code": other["code"]}, headers=org.admin
    )
    assert (moved.json()["active"], moved.json()["unit_code"]) == (True, other["code"])


async def test_delete_is_405_and_deletes_nothing(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    path = f"{WORKSPACES}/{workspace['code']}"
    response = await client.delete(path, headers=org.admin)
    assert "DELETE" in assert_problem(response, 405, "method_not_allowed")["detail"]
    # Starlette names only the first route matching the path (GET), not PATCH as well.
    assert "GET" in response.headers["allow"]
    assert (await client.get(path, headers=org.admin)).json() == workspace
    assert_problem(await client.delete(WORKSPACES, headers=org.admin), 405)


# --- who may do what ----------------------------------------------------------------


@pytest.mark.parametrize("roles", [[], ["auditor"]])
async def test_only_admins_create_and_change_workspaces(
    client: httpx.AsyncClient, org: Org, roles: list[str]
) -> None:
    unit, head = await org.unit_with_head()
    workspace = await org.workspace(unit["code"])
    for caller in (org.as_((await org.employee(roles=roles))["nip"]), org.as_(head["nip"])):
        body = {"code": make_code("W"), "name": "x", "unit_code": unit["code"], "kind": "studio"}
        assert_problem(await client.post(WORKSPACES, json=body, headers=caller), 403)
        patched = await client.patch(
            f"{WORKSPACES}/{workspace['code']}", json={"active": False}, headers=caller
        )
        assert_problem(patched, 403, "admin_required")
    fetched = await client.get(f"{WORKSPACES}/{workspace['code']}", headers=org.admin)
    assert fetched.json() == workspace


async def test_any_employee_reads_workspaces(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    staff = org.as_((await org.employee())["nip"])
    assert (
        await client.get(f"{WORKSPACES}/{workspace['code']}", headers=staff)
    ).json() == workspace
    assert (await client.get(WORKSPACES, headers=staff)).json() == {
        "items": [workspace],
        "next_cursor": None,
    }
    assert_problem(await client.get(WORKSPACES), 401)


async def test_an_unknown_workspace_is_a_404_problem(client: httpx.AsyncClient, org: Org) -> None:
    body = assert_problem(
        await client.get(f"{WORKSPACES}/NOPE", headers=org.admin), 404, "not_found"
    )
    assert "NOPE" in body["detail"]
    patched = await client.patch(f"{WORKSPACES}/NOPE", json={"name": "x"}, headers=org.admin)
    assert_problem(patched, 404, "not_found")


# --- lists --------------------------------------------------------------------------


async def test_filters_unit_code_kind_and_active(client: httpx.AsyncClient, org: Org) -> None:
    first, second = await org.unit(), await org.unit()
    studio = await org.workspace(first["code"], kind="studio", code="WA")
    meeting = await org.workspace(first["code"], kind="meeting", code="WB")
    other = await org.workspace(second["code"], kind="studio", code="WC")
    closed = await org.workspace(second["code"], kind="studio", code="WD", active=False)
    assert await listed(client, org.admin) == ["WA", "WB", "WC", "WD"]
    assert await listed(client, org.admin, unit_code=first["code"]) == [
        studio["code"],
        meeting["code"],
    ]
    assert await listed(client, org.admin, kind="studio") == ["WA", "WC", "WD"]
    assert await listed(client, org.admin, kind="studio", active="true") == ["WA", "WC"]
    assert await listed(client, org.admin, unit_code=second["code"], active="false") == [
        closed["code"]
    ]
    assert await listed(client, org.admin, unit_code=second["code"], kind="meeting") == []
    assert other["code"] in await listed(client, org.admin, unit_code=second["code"])
    bad = await client.get(WORKSPACES, params={"kind": "kitchen"}, headers=org.admin)
    assert assert_problem(bad, 422)["errors"][0]["loc"] == ["query", "kind"]


async def test_the_list_pages_with_limit_and_cursor(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    codes = sorted([(await org.workspace(unit["code"]))["code"] for _ in range(5)])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "unit_code": unit["code"]}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get(WORKSPACES, params=params, headers=org.admin)).json()
        seen += [w["code"] for w in body["items"]]
        pages += 1
        if pages == 1:
            await org.workspace(unit["code"], code="W0")  # sorts before the cursor
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (codes, 3)
    assert_problem(await client.get(WORKSPACES, params={"limit": 201}, headers=org.admin), 422)
    assert_problem(
        await client.get(WORKSPACES, params={"cursor": "%%%"}, headers=org.admin),
        422,
        "invalid_cursor",
    )
