"""Recording what time does to permits, from the CLI (`izin-siaran sweep`) or a periodic
in-process task (`SWEEP_INTERVAL_SECONDS`, default 30): expiries, reminders and escalations.

Expiry and escalation hold on every read whether or not this runs (`effective_status`,
`is_escalated`); the sweep writes them down, with their audit events (and webhook
messages), so the history says when. Safe on any number of instances at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import Database
from app.migrate import require_head
from app.permits.approvers import session_policy
from app.permits.idempotency import forget_expired
from app.permits.lifecycle import expire_overdue, record_notices
from app.push.tickets import forget_expired as forget_expired_tickets

log = logging.getLogger(__name__)


async def sweep_database(db: Database) -> tuple[int, int, int]:
    """One pass: (permits expired, reminders and escalations recorded, idempotency records
    forgotten)."""
    expired = await _until_none(db, expire_overdue)
    noticed = await _until_none(db, record_notices)
    async with db.write() as session, session.begin():
        forgotten = await forget_expired(session)
        await forget_expired_tickets(session)
    return expired, noticed, forgotten


async def _until_none(db: Database, step: Callable[[AsyncSession], Awaitable[int]]) -> int:
    """`step` in one transaction after another until one does nothing; the total."""
    total = 0
    while True:
        async with db.write() as session, session.begin():
            done = await step(session)
        total += done
        if done == 0:
            return total


async def sweep_once(settings: Settings) -> tuple[int, int, int]:
    policy = session_policy(
        settings.policy_remind_before_start_minutes, settings.policy_escalate_before_start_minutes
    )
    db = Database.connect(settings.effective_database_url, pool_size=1, info=policy)
    try:
        await require_head(db.engine)
        return await sweep_database(db)
    finally:
        await db.dispose()


async def sweep_forever(db: Database, interval_seconds: float) -> None:
    """The optional periodic task (SWEEP_INTERVAL_SECONDS > 0). Errors are logged, not fatal."""
    while True:
        try:
            expired, noticed, forgotten = await sweep_database(db)
            if expired or noticed or forgotten:
                log.info(
                    "sweep: expired %d permit(s), recorded %d reminder(s) and escalation(s), "
                    "forgot %d key(s)",
                    expired,
                    noticed,
                    forgotten,
                )
        except Exception:
            log.exception("sweep failed; retrying in %.0f s", interval_seconds)
        await asyncio.sleep(interval_seconds)


@contextlib.asynccontextmanager
async def periodic_sweep(db: Database, interval_seconds: float) -> AsyncIterator[None]:
    if interval_seconds <= 0:
        yield
        return
    task = asyncio.create_task(sweep_forever(db, interval_seconds))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
