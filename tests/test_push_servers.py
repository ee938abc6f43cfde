"""Push across real server processes (SPEC §8): a change through one instance reaches a
stream on another within 2 s; with two instances each webhook message is delivered once
when nothing fails; an instance killed mid-delivery (kill -9) loses nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.secretbox import new_key
from tests.permits_support import permit_body
from tests.push_support import Receiver, eventually, http_stream
from tests.support import (
    ADMIN_NIP,
    KeyRing,
    ServerProcess,
    Tokens,
    make_code,
    make_nip,
    server_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _environment(database_url: str, keyring: KeyRing, folder: Path, key: str) -> dict[str, str]:
    return server_env(
        database_url,
        keyring,
        folder,
        SECRETS_KEY=key,  # instances with data folders of their own share the key
        WEBHOOK_ALLOW_HTTP="true",
        WEBHOOK_ALLOW_PRIVATE="true",
        WEBHOOK_TIMEOUT_SECONDS="2",
        WEBHOOK_RETRY_SCHEDULE_SECONDS="1,1,1",
        SWEEP_INTERVAL_SECONDS="0",
    )


@pytest.fixture
def instances(
    backend: str, database_url: str, keyring: KeyRing, tmp_path: Path
) -> Iterator[list[ServerProcess]]:
    """Two instances on PostgreSQL (one on SQLite, which serves one node)."""
    key = new_key()
    count = 2 if backend == "postgresql" else 1
    servers = [
        ServerProcess(_environment(database_url, keyring, tmp_path / f"data{n}", key), tmp_path)
        for n in range(count)
    ]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _office(http: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    """A unit with a head, a staff member and a studio: what a permit needs."""

    unit = make_code("U")
    head, staff, studio = make_nip(), make_nip(), make_code("W")
    for path, body in (
        ("/api/v1/units", {"code": unit, "name": "Diskominfotik"}),
        ("/api/v1/employees", {"nip": head, "name": "Kepala", "unit_code": unit}),
        ("/api/v1/employees", {"nip": staff, "name": "Staf", "unit_code": unit}),
        (
            "/api/v1/workspaces",
            {"code": studio, "name": "Studio", "unit_code": unit, "kind": "studio"},
        ),
    ):
        response = await http.post(path, json=body, headers=admin)
        assert response.status_code == 201, response.text
    response = await http.patch(f"/api/v1/units/{unit}", json={"head_nip": head}, headers=admin)
    assert response.status_code == 200, response.text
    return {"unit": unit, "head": head, "staff": staff, "workspace": studio}


async def _submit(http: httpx.AsyncClient, tokens: Tokens, office: dict[str, str], n: int) -> str:

    body = permit_body(office["workspace"], starts_in=timedelta(hours=2 + n))
    response = await http.post("/api/v1/permits", json=body, headers=tokens.auth(office["staff"]))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_change_through_one_instance_reaches_a_stream_on_another(
    instances: list[ServerProcess], tokens: Tokens
) -> None:
    writer, reader = instances[0], instances[-1]
    admin = tokens.auth(ADMIN_NIP)
    async with httpx.AsyncClient(base_url=writer.base_url, timeout=10) as http:
        office = await _office(http, admin)
        async with http_stream(reader.base_url, admin) as next_event:
            delays = []
            for n in range(5):
                sent = time.monotonic()
                permit = await _submit(http, tokens, office, n)
                event = await next_event(5)
                delays.append(time.monotonic() - sent)
                assert event.event == "permit.submitted"
                assert event.json["subject"] == f"permit:{permit}"
    assert max(delays) < 2.0, delays


async def test_each_message_is_delivered_once_by_one_of_the_instances(
    instances: list[ServerProcess], tokens: Tokens
) -> None:
    admin = tokens.auth(ADMIN_NIP)
    clients = [httpx.AsyncClient(base_url=s.base_url, timeout=10) for s in instances]
    try:
        with Receiver() as receiver:
            response = await clients[0].post(
                "/api/v1/webhooks",
                json={"url": receiver.url, "events": ["permit.submitted"]},
                headers=admin,
            )
            assert response.status_code == 201, response.text
            secret = response.json()["secret"]
            office = await _office(clients[0], admin)
            total = 30
            permits = await asyncio.gather(
                *(_submit(clients[n % len(clients)], tokens, office, n) for n in range(total))
            )
            got = await receiver.count(total)
            hook = response.json()["id"]

            async def recorded() -> list[dict[str, object]] | None:
                listed = await clients[-1].get(
                    f"/api/v1/webhooks/{hook}/deliveries", params={"limit": 200}, headers=admin
                )
                rows = list(listed.json()["items"])
                return rows if all(r["status"] == "succeeded" for r in rows) else None

            rows = await eventually(recorded)
    finally:
        for client in clients:
            await client.aclose()
    messages = [r.verified(secret) for r in got]
    assert sorted(m["data"]["permit"]["id"] for m in messages) == sorted(permits)
    # Each message once: one attempt per delivery, by whichever instance claimed it.
    assert len(rows) == total
    assert {r["attempts"] for r in rows} == {1}
    assert len(receiver.received) == total


async def test_an_instance_killed_mid_delivery_loses_nothing(
    backend: str, database_url: str, keyring: KeyRing, tokens: Tokens, tmp_path: Path
) -> None:
    """The receiver holds the first attempt; the instance making it is killed (SIGKILL).
    Started again, the service makes the attempt again once its lease lapses: the same
    message (same `webhook-id`) arrives, and is delivered."""
    key = new_key()
    env = _environment(database_url, keyring, tmp_path / "data", key)
    admin = tokens.auth(ADMIN_NIP)
    holding = threading.Event()
    with Receiver(hold=holding) as receiver:
        server = ServerProcess(env, tmp_path)
        try:
            server.wait_ready()
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                response = await http.post(
                    "/api/v1/webhooks",
                    json={"url": receiver.url, "events": ["permit.submitted"]},
                    headers=admin,
                )
                secret = response.json()["secret"]
                office = await _office(http, admin)
                permit = await _submit(http, tokens, office, 0)
            first = (await receiver.count(1))[0]
            server.process.kill()  # -9: no shutdown, the attempt under way is lost
            server.process.wait()
        finally:
            server.stop()
        holding.set()  # from now on the receiver answers at once
        again = ServerProcess(env, tmp_path)
        try:
            again.wait_ready()
            got = await receiver.count(2, timeout=30)
            async with httpx.AsyncClient(base_url=again.base_url, timeout=10) as http:
                hooks = (await http.get("/api/v1/webhooks", headers=admin)).json()["items"]
                rows = (
                    await http.get(f"/api/v1/webhooks/{hooks[0]['id']}/deliveries", headers=admin)
                ).json()["items"]
        finally:
            again.stop()
    assert got[1].headers["webhook-id"] == first.headers["webhook-id"]
    assert got[1].verified(secret)["data"]["permit"]["id"] == permit
    assert rows[0]["attempts"] == 2
    assert rows[0]["status"] in {"succeeded", "pending"}  # recorded just after the answer


async def test_a_stopping_server_ends_its_streams(
    instances: list[ServerProcess], tokens: Tokens
) -> None:
    """Streams never end by themselves; a stop (SIGTERM) still ends in seconds, and the
    client sees its stream end (to resume elsewhere with Last-Event-ID)."""
    server = instances[0]
    async with http_stream(server.base_url, tokens.auth(ADMIN_NIP)) as next_event:
        stopped = time.monotonic()
        server.process.terminate()
        with pytest.raises((httpx.HTTPError, StopAsyncIteration)):
            await next_event(15)
        await asyncio.to_thread(server.process.wait, 15)
    assert time.monotonic() - stopped < 12
