"""Who may decide a permit: SPEC §3 "Approvers".

The head of the unit that owns the workspace, and every active employee holding
a delegation (Plh/Plt) in force for that unit at decision time. If the requester
is one of them — or the unit has nobody who could decide — the decision moves
up to the parent unit, and so on. Nobody ever decides their own permit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.org.models import Delegation, Employee, Unit

MAX_DEPTH = 32  # units form a tree; this only guards against a corrupted one


@dataclass(frozen=True)
class Approver:
    nip: str
    capacity: str  # head, plh, plt or parent_head
    unit_code: str


_HEAD, _DELEGATE = aliased(Employee, name="head"), aliased(Employee, name="delegate")
_UNIT_DECIDERS = (
    # A unit's parent, its head and whether they are active, and its delegations in force
    # with whether each delegate is active: a row per delegation, or one row without any.
    # Built once; only `code` and `at` change.
    select(
        Unit.parent_code,
        Unit.head_nip,
        _HEAD.active,
        Delegation.delegate_nip,
        Delegation.kind,
        _DELEGATE.active,
    )
    .select_from(Unit)
    .outerjoin(_HEAD, _HEAD.nip == Unit.head_nip)
    .outerjoin(
        Delegation,
        and_(
            Delegation.unit_code == Unit.code,
            Delegation.revoked_at.is_(None),
            Delegation.starts_at <= bindparam("at"),
            Delegation.ends_at > bindparam("at"),
        ),
    )
    .outerjoin(_DELEGATE, _DELEGATE.nip == Delegation.delegate_nip)
    .where(Unit.code == bindparam("code"))
    .order_by(Delegation.starts_at, Delegation.id)
)


@dataclass(frozen=True)
class _UnitDeciders:
    parent_code: str | None
    deciders: list[Approver]  # the head (if active) as "head", then delegates in force


class ApproverResolver:
    """Resolves approvers at one instant, reading each unit once.

    A list page asks about the same few units again and again; one resolver serves
    the whole page, one statement per unit it meets.
    """

    def __init__(self, session: AsyncSession, at: datetime) -> None:
        self._session = session
        self._at = at
        self._units: dict[str, _UnitDeciders | None] = {}

    async def resolve(self, *, unit_code: str, requester_nip: str) -> list[Approver]:
        """The employees who may decide a permit of `requester_nip` for a workspace of
        `unit_code`."""
        code: str | None = unit_code
        escalated = False
        for _ in range(MAX_DEPTH):
            if code is None:
                break
            unit = await self._unit(code)
            if unit is None:
                break
            deciders = unit.deciders
            if deciders and all(d.nip != requester_nip for d in deciders):
                if escalated:
                    return [
                        replace(d, capacity="parent_head") if d.capacity == "head" else d
                        for d in deciders
                    ]
                return list(deciders)
            code, escalated = unit.parent_code, True
        return []

    async def _unit(self, code: str) -> _UnitDeciders | None:
        if code not in self._units:
            self._units[code] = await self._read_unit(code)
        return self._units[code]

    async def _read_unit(self, code: str) -> _UnitDeciders | None:
        rows = (await self._session.execute(_UNIT_DECIDERS, {"code": code, "at": self._at})).all()
        if not rows:
            return None
        parent_code, head_nip, head_active = rows[0][0], rows[0][1], rows[0][2]
        deciders: list[Approver] = []
        if head_nip is not None and head_active:
            deciders.append(Approver(head_nip, "head", code))
        seen = {d.nip for d in deciders}
        for *_, nip, kind, active in rows:
            if nip is not None and active and nip not in seen:
                deciders.append(Approver(nip, kind, code))
                seen.add(nip)
        return _UnitDeciders(parent_code, deciders)


async def resolve_approvers(
    session: AsyncSession, *, unit_code: str, requester_nip: str, at: datetime
) -> list[Approver]:
    """The employees who may decide a permit of `requester_nip` for a workspace of `unit_code`."""
    return await ApproverResolver(session, at).resolve(
        unit_code=unit_code, requester_nip=requester_nip
    )
