"""The event stream's hub (docs/RULES.md#event-stream): one per process, whatever the
number of subscribers.

It learns that audit events were committed — from this process' own commits at once
(`Database.committed`), from every instance's through PostgreSQL `LISTEN`/`NOTIFY` — reads
the new events once (one query per wake-up, never one per subscriber), and hands each to
the subscribers allowed to see it. Each subscriber has a bounded queue: one that falls
`EVENT_STREAM_QUEUE_SIZE` events behind is closed (`slow_reader`) instead of buffering
forever, and resumes by `Last-Event-ID`. A periodic look (every `POLL_SECONDS`) catches
what no notice announced (a lost listener connection, the CLI writing on SQLite).

Who sees what: admins, auditors and API keys with scope `events` every event; any other
employee the `permit.*` events of permits they may read when the event happens — the one
rule of `app.permits.visibility`, with the permit's approvers at the event's instant. A
subscriber's own record is read again whenever an event names it (`employee:<nip>`,
`api-key:<id>`), so a deactivation or a revoked key closes the stream, and a changed role
changes what it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.schemas import AuditEventOut
from app.audit.service import NOTIFY_CHANNEL
from app.auth.credentials import grants
from app.auth.models import ApiKey
from app.db import Database
from app.org.models import Employee
from app.org.roles import sees_everything
from app.permits.approvers import Approver, resolve_approvers
from app.permits.models import Permit
from app.permits.visibility import may_read
from app.rawdb import asyncpg_dsn

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
BATCH = 500


@dataclass
class Reader:
    """An employee subscriber's facts, as the visibility rule reads them."""

    nip: str
    is_admin: bool
    is_auditor: bool


@dataclass(frozen=True)
class Served:
    """An audit event as the stream sends it."""

    seq: int
    action: str
    subject: str
    json: str


class Closed(Exception):
    """The stream ends, with the reason sent to the subscriber last."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail

    def body(self) -> str:
        return json.dumps({"code": self.code, "detail": self.detail})


@dataclass(eq=False)
class Subscriber:
    caller: str  # as app.auth.credentials.caller_name names them
    reader: Reader | None  # None: sees every event (an API key with scope `events`)
    limit: int
    position: int  # the last seq the hub had handed out when this subscriber joined
    queue: deque[Served] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed: Closed | None = None

    @property
    def sees_all(self) -> bool:
        return self.reader is None or sees_everything(self.reader)

    def offer(self, event: Served) -> None:
        if self.closed is not None:
            return
        if len(self.queue) >= self.limit:
            self.queue.clear()  # what it has not read, it reads again by Last-Event-ID
            self.close(
                "slow_reader",
                f"More than {self.limit} events waited for this stream; reconnect with "
                "Last-Event-ID to resume.",
            )
            return
        self.queue.append(event)
        self.ready.set()

    def close(self, code: str, detail: str) -> None:
        if self.closed is None:
            self.closed = Closed(code, detail)
            self.ready.set()

    async def next(self, within: float) -> Served | None:
        """The next event; None when `within` seconds pass with none (time for a ping)."""
        while not self.queue:
            if self.closed is not None:
                raise self.closed
            self.ready.clear()
            try:
                async with asyncio.timeout(within):
                    await self.ready.wait()
            except TimeoutError:
                return None
        return self.queue.popleft()


def served(event: AuditEvent) -> Served:
    text = AuditEventOut.from_row(event).model_dump_json()
    return Served(event.seq, event.action, event.subject, text)


class Visibility:
    """Whether a subscriber may see an event: the permit's readers at the event's instant,
    read once per permit and event batch."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._facts: dict[tuple[str, int], tuple[Permit | None, list[Approver]]] = {}

    async def allows(self, subscriber: Subscriber, event: AuditEvent) -> bool:
        if subscriber.sees_all:
            return True
        assert subscriber.reader is not None
        if not event.action.startswith("permit.") or not event.subject.startswith("permit:"):
            return False
        key = (event.subject, event.seq)
        if key not in self._facts:
            permit = await self._session.get(Permit, event.subject.removeprefix("permit:"))
            approvers: list[Approver] = []
            if permit is not None:
                approvers = await resolve_approvers(self._session, permit, event.at)
            self._facts[key] = (permit, approvers)
        permit, approvers = self._facts[key]
        return permit is not None and may_read(permit, subscriber.reader, approvers)


class Hub:
    def __init__(self, db: Database, url: str) -> None:
        self._db = db
        self._url = url
        self._subscribers: set[Subscriber] = set()
        self._listeners: list[Callable[[], None]] = []
        self._wakeup = asyncio.Event()
        self._dispatching = asyncio.Lock()  # one reader of new events at a time
        self.last_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    # --- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._db.read() as session:
            self.last_seq = int(await session.scalar(select(func.max(AuditEvent.seq))) or 0)
        self._db.committed.append(self.wake)
        self._task = asyncio.create_task(self._run(), name="event-hub")
        if self._db.dialect == "postgresql":
            try:
                self._connection = await self._connect()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("event hub: LISTEN connection failed (%s); retrying", exc)
            self._listen_task = asyncio.create_task(self._listen(), name="event-hub-listen")

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._db.committed.remove(self.wake)
        for subscriber in list(self._subscribers):
            subscriber.close("shutting_down", "The service is stopping; reconnect to resume.")
        for task in (self._task, self._listen_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=1)
            self._connection = None

    def wake(self) -> None:
        """Audit events may have been committed."""
        self._wakeup.set()

    def on_events(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever new audit events were committed (the webhook sender)."""
        self._listeners.append(listener)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # --- subscribers ---------------------------------------------------------------------

    def subscribe(self, caller: str, reader: Reader | None, limit: int) -> Subscriber:
        """A new subscriber, handed every event after `last_seq` (synchronous: no event is
        handed out between reading the position and joining; call `catch_up` first)."""
        subscriber = Subscriber(caller, reader, limit, self.last_seq)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def history(self, subscriber: Subscriber, after: int) -> tuple[list[Served], int]:
        """The events after `after` up to the subscriber's joining position that it may see,
        from one batch, and the last `seq` that batch read (call again from there until it
        reaches `subscriber.position`)."""
        async with self._db.read() as session:
            rows = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.seq > after, AuditEvent.seq <= subscriber.position)
                    .order_by(AuditEvent.seq)
                    .limit(BATCH)
                )
            ).all()
            visibility = Visibility(session)
            seen = [served(e) for e in rows if await visibility.allows(subscriber, e)]
        return seen, rows[-1].seq if rows else subscriber.position

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.catch_up()
            except Exception:
                log.exception("event hub: reading new events failed; retrying")
                await asyncio.sleep(1)

    async def catch_up(self) -> None:
        """Hand out every event committed so far. A new stream calls it before it
        subscribes, so that its starting point is the newest event committed before it
        asked, not the last one this hub happened to have read."""
        async with self._dispatching:
            while await self._dispatch_batch():
                pass

    async def _dispatch_batch(self) -> bool:
        """Hand out the next batch of new events; whether there were any."""
        if not self._subscribers:
            # Nobody to hand events to (one joins only through `catch_up`, which waits for
            # this): the position and the listeners are all there is, so not the rows.
            async with self._db.read() as session:
                newest = await session.scalar(select(func.max(AuditEvent.seq)))
            if newest is None or newest <= self.last_seq:
                return False
            for listener in self._listeners:
                listener()
            self.last_seq = newest
            return False
        async with self._db.read() as session:
            rows = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.seq > self.last_seq)
                    .order_by(AuditEvent.seq)
                    .limit(BATCH)
                )
            ).all()
            if not rows:
                return False
            for listener in self._listeners:
                listener()
            # Every await first: who sees what is settled, then handed out in one step with
            # the new position, so a subscriber joining meanwhile misses nothing.
            subscribers = list(self._subscribers)
            visibility = Visibility(session)
            await self._refresh(session, subscribers, rows)
            plan: list[tuple[Served, Sequence[Subscriber]]] = []
            for event in rows:
                allowed = [s for s in subscribers if await visibility.allows(s, event)]
                plan.append((served(event), allowed))
        for event_out, receivers in plan:
            for subscriber in receivers:
                subscriber.offer(event_out)
        self.last_seq = rows[-1].seq
        return True

    async def _refresh(
        self, session: AsyncSession, subscribers: list[Subscriber], rows: Sequence[AuditEvent]
    ) -> None:
        """Read again the callers the events name: a deactivated employee or a revoked key
        closes its streams; a changed role changes what the stream shows."""
        named = {e.subject.removeprefix("employee:") for e in rows}
        named |= {e.subject for e in rows}  # api-key:<id> is how a key's caller is named
        for subscriber in subscribers:
            if subscriber.caller not in named:
                continue
            if subscriber.reader is None:
                key = await session.get(ApiKey, subscriber.caller.removeprefix("api-key:"))
                if key is None or key.revoked_at is not None or not grants(key.scopes, "events"):
                    subscriber.close("credential_revoked", "This API key was revoked.")
                continue
            employee = await session.get(Employee, subscriber.reader.nip)
            if employee is None or not employee.active:
                subscriber.close("credential_revoked", "This employee was deactivated.")
                continue
            subscriber.reader.is_admin = employee.is_admin
            subscriber.reader.is_auditor = employee.is_auditor

    # --- PostgreSQL: LISTEN ---------------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        """A connection that LISTENs, and an event set when it is lost."""
        connection = await asyncpg.connect(asyncpg_dsn(self._url), timeout=5)
        self._lost = asyncio.Event()
        connection.add_termination_listener(lambda _c, lost=self._lost: lost.set())
        await connection.add_listener(NOTIFY_CHANNEL, lambda *_args: self.wake())
        return connection

    async def _listen(self) -> None:
        """Hold the LISTEN connection; on losing it, connect again (and look, since a notice
        may have been missed meanwhile). The first is made by `start`, so the service
        listens before it serves, and no shutdown interrupts a connect in progress."""
        delay = 0.5
        while True:
            if self._connection is not None:
                await self._lost.wait()
                with contextlib.suppress(Exception):
                    await self._connection.close(timeout=1)
                self._connection = None
            await asyncio.sleep(delay)
            try:
                self._connection = await self._connect()
                self.wake()
                delay = 0.5
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("event hub: LISTEN connection failed (%s); retrying", exc)
                delay = min(delay * 2, 10.0)
