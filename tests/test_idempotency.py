"""`Idempotency-Key` on submissions and decisions (docs/RULES.md #permits): a retry replays the
first response and changes nothing; another request under the key is refused; keys are the caller's
own; concurrent duplicates create one permit on either database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.permits.models import IdempotencyRecord
from app.sweeper import sweep_database
from tests.permits_support import PERMITS, Office, audit_actions, permit_body
from tests.support import Org, assert_problem

pytestmark = pytest.mark.anyio


def _keyed(org: Org, nip: str, key: str) -> dict[str, str]:
    return {**org.as_(nip), "Idempotency-Key": key}


async def _all_permits(client: httpx.AsyncClient, org: Org) -> list[dict[str, Any]]:
    response = await client.get(PERMITS, headers=org.admin)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return list(response.json()["items"])


# --- submissions -------------------------------------------------------------------------


async def test_a_retried_submission_replays_the_first_response(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    headers = _keyed(org, office.staff["nip"], "submit-7f3c")
    body = permit_body(office.workspace["code"])
    first = await client.post(PERMITS, json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again = await client.post(PERMITS, json=body, headers=headers)
        assert again.status_code == 201
        assert again.content == first.content  # byte for byte the first body
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Location"] == first.headers["Location"]
        assert again.headers["ETag"] == first.headers["ETag"]
    permits = await _all_permits(client, org)
    assert [p["id"] for p in permits] == [first.json()["id"]]
    assert await audit_actions(app, first.json()["id"]) == [
        ("permit.submitted", office.staff["nip"])
    ]


async def test_the_same_key_for_another_request_is_refused(
    client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    headers = _keyed(org, office.staff["nip"], "submit-1")
    body = permit_body(office.workspace["code"])
    first = await client.post(PERMITS, json=body, headers=headers)
    assert first.status_code == 201, first.text
    for changed in (
        {**body, "title": "Judul lain"},
        {**body, "ends_at": permit_body(office.workspace["code"], minutes=90)["ends_at"]},
        {k: v for k, v in body.items() if k != "description"},
    ):
        problem = assert_problem(
            await client.post(PERMITS, json=changed, headers=headers),
            422,
            "idempotency_key_reused",
        )
        assert [e["loc"] for e in problem["errors"]] == [["header", "Idempotency-Key"]]
    # The key also belongs to that one request: using it on a decision is another request.
    reused = await office.act(
        first.json()["id"], "cancel", office.staff["nip"], None, **{"Idempotency-Key": "submit-1"}
    )
    assert_problem(reused, 422, "idempotency_key_reused")
    assert [p["id"] for p in await _all_permits(client, org)] == [first.json()["id"]]
    assert (await client.post(PERMITS, json=body, headers=headers)).json() == first.json()


async def test_keys_are_scoped_to_the_caller(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"])
    mine = await client.post(PERMITS, json=body, headers=_keyed(org, office.staff["nip"], "k1"))
    theirs = await client.post(
        PERMITS, json=body, headers=_keyed(org, office.colleague["nip"], "k1")
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["requester_nip"] == office.colleague["nip"]
    # Another caller's different body under the same key is not a reuse either.
    other = permit_body(office.workspace["code"], title="Lain", starts_in=timedelta(hours=3))
    third = await client.post(PERMITS, json=other, headers=_keyed(org, office.head["nip"], "k1"))
    assert third.status_code == 201, third.text
    assert len(await _all_permits(client, org)) == 3


async def test_without_a_key_every_submission_counts(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"])
    for _ in range(2):
        response = await client.post(PERMITS, json=body, headers=org.as_(office.staff["nip"]))
        assert response.status_code == 201
    assert len(await _all_permits(client, org)) == 2


@pytest.mark.parametrize("key", ["", "k" * 201, "tab\there"])
async def test_malformed_keys_are_422(client: httpx.AsyncClient, org: Org, key: str) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"])
    response = await client.post(PERMITS, json=body, headers=_keyed(org, office.staff["nip"], key))
    assert_problem(response, 422)
    assert await _all_permits(client, org) == []


async def test_a_200_character_key_is_fine(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    body = permit_body(office.workspace["code"])
    headers = _keyed(org, office.staff["nip"], "k" * 200)
    first = await client.post(PERMITS, json=body, headers=headers)
    again = await client.post(PERMITS, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()


async def _age_keys(app: FastAPI, hours: float) -> None:
    """Make every stored key `hours` old, as time passing would."""
    async with app.state.db.engine.begin() as connection:
        await connection.execute(
            update(IdempotencyRecord).values(created_at=datetime.now(UTC) - timedelta(hours=hours))
        )


async def test_keys_are_kept_for_24_hours(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    headers = _keyed(org, office.staff["nip"], "daily")
    body = permit_body(office.workspace["code"])
    first = await client.post(PERMITS, json=body, headers=headers)
    await _age_keys(app, 23.5)
    assert (await client.post(PERMITS, json=body, headers=headers)).json() == first.json()
    assert await sweep_database(app.state.db) == (0, 0, 0)
    await _age_keys(app, 24.5)
    # After 24 hours the key is free again: the same request is a new submission.
    second = await client.post(PERMITS, json=body, headers=headers)
    assert second.status_code == 201, second.text
    assert "Idempotent-Replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]
    assert (await client.post(PERMITS, json=body, headers=headers)).json() == second.json()
    # The sweep forgets expired keys without anyone retrying.
    await _age_keys(app, 25)
    assert await sweep_database(app.state.db) == (0, 0, 1)
    assert len(await _all_permits(client, org)) == 2


# --- decisions ---------------------------------------------------------------------------


async def test_a_retried_approval_replays_and_records_one_event(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    key = {"Idempotency-Key": "approve-1"}
    note = {"note": "Silakan"}
    first = await office.act(permit["id"], "approve", office.head["nip"], note, **key)
    assert first.status_code == 200, first.text
    again = await office.act(permit["id"], "approve", office.head["nip"], note, **key)
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == '"2"'
    # Without the key the same approval is a new request, refused by the state machine.
    assert_problem(
        await office.act(permit["id"], "approve", office.head["nip"], note),
        409,
        "invalid_transition",
    )
    # Even after the permit moved on, the retry still replays the first answer, and changes
    # nothing.
    await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Batal"})
    late = await office.act(permit["id"], "approve", office.head["nip"], note, **key)
    assert (late.status_code, late.json()) == (200, first.json())
    assert await audit_actions(app, permit["id"]) == [
        ("permit.submitted", office.staff["nip"]),
        ("permit.approved", office.head["nip"]),
        ("permit.revoked", office.head["nip"]),
    ]
    read = await client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)
    assert (read.json()["status"], read.json()["version"]) == ("revoked", 3)
    changed = await office.act(permit["id"], "approve", office.head["nip"], {"note": "Lain"}, **key)
    assert_problem(changed, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("action", "body"),
    [("deny", {"reason": "Tidak"}), ("cancel", {"reason": "Batal"}), ("revoke", {"reason": "X"})],
)
async def test_every_decision_honours_the_key(
    client: httpx.AsyncClient, org: Org, app: FastAPI, action: str, body: dict[str, str]
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    if action == "revoke":
        await office.act(permit["id"], "approve", office.head["nip"])
    nip = office.staff["nip"] if action == "cancel" else office.head["nip"]
    key = {"Idempotency-Key": f"{action}-1"}
    first = await office.act(permit["id"], action, nip, body, **key)
    again = await office.act(permit["id"], action, nip, body, **key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    recorded = {"deny": "permit.denied", "cancel": "permit.cancelled", "revoke": "permit.revoked"}
    actions = [a for a, _ in await audit_actions(app, permit["id"])]
    assert actions.count(recorded[action]) == 1


async def test_a_refused_decision_is_not_remembered(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    key = {"Idempotency-Key": "approve-early"}
    stale = await office.act(
        permit["id"], "approve", office.head["nip"], None, **{**key, "If-Match": '"0"'}
    )
    assert_problem(stale, 412, "version_mismatch")
    # The failed attempt stored nothing: the retry runs (and succeeds) now.
    retry = await office.act(permit["id"], "approve", office.head["nip"], None, **key)
    assert retry.status_code == 200, retry.text
    assert "Idempotent-Replayed" not in retry.headers


# --- concurrent duplicates ------------------------------------------------------------------


async def test_concurrent_duplicate_submissions_create_one_permit(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    office = await Office.create(org)
    headers = _keyed(org, office.staff["nip"], "dup-submit")
    body = permit_body(office.workspace["code"])
    responses = await asyncio.gather(
        *(client.post(PERMITS, json=body, headers=headers) for _ in range(10))
    )
    permits = await _all_permits(client, org)
    assert len(permits) == 1
    created = next(r for r in responses if r.status_code == 201)
    assert created.json()["id"] == permits[0]["id"]
    for response in responses:
        if response.status_code == 201:
            assert response.json() == created.json()
        else:
            # PostgreSQL: a duplicate arriving while the first is still running is told so.
            assert_problem(response, 409, "idempotency_in_flight")
            assert response.headers["Retry-After"] == "1"
            assert "Idempotent-Replayed" not in response.headers
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    assert len([r for r in responses if r.status_code == 201]) == len(replayed) + 1
    if backend == "sqlite":
        # Writers are serialised: every duplicate runs after the first and replays it.
        assert [r.status_code for r in responses] == [201] * 10
        assert len(replayed) == 9
    assert await audit_actions(app, permits[0]["id"]) == [("permit.submitted", office.staff["nip"])]
    # Afterwards, on either database, a retry replays.
    late = await client.post(PERMITS, json=body, headers=headers)
    assert (late.status_code, late.json()) == (201, created.json())


async def test_concurrent_duplicate_approvals_approve_once(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    responses = await asyncio.gather(
        *(
            office.act(
                permit["id"],
                "approve",
                office.head["nip"],
                None,
                **{"Idempotency-Key": "dup-approve"},
            )
            for _ in range(6)
        )
    )
    ok = [r for r in responses if r.status_code == 200]
    assert ok
    assert all(r.json() == ok[0].json() for r in ok)
    assert ok[0].json()["status"] == "approved"
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, 409, "idempotency_in_flight")
    if backend == "sqlite":
        assert len(ok) == 6
    assert [a for a, _ in await audit_actions(app, permit["id"])] == [
        "permit.submitted",
        "permit.approved",
    ]
