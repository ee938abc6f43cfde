"""The hot reads' connection layer (`app.rawdb`) on a real PostgreSQL: reads of one
statement that arrive together share a round trip, yet each gets its own rows, its
own error, and everything committed before it was asked for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from app.errors import ServiceUnavailable
from app.rawdb import PostgresReader, SqliteReader, Statement
from tests.conftest import BACKENDS

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"], indirect=True),
]

SERIES = Statement(
    "SELECT g, :label AS label FROM generate_series(1, :count) AS g ORDER BY g",
    {"count": "int", "label": "text"},  # not in the order the SQL names them
)
QUOTIENT = Statement("SELECT 100 / :d AS q", {"d": "int"})
PAUSE = Statement("SELECT pg_sleep(:pause)", {"pause": "float8"})
ECHO = Statement(
    "SELECT CAST(:at AS timestamptz), CAST(:label AS text), CAST(:flag AS boolean), "
    "CAST(:count AS int8)",
    {"at": "timestamptz", "label": "text", "flag": "boolean", "count": "int8"},
)
COUNTED = Statement(
    "SELECT pg_sleep(:pause), (SELECT count(*) FROM seen) AS rows",
    {"pause": "float8"},
)


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def until_another_session_sleeps(connection: asyncpg.Connection) -> None:
    """Until a statement of the reader is inside `pg_sleep`: it has begun (its snapshot is
    taken) and holds its trip. Waits on the server, so the event loop runs meanwhile."""
    await connection.execute(
        "DO $$ BEGIN "
        "WHILE NOT EXISTS (SELECT 1 FROM pg_stat_activity "
        "WHERE wait_event = 'PgSleep' AND datname = current_database() "
        "AND pid <> pg_backend_pid()) LOOP "
        "PERFORM pg_stat_clear_snapshot(); PERFORM pg_sleep(0.005); "
        "END LOOP; END $$"
    )


async def test_reads_that_arrive_together_share_a_trip_and_keep_their_own_rows(
    database_url: str,
) -> None:
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)
    try:
        asked = [(f"read-{n}", n % 7) for n in range(40)]
        answers = await asyncio.gather(
            *(reader.fetch(SERIES, {"label": label, "count": count}) for label, count in asked)
        )
        for (label, count), rows in zip(asked, answers, strict=True):
            assert [tuple(row) for row in rows] == [(g, label) for g in range(1, count + 1)]
        assert reader.round_trips == 1
        for (label, count), rows in zip(asked, answers, strict=True):  # now one at a time
            alone = await reader.fetch(SERIES, {"label": label, "count": count})
            assert [tuple(row) for row in alone] == [tuple(row) for row in rows]
        assert reader.round_trips == 1 + len(asked)
    finally:
        await reader.close()


async def test_reads_arriving_during_a_trip_wait_and_go_together(database_url: str) -> None:
    watcher = await asyncpg.connect(_dsn(database_url))
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)  # one trip at a time
    try:
        first = asyncio.ensure_future(reader.fetch(PAUSE, {"pause": 0.5}))
        await until_another_session_sleeps(watcher)
        later = []
        for _ in range(9):  # asked for one by one while the first is on its way
            later.append(asyncio.ensure_future(reader.fetch(PAUSE, {"pause": 0})))
            await asyncio.sleep(0)
        done = await asyncio.gather(first, *later)
        assert all(len(rows) == 1 for rows in done)
        assert reader.round_trips == 2
    finally:
        await reader.close()
        await watcher.close()


async def test_one_reads_failure_is_its_own(database_url: str) -> None:
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)
    try:
        divisors = [5, 0, 4, 10, 0, 20]
        results = await asyncio.gather(
            *(reader.fetch(QUOTIENT, {"d": d}) for d in divisors), return_exceptions=True
        )
        for d, result in zip(divisors, results, strict=True):
            if d == 0:
                assert isinstance(result, asyncpg.DivisionByZeroError)
            else:
                assert not isinstance(result, BaseException)
                assert [tuple(row) for row in result] == [(100 // d,)]
    finally:
        await reader.close()


async def test_a_shared_trip_reads_each_value_as_the_read_alone_does(database_url: str) -> None:
    """Reads that go together pass their values as JSON: instants keep their microsecond
    whatever their offset, text keeps every character, and a value JSON cannot carry to
    PostgreSQL (a NUL) fails its own read only, as it does alone."""
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)
    wib = timezone(timedelta(hours=7))
    instant = datetime(2026, 12, 6, 20, 0, 0, 1, tzinfo=UTC)
    asked = [
        {"at": instant, "label": "plain", "flag": True, "count": 2**62},
        {
            "at": instant.astimezone(wib),
            "label": 'quote " and \\ and \u00e9 and \U0001f4fa',
            "flag": False,
            "count": -1,
        },
        {"at": instant, "label": "", "flag": None, "count": None},
        {"at": None, "label": None, "flag": True, "count": 0},
        {
            "at": datetime(9999, 12, 31, 23, 59, 58, 999999, tzinfo=UTC),
            "label": "last",
            "flag": False,
            "count": 1,
        },
        {"at": instant, "label": "nul \x00 inside", "flag": True, "count": 3},
    ]
    try:
        together = await asyncio.gather(
            *(reader.fetch(ECHO, values) for values in asked), return_exceptions=True
        )
        assert reader.round_trips > 1  # the shared trip failed on the NUL: each went alone
        for values, shared in zip(asked, together, strict=True):
            if "\x00" in (values["label"] or ""):
                assert isinstance(shared, asyncpg.PostgresError)
                continue
            assert not isinstance(shared, BaseException)
            assert [tuple(row) for row in shared] == [
                (values["at"], values["label"], values["flag"], values["count"])
            ]
        trips = reader.round_trips
        clean = [values for values in asked if "\x00" not in (values["label"] or "")]
        shared_rows = await asyncio.gather(*(reader.fetch(ECHO, values) for values in clean))
        assert reader.round_trips == trips + 1  # without the NUL: one trip for all
        assert [[tuple(r) for r in rows] for rows in shared_rows] == [
            [tuple(r) for r in rows] for rows in together if not isinstance(rows, BaseException)
        ]
    finally:
        await reader.close()


async def test_a_read_must_give_exactly_its_statements_parameters(
    database_url: str, tmp_path: Path
) -> None:
    """A parameter missing (a shared trip's JSON would read it as NULL) or one too many is
    refused, on both databases' readers, before anything is sent."""
    sqlite = SqliteReader.open(f"sqlite:///{tmp_path / 'plain.db'}")
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)
    try:
        for raw in (reader, sqlite):
            with pytest.raises(ValueError, match="parameters"):
                await raw.fetch(SERIES, {"count": 2})
            with pytest.raises(ValueError, match="parameters"):
                await raw.fetch(SERIES, {"count": 2, "label": "x", "extra": 1})
        assert reader.round_trips == 0
    finally:
        await reader.close()
        await sqlite.close()


async def test_a_waiting_read_sees_what_was_committed_before_it_was_asked(
    database_url: str,
) -> None:
    """A read never shares the answer of a trip already on its way, not even one for the
    same values: it starts after it was asked for."""
    writer = await asyncpg.connect(_dsn(database_url))
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)
    try:
        await writer.execute("CREATE TABLE seen (n int)")
        slow = asyncio.ensure_future(reader.fetch(COUNTED, {"pause": 0.3}))
        await until_another_session_sleeps(writer)
        await writer.execute("INSERT INTO seen VALUES (1)")  # committed (autocommit)
        after = await reader.fetch(COUNTED, {"pause": 0.3})
        assert after[0][1] == 1
        assert (await slow)[0][1] == 0
        assert reader.round_trips == 2
    finally:
        await reader.close()
        await writer.close()


async def test_a_caller_that_leaves_does_not_hold_up_the_others(database_url: str) -> None:
    watcher = await asyncpg.connect(_dsn(database_url))
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)
    try:
        first = asyncio.ensure_future(reader.fetch(PAUSE, {"pause": 0.3}))
        await until_another_session_sleeps(watcher)
        waiting = [asyncio.ensure_future(reader.fetch(PAUSE, {"pause": 0})) for _ in range(5)]
        await asyncio.sleep(0)
        waiting[2].cancel()
        done = await asyncio.gather(first, *waiting, return_exceptions=True)
        assert isinstance(done[3], asyncio.CancelledError)
        assert all(isinstance(rows, list) and len(rows) == 1 for rows in done[:3] + done[4:])
    finally:
        await reader.close()
        await watcher.close()


async def test_a_stuck_trip_does_not_hold_up_reads_that_arrive_after_it(
    database_url: str,
) -> None:
    """With a pool of four a statement has two trips: while one is stuck past the
    timeout, the other carries the reads that arrive meanwhile."""
    watcher = await asyncpg.connect(_dsn(database_url))
    reader = await PostgresReader.open(database_url, size=4, wait_seconds=0.5)
    try:
        stuck = asyncio.ensure_future(reader.fetch(PAUSE, {"pause": 3}))
        await until_another_session_sleeps(watcher)
        behind = await asyncio.gather(*(reader.fetch(PAUSE, {"pause": 0}) for _ in range(3)))
        assert all(len(rows) == 1 for rows in behind)
        with pytest.raises(ServiceUnavailable):
            await stuck
    finally:
        await reader.close()
        await watcher.close()


async def test_each_read_keeps_its_own_deadline_in_a_shared_trip(database_url: str) -> None:
    """A read that waited long behind a stuck trip goes with one that came later: the
    later one is answered, not cut short by the older one's nearly spent time."""
    watcher = await asyncpg.connect(_dsn(database_url))
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=0.6)  # one trip
    try:
        stuck = asyncio.ensure_future(reader.fetch(PAUSE, {"pause": 3}))
        await until_another_session_sleeps(watcher)
        older = asyncio.ensure_future(reader.fetch(PAUSE, {"pause": 0.05}))
        await asyncio.sleep(0.3)  # not to wait for anything: the later read's deadline is later
        later = await reader.fetch(PAUSE, {"pause": 0.05})
        assert len(later) == 1
        with pytest.raises(ServiceUnavailable):
            await stuck
        await asyncio.gather(older, return_exceptions=True)  # answered or 503: its time was up
    finally:
        await reader.close()
        await watcher.close()


async def test_a_connection_kept_between_trips_is_replaced_once_the_server_closes_it(
    database_url: str,
) -> None:
    """The reader keeps its trips' connections rather than giving them back to its pool
    (`PostgresReader._connection`): one the server terminated costs at most the read that
    found it dead, and the reads after it run on a new connection."""
    reader = await PostgresReader.open(database_url, size=2, wait_seconds=5)
    admin = await asyncpg.connect(_dsn(database_url))
    try:
        first = await reader.fetch(Statement("SELECT pg_backend_pid()"), {})
        pid = first[0][0]
        assert (await reader.fetch(Statement("SELECT pg_backend_pid()"), {}))[0][0] == pid  # kept
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        failures = 0
        for _ in range(3):
            try:
                rows = await reader.fetch(Statement("SELECT pg_backend_pid()"), {})
                break
            except ServiceUnavailable:
                failures += 1
        else:
            pytest.fail("the reads never recovered from a terminated connection")
        assert failures <= 1
        assert rows[0][0] != pid
    finally:
        await admin.close()
        await reader.close()
