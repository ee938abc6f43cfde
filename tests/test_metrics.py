"""`GET /metrics` (docs/RULES.md#metrics): read with the Prometheus client's own parser.

Requests by route template and status with their latency, the check's answers by
reason (from its fast path and from its route), permits by their status now,
`METRICS_TOKEN`, and, with several worker processes, one scrape that sums them all.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.config import Settings
from app.main import create_app
from tests.permits_support import Office, move_window
from tests.support import KeyRing, Org, ServerProcess, assert_problem, server_env, serving

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/authorizations/check"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    before = await scrape(client)
    # A permit read through its fast path and through its route (a query string sends it
    # there), a read of a permit that is not there, and a path no route takes.
    for params in (None, {"fields": "all"}):
        read = await client.get(
            f"/api/v1/permits/{permit['id']}", params=params, headers=org.as_(office.staff["nip"])
        )
        assert read.status_code in (200, 422)
    missing = await client.get("/api/v1/permits/" + "0" * 26, headers=org.as_(office.staff["nip"]))
    assert missing.status_code == 404
    assert (await client.get("/no/such/path/12345")).status_code == 404
    after = await scrape(client)

    total = "izin_siaran_http_requests_total"
    route = "/api/v1/permits/{permit_id}"
    counted = sum(
        value(after, total, method="GET", route=route, status=s)
        - value(before, total, method="GET", route=route, status=s)
        for s in ("200", "404", "422")
    )
    assert counted == 3
    assert (
        value(after, total, method="GET", route=route, status="404")
        - value(before, total, method="GET", route=route, status="404")
        == 1
    )
    assert value(after, total, method="GET", route="unmatched", status="404") >= 1
    assert not any("/no/such/path" in dict(labels).get("route", "") for _, labels in after)
    # The latency histogram counts the same requests, each in a bucket.
    histogram = "izin_siaran_http_request_duration_seconds"
    observed = value(after, f"{histogram}_count", method="GET", route=route) - value(
        before, f"{histogram}_count", method="GET", route=route
    )
    assert observed == 3
    assert value(after, f"{histogram}_bucket", method="GET", route=route, le="+Inf") >= 3
    assert value(after, f"{histogram}_sum", method="GET", route=route) > 0


async def approved(org: Org) -> tuple[Office, dict[str, Any]]:
    """An office and an approved permit of its staff member, starting in an hour."""
    office = await Office.create(org)
    permit = await office.submit()
    await office.act(permit["id"], "approve", office.head["nip"])
    return office, permit


async def test_check_answers_are_counted_by_reason(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office, permit = await approved(org)
    created = await client.post("/api/v1/api-keys", json={"name": "gerbang"}, headers=org.admin)
    key = {"X-API-Key": created.json()["key"]}
    pair = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    at = permit["starts_at"]
    before = app.state.check_fast_path.answered
    answers = [
        await client.get(CHECK, params={**pair, "at": at}, headers=key),  # fast path
        # An Origin header sends the check to its route (the CORS layer's business).
        await client.get(CHECK, params={**pair, "at": at}, headers={**key, "Origin": "x"}),
        await client.get(CHECK, params=pair, headers=key),  # now: before the window
        await client.get(CHECK, params={"platform": "tiktok", "channel": "@nobody"}, headers=key),
    ]
    assert [a.json()["reason"] for a in answers] == [
        "approved",
        "approved",
        "not_started",
        "no_permit",
    ]
    assert app.state.check_fast_path.answered - before == 3  # one went through the route
    samples = await scrape(client)
    answered = "izin_siaran_check_answers_total"
    assert value(samples, answered, reason="approved") == 2
    assert value(samples, answered, reason="not_started") == 1
    assert value(samples, answered, reason="no_permit") == 1
    check_requests = value(
        samples, "izin_siaran_http_requests_total", method="GET", route=CHECK, status="200"
    )
    assert check_requests == 4


async def test_permits_are_counted_by_their_status_now(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office, _ = await approved(org)
    await office.submit(starts_in=timedelta(hours=3))  # pending
    overdue = await office.submit(starts_in=timedelta(hours=5))
    # Its window began with nobody deciding: expired, on every read, sweep or no sweep.
    await move_window(app, overdue["id"], -timedelta(minutes=5))
    samples = await scrape(client)
    counts = {
        status: value(samples, "izin_siaran_permits", status=status)
        for status in ("pending", "approved", "denied", "cancelled", "expired", "revoked")
    }
    assert counts == {
        "pending": 1,
        "approved": 1,
        "denied": 0,
        "cancelled": 0,
        "expired": 1,
        "revoked": 0,
    }


async def test_metrics_token_is_required_when_set(settings: Settings) -> None:
    application = create_app(
        settings.model_copy(update={"metrics_token": SecretStr("rahasia-metrik-47")})
    )
    async with serving(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            for headers in (
                {},
                {"Authorization": "Bearer salah"},
                {"Authorization": "Basic rahasia-metrik-47"},
            ):
                refused = await http.get("/metrics", headers=headers)
                assert_problem(refused, 401, "unauthenticated")
                assert refused.headers["WWW-Authenticate"].startswith("Bearer")
                assert "izin_siaran" not in refused.text
            samples = await scrape(http, Authorization="Bearer rahasia-metrik-47")
    refusals = value(
        samples, "izin_siaran_http_requests_total", method="GET", route="/metrics", status="401"
    )
    assert refusals == 3


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite serves one worker
async def test_workers_share_their_counts(
    database_url: str, keyring: KeyRing, tmp_path: Path
) -> None:
    """`serve --workers 2`: whichever worker answers the scrape counts every request."""
    env = server_env(database_url, keyring, tmp_path / "data")
    server = ServerProcess(env, tmp_path, args=["--workers", "2"])
    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            answers = [await http.get("/healthz") for _ in range(60)]
            assert {a.status_code for a in answers} == {200}
            for _ in range(6):  # several scrapes, whichever worker each reaches
                samples = await scrape(http)
                healthz = value(
                    samples,
                    "izin_siaran_http_requests_total",
                    method="GET",
                    route="/healthz",
                    status="200",
                )
                assert healthz == 60
    finally:
        server.stop()
    assert (tmp_path / "data" / "metrics").is_dir()
