"""The check's one round trip to the database, below the ORM (SPEC §5).

A single SQL statement answers everything a check needs: the caller's credential
(the API key's row, or the active flag of the employee a token names), whether
the employee and the workspace exist, and the candidate permits of an
(employee, workspace) or a (platform, channel) pair:

* up to `CANDIDATES` permits still running or to come at the instant: the approved
  one holding the instant first (so pending windows cannot crowd it out), then by
  start;
* the last permit that had ended by the instant.

Every part is an index range scan over (pair, `ends_at`), so its cost follows
the live permits of the pair, not the history.

On PostgreSQL the statement runs on a small asyncpg pool of its own (statements
prepared once per connection, no per-release reset: the check holds no session
state); on SQLite it runs inline on a read-only sqlite3 connection, which WAL
lets read beside the writers. Either way it reads committed rows with no cache,
so an acknowledged revocation is seen by every later check.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from app.errors import ServiceUnavailable

log = logging.getLogger(__name__)

CANDIDATES = 20
"""Live permits read per check, by start; more can only be pending windows nobody decided."""

Form = Literal["employee", "channel"]

_PERMIT = (
    "p.id, p.requester_nip, p.workspace_code, p.platform, p.channel, "
    "p.starts_at, p.ends_at, p.status"
)
_PAIR = {
    "employee": "p.requester_nip = :first AND p.workspace_code = :second",
    "channel": "p.platform = :first AND p.channel_key = :second",
}
_REQUESTER = {
    # The employee of an (employee, workspace) check is joined once as `e`; a channel's
    # candidates each bring their requester's flag, since any of them may be the answer.
    "employee": "e.active",
    "channel": "(SELECT r.active FROM employees AS r WHERE r.nip = p.requester_nip)",
}


def statement(form: Form) -> str:
    """The statement of a form; built only from the constants above, values are parameters.

    The live permits come approved-and-holding-the-instant first, so that pending
    windows crowding the pair can never push the one approval out of the first
    `CANDIDATES`; then by start.
    """
    pair = _PAIR[form]
    candidates = (
        f"SELECT * FROM (SELECT {_PERMIT} FROM permits AS p WHERE {pair} AND p.ends_at > :at "  # noqa: S608
        "ORDER BY (p.status = 'approved' AND p.starts_at <= :at) DESC, p.starts_at "
        f"LIMIT {CANDIDATES}) AS live "
        f"UNION ALL SELECT * FROM (SELECT {_PERMIT} FROM permits AS p WHERE {pair} "
        "AND p.ends_at <= :at ORDER BY p.ends_at DESC LIMIT 1) AS ended"
    )
    if form == "employee":
        subject = "e.active AS employee_active, w.code IS NOT NULL AS workspace_known"
        subject_joins = (
            "LEFT JOIN employees AS e ON e.nip = :first "
            "LEFT JOIN workspaces AS w ON w.code = :second "
        )
    else:  # the channel form names no employee and no workspace
        subject = "CAST(NULL AS BOOLEAN) AS employee_active, 1 = 0 AS workspace_known"
        subject_joins = ""
    return (
        "SELECT k.secret_sha256 AS key_secret_sha256, k.revoked_at IS NOT NULL AS key_revoked, "  # noqa: S608 (constants only)
        f"k.scopes AS key_scopes, c.active AS caller_active, {subject}, "
        f"p.*, {_REQUESTER[form]} AS requester_active "
        "FROM (SELECT 1 AS one) AS one "
        f"{subject_joins}"
        "LEFT JOIN api_keys AS k ON k.id = :key_id "
        "LEFT JOIN employees AS c ON c.nip = :caller "
        f"LEFT JOIN ({candidates}) AS p ON 1 = 1"
    )


@dataclass(frozen=True)
class Candidate:
    """A permit the ranking may pick (`app.authorizations.service.decide`)."""

    id: str
    requester_nip: str
    workspace_code: str
    platform: str
    channel: str
    starts_at: datetime
    ends_at: datetime
    status: str
    requester_active: bool


@dataclass(frozen=True)
class Reading:
    """What the database says about one check, credential included."""

    key_secret_sha256: str | None  # None: no such key (or none asked about)
    key_revoked: bool
    key_scopes: str | list[str] | None  # JSON text on SQLite, parsed by the caller
    caller_active: bool | None  # None: the token names no employee (or none asked about)
    employee_active: bool | None  # (employee, workspace) form only
    workspace_known: bool
    candidates: Sequence[Candidate]


class CheckReader(Protocol):
    async def read(
        self,
        form: Form,
        first: str,
        second: str,
        at: datetime,
        *,
        key_id: str | None = None,
        caller: str | None = None,
    ) -> Reading: ...

    async def close(self) -> None: ...


def _reading(rows: Sequence[Any], stamp: Any) -> Reading:
    head = rows[0]
    candidates = [
        Candidate(
            id=row[6],
            requester_nip=row[7],
            workspace_code=row[8],
            platform=row[9],
            channel=row[10],
            starts_at=stamp(row[11]),
            ends_at=stamp(row[12]),
            status=row[13],
            requester_active=bool(row[14]),
        )
        for row in rows
        if row[6] is not None
    ]
    return Reading(
        key_secret_sha256=head[0],
        key_revoked=bool(head[1]),
        key_scopes=head[2],
        caller_active=None if head[3] is None else bool(head[3]),
        employee_active=None if head[4] is None else bool(head[4]),
        workspace_known=bool(head[5]),
        candidates=candidates,
    )


def _unavailable() -> ServiceUnavailable:
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

_NAMED = re.compile(r":([a-z_]+)")
POSITIONAL_ORDER = ("first", "second", "at", "key_id", "caller")


def positional_statement(form: Form) -> str:
    """`statement(form)` with asyncpg's `$1…$5` for the parameters, in `POSITIONAL_ORDER`."""
    return _NAMED.sub(lambda m: f"${POSITIONAL_ORDER.index(m.group(1)) + 1}", statement(form))


class PostgresReader:
    """asyncpg on a pool of its own; every wait bounded by `timeout` seconds."""

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._sql = {form: positional_statement(form) for form in ("employee", "channel")}

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
            # The statement is prepared once per connection; its generic plan is the same
            # index range scans whatever the values. Left to choose, PostgreSQL keeps
            # re-planning it for every call on a large table (≈ 0.4 ms of planning for a
            # query that runs in 0.06 ms).
            server_settings={"plan_cache_mode": "force_generic_plan"},
        )
        return cls(pool, wait_seconds)

    async def read(
        self,
        form: Form,
        first: str,
        second: str,
        at: datetime,
        *,
        key_id: str | None = None,
        caller: str | None = None,
    ) -> Reading:
        # An idle connection is handed over at once; only a wait needs a timeout (whose
        # machinery, a task per call, costs more than the rest of the acquisition).
        wait = None if self._pool.get_idle_size() else self._timeout
        try:
            async with self._pool.acquire(timeout=wait) as connection:
                rows = await connection.fetch(
                    self._sql[form], first, second, at, key_id, caller, timeout=self._timeout
                )
        except _PG_UNAVAILABLE as exc:
            log.error("the check cannot read PostgreSQL: %s: %s", type(exc).__name__, exc)
            raise _unavailable() from None
        return _reading(rows, _same)

    async def close(self) -> None:
        await self._pool.close()


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """The check sets no session state, takes no locks and listens to nothing."""


def _same(value: datetime) -> datetime:
    return value


SQLITE_READ_BUSY_MS = 250
"""WAL readers wait on no writer; this bounds the rare wait on a WAL reset."""


def _sqlite_instant(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class SqliteReader:
    """sqlite3 called inline: an indexed read takes tens of microseconds, less than a hop
    to a thread would cost. One connection, used only from the event loop's thread."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self._connection.execute(f"PRAGMA busy_timeout = {SQLITE_READ_BUSY_MS}")
        self._connection.execute("PRAGMA query_only = 1")
        self._sql = {form: statement(form) for form in ("employee", "channel")}

    @classmethod
    def open(cls, url: str) -> SqliteReader:
        database = make_url(url).database
        if not database or database == ":memory:":
            raise ValueError("the check reads a SQLite file, not an in-memory database")
        return cls(database)

    async def read(
        self,
        form: Form,
        first: str,
        second: str,
        at: datetime,
        *,
        key_id: str | None = None,
        caller: str | None = None,
    ) -> Reading:
        parameters = {
            "first": first,
            "second": second,
            # As SQLAlchemy stores instants on SQLite (app.db.UTCDateTime): naive UTC text.
            "at": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "key_id": key_id,
            "caller": caller,
        }
        try:
            rows = self._connection.execute(self._sql[form], parameters).fetchall()
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, I/O error
            log.error("the check cannot read SQLite: %s", exc)
            raise _unavailable() from None
        return _reading(rows, _sqlite_instant)

    async def close(self) -> None:
        self._connection.close()


async def open_reader(url: str, *, size: int, wait_seconds: float) -> CheckReader:
    if url.startswith("sqlite"):
        return SqliteReader.open(url)
    return await PostgresReader.open(url, size=size, wait_seconds=wait_seconds)
