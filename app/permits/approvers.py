"""Who may decide a permit: SPEC §3 "Approvers".

The head of the unit that owns the workspace, and every active employee holding
a delegation (Plh/Plt) in force for that unit at decision time. If the requester
is one of them — or the unit has nobody who could decide — the decision moves
up to the parent unit, and so on. Nobody ever decides their own permit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.org.models import Delegation, Employee, Unit

MAX_DEPTH = 32  # units form a tree; this only guards against a corrupted one


@dataclass(frozen=True)
class Approver:
    nip: str
    capacity: str  # head, plh, plt or parent_head
    unit_code: str


async def _unit_deciders(
    session: AsyncSession, unit: Unit, *, at: datetime, escalated: bool
) -> list[Approver]:
    deciders: list[Approver] = []
    if unit.head_nip is not None:
        head_active = await session.scalar(
            select(Employee.active).where(Employee.nip == unit.head_nip)
        )
        if head_active:
            capacity = "parent_head" if escalated else "head"
            deciders.append(Approver(unit.head_nip, capacity, unit.code))
    rows = await session.execute(
        select(Delegation.delegate_nip, Delegation.kind)
        .join(Employee, Employee.nip == Delegation.delegate_nip)
        .where(
            Delegation.unit_code == unit.code,
            Delegation.revoked_at.is_(None),
            Delegation.starts_at <= at,
            Delegation.ends_at > at,
            Employee.active.is_(True),
        )
        .order_by(Delegation.starts_at)
    )
    seen = {d.nip for d in deciders}
    for nip, kind in rows:
        if nip not in seen:
            deciders.append(Approver(nip, kind, unit.code))
            seen.add(nip)
    return deciders


async def resolve_approvers(
    session: AsyncSession, *, unit_code: str, requester_nip: str, at: datetime
) -> list[Approver]:
    """The employees who may decide a permit of `requester_nip` for a workspace of `unit_code`."""
    code: str | None = unit_code
    escalated = False
    for _ in range(MAX_DEPTH):
        if code is None:
            break
        unit = await session.get(Unit, code)
        if unit is None:
            break
        deciders = await _unit_deciders(session, unit, at=at, escalated=escalated)
        if deciders and all(d.nip != requester_nip for d in deciders):
            return deciders
        code, escalated = unit.parent_code, True
    return []
