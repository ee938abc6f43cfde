"""Liveness and readiness (docs/RULES.md #conventions), and the refusal to serve an unmigrated
database.

`/healthz` says the process is up; `/readyz` says the database answers and its
schema is at this version's head. The service never starts on a database whose
schema is not the one it was written for, and says to run `izin-siaran migrate`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.main import create_app
from app.migrate import SchemaNotAtHead, head_revision
from tests.conftest import PG_ADMIN_DSN
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_healthz_says_the_process_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_the_database_and_its_schema_revision(
    client: httpx.AsyncClient, app: FastAPI, backend: str
) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    async with app.state.db.engine.connect() as connection:
        stored = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    assert response.json() == {
        "status": "ready",
        "database": backend,
        "schema_revision": head_revision(),
    }
    assert stored == head_revision()


async def _set_revision(app: FastAPI, revision: str) -> None:
    async with app.state.db.engine.begin() as connection:
        await connection.execute(
            text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
        )


@pytest.mark.parametrize("revision", ["0000", "0001", "ffffffffffff"])
async def test_readyz_is_503_when_the_schema_is_not_at_head(
    client: httpx.AsyncClient, app: FastAPI, revision: str
) -> None:
    await _set_revision(app, revision)
    body = assert_problem(await client.get("/readyz"), 503, "schema_not_at_head")
    assert revision in body["detail"]
    assert head_revision() in body["detail"]
    assert (await client.get("/healthz")).status_code == 200
    await _set_revision(app, head_revision())
    assert (await client.get("/readyz")).status_code == 200


async def test_readyz_is_503_when_the_schema_was_never_recorded(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    async with app.state.db.engine.begin() as connection:
        await connection.execute(text("DROP TABLE alembic_version"))
    assert_problem(await client.get("/readyz"), 503, "schema_not_at_head")
    assert (await client.get("/healthz")).status_code == 200


# --- start-up on a database that is not at head ----------------------------------


@pytest.fixture
async def empty_database_url(backend: str, database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database nobody migrated: a new SQLite file, or a new empty PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/empty.db"
        return
    name = f"izs_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = database_url.rpartition("/")[0]
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            if url.startswith("sqlite"):
                query = "SELECT name FROM sqlite_master WHERE type = 'table'"
            else:
                query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            return set((await connection.scalars(text(query))).all())
    finally:
        await engine.dispose()


async def test_the_service_refuses_to_start_on_an_unmigrated_database(
    settings: Settings, empty_database_url: str
) -> None:
    application = create_app(settings.model_copy(update={"database_url": empty_database_url}))
    with pytest.raises(SchemaNotAtHead) as refused:
        async with application.router.lifespan_context(application):
            pytest.fail("the service started on an unmigrated database")
    message = str(refused.value)
    assert "not migrated" in message
    assert "izin-siaran migrate" in message
    assert head_revision() in message
    # It neither migrated the database nor wrote to it (not even the bootstrap admin).
    assert await _tables(empty_database_url) == set()


@pytest.mark.parametrize("revision", ["0001", "ffffffffffff"])
async def test_the_service_refuses_to_start_on_another_schema_revision(
    settings: Settings, revision: str
) -> None:
    engine = create_async_engine(settings.effective_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :revision"),
                {"revision": revision},
            )
    finally:
        await engine.dispose()
    application = create_app(settings)
    with pytest.raises(SchemaNotAtHead, match="izin-siaran migrate") as refused:
        async with application.router.lifespan_context(application):
            pytest.fail("the service started on a database at another revision")
    assert f"at revision {revision}" in str(refused.value)
