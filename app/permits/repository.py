"""The permit's queries that the workflow shares: loading (and locking) one permit, and the
approved permit a window would overlap.

Locking: `FOR UPDATE` on PostgreSQL; on SQLite every writing transaction already holds the
database's write lock (`BEGIN IMMEDIATE`, app/db.py), which is what the clause amounts to.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.permits.models import Permit


async def get_permit(
    session: AsyncSession, permit_id: str, *, for_update: bool = False
) -> Permit | None:
    """The permit `permit_id`; with `for_update`, locked until the transaction ends."""
    return await session.get(Permit, permit_id, with_for_update=for_update)


async def overlapping_approved(session: AsyncSession, permit: Permit) -> Permit | None:
    """An approved permit of the same workspace whose window overlaps `permit`'s
    (docs/RULES.md#workspace-conflict)."""
    return await session.scalar(
        select(Permit)
        .where(
            Permit.workspace_code == permit.workspace_code,
            Permit.status == "approved",
            Permit.id != permit.id,
            Permit.starts_at < permit.ends_at,
            Permit.ends_at > permit.starts_at,
        )
        .limit(1)
    )
