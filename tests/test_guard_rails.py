"""The guard rails (docs/RULES.md#guard-rails), each proven by performing its attack over
HTTP against the real app: random credentials and rotating `X-Forwarded-For` against the
rate limit, demoting the last admin, self-delegation and self-appointment, hostile
timestamps in every field that takes one, channel look-alikes in the check, formula
cells in the CSV export, and the modes of the files a fresh start makes."""

from __future__ import annotations

import csv
import io
import os
import secrets
import stat
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.audit.export import neutralised
from app.config import Settings, SettingsError, load_settings
from app.main import create_app
from app.ratelimit import CAPACITY, Budget
from tests.conftest import run_cli
from tests.permits_support import Office, permit_body
from tests.support import ADMIN_NIP, Org, Tokens, assert_problem, delegation_body, serving

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def app_client(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    peer: str = "127.0.0.1",
    **changes: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on `settings` (with `changes`), its rate limit on `clock`, every
    request coming from the socket address `peer`."""
    application = create_app(settings.model_copy(update=changes), clock=clock)
    async with serving(application):
        transport = httpx.ASGITransport(
            app=application, raise_app_exceptions=False, client=(peer, 50000)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


def _random_token() -> dict[str, str]:
    return {"Authorization": f"Bearer {secrets.token_urlsafe(48)}"}


def _random_api_key() -> dict[str, str]:
    return {"X-API-Key": f"izs_{secrets.token_hex(13).upper()}_{secrets.token_urlsafe(24)}"}


# --- rate limits (docs/RULES.md#rate-limits) ----------------------------------------------


async def test_random_credentials_share_their_address_budget(
    settings: Settings, tokens: Tokens
) -> None:
    now = [1000.0]
    async with app_client(
        settings, clock=lambda: now[0], rate_limit_auth_failures_per_minute=5
    ) as http:
        refused = [
            (await http.get("/api/v1/me", headers=headers)).status_code
            for headers in [_random_token() for _ in range(3)]
            + [_random_api_key() for _ in range(2)]
        ]
        assert refused == [401] * 5
        for headers in (_random_token(), _random_api_key(), {}):  # no credential counts too
            limited = await http.get("/api/v1/me", headers=headers)
            assert_problem(limited, 429, "rate_limited")
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.headers["RateLimit-Limit"] == "5"
        # A verified caller from the same address is judged by their own budget.
        me = await http.get("/api/v1/me", headers=tokens.auth(ADMIN_NIP))
        assert me.status_code == 200
        assert me.headers["RateLimit-Limit"] == str(settings.rate_limit_per_minute)
        now[0] += 12.1  # 5 a minute: one more failure every 12 s
        assert (await http.get("/api/v1/me", headers=_random_token())).status_code == 401
        assert (await http.get("/api/v1/me", headers=_random_token())).status_code == 429


async def test_rotating_forwarded_for_mints_no_budget(settings: Settings) -> None:
    now = [1000.0]
    async with app_client(
        settings, clock=lambda: now[0], rate_limit_auth_failures_per_minute=3
    ) as http:
        statuses = [
            (
                await http.get(
                    "/api/v1/me",
                    headers={**_random_token(), "X-Forwarded-For": f"198.51.100.{k}"},
                )
            ).status_code
            for k in range(6)
        ]
        assert statuses == [401] * 3 + [429] * 3


async def test_forwarded_for_counts_only_from_trusted_proxies(settings: Settings) -> None:
    now = [1000.0]
    async with app_client(
        settings,
        clock=lambda: now[0],
        peer="10.0.0.5",
        rate_limit_auth_failures_per_minute=2,
        trusted_proxies=["10.0.0.0/24"],
    ) as http:

        async def from_(forwarded: str) -> int:
            headers = {**_random_token(), "X-Forwarded-For": forwarded}
            return (await http.get("/api/v1/me", headers=headers)).status_code

        # Behind the trusted proxy each client has its budget ...
        assert [await from_("203.0.113.7") for _ in range(3)] == [401, 401, 429]
        assert await from_("203.0.113.8") == 401
        # ... and what a client writes in front of what the proxy appended is ignored.
        spoofed = [await from_(f"192.0.2.{k}, 203.0.113.7") for k in range(3)]
        assert spoofed == [429] * 3


async def test_flooding_the_limiter_resets_no_real_caller(
    settings: Settings, tokens: Tokens
) -> None:
    now = [1000.0]
    async with app_client(
        settings,
        clock=lambda: now[0],
        rate_limit_per_minute=3,
        trusted_proxies=["127.0.0.1"],
    ) as http:
        admin = tokens.auth(ADMIN_NIP)
        assert [(await http.get("/api/v1/me", headers=admin)).status_code for _ in range(4)] == [
            200,
            200,
            200,
            429,
        ]
        for k in range(300):  # random tokens from as many addresses
            forwarded = {"X-Forwarded-For": f"198.18.{k // 256}.{k % 256}"}
            response = await http.get("/api/v1/me", headers={**_random_token(), **forwarded})
            assert response.status_code == 401
        assert (await http.get("/api/v1/me", headers=admin)).status_code == 429


async def test_public_endpoints_are_limited_per_address_health_never(
    settings: Settings,
) -> None:
    now = [1000.0]
    async with app_client(settings, clock=lambda: now[0], rate_limit_public_per_minute=3) as http:
        statuses = [(await http.get("/openapi.json")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert_problem(await http.get("/openapi.json"), 429, "rate_limited")
        for _ in range(10):
            assert (await http.get("/healthz")).status_code == 200


async def test_the_check_fast_path_spends_the_same_budget(
    settings: Settings, tokens: Tokens
) -> None:
    now = [1000.0]
    async with app_client(settings, clock=lambda: now[0], rate_limit_check_per_minute=3) as http:
        created = await http.post(
            "/api/v1/api-keys", json={"name": "gerbang"}, headers=tokens.auth(ADMIN_NIP)
        )
        key = {"X-API-Key": created.json()["key"]}
        query = {"platform": "youtube", "channel": "@diskominfotik.anambas"}
        statuses = []
        for _ in range(4):
            response = await http.get("/api/v1/authorizations/check", params=query, headers=key)
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]


def test_a_budget_never_holds_more_than_its_capacity() -> None:
    budget = Budget(10, time.monotonic, capacity=100)
    for k in range(10_000):
        budget.take(f"caller-{k}")
    assert len(budget) == 100
    # The most recently seen callers are the ones kept.
    budget.take("caller-9999")
    assert not budget.take("caller-9999", cost=10).allowed


def test_a_full_budget_stays_within_its_stated_memory() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        budget = Budget(600, time.monotonic)
        for k in range(CAPACITY + 50_000):
            budget.take(f"2001:db8:{k:x}::/64")
        used = sum(
            stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
        )
    finally:
        tracemalloc.stop()
    assert len(budget) == CAPACITY
    assert used < CAPACITY * 350, used  # the module states ≈ 310 bytes a bucket


def test_trusted_proxies_are_checked_at_start_up() -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        load_settings(trusted_proxies="10.0.0.1/8")  # host bits set: ambiguous
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        load_settings(trusted_proxies="proxy.example")
    proxies = load_settings(trusted_proxies="10.0.0.5, 10.1.0.0/16").trusted_proxies
    assert [str(network) for network in proxies] == ["10.0.0.5/32", "10.1.0.0/16"]


# --- the last admin (docs/RULES.md#last-admin) --------------------------------------------


async def test_the_last_admin_cannot_leave(client: httpx.AsyncClient, org: Org) -> None:
    me = f"/api/v1/employees/{ADMIN_NIP}"
    for change in ({"active": False}, {"roles": []}, {"roles": ["auditor"]}):
        assert_problem(await client.patch(me, json=change, headers=org.admin), 409, "last_admin")
    still = await client.get(me, headers=org.admin)
    assert still.json()["roles"] == ["admin"]
    assert still.json()["active"] is True
    # With another admin, either may step down.
    other = await org.employee(roles=["admin"])
    stepped = await client.patch(me, json={"roles": ["auditor"]}, headers=org.admin)
    assert stepped.status_code == 200, stepped.text
    back = await client.patch(me, json={"roles": ["admin"]}, headers=org.as_(other["nip"]))
    assert back.status_code == 200


# --- nobody makes themselves an approver (docs/RULES.md#separation-of-duties) ---------------


async def test_no_self_delegation(client: httpx.AsyncClient, org: Org) -> None:
    unit, head = await org.unit_with_head()
    path = f"/api/v1/units/{unit['code']}/delegations"
    by_admin = await client.post(path, json=delegation_body(ADMIN_NIP), headers=org.admin)
    problem = assert_problem(by_admin, 422, "self_delegation")
    assert problem["errors"][0]["loc"] == ["body", "delegate_nip"]
    by_head = await client.post(
        path, json=delegation_body(head["nip"]), headers=org.as_(head["nip"])
    )
    assert_problem(by_head, 422, "self_delegation")
    listed = await client.get(path, headers=org.admin)
    assert listed.json()["items"] == []


async def test_no_self_appointment(client: httpx.AsyncClient, org: Org) -> None:
    code = "SELF-HEAD"
    created = await client.post(
        "/api/v1/units",
        json={"code": code, "name": "Unit", "head_nip": ADMIN_NIP},
        headers=org.admin,
    )
    problem = assert_problem(created, 422, "self_appointment")
    assert problem["errors"][0]["loc"] == ["body", "head_nip"]
    assert (await client.get(f"/api/v1/units/{code}", headers=org.admin)).status_code == 404
    unit = await org.unit()
    path = f"/api/v1/units/{unit['code']}"
    patched = await client.patch(path, json={"head_nip": ADMIN_NIP}, headers=org.admin)
    assert_problem(patched, 422, "self_appointment")
    assert (await client.get(path, headers=org.admin)).json()["head_nip"] is None
    # Another admin may appoint them.
    other = await org.employee(roles=["admin"])
    appointed = await client.patch(
        path, json={"head_nip": ADMIN_NIP}, headers=org.as_(other["nip"])
    )
    assert appointed.status_code == 200, appointed.text


# --- every timestamp: accepted or a 422 naming the field (docs/RULES.md#times) --------------

OUT_OF_RANGE = [
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:00:00-23:59",
    "0001-01-01T00:00:00+07:00",
    "0001-01-01T00:00:00+23:59",
]
MALFORMED = [
    "2025-13-01T00:00:00Z",
    "2025-02-30T00:00:00Z",
    "2025-01-01T24:00:01Z",
    "2025-01-01T00:00:00+24:00",
    "99999-01-01T00:00:00Z",
    "2025-01-01T00:00:00",
    "1e308",
]
EXTREME_BUT_REAL = ["9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]


async def _timestamp_requests(
    client: httpx.AsyncClient, org: Org, office: Office, key: dict[str, str], value: str
) -> list[tuple[str, httpx.Response]]:
    """(the field, the response) for `value` in every field that takes a timestamp."""
    auditor = org.as_((await org.employee(roles=["auditor"]))["nip"])
    staff = org.as_(office.staff["nip"])
    body = permit_body(office.workspace["code"])
    window = delegation_body(office.colleague["nip"])
    delegations = f"/api/v1/units/{office.unit['code']}/delegations"

    async def get(path: str, field: str, headers: dict[str, str], **extra: str) -> httpx.Response:
        return await client.get(path, params={field: value, **extra}, headers=headers)

    async def post(
        path: str, body: dict[str, Any], field: str, headers: dict[str, str]
    ) -> httpx.Response:
        return await client.post(path, json={**body, field: value}, headers=headers)

    check = "/api/v1/authorizations/check"
    channel = {"platform": "youtube", "channel": "@diskominfotik.anambas"}
    answers = [("at", await get(check, "at", key, **channel))]
    answers.append(("at", await get(check, "at", staff, **channel)))
    for path in ("/api/v1/audit/events", "/api/v1/audit/events.csv"):
        answers += [(field, await get(path, field, auditor)) for field in ("since", "until")]
    answers += [(field, await get("/api/v1/permits", field, staff)) for field in ("from", "to")]
    for field in ("starts_at", "ends_at"):
        answers.append((field, await post("/api/v1/permits", body, field, staff)))
        answers.append((field, await post(delegations, window, field, org.admin)))
    return answers


@pytest.fixture
async def timestamp_scene(client: httpx.AsyncClient, org: Org) -> tuple[Office, dict[str, str]]:
    office = await Office.create(org)
    created = await client.post(
        "/api/v1/api-keys", json={"name": "gerbang", "scopes": ["check"]}, headers=org.admin
    )
    return office, {"X-API-Key": created.json()["key"]}


@pytest.mark.parametrize(
    ("value", "refused"),
    [(v, True) for v in OUT_OF_RANGE + MALFORMED] + [(v, False) for v in EXTREME_BUT_REAL],
)
async def test_every_timestamp_field_refuses_or_judges_hostile_values(
    client: httpx.AsyncClient,
    org: Org,
    timestamp_scene: tuple[Office, dict[str, str]],
    value: str,
    refused: bool,
) -> None:
    """Out of range or malformed: a 422 naming the field. Extreme but real: judged by the
    field's own rules (200, or a 422 such as a window too far ahead), never a 500."""
    office, key = timestamp_scene
    for field, response in await _timestamp_requests(client, org, office, key, value):
        if refused:
            problem = assert_problem(response, 422)
            assert any(error["loc"][-1] == field for error in problem["errors"]), (field, problem)
        elif response.status_code != 200:
            assert_problem(response, 422)
        elif response.headers["content-type"].startswith("text/csv"):
            assert response.text.startswith("seq,at,actor"), (field, response.text[:200])


# --- channels are compared normalised (docs/RULES.md#channels) ---------------------------


def _full_width(text: str) -> str:
    """`text` in the full-width forms of its ASCII letters and signs (U+FF01 to U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def test_channel_look_alikes_are_one_channel(client: httpx.AsyncClient, org: Org) -> None:
    office = await Office.create(org)
    permit = await office.submit(channel="@DiskominfoTik.Anambas", platform="tiktok")
    approved = await office.act(permit["id"], "approve", office.head["nip"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["channel"] == "@DiskominfoTik.Anambas"  # kept as submitted
    created = await client.post(
        "/api/v1/api-keys", json={"name": "gerbang", "scopes": ["check"]}, headers=org.admin
    )
    key = {"X-API-Key": created.json()["key"]}
    at = (datetime.fromisoformat(permit["starts_at"]) + timedelta(minutes=5)).isoformat()
    for channel in (
        "diskominfotik.anambas",
        "  @DISKOMINFOTIK.ANAMBAS ",
        _full_width("@diskominfotik.anambas"),
        _full_width("@") + "DiskominfoTik.Anambas",
    ):
        params = {"platform": "tiktok", "channel": channel, "at": at}
        for headers in (key, org.as_(office.head["nip"])):  # the fast path and the route
            answer = await client.get(
                "/api/v1/authorizations/check", params=params, headers=headers
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["authorized"] is True, (channel, answer.json())
            assert answer.json()["permit"]["id"] == permit["id"]
    # A submission that is the same channel in other letters is the same channel.
    other = await client.get(
        "/api/v1/authorizations/check",
        params={"platform": "tiktok", "channel": "diskominfotik.anambas2", "at": at},
        headers=key,
    )
    assert other.json()["authorized"] is False


# --- CSV cells (docs/RULES.md#csv-export) ------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_cells_are_neutralised(start: str) -> None:
    assert neutralised(f'{start}HYPERLINK("http://x")') == f'\'{start}HYPERLINK("http://x")'


def test_other_cells_are_written_as_they_are() -> None:
    assert neutralised("permit.approved") == "permit.approved"
    assert neutralised(12) == 12
    assert neutralised("") == ""


async def test_no_exported_cell_begins_like_a_formula(client: httpx.AsyncClient, org: Org) -> None:
    unit = await org.unit(name='=HYPERLINK("http://evil.example","klik")')
    await org.employee(unit_code=unit["code"], name="+62 811 0000")
    await org.employee(unit_code=unit["code"], name="@SUM(A1:A9)")
    export = await client.get("/api/v1/audit/events.csv", headers=org.admin)
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.text)))
    assert len(rows) > 3
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert any("=HYPERLINK" in cell for row in rows for cell in row)  # inside the JSON cell


# --- files (docs/RULES.md#files) ---------------------------------------------------------


async def test_a_fresh_start_in_local_mode_keeps_its_files_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    previous = os.umask(0o022)  # the usual umask: files 0644, folders 0755 unless made private
    try:
        migrated = run_cli("migrate", env={"DATA_DIR": str(data_dir)})
        assert migrated.returncode == 0, migrated.stderr
        settings = Settings(_env_file=None, data_dir=data_dir, bootstrap_admin_nips=[ADMIN_NIP])  # type: ignore[call-arg]
        async with serving(create_app(settings)) as application:
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.get("/.well-known/jwks.json")).status_code == 200
            files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in data_dir.iterdir()}
    finally:
        os.umask(previous)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert "izin-siaran.db" in files
    assert len(files) >= 2  # the database and the signing key, at least
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}, files


async def test_files_left_open_by_an_older_version_are_made_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run_cli("migrate", env={"DATA_DIR": str(data_dir)}).returncode == 0
    database = data_dir / "izin-siaran.db"
    os.chmod(database, 0o644)
    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    async with serving(create_app(settings)):
        pass
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
