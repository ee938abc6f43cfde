"""Who may call what: every route, every kind of caller, the expected status (docs/RULES.md #roles).

The table below is the whole contract. A route the app serves but the table lacks
fails `test_the_table_covers_every_route`, so no route slips in unguarded.
Mutating calls that are expected to succeed get a fresh target each time, so one
caller's success never changes what the next caller sees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.config import Settings
from app.metrics import router as operator_routes
from tests.permits_support import Office, permit_body
from tests.push_support import EventStream
from tests.support import ADMIN_NIP, Org, assert_problem, delegation_body, make_code, make_nip

pytestmark = pytest.mark.anyio

STREAM = "/api/v1/events/stream"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every refused credential here comes from one address: its failure budget
    (docs/RULES.md#rate-limits, proven in test_guard_rails.py) has room for them all."""
    return settings.model_copy(
        update={
            "rate_limit_auth_failures_per_minute": 100_000,
            "webhook_allow_http": True,  # the table's webhooks post to a closed local port
            "webhook_allow_private": True,
        }
    )


CALLERS = (
    "anonymous",
    "requester",
    "colleague",
    "other_staff",
    "head",
    "other_head",
    "plh",
    "plh_out_of_window",
    "parent_head",
    "auditor",
    "admin",
    "key_check",
    "key_events",
    "key_no_scope",
    "key_revoked",
)
EMPLOYEES = CALLERS[1:11]
KEYS = ("key_check", "key_events", "key_no_scope", "key_revoked")


def table(default: int, **overrides: int) -> dict[str, int]:
    """Expected status per caller: `default` for employees; keys 403; revoked key, anonymous 401."""
    row = dict.fromkeys(EMPLOYEES, default)
    row.update(anonymous=401, key_check=403, key_events=403, key_no_scope=403, key_revoked=401)
    row.update(overrides)
    return row


def admin_only(success: int) -> dict[str, int]:
    return table(403, admin=success)


PUBLIC = dict.fromkeys(CALLERS, 200)
# On a permit of `requester` (unit U, head `head`, Plh `plh`), parent unit P (`parent_head`).
SEES_PERMIT = dict.fromkeys(("requester", "head", "plh", "auditor", "admin"), 200)
HIDDEN = dict.fromkeys(
    ("colleague", "other_staff", "other_head", "plh_out_of_window", "parent_head"), 404
)
DECIDE = table(404, **HIDDEN, head=200, plh=200, requester=403, auditor=403, admin=403)

MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("get", "/healthz"): PUBLIC,
    ("get", "/readyz"): PUBLIC,
    ("get", "/metrics"): PUBLIC,  # without METRICS_TOKEN (with it: tests/test_metrics.py)
    ("get", "/.well-known/jwks.json"): PUBLIC,  # the signed permits' keys, in every auth mode
    ("get", "/api/v1/me"): table(200),
    ("post", "/api/v1/units"): admin_only(201),
    ("get", "/api/v1/units"): table(200),
    ("get", "/api/v1/units/{code}"): table(200),
    ("patch", "/api/v1/units/{code}"): admin_only(200),
    ("post", "/api/v1/workspaces"): admin_only(201),
    ("get", "/api/v1/workspaces"): table(200),
    ("get", "/api/v1/workspaces/{code}"): table(200),
    ("patch", "/api/v1/workspaces/{code}"): admin_only(200),
    ("post", "/api/v1/employees"): admin_only(201),
    ("get", "/api/v1/employees"): table(200),
    ("get", "/api/v1/employees/{nip}"): table(404, requester=200, auditor=200, admin=200),
    ("patch", "/api/v1/employees/{nip}"): admin_only(200),
    ("post", "/api/v1/units/{code}/delegations"): table(403, head=201, admin=201),
    ("get", "/api/v1/units/{code}/delegations"): table(200),
    ("get", "/api/v1/delegations/{delegation_id}"): table(200),
    ("delete", "/api/v1/delegations/{delegation_id}"): table(403, head=200, admin=200),
    ("post", "/api/v1/api-keys"): admin_only(201),
    ("get", "/api/v1/api-keys"): admin_only(200),
    ("get", "/api/v1/api-keys/{key_id}"): admin_only(200),
    ("delete", "/api/v1/api-keys/{key_id}"): admin_only(200),
    ("get", "/api/v1/policy"): table(200),
    ("post", "/api/v1/permits"): table(201),
    ("get", "/api/v1/permits"): table(200),
    ("get", "/api/v1/permits/{permit_id}"): table(404, **SEES_PERMIT),
    ("post", "/api/v1/permits/{permit_id}/approve"): DECIDE,
    ("post", "/api/v1/permits/{permit_id}/deny"): DECIDE,
    ("post", "/api/v1/permits/{permit_id}/revoke"): DECIDE,
    ("post", "/api/v1/permits/{permit_id}/cancel"): table(
        404, **HIDDEN, requester=200, head=403, plh=403, auditor=403, admin=403
    ),
    ("get", "/api/v1/permits/{permit_id}/events"): table(
        404, **HIDDEN, requester=403, head=403, plh=403, auditor=200, admin=200
    ),
    # Signed permits (SPEC §9): an approved permit's readers; the rest is public.
    ("get", "/api/v1/permits/{permit_id}/credential"): table(404, **SEES_PERMIT),
    ("get", "/api/v1/permits/{permit_id}/credential.png"): table(404, **SEES_PERMIT),
    ("get", "/api/v1/permits/{permit_id}/credential.svg"): table(404, **SEES_PERMIT),
    ("get", "/api/v1/status-lists/{number}"): PUBLIC,
    ("post", "/api/v1/credentials/verify"): PUBLIC,
    ("get", "/api/v1/authorizations/check"): table(200, key_check=200),
    ("post", "/api/v1/authorizations/check-batch"): table(200, key_check=200),
    ("get", "/api/v1/audit/events"): table(403, auditor=200, admin=200),
    ("get", "/api/v1/audit/events.csv"): table(403, auditor=200, admin=200),
    ("get", "/api/v1/audit/verify"): table(403, auditor=200, admin=200),
    ("post", "/api/v1/webhooks"): admin_only(201),
    ("get", "/api/v1/webhooks"): admin_only(200),
    ("get", "/api/v1/webhooks/{webhook_id}"): admin_only(200),
    ("patch", "/api/v1/webhooks/{webhook_id}"): admin_only(200),
    ("delete", "/api/v1/webhooks/{webhook_id}"): admin_only(200),
    ("post", "/api/v1/webhooks/{webhook_id}/rotate-secret"): admin_only(200),
    ("get", "/api/v1/webhooks/{webhook_id}/deliveries"): admin_only(200),
    ("post", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): admin_only(202),
    # Any employee (what they see is narrowed: tests/test_event_stream.py), keys with `events`.
    ("post", "/api/v1/events/tickets"): table(200, key_events=200),
    ("get", "/api/v1/events/stream"): table(200, key_events=200),
}


@dataclass
class World:
    """Everyone in the table, and targets to call routes on."""

    org: Org
    headers: dict[str, dict[str, str]]
    office: Office
    parent: Office
    other: Office
    plh_delegation: dict[str, Any]
    spare_nip: str = ""  # the delegate of delegations the table creates and revokes
    permits_made: int = 0

    async def fresh_permit(self, approved: bool = False) -> str:
        self.permits_made += 1  # each in its own window, so approvals never conflict
        starts_in = timedelta(hours=2 * self.permits_made)
        permit = await self.office.submit(self.office.staff["nip"], starts_in=starts_in)
        if approved:
            response = await self.office.act(permit["id"], "approve", self.office.head["nip"])
            assert response.status_code == 200, response.text
        return str(permit["id"])

    async def fresh_delegation(self) -> str:
        response = await self.org.client.post(
            f"/api/v1/units/{self.office.unit['code']}/delegations",
            json=delegation_body(self.spare_nip, reason="Cuti"),
            headers=self.org.admin,
        )
        return str(response.json()["id"])

    async def fresh_key(self, scopes: list[str] | None = None) -> dict[str, Any]:
        body = {"name": "client", **({"scopes": scopes} if scopes is not None else {})}
        response = await self.org.client.post("/api/v1/api-keys", json=body, headers=self.org.admin)
        return dict(response.json())


async def build_world(org: Org) -> World:
    parent = await Office.create(org)
    office = await Office.create(org, parent_code=parent.unit["code"])
    other = await Office.create(org)
    plh, late = (
        await org.employee(unit_code=office.unit["code"]),
        await org.employee(unit_code=office.unit["code"]),
    )
    auditor = await org.employee(roles=["auditor"])
    plh_delegation = await office.delegate(plh["nip"])
    future = datetime.now(UTC) + timedelta(days=5)
    response = await org.client.post(
        f"/api/v1/units/{office.unit['code']}/delegations",
        json={
            "delegate_nip": late["nip"],
            "kind": "plh",
            "starts_at": future.isoformat(),
            "ends_at": (future + timedelta(days=1)).isoformat(),
            "reason": "Nanti",
        },
        headers=org.admin,
    )
    assert response.status_code == 201
    spare = await org.employee(unit_code=other.unit["code"])
    world = World(org, {}, office, parent, other, plh_delegation, spare_nip=spare["nip"])
    revoked = await world.fresh_key()
    await org.client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=org.admin)
    nips = {
        "requester": office.staff["nip"],
        "colleague": office.colleague["nip"],
        "other_staff": other.staff["nip"],
        "head": office.head["nip"],
        "other_head": other.head["nip"],
        "plh": plh["nip"],
        "plh_out_of_window": late["nip"],
        "parent_head": parent.head["nip"],
        "auditor": auditor["nip"],
        "admin": ADMIN_NIP,
    }
    world.headers = {caller: org.as_(nip) for caller, nip in nips.items()}
    world.headers["anonymous"] = {}
    world.headers["key_check"] = {"X-API-Key": (await world.fresh_key())["key"]}
    world.headers["key_events"] = {"X-API-Key": (await world.fresh_key(["events"]))["key"]}
    world.headers["key_no_scope"] = {"X-API-Key": (await world.fresh_key([]))["key"]}
    world.headers["key_revoked"] = {"X-API-Key": revoked["key"]}
    return world


Call = Callable[[World, bool], Awaitable[tuple[str, dict[str, Any] | None, dict[str, str]]]]
"""(world, fresh) -> (path, JSON body or None, query parameters)."""


def _times(hours: int = 2) -> dict[str, str]:
    begin = datetime.now(UTC) + timedelta(hours=hours)
    return {"starts_at": begin.isoformat(), "ends_at": (begin + timedelta(days=1)).isoformat()}


async def _call(
    world: World, method: str, template: str, fresh: bool
) -> tuple[str, Any, dict[str, str]]:
    office = world.office
    unit, workspace = office.unit["code"], office.workspace["code"]
    if template == "/api/v1/units":
        return template, {"code": make_code(), "name": "Unit"} if method == "post" else None, {}
    if template == "/api/v1/units/{code}":
        return f"/api/v1/units/{unit}", {"name": "Nama"} if method == "patch" else None, {}
    if template == "/api/v1/workspaces":
        body = {"code": make_code(), "name": "Ruang", "unit_code": unit, "kind": "meeting"}
        return template, body if method == "post" else None, {}
    if template == "/api/v1/workspaces/{code}":
        return (
            f"/api/v1/workspaces/{workspace}",
            {"name": "Ruang"} if method == "patch" else None,
            {},
        )
    if template == "/api/v1/employees":
        return template, {"nip": make_nip(), "name": "Baru"} if method == "post" else None, {}
    if template == "/api/v1/employees/{nip}":
        return (
            f"/api/v1/employees/{office.staff['nip']}",
            {"position": "Analis"} if method == "patch" else None,
            {},
        )
    if template == "/api/v1/units/{code}/delegations":
        body = {
            "delegate_nip": office.colleague["nip"],
            "kind": "plh",
            "reason": "Cuti",
            **_times(),
        }
        return f"/api/v1/units/{unit}/delegations", body if method == "post" else None, {}
    if template == "/api/v1/delegations/{delegation_id}":
        delegation = await world.fresh_delegation() if fresh else world.plh_delegation["id"]
        return f"/api/v1/delegations/{delegation}", None, {}
    if template == "/api/v1/api-keys":
        return template, {"name": "k"} if method == "post" else None, {}
    if template == "/api/v1/api-keys/{key_id}":
        return f"/api/v1/api-keys/{(await world.fresh_key())['id']}", None, {}
    if template == "/api/v1/permits":
        return template, permit_body(workspace) if method == "post" else None, {}
    if template.startswith("/api/v1/permits/{permit_id}"):
        action = template.rsplit("/", 1)[-1]
        approved = action == "revoke" or action.startswith("credential")
        permit = await world.fresh_permit(approved=approved)
        body = (
            {"reason": "Alasan"}
            if action in ("deny", "revoke")
            else ({} if method == "post" else None)
        )
        return template.replace("{permit_id}", permit), body, {}
    if template == "/api/v1/authorizations/check":
        return template, None, {"nip": office.staff["nip"], "workspace_code": workspace}
    if template == "/api/v1/authorizations/check-batch":
        query = {"nip": office.staff["nip"], "workspace_code": workspace}
        return template, {"checks": [query, {"platform": "youtube", "channel": "@k"}]}, {}
    if template.startswith("/api/v1/webhooks"):
        return await _webhook_call(world, method, template)
    if template == "/api/v1/status-lists/{number}":
        await world.fresh_permit(approved=True)  # the first approval begins list 0
        return "/api/v1/status-lists/0", None, {}
    if template == "/api/v1/credentials/verify":
        return template, {"credential": "not.a.credential"}, {}
    return template, None, {}


async def _webhook_call(
    world: World, method: str, template: str
) -> tuple[str, Any, dict[str, str]]:
    """A webhook (a fresh one: a deactivation or a rotation changes it) that receives
    `permit.submitted` at a closed local port, and one of its deliveries."""
    org = world.org
    body = {"url": "http://127.0.0.1:9/hook", "events": ["permit.submitted"]}
    if template == "/api/v1/webhooks":
        return template, body if method == "post" else None, {}
    response = await org.client.post("/api/v1/webhooks", json=body, headers=org.admin)
    hook = response.json()["id"]
    path = template.replace("{webhook_id}", hook)
    if "{delivery_id}" in template:
        await world.fresh_permit()
        listed = await org.client.get(f"/api/v1/webhooks/{hook}/deliveries", headers=org.admin)
        path = path.replace("{delivery_id}", listed.json()["items"][0]["id"])
    return path, {"description": "Gerbang"} if method == "patch" else None, {}


async def test_the_table_covers_every_route(client: httpx.AsyncClient) -> None:
    served = {
        (method, path)
        for path, item in (await client.get("/openapi.json")).json()["paths"].items()
        for method in item
    }
    # The operator's routes, kept out of the document.
    served |= {
        (method.lower(), route.path)
        for route in operator_routes.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert served == set(MATRIX), {
        "missing from the table": served - set(MATRIX),
        "gone": set(MATRIX) - served,
    }
    for row in MATRIX.values():
        assert set(row) == set(CALLERS)


async def test_every_route_and_caller(client: httpx.AsyncClient, org: Org, app: FastAPI) -> None:
    world = await build_world(org)
    mismatches = []
    for (method, template), row in MATRIX.items():
        for caller in CALLERS:
            expected = row[caller]
            path, body, params = await _call(world, method, template, fresh=200 <= expected < 300)
            if template == STREAM:  # it never ends: read its status, then leave
                async with EventStream(app, world.headers[caller], params) as stream:
                    status = stream.status
                if status != expected:
                    mismatches.append((method, template, caller, expected, status, ""))
                continue
            response = await client.request(
                method.upper(), path, json=body, params=params, headers=world.headers[caller]
            )
            if response.status_code != expected:
                mismatches.append(
                    (method, template, caller, expected, response.status_code, response.text[:200])
                )
            elif expected >= 400:
                assert_problem(response, expected)
    assert not mismatches, "\n".join(map(str, mismatches))
    assert len(MATRIX) * len(CALLERS) >= 500
