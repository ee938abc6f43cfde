"""Webhooks (SPEC §8, docs/RULES.md#webhooks): Standard Webhooks messages from a
transactional outbox to real HTTP receivers, on both databases. Every delivery here is
verified with the standard's own Python library (`standardwebhooks`), never with the
service's signer.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.config import Settings
from app.main import create_app
from app.org.models import Employee
from app.outbox.models import Webhook, WebhookDelivery
from app.permits.lifecycle import apply_transition
from tests.conftest import run_cli
from tests.permits_support import Office
from tests.push_support import Receiver, certificate_authority, eventually
from tests.support import ADMIN_NIP, Org, assert_problem, serving

pytestmark = pytest.mark.anyio

HOOKS = "/api/v1/webhooks"
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Receivers listen on 127.0.0.1 over plain HTTP; retries come quickly."""
    return settings.model_copy(
        update={
            "webhook_allow_http": True,
            "webhook_allow_private": True,
            "webhook_retry_schedule_seconds": [0.6, 0.6],
            "webhook_timeout_seconds": 3.0,
        }
    )


async def create_hook(org: Org, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = await org.client.post(
        HOOKS, json={"url": url, "events": events or ["*"]}, headers=org.admin
    )
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{HOOKS}/{response.json()['id']}"
    return dict(response.json())


async def deliveries(org: Org, hook_id: str) -> list[dict[str, Any]]:
    response = await org.client.get(f"{HOOKS}/{hook_id}/deliveries", headers=org.admin)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def settled(org: Org, hook_id: str, receiver: Receiver, n: int) -> list[dict[str, Any]]:
    """The webhook's deliveries once `n` requests reached the receiver and the sender has
    recorded a final answer for each (succeeded or failed)."""
    await receiver.count(n)

    async def recorded() -> list[dict[str, Any]] | None:
        rows = await deliveries(org, hook_id)
        return rows if rows and all(row["status"] != "pending" for row in rows) else None

    return await eventually(recorded)


async def test_a_permits_events_arrive_signed_as_the_standard_says(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    with Receiver() as receiver:
        hook = await create_hook(org, receiver.url)
        secret = hook["secret"]
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret[6:])) >= 24
        permit = await office.submit()
        assert (await office.act(permit["id"], "approve", office.head["nip"])).status_code == 200
        got = await receiver.count(2)
    # Deliveries to one endpoint run side by side, so they may arrive in either order;
    # receivers order them by `audit_seq` (docs/RULES.md#webhook-messages).
    first, second = sorted(
        (r.verified(secret) for r in got[:2]), key=lambda m: m["data"]["audit_seq"]
    )
    assert [first["type"], second["type"]] == ["permit.submitted", "permit.approved"]
    # The permit exactly as GET returns it, and the audit event's seq and actor.
    shown = (await client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)).json()
    assert second["data"]["permit"] == shown
    events = (
        await client.get(
            "/api/v1/audit/events",
            params={"subject": f"permit:{permit['id']}"},
            headers=org.admin,
        )
    ).json()["items"]
    assert [e["seq"] for e in events] == [first["data"]["audit_seq"], second["data"]["audit_seq"]]
    assert second["data"]["actor"] == office.head["nip"]
    assert second["timestamp"] == events[1]["at"]
    for request in got[:2]:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-id"].startswith("msg_")
        assert request.path == "/hooks/izin-siaran"
    assert got[0].headers["webhook-id"] != got[1].headers["webhook-id"]


async def test_a_webhook_gets_only_the_events_it_asked_for(org: Org) -> None:
    office = await Office.create(org)
    with Receiver() as only_revocations, Receiver() as everything:
        picky = await create_hook(org, only_revocations.url, ["permit.revoked"])
        await create_hook(org, everything.url, ["*"])
        permit = await office.submit()
        await office.act(permit["id"], "approve", office.head["nip"])
        await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Dibatalkan"})
        await everything.count(3)
        got = await only_revocations.count(1)
    assert [r.verified(picky["secret"])["type"] for r in got] == ["permit.revoked"]


async def test_retries_keep_the_message_id_and_sign_each_attempt_afresh(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    with Receiver(answers=[500, 503]) as receiver:
        hook = await create_hook(org, receiver.url, ["permit.submitted"])
        await office.submit()
        got = await receiver.count(3)
        rows = await settled(org, hook["id"], receiver, 3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert len({r.body for r in got}) == 1
    stamps = [int(r.headers["webhook-timestamp"]) for r in got]
    assert stamps[2] > stamps[0]  # 1.2 s of retry delays apart: a new signature each time
    for request in got:
        request.verified(hook["secret"])
    assert len(rows) == 1
    metrics = (await client.get("/metrics")).text
    assert 'izin_siaran_webhook_deliveries_total{outcome="retrying"} 2.0' in metrics
    assert 'izin_siaran_webhook_deliveries_total{outcome="succeeded"} 1.0' in metrics
    assert "izin_siaran_webhook_delivery_latency_seconds_count 1.0" in metrics
    assert rows[0] | {"id": None, "created_at": None, "audit_seq": None} == {
        "id": None,
        "webhook_id": hook["id"],
        "message_id": got[0].headers["webhook-id"],
        "event_type": "permit.submitted",
        "audit_seq": None,
        "status": "succeeded",
        "attempts": 3,
        "last_status_code": 204,
        "last_error": None,
        "next_attempt_at": None,
        "created_at": None,
    }


async def test_a_delivery_fails_after_the_last_retry_and_can_be_sent_again(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    with Receiver(answers=[500, 500, 302]) as receiver:
        hook = await create_hook(org, receiver.url, ["permit.submitted"])
        await office.submit()
        rows = await settled(org, hook["id"], receiver, 3)
        assert [(r["status"], r["attempts"], r["last_status_code"]) for r in rows] == [
            ("failed", 3, 302)  # a redirect is an answer, not followed
        ]
        assert rows[0]["last_error"] == "unexpected_status"
        response = await client.post(
            f"{HOOKS}/{hook['id']}/deliveries/{rows[0]['id']}/redeliver", headers=org.admin
        )
        assert response.status_code == 202, response.text
        assert response.json()["message_id"] == rows[0]["message_id"]
        got = await receiver.count(4)
    assert got[3].headers["webhook-id"] == got[0].headers["webhook-id"]
    assert got[3].body == got[0].body
    got[3].verified(hook["secret"])
    assert len(got) == 4
    metrics = (await client.get("/metrics")).text
    assert 'izin_siaran_webhook_deliveries_total{outcome="failed"} 1.0' in metrics
    assert 'izin_siaran_webhook_deliveries_total{outcome="retrying"} 2.0' in metrics


async def test_a_rolled_back_change_sends_nothing(app: FastAPI, org: Org) -> None:
    office = await Office.create(org)
    with Receiver() as receiver:
        await create_hook(org, receiver.url, ["permit.approved", "permit.denied"])
        first, second = await office.submit(), await office.submit()
        async with app.state.db.write() as session, session.begin():
            head = await session.get(Employee, office.head["nip"])
            await apply_transition(session, first["id"], "approve", by=head)
            await session.rollback()  # the approval, its audit event and its message: gone
        response = await office.act(second["id"], "deny", office.head["nip"], {"reason": "Tidak"})
        assert response.status_code == 200
        got = await receiver.count(1)
    assert [r.message["data"]["permit"]["id"] for r in got] == [second["id"]]
    async with app.state.db.engine.connect() as connection:
        rows = (await connection.execute(select(WebhookDelivery.audit_seq))).all()
    assert len(rows) == 1


async def test_deactivating_a_webhook_fails_what_it_had_pending(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    with Receiver(answers=[500]) as receiver:
        hook = await create_hook(org, receiver.url, ["permit.submitted"])
        await office.submit()
        await receiver.count(1)  # a failure; the retry waits 0.6 s
        response = await client.delete(f"{HOOKS}/{hook['id']}", headers=org.admin)
        assert response.status_code == 200
        assert response.json()["active"] is False
        rows = await deliveries(org, hook["id"])
        await office.submit()
        again = await client.delete(f"{HOOKS}/{hook['id']}", headers=org.admin)
        assert_problem(again, 409, "already_inactive")
    assert [(r["status"], r["last_error"]) for r in rows] == [("failed", "webhook_inactive")]
    assert len(await deliveries(org, hook["id"])) == 1  # nothing new for an inactive webhook


async def test_a_rotated_secret_signs_beside_the_old_one(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    with Receiver() as receiver:
        hook = await create_hook(org, receiver.url, ["permit.submitted"])
        response = await client.post(f"{HOOKS}/{hook['id']}/rotate-secret", headers=org.admin)
        assert response.status_code == 200, response.text
        rotated = response.json()
        assert rotated["secret"] != hook["secret"]
        assert rotated["secret"].startswith("whsec_")
        await office.submit()
        got = await receiver.count(1)
    signatures = got[0].headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    got[0].verified(hook["secret"])  # a receiver that has not switched yet
    got[0].verified(rotated["secret"])  # one that has
    trail = await audit_trail_of(client, org, f"webhook:{hook['id']}")
    assert [e["action"] for e in trail] == ["webhook.created", "webhook.secret_rotated"]
    assert all("whsec_" not in str(e["data"]) for e in trail)


async def audit_trail_of(client: httpx.AsyncClient, org: Org, subject: str) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/audit/events", params={"subject": subject}, headers=org.admin
    )
    return list(response.json()["items"])


async def test_a_slow_endpoint_does_not_delay_another(org: Org) -> None:
    office = await Office.create(org)
    stuck = threading.Event()
    with Receiver(hold=stuck) as slow, Receiver() as fast:
        await create_hook(org, slow.url, ["permit.submitted"])
        await create_hook(org, fast.url, ["permit.submitted"])
        for _ in range(6):  # more than the slow one's share of attempts in flight
            await office.submit()
        await fast.count(6, timeout=5)  # all of them, while the slow one holds every request
        assert len(slow.received) <= 4  # WEBHOOK_CONCURRENCY_PER_ENDPOINT
        stuck.set()


async def test_secrets_are_stored_sealed(app: FastAPI, org: Org) -> None:
    hook = await create_hook(org, "http://127.0.0.1:9/hook")
    async with app.state.db.engine.connect() as connection:
        sealed = await connection.scalar(
            select(Webhook.secret_sealed).where(Webhook.id == hook["id"])
        )
    assert hook["secret"] not in sealed
    assert hook["secret"][6:] not in sealed
    assert app.state.secret_box.open(sealed) == hook["secret"]


async def test_the_admin_api(client: httpx.AsyncClient, org: Org, tokens: Any) -> None:
    hook = await create_hook(org, "http://127.0.0.1:9/a", ["permit.approved"])
    assert set(hook) == {
        "id", "url", "events", "description", "active", "created_at", "updated_at", "secret"
    }  # fmt: skip
    read = (await client.get(f"{HOOKS}/{hook['id']}", headers=org.admin)).json()
    assert read == {k: v for k, v in hook.items() if k != "secret"}
    listed = (await client.get(HOOKS, headers=org.admin)).json()
    assert [h["id"] for h in listed["items"]] == [hook["id"]]
    assert "secret" not in listed["items"][0]
    patched = await client.patch(
        f"{HOOKS}/{hook['id']}",
        json={"events": ["permit.revoked", "permit.revoked"], "description": "Gerbang"},
        headers=org.admin,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == ["permit.revoked"]
    assert patched.json()["description"] == "Gerbang"
    for body, code in (
        ({"url": None}, "validation_error"),  # errors: not_nullable
        ({"events": []}, "validation_error"),
        ({"events": ["permit.teleported"]}, "validation_error"),
        ({"secret": "whsec_AAAA"}, "validation_error"),
    ):
        refused = await client.patch(f"{HOOKS}/{hook['id']}", json=body, headers=org.admin)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["code"] == code, refused.text
    missing = await client.get(f"{HOOKS}/01jzzzzzzzzzzzzzzzzzzzzzzz", headers=org.admin)
    assert_problem(missing, 404, "not_found")
    staff = await org.employee()
    assert_problem(await client.get(HOOKS, headers=org.as_(staff["nip"])), 403, "admin_required")
    trail = await audit_trail_of(client, org, f"webhook:{hook['id']}")
    assert [e["action"] for e in trail] == ["webhook.created", "webhook.updated"]
    assert trail[0]["actor"] == ADMIN_NIP
    assert trail[1]["data"]["changes"]["events"] == {
        "from": ["permit.approved"],
        "to": ["permit.revoked"],
    }


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.anambaskab.go.id/x",  # http without WEBHOOK_ALLOW_HTTP
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://10.1.2.3/x",
        "https://192.168.1.10/x",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "https://100.100.100.200/x",  # shared address space, another cloud's metadata
        "https://[::ffff:127.0.0.1]/x",
        "https://localhost/x",  # a name that resolves to loopback
        "https://user:pass@hooks.anambaskab.go.id/x",
        "ftp://hooks.anambaskab.go.id/x",
    ],
)
async def test_addresses_webhooks_may_not_reach(
    client: httpx.AsyncClient, org: Org, settings: Settings, url: str
) -> None:
    strict = settings.model_copy(
        update={"webhook_allow_http": False, "webhook_allow_private": False}
    )
    async with serving(create_app(strict)) as application, _client(application) as http:
        response = await http.post(HOOKS, json={"url": url, "events": ["*"]}, headers=org.admin)
    assert response.status_code == 422, response.text
    assert response.json()["code"] in {"invalid_webhook_url", "validation_error"}


async def test_each_attempt_checks_the_address_again(settings: Settings, tokens: Any) -> None:
    """A webhook accepted while private addresses were allowed is refused at its next
    attempt once they are not (`last_error` `blocked_address`), and never reached."""
    strict = settings.model_copy(update={"webhook_allow_private": False})
    with Receiver() as receiver:
        async with serving(create_app(settings)) as lenient, _client(lenient) as http:
            org = Org(http, tokens)
            office = await Office.create(org)
            hook = await create_hook(org, receiver.url, ["permit.submitted"])
        async with serving(create_app(strict)) as application, _client(application) as http:
            org = Org(http, tokens)
            office.org = org
            await office.submit()

            async def attempted() -> list[dict[str, Any]] | None:
                rows = await deliveries(org, hook["id"])
                return rows if rows and rows[0]["last_error"] else None

            rows = await eventually(attempted)
    assert rows[0]["last_error"] == "blocked_address"
    assert rows[0]["status"] == "pending"  # tried again later, checked again then
    assert receiver.received == []


def _client(application: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application)
    return httpx.AsyncClient(transport=transport, base_url="http://izin-siaran.test")


async def test_the_cli_lists_failed_deliveries_and_sends_one_again(
    client: httpx.AsyncClient, org: Org, settings: Settings
) -> None:
    office = await Office.create(org)
    env = {"DATABASE_URL": settings.effective_database_url, "DATA_DIR": str(settings.data_dir)}
    with Receiver(answers=[500, 500, 500]) as receiver:
        hook = await create_hook(org, receiver.url, ["permit.submitted"])
        await office.submit()
        rows = await settled(org, hook["id"], receiver, 3)
        listed = await asyncio.to_thread(run_cli, "webhooks", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        line = next(li for li in listed.stdout.splitlines() if li.startswith(hook["id"]))
        assert line.split()[:4] == [hook["id"], "active", "0", "1"]
        failed = await asyncio.to_thread(run_cli, "webhooks", "failed", env=env)
        assert rows[0]["id"] in failed.stdout
        assert "permit.submitted" in failed.stdout
        again = await asyncio.to_thread(run_cli, "webhooks", "redeliver", rows[0]["id"], env=env)
        assert again.returncode == 0, again.stderr
        got = await receiver.count(4)  # the running service sends it
        missing = await asyncio.to_thread(run_cli, "webhooks", "redeliver", "nope", env=env)
    assert got[3].headers["webhook-id"] == got[0].headers["webhook-id"]
    assert missing.returncode != 0
    trail = await audit_trail_of(client, org, f"webhook:{hook['id']}")
    assert [(e["action"], e["actor"]) for e in trail][-1] == ("webhook.redelivered", "system")


async def test_an_instance_with_another_secrets_key_says_so(
    settings: Settings, tokens: Any
) -> None:
    """Instances with separate data folders must share SECRETS_KEY: one that does not cannot
    sign, and each attempt says why (`secrets_key_mismatch`) instead of sending unsigned."""
    with Receiver() as receiver:
        async with serving(create_app(settings)) as first, _client(first) as http:
            org = Org(http, tokens)
            office = await Office.create(org)
            hook = await create_hook(org, receiver.url, ["permit.submitted"])
        other = settings.model_copy(update={"data_dir": settings.data_dir.parent / "other"})
        async with serving(create_app(other)) as second, _client(second) as http:
            office.org = org = Org(http, tokens)
            await office.submit()

            async def attempted() -> list[dict[str, Any]] | None:
                rows = await deliveries(org, hook["id"])
                return rows if rows and rows[0]["last_error"] else None

            rows = await eventually(attempted)
    assert rows[0]["last_error"] == "secrets_key_mismatch"
    assert receiver.received == []


async def test_the_readme_s_receiver_verifies_a_delivery(org: Org) -> None:
    """The README's five-line receiver (standard library only) accepts a real delivery and
    refuses it once a byte changes."""
    code = README.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    assert "def verify(" in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (the docs' own example)
    office = await Office.create(org)
    with Receiver() as receiver:
        hook = await create_hook(org, receiver.url, ["permit.submitted"])
        await office.submit()
        got = (await receiver.count(1))[0]
    assert namespace["verify"](hook["secret"], got.headers, got.body)
    assert not namespace["verify"](hook["secret"], got.headers, got.body + b" ")


async def test_https_to_the_checked_address_verifying_the_name(
    settings: Settings, tokens: Any, tmp_path: Path
) -> None:
    """Over HTTPS an attempt connects to the address it resolved and checked, and TLS
    verifies the URL's name (a receiver of an internal CA, trusted by WEBHOOK_CA_FILE);
    without that CA the same receiver is refused (`connection_error`), never sent to."""
    ca, chain = certificate_authority(tmp_path)
    https_only = {"webhook_allow_http": False, "webhook_allow_private": True}
    trusting = settings.model_copy(update={**https_only, "webhook_ca_file": ca})
    with Receiver(tls=chain) as receiver:
        assert receiver.url.startswith("https://localhost:")
        async with serving(create_app(trusting)) as application, _client(application) as http:
            org = Org(http, tokens)
            office = await Office.create(org)
            hook = await create_hook(org, receiver.url, ["permit.submitted"])
            await office.submit()
            got = await receiver.count(1)
            got[0].verified(hook["secret"])
            assert got[0].headers["host"] == receiver.url.split("/")[2]
        untrusting = settings.model_copy(update=https_only)
        async with serving(create_app(untrusting)) as application, _client(application) as http:
            office.org = org = Org(http, tokens)
            await office.submit()

            async def attempted() -> list[dict[str, Any]] | None:
                rows = await deliveries(org, hook["id"])
                return rows if rows[0]["last_error"] else None

            rows = await eventually(attempted)
    assert rows[0]["last_error"] == "connection_error"
    assert len(receiver.received) == 1
