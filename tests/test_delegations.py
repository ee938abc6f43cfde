"""Delegations (Plh/Plt), docs/RULES.md #resources, #roles: who may act for a unit head, and for
which window.

Admins and the unit's own head appoint a delegate (an active employee, not the
head) for a window; revoking keeps the record. Times carry an offset and come
back in UTC with `Z`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import ADMIN_NIP, Org, assert_problem, audit_trail, make_nip

pytestmark = pytest.mark.anyio


def window(
    start: timedelta = timedelta(0), length: timedelta = timedelta(days=3)
) -> dict[str, str]:
    begin = datetime.now(UTC) + start
    return {"starts_at": begin.isoformat(), "ends_at": (begin + length).isoformat()}


def path_of(unit: dict[str, Any]) -> str:
    return f"/api/v1/units/{unit['code']}/delegations"


class Scene:
    """A unit with a head, a deputy in that unit, and the body of a Plh for the deputy."""

    def __init__(self, unit: dict[str, Any], head: dict[str, Any], deputy: dict[str, Any]) -> None:
        self.unit, self.head, self.deputy = unit, head, deputy
        self.path = path_of(unit)
        self.body: dict[str, Any] = {
            "delegate_nip": deputy["nip"],
            "kind": "plh",
            "reason": "Kepala dinas luar daerah",
            **window(),
        }


@pytest.fixture
async def scene(org: Org) -> Scene:
    unit, head = await org.unit_with_head()
    deputy = await org.employee(unit_code=unit["code"], position="Sekretaris")
    return Scene(unit, head, deputy)


async def deputises(client: httpx.AsyncClient, org: Org, nip: str) -> list[str]:
    me = await client.get("/api/v1/me", headers=org.as_(nip))
    assert me.status_code == 200, me.text
    return [d["delegation_id"] for d in me.json()["deputises"]]


# --- create -------------------------------------------------------------------------


async def test_admin_appoints_a_delegate(
    client: httpx.AsyncClient, org: Org, scene: Scene, app: FastAPI
) -> None:
    response = await client.post(scene.path, json=scene.body, headers=org.admin)
    assert response.status_code == 201, response.text
    delegation = response.json()
    assert response.headers["Location"] == f"/api/v1/delegations/{delegation['id']}"
    assert {k: delegation[k] for k in ("unit_code", "delegate_nip", "kind", "reason")} == {
        "unit_code": scene.unit["code"],
        "delegate_nip": scene.deputy["nip"],
        "kind": "plh",
        "reason": "Kepala dinas luar daerah",
    }
    assert delegation["created_by"] == ADMIN_NIP
    assert (delegation["revoked_at"], delegation["revoked_by"]) == (None, None)
    assert delegation["in_force"] is True
    for stamp in ("starts_at", "ends_at", "created_at"):
        assert delegation[stamp].endswith("Z")
    # Anyone may read it at its Location.
    staff = org.as_((await org.employee())["nip"])
    assert (await client.get(response.headers["Location"], headers=staff)).json() == delegation
    events = await audit_trail(app, f"delegation:{delegation['id']}")
    assert [(a, actor) for a, actor, _ in events] == [("delegation.created", ADMIN_NIP)]
    assert events[0][2]["delegate_nip"] == scene.deputy["nip"]


async def test_the_unit_head_appoints_a_delegate(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    response = await client.post(scene.path, json=scene.body, headers=org.as_(scene.head["nip"]))
    assert response.status_code == 201, response.text
    assert response.json()["created_by"] == scene.head["nip"]
    fetched = await client.get(response.headers["Location"], headers=org.as_(scene.deputy["nip"]))
    assert fetched.json() == response.json()


async def test_a_plt_for_a_vacant_post_is_appointed_by_an_admin(
    client: httpx.AsyncClient, org: Org
) -> None:
    vacant = await org.unit()
    acting = await org.employee()
    body = {"delegate_nip": acting["nip"], "kind": "plt", "reason": "Jabatan kosong", **window()}
    response = await client.post(path_of(vacant), json=body, headers=org.admin)
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "plt"
    assert await deputises(client, org, acting["nip"]) == [response.json()["id"]]


# --- who may appoint ----------------------------------------------------------------


async def test_others_may_not_appoint(client: httpx.AsyncClient, org: Org, scene: Scene) -> None:
    other_head = (await org.unit_with_head())[1]
    auditor = await org.employee(roles=["auditor"])
    parent_head = await org.employee()
    await client.patch(
        f"/api/v1/units/{scene.unit['code']}",
        json={"parent_code": (await org.unit(head_nip=parent_head["nip"]))["code"]},
        headers=org.admin,
    )
    for caller in (other_head, scene.deputy, auditor, parent_head):
        response = await client.post(scene.path, json=scene.body, headers=org.as_(caller["nip"]))
        assert_problem(response, 403, "not_unit_head")
    listed = await client.get(scene.path, headers=org.admin)
    assert listed.json() == {"items": [], "next_cursor": None}


async def test_a_former_head_may_no_longer_appoint(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    successor = await org.employee(unit_code=scene.unit["code"])
    await client.patch(
        f"/api/v1/units/{scene.unit['code']}",
        json={"head_nip": successor["nip"]},
        headers=org.admin,
    )
    response = await client.post(scene.path, json=scene.body, headers=org.as_(scene.head["nip"]))
    assert_problem(response, 403, "not_unit_head")
    by_successor = await client.post(scene.path, json=scene.body, headers=org.as_(successor["nip"]))
    assert by_successor.status_code == 201, by_successor.text


async def test_an_unknown_unit_is_404(client: httpx.AsyncClient, org: Org, scene: Scene) -> None:
    for headers in (org.admin, org.as_(scene.head["nip"])):
        response = await client.post(
            "/api/v1/units/NOPE/delegations", json=scene.body, headers=headers
        )
        assert "NOPE" in assert_problem(response, 404, "not_found")["detail"]
    assert_problem(await client.get("/api/v1/units/NOPE/delegations", headers=org.admin), 404)


async def test_credentials_are_required(client: httpx.AsyncClient, scene: Scene) -> None:
    assert_problem(await client.post(scene.path, json=scene.body), 401)
    assert_problem(await client.get(scene.path), 401)


# --- the delegate -------------------------------------------------------------------


async def test_the_delegate_must_be_a_known_active_employee_other_than_the_head(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    retired = await org.employee(active=False)
    stranger = make_nip()
    for nip, code in (
        (stranger, "unknown_employee"),
        (retired["nip"], "employee_inactive"),
        (scene.head["nip"], "delegate_is_head"),
    ):
        response = await client.post(
            scene.path, json={**scene.body, "delegate_nip": nip}, headers=org.admin
        )
        body = assert_problem(response, 422, code)
        assert body["errors"][0]["loc"] == ["body", "delegate_nip"]
        assert nip in body["detail"]
    assert (await client.get(scene.path, headers=org.admin)).json()["items"] == []


async def test_a_delegate_from_another_unit_is_allowed(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    outsider = await org.employee(unit_code=(await org.unit())["code"])
    response = await client.post(
        scene.path, json={**scene.body, "delegate_nip": outsider["nip"]}, headers=org.admin
    )
    assert response.status_code == 201, response.text


# --- the window ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "length", "names"),
    [
        (timedelta(hours=1), timedelta(hours=-1), "after starts_at"),
        (timedelta(hours=1), timedelta(0), "after starts_at"),
        (timedelta(days=-5), timedelta(days=1), "past"),
        (timedelta(days=-2), timedelta(days=2) - timedelta(seconds=5), "past"),
        (timedelta(hours=1), timedelta(days=366, seconds=1), "366 days"),
        (timedelta(days=30), timedelta(days=400), "366 days"),
    ],
)
async def test_a_bad_window_is_422_invalid_window(
    client: httpx.AsyncClient,
    org: Org,
    scene: Scene,
    start: timedelta,
    length: timedelta,
    names: str,
) -> None:
    body = {**scene.body, **window(start, length)}
    response = await client.post(scene.path, json=body, headers=org.admin)
    problem = assert_problem(response, 422, "invalid_window")
    assert problem["errors"][0]["loc"] == ["body", "ends_at"]
    assert names in problem["errors"][0]["msg"]


@pytest.mark.parametrize(
    ("start", "length"),
    [
        (timedelta(hours=1), timedelta(days=366)),  # the longest window
        (timedelta(days=-1), timedelta(days=2)),  # started yesterday, still to run
        (timedelta(days=200), timedelta(minutes=1)),  # far ahead and short
    ],
)
async def test_windows_at_the_edges_are_accepted(
    client: httpx.AsyncClient, org: Org, scene: Scene, start: timedelta, length: timedelta
) -> None:
    response = await client.post(
        scene.path, json={**scene.body, **window(start, length)}, headers=org.admin
    )
    assert response.status_code == 201, response.text


# Each case: starts_at, ends_at, and the field the 422 names.
NAIVE_OR_MALFORMED = {
    "naive start": ("2030-01-01T09:00:00", "2030-01-02T09:00:00", "starts_at"),
    "naive end": ("2030-01-01T09:00:00Z", "2030-01-02T09:00:00", "ends_at"),
    "a date": ("2030-01-01", "2030-01-02T09:00:00Z", "starts_at"),
    "a word": ("tomorrow", "2030-01-02T09:00:00Z", "starts_at"),
}


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "loc"), NAIVE_OR_MALFORMED.values(), ids=NAIVE_OR_MALFORMED
)
async def test_naive_or_malformed_times_are_422(
    client: httpx.AsyncClient, org: Org, scene: Scene, starts_at: str, ends_at: str, loc: str
) -> None:
    body = {**scene.body, "starts_at": starts_at, "ends_at": ends_at}
    response = await client.post(scene.path, json=body, headers=org.admin)
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", loc]


async def test_naive_times_are_named_as_such(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    body = {**scene.body, "starts_at": "2030-01-01T09:00:00", "ends_at": "2030-01-02T09:00:00Z"}
    response = await client.post(scene.path, json=body, headers=org.admin)
    assert assert_problem(response, 422)["errors"][0]["code"] == "naive_datetime"


async def test_offsets_are_accepted_and_returned_in_utc(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    body = {
        **scene.body,
        "starts_at": "2030-01-01T09:00:00+07:00",
        "ends_at": "2030-01-02T08:30:00-05:00",
    }
    response = await client.post(scene.path, json=body, headers=org.admin)
    assert response.status_code == 201, response.text
    expected = ("2030-01-01T02:00:00.000000Z", "2030-01-02T13:30:00.000000Z")
    assert (response.json()["starts_at"], response.json()["ends_at"]) == expected
    assert response.json()["in_force"] is False  # not started yet
    fetched = (await client.get(response.headers["Location"], headers=org.admin)).json()
    assert (fetched["starts_at"], fetched["ends_at"]) == expected


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"kind": "acting"}, "kind"),
        ({"kind": None}, "kind"),
        ({"reason": ""}, "reason"),
        ({"reason": None}, "reason"),
        ({"delegate_nip": None}, "delegate_nip"),
        ({"created_by": ADMIN_NIP}, "created_by"),
        ({"revoked_at": None}, "revoked_at"),
    ],
)
async def test_a_malformed_body_is_422(
    client: httpx.AsyncClient, org: Org, scene: Scene, change: dict[str, Any], loc: str
) -> None:
    response = await client.post(scene.path, json={**scene.body, **change}, headers=org.admin)
    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"][:2] == [
        "body",
        loc,
    ]


async def test_an_inactive_unit_gets_no_delegation(client: httpx.AsyncClient, org: Org) -> None:
    closed = await org.unit(active=False)
    deputy = await org.employee()
    body = {"delegate_nip": deputy["nip"], "kind": "plt", "reason": "x", **window()}
    response = await client.post(path_of(closed), json=body, headers=org.admin)
    assert_problem(response, 409, "unit_inactive")


# --- revocation ---------------------------------------------------------------------


async def test_revoking_keeps_the_record(
    client: httpx.AsyncClient, org: Org, scene: Scene, app: FastAPI
) -> None:
    created = (
        await client.post(scene.path, json=scene.body, headers=org.as_(scene.head["nip"]))
    ).json()
    location = f"/api/v1/delegations/{created['id']}"
    assert await deputises(client, org, scene.deputy["nip"]) == [created["id"]]
    revoked = await client.delete(location, headers=org.as_(scene.head["nip"]))
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["revoked_at"].endswith("Z")
    assert body["revoked_by"] == scene.head["nip"]
    assert body["in_force"] is False
    assert body | {"revoked_at": None, "revoked_by": None, "in_force": True} == created
    assert (await client.get(location, headers=org.admin)).json() == body
    assert [d["id"] for d in (await client.get(scene.path, headers=org.admin)).json()["items"]] == [
        created["id"]
    ]
    assert await deputises(client, org, scene.deputy["nip"]) == []
    events = await audit_trail(app, f"delegation:{created['id']}")
    assert [(a, actor) for a, actor, _ in events] == [
        ("delegation.created", scene.head["nip"]),
        ("delegation.revoked", scene.head["nip"]),
    ]


async def test_revoking_twice_is_409(client: httpx.AsyncClient, org: Org, scene: Scene) -> None:
    created = (await client.post(scene.path, json=scene.body, headers=org.admin)).json()
    location = f"/api/v1/delegations/{created['id']}"
    first = await client.delete(location, headers=org.admin)
    assert first.status_code == 200
    second = await client.delete(location, headers=org.admin)
    assert_problem(second, 409, "delegation_ended")
    assert (await client.get(location, headers=org.admin)).json() == first.json()


async def test_a_future_delegation_can_be_called_off_before_it_starts(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    body = {**scene.body, **window(timedelta(days=7), timedelta(days=2))}
    created = (await client.post(scene.path, json=body, headers=org.admin)).json()
    assert created["in_force"] is False
    assert await deputises(client, org, scene.deputy["nip"]) == []
    revoked = await client.delete(f"/api/v1/delegations/{created['id']}", headers=org.admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None


async def test_only_admins_and_the_head_revoke(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    created = (await client.post(scene.path, json=scene.body, headers=org.admin)).json()
    location = f"/api/v1/delegations/{created['id']}"
    other_head = (await org.unit_with_head())[1]
    auditor = await org.employee(roles=["auditor"])
    for caller in (scene.deputy, other_head, auditor):
        response = await client.delete(location, headers=org.as_(caller["nip"]))
        assert_problem(response, 403, "not_unit_head")
    assert (await client.get(location, headers=org.admin)).json() == created
    assert await deputises(client, org, scene.deputy["nip"]) == [created["id"]]
    by_admin = await client.delete(location, headers=org.admin)
    assert by_admin.json()["revoked_by"] == ADMIN_NIP


async def test_an_unknown_delegation_is_404(client: httpx.AsyncClient, org: Org) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(
            method, "/api/v1/delegations/01abcdefghjkmnpqrstvwxyz00", headers=org.admin
        )
        assert_problem(response, 404, "not_found")


# --- /me ----------------------------------------------------------------------------


async def test_me_lists_the_delegations_in_force(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    plh = (await client.post(scene.path, json=scene.body, headers=org.admin)).json()
    other_unit = await org.unit()
    plt = (
        await client.post(
            path_of(other_unit), json={**scene.body, "kind": "plt"}, headers=org.admin
        )
    ).json()
    later = {**scene.body, **window(timedelta(days=10))}
    assert (await client.post(scene.path, json=later, headers=org.admin)).status_code == 201
    me = (await client.get("/api/v1/me", headers=org.as_(scene.deputy["nip"]))).json()
    assert me["heads"] == []
    by_unit = {d["unit_code"]: d for d in me["deputises"]}
    assert set(by_unit) == {scene.unit["code"], other_unit["code"]}  # not the future one
    assert by_unit[scene.unit["code"]] == {
        "unit_code": scene.unit["code"],
        "kind": "plh",
        "delegation_id": plh["id"],
        "starts_at": plh["starts_at"],
        "ends_at": plh["ends_at"],
    }
    assert by_unit[other_unit["code"]]["kind"] == "plt"
    await client.delete(f"/api/v1/delegations/{plh['id']}", headers=org.admin)
    assert await deputises(client, org, scene.deputy["nip"]) == [plt["id"]]
    head_me = (await client.get("/api/v1/me", headers=org.as_(scene.head["nip"]))).json()
    assert (head_me["heads"], head_me["deputises"]) == ([scene.unit["code"]], [])


# --- lists --------------------------------------------------------------------------


async def test_a_units_delegations_page_with_limit_and_cursor(
    client: httpx.AsyncClient, org: Org, scene: Scene
) -> None:
    ids = []
    for _ in range(5):
        response = await client.post(scene.path, json=scene.body, headers=org.admin)
        ids.append(response.json()["id"])
    other_unit = await org.unit()
    await client.post(path_of(other_unit), json=scene.body, headers=org.admin)
    staff = org.as_((await org.employee())["nip"])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(scene.path, params=params, headers=staff)
        assert response.status_code == 200, response.text
        body = response.json()
        assert all(d["unit_code"] == scene.unit["code"] for d in body["items"])
        seen += [d["id"] for d in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids)
    assert len(set(seen)) == 5
    assert_problem(await client.get(scene.path, params={"limit": 201}, headers=staff), 422)
    assert_problem(
        await client.get(scene.path, params={"cursor": "%%%"}, headers=staff), 422, "invalid_cursor"
    )
