"""API keys of service clients (docs/RULES.md #roles): created by admins with a secret shown once,
stored hashed, scoped, revoked at once, every change in the audit trail."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.support import ADMIN_NIP, Org, Tokens, assert_problem

pytestmark = pytest.mark.anyio

KEYS = "/api/v1/api-keys"
CHECK = "/api/v1/authorizations/check"
CHECK_PARAMS = {"nip": ADMIN_NIP, "workspace_code": "NOWHERE"}


async def _create(client: httpx.AsyncClient, org: Org, **body: Any) -> dict[str, Any]:
    response = await client.post(KEYS, json={"name": "gateway", **body}, headers=org.admin)
    assert response.status_code == 201, response.text
    created = dict(response.json())
    assert response.headers["Location"] == f"{KEYS}/{created['id']}"
    return created


async def _check(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.get(CHECK, params=CHECK_PARAMS, headers={"X-API-Key": key})


def _refused_key(response: httpx.Response, code: str) -> None:
    assert_problem(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith("ApiKey"), response.headers


async def _rows(app: FastAPI, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with app.state.db.engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(text(sql), params)).all()]


# --- creating and reading ----------------------------------------------------------------


async def test_create_shows_the_secret_once(client: httpx.AsyncClient, org: Org) -> None:
    created = await _create(client, org, name="streaming gateway")
    assert created["name"] == "streaming gateway"
    assert created["scopes"] == ["check"]  # the default, and the only scope there is
    assert created["created_by"] == ADMIN_NIP
    assert created["created_at"]
    assert created["revoked_at"] is None
    assert created["revoked_by"] is None
    key = created["key"]
    assert key.startswith(f"izs_{created['id']}_")
    secret = key.split("_", 2)[2]
    assert len(secret) >= 32

    read = await client.get(f"{KEYS}/{created['id']}", headers=org.admin)
    assert read.status_code == 200
    listed = await client.get(KEYS, headers=org.admin)
    assert listed.status_code == 200
    for response in (read, listed):
        assert secret not in response.text
    assert read.json() == {k: v for k, v in created.items() if k != "key"}
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    assert "key" not in listed.json()["items"][0]


async def test_each_key_has_its_own_secret(client: httpx.AsyncClient, org: Org) -> None:
    first, second = await _create(client, org), await _create(client, org)
    assert first["id"] != second["id"]
    assert first["key"].split("_", 2)[2] != second["key"].split("_", 2)[2]
    # One key's id with the other's secret is not a key.
    forged = f"izs_{first['id']}_{second['key'].split('_', 2)[2]}"
    _refused_key(await _check(client, forged), "invalid_api_key")


async def test_list_pages_by_keyset(client: httpx.AsyncClient, org: Org) -> None:
    created = [await _create(client, org, name=f"client {i}") for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(KEYS, params=params, headers=org.admin)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        assert all("key" not in item for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in created]  # oldest first, each once
    assert pages == 3


async def test_stored_hash_is_not_the_secret(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    created = await _create(client, org)
    secret = created["key"].split("_", 2)[2]
    rows = await _rows(app, "SELECT * FROM api_keys")
    assert len(rows) == 1
    dump = repr(rows)
    assert secret not in dump
    assert created["key"] not in dump
    (stored,) = await _rows(
        app, "SELECT secret_sha256 FROM api_keys WHERE id = :id", id=created["id"]
    )
    digest = stored[0]
    assert len(digest) == 64
    assert all(c in "0123456789abcdef" for c in digest)
    assert digest != secret
    # Nor is the secret anywhere in the audit trail.
    assert secret not in repr(await _rows(app, "SELECT * FROM audit_events"))


# --- using a key --------------------------------------------------------------------------


async def test_key_authenticates_the_check(client: httpx.AsyncClient, org: Org) -> None:
    created = await _create(client, org)
    response = await _check(client, created["key"])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/units"),
        ("GET", "/api/v1/employees"),
        ("GET", "/api/v1/workspaces"),
        ("GET", KEYS),
        ("POST", KEYS),
        ("GET", "/api/v1/audit/events"),
    ],
)
async def test_key_has_no_employee_powers(
    client: httpx.AsyncClient, org: Org, method: str, path: str
) -> None:
    created = await _create(client, org)
    response = await client.request(
        method, path, headers={"X-API-Key": created["key"]}, json={"name": "x"}
    )
    assert_problem(response, 403, "insufficient_scope")


async def test_key_cannot_create_keys_even_for_itself(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    created = await _create(client, org)
    headers = {"X-API-Key": created["key"]}
    assert_problem(
        await client.delete(f"{KEYS}/{created['id']}", headers=headers), 403, "insufficient_scope"
    )
    assert await _rows(app, "SELECT revoked_at FROM api_keys") == [(None,)]


async def test_wrong_secret(client: httpx.AsyncClient, org: Org) -> None:
    created = await _create(client, org)
    key = created["key"]
    for wrong in (
        f"izs_{created['id']}_wrong",
        key + "x",
        key[:-1],
        key[:-1] + ("A" if key[-1] != "A" else "B"),
        key.upper(),
    ):
        _refused_key(await _check(client, wrong), "invalid_api_key")
    assert (await _check(client, key)).status_code == 200


@pytest.mark.parametrize(
    "presented",
    [
        "nonsense",
        "izs",
        "izs_",
        "izs__",
        "izs___",
        "izs_{id}",
        "izs_{id}_",
        "xyz_{id}_{secret}",
        "IZS_{id}_{secret}",
        "{id}_{secret}",
        "Bearer izs_{id}_{secret}",
        " izs_{id}_{secret}x",
        "izs_{id}x_{secret}",
        "izs_' OR '1'='1_x",
        "izs_\x00\x00_x",  # PostgreSQL refuses NUL outright: must not become a 500
        "izs_" + "0" * 5000 + "_x",
    ],
)
async def test_malformed_key(client: httpx.AsyncClient, org: Org, presented: str) -> None:
    created = await _create(client, org)
    secret = created["key"].split("_", 2)[2]
    value = presented.replace("{id}", created["id"]).replace("{secret}", secret)
    _refused_key(await _check(client, value), "invalid_api_key")


async def test_key_without_scopes_grants_nothing(client: httpx.AsyncClient, org: Org) -> None:
    created = await _create(client, org, scopes=[])
    assert created["scopes"] == []
    response = await _check(client, created["key"])
    assert_problem(response, 403, "insufficient_scope")


async def test_key_is_not_a_bearer_token(client: httpx.AsyncClient, org: Org) -> None:
    created = await _create(client, org)
    response = await client.get(
        CHECK, params=CHECK_PARAMS, headers={"Authorization": f"Bearer {created['key']}"}
    )
    assert_problem(response, 401, "invalid_token")


async def test_key_and_token_together_are_refused(client: httpx.AsyncClient, org: Org) -> None:
    created = await _create(client, org)
    response = await client.get(
        CHECK, params=CHECK_PARAMS, headers={**org.admin, "X-API-Key": created["key"]}
    )
    assert_problem(response, 401, "ambiguous_credentials")
    assert "WWW-Authenticate" in response.headers


# --- revoking ---------------------------------------------------------------------------


async def test_revoked_key_stops_at_once(client: httpx.AsyncClient, org: Org) -> None:
    created, other = await _create(client, org), await _create(client, org)
    assert (await _check(client, created["key"])).status_code == 200

    revoked = await client.delete(f"{KEYS}/{created['id']}", headers=org.admin)
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["id"] == created["id"]
    assert body["revoked_at"] is not None
    assert body["revoked_by"] == ADMIN_NIP
    assert "key" not in body

    _refused_key(await _check(client, created["key"]), "api_key_revoked")
    # A wrong secret for a revoked key learns nothing about the key.
    _refused_key(await _check(client, f"izs_{created['id']}_guess"), "invalid_api_key")
    # Other keys are untouched.
    assert (await _check(client, other["key"])).status_code == 200
    # The record stays, revoked.
    read = await client.get(f"{KEYS}/{created['id']}", headers=org.admin)
    assert read.json()["revoked_at"] == body["revoked_at"]
    listed = (await client.get(KEYS, headers=org.admin)).json()["items"]
    assert {item["id"]: item["revoked_at"] is not None for item in listed} == {
        created["id"]: True,
        other["id"]: False,
    }


async def test_revoking_twice_is_a_conflict(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    created = await _create(client, org)
    first = await client.delete(f"{KEYS}/{created['id']}", headers=org.admin)
    assert first.status_code == 200
    assert_problem(
        await client.delete(f"{KEYS}/{created['id']}", headers=org.admin), 409, "already_revoked"
    )
    # The first revocation stands as it was.
    read = await client.get(f"{KEYS}/{created['id']}", headers=org.admin)
    assert read.json()["revoked_at"] == first.json()["revoked_at"]
    revocations = await _rows(app, "SELECT seq FROM audit_events WHERE action = 'api_key.revoked'")
    assert len(revocations) == 1


async def test_concurrent_revocations_revoke_once(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    created = await _create(client, org)
    responses = await asyncio.gather(
        *(client.delete(f"{KEYS}/{created['id']}", headers=org.admin) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409], [
        r.text for r in responses
    ]
    revocations = await _rows(
        app,
        "SELECT actor FROM audit_events WHERE action = 'api_key.revoked' AND subject = :s",
        s=f"api-key:{created['id']}",
    )
    assert revocations == [(ADMIN_NIP,)]


@pytest.mark.parametrize(
    "key_id",
    ["01jzzzzzzzzzzzzzzzzzzzzzzz", "nope", "x" * 300, "%00", "%27%20OR%20%271%27%3D%271"],
)
async def test_unknown_key_id(client: httpx.AsyncClient, org: Org, key_id: str) -> None:
    assert_problem(await client.get(f"{KEYS}/{key_id}", headers=org.admin), 404, "not_found")
    assert_problem(await client.delete(f"{KEYS}/{key_id}", headers=org.admin), 404, "not_found")


# --- who may ----------------------------------------------------------------------------


async def test_only_admins_manage_keys(client: httpx.AsyncClient, org: Org, tokens: Tokens) -> None:
    created = await _create(client, org)
    staff = await org.employee()
    auditor = await org.employee(roles=["auditor"])
    for nip in (staff["nip"], auditor["nip"]):
        headers = tokens.auth(nip)
        assert_problem(
            await client.post(KEYS, json={"name": "x"}, headers=headers), 403, "admin_required"
        )
        assert_problem(await client.get(KEYS, headers=headers), 403, "admin_required")
        assert_problem(
            await client.get(f"{KEYS}/{created['id']}", headers=headers), 403, "admin_required"
        )
        assert_problem(
            await client.delete(f"{KEYS}/{created['id']}", headers=headers),
            403,
            "admin_required",
        )
    assert (await _check(client, created["key"])).status_code == 200  # not revoked by them


async def test_anonymous_callers_are_401(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post(KEYS, json={"name": "x"}),
        await client.get(KEYS),
        await client.delete(f"{KEYS}/01jzzzzzzzzzzzzzzzzzzzzzzz"),
    ):
        assert_problem(response, 401, "unauthenticated")
        assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "x", "scopes": ["admin"]}, ["body", "scopes", 0]),
        ({"name": "x", "scopes": ["check", "admin"]}, ["body", "scopes"]),
        ({"name": "x", "scopes": ["CHECK"]}, ["body", "scopes", 0]),
        ({"name": "x", "scopes": "check"}, ["body", "scopes"]),
        ({}, ["body", "name"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "x" * 201}, ["body", "name"]),
        ({"name": "x", "key": "izs_mine_secret"}, ["body", "key"]),
        ({"name": "x", "created_by": "someone"}, ["body", "created_by"]),
    ],
)
async def test_invalid_body_is_422(
    client: httpx.AsyncClient, org: Org, app: FastAPI, body: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.post(KEYS, json=body, headers=org.admin)
    problem = assert_problem(response, 422, "validation_error")
    assert loc in [error["loc"][: len(loc)] for error in problem["errors"]], problem
    assert await _rows(app, "SELECT id FROM api_keys") == []


# --- the audit trail --------------------------------------------------------------------


async def test_create_and_revoke_are_audited(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    created = await _create(client, org, name="monitoring bot")
    subject = f"api-key:{created['id']}"
    events = await _rows(
        app,
        "SELECT action, actor, data FROM audit_events WHERE subject = :s ORDER BY seq",
        s=subject,
    )
    assert [(action, actor) for action, actor, _ in events] == [("api_key.created", ADMIN_NIP)]

    revoked = await client.delete(f"{KEYS}/{created['id']}", headers=org.admin)
    assert revoked.status_code == 200
    events = await _rows(
        app,
        "SELECT action, actor, data FROM audit_events WHERE subject = :s ORDER BY seq",
        s=subject,
    )
    assert [(action, actor) for action, actor, _ in events] == [
        ("api_key.created", ADMIN_NIP),
        ("api_key.revoked", ADMIN_NIP),
    ]
    data = repr([d for _, _, d in events])
    assert created["id"] in data
    assert "monitoring bot" in data
    assert created["key"].split("_", 2)[2] not in data
    assert hashlib.sha256(created["key"].split("_", 2)[2].encode()).hexdigest() not in data

    # Refused requests change nothing and record nothing.
    before = await _rows(app, "SELECT count(*) FROM audit_events")
    await client.delete(f"{KEYS}/{created['id']}", headers=org.admin)  # 409
    await client.post(KEYS, json={"name": "x", "scopes": ["admin"]}, headers=org.admin)  # 422
    staff = await org.employee()
    after_staff = await _rows(app, "SELECT count(*) FROM audit_events")
    await client.post(KEYS, json={"name": "x"}, headers=org.as_(staff["nip"]))  # 403
    assert await _rows(app, "SELECT count(*) FROM audit_events") == after_staff
    assert after_staff[0][0] == before[0][0] + 1  # only the employee's creation
