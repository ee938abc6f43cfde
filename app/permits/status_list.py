"""A permit's entry in a status list (docs/RULES.md#status-lists): the bit a signed permit's
credential points at, `1` once the permit is withdrawn.

- An entry is given when the permit is approved (`allot`, in the approval's transaction)
  and kept for good, so every credential of the permit points at the same bit.
- The entry is a random free index of the newest list. A list has `SIZE` entries and
  takes new ones until half of them are given; then a new list begins. An index
  therefore says nothing about how many permits exist or when it was given; the list's
  number says only how many times 65,536 approvals there have been.
- The bit is the permit's status, read where the list is served (`WITHDRAWN`): revoking
  or cancelling the permit sets it in that change's own transaction, and nothing else
  can set or clear it.
"""

from __future__ import annotations

import secrets

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import take_turns
from app.permits.models import Permit, StatusList
from app.timeutil import utcnow

SIZE = 1 << 17
"""Entries a list has: 131,072 bits, 16 KiB before compression."""
FILL = SIZE // 2
"""Entries given in a list before the next begins: a random free index is then found in
at most two tries on average."""
WITHDRAWN = ("revoked", "cancelled")
"""The statuses whose bit is `1`: the permit's credentials are no longer valid."""

# An arbitrary constant naming "giving status list entries" among the advisory locks.
_ALLOT_LOCK = 0x1_2A51_5A7E


def is_withdrawn(status: str) -> bool:
    """Whether a permit with this recorded status has its bit set."""
    return status in WITHDRAWN


async def allot(session: AsyncSession) -> tuple[int, int]:
    """A free entry `(list, index)` for a permit being approved, in the caller's
    transaction. Approvals take turns here (an advisory lock on PostgreSQL; SQLite has
    one writer), so two never get the same entry (the unique index stands behind it)."""
    await take_turns(session, _ALLOT_LOCK)
    current = await session.scalar(select(StatusList).order_by(StatusList.number.desc()).limit(1))
    if current is None or current.used >= FILL:
        number = 0 if current is None else current.number + 1
        current = StatusList(number=number, size=SIZE, used=0, created_at=utcnow())
        session.add(current)
    while True:
        index = secrets.randbelow(current.size)
        taken = exists().where(Permit.status_list == current.number, Permit.status_idx == index)
        if not await session.scalar(select(taken)):
            break
    current.used += 1
    return current.number, index


async def withdrawn_entries(session: AsyncSession, number: int) -> tuple[int, list[int]] | None:
    """List `number`'s size and the indexes whose bit is set; None if there is no such
    list."""
    size = await session.scalar(select(StatusList.size).where(StatusList.number == number))
    if size is None:
        return None
    rows = await session.scalars(
        select(Permit.status_idx).where(Permit.status_list == number, Permit.status.in_(WITHDRAWN))
    )
    return size, [int(index) for index in rows if index is not None]
