"""The ceilings, measured beside the service in the same run.

* `GET /ceiling`: a bare FastAPI endpoint returning a small JSON object (the reads).
* `POST /ceiling/insert`: a bare one-INSERT endpoint (the writes): the JSON body as one
  row of a table of its own, in one transaction committed before the answer, on the
  benchmarked database (`CEILING_DATABASE_URL`) through the service's own connection
  setup (`app.db.Database`: the same pool, SQLite's WAL and `synchronous=FULL`, and on
  SQLite the same writers' turns). No validation, no audit chain, no outbox.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Body, FastAPI
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert

from app.db import Database

rows = Table(
    "ceiling_rows",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("body", Text, nullable=False),
)
database: list[Database] = []


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    url = os.environ.get("CEILING_DATABASE_URL")
    if url:
        db = Database.connect(url)
        async with db.engine.begin() as connection:
            await connection.run_sync(rows.metadata.create_all)
        database.append(db)
    yield
    for db in database:
        await db.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/ceiling")
async def ceiling() -> dict[str, object]:
    return {"authorized": True, "reason": "approved", "checked_at": "2026-11-24T00:00:00.000000Z"}


@app.post("/ceiling/insert", status_code=201)
async def insert_one(body: dict[str, Any] = Body()) -> dict[str, object]:
    async with database[0].write() as session:
        made = await session.execute(
            insert(rows).values(body=json.dumps(body)).returning(rows.c.id)
        )
        made_id = made.scalar_one()
        await session.commit()
    return {"id": made_id}
