"""How much the serialised audit chain costs: appends per second, with and without the chain.

For each database, W concurrent writers each run T transactions. In every
transaction a writer either
  * `chain`: appends one audit event (advisory lock on PostgreSQL / the write
    lock on SQLite, read the head, hash, insert) — what every change pays; or
  * `plain`: inserts one row of the same size into an unchained scratch table
    with a database-generated key — the floor without the chain.

    .venv/bin/python bench/audit_append.py [--writers 1 8] [--transactions 300]

PostgreSQL at TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text

from app.audit.service import append_event
from app.db import Database
from app.migrate import upgrade

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATA = {"from": "pending", "to": "approved", "version": 2, "decided_as": "head", "note": None}


async def _writer(db: Database, mode: str, transactions: int) -> None:
    for _ in range(transactions):
        async with db.write() as session, session.begin():
            if mode == "chain":
                await append_event(
                    session,
                    actor="198904042014021003",
                    action="permit.approved",
                    subject="permit:bench",
                    data=DATA,
                )
            else:
                await session.execute(
                    text("INSERT INTO bench_plain (subject, data) VALUES (:s, :d)"),
                    {"s": "permit:bench", "d": json.dumps(DATA)},
                )


async def _measure(url: str, mode: str, writers: int, transactions: int) -> float:
    db = Database.connect(url, pool_size=writers)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(_writer(db, mode, transactions) for _ in range(writers)))
        elapsed = time.perf_counter() - started
    finally:
        await db.dispose()
    return writers * transactions / elapsed


async def _scratch_table(url: str) -> None:
    db = Database.connect(url, pool_size=1)
    key = (
        "BIGSERIAL PRIMARY KEY"
        if url.startswith("postgresql")
        else "INTEGER PRIMARY KEY AUTOINCREMENT"
    )
    async with db.write() as session, session.begin():
        await session.execute(text(f"CREATE TABLE bench_plain (id {key}, subject TEXT, data TEXT)"))
    await db.dispose()


async def run(writers_list: list[int], transactions: int) -> list[dict[str, Any]]:
    results = []
    folder = Path(tempfile.mkdtemp())
    name = f"izs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    urls = {
        "sqlite": f"sqlite+aiosqlite:///{folder / 'bench.db'}",
        "postgresql": f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}",
    }
    try:
        for backend, url in urls.items():
            await asyncio.to_thread(upgrade, url)
            await _scratch_table(url)
            for writers in writers_list:
                for mode in ("plain", "chain"):
                    rate = await _measure(url, mode, writers, transactions)
                    results.append(
                        {
                            "backend": backend,
                            "writers": writers,
                            "mode": mode,
                            "per_second": round(rate),
                        }
                    )
                    print(
                        f"{backend:10} writers={writers:2} {mode:5} {rate:8.0f} transactions/s",
                        flush=True,
                    )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--transactions", type=int, default=300)
    args = parser.parse_args()
    results = asyncio.run(run(args.writers, args.transactions))
    out = Path(__file__).parent / "results" / "audit_append.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
