"""Submitting a permit (docs/RULES.md #permits): the permit as returned, and every SE 47/2025 rule
refusing with its own code and citation; the published policy and the settings behind its limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.permits.policy import ATTESTATIONS
from tests.permits_support import PERMITS, WIB, Office, audit_actions, permit_body, submit
from tests.support import ADMIN_NIP, Org, Tokens, assert_problem

pytestmark = pytest.mark.anyio

SE = "47/2025"


async def _post(client: httpx.AsyncClient, org: Org, nip: str, body: Any) -> httpx.Response:
    return await client.post(PERMITS, json=body, headers=org.as_(nip))


async def _all_permits(client: httpx.AsyncClient, org: Org) -> list[dict[str, Any]]:
    response = await client.get(PERMITS, headers=org.admin)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


@asynccontextmanager
async def _app_with(settings: Settings, tokens: Tokens, **update: Any) -> AsyncIterator[Org]:
    """A second app on the same database with other settings, run like the `app` fixture."""
    application = create_app(settings.model_copy(update=update))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as http:
            yield Org(http, tokens)


# --- the created permit ---------------------------------------------------------------


async def test_a_submission_is_created_with_every_field(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    plh = await office.delegate(office.colleague["nip"], "plh")
    assert plh["kind"] == "plh"
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0).astimezone(WIB)
    body = permit_body(office.workspace["code"], start=start, minutes=90)
    assert body["starts_at"].endswith("+07:00")

    response = await _post(client, org, office.staff["nip"], body)

    assert response.status_code == 201, response.text
    permit = response.json()
    assert response.headers["Location"] == f"/api/v1/permits/{permit['id']}"
    assert response.headers["ETag"] == '"1"'
    assert isinstance(permit["id"], str)
    assert permit["id"]
    for field in ("workspace_code", "platform", "channel", "purpose", "title", "description"):
        assert permit[field] == body[field], field
    assert permit["attestations"] == dict.fromkeys(ATTESTATIONS, True)
    assert permit["requester_nip"] == office.staff["nip"]
    assert permit["unit_code"] == office.unit["code"]
    assert permit["status"] == "pending"
    assert permit["version"] == 1
    assert permit["approvers"] == [office.head["nip"], office.colleague["nip"]]
    for field in ("decided_by", "decided_as", "decided_at", "decision_note"):
        assert permit[field] is None, field
    # Stored and returned in UTC with `Z`: the same instants as the +07:00 ones sent.
    for field in ("starts_at", "ends_at", "created_at", "updated_at"):
        assert permit[field].endswith("Z"), (field, permit[field])
    assert _instant(permit["starts_at"]) == start
    assert _instant(permit["ends_at"]) == start + timedelta(minutes=90)
    assert _instant(permit["starts_at"]).utcoffset() == timedelta(0)
    assert permit["created_at"] == permit["updated_at"]

    read = await client.get(response.headers["Location"], headers=org.as_(office.staff["nip"]))
    assert read.status_code == 200
    assert read.json() == permit
    assert await audit_actions(app, permit["id"]) == [("permit.submitted", office.staff["nip"])]


async def test_the_unit_is_the_workspaces_and_only_delegations_in_force_approve(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    visitor = await Office.create(org)
    # A Plh from tomorrow, and one already withdrawn, are not approvers now.
    await office.delegate(office.colleague["nip"], "plh", starts_in=timedelta(days=1))
    withdrawn = await office.delegate(office.staff["nip"], "plt")
    revoke = await client.delete(f"/api/v1/delegations/{withdrawn['id']}", headers=org.admin)
    assert revoke.status_code in (200, 204), revoke.text
    # Someone of another unit asks to broadcast from this unit's workspace.
    permit = await submit(org, visitor.staff["nip"], office.workspace["code"])
    assert permit["unit_code"] == office.unit["code"]
    assert permit["requester_nip"] == visitor.staff["nip"]
    assert permit["approvers"] == [office.head["nip"]]


async def test_optional_description_and_every_platform_and_purpose(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"])
    del body["description"]
    created = await _post(client, org, office.staff["nip"], body)
    assert created.status_code == 201, created.text
    assert created.json()["description"] is None
    for hours, (platform, purpose) in enumerate(
        [
            ("tiktok", "official"),
            ("instagram", "public_service"),
            ("facebook", "education"),
            ("x", "public_information"),
            ("other", "official"),
        ],
        start=2,
    ):
        permit = await submit(
            org,
            office.staff["nip"],
            office.workspace["code"],
            starts_in=timedelta(hours=hours),
            platform=platform,
            purpose=purpose,
        )
        assert (permit["platform"], permit["purpose"]) == (platform, purpose)
    bad = permit_body(office.workspace["code"], platform="myspace")
    assert_problem(await _post(client, org, office.staff["nip"], bad), 422, "validation_error")


# --- the policy rules ---------------------------------------------------------------------


async def test_personal_streams_are_forbidden(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"], purpose="personal")
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "personal_stream_forbidden"
    )
    assert SE in problem["detail"]
    assert "angka 1" in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [["body", "purpose"]]
    assert await _all_permits(client, org) == []


@pytest.mark.parametrize("name", sorted(ATTESTATIONS))
@pytest.mark.parametrize("how", ["false", "missing", "null"])
async def test_each_attestation_is_required(
    client: httpx.AsyncClient, org: Org, name: str, how: str
) -> None:
    office = await Office.create(org)
    attestations: dict[str, Any] = dict.fromkeys(ATTESTATIONS, True)
    if how == "missing":
        del attestations[name]
    else:
        attestations[name] = False if how == "false" else None
    body = permit_body(office.workspace["code"], attestations=attestations)
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "attestation_required"
    )
    assert SE in problem["detail"]
    assert f"angka {ATTESTATIONS[name]}" in problem["detail"]
    assert name in problem["detail"]
    assert problem["errors"] == [
        {
            "loc": ["body", "attestations", name],
            "msg": "must be true",
            "code": "attestation_required",
        }
    ]


async def test_every_missing_attestation_is_listed(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    without = {
        k: v for k, v in permit_body(office.workspace["code"]).items() if k != "attestations"
    }
    for body in (without, {**without, "attestations": {}}):
        problem = assert_problem(
            await _post(client, org, office.staff["nip"], body), 422, "attestation_required"
        )
        assert [e["loc"] for e in problem["errors"]] == [
            ["body", "attestations", name] for name in ATTESTATIONS
        ]
        for clause in (2, 3, 5, 6):
            assert f"angka {clause}" in problem["detail"]
    two_false = dict.fromkeys(ATTESTATIONS, True)
    two_false["no_uniform_misuse"] = False
    two_false["political_neutrality"] = False
    body = permit_body(office.workspace["code"], attestations=two_false)
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "attestation_required"
    )
    assert [e["loc"][-1] for e in problem["errors"]] == [
        "no_uniform_misuse",
        "political_neutrality",
    ]
    # Only JSON booleans attest; "yes" or 1 is not a statement.
    for value in ("yes", 1, "true"):
        loose = permit_body(
            office.workspace["code"],
            attestations={**dict.fromkeys(ATTESTATIONS, True), "no_disparagement": value},
        )
        assert_problem(await _post(client, org, office.staff["nip"], loose), 422)
    unknown = permit_body(
        office.workspace["code"], attestations={**dict.fromkeys(ATTESTATIONS, True), "other": True}
    )
    assert_problem(await _post(client, org, office.staff["nip"], unknown), 422, "validation_error")
    assert await _all_permits(client, org) == []


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"minutes": 0}, "ends_at"),  # ends_at == starts_at
        ({"minutes": -30}, "ends_at"),  # ends before it starts
        ({"minutes": 481}, "ends_at"),  # longer than 480 minutes
        ({"minutes": 24 * 60}, "ends_at"),
        ({"starts_in": timedelta(minutes=-6)}, "starts_at"),  # more than 5 minutes past
        ({"starts_in": timedelta(days=-1)}, "starts_at"),
        ({"starts_in": timedelta(days=90, minutes=5)}, "starts_at"),  # more than 90 days ahead
        ({"starts_in": timedelta(days=365)}, "starts_at"),
    ],
    ids=["empty", "reversed", "481-min", "a-day", "6-min-past", "yesterday", "90d+5m", "a-year"],
)
async def test_invalid_windows(
    client: httpx.AsyncClient, org: Org, window: dict[str, Any], field: str
) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"], **window)
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "invalid_window"
    )
    assert SE in problem["detail"]
    assert "angka 4" in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [["body", field]]
    assert problem["errors"][0]["code"] == "invalid_window"
    assert await _all_permits(client, org) == []


@pytest.mark.parametrize(
    "window",
    [
        {"minutes": 480},
        {"minutes": 1},
        {"starts_in": timedelta(minutes=-4)},
        {"starts_in": timedelta(days=89, hours=23)},
    ],
    ids=["480-min", "1-min", "4-min-past", "just-under-90d"],
)
async def test_windows_at_the_limits_are_accepted(
    client: httpx.AsyncClient, org: Org, window: dict[str, Any]
) -> None:
    office = await Office.create(org)
    await submit(org, office.staff["nip"], office.workspace["code"], **window)


async def test_unknown_workspace(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body("NO-SUCH-ROOM")
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "unknown_workspace"
    )
    assert SE in problem["detail"]
    assert "NO-SUCH-ROOM" in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [["body", "workspace_code"]]


async def test_inactive_workspace(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    deactivated = await client.patch(
        f"/api/v1/workspaces/{office.workspace['code']}", json={"active": False}, headers=org.admin
    )
    assert deactivated.status_code == 200, deactivated.text
    body = permit_body(office.workspace["code"])
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "workspace_inactive"
    )
    assert SE in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [["body", "workspace_code"]]
    assert await _all_permits(client, org) == []
    reactivated = await client.patch(
        f"/api/v1/workspaces/{office.workspace['code']}", json={"active": True}, headers=org.admin
    )
    assert reactivated.status_code == 200, reactivated.text
    await submit(org, office.staff["nip"], office.workspace["code"])


# --- input that does not parse ----------------------------------------------------------


@pytest.mark.parametrize("field", ["starts_at", "ends_at"])
@pytest.mark.parametrize(
    "value", ["2030-01-01T09:00:00", "2030-01-01 09:00", "1893456000", "next monday"]
)
async def test_times_need_an_offset(
    client: httpx.AsyncClient, org: Org, field: str, value: str
) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"])
    body[field] = value
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "validation_error"
    )
    assert ["body", field] in [e["loc"] for e in problem["errors"]]
    assert await _all_permits(client, org) == []


async def test_a_naive_time_is_reported_as_naive(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"], starts_at="2030-01-01T09:00:00")
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "validation_error"
    )
    assert {"loc": ["body", "starts_at"], "code": "naive_datetime"}.items() <= problem["errors"][
        0
    ].items()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "approved"),
        ("decided_by", ADMIN_NIP),
        ("decided_as", "head"),
        ("decided_at", "2030-01-01T09:00:00Z"),
        ("requester_nip", ADMIN_NIP),
        ("unit_code", "ANY"),
        ("approvers", []),
        ("version", 7),
        ("id", "01jabcdefghjkmnpqrstvwxyz0"),
        ("created_at", "2020-01-01T00:00:00Z"),
    ],
)
async def test_mass_assignment_is_refused(
    client: httpx.AsyncClient, org: Org, field: str, value: Any
) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"], **{field: value})
    problem = assert_problem(
        await _post(client, org, office.staff["nip"], body), 422, "validation_error"
    )
    assert {"loc": ["body", field], "code": "unknown_field"}.items() <= problem["errors"][0].items()
    assert await _all_permits(client, org) == []


async def test_submitting_needs_an_employee(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"])
    assert_problem(await client.post(PERMITS, json=body), 401)
    created = await client.post("/api/v1/api-keys", json={"name": "gateway"}, headers=org.admin)
    service = {"X-API-Key": created.json()["key"]}
    assert_problem(await client.post(PERMITS, json=body, headers=service), 403)
    assert await _all_permits(client, org) == []


# --- the published policy -------------------------------------------------------------------


async def test_the_policy_is_published(client: httpx.AsyncClient, org: Org) -> None:
    employee = await org.employee()
    response = await client.get("/api/v1/policy", headers=org.as_(employee["nip"]))
    assert response.status_code == 200, response.text
    policy = response.json()
    assert "Nomor 47 Tahun 2025" in policy["source"]
    assert [c["number"] for c in policy["clauses"]] == [1, 2, 3, 4, 5, 6]
    for clause in policy["clauses"]:
        assert clause["text_id"].strip()
        assert clause["text_en"].strip()
        assert clause["text_id"] != clause["text_en"]
        assert SE in clause["citation"]
    assert "pimpinan unit" in policy["clauses"][3]["text_id"]  # clause 4, in Indonesian
    assert "head" in policy["clauses"][3]["text_en"]
    rules = {r["code"]: r for r in policy["rules"]}
    assert set(rules) == {
        "personal_stream_forbidden",
        "attestation_required",
        "invalid_window",
        "unknown_workspace",
        "workspace_inactive",
    }
    assert rules["personal_stream_forbidden"]["clause"] == 1
    assert {a["name"] for a in rules["attestation_required"]["attestations"]} == set(ATTESTATIONS)
    assert rules["invalid_window"]["limits"] == {
        "max_duration_minutes": 480,
        "max_lead_days": 90,
        "past_grace_minutes": 5,
    }
    assert_problem(await client.get("/api/v1/policy"), 401)


async def test_policy_settings_change_the_limits(
    client: httpx.AsyncClient, org: Org, settings: Settings, tokens: Tokens
) -> None:
    async with _app_with(
        settings, tokens, policy_max_duration_minutes=30, policy_max_lead_days=7
    ) as strict:
        office = await Office.create(strict)
        staff = strict.as_(office.staff["nip"])
        limits = (await strict.client.get("/api/v1/policy", headers=staff)).json()
        window = next(r for r in limits["rules"] if r["code"] == "invalid_window")
        assert window["limits"]["max_duration_minutes"] == 30
        assert window["limits"]["max_lead_days"] == 7
        too_long = permit_body(office.workspace["code"], minutes=31)
        problem = assert_problem(
            await strict.client.post(PERMITS, json=too_long, headers=staff), 422, "invalid_window"
        )
        assert "30 minutes" in problem["errors"][0]["msg"]
        too_far = permit_body(office.workspace["code"], starts_in=timedelta(days=8))
        assert_problem(
            await strict.client.post(PERMITS, json=too_far, headers=staff), 422, "invalid_window"
        )
        exactly = permit_body(office.workspace["code"], minutes=30)
        assert (await strict.client.post(PERMITS, json=exactly, headers=staff)).status_code == 201
    # The app under the default settings still allows what the strict one refused.
    await submit(org, office.staff["nip"], office.workspace["code"], minutes=31)
    await submit(org, office.staff["nip"], office.workspace["code"], starts_in=timedelta(days=8))
