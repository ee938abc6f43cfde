"""The permit workflow: submission under SE 47/2025, decisions, cancellation, revocation.

States (SPEC §4): pending → approved | denied | cancelled | expired;
approved → revoked | cancelled (only before `starts_at`). A pending permit whose
`starts_at` has passed is expired on every read and every decision attempt, even
before the sweep (`expire_overdue`) records it.

Concurrency: decisions lock the permit row (`FOR UPDATE` on PostgreSQL; on
SQLite every writing transaction holds the database's write lock), so of any
number of concurrent decisions exactly one finds the permit pending. Two approved
permits of one workspace never overlap: checked here for a clear answer, and on
PostgreSQL enforced by an exclusion constraint for the race this check cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import SYSTEM_ACTOR, append_event
from app.config import Settings
from app.errors import AppError, Conflict, Forbidden, NotFound
from app.ids import new_id
from app.org.models import Employee, Unit, Workspace
from app.permits import policy
from app.permits.approvers import Approver, resolve_approvers
from app.permits.lifecycle import effective_status
from app.permits.models import Permit
from app.permits.schemas import PermitCreate
from app.permits.visibility import may_read
from app.permits.vocabulary import channel_key
from app.timeutil import format_instant, utcnow


class PreconditionFailed(AppError):
    status, code, title = 412, "version_mismatch", "Precondition failed"


def limits_from(settings: Settings) -> policy.Limits:
    return policy.Limits(
        max_duration=timedelta(minutes=settings.policy_max_duration_minutes),
        max_lead=timedelta(days=settings.policy_max_lead_days),
    )


@dataclass(frozen=True)
class PermitView:
    """A permit as one caller sees it at one instant."""

    permit: Permit
    status: str
    approvers: list[Approver]

    def out(self) -> dict[str, Any]:
        fields = {c.key: getattr(self.permit, c.key) for c in Permit.__table__.columns}
        fields.pop("channel_key")
        fields["status"] = self.status
        fields["approvers"] = [a.nip for a in self.approvers] if self.status == "pending" else []
        return fields


async def _view(session: AsyncSession, permit: Permit, now: datetime) -> PermitView:
    approvers = await resolve_approvers(
        session, unit_code=permit.unit_code, requester_nip=permit.requester_nip, at=now
    )
    return PermitView(permit, effective_status(permit, now), approvers)


async def read_permit(
    session: AsyncSession, employee: Employee, permit_id: str, *, for_update: bool = False
) -> PermitView:
    """The permit if `employee` may see it; 404 otherwise (no existence leak)."""
    permit = await session.get(Permit, permit_id, with_for_update=for_update)
    if permit is None:
        raise NotFound(f"Permit {permit_id} does not exist.")
    view = await _view(session, permit, utcnow())
    if not may_read(permit, employee, view.approvers):
        raise NotFound(f"Permit {permit_id} does not exist.")
    return view


# --- submission -----------------------------------------------------------------


async def submit_permit(
    session: AsyncSession, requester: Employee, body: PermitCreate, limits: policy.Limits
) -> PermitView:
    now = utcnow()
    policy.check_purpose(body.purpose)
    policy.check_attestations(body.attestations.model_dump())
    policy.check_window(body.starts_at, body.ends_at, now=now, limits=limits)
    workspace = await session.get(Workspace, body.workspace_code)
    if workspace is None:
        raise policy.unknown_workspace(body.workspace_code)
    unit = await session.get(Unit, workspace.unit_code)
    if not workspace.active or unit is None or not unit.active:
        raise policy.workspace_inactive(workspace.code)
    permit = Permit(
        id=new_id(),
        requester_nip=requester.nip,
        workspace_code=workspace.code,
        unit_code=workspace.unit_code,
        platform=body.platform,
        channel=body.channel,
        channel_key=channel_key(body.channel),
        purpose=body.purpose,
        title=body.title,
        description=body.description,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        attestations={k: bool(v) for k, v in body.attestations.model_dump().items()},
        status="pending",
        created_at=now,
        updated_at=now,
        version=1,
    )
    session.add(permit)
    await session.flush()
    # Everything else first: the audit append holds the chain's lock until the commit.
    view = await _view(session, permit, now)
    await append_event(
        session,
        actor=requester.nip,
        action="permit.submitted",
        subject=f"permit:{permit.id}",
        data={
            "workspace_code": permit.workspace_code,
            "unit_code": permit.unit_code,
            "platform": permit.platform,
            "channel": permit.channel,
            "purpose": permit.purpose,
            "title": permit.title,
            "starts_at": format_instant(permit.starts_at),
            "ends_at": format_instant(permit.ends_at),
            "attestations": permit.attestations,
        },
        unit_code=permit.unit_code,
    )
    return view


# --- transitions ------------------------------------------------------------------


def _invalid(permit_id: str, status: str, action: str, why: str = "") -> Conflict:
    detail = f"Permit {permit_id} is {status}; it cannot be {action}"
    return Conflict(
        detail + (f" ({why})." if why else "."), code="invalid_transition", current_status=status
    )


def _check_version(permit: Permit, if_match: int | None) -> None:
    if if_match is not None and if_match != permit.version:
        raise PreconditionFailed(
            f"Permit {permit.id} is at version {permit.version}, not {if_match}; read it again.",
            current_version=permit.version,
        )


def _require_approver(view: PermitView, actor: Employee) -> Approver:
    permit = view.permit
    mine = next((a for a in view.approvers if a.nip == actor.nip), None)
    if mine is not None:
        return mine
    if actor.nip == permit.requester_nip:
        raise Forbidden("Nobody decides their own permit.", code="self_decision_forbidden")
    if not view.approvers:
        raise Conflict(
            f"Nobody can decide permit {permit.id}: no head or delegate other than the requester "
            f"up to the top of the hierarchy above {permit.unit_code}.",
            code="no_approver",
        )
    raise Forbidden(
        f"Only the approvers of permit {permit.id} may decide it "
        f"({', '.join(a.nip for a in view.approvers)}).",
        code="not_an_approver",
    )


async def _record(
    session: AsyncSession,
    actor: str,
    permit: Permit,
    action: str,
    before: str,
    data: dict[str, Any],
) -> None:
    await _save(session, permit)
    await _append(session, actor, permit, action, before, data)


async def _save(session: AsyncSession, permit: Permit) -> None:
    """Write a change of the permit, with its next version."""
    permit.version += 1
    permit.updated_at = utcnow()
    await session.flush()


async def _append(
    session: AsyncSession,
    actor: str,
    permit: Permit,
    action: str,
    before: str,
    data: dict[str, Any],
) -> None:
    """The audit event of a saved change: the last statement before the commit where it
    can be, since the append holds the chain's lock until then."""
    await append_event(
        session,
        actor=actor,
        action=f"permit.{action}",
        subject=f"permit:{permit.id}",
        data={"from": before, "to": permit.status, "version": permit.version, **data},
        unit_code=permit.unit_code,
    )


async def overlapping_approved(session: AsyncSession, permit: Permit) -> Permit | None:
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


def _workspace_conflict(permit: Permit, other: Permit) -> Conflict:
    return Conflict(
        f"Workspace {permit.workspace_code} is already booked by approved permit {other.id} "
        f"({format_instant(other.starts_at)} to {format_instant(other.ends_at)}).",
        code="workspace_conflict",
        conflicting_permit_id=other.id,
    )


async def approve(
    session: AsyncSession, actor: Employee, permit_id: str, note: str | None, if_match: int | None
) -> PermitView:
    view = await read_permit(session, actor, permit_id, for_update=True)
    permit = view.permit
    approver = _require_approver(view, actor)
    _check_version(permit, if_match)
    if view.status != "pending":
        raise _invalid(permit.id, view.status, "approved")
    other = await overlapping_approved(session, permit)
    if other is not None:
        raise _workspace_conflict(permit, other)
    try:
        # The savepoint comes before the change, so a refused UPDATE leaves the
        # transaction usable for naming the other permit.
        async with session.begin_nested():
            permit.status = "approved"
            permit.decided_by, permit.decided_as = actor.nip, approver.capacity
            permit.decided_at, permit.decision_note = utcnow(), note
            await _save(session, permit)
    except IntegrityError:
        # The exclusion constraint saw an approval this transaction could not.
        await session.refresh(permit)
        other = await overlapping_approved(session, permit)
        if other is None:
            raise
        raise _workspace_conflict(permit, other) from None
    await _append(
        session,
        actor.nip,
        permit,
        "approved",
        "pending",
        {"decided_as": approver.capacity, "acting_for_unit": approver.unit_code, "note": note},
    )
    return PermitView(permit, "approved", [])


async def deny(
    session: AsyncSession, actor: Employee, permit_id: str, reason: str, if_match: int | None
) -> PermitView:
    view = await read_permit(session, actor, permit_id, for_update=True)
    permit = view.permit
    approver = _require_approver(view, actor)
    _check_version(permit, if_match)
    if view.status != "pending":
        raise _invalid(permit.id, view.status, "denied")
    permit.status = "denied"
    permit.decided_by, permit.decided_as, permit.decided_at = actor.nip, approver.capacity, utcnow()
    permit.decision_note = reason
    await _record(
        session,
        actor.nip,
        permit,
        "denied",
        "pending",
        {"decided_as": approver.capacity, "acting_for_unit": approver.unit_code, "reason": reason},
    )
    return PermitView(permit, "denied", [])


async def cancel(
    session: AsyncSession, actor: Employee, permit_id: str, reason: str | None, if_match: int | None
) -> PermitView:
    view = await read_permit(session, actor, permit_id, for_update=True)
    permit = view.permit
    if actor.nip != permit.requester_nip:
        raise Forbidden("Only the requester may cancel a permit.", code="not_requester")
    _check_version(permit, if_match)
    now = utcnow()
    if view.status not in ("pending", "approved"):
        raise _invalid(permit.id, view.status, "cancelled")
    if view.status == "approved" and now >= permit.starts_at:
        raise _invalid(
            permit.id, "approved", "cancelled", "its window has begun; an approver may revoke it"
        )
    before = permit.status
    permit.status = "cancelled"
    permit.closed_by, permit.closed_at, permit.close_reason = actor.nip, now, reason
    await _record(session, actor.nip, permit, "cancelled", before, {"reason": reason})
    return PermitView(permit, "cancelled", [])


async def revoke(
    session: AsyncSession, actor: Employee, permit_id: str, reason: str, if_match: int | None
) -> PermitView:
    view = await read_permit(session, actor, permit_id, for_update=True)
    permit = view.permit
    approver = _require_approver(view, actor)
    _check_version(permit, if_match)
    now = utcnow()
    if view.status != "approved":
        raise _invalid(permit.id, view.status, "revoked")
    if now >= permit.ends_at:
        raise _invalid(permit.id, "approved", "revoked", "its window has ended")
    permit.status = "revoked"
    permit.closed_by, permit.closed_at, permit.close_reason = actor.nip, now, reason
    await _record(
        session,
        actor.nip,
        permit,
        "revoked",
        "approved",
        {"acting_as": approver.capacity, "acting_for_unit": approver.unit_code, "reason": reason},
    )
    return PermitView(permit, "revoked", [])


# --- expiry -------------------------------------------------------------------------


async def expire_overdue(session: AsyncSession, *, batch: int = 500) -> int:
    """Record `expired` for pending permits whose window has begun. Safe on many instances.

    Rows already locked by another sweeper (or a decision) are skipped, not waited for.
    """
    now = utcnow()
    statement: Select[Permit] = (
        select(Permit)
        .where(Permit.status == "pending", Permit.starts_at <= now)
        .order_by(Permit.starts_at)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    permits = (await session.scalars(statement)).all()
    for permit in permits:
        permit.status = "expired"
        await _record(
            session,
            SYSTEM_ACTOR,
            permit,
            "expired",
            "pending",
            {"starts_at": format_instant(permit.starts_at)},
        )
    return len(permits)
