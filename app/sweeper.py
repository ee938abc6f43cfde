"""Recording expiries, from the CLI (`izin-siaran sweep`) or a periodic in-process task.

Expiry holds on every read whether or not this runs (see `effective_status`);
the sweep writes it down, with its audit event, so the history says when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from app.config import Settings
from app.db import Database
from app.migrate import require_head
from app.permits.idempotency import forget_expired
from app.permits.lifecycle import expire_overdue
from app.push.tickets import forget_expired as forget_expired_tickets

log = logging.getLogger(__name__)


async def sweep_database(db: Database) -> tuple[int, int]:
    """One pass: (permits expired, idempotency records forgotten)."""
    expired = 0
    while True:
        async with db.write() as session, session.begin():
            batch = await expire_overdue(session)
        expired += batch
        if batch == 0:
            break
    async with db.write() as session, session.begin():
        forgotten = await forget_expired(session)
        await forget_expired_tickets(session)
    return expired, forgotten


async def sweep_once(settings: Settings) -> tuple[int, int]:
    db = Database.connect(settings.effective_database_url, pool_size=1)
    try:
        await require_head(db.engine)
        return await sweep_database(db)
    finally:
        await db.dispose()


async def sweep_forever(db: Database, interval_seconds: float) -> None:
    """The optional periodic task (SWEEP_INTERVAL_SECONDS > 0). Errors are logged, not fatal."""
    while True:
        try:
            expired, forgotten = await sweep_database(db)
            if expired or forgotten:
                log.info("sweep: expired %d permit(s), forgot %d key(s)", expired, forgotten)
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
