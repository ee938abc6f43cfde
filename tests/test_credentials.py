"""One credential rule for every path (docs/RULES.md#credentials, app/auth/credentials.py).

The same credential, sent to the check (its fast path on), to a permit read (its fast
path on), to a regular read and to a regular write, is refused with the same status and
`code` everywhere, or accepted everywhere (a key then gets only what its scopes grant).
The fast paths answer exactly the credentials the routes accept, and pass every other
one on to the route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.permits_support import PERMITS, Office
from tests.support import Org, Tokens, assert_problem, make_code, make_nip

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every refused credential here comes from one address: its failure budget
    (docs/RULES.md#rate-limits, proven in test_guard_rails.py) has room for them all."""
    return settings.model_copy(update={"rate_limit_auth_failures_per_minute": 100_000})


CHECK = "/api/v1/authorizations/check"
UNITS = "/api/v1/units"
Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Paths:
    check: str
    permit: str


async def _paths(org: Org) -> Paths:
    """The check and the permit read of a new office's permit."""
    office = await Office.create(org)
    permit = await office.submit()
    paths = Paths(
        check=f"{CHECK}?nip={office.staff['nip']}&workspace_code={office.workspace['code']}",
        permit=f"{PERMITS}/{permit['id']}",
    )
    return paths


def _answered(app: FastAPI) -> tuple[int, int]:
    return int(app.state.check_fast_path.answered), int(app.state.permit_fast_path.answered)


async def _key(client: httpx.AsyncClient, org: Org, scopes: list[str]) -> dict[str, str]:
    created = await client.post(
        "/api/v1/api-keys", json={"name": "gerbang", "scopes": scopes}, headers=org.admin
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _statuses(
    client: httpx.AsyncClient, paths: Paths, headers: Headers
) -> list[tuple[str, int, str | None]]:
    """(route, status, problem code) for the check, a permit read, a list and a create."""
    answers = [
        ("check", await client.get(paths.check, headers=headers)),
        ("permit", await client.get(paths.permit, headers=headers)),
        ("list", await client.get(UNITS, headers=headers)),
        (
            "create",
            await client.post(UNITS, json={"code": make_code(), "name": "Bagian"}, headers=headers),
        ),
    ]
    return [
        (
            name,
            response.status_code,
            response.json().get("code") if response.status_code >= 400 else None,
        )
        for name, response in answers
    ]


async def test_every_path_refuses_the_same_credentials_alike(
    app: FastAPI, client: httpx.AsyncClient, org: Org, tokens: Tokens
) -> None:
    paths = await _paths(org)
    leaver = await org.employee()
    left = await client.patch(
        f"/api/v1/employees/{leaver['nip']}", json={"active": False}, headers=org.admin
    )
    assert left.status_code == 200, left.text
    key = await _key(client, org, ["check"])
    key_id, secret = key["key"].split("_", 2)[1:]
    revoked = await _key(client, org, ["check"])
    gone = await client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=org.admin)
    assert gone.status_code == 200, gone.text
    admin = org.admin["Authorization"]

    refused: dict[str, tuple[Headers, str]] = {
        "none": ([], "unauthenticated"),
        "not bearer": ([("Authorization", admin.replace("Bearer", "Basic"))], "invalid_token"),
        "empty bearer": ([("Authorization", "Bearer ")], "invalid_token"),
        "not a JWT": ([("Authorization", "Bearer not-a-jwt")], "invalid_token"),
        "expired": (
            [
                (
                    "Authorization",
                    f"Bearer {tokens.mint(leaver['nip'], exp=int(time.time()) - 3600)}",
                )
            ],
            "token_expired",
        ),
        "unknown NIP": (
            [("Authorization", f"Bearer {tokens.mint(make_nip())}")],
            "unknown_employee",
        ),
        "not a NIP": ([("Authorization", f"Bearer {tokens.mint('pegawai')}")], "unknown_employee"),
        "inactive": (
            [("Authorization", f"Bearer {tokens.mint(leaver['nip'])}")],
            "employee_inactive",
        ),
        "both": ([("Authorization", admin), ("X-API-Key", key["key"])], "ambiguous_credentials"),
        "key of the wrong shape": ([("X-API-Key", "izs_short_secret")], "invalid_api_key"),
        "key with another secret": (
            [("X-API-Key", f"izs_{key_id}_{secret}x")],
            "invalid_api_key",
        ),
        "unknown key": ([("X-API-Key", f"izs_{'0' * 26}_{secret}")], "invalid_api_key"),
        "revoked key": ([("X-API-Key", revoked["key"])], "api_key_revoked"),
    }
    before = _answered(app)
    for case, (headers, code) in refused.items():
        for route, status, got in await _statuses(client, paths, headers):
            assert (status, got) == (401, code), (case, route)
        response = await client.get(paths.check, headers=headers)
        assert_problem(response, 401, code)
        assert "www-authenticate" in response.headers, case
    assert _answered(app) == before, "a fast path answered a credential the routes refuse"


async def test_every_path_accepts_the_same_credentials(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    paths = await _paths(org)
    admin = org.admin["Authorization"]
    key = (await _key(client, org, ["check"]))["key"]
    unscoped = (await _key(client, org, []))["key"]
    scope = "insufficient_scope"

    accepted: dict[str, tuple[Headers, list[tuple[int, str | None]], tuple[int, int]]] = {
        # route by route: check, permit read, list, create; then what the fast paths answer
        "employee": (
            [("Authorization", admin)],
            [(200, None), (200, None), (200, None), (201, None)],
            (1, 1),
        ),
        "employee, empty X-API-Key": (
            [("Authorization", admin), ("X-API-Key", "")],
            [(200, None), (200, None), (200, None), (201, None)],
            (1, 0),  # the permit fast path leaves any X-API-Key to the route
        ),
        # The route reads the first of a repeated header; the fast paths leave it to it.
        "employee, header repeated": (
            [("Authorization", admin), ("Authorization", "Bearer not-a-jwt")],
            [(200, None), (200, None), (200, None), (201, None)],
            (0, 0),
        ),
        "key with the check scope": (
            [("X-API-Key", key)],
            [(200, None), (403, scope), (403, scope), (403, scope)],
            (1, 0),
        ),
        "key without scopes": (
            [("X-API-Key", unscoped)],
            [(403, scope), (403, scope), (403, scope), (403, scope)],
            (0, 0),
        ),
    }
    for case, (headers, expected, fast) in accepted.items():
        before = _answered(app)
        answers = await _statuses(client, paths, headers)
        assert [(status, code) for _, status, code in answers] == expected, case
        after = _answered(app)
        assert (after[0] - before[0], after[1] - before[1]) == fast, case
