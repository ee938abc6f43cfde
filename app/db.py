"""Engine, sessions and the one-transaction-per-request unit of work.

Everything that differs between SQLite and PostgreSQL at the connection level is
here:

* SQLite runs in WAL mode with foreign keys on and a busy timeout. Requests that
  may write open their transaction with `BEGIN IMMEDIATE`, which takes SQLite's
  single write lock up front: two writers queue instead of deadlocking on a
  read-to-write upgrade, and a read-modify-write cannot lose an update. The
  process's own writers first take turns in arrival order (`Database.write`), so
  that they do not wait in SQLite's busy handler, which sleeps and polls.
* PostgreSQL uses READ COMMITTED; services lock the rows they change
  (`SELECT … FOR UPDATE`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import PoolResetState
from sqlalchemy.types import TypeDecorator

from app.errors import database_unavailable
from app.files import private_sqlite_database
from app.timeutil import as_utc

SQLITE_BUSY_TIMEOUT_MS = 30_000
AUDIT_APPENDED = "izs.audit_appended"
"""Set in a session's `info` by an audit append: its commit calls `Database.committed`."""

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware in Python, UTC in the database (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = as_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            from datetime import UTC

            return value.replace(tzinfo=UTC)
        return as_utc(value)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10, timeout: float = 2.0) -> AsyncEngine:
    """An engine whose waits on PostgreSQL are bounded by `timeout` seconds each.

    A pool connection, a new connection and one statement each wait at most `timeout`:
    a database that is down or frozen (a partition, a hung host) makes a request fail
    within a few seconds (a 503), never hang. SQLite waits for a lock up to its busy
    timeout instead.
    """
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            private_sqlite_database(Path(database))
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=0,
        )
        _configure_sqlite(engine)
    else:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_timeout=timeout,
            connect_args={"timeout": timeout, "command_timeout": timeout},
        )
    event.listen(engine.sync_engine, "handle_error", _failed_connect_is_a_disconnect)
    return engine


def _failed_connect_is_a_disconnect(context: ExceptionContext) -> None:
    """A database that refuses a new connection is unavailable, whatever it answers.

    PostgreSQL refuses with an SQL error, not a socket error, while it starts up or
    shuts down, when it has too many clients or the database does not accept
    connections; the driver's own list of disconnects misses these. Marking them as
    disconnects makes them `database_unavailable` (503) problems, not 500s, and lets
    the pool's pre-ping replace a connection whose ping failed.
    """
    if context.connection is None:  # connecting or pre-pinging: no usable connection
        context.is_disconnect = True


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (below) issue BEGIN itself rather than the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        # A COMMIT that SQLite refuses (a deferred foreign key) leaves the transaction
        # open, write lock and all. SQLAlchemy counts any commit attempt as the end of
        # the transaction and would pool the connection as it is.
        if (
            state.transaction_was_reset
            and state.asyncio_safe
            and dbapi_connection.driver_connection.in_transaction
        ):
            dbapi_connection.rollback()


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    read: async_sessionmaker[AsyncSession]
    writer: async_sessionmaker[AsyncSession]
    turns: asyncio.Lock | None  # SQLite: this process's writers, one at a time
    # Called (synchronously, on the event loop) after each commit of a transaction that
    # appended audit events: the event stream and the webhook sender learn of new events
    # at once in this process (other processes: app.push.hub).
    committed: list[Callable[[], None]]
    turn_seconds: float = SQLITE_BUSY_TIMEOUT_MS / 1000  # the longest wait for a turn

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        timeout: float = 2.0,
        info: dict[str, Any] | None = None,
    ) -> Database:
        """The database at `url`; every session carries `info` (the policy's leads:
        `app.permits.approvers.session_policy`)."""
        engine = create_engine(url, pool_size=pool_size, timeout=timeout)
        writer = engine.execution_options(sqlite_begin="IMMEDIATE")
        committed: list[Callable[[], None]] = []

        class _Session(Session):
            """This database's sessions, so that its commit hook is its own."""

        def _after_commit(session: Session) -> None:
            if session.info.pop(AUDIT_APPENDED, False):
                for callback in committed:
                    callback()

        event.listen(_Session, "after_commit", _after_commit)
        return cls(
            engine=engine,
            read=async_sessionmaker(
                engine,
                expire_on_commit=False,
                autoflush=False,
                sync_session_class=_Session,
                info=info,
            ),
            writer=async_sessionmaker(
                writer,
                expire_on_commit=False,
                autoflush=False,
                sync_session_class=_Session,
                info=info,
            ),
            turns=asyncio.Lock() if is_sqlite(url) else None,
            committed=committed,
        )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction may write.

        On SQLite only one transaction writes at a time. A writer that finds the lock
        taken waits in SQLite's busy handler, which sleeps and polls (up to 100 ms a
        time): under load a write waited seconds for a lock free most of that time.
        So the process's own writers take turns here first, in the order they came,
        each starting as soon as the last one ends; SQLite's wait is left for writers
        of other processes (the CLI). A turn is awaited no longer than SQLite's own
        busy timeout (`turn_seconds`), then the request gets the 503 a busy database
        gives.
        """
        if self.turns is not None:
            try:
                async with asyncio.timeout(self.turn_seconds):
                    await self.turns.acquire()
            except TimeoutError:
                raise database_unavailable("The database is busy; try again shortly.") from None
        try:
            async with self.writer() as session:
                yield session
        finally:
            if self.turns is not None:
                self.turns.release()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def transaction(
    maker: Callable[[], AbstractAsyncContextManager[AsyncSession]],
) -> AsyncIterator[AsyncSession]:
    """One transaction of a request (docs/RULES.md#transactions): rolled back if the
    request fails, otherwise committed when the block ends. A failed commit raises, so
    the client gets an error, never a 2xx for a change that was not stored."""
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        if session.in_transaction():
            await session.commit()


async def take_turns(session: AsyncSession, lock: int) -> None:
    """Writers of one kind (`lock`, a constant naming it) take turns from here to the end
    of their transactions: a transaction-scoped advisory lock on PostgreSQL; on SQLite
    every writer already holds the one write lock."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with transaction(db.read) as session:
        yield session


# scope="function": the dependency's exit (the commit) runs before the response is sent.
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]
"""The request's reading transaction. A route that writes declares
`app.auth.dependencies.WriteSession` instead, which opens its transaction once the
caller is verified."""
