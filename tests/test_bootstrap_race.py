"""Instances starting at once on a new database each make sure of the bootstrap admins
(BOOTSTRAP_ADMIN_NIPS): the second to insert one finds it made, and starts."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text

from app.audit.models import AuditEvent
from app.config import Settings
from app.db import Database
from app.org.service import ensure_admins
from tests.support import make_nip

pytestmark = pytest.mark.anyio

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def test_two_starts_at_once_make_one_admin(backend: str, settings: Settings) -> None:
    nip = make_nip()
    # Statements may wait long: the other start waits for this one's turn while the probe
    # below looks for it, however slowly a loaded machine lets it look.
    first, second = (
        Database.connect(settings.effective_database_url, timeout=60) for _ in range(2)
    )
    try:
        async with first.write() as session:
            await session.begin()
            await ensure_admins(session, [nip])  # made, not yet committed

            async def other_start() -> None:
                async with second.write() as other, other.begin():
                    await ensure_admins(other, [nip])

            racing = asyncio.create_task(other_start())
            if backend == "postgresql":  # the other start waits for this one's turn
                # Autocommit: within one transaction PostgreSQL shows pg_stat_activity as
                # it was at the first look, so a probe that looked before the other start
                # began to wait would never see it wait.
                async with second.engine.connect() as connection:
                    probe = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    # Until it waits, or fails (then `await racing` says why).
                    while not racing.done() and not await probe.scalar(_WAITING):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
            await session.commit()
        await racing
        async with first.read() as session:
            made = await session.scalar(
                select(func.count()).where(AuditEvent.subject == f"employee:{nip}")
            )
    finally:
        await first.dispose()
        await second.dispose()
    assert made == 1
