"""The permit read's fast path (app/permits/fastpath.py).

It must answer a plain `GET /api/v1/permits/{id}` itself and give exactly what
the FastAPI route gives — body, ETag, headers — and pass everything else on, so
that the errors are the route's own. A request carrying a query (`?via=route`)
is passed on by the fast path and answered by the route, which ignores it:
comparing the two shows they agree.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.permits.fastpath import permit_id_of
from tests.permits_support import PERMITS, Office, move_window
from tests.support import Org, assert_problem, make_nip

pytestmark = pytest.mark.anyio

REASON = {"reason": "Ruang dipakai rapat pimpinan"}
_SAME_HEADERS = ("content-type", "content-length", "etag", "cache-control", "x-frame-options")


async def _one_permit(org: Org) -> tuple[Office, dict[str, Any], str]:
    """A new office, its staff's pending permit, and the permit's path."""
    office = await Office.create(org)
    permit = await office.submit()
    return office, permit, f"{PERMITS}/{permit['id']}"


def _answered(app: FastAPI) -> int:
    return int(app.state.permit_fast_path.answered)


async def _both(
    app: FastAPI, client: httpx.AsyncClient, permit_id: str, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """The same read through the fast path and through the route."""
    before = _answered(app)
    fast = await client.get(f"{PERMITS}/{permit_id}", headers=headers)
    assert _answered(app) == before + 1, f"the fast path did not answer: {fast.text}"
    routed = await client.get(f"{PERMITS}/{permit_id}?via=route", headers=headers)
    assert _answered(app) == before + 1, "the fast path answered a read with a query"
    return fast, routed


async def test_the_fast_path_and_the_route_agree_in_every_state(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    head = office.head["nip"]
    await office.delegate(office.colleague["nip"], "plh")
    auditor = await org.employee(roles=["auditor"])

    pending = await office.submit(starts_in=timedelta(hours=2))
    escalated = await office.submit(head, starts_in=timedelta(hours=3))  # to the parent head
    approved = await office.submit(starts_in=timedelta(hours=4))
    assert (await office.act(approved["id"], "approve", head)).status_code == 200
    denied = await office.submit(starts_in=timedelta(hours=5))
    assert (await office.act(denied["id"], "deny", head, REASON)).status_code == 200
    cancelled = await office.submit(starts_in=timedelta(hours=6))
    assert (await office.act(cancelled["id"], "cancel", office.staff["nip"])).status_code == 200
    revoked = await office.submit(starts_in=timedelta(hours=7))
    assert (await office.act(revoked["id"], "approve", head)).status_code == 200
    assert (await office.act(revoked["id"], "revoke", head, REASON)).status_code == 200
    expired = await office.submit(starts_in=timedelta(hours=8))
    await move_window(app, expired["id"], starts_in=timedelta(minutes=-5))

    readers = {
        "requester": org.as_(office.staff["nip"]),
        "head": org.as_(head),
        "plh": org.as_(office.colleague["nip"]),
        "parent head": org.as_(parent.head["nip"]),
        "admin": org.admin,
        "auditor": org.as_(auditor["nip"]),
    }
    statuses = set()
    for permit in (pending, escalated, approved, denied, cancelled, revoked, expired):
        for who, headers in readers.items():
            routed = await client.get(f"{PERMITS}/{permit['id']}?via=route", headers=headers)
            if routed.status_code == 404:  # not theirs to see: the fast path passes it on
                before = _answered(app)
                fast = await client.get(f"{PERMITS}/{permit['id']}", headers=headers)
                assert_problem(fast, 404, "not_found")
                assert _answered(app) == before, (who, permit["id"])
                continue
            fast, routed = await _both(app, client, permit["id"], headers)
            assert fast.status_code == routed.status_code == 200, (who, fast.text, routed.text)
            assert fast.content == routed.content, (who, fast.text, routed.text)
            for name in _SAME_HEADERS:
                assert fast.headers.get(name) == routed.headers.get(name), (who, name)
            assert "x-request-id" in fast.headers
            assert "ratelimit-remaining" in fast.headers
            assert set(fast.headers) == set(routed.headers), who
            statuses.add(fast.json()["status"])
    assert statuses == {"pending", "approved", "denied", "cancelled", "revoked", "expired"}

    # What the fast path showed is what the rules say.
    fast = (await client.get(f"{PERMITS}/{pending['id']}", headers=org.admin)).json()
    assert fast["approvers"] == [head, office.colleague["nip"]]
    fast = (await client.get(f"{PERMITS}/{escalated['id']}", headers=org.admin)).json()
    assert fast["approvers"] == [parent.head["nip"]]
    fast = (await client.get(f"{PERMITS}/{expired['id']}", headers=org.admin)).json()
    assert (fast["status"], fast["approvers"]) == ("expired", [])


async def test_a_decision_is_seen_by_the_very_next_read(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office, permit, path = await _one_permit(org)
    staff = org.as_(office.staff["nip"])
    before = _answered(app)
    first = await client.get(path, headers=staff)
    assert (first.json()["status"], first.headers["etag"]) == ("pending", '"1"')
    assert (await office.act(permit["id"], "approve", office.head["nip"])).status_code == 200
    second = await client.get(path, headers=staff)
    assert (second.json()["status"], second.headers["etag"]) == ("approved", '"2"')
    revoked = await office.act(permit["id"], "revoke", office.head["nip"], REASON)
    assert revoked.status_code == 200
    third = await client.get(path, headers=staff)
    assert (third.json()["status"], third.json()["closed_by"]) == ("revoked", office.head["nip"])
    assert _answered(app) == before + 3


async def test_what_the_fast_path_does_not_answer_gets_the_routes_errors(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office, _permit, path = await _one_permit(org)
    created = await client.post(
        "/api/v1/api-keys", json={"name": "gerbang", "scopes": ["check"]}, headers=org.admin
    )
    key = {"X-API-Key": created.json()["key"]}
    stranger = await org.employee()
    leaver = await org.employee(unit_code=office.unit["code"])
    left = await client.patch(
        f"/api/v1/employees/{leaver['nip']}", json={"active": False}, headers=org.admin
    )
    assert left.status_code == 200, left.text
    before = _answered(app)

    assert_problem(await client.get(path), 401, "unauthenticated")
    assert_problem(await client.get(path, headers={"Authorization": "Bearer x.y.z"}), 401)
    assert_problem(await client.get(path, headers=org.as_(make_nip())), 401, "unknown_employee")
    assert_problem(await client.get(path, headers=org.as_(leaver["nip"])), 401, "employee_inactive")
    assert (await client.get(path, headers=key)).status_code == 403
    both = {**key, **org.admin}
    assert_problem(await client.get(path, headers=both), 401, "ambiguous_credentials")
    assert_problem(await client.get(path, headers=org.as_(stranger["nip"])), 404, "not_found")
    missing = f"{PERMITS}/{'0' * 26}"
    assert_problem(await client.get(missing, headers=org.admin), 404, "not_found")
    assert_problem(await client.get(f"{PERMITS}/pendek", headers=org.admin), 404, "not_found")
    assert _answered(app) == before

    # CORS is the CORS layer's and the route's; so is any other method.
    cors = await client.get(path, headers={**org.admin, "Origin": "https://x.example"})
    assert cors.status_code == 200, cors.text
    assert (await client.head(path, headers=org.admin)).status_code in (200, 405)
    assert _answered(app) == before


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/permits/01JC5Z8K9Q0000000000000000", "01JC5Z8K9Q0000000000000000"),
        ("/api/v1/permits/01jc5z8k9q0000000000000000", "01jc5z8k9q0000000000000000"),
        ("/api/v1/permits/01JC5Z8K9Q000000000000000", None),
        ("/api/v1/permits/01JC5Z8K9Q00000000000000000", None),
        ("/api/v1/permits/01JC5Z8K9Q000000000000000-", None),
        ("/api/v1/permits/01JC5Z8K9Q00000000000000é0", None),
        ("/api/v1/permits/01JC5Z8K9Q0000000000000000/events", None),
        ("/api/v1/permits/", None),
        ("/api/v1/permits", None),
        ("/api/v1/units/01JC5Z8K9Q0000000000000000", None),
    ],
)
def test_which_paths_the_fast_path_takes(path: str, expected: str | None) -> None:
    assert permit_id_of(path) == expected
