"""The hot reads' own connection to the database, below SQLAlchemy.

The check (SPEC §5) and a permit read are each one SQL statement, run thousands
of times a second. SQLAlchemy's async execution path costs several times what
the query itself does, so these reads bypass it: plain SQL with `:named`
parameters, run as it is.

On PostgreSQL a small asyncpg pool of its own (statements prepared once per
connection, no per-release reset: these reads hold no session state); on SQLite a
read-only sqlite3 connection called inline, which WAL lets read beside the
writers. Either way every read sees committed rows with no cache, so an
acknowledged revocation is seen by every later read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from app.errors import ServiceUnavailable

log = logging.getLogger(__name__)

Row = Sequence[Any]


class RawReader(Protocol):
    async def fetch(self, sql: str, parameters: Mapping[str, Any]) -> list[Row]:
        """The rows of `sql` (constants and `:named` parameters only)."""
        ...

    def instant(self, value: Any) -> datetime:
        """A timestamp column's value as an aware UTC datetime."""
        ...

    async def close(self) -> None: ...


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is unreachable; try again shortly.",
        code="database_unavailable",
        headers={"Retry-After": "2"},
    )


_PG_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # a pool connection, a new connection or the statement took too long
    asyncpg.InterfaceError,  # the connection was lost or closed under us
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # starting up, shutting down (class 57)
    asyncpg.InsufficientResourcesError,  # too many connections (class 53)
)

_NAMED = re.compile(r"(?<!:):([a-z_]+)")


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with asyncpg's `$1…$n` for its `:named` parameters, and their names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


class PostgresReader:
    """asyncpg on a pool of its own; each read, waits included, bounded by `timeout` seconds."""

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._statements: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, url: str, *, size: int, wait_seconds: float) -> PostgresReader:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=0,  # connect on first use: start-up does not wait for the database
            max_size=size,
            timeout=wait_seconds,
            command_timeout=wait_seconds,
            reset=_nothing_to_reset,
            # Each statement is prepared once per connection; its generic plan is the same
            # index range scans whatever the values. Left to choose, PostgreSQL keeps
            # re-planning the check for every call on a large table (≈ 0.4 ms of planning
            # for a query that runs in 0.06 ms).
            server_settings={"plan_cache_mode": "force_generic_plan"},
        )
        return cls(pool, wait_seconds)

    async def fetch(self, sql: str, parameters: Mapping[str, Any]) -> list[Row]:
        if sql not in self._statements:
            self._statements[sql] = positional(sql)
        text, names = self._statements[sql]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout  # the whole read, waits included
        try:
            # An idle connection is handed over at once; only a wait needs bounding, and by
            # `asyncio.timeout_at` rather than `acquire(timeout=…)`, which before Python 3.12
            # asyncpg runs as a task of its own.
            if self._pool.get_idle_size():
                connection = await self._pool.acquire()
            else:
                async with asyncio.timeout_at(deadline):
                    connection = await self._pool.acquire()
            try:
                rows: list[Row] = await connection.fetch(
                    text,
                    *[parameters[name] for name in names],
                    timeout=max(deadline - loop.time(), 0.001),
                )
            except BaseException:
                self._release_later(connection)
                raise
            await self._pool.release(connection)
        except _PG_UNAVAILABLE as exc:
            log.error("a hot read cannot reach PostgreSQL: %s: %s", type(exc).__name__, exc)
            raise unavailable() from None
        return rows

    def _release_later(self, connection: asyncpg.Connection) -> None:
        """Give a failed read's connection back without keeping its caller waiting.

        After a statement timed out, asyncpg first cancels it on the server before the
        connection can be reused (or drops it); a frozen database keeps that waiting up
        to the timeout again. The caller gets its 503 now; the release finishes behind.
        """
        task = asyncio.create_task(self._pool.release(connection))
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a hot read's connection could not be released: %s", task.exception())

    def instant(self, value: datetime) -> datetime:
        return value  # timestamptz arrives aware, in UTC

    async def close(self) -> None:
        await asyncio.gather(*self._releasing, return_exceptions=True)
        await self._pool.close()


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """The hot reads set no session state, take no locks and listen to nothing."""


SQLITE_READ_BUSY_MS = 250
"""WAL readers wait on no writer; this bounds the rare wait on a WAL reset."""


def _sqlite_value(value: Any) -> Any:
    # As SQLAlchemy stores instants on SQLite (app.db.UTCDateTime): naive UTC text.
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class SqliteReader:
    """sqlite3 called inline: an indexed read takes tens of microseconds, less than a hop
    to a thread would cost. One connection, used only from the event loop's thread."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._connection.execute(f"PRAGMA busy_timeout = {SQLITE_READ_BUSY_MS}")
        self._connection.execute("PRAGMA query_only = 1")

    @classmethod
    def open(cls, url: str) -> SqliteReader:
        database = make_url(url).database
        if not database or database == ":memory:":
            raise ValueError("the hot reads need a SQLite file, not an in-memory database")
        return cls(database)

    async def fetch(self, sql: str, parameters: Mapping[str, Any]) -> list[Row]:
        values = {name: _sqlite_value(value) for name, value in parameters.items()}
        try:
            return self._connection.execute(sql, values).fetchall()
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, I/O error
            log.error("a hot read cannot read SQLite: %s", exc)
            raise unavailable() from None

    def instant(self, value: str) -> datetime:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    async def close(self) -> None:
        self._connection.close()


async def open_raw_reader(url: str, *, size: int, wait_seconds: float) -> RawReader:
    if url.startswith("sqlite"):
        return SqliteReader.open(url)
    return await PostgresReader.open(url, size=size, wait_seconds=wait_seconds)
