"""The hot reads' own connection to the database, below SQLAlchemy.

The check (docs/RULES.md#check) and a permit read are each one SQL statement, run thousands
of times a second. SQLAlchemy's async execution path costs several times what
the query itself does, so these reads bypass it: a `Statement` is plain SQL with
`:named` parameters, run as it is.

On PostgreSQL a small asyncpg pool of its own, whose connections the reads keep
from one trip to the next (statements prepared once per connection; nothing to
reset between trips: these reads hold no session state). Reads of
one statement that arrive while others are on their way to the database wait
and go together, as one statement over a JSON array of their parameters: a round
trip costs far more than a row, so under load the cost per read falls instead of
the queue growing. Every read still starts after it was asked for, so it sees every
change acknowledged before it. On SQLite a read-only sqlite3 connection called
inline, which WAL lets read beside the writers; it can also tell, in a few
microseconds, whether anything was committed since it last looked (`version`).

Either way every read here sees committed rows with no cache, so an acknowledged
revocation is seen by every later read. (One layer up, the check keeps readings on
SQLite while `version` says nothing was committed: `app.authorizations.reader.Kept`.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from app.errors import database_unavailable

log = logging.getLogger(__name__)

Row = Sequence[Any]

_NAMED = re.compile(r"(?<!:):([a-z_]+)")


@dataclass(frozen=True, eq=False)
class Statement:
    """A hot read: SQL of constants and `:named` parameters, and each parameter's
    PostgreSQL type (reads that go together pass their values as JSON, read as it)."""

    sql: str
    types: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        named = set(_NAMED.findall(self.sql))
        if named != set(self.types):
            raise ValueError(f"parameters {sorted(named)} need exactly one type each")
        object.__setattr__(self, "names", frozenset(named))

    names: frozenset[str] = field(init=False, repr=False)

    def check(self, parameters: Mapping[str, Any]) -> None:
        """Refuse values that are not exactly for this statement's parameters: a read that
        goes together with others would take a missing one as NULL."""
        if parameters.keys() != self.names:
            raise ValueError(f"parameters {sorted(parameters)} are not {sorted(self.names)}")


class RawReader(Protocol):
    async def fetch(self, statement: Statement, parameters: Mapping[str, Any]) -> list[Row]:
        """The rows of `statement` for these values of its parameters."""
        ...

    def instant(self, value: Any) -> datetime:
        """A timestamp column's value as an aware UTC datetime."""
        ...

    def version(self) -> int | None:
        """A number that changes whenever a commit may have changed what reads see, asked
        of the database on every call; None where the database cannot say so cheaply."""
        ...

    async def close(self) -> None: ...


_PG_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # a pool connection, a new connection or the statement took too long
    asyncpg.InterfaceError,  # the connection was lost or closed under us
    # A kept connection the server closed while it waited, used before its end was read
    # ("cannot switch to state …": its protocol is still taking in the server's goodbye).
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # starting up, shutting down (class 57)
    asyncpg.InsufficientResourcesError,  # too many connections (class 53)
)


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg takes for a `postgresql+asyncpg://` database URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with asyncpg's `$1…$n` for its `:named` parameters, and their names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


def trips_at_once(pool_size: int, cores: int | None) -> int:
    """How many trips one statement may have on their way at once: half the pool (the
    statements share it), at least one; and no more than the machine's cores (what
    `os.cpu_count` says; unknown: the pool decides), but two where the pool allows, so
    that one slow trip never holds up every read of its statement. More trips at once
    only split the waiting reads into more, smaller statements, each costing both sides a
    round trip; fewer, larger ones carry as many reads (up to `MOST_PER_TRIP` a trip),
    and a process runs out of its own CPU long before two trips of a hundred reads run
    out of room (bench/README.md, "third round": trips of 5 → 2 on two cores)."""
    return max(1, min(pool_size // 2, max(2, cores or pool_size)))


MOST_PER_TRIP = 100
"""Reads of one statement sent together at most (a batch check's queries of one form:
docs/RULES.md#check-batch); more wait for the next trip."""


class _Read:
    """A read waiting for its trip to the database (its parameters are read when the trip
    leaves: the caller's mapping is not copied, and no caller changes it)."""

    __slots__ = ("deadline", "future", "parameters")

    def __init__(
        self,
        parameters: Mapping[str, Any],
        future: asyncio.Future[list[Row]],
        deadline: float,
    ):
        self.parameters, self.future, self.deadline = parameters, future, deadline


# The service's instants are aware (`app.timeutil`); a naive one would be UTC here, where
# asyncpg, for a read alone, would take it as the machine's local time.
_AS_JSON = orjson.OPT_NAIVE_UTC


class _Together:
    """The reads of one statement, and that statement for many reads at once: their
    parameters as one JSON array of objects, a row of each read's values
    (`json_to_recordset`, each value read as its parameter's type by PostgreSQL's own
    input function), `LATERAL` runs the statement for each, and the first column (the
    read's place in the array, from 1) says whose rows are whose. A read on its own goes
    as the plain statement.

    JSON, not an array of each parameter: asyncpg encodes an array element by element in
    Python objects (≈ 1 µs an instant), several times what orjson takes to write them all
    (bench/README.md, "seventh round")."""

    def __init__(self, statement: Statement) -> None:
        self.alone_sql, self.alone_names = positional(statement.sql)
        body = _NAMED.sub(lambda match: f"hot_read.{match.group(1)}", statement.sql)
        typed = ", ".join(f"{name} {kind}" for name, kind in statement.types.items())
        self.sql = (
            f"SELECT hot_read.n, s.* FROM ROWS FROM (json_to_recordset($1::json) "  # noqa: S608 (constants only)
            f"AS ({typed})) WITH ORDINALITY AS hot_read({', '.join(statement.types)}, n) "
            f"CROSS JOIN LATERAL ({body}) AS s"
        )
        self.waiting: list[_Read] = []
        self.trips = 0  # on their way now
        self.called = False  # a launch is already due on the event loop

    def query(self, reads: Sequence[_Read]) -> tuple[str, list[Any]]:
        """The SQL and arguments of a trip: the plain statement for a read on its own;
        else the reads' parameters, in their order, as one JSON array."""
        if len(reads) == 1:
            parameters = reads[0].parameters
            return self.alone_sql, [parameters[name] for name in self.alone_names]
        payload = orjson.dumps([read.parameters for read in reads], option=_AS_JSON)
        return self.sql, [payload.decode()]

    @staticmethod
    def answers(reads: Sequence[_Read], rows: list[Row]) -> list[list[Row]]:
        """Each read's rows, in the order of `reads`."""
        if len(reads) == 1:
            return [rows]
        answers: list[list[Row]] = [[] for _ in reads]
        for row in rows:
            answers[row[0] - 1].append(row[1:])
        return answers


class PostgresReader:
    """asyncpg on a pool of its own; each read, waits included, bounded by `timeout` seconds.

    Each statement has at most `trips` trips to the database at once; a read that
    arrives when they are all taken waits for the next, together with every other
    read that arrived meanwhile.
    """

    def __init__(self, pool: asyncpg.Pool, timeout: float, *, trips: int) -> None:
        self._pool = pool
        self._timeout = timeout
        self._trips = trips
        self._together: dict[Statement, _Together] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._releasing: set[asyncio.Task[None]] = set()
        self._idle: list[asyncpg.Connection] = []  # kept between trips (`_connection`)
        self.round_trips = 0  # statements sent, for the benchmark and the tests

    @classmethod
    async def open(cls, url: str, *, size: int, wait_seconds: float) -> PostgresReader:
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url),
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
        return cls(pool, wait_seconds, trips=trips_at_once(size, os.cpu_count()))

    async def fetch(self, statement: Statement, parameters: Mapping[str, Any]) -> list[Row]:
        together = self._together.get(statement)
        if together is None:
            together = self._together[statement] = _Together(statement)
        statement.check(parameters)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout  # the whole read, waits included
        read = _Read(parameters, loop.create_future(), deadline)
        together.waiting.append(read)
        if not together.called and together.trips < self._trips:
            # Launched once the event loop has taken in what else arrived with it.
            together.called = True
            loop.call_soon(self._launch, together)
        # Each read keeps its own deadline, whatever its trip's: a trip runs until the
        # latest of its reads' deadlines, so that no read is cut short by another's. (A
        # timer that fails the future: 0.75 µs a read, where `asyncio.timeout_at` cost 2.7.)
        expiry = loop.call_at(read.deadline, _expire, read.future)
        try:
            return await read.future
        finally:
            expiry.cancel()

    def _launch(self, together: _Together) -> None:
        together.called = False
        while together.waiting and together.trips < self._trips:
            reads = together.waiting[:MOST_PER_TRIP]
            del together.waiting[:MOST_PER_TRIP]
            together.trips += 1
            task = asyncio.create_task(self._trip(together, reads))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _trip(self, together: _Together, reads: list[_Read]) -> None:
        try:
            reads = [read for read in reads if not read.future.done()]  # callers gone
            if len(reads) > 1:
                try:
                    await self._answer(together, reads)
                except Exception as exc:  # each read will say for itself, below
                    # Not the database being away (that was answered): one read's values
                    # failed the statement. Run them one by one, so only that read fails.
                    log.warning(
                        "a shared trip of %d reads failed (%s: %s); each goes alone",
                        len(reads),
                        type(exc).__name__,
                        exc,
                    )
                    for read in reads:
                        await self._answer_alone(together, read)
            elif reads:
                await self._answer_alone(together, reads[0])
        finally:
            for read in reads:  # only when this trip itself was cancelled (shutting down)
                if not read.future.done():
                    read.future.cancel()
            together.trips -= 1
            if together.waiting:
                self._launch(together)

    async def _answer_alone(self, together: _Together, read: _Read) -> None:
        try:
            await self._answer(together, [read])
        except Exception as exc:  # handed to the caller, who raises it
            if not read.future.done():
                read.future.set_exception(exc)

    async def _answer(self, together: _Together, reads: list[_Read]) -> None:
        """Run `reads` in one statement and hand each its rows. When the database cannot
        be reached, each read is told so (`database_unavailable`); any other error is raised."""
        try:
            rows = await self._run(*together.query(reads), max(r.deadline for r in reads))
        except _PG_UNAVAILABLE as exc:
            log.error("a hot read cannot reach PostgreSQL: %s: %s", type(exc).__name__, exc)
            for read in reads:
                if not read.future.done():
                    read.future.set_exception(database_unavailable())
            return
        for read, answer in zip(reads, together.answers(reads, rows), strict=True):
            if not read.future.done():
                read.future.set_result(answer)

    async def _run(self, sql: str, arguments: Sequence[Any], deadline: float) -> list[Row]:
        connection = await self._connection(deadline)
        self.round_trips += 1
        try:
            rows: list[Row] = await connection.fetch(
                sql, *arguments, timeout=max(deadline - asyncio.get_running_loop().time(), 0.001)
            )
        except BaseException:
            self._release_later(connection)
            raise
        self._idle.append(connection)
        return rows

    async def _connection(self, deadline: float) -> asyncpg.Connection:
        """A connection for one trip: one this reader kept from an earlier trip, or one
        from the pool. A trip's connection is kept for the next, not given back: the
        pool's acquire and release cost a trip more than its rows did (two tasks and a
        scan of the pool: bench/README.md, "ninth round"); the pool still bounds how many
        there are, and takes back any that failed. One the server closed meanwhile goes
        back to the pool, which replaces it."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
            self._release_later(connection)
        # Only a wait needs bounding, and by `asyncio.timeout_at` rather than
        # `acquire(timeout=…)`, which before Python 3.12 asyncpg runs as a task of its own.
        async with asyncio.timeout_at(deadline):
            acquired: asyncpg.Connection = await self._pool.acquire()
        return acquired

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

    def version(self) -> None:
        return None  # only a round trip could tell, and that is what a read costs

    async def close(self) -> None:
        await asyncio.gather(*self._running, *self._releasing, return_exceptions=True)
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._pool.release(connection)
        await self._pool.close()


def _expire(future: asyncio.Future[list[Row]]) -> None:
    """A read past its deadline, still waiting: the database did not answer in time."""
    if not future.done():
        future.set_exception(database_unavailable())


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """The hot reads set no session state, take no locks and listen to nothing."""


SQLITE_READ_BUSY_MS = 250
"""WAL readers wait on no writer; this bounds the rare wait on a WAL reset."""


def sqlite_value(value: Any) -> Any:
    # As SQLAlchemy stores instants on SQLite (app.db.UTCDateTime): naive UTC text.
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
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

    async def fetch(self, statement: Statement, parameters: Mapping[str, Any]) -> list[Row]:
        statement.check(parameters)
        values = {name: sqlite_value(value) for name, value in parameters.items()}
        try:
            return self._connection.execute(statement.sql, values).fetchall()
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, I/O error
            log.error("a hot read cannot read SQLite: %s", exc)
            raise database_unavailable() from None

    def instant(self, value: str) -> datetime:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def version(self) -> int:
        """SQLite's `data_version`: it changes whenever another connection (of this process
        or any other) has committed since this connection last looked, and this
        connection never writes. It costs a few microseconds, a lock and no page."""
        try:
            value: int = self._connection.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.OperationalError as exc:
            log.error("a hot read cannot read SQLite: %s", exc)
            raise database_unavailable() from None
        return value

    async def close(self) -> None:
        self._connection.close()


async def open_raw_reader(url: str, *, size: int, wait_seconds: float) -> RawReader:
    if url.startswith("sqlite"):
        return SqliteReader.open(url)
    return await PostgresReader.open(url, size=size, wait_seconds=wait_seconds)
