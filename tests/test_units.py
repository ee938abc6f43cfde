"""Units (unit kerja), docs/RULES.md #resources, #roles, #conventions: admins manage them, every
employee reads them.

Units form a tree with an optional head; nothing is deleted, a unit is
deactivated once nothing active hangs on it. Every change is audited, and a
PATCH that changes nothing leaves no trace.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import ADMIN_NIP, Org, assert_problem, audit_trail, make_code, make_nip

pytestmark = pytest.mark.anyio

UNITS = "/api/v1/units"


async def walk(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[list[str]]:
    """The keys of every page of a list, following `next_cursor` to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append([item["code"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def forged_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# --- create -------------------------------------------------------------------------


async def test_admin_creates_a_unit(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    code = make_code("U")
    response = await client.post(
        UNITS, json={"code": code, "name": "Diskominfotik"}, headers=org.admin
    )
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{UNITS}/{code}"
    body = response.json()
    assert {k: v for k, v in body.items() if not k.endswith("_at")} == {
        "code": code,
        "name": "Diskominfotik",
        "parent_code": None,
        "head_nip": None,
        "active": True,
    }
    assert body["created_at"].endswith("Z")
    assert body["updated_at"] == body["created_at"]
    fetched = await client.get(response.headers["Location"], headers=org.admin)
    assert fetched.json() == body
    assert await audit_trail(app, f"unit:{code}") == [
        (
            "unit.created",
            ADMIN_NIP,
            {
                "code": code,
                "name": "Diskominfotik",
                "parent_code": None,
                "head_nip": None,
                "active": True,
            },
        )
    ]


async def test_a_unit_is_created_under_a_parent_with_a_head(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await org.unit()
    head = await org.employee()
    code = make_code("U")
    response = await client.post(
        UNITS,
        json={
            "code": code,
            "name": "Bidang Uji",
            "parent_code": parent["code"],
            "head_nip": head["nip"],
        },
        headers=org.admin,
    )
    assert response.status_code == 201, response.text
    assert (response.json()["parent_code"], response.json()["head_nip"]) == (
        parent["code"],
        head["nip"],
    )
    me = await client.get("/api/v1/me", headers=org.as_(head["nip"]))
    assert me.json()["heads"] == [code]


async def test_a_unit_may_be_created_inactive(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit(active=False)
    assert unit["active"] is False


async def test_a_duplicate_code_is_409(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    unit = await org.unit()
    response = await client.post(
        UNITS, json={"code": unit["code"], "name": "Lain"}, headers=org.admin
    )
    assert unit["code"] in assert_problem(response, 409, "already_exists")["detail"]
    assert [a for a, _, _ in await audit_trail(app, f"unit:{unit['code']}")] == ["unit.created"]
    assert (await client.get(f"{UNITS}/{unit['code']}", headers=org.admin)).json() == unit


@pytest.mark.parametrize(
    "code",
    ["A", "a1", "lower", "-DASH", "_UNDER", "SP ACE", "DOT.TED", "X" * 33, "ÄB", "", 42, None],
)
async def test_a_code_must_match_the_pattern(
    client: httpx.AsyncClient, org: Org, code: Any
) -> None:
    response = await client.post(UNITS, json={"code": code, "name": "x"}, headers=org.admin)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "code"]


@pytest.mark.parametrize("code", ["A1", "0-", "9_", "X" * 32, "DKI-STUDIO_2"])
async def test_codes_at_the_edges_of_the_pattern(
    client: httpx.AsyncClient, org: Org, code: str
) -> None:
    response = await client.post(UNITS, json={"code": code, "name": "x"}, headers=org.admin)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{UNITS}/{code}"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"code": "NONAME"}, ["body", "name"]),
        ({"code": "EMPTY", "name": ""}, ["body", "name"]),
        ({"code": "BLANK", "name": "   "}, ["body", "name"]),
        ({"code": "LONG", "name": "n" * 201}, ["body", "name"]),
        ({"name": "no code"}, ["body", "code"]),
        ({"code": "ACT", "name": "x", "active": "sometimes"}, ["body", "active"]),
    ],
)
async def test_a_unit_needs_a_name_and_code(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post(UNITS, json=body, headers=org.admin)
    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == loc


@pytest.mark.parametrize(
    "extra",
    [
        {"created_at": "2020-01-01T00:00:00Z"},
        {"updated_at": "2020-01-01T00:00:00Z"},
        {"foo": "bar"},
        {"head": "198503102010011001"},
    ],
)
async def test_unknown_fields_are_refused_not_ignored(
    client: httpx.AsyncClient, org: Org, extra: dict[str, Any]
) -> None:
    code = make_code("U")
    response = await client.post(
        UNITS, json={"code": code, "name": "x", **extra}, headers=org.admin
    )
    body = assert_problem(response, 422, "validation_error")
    (field,) = extra
    assert body["errors"] == [
        {"loc": ["body", field], "msg": body["errors"][0]["msg"], "code": "unknown_field"}
    ]
    assert_problem(await client.get(f"{UNITS}/{code}", headers=org.admin), 404)
    unit = await org.unit()
    patched = await client.patch(f"{UNITS}/{unit['code']}", json=extra, headers=org.admin)
    assert assert_problem(patched, 422)["errors"][0]["code"] == "unknown_field"


async def test_the_code_cannot_be_changed(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    response = await client.patch(
        f"{UNITS}/{unit['code']}", json={"code": make_code("U")}, headers=org.admin
    )
    assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", "code"]


async def test_an_unknown_or_inactive_parent_is_422_naming_parent_code(
    client: httpx.AsyncClient, org: Org
) -> None:
    unknown = await client.post(
        UNITS, json={"code": make_code(), "name": "x", "parent_code": "NOPE"}, headers=org.admin
    )
    body = assert_problem(unknown, 422, "unknown_unit")
    assert body["errors"][0]["loc"] == ["body", "parent_code"]
    assert "NOPE" in body["detail"]
    inactive = await org.unit(active=False)
    response = await client.post(
        UNITS,
        json={"code": make_code(), "name": "x", "parent_code": inactive["code"]},
        headers=org.admin,
    )
    assert assert_problem(response, 422, "unit_inactive")["errors"][0]["loc"] == [
        "body",
        "parent_code",
    ]


async def test_the_head_must_be_a_known_active_employee(
    client: httpx.AsyncClient, org: Org
) -> None:
    stranger = make_nip()
    unknown = await client.post(
        UNITS, json={"code": make_code(), "name": "x", "head_nip": stranger}, headers=org.admin
    )
    body = assert_problem(unknown, 422, "unknown_employee")
    assert body["errors"][0]["loc"] == ["body", "head_nip"]
    assert stranger in body["detail"]
    retired = await org.employee(active=False)
    inactive = await client.post(
        UNITS,
        json={"code": make_code(), "name": "x", "head_nip": retired["nip"]},
        headers=org.admin,
    )
    assert assert_problem(inactive, 422, "employee_inactive")["errors"][0]["loc"] == [
        "body",
        "head_nip",
    ]
    unit = await org.unit()
    for nip, code in ((stranger, "unknown_employee"), (retired["nip"], "employee_inactive")):
        patched = await client.patch(
            f"{UNITS}/{unit['code']}", json={"head_nip": nip}, headers=org.admin
        )
        assert assert_problem(patched, 422, code)["errors"][0]["loc"] == ["body", "head_nip"]
    assert (await client.get(f"{UNITS}/{unit['code']}", headers=org.admin)).json() == unit


# --- change -------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(client: httpx.AsyncClient, org: Org) -> None:
    top = await org.unit()
    unit, _head = await org.unit_with_head(parent_code=top["code"])
    path = f"{UNITS}/{unit['code']}"
    renamed = await client.patch(path, json={"name": "Nama Baru"}, headers=org.admin)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() | {"updated_at": None} == unit | {"name": "Nama Baru", "updated_at": None}
    assert renamed.json()["updated_at"] >= unit["updated_at"]
    assert renamed.json()["created_at"] == unit["created_at"]
    assert (await client.get(path, headers=org.admin)).json() == renamed.json()


async def test_patch_appoints_replaces_and_clears_the_head(
    client: httpx.AsyncClient, org: Org
) -> None:
    unit = await org.unit()
    first, second = await org.employee(), await org.employee()
    path = f"{UNITS}/{unit['code']}"
    appointed = await client.patch(path, json={"head_nip": first["nip"]}, headers=org.admin)
    assert appointed.json()["head_nip"] == first["nip"]
    replaced = await client.patch(path, json={"head_nip": second["nip"]}, headers=org.admin)
    assert replaced.json()["head_nip"] == second["nip"]
    assert (await client.get("/api/v1/me", headers=org.as_(first["nip"]))).json()["heads"] == []
    cleared = await client.patch(path, json={"head_nip": None}, headers=org.admin)
    assert cleared.status_code == 200
    assert cleared.json()["head_nip"] is None
    assert (await client.get(path, headers=org.admin)).json()["head_nip"] is None
    assert (await client.get("/api/v1/me", headers=org.as_(second["nip"]))).json()["heads"] == []


async def test_patch_moves_a_unit_and_null_makes_it_a_top_unit(
    client: httpx.AsyncClient, org: Org
) -> None:
    first, second = await org.unit(), await org.unit()
    unit = await org.unit(parent_code=first["code"])
    path = f"{UNITS}/{unit['code']}"
    moved = await client.patch(path, json={"parent_code": second["code"]}, headers=org.admin)
    assert moved.json()["parent_code"] == second["code"]
    top = await client.patch(path, json={"parent_code": None}, headers=org.admin)
    assert top.json()["parent_code"] is None
    unknown = await client.patch(path, json={"parent_code": "NOPE"}, headers=org.admin)
    assert assert_problem(unknown, 422, "unknown_unit")["errors"][0]["loc"] == [
        "body",
        "parent_code",
    ]


@pytest.mark.parametrize("field", ["name", "active"])
async def test_null_for_a_required_field_is_422(
    client: httpx.AsyncClient, org: Org, field: str
) -> None:
    unit = await org.unit()
    response = await client.patch(f"{UNITS}/{unit['code']}", json={field: None}, headers=org.admin)
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", field]
    assert field in body["detail"]
    assert (await client.get(f"{UNITS}/{unit['code']}", headers=org.admin)).json() == unit


async def test_an_empty_patch_changes_nothing(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit = await org.unit()
    response = await client.patch(f"{UNITS}/{unit['code']}", json={}, headers=org.admin)
    assert response.status_code == 200
    assert response.json() == unit
    assert len(await audit_trail(app, f"unit:{unit['code']}")) == 1


async def test_units_form_a_tree(client: httpx.AsyncClient, org: Org) -> None:
    top = await org.unit()
    middle = await org.unit(parent_code=top["code"])
    bottom = await org.unit(parent_code=middle["code"])
    for unit, parent in (
        (top, top),  # itself
        (top, middle),  # its child
        (top, bottom),  # its grandchild
        (middle, bottom),
        (middle, middle),
    ):
        response = await client.patch(
            f"{UNITS}/{unit['code']}", json={"parent_code": parent["code"]}, headers=org.admin
        )
        body = assert_problem(response, 422, "unit_cycle")
        assert body["errors"][0]["loc"] == ["body", "parent_code"]
    for unit in (top, middle, bottom):
        assert (await client.get(f"{UNITS}/{unit['code']}", headers=org.admin)).json() == unit
    # Re-hanging a subtree elsewhere in the tree is fine.
    other = await org.unit()
    moved = await client.patch(
        f"{UNITS}/{middle['code']}", json={"parent_code": other["code"]}, headers=org.admin
    )
    assert moved.json()["parent_code"] == other["code"]
    # ... and now `top` may go under `bottom`, which is no longer below it.
    under = await client.patch(
        f"{UNITS}/{top['code']}", json={"parent_code": bottom["code"]}, headers=org.admin
    )
    assert under.status_code == 200, under.text


# --- deactivation -------------------------------------------------------------------


async def test_a_unit_with_an_active_workspace_cannot_be_deactivated(
    client: httpx.AsyncClient, org: Org
) -> None:
    unit = await org.unit()
    workspace = await org.workspace(unit["code"])
    path = f"{UNITS}/{unit['code']}"
    refused = await client.patch(path, json={"active": False}, headers=org.admin)
    assert unit["code"] in assert_problem(refused, 409, "unit_in_use")["detail"]
    assert (await client.get(path, headers=org.admin)).json()["active"] is True
    await client.patch(
        f"/api/v1/workspaces/{workspace['code']}", json={"active": False}, headers=org.admin
    )
    done = await client.patch(path, json={"active": False}, headers=org.admin)
    assert done.status_code == 200
    assert done.json()["active"] is False
    # Deactivated, never deleted: the record stays readable.
    assert (await client.get(path, headers=org.admin)).json()["active"] is False


async def test_a_unit_with_an_active_sub_unit_cannot_be_deactivated(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await org.unit()
    child = await org.unit(parent_code=parent["code"])
    path = f"{UNITS}/{parent['code']}"
    assert_problem(
        await client.patch(path, json={"active": False}, headers=org.admin), 409, "unit_in_use"
    )
    await client.patch(f"{UNITS}/{child['code']}", json={"active": False}, headers=org.admin)
    assert (await client.patch(path, json={"active": False}, headers=org.admin)).json()[
        "active"
    ] is False


async def test_an_inactive_unit_takes_no_new_sub_units_and_no_reactivated_children(
    client: httpx.AsyncClient, org: Org
) -> None:
    parent = await org.unit()
    child = await org.unit(parent_code=parent["code"])
    child_path = f"{UNITS}/{child['code']}"
    await client.patch(child_path, json={"active": False}, headers=org.admin)
    await client.patch(f"{UNITS}/{parent['code']}", json={"active": False}, headers=org.admin)
    # An active unit under an inactive parent would be exactly what deactivation refuses.
    revived = await client.patch(child_path, json={"active": True}, headers=org.admin)
    assert_problem(revived, 422, "unit_inactive")
    assert (await client.get(child_path, headers=org.admin)).json()["active"] is False
    # Moving it to an active parent while reactivating it is fine.
    other = await org.unit()
    moved = await client.patch(
        child_path, json={"active": True, "parent_code": other["code"]}, headers=org.admin
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["active"], moved.json()["parent_code"]) == (True, other["code"])


async def test_delete_is_not_allowed(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    response = await client.delete(f"{UNITS}/{unit['code']}", headers=org.admin)
    assert_problem(response, 405, "method_not_allowed")
    assert "DELETE" not in response.headers["allow"]
    assert (await client.get(f"{UNITS}/{unit['code']}", headers=org.admin)).json() == unit


# --- who may do what ----------------------------------------------------------------


@pytest.mark.parametrize("roles", [[], ["auditor"]])
async def test_only_admins_create_and_change_units(
    client: httpx.AsyncClient, org: Org, roles: list[str]
) -> None:
    unit = await org.unit()
    caller = org.as_((await org.employee(roles=roles))["nip"])
    code = make_code("U")
    created = await client.post(UNITS, json={"code": code, "name": "x"}, headers=caller)
    assert_problem(created, 403, "admin_required")
    changed = await client.patch(f"{UNITS}/{unit['code']}", json={"name": "x"}, headers=caller)
    assert_problem(changed, 403, "admin_required")
    assert_problem(await client.get(f"{UNITS}/{code}", headers=org.admin), 404)
    assert (await client.get(f"{UNITS}/{unit['code']}", headers=org.admin)).json() == unit


async def test_a_unit_head_cannot_change_their_own_unit(
    client: httpx.AsyncClient, org: Org
) -> None:
    unit, head = await org.unit_with_head()
    response = await client.patch(
        f"{UNITS}/{unit['code']}", json={"name": "Milik Saya"}, headers=org.as_(head["nip"])
    )
    assert_problem(response, 403, "admin_required")


async def test_any_employee_reads_units(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    staff = org.as_((await org.employee())["nip"])
    assert (await client.get(f"{UNITS}/{unit['code']}", headers=staff)).json() == unit
    listed = await client.get(UNITS, headers=staff)
    assert listed.json() == {"items": [unit], "next_cursor": None}


async def test_reading_needs_credentials(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit()
    assert_problem(await client.get(UNITS), 401)
    assert_problem(await client.get(f"{UNITS}/{unit['code']}"), 401)
    assert_problem(await client.post(UNITS, json={"code": make_code(), "name": "x"}), 401)


async def test_an_unknown_unit_is_a_404_problem(client: httpx.AsyncClient, org: Org) -> None:
    staff = org.as_((await org.employee())["nip"])
    for headers in (org.admin, staff):
        body = assert_problem(await client.get(f"{UNITS}/NOPE", headers=headers), 404, "not_found")
        assert "NOPE" in body["detail"]
    assert_problem(
        await client.patch(f"{UNITS}/NOPE", json={"name": "x"}, headers=org.admin), 404, "not_found"
    )


# --- lists --------------------------------------------------------------------------


async def test_the_list_walks_every_unit_once_in_code_order(
    client: httpx.AsyncClient, org: Org
) -> None:
    codes = sorted([(await org.unit())["code"] for _ in range(7)])
    pages = await walk(client, UNITS, org.admin, limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [code for page in pages for code in page] == codes
    exact = await walk(client, UNITS, org.admin, limit=7)
    assert exact == [codes]


async def test_pages_are_stable_when_units_are_inserted_between_fetches(
    client: httpx.AsyncClient, org: Org
) -> None:
    for suffix in ("B", "D", "F", "H", "J", "L"):
        await org.unit(code=f"P{suffix}")
    first = (await client.get(UNITS, params={"limit": 2}, headers=org.admin)).json()
    assert [u["code"] for u in first["items"]] == ["PB", "PD"]
    # One insert before the page already read, one after it.
    await org.unit(code="PA")
    await org.unit(code="PE")
    seen = [u["code"] for u in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (
            await client.get(UNITS, params={"limit": 2, "cursor": cursor}, headers=org.admin)
        ).json()
        seen += [u["code"] for u in page["items"]]
        if "PC" not in seen and len(seen) == 4:
            await org.unit(code="PC")  # sorts before the cursor now: must not appear
            await org.unit(code="PK")  # sorts after it: must appear once
        cursor = page["next_cursor"]
    assert seen == ["PB", "PD", "PE", "PF", "PH", "PJ", "PK", "PL"]


async def test_the_default_page_is_50(client: httpx.AsyncClient, org: Org) -> None:
    for _ in range(51):
        await org.unit()
    body = (await client.get(UNITS, headers=org.admin)).json()
    assert len(body["items"]) == 50
    assert body["next_cursor"]
    rest = await client.get(UNITS, params={"cursor": body["next_cursor"]}, headers=org.admin)
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None
    full = (await client.get(UNITS, params={"limit": 200}, headers=org.admin)).json()
    assert (len(full["items"]), full["next_cursor"]) == (51, None)


@pytest.mark.parametrize("limit", ["0", "-1", "201", "1000", "ten", "2.5"])
async def test_a_limit_outside_1_to_200_is_422(
    client: httpx.AsyncClient, org: Org, limit: str
) -> None:
    response = await client.get(UNITS, params={"limit": limit}, headers=org.admin)
    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == [
        "query",
        "limit",
    ]


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "not a cursor",
        "////",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b"{not json").decode(),
        forged_cursor(42),
        forged_cursor(["U00001"]),
        forged_cursor({"code": "U00001"}),
        forged_cursor(None),
    ],
)
async def test_a_cursor_the_service_did_not_issue_is_422(
    client: httpx.AsyncClient, org: Org, cursor: str
) -> None:
    await org.unit()
    response = await client.get(UNITS, params={"cursor": cursor}, headers=org.admin)
    assert_problem(response, 422, "invalid_cursor")


async def test_a_cursor_holding_odd_characters_is_422_not_500(
    client: httpx.AsyncClient, org: Org
) -> None:
    """A NUL breaks PostgreSQL and a lone surrogate breaks UTF-8: refused before any query."""
    await org.unit()
    for value in ("\x00", "U\x00X", "\ud800", "é" * 10, "U\n", 2**63, -(2**63) - 1, True):
        response = await client.get(
            UNITS, params={"cursor": forged_cursor(value)}, headers=org.admin
        )
        assert_problem(response, 422, "invalid_cursor")


async def test_an_overlong_cursor_is_422(client: httpx.AsyncClient, org: Org) -> None:
    response = await client.get(UNITS, params={"cursor": "A" * 513}, headers=org.admin)
    assert_problem(response, 422)


async def test_filters_parent_code_and_active(client: httpx.AsyncClient, org: Org) -> None:
    top = await org.unit(code="FTOP")
    live = await org.unit(code="FLIVE", parent_code=top["code"])
    dead = await org.unit(code="FDEAD", parent_code=top["code"], active=False)
    lone = await org.unit(code="FLONE", active=False)

    async def codes(**params: Any) -> list[str]:
        response = await client.get(UNITS, params=params, headers=org.admin)
        assert response.status_code == 200, response.text
        return [u["code"] for u in response.json()["items"]]

    assert await codes(parent_code=top["code"]) == [dead["code"], live["code"]]
    assert await codes(active="true") == [live["code"], top["code"]]
    assert await codes(active="false") == [dead["code"], lone["code"]]
    assert await codes(parent_code=top["code"], active="false") == [dead["code"]]
    assert await codes(parent_code=live["code"]) == []
    assert await codes(parent_code="NOPE") == []
    # Filters hold across pages.
    pages = await walk(client, UNITS, org.admin, parent_code=top["code"], limit=1)
    assert pages == [[dead["code"]], [live["code"]]]
    assert_problem(await client.get(UNITS, params={"active": "maybe"}, headers=org.admin), 422)


# --- audit --------------------------------------------------------------------------


async def test_a_patch_that_changes_nothing_appends_no_event(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit, head = await org.unit_with_head()
    subject = f"unit:{unit['code']}"
    before = await audit_trail(app, subject)
    same = {
        "name": unit["name"],
        "head_nip": head["nip"],
        "parent_code": None,
        "active": True,
    }
    response = await client.patch(f"{UNITS}/{unit['code']}", json=same, headers=org.admin)
    assert response.status_code == 200
    assert response.json() == unit  # updated_at does not move either
    assert await audit_trail(app, subject) == before


async def test_a_patch_that_changes_appends_one_event_with_the_changes(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    parent = await org.unit()
    unit, head = await org.unit_with_head()
    subject = f"unit:{unit['code']}"
    before = await audit_trail(app, subject)
    assert before[-1] == (
        "unit.updated",
        ADMIN_NIP,
        {"changes": {"head_nip": {"from": None, "to": head["nip"]}}},
    )
    response = await client.patch(
        f"{UNITS}/{unit['code']}",
        json={"name": "Baru", "parent_code": parent["code"], "head_nip": None},
        headers=org.admin,
    )
    assert response.status_code == 200
    after = await audit_trail(app, subject)
    assert after[:-1] == before
    assert after[-1] == (
        "unit.updated",
        ADMIN_NIP,
        {
            "changes": {
                "name": {"from": unit["name"], "to": "Baru"},
                "parent_code": {"from": None, "to": parent["code"]},
                "head_nip": {"from": head["nip"], "to": None},
            }
        },
    )


async def test_a_refused_change_appends_no_event(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    unit = await org.unit()
    await org.workspace(unit["code"])
    before = await audit_trail(app, f"unit:{unit['code']}")
    for body in ({"active": False}, {"parent_code": unit["code"]}, {"head_nip": make_nip()}):
        response = await client.patch(f"{UNITS}/{unit['code']}", json=body, headers=org.admin)
        assert response.status_code in (409, 422)
    assert await audit_trail(app, f"unit:{unit['code']}") == before
