"""Plh/Plt delegations: who may act for a unit head, and for which window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import append_event
from app.errors import Conflict, Forbidden, InvalidInput, field_error
from app.ids import new_id
from app.org.models import Delegation, Employee, Unit
from app.org.schemas import DelegationCreate
from app.org.service import get_unit, require_active_employee
from app.records import get_or_404
from app.timeutil import format_instant, utcnow

MAX_DELEGATION = timedelta(days=366)


def may_manage_delegations(employee: Employee, unit: Unit) -> bool:
    return employee.is_admin or (unit.head_nip == employee.nip and employee.active)


def _snapshot(delegation: Delegation) -> dict[str, str | None]:
    return {
        "id": delegation.id,
        "unit_code": delegation.unit_code,
        "delegate_nip": delegation.delegate_nip,
        "kind": delegation.kind,
        "starts_at": format_instant(delegation.starts_at),
        "ends_at": format_instant(delegation.ends_at),
        "reason": delegation.reason,
    }


async def get_delegation(
    session: AsyncSession, delegation_id: str, *, for_update: bool = False
) -> Delegation:
    return await get_or_404(session, Delegation, delegation_id, "Delegation", for_update=for_update)


async def _record(
    session: AsyncSession, actor: Employee, delegation: Delegation, verb: str, data: Any
) -> None:
    """The delegation's change and its audit event (`delegation.created`, `.revoked`)."""
    subject = f"delegation:{delegation.id}"
    await append_event(
        session, actor.nip, f"delegation.{verb}", subject, data, delegation.unit_code
    )


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    problem: tuple[str, str] | None = None
    if ends_at <= starts_at:
        problem = ("ends_at", "must be after starts_at")
    elif ends_at <= utcnow():
        problem = ("ends_at", "is in the past; a delegation must still be to come or in force")
    elif ends_at - starts_at > MAX_DELEGATION:
        problem = ("ends_at", f"a delegation lasts at most {MAX_DELEGATION.days} days")
    if problem:
        raise InvalidInput(
            f"Invalid delegation window: {problem[0]} {problem[1]}.",
            code="invalid_window",
            errors=[field_error(["body", problem[0]], problem[1], "invalid_window")],
        )


async def create_delegation(
    session: AsyncSession, actor: Employee, unit_code: str, body: DelegationCreate
) -> Delegation:
    unit = await get_unit(session, unit_code)
    if not may_manage_delegations(actor, unit):
        raise Forbidden(
            f"Only admins and the head of {unit_code} manage its delegations.",
            code="not_unit_head",
        )
    if not unit.active:
        raise Conflict(f"Unit {unit_code} is inactive.", code="unit_inactive")
    if body.delegate_nip == actor.nip:
        raise InvalidInput(
            "You cannot appoint yourself as a delegate; nobody makes themselves an approver.",
            code="self_delegation",
            errors=[field_error(["body", "delegate_nip"], "is yourself", "self_delegation")],
        )
    _check_window(body.starts_at, body.ends_at)
    await require_active_employee(session, body.delegate_nip, ["body", "delegate_nip"])
    if body.delegate_nip == unit.head_nip:
        raise InvalidInput(
            f"{body.delegate_nip} already heads {unit_code}.",
            code="delegate_is_head",
            errors=[field_error(["body", "delegate_nip"], "is the unit head", "delegate_is_head")],
        )
    delegation = Delegation(
        id=new_id(),
        unit_code=unit_code,
        created_by=actor.nip,
        created_at=utcnow(),
        **body.model_dump(),
    )
    session.add(delegation)
    await _record(session, actor, delegation, "created", _snapshot(delegation))
    return delegation


async def revoke_delegation(
    session: AsyncSession, actor: Employee, delegation_id: str
) -> Delegation:
    """End a delegation now (or cancel it before it starts). The record stays."""
    delegation = await get_delegation(session, delegation_id, for_update=True)
    unit = await get_unit(session, delegation.unit_code)
    if not may_manage_delegations(actor, unit):
        raise Forbidden(
            f"Only admins and the head of {unit.code} manage its delegations.",
            code="not_unit_head",
        )
    now = utcnow()
    if delegation.revoked_at is not None or delegation.ends_at <= now:
        raise Conflict(f"Delegation {delegation_id} has already ended.", code="delegation_ended")
    delegation.revoked_at = now
    delegation.revoked_by = actor.nip
    data = {"id": delegation.id, "revoked_at": format_instant(now)}
    await _record(session, actor, delegation, "revoked", data)
    return delegation


async def delegations_in_force(
    session: AsyncSession, *, delegate_nip: str, at: datetime
) -> Sequence[Delegation]:
    statement = select(Delegation).where(
        Delegation.delegate_nip == delegate_nip,
        Delegation.revoked_at.is_(None),
        Delegation.starts_at <= at,
        Delegation.ends_at > at,
    )
    return (await session.scalars(statement.order_by(Delegation.unit_code))).all()


def delegations_of(unit_code: str) -> Select[Delegation]:
    """A unit's delegations, past, present and future."""
    return select(Delegation).where(Delegation.unit_code == unit_code)
