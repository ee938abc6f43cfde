"""The batch check (SPEC §10, docs/RULES.md#check-batch): up to 100 queries in one
request, each answered exactly as the single check answers it, for the same callers
with the same disclosure; one malformed query is a 422 naming its index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from tests.conftest import BACKENDS
from tests.permits_support import (
    Office,
    api_key,
    move_window,
    office_with_every_status,
    without_clock,
)
from tests.support import Org, Tokens, assert_problem, serving

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/authorizations/check"
BATCH = "/api/v1/authorizations/check-batch"


async def test_each_answer_is_the_single_checks_for_every_caller(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office, queries = await office_with_every_status(app, org)
    elsewhere = await org.unit()
    outsider = await org.employee(unit_code=elsewhere["code"])  # reads none of these permits
    callers = {
        "api key": {"X-API-Key": await api_key(client, org, ["check"])},
        "admin": org.admin,
        "requester": org.as_(office.staff["nip"]),
        "head": org.as_(office.head["nip"]),
        "colleague": org.as_(office.colleague["nip"]),
        "outsider": org.as_(outsider["nip"]),
    }
    reasons: dict[str, set[str]] = {}
    for name, headers in callers.items():
        response = await client.post(BATCH, json={"checks": queries}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        results = response.json()["results"]
        assert len(results) == len(queries)
        assert len({result["checked_at"] for result in results}) == 1  # one moment
        for query, result in zip(queries, results, strict=True):
            single = await client.get(CHECK, params=query, headers=headers)
            assert single.status_code == 200, single.text
            assert without_clock(result) == without_clock(single.json()), (name, query)
        reasons[name] = {result["reason"] for result in results}
    expected = {"approved", "not_started", "ended", "pending", "denied", "revoked", "expired"}
    expected |= {"no_permit", "unknown_workspace", "unknown_employee"}
    assert expected <= reasons["api key"], reasons["api key"]
    # The disclosure rule holds: no status of a permit the outsider may not read.
    assert reasons["outsider"] <= {"approved", "no_permit", "unknown_workspace"}


async def test_answers_follow_the_order_of_the_queries(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    _office, queries = await office_with_every_status(app, org)
    headers = org.admin
    forward = (await client.post(BATCH, json={"checks": queries}, headers=headers)).json()
    backward = (await client.post(BATCH, json={"checks": queries[::-1]}, headers=headers)).json()
    strip = [without_clock(r) for r in forward["results"]]
    assert strip[::-1] == [without_clock(r) for r in backward["results"]]
    assert len({r["reason"] for r in forward["results"]}) > 3  # not one answer repeated


async def test_a_revocation_is_seen_by_the_next_batch(
    client: httpx.AsyncClient, app: FastAPI, org: Org
) -> None:
    office = await Office.create(org)
    permit = await office.submit(starts_in=timedelta(hours=1), minutes=60)
    assert (await office.act(permit["id"], "approve", office.head["nip"])).status_code == 200
    await move_window(app, permit["id"], starts_in=timedelta(minutes=-1))
    query = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    body = {"checks": [query, query]}
    first = await client.post(BATCH, json=body, headers=org.admin)
    assert [r["reason"] for r in first.json()["results"]] == ["approved", "approved"]
    response = await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "stop"})
    assert response.status_code == 200
    after = await client.post(BATCH, json=body, headers=org.admin)
    assert [r["authorized"] for r in after.json()["results"]] == [False, False]
    assert {r["reason"] for r in after.json()["results"]} == {"revoked"}


@pytest.mark.parametrize(
    ("bad", "loc", "code"),
    [
        ({"nip": "123", "workspace_code": "W"}, ["body", "checks", 2, "nip"], "invalid_nip"),
        ({"nip": "199001012020121001"}, ["body", "checks", 2], "invalid_check_query"),
        ({}, ["body", "checks", 2], "invalid_check_query"),
        (
            {"nip": "199001012020121001", "workspace_code": "W", "platform": "youtube"},
            ["body", "checks", 2],
            "invalid_check_query",
        ),
        ({"platform": "myspace", "channel": "x"}, ["body", "checks", 2, "platform"], None),
        (
            {"platform": "youtube", "channel": "x", "at": "2027-01-01T10:00:00"},
            ["body", "checks", 2, "at"],
            None,
        ),
        ({"platform": "youtube", "channel": "x", "via": "y"}, ["body", "checks", 2, "via"], None),
        ({"platform": "youtube", "channel": ""}, ["body", "checks", 2, "channel"], None),
        ("youtube", ["body", "checks", 2], None),
    ],
)
async def test_one_malformed_query_is_a_422_naming_its_index(
    client: httpx.AsyncClient, org: Org, bad: Any, loc: list[Any], code: str | None
) -> None:
    good = {"platform": "youtube", "channel": "@kanal"}
    response = await client.post(BATCH, json={"checks": [good, good, bad, good]}, headers=org.admin)
    problem = assert_problem(response, 422, code)
    assert any(error["loc"] == loc for error in problem["errors"]), problem["errors"]


@pytest.mark.parametrize("count", [0, 101])
async def test_a_batch_holds_one_to_a_hundred_queries(
    client: httpx.AsyncClient, org: Org, count: int
) -> None:
    checks = [{"platform": "youtube", "channel": f"@kanal{n}"} for n in range(count)]
    response = await client.post(BATCH, json={"checks": checks}, headers=org.admin)
    problem = assert_problem(response, 422)
    assert any(error["loc"] == ["body", "checks"] for error in problem["errors"])
    full = await client.post(
        BATCH, json={"checks": [{"platform": "tiktok", "channel": "a"}] * 100}, headers=org.admin
    )
    assert full.status_code == 200
    assert len(full.json()["results"]) == 100


async def test_who_may_send_a_batch(client: httpx.AsyncClient, org: Org) -> None:
    body = {"checks": [{"platform": "youtube", "channel": "@kanal"}]}
    assert_problem(await client.post(BATCH, json=body), 401, "unauthenticated")
    events_only = {"X-API-Key": await api_key(client, org, ["events"])}
    assert_problem(
        await client.post(BATCH, json=body, headers=events_only), 403, "insufficient_scope"
    )
    checker = {"X-API-Key": await api_key(client, org, ["check"])}
    assert (await client.post(BATCH, json=body, headers=checker)).status_code == 200


async def test_each_query_spends_one_check_of_the_budget(
    settings: Settings, tokens: Tokens
) -> None:
    application = create_app(settings.model_copy(update={"rate_limit_check_per_minute": 10}))
    async with serving(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            org = Org(client, tokens)
            body = {"checks": [{"platform": "youtube", "channel": "@kanal"}] * 6}
            first = await client.post(BATCH, json=body, headers=org.admin)
            assert first.status_code == 200, first.text
            assert first.headers["ratelimit-remaining"] == "4"
            assert_problem(
                await client.post(BATCH, json=body, headers=org.admin), 429, "rate_limited"
            )
            single = await client.get(
                CHECK, params={"platform": "youtube", "channel": "@kanal"}, headers=org.admin
            )
            assert single.status_code == 200  # the 4 left, as the batch did not spend them


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"], indirect=True)
async def test_a_batch_reads_each_form_in_one_round_trip(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """On PostgreSQL the queries of one form go to the database together
    (docs/RULES.md#check-batch): 100 queries of both forms, two statements. (SQLite
    reads in-process: no round trip to count.)"""
    _, queries = await office_with_every_status(app, org)
    checks = (queries * 5)[:100]
    headers = {"X-API-Key": await api_key(client, org, ["check"])}
    raw = app.state.raw_reader
    before = raw.round_trips
    response = await client.post(BATCH, json={"checks": checks}, headers=headers)
    assert response.status_code == 200, response.text
    assert raw.round_trips - before == 2
