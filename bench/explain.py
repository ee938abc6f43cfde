"""The check's query plan and its cost at the database, for N permits.

Seeds a database as `bench/run.py` does, prints the plan of the check's statement
in both forms (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE), then
times the statement itself through the service's own reader (no HTTP), over the
seeded sample of NIP/workspace and platform/channel pairs. Then the CPU time a read
costs in this process and in PostgreSQL's processes, for the check, for a permit
read (`GET /permits/{id}`'s statement) and for `SELECT 1` (the floor: a round
trip that reads nothing), and for the check 28 reads at once (one shared trip on
PostgreSQL, as under load):

    .venv/bin/python bench/explain.py --permits 10000 1000000

Writes `bench/results/<time>-explain.json`. Compare the per-query times across N:
an index range scan costs the same however much history lies outside the range.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from app.authorizations.reader import (  # noqa: E402
    PARAMETERS,
    CheckReader,
    Pair,
    arguments,
    statement,
)
from app.permits.reader import PermitReader  # noqa: E402
from app.rawdb import (  # noqa: E402
    RawReader,
    Statement,
    open_raw_reader,
    positional,
    sqlite_value,
)
from bench.run import CpuWatch, drop, prepare  # noqa: E402
from bench.seed import API_KEY_ID, SHAPES, Seeded  # noqa: E402

FORMS = ("employee", "channel")


async def plans(url: str, sample: tuple[str, str, str, str], at: datetime) -> dict[str, str]:
    nip, workspace, platform, channel = sample
    pairs = {"employee": (nip, workspace), "channel": (platform, channel)}
    shown: dict[str, str] = {}
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.split("///", 1)[1])
        try:
            for form in FORMS:
                first, second = pairs[form]
                values = arguments(
                    Pair(form, first, second), at, at, key_id=API_KEY_ID, caller=None
                )  # type: ignore[arg-type]
                rows = connection.execute(
                    # As the service runs it on SQLite: the reading a kept one holds.
                    f"EXPLAIN QUERY PLAN {statement(form, kept=True)}",  # type: ignore[arg-type]
                    {name: sqlite_value(value) for name, value in values.items()},
                ).fetchall()
                shown[form] = "\n".join(f"{'  ' * _depth(rows, r[1])}{r[3]}" for r in rows)
        finally:
            connection.close()
        return shown
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    # The plan the service runs: its statements are prepared, with a generic plan
    # (`app.rawdb.PostgresReader.open`), which EXPLAIN of the statement with its values
    # would not show (it plans for those values).
    connection = await asyncpg.connect(
        dsn, server_settings={"plan_cache_mode": "force_generic_plan"}
    )
    try:
        await connection.execute("ANALYZE")
        for form in FORMS:
            first, second = pairs[form]
            sql, names = positional(statement(form))  # type: ignore[arg-type]
            values = arguments(Pair(form, first, second), at, at, key_id=API_KEY_ID, caller=None)  # type: ignore[arg-type]
            types = ", ".join(PARAMETERS[name] for name in names)
            await connection.execute(f"PREPARE check_{form} ({types}) AS {sql}")
            given = ", ".join(_literal(values[name]) for name in names)
            rows = await connection.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                f"EXECUTE check_{form} ({given})"
            )
            shown[form] = "\n".join(row[0] for row in rows)
    finally:
        await connection.close()
    return shown


def _literal(value: Any) -> str:
    """A value as an SQL literal, for EXECUTE's arguments (its own: text and instants)."""
    if value is None:
        return "NULL"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


def _depth(rows: list[tuple[Any, ...]], parent: int) -> int:
    ids = {row[0]: row[1] for row in rows}
    depth = 0
    while parent:
        depth += 1
        parent = ids.get(parent, 0)
    return depth


async def timed(
    reader: CheckReader, samples: list[tuple[str, str, str, str]], at: datetime
) -> dict[str, float]:
    """Median microseconds per read of each form over the samples (after one warm pass)."""
    figures: dict[str, float] = {}
    for form in FORMS:
        times: list[float] = []
        for warm in (True, False):
            for nip, workspace, platform, channel in samples:
                first, second = (nip, workspace) if form == "employee" else (platform, channel)
                started = time.perf_counter()
                await reader.read(Pair(form, first, second), at, at, key_id=API_KEY_ID)  # type: ignore[arg-type]
                if not warm:
                    times.append((time.perf_counter() - started) * 1e6)
        figures[f"{form}_us_median"] = round(statistics.median(times), 1)
        figures[f"{form}_us_p99"] = round(statistics.quantiles(times, n=100)[98], 1)
    return figures


FLOOR = Statement("SELECT 1")


TOGETHER = 28
"""Reads sent at once for the shared-trip figures: as many as wait for a trip at 32
connections (bench/README.md, "seventh round")."""


async def cpu_per_read(raw: RawReader, seeded: Seeded, at: datetime) -> dict[str, Any]:
    """Mean wall time, CPU in this process and CPU in PostgreSQL per read: one at a time,
    and for the check also `TOGETHER` at once (on PostgreSQL, one shared trip)."""
    check, permit = CheckReader(raw, keep=False), PermitReader(raw)
    samples = seeded.samples

    def check_read(i: int) -> Any:
        pair = Pair("employee", *samples[i % len(samples)][:2])
        return check.read(pair, at, at, key_id=API_KEY_ID)

    async def together(i: int) -> None:
        await asyncio.gather(*(check_read(i * TOGETHER + j) for j in range(TOGETHER)))

    reads = {  # label: (one call, reads a call)
        "floor (SELECT 1)": (lambda i: raw.fetch(FLOOR, {}), 1),
        "check (employee form)": (check_read, 1),
        f"check (employee form), {TOGETHER} at once": (together, TOGETHER),
        "permit read": (
            lambda i: permit.read(
                seeded.permit_ids[i % len(seeded.permit_ids)], caller=seeded.admin, at=at
            ),
            1,
        ),
    }
    watch, count = CpuWatch(os.getpid()), 4000
    figures: dict[str, Any] = {}
    for label, (read, per_call) in reads.items():
        calls = count // per_call
        for _ in range(2):  # a warm-up pass, then the measured one
            before, started = watch.read(), time.perf_counter()
            for i in range(calls):
                await read(i)
            elapsed, after = time.perf_counter() - started, watch.read()
        done, spent = calls * per_call, watch.spent(before, after)
        figures[label] = {
            "wall_us": round(elapsed / done * 1e6, 1),
            "client_cpu_us": round(spent["server"] / done * 1e6, 1),
            "database_cpu_us": round(spent["database"] / done * 1e6, 1),
        }
    return figures


async def measure(backend: str, permits: int, shape: str = "spread") -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"izs-explain-{backend}-"))
    url, seeded, dropper = await prepare(backend, folder, permits, shape)
    at = datetime.now(UTC)
    try:
        shown = await plans(url, seeded.samples[0], at)
        raw = await open_raw_reader(url, size=1, wait_seconds=5)
        try:
            figures = await timed(CheckReader(raw, keep=False), seeded.samples, at)
            figures["cpu_per_read"] = await cpu_per_read(raw, seeded, at)
        finally:
            await raw.close()
    finally:
        await drop(dropper)
        shutil.rmtree(folder, ignore_errors=True)
    return {"backend": backend, "permits": permits, "shape": shape, **figures, "plans": shown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--permits", nargs="+", type=int, default=[10_000, 1_000_000])
    parser.add_argument("--shapes", nargs="+", default=["spread"], choices=SHAPES)
    args = parser.parse_args()
    results = []
    for backend, shape in itertools.product(args.backends, args.shapes):
        for permits in args.permits:
            print(f"== {backend}, {permits} permits, {shape}", flush=True)
            result = asyncio.run(measure(backend, permits, shape))
            results.append(result)
            print(
                "   per query (µs, median / p99): "
                f"employee {result['employee_us_median']} / {result['employee_us_p99']}, "
                f"channel {result['channel_us_median']} / {result['channel_us_p99']}"
            )
            for label, cost in result["cpu_per_read"].items():
                print(
                    f"   {label}: {cost['wall_us']} µs wall, CPU {cost['client_cpu_us']} µs here"
                    f" + {cost['database_cpu_us']} µs in PostgreSQL"
                )
            for form, plan in result["plans"].items():
                print(f"   -- {form}\n" + "\n".join(f"   {line}" for line in plan.splitlines()))
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    out = HERE / "results" / f"{stamp}-explain.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
