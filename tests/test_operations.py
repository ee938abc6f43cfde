"""Plumbing of SPEC §7: problems, request ids, limits, health, settings, OpenAPI, the CLI."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from app.config import Settings, SettingsError, load_settings
from app.main import create_app
from app.migrate import SchemaNotAtHead
from tests.conftest import run_cli
from tests.support import ADMIN_NIP, Org, ServerProcess, assert_problem, make_code

pytestmark = pytest.mark.anyio


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient, org: Org) -> None:
    sent = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert sent.headers["X-Request-ID"] == "abc-123"
    generated = await client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32
    replaced = await client.get(
        "/api/v1/units/NOPE", headers={**org.admin, "X-Request-ID": "x" * 300}
    )
    assert replaced.headers["X-Request-ID"] != "x" * 300
    assert assert_problem(replaced, 404)["request_id"] == replaced.headers["X-Request-ID"]


async def test_unknown_paths_and_methods_are_problems(client: httpx.AsyncClient, org: Org) -> None:
    assert_problem(await client.get("/api/v1/nothing-here", headers=org.admin), 404, "not_found")
    assert_problem(await client.put("/api/v1/units", headers=org.admin), 405, "method_not_allowed")


async def test_malformed_and_invalid_bodies(client: httpx.AsyncClient, org: Org) -> None:
    headers = {**org.admin, "Content-Type": "application/json"}
    assert_problem(
        await client.post("/api/v1/units", content=b'{"code": ', headers=headers),
        400,
        "malformed_json",
    )
    invalid = assert_problem(
        await client.post("/api/v1/units", json={"code": 5}, headers=org.admin),
        422,
        "validation_error",
    )
    assert {tuple(e["loc"]) for e in invalid["errors"]} >= {("body", "name")}
    assert all({"loc", "msg", "code"} <= set(e) for e in invalid["errors"])


async def test_oversized_bodies_are_refused_and_change_nothing(
    client: httpx.AsyncClient, org: Org
) -> None:
    code = make_code()
    big = {"code": code, "name": "x", "padding": "y" * 1_100_000}
    assert_problem(
        await client.post("/api/v1/units", json=big, headers=org.admin), 413, "payload_too_large"
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"code": "' + code.encode() + b'", "name": "'
        for _ in range(20):
            yield b"z" * 100_000
        yield b'"}'

    streamed = await client.post(
        "/api/v1/units", content=chunks(), headers={**org.admin, "Content-Type": "application/json"}
    )
    assert_problem(streamed, 413, "payload_too_large")
    assert_problem(await client.get(f"/api/v1/units/{code}", headers=org.admin), 404)


@pytest.fixture
async def failing_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("secret internal detail")

    application.add_api_route("/boom", explode)
    async with application.router.lifespan_context(application):
        yield application


async def test_unexpected_errors_are_500_problems_without_details(failing_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=failing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/boom", headers={"X-Request-ID": "trace-me"})
    body = assert_problem(response, 500, "internal_error")
    assert "trace-me" in body["detail"]
    assert "secret" not in response.text
    assert response.headers["X-Request-ID"] == "trace-me"


async def test_a_commit_that_fails_never_returns_2xx(client: httpx.AsyncClient, org: Org) -> None:
    code = make_code()
    headers = org.admin
    await client.get("/api/v1/me", headers=headers)  # bootstrap done before the fault is armed

    def refuse(session: Session) -> None:
        raise RuntimeError("the disk is full")

    event.listen(Session, "before_commit", refuse)
    try:
        response = await client.post(
            "/api/v1/units", json={"code": code, "name": "x"}, headers=headers
        )
    finally:
        event.remove(Session, "before_commit", refuse)
    assert_problem(response, 500, "internal_error")
    assert_problem(await client.get(f"/api/v1/units/{code}", headers=headers), 404)


async def test_health_and_readiness(client: httpx.AsyncClient, app: FastAPI) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    async with app.state.db.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    assert_problem(await client.get("/readyz"), 503, "schema_not_at_head")


async def test_service_refuses_an_unmigrated_database(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    else:
        url = settings.database_url
        application = create_app(settings)
        async with (
            application.router.lifespan_context(application),
            application.state.db.engine.begin() as connection,
        ):
            await connection.execute(text("DROP TABLE alembic_version"))
    application = create_app(settings.model_copy(update={"database_url": url}))
    with pytest.raises(SchemaNotAtHead, match="izin-siaran migrate"):
        async with application.router.lifespan_context(application):
            pass


def test_settings_defaults_and_normalisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(
            ("DATABASE_", "AUTH_", "DATA_DIR", "POLICY_", "BOOTSTRAP_", "LOG_LEVEL")
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    defaults = load_settings()
    assert defaults.local_auth
    assert (
        defaults.effective_database_url
        == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'izin-siaran.db'}"
    )
    assert (defaults.policy_max_duration_minutes, defaults.policy_max_lead_days) == (480, 90)
    pg = load_settings(database_url="postgresql://u@h/db", bootstrap_admin_nips=f" {ADMIN_NIP} ,")
    assert pg.effective_database_url == "postgresql+asyncpg://u@h/db"
    assert pg.bootstrap_admin_nips == [ADMIN_NIP]
    monkeypatch.setenv("BOOTSTRAP_ADMIN_NIPS", f"{ADMIN_NIP},198503102010011001")
    assert load_settings().bootstrap_admin_nips == [ADMIN_NIP, "198503102010011001"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"database_url": "mysql://x"}, "DATABASE_URL"),
        ({"auth_jwks_url": "http://idp/jwks"}, "AUTH_JWKS_URL"),
        ({"auth_jwks_url": "https://idp/jwks"}, "AUTH_ISSUER"),
        ({"bootstrap_admin_nips": "123"}, "123"),
        ({"log_level": "LOUD"}, "LOG_LEVEL"),
        ({"policy_max_duration_minutes": 0}, "POLICY_MAX_DURATION_MINUTES"),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(_env_file=None, **overrides)


async def test_openapi_declares_problems(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation_ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            if not path.startswith("/api/v1"):
                continue
            responses = operation["responses"]
            for status in ("401", "422", "500"):
                assert status in responses, (method, path, status)
                assert "application/problem+json" in responses[status]["content"], (method, path)
            if method == "post" and path in (
                "/api/v1/units",
                "/api/v1/permits",
                "/api/v1/api-keys",
            ):
                assert "201" in responses
    assert len(operation_ids) == len(set(operation_ids))
    assert "HTTPValidationError" not in str(document)
    assert "read_permit" in operation_ids


def test_cli_refuses_bad_settings_clearly() -> None:
    result = run_cli("migrate", env={"LOG_LEVEL": "LOUD"})
    assert result.returncode == 2
    assert "LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_readme_walk_on_a_real_server(tmp_path: Path) -> None:
    """Fresh DATA_DIR, local mode, default SQLite: migrate, demo, token, serve, call."""
    env = {"DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"}
    refused = run_cli("serve", "--port", "1", env=env, timeout=60)
    assert refused.returncode != 0
    assert "izin-siaran migrate" in refused.stderr + refused.stdout
    assert run_cli("migrate", env=env).returncode == 0
    demo = run_cli("demo", env=env)
    assert "DISKOMINFOTIK" in demo.stdout, demo.stderr
    token = run_cli("token", "198904042014021003", env=env).stdout.strip()
    server = ServerProcess(env, tmp_path)
    try:
        server.wait_ready()
        headers = {"Authorization": f"Bearer {token}"}
        me = httpx.get(f"{server.base_url}/api/v1/me", headers=headers)
        assert me.json()["roles"] == ["admin"]
        units = httpx.get(f"{server.base_url}/api/v1/units", headers=headers).json()
        assert "DISKOMINFOTIK" in {u["code"] for u in units["items"]}
    finally:
        server.stop()
