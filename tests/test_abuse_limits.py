"""Abuse limits: rate limit per caller, CORS, security headers, URI length, docs switch."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.support import ADMIN_NIP, Org, Tokens, assert_problem, serving

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def app_client(
    settings: Settings, *, clock: Callable[[], float] = time.monotonic, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(settings.model_copy(update=changes), clock=clock)) as application:
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


async def test_rate_limit_per_caller(settings: Settings, tokens: Tokens) -> None:
    now = [1000.0]  # the rate limit's clock stands still unless the test moves it
    async with app_client(
        settings, clock=lambda: now[0], rate_limit_per_minute=5, rate_limit_check_per_minute=1000
    ) as http:
        admin = tokens.auth(ADMIN_NIP)
        org = Org(http, tokens)
        other = await org.employee()  # 1 request
        statuses = [(await http.get("/api/v1/me", headers=admin)).status_code for _ in range(4)]
        assert statuses == [200] * 4
        limited = await http.get("/api/v1/me", headers=admin)
        problem = assert_problem(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.headers["RateLimit-Limit"] == "5"
        assert limited.headers["RateLimit-Remaining"] == "0"
        assert limited.headers["RateLimit-Policy"] == "5;w=60"
        assert "retry" in problem["detail"]
        # Another caller has a budget of their own, and the check has its own budget.
        assert (await http.get("/api/v1/me", headers=tokens.auth(other["nip"]))).status_code == 200
        check = await http.get(
            "/api/v1/authorizations/check", params={"platform": "x", "channel": "c"}, headers=admin
        )
        assert check.status_code == 200
        assert check.headers["RateLimit-Limit"] == "1000"
        assert (await http.get("/healthz")).status_code == 200  # operations are not limited
        # The bucket refills continuously: 5 a minute is one more request every 12 s.
        now[0] += 11.9
        assert (await http.get("/api/v1/me", headers=admin)).status_code == 429
        now[0] += 0.2
        assert (await http.get("/api/v1/me", headers=admin)).status_code == 200
        assert (await http.get("/api/v1/me", headers=admin)).status_code == 429


async def test_cors_only_for_configured_origins(settings: Settings) -> None:
    allowed = "https://izin.anambaskab.go.id"
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with app_client(settings, cors_origins=[allowed]) as http:
        ok = await http.options("/api/v1/permits", headers={"Origin": allowed, **preflight})
        assert ok.headers["access-control-allow-origin"] == allowed
        evil = await http.options(
            "/api/v1/permits", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in evil.headers
    async with app_client(settings) as http:
        plain = await http.get("/healthz", headers={"Origin": allowed})
        assert "access-control-allow-origin" not in plain.headers


async def test_security_headers(client: httpx.AsyncClient, org: Org) -> None:
    for response in (
        await client.get("/api/v1/me", headers=org.admin),
        await client.get("/api/v1/units/NOPE", headers=org.admin),
        await client.get("/api/v1/me"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


async def test_long_uris_and_strings_are_refused(client: httpx.AsyncClient, org: Org) -> None:
    assert_problem(
        await client.get("/api/v1/units", params={"parent_code": "X" * 20_000}, headers=org.admin),
        414,
        "uri_too_long",
    )
    long_name = await client.post(
        "/api/v1/units", json={"code": "LONG", "name": "n" * 201}, headers=org.admin
    )
    assert assert_problem(long_name, 422)["errors"][0]["code"] == "too_long"
    assert_problem(
        await client.get("/api/v1/units", params={"limit": 1000}, headers=org.admin), 422
    )


async def test_docs_can_be_turned_off(settings: Settings) -> None:
    async with app_client(settings) as http:
        assert (await http.get("/docs")).status_code == 200
    async with app_client(settings, docs_enabled=False) as http:
        assert_problem(await http.get("/docs"), 404)
        assert_problem(await http.get("/redoc"), 404)
        assert (await http.get("/openapi.json")).status_code == 200


async def test_nul_characters_are_refused_not_500(client: httpx.AsyncClient, org: Org) -> None:
    """PostgreSQL cannot store NUL; it must never reach the database."""
    assert_problem(await client.get("/api/v1/employees/%00", headers=org.admin), 404)
    assert_problem(
        await client.get("/api/v1/units", params={"parent_code": "A\x00"}, headers=org.admin), 422
    )
    body = {"code": "NULUNIT", "name": "bad\x00name"}
    problem = assert_problem(await client.post("/api/v1/units", json=body, headers=org.admin), 422)
    assert "NUL" in problem["errors"][0]["msg"]
    nested = {"workspace_code": "W", "attestations": {"no_uniform_misuse\x00": True}}
    assert_problem(await client.post("/api/v1/permits", json=nested, headers=org.admin), 422)
