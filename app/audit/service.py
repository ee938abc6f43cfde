"""Appending audit events: in the caller's transaction, one chain, no gaps.

Appends are serialised so that `seq` has no gaps and each `prev_hash` names the
event before it: on PostgreSQL by a transaction-scoped advisory lock, on SQLite
by the write lock every writing transaction already holds (`BEGIN IMMEDIATE`).
The lock is released by the commit or rollback of the change itself, so a
rolled-back change leaves neither an event nor a hole in the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.chain import GENESIS_HASH, event_hash
from app.audit.models import AuditEvent
from app.audit.schemas import ServedEvent
from app.db import AUDIT_APPENDED
from app.timeutil import utcnow

SYSTEM_ACTOR = "system"
NOTIFY_CHANNEL = "izin_siaran_audit"
"""The PostgreSQL channel a commit that appended audit events notifies."""
# An arbitrary constant naming "the audit chain" among this database's advisory locks.
_CHAIN_LOCK_KEY = 0x1_2A51_A4A0


async def append_event(
    session: AsyncSession,
    actor: str,
    action: str,
    subject: str,
    data: dict[str, Any],
    unit_code: str | None = None,
) -> AuditEvent:
    """The event of the change pending in `session`: the change is written first, then its
    event, in the same transaction (docs/RULES.md#audit-events)."""
    await session.flush()
    session.info[AUDIT_APPENDED] = True  # its commit wakes this process' listeners
    if session.get_bind().dialect.name == "postgresql":
        # The chain's lock, and a notice to every instance's listeners (app.push.hub),
        # which PostgreSQL sends only if, and when, this transaction commits.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key), pg_notify(:channel, '')"),
            {"key": _CHAIN_LOCK_KEY, "channel": NOTIFY_CHANNEL},
        )
    last = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
    event = AuditEvent(
        seq=seq,
        at=utcnow(),
        actor=actor,
        action=action,
        subject=subject,
        unit_code=unit_code,
        data=data,
        prev_hash=prev_hash,
    )
    # Hashed as it will be served (docs/RULES.md#audit-chain): the served model, less `hash`.
    event.hash = event_hash(ServedEvent.model_validate(event).model_dump())
    session.add(event)
    await session.flush()
    return event


async def events_of_subject(session: AsyncSession, subject: str) -> Sequence[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.seq)
    return (await session.scalars(statement)).all()
