"""The event stream (SPEC §8, docs/RULES.md#event-stream), read as a client reads it, event
by event, through the app itself, on both databases. Across instances: test_push_servers.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.config import Settings
from app.push.models import EventTicket
from tests.permits_support import Office
from tests.push_support import EventStream
from tests.support import Org, assert_problem

pytestmark = pytest.mark.anyio

STREAM = "/api/v1/events/stream"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"event_stream_ping_seconds": 0.3, "event_stream_queue_size": 10}
    )


async def audit_events(client: httpx.AsyncClient, org: Org, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/audit/events", params={"limit": 200, **params}, headers=org.admin
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def events_key(org: Org, scopes: list[str]) -> str:
    response = await org.client.post(
        "/api/v1/api-keys", json={"name": "pemantau", "scopes": scopes}, headers=org.admin
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


async def test_new_events_arrive_exactly_as_the_audit_trail_serves_them(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    async with EventStream(app, org.admin) as stream:
        assert stream.status == 200
        assert stream.response_headers["content-type"].startswith("text/event-stream")
        permit = await office.submit()
        await office.act(permit["id"], "approve", office.head["nip"])
        got = await stream.take(2)
    trail = await audit_events(client, org, subject=f"permit:{permit['id']}")
    assert [(e.id, e.event) for e in got] == [(str(t["seq"]), t["action"]) for t in trail]
    assert [e.json for e in got] == trail  # the data is the audit event, hash and all


async def test_a_stream_starts_at_the_next_event_and_pings_while_idle(
    app: FastAPI, org: Org
) -> None:
    await Office.create(org)  # events before the stream: not sent
    async with EventStream(app, org.admin) as stream:
        ping = await stream.next(pings=True)
        assert ping.comment == "ping"
        assert ping.data is None
        unit = await org.unit()
        event = await stream.next()
    assert event.event == "unit.created"
    assert event.json["subject"] == f"unit:{unit['code']}"


async def test_resuming_has_no_gap_and_no_duplicate(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    trail = await audit_events(client, org)
    middle = trail[len(trail) // 2]["seq"]
    async with EventStream(app, {**org.admin, "Last-Event-ID": str(middle)}) as stream:
        await office.submit()  # a live event after the replayed ones
        expected = [e["seq"] for e in await audit_events(client, org) if e["seq"] > middle]
        got = await stream.take(len(expected))
    assert [int(e.id or 0) for e in got] == expected
    # ?after= does the same; Last-Event-ID (what EventSource sends on reconnecting) wins.
    params = {"after": 1}
    async with EventStream(app, {**org.admin, "Last-Event-ID": str(middle)}, params) as stream:
        first = await stream.next()
    assert int(first.id or 0) == middle + 1
    async with EventStream(app, org.admin, {"after": 0}) as stream:
        first = await stream.next()
    assert first.id == "1"


async def test_what_each_caller_sees(app: FastAPI, org: Org) -> None:
    """Admins, auditors and `events` keys: everything. Other employees: the permit events of
    permits they may read when the event happens — their own, those they may decide."""
    office = await Office.create(org)
    other = await Office.create(org)
    auditor = await org.employee(roles=["auditor"])
    key = await events_key(org, ["events"])
    callers = {
        "requester": org.as_(office.staff["nip"]),
        "colleague": org.as_(office.colleague["nip"]),
        "head": org.as_(office.head["nip"]),
        "other_head": org.as_(other.head["nip"]),
        "auditor": org.as_(auditor["nip"]),
        "key": {"X-API-Key": key},
    }
    streams = {name: EventStream(app, headers) for name, headers in callers.items()}
    for stream in streams.values():
        await stream.__aenter__()
    try:
        permit = await office.submit()
        await office.act(permit["id"], "approve", office.head["nip"])
        await org.unit()  # an organisation event: not a permit's
        marker = await other.submit()  # the last event: every stream has seen all before it
        seen: dict[str, list[str]] = {}
        for name, stream in streams.items():
            if name == "colleague":
                continue
            seen[name] = []
            while True:
                event = await stream.next()
                seen[name].append(event.event or "")
                if event.json["subject"] == f"permit:{marker['id']}" or (
                    name in {"requester", "colleague", "head"} and event.event == "permit.approved"
                ):
                    break
        # Every stream has had every event handed to it (the hub hands each batch to all
        # subscribers at once): the colleague's, which may read neither permit, only pings.
        assert (await streams["colleague"].next(pings=True)).comment == "ping"
    finally:
        for stream in streams.values():
            await stream.__aexit__(None, None, None)
    everything = ["permit.submitted", "permit.approved", "unit.created", "permit.submitted"]
    assert seen["auditor"] == everything
    assert seen["key"] == everything
    assert seen["requester"] == ["permit.submitted", "permit.approved"]
    assert seen["head"] == ["permit.submitted", "permit.approved"]
    assert seen["other_head"] == ["permit.submitted"]  # only the permit of their own unit


async def test_who_may_open_the_stream(client: httpx.AsyncClient, app: FastAPI, org: Org) -> None:
    check_only = await events_key(org, ["check"])
    async with EventStream(app, {"X-API-Key": check_only}) as refused:
        assert refused.status == 403
        assert b"insufficient_scope" in await refused.body()
    async with EventStream(app, {}) as anonymous:
        assert anonymous.status == 401
        assert anonymous.response_headers["content-type"] == "application/problem+json"
        assert b"unauthenticated" in await anonymous.body()
    async with EventStream(app, {**org.admin, "Last-Event-ID": "abc"}) as garbled:
        assert garbled.status == 422


async def test_a_ticket_opens_one_stream_once(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    staff = await org.employee()
    response = await client.post("/api/v1/events/tickets", headers=org.as_(staff["nip"]))
    assert response.status_code == 200, response.text
    ticket = response.json()["ticket"]
    assert set(response.json()) == {"ticket", "expires_at"}
    async with EventStream(app, {}, {"ticket": ticket}) as stream:
        assert stream.status == 200
        assert (await stream.next(pings=True)).comment == "ping"
    async with EventStream(app, {}, {"ticket": ticket}) as again:
        assert again.status == 401
        assert b"invalid_ticket" in await again.body()
    # A ticket past its 60 seconds is refused (its expiry moved, as time passing would).
    expired = (await client.post("/api/v1/events/tickets", headers=org.admin)).json()["ticket"]
    async with app.state.db.engine.begin() as connection:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await connection.execute(update(EventTicket).values(expires_at=past))
    async with EventStream(app, {}, {"ticket": expired}) as late:
        assert late.status == 401
    check_only = await events_key(org, ["check"])
    refused = await client.post("/api/v1/events/tickets", headers={"X-API-Key": check_only})
    assert_problem(refused, 403, "insufficient_scope")


async def test_a_slow_reader_is_disconnected_with_a_reason_and_resumes(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    async with EventStream(app, org.admin, stalled=True) as stream:
        for _ in range(14):  # more than EVENT_STREAM_QUEUE_SIZE (10) behind
            await office.submit()
        stream.resume()
        got = []
        while True:
            event = await stream.next()
            got.append(event)
            if event.event == "close":
                break
        with pytest.raises(EOFError):
            await stream.next()
    assert got[-1].json["code"] == "slow_reader"
    delivered = [int(e.id or 0) for e in got if e.id]
    trail = [e["seq"] for e in await audit_events(client, org)]
    async with EventStream(app, {**org.admin, "Last-Event-ID": str(max(delivered))}) as again:
        rest = await again.take(len([s for s in trail if s > max(delivered)]))
    assert [int(e.id or 0) for e in rest] == [s for s in trail if s > max(delivered)]


async def test_a_deactivated_employee_or_revoked_key_loses_the_stream(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    auditor = await org.employee(roles=["auditor"])
    key = await events_key(org, ["events"])
    key_id = key.split("_")[1]
    async with (
        EventStream(app, org.as_(auditor["nip"])) as person,
        EventStream(app, {"X-API-Key": key}) as service,
    ):
        response = await client.patch(
            f"/api/v1/employees/{auditor['nip']}", json={"active": False}, headers=org.admin
        )
        assert response.status_code == 200
        response = await client.delete(f"/api/v1/api-keys/{key_id}", headers=org.admin)
        assert response.status_code == 200
        for stream in (person, service):
            while (event := await stream.next()).event != "close":
                pass
            assert event.json["code"] == "credential_revoked"


async def test_the_stream_is_counted_on_metrics(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    async with EventStream(app, org.admin) as stream:
        await org.unit()
        await stream.next()
        metrics = (await client.get("/metrics")).text
    assert "izin_siaran_event_stream_subscribers 1.0" in metrics
    assert "izin_siaran_event_stream_events_total 1.0" in metrics
    after = (await client.get("/metrics")).text
    assert "izin_siaran_event_stream_subscribers 0.0" in after
