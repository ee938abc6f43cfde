"""Reading the audit log: filters, keyset pages by `seq`, and batched walks for exports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, select

from app.audit.models import AuditEvent
from app.audit.schemas import AuditEventOut
from app.db import Database
from app.records import matching
from app.schemas import NO_NUL
from app.timeutil import InstantIn

BATCH = 1000


class EventFilters(BaseModel):
    """Which events an auditor asks for: a time range and exact matches, each optional."""

    model_config = ConfigDict(frozen=True)

    since: InstantIn | None = Field(None, description="Events at or after.")
    until: InstantIn | None = Field(None, description="Events before.")
    actor: str | None = Field(None, max_length=64, pattern=NO_NUL)
    action: str | None = Field(None, max_length=64, pattern=NO_NUL)
    subject: str | None = Field(None, max_length=128, pattern=NO_NUL)
    unit_code: str | None = Field(None, max_length=32, pattern=NO_NUL)


_EXACT = ("actor", "action", "subject", "unit_code")


def filtered(filters: EventFilters) -> Select[AuditEvent]:
    statement = select(AuditEvent)
    if filters.since is not None:
        statement = statement.where(AuditEvent.at >= filters.since)
    if filters.until is not None:
        statement = statement.where(AuditEvent.at < filters.until)
    exact = ((getattr(AuditEvent, name), getattr(filters, name)) for name in _EXACT)
    return matching(statement, *exact)


async def walk(
    db: Database, statement: Select[AuditEvent], *, after: int = 0, up_to: int | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Served events in `seq` order, a batch at a time, each batch in its own short read."""
    last = after
    while True:
        page = statement.where(AuditEvent.seq > last)
        if up_to is not None:
            page = page.where(AuditEvent.seq <= up_to)
        async with db.read() as session:
            rows = (await session.scalars(page.order_by(AuditEvent.seq).limit(BATCH))).all()
        if not rows:
            return
        yield [AuditEventOut.from_row(row).model_dump() for row in rows]
        last = rows[-1].seq
        if len(rows) < BATCH:
            return


async def head(db: Database) -> AuditEventOut | None:
    """The newest event, as served."""
    async with db.read() as session:
        newest = await session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    return AuditEventOut.from_row(newest) if newest is not None else None


async def last_seq(db: Database) -> int:
    newest = await head(db)
    return newest.seq if newest is not None else 0
