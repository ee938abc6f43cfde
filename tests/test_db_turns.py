"""SQLite's writers of one process take turns (`app.db.Database.write`) instead of waiting
in SQLite's busy handler; a writer that cannot get its turn gets the 503 a busy database
gives, and nothing of it is written."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from app.db import Database
from app.errors import ServiceUnavailable
from app.org.models import Unit
from tests.conftest import BACKENDS
from tests.support import ADMIN_NIP, Tokens, assert_problem, make_code

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "sqlite"], indirect=True),
]

INSERT_UNIT = text(
    "INSERT INTO units (code, name, active, created_at, updated_at) "
    "VALUES (:code, :name, 1, '2026-12-02 08:00:00.000000', '2026-12-02 08:00:00.000000')"
)


async def _units(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Unit)) or 0)


async def test_writers_wait_for_their_turn_and_then_write(database_url: str) -> None:
    db = Database.connect(database_url)
    try:
        before = await _units(db)
        order: list[str] = []

        async def second() -> None:
            async with db.write() as session, session.begin():
                order.append("second writes")
                await session.execute(INSERT_UNIT, {"code": "T-2", "name": "Kedua"})

        async with db.write() as session, session.begin():
            await session.execute(INSERT_UNIT, {"code": "T-1", "name": "Pertama"})
            waiting = asyncio.create_task(second())
            for _ in range(20):  # let it run up to where it waits
                await asyncio.sleep(0)
            order.append("first commits")
        await waiting
        assert order == ["first commits", "second writes"]
        assert await _units(db) == before + 2
    finally:
        await db.dispose()


async def test_a_writer_that_gets_no_turn_gets_a_503_and_writes_nothing(
    database_url: str,
) -> None:
    db = Database.connect(database_url)
    impatient = replace(db, turn_seconds=0.05)  # same engine, same turns
    try:
        before = await _units(db)
        async with db.write() as session, session.begin():
            await session.execute(INSERT_UNIT, {"code": "T-1", "name": "Pertama"})
            with pytest.raises(ServiceUnavailable) as refused:
                async with impatient.write() as other, other.begin():
                    await other.execute(INSERT_UNIT, {"code": "T-2", "name": "Kedua"})
            assert refused.value.code == "database_unavailable"
            assert refused.value.headers == {"Retry-After": "2"}
        assert await _units(db) == before + 1
        async with impatient.write() as session, session.begin():  # its turn is free again
            await session.execute(INSERT_UNIT, {"code": "T-2", "name": "Kedua"})
        assert await _units(db) == before + 2
    finally:
        await db.dispose()


async def test_a_bad_bearer_token_is_refused_without_waiting_for_a_turn(
    client: httpx.AsyncClient, app: FastAPI, tokens: Tokens
) -> None:
    """A writer's token is verified before it queues (a key fetch must not hold the other
    writers up): while another writer holds the turn, a bad token still gets its 401."""
    body = {"code": make_code(), "name": "Bagian Umum"}
    expired = tokens.auth(ADMIN_NIP, exp=int(time.time()) - 3600)
    db: Database = app.state.db
    async with db.write() as session, session.begin():
        await session.execute(INSERT_UNIT, {"code": "T-1", "name": "Pertama"})
        for headers, code in (
            ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
            (expired, "token_expired"),
        ):
            refused = await asyncio.wait_for(
                client.post("/api/v1/units", json=body, headers=headers), timeout=20
            )
            assert_problem(refused, 401, code)
        waiting = asyncio.create_task(
            client.post("/api/v1/units", json=body, headers=tokens.auth(ADMIN_NIP))
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()  # a good one waits for the turn, then writes
    created = await asyncio.wait_for(waiting, timeout=20)
    assert created.status_code == 201, created.text
