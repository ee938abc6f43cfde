"""The check's fast path (app/authorizations/fastpath.py).

It must answer the common, well-formed check itself, and give exactly the answer
the FastAPI route gives; everything else (bad credentials, bad parameters, CORS)
must reach the route, so that the errors are the route's own. A request carrying
one parameter the check does not know (`via=route`) is passed on by the fast
path and answered by the route, which ignores the parameter: comparing the two
shows they agree.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from hypothesis import given
from hypothesis import strategies as st

from app.authorizations.fastpath import Query, query_pairs
from app.config import Settings
from app.fastpath import json_body
from app.main import create_app
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


def _answered(app: FastAPI) -> int:
    return int(app.state.check_fast_path.answered)


async def _both(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """The same check through the fast path and through the route."""
    before = _answered(app)
    fast = await client.get(CHECK, params=params, headers=headers)
    assert _answered(app) == before + 1, f"the fast path did not answer {params}: {fast.text}"
    routed = await client.get(CHECK, params={**params, "via": "route"}, headers=headers)
    assert _answered(app) == before + 1, "the fast path answered a query it does not know"
    return fast, routed


async def test_the_fast_path_and_the_route_agree_on_every_reason(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office, queries = await office_with_every_status(app, org)
    key = {"X-API-Key": await api_key(client, org, ["check"])}
    token = org.as_(office.colleague["nip"])
    reasons = set()
    for headers in (key, token):
        for params in queries:
            fast, routed = await _both(app, client, headers, params)
            assert fast.status_code == routed.status_code == 200, (fast.text, routed.text)
            assert without_clock(fast.json()) == without_clock(routed.json()), params
            assert fast.headers["cache-control"] == "no-store"
            assert fast.headers["content-type"] == routed.headers["content-type"]
            assert "x-request-id" in fast.headers
            assert "ratelimit-remaining" in fast.headers
            # Every header the route's layers put on its answer, the fast path's has too.
            assert set(fast.headers) == set(routed.headers)
            assert fast.headers["ratelimit-limit"] == routed.headers["ratelimit-limit"]
            reasons.add(fast.json()["reason"])
    expected = {"approved", "not_started", "ended", "pending", "denied", "revoked", "expired"}
    expected |= {"no_permit", "unknown_workspace", "unknown_employee"}
    assert expected <= reasons, reasons


async def test_with_cors_configured_the_fast_path_answers_as_the_route_does(
    settings: Settings, tokens: Tokens
) -> None:
    """CORS puts `Vary: Origin` on every answer when origins are configured: the fast
    path's answers pass through it as the route's do."""
    application = create_app(settings.model_copy(update={"cors_origins": ["https://x.example"]}))
    async with serving(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            org = Org(http, tokens)
            office = await Office.create(org)
            key = {"X-API-Key": await api_key(http, org, ["check"])}
            params = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
            fast, routed = await _both(application, http, key, params)
    assert fast.status_code == routed.status_code == 200, (fast.text, routed.text)
    assert fast.headers["vary"] == routed.headers["vary"] == "Origin"
    assert set(fast.headers) == set(routed.headers)


async def test_an_inactive_requester_is_refused_by_both(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    permit = await office.submit(starts_in=timedelta(hours=1), minutes=60)
    assert (await office.act(permit["id"], "approve", office.head["nip"])).status_code == 200
    await move_window(app, permit["id"], starts_in=timedelta(minutes=-10))
    response = await client.patch(
        f"/api/v1/employees/{office.staff['nip']}", json={"active": False}, headers=org.admin
    )
    assert response.status_code == 200, response.text
    key = {"X-API-Key": await api_key(client, org, ["check"])}
    for params in (
        {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]},
        {"platform": "youtube", "channel": "@diskominfotik.anambas"},
    ):
        fast, routed = await _both(app, client, key, params)
        assert without_clock(fast.json()) == without_clock(routed.json())
        assert fast.json()["authorized"] is False
        assert fast.json()["reason"] == "employee_inactive"


async def test_what_the_fast_path_does_not_answer_gets_the_routes_errors(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    good = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    scoped = await api_key(client, org, ["check"])
    unscoped = await api_key(client, org, [])
    before = _answered(app)

    async def get(params: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        return await client.get(CHECK, params=params, headers=headers)

    assert_problem(await get(good, {}), 401, "unauthenticated")
    assert_problem(await get(good, {"X-API-Key": scoped + "x"}), 401, "invalid_api_key")
    assert_problem(await get(good, {"X-API-Key": "izs_short_secret"}), 401, "invalid_api_key")
    assert_problem(await get(good, {"X-API-Key": unscoped}), 403, "insufficient_scope")
    both = {"X-API-Key": scoped, **org.as_(office.staff["nip"])}
    assert_problem(await get(good, both), 401, "ambiguous_credentials")
    assert_problem(await get(good, {"Authorization": "Bearer x.y.z"}), 401, "invalid_token")
    unknown = org.as_("199001012020121001")
    assert_problem(await get(good, unknown), 401, "unknown_employee")
    key = {"X-API-Key": scoped}
    assert_problem(await get({"nip": good["nip"]}, key), 422, "invalid_check_query")
    assert_problem(await get({**good, "at": "2026-01-01T09:00:00"}, key), 422, "validation_error")
    assert_problem(await get({**good, "at": "1700000000"}, key), 422, "validation_error")
    assert_problem(await get({"platform": "myspace", "channel": "x"}, key), 422, "validation_error")
    assert_problem(await get({**good, "nip": "1" * 33}, key), 422, "validation_error")
    assert_problem(await get({**good, "nip": "1" * 18}, key), 422, "invalid_nip")
    assert_problem(
        await get({"platform": "youtube", "channel": "c" * 201}, key), 422, "validation_error"
    )
    assert _answered(app) == before

    # A repeated parameter is the route's to interpret; so is CORS.
    repeated = await client.get(f"{CHECK}?nip=1&nip={good['nip']}", headers=key)
    assert repeated.status_code in (200, 422), repeated.text
    assert _answered(app) == before
    cors = await client.get(CHECK, params=good, headers={**key, "Origin": "https://x.example"})
    assert cors.status_code == 200, cors.text
    assert _answered(app) == before


async def test_a_revoked_key_is_refused_at_once(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    created = await client.post(
        "/api/v1/api-keys", json={"name": "gerbang", "scopes": ["check"]}, headers=org.admin
    )
    key = {"X-API-Key": created.json()["key"]}
    params = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    before = _answered(app)
    assert (await client.get(CHECK, params=params, headers=key)).status_code == 200
    assert _answered(app) == before + 1
    revoked = await client.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=org.admin)
    assert revoked.status_code in (200, 204), revoked.text
    assert_problem(await client.get(CHECK, params=params, headers=key), 401, "api_key_revoked")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"nip=199001012020121001&workspace_code=W", ("employee", "199001012020121001", "W")),
        (
            b"workspace_code=W&nip=199001012020121001&at=2026-01-01T09%3A00%3A00%2B07%3A00",
            ("employee", "199001012020121001", "W"),
        ),
        (b"platform=youtube&channel=%40Kanal", ("channel", "youtube", "kanal")),
        (
            b"platform=youtube&channel=%40Kanal&at=2026-01-01T02:00:00Z",
            ("channel", "youtube", "kanal"),
        ),
        (b"nip=199001012020121001&workspace_code=W&extra=1", None),
        (b"nip=199001012020121001&nip=199001012020121001&workspace_code=W", None),
        (b"nip=&workspace_code=W", None),
        (b"nip=199001012020121001&workspace_code=W&at=yesterday", None),
        (b"nip=199001012020121001&workspace_code=W&at=2026-01-01T09:00:00", None),
        (b"nip=1&workspace_code=W", None),  # not a NIP: the route's 422
        (b"nip=199001012020121000&workspace_code=W", None),  # sequence 000
        (b"nip=19900101202012100x&workspace_code=W", None),
        (b"platform=YouTube&channel=x", None),
        (b"platform=youtube&channel=", None),
        (b"nip=199001012020121001&workspace_code=W&platform=youtube&channel=x", None),
        (b"", None),
    ],
)
def test_which_queries_the_fast_path_takes(
    query: bytes, expected: tuple[str, str, str] | None
) -> None:
    parsed = Query.parse(query)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert tuple(parsed.pair) == expected


_QUERY_BITS = ["%40", "%4", "%zz", "%C3%A9", "%e9", "+", "=", "&", "a", "%"]


@given(
    st.text(alphabet="ab=&%2B+x é", max_size=24)
    | st.lists(st.sampled_from(_QUERY_BITS)).map("".join)
    | st.text(alphabet="a=&%40+", min_size=250, max_size=600)  # past what is remembered
)
def test_the_fast_path_reads_a_query_as_the_route_does(query: str) -> None:
    """Its reading (a shortcut where there is nothing to decode; decoded values
    remembered) gives what Starlette's parse gives, whatever the query holds."""
    assert query_pairs(query) == parse_qsl(query, keep_blank_values=True)
    assert query_pairs(query) == parse_qsl(query, keep_blank_values=True)  # remembered


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON_VALUES)
def test_the_fast_paths_write_json_as_the_routes_do(content: object) -> None:
    """The fast paths' encoder gives the bytes of the routes' `JSONResponse`, whatever
    the text (control characters, line separators, astral characters, quotes)."""
    assert json_body(content) == JSONResponse(content).body
