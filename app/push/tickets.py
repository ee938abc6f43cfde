"""Single-use tickets for the event stream (docs/RULES.md#event-stream): a browser's
`EventSource` cannot send a header, and a token never goes in a URL. A ticket is valid for
60 seconds on every instance (it is a row, stored as its SHA-256), and is used up by the
first stream that presents it."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.credentials import hash_secret
from app.auth.models import ApiKey
from app.auth.principal import Principal
from app.errors import Unauthenticated
from app.org.models import Employee
from app.push.models import EventTicket
from app.timeutil import utcnow

TICKET_LIFETIME = timedelta(seconds=60)


async def issue(session: AsyncSession, principal: Principal) -> tuple[str, datetime]:
    ticket, expires_at = secrets.token_urlsafe(32), utcnow() + TICKET_LIFETIME
    row = EventTicket(ticket_sha256=hash_secret(ticket), caller=principal.actor)
    row.expires_at = expires_at
    session.add(row)
    await session.flush()
    return ticket, expires_at


async def redeem(session: AsyncSession, ticket: str) -> Principal:
    """The caller a ticket was issued to, if it is unused, unexpired and they are still an
    active employee or an unrevoked key; the ticket is used up either way."""
    now = utcnow()
    caller = await session.scalar(
        update(EventTicket)
        .where(
            EventTicket.ticket_sha256 == hash_secret(ticket),
            EventTicket.used_at.is_(None),
            EventTicket.expires_at > now,
        )
        .values(used_at=now)
        .returning(EventTicket.caller)
    )
    if caller is None:
        raise _invalid()
    if caller.startswith("api-key:"):
        key = await session.get(ApiKey, caller.removeprefix("api-key:"))
        if key is None or key.revoked_at is not None:
            raise _invalid()
        return Principal(api_key=key)
    employee = await session.get(Employee, caller)
    if employee is None or not employee.active:
        raise _invalid()
    return Principal(employee=employee)


async def forget_expired(session: AsyncSession) -> int:
    """Drop tickets past their lifetime (used or not); how many."""
    result = await session.execute(delete(EventTicket).where(EventTicket.expires_at <= utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _invalid() -> Unauthenticated:
    return Unauthenticated(
        "The ticket is unknown, used or expired; ask for a new one (POST /api/v1/events/tickets).",
        code="invalid_ticket",
    )
