"""`GET /api/v1/permits`: the permits a caller may see, filtered, keyset-paginated by id.

Admins and auditors see every permit. Anyone else sees their own permits, the
ones they decided or closed, and those they may decide now — found by first
narrowing to the units they head or deputise for (and the units below them,
where decisions escalate to), then checking each candidate exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput, field_error
from app.org.models import Delegation, Employee, Unit
from app.pagination import decode_cursor, encode_cursor
from app.permits.approvers import Approver, ApproverResolver
from app.permits.lifecycle import effective_status
from app.permits.models import Permit
from app.permits.service import PermitView
from app.timeutil import utcnow

SCAN_BATCH = 200
"""Rows read at a time where many of them may be passed over (`list_visible`)."""


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    workspace_code: str | None = None
    unit_code: str | None = None
    requester_nip: str | None = None
    starts_before: datetime | None = None
    ends_after: datetime | None = None
    awaiting_me: bool = False


def _status_clause(status: str, now: datetime) -> object:
    # `expired` is also every pending permit whose window has begun.
    if status == "pending":
        return and_(Permit.status == "pending", Permit.starts_at > now)
    if status == "expired":
        return or_(
            Permit.status == "expired", and_(Permit.status == "pending", Permit.starts_at <= now)
        )
    return Permit.status == status


async def units_deciding_for(session: AsyncSession, nip: str, now: datetime) -> set[str]:
    """Units whose permits `nip` might decide: those they head or deputise for, and all below."""
    own = set((await session.scalars(select(Unit.code).where(Unit.head_nip == nip))).all()) | set(
        (
            await session.scalars(
                select(Delegation.unit_code).where(
                    Delegation.delegate_nip == nip,
                    Delegation.revoked_at.is_(None),
                    Delegation.starts_at <= now,
                    Delegation.ends_at > now,
                )
            )
        ).all()
    )
    if not own:
        return own
    children: dict[str, list[str]] = {}
    for code, parent in (await session.execute(select(Unit.code, Unit.parent_code))).all():
        if parent is not None:
            children.setdefault(parent, []).append(code)
    found, stack = set(own), list(own)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _filtered(filters: Filters, now: datetime) -> Select[Permit]:
    statement = select(Permit)
    if filters.status is not None:
        statement = statement.where(_status_clause(filters.status, now))  # type: ignore[arg-type]
    if filters.awaiting_me:
        statement = statement.where(_status_clause("pending", now))  # type: ignore[arg-type]
    if filters.workspace_code is not None:
        statement = statement.where(Permit.workspace_code == filters.workspace_code)
    if filters.unit_code is not None:
        statement = statement.where(Permit.unit_code == filters.unit_code)
    if filters.requester_nip is not None:
        statement = statement.where(Permit.requester_nip == filters.requester_nip)
    if filters.starts_before is not None:
        statement = statement.where(Permit.starts_at < filters.starts_before)
    if filters.ends_after is not None:
        statement = statement.where(Permit.ends_at > filters.ends_after)
    return statement


async def list_visible(
    session: AsyncSession,
    employee: Employee,
    filters: Filters,
    *,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[PermitView], str | None]:
    now = utcnow()
    statement = _filtered(filters, now)
    privileged = employee.is_admin or employee.is_auditor
    exact_check = filters.awaiting_me or not privileged
    if exact_check:
        units = await units_deciding_for(session, employee.nip, now)
        if filters.awaiting_me:
            statement = statement.where(Permit.unit_code.in_(units))
        else:
            statement = statement.where(
                or_(
                    Permit.requester_nip == employee.nip,
                    Permit.decided_by == employee.nip,
                    Permit.closed_by == employee.nip,
                    Permit.unit_code.in_(units),
                )
            )
    last: str | None = None
    if cursor is not None:
        decoded = decode_cursor(cursor)
        if not isinstance(decoded, str):
            raise InvalidInput(
                "The cursor is not one this service issued.",
                code="invalid_cursor",
                errors=[field_error(["query", "cursor"], "unrecognised cursor", "invalid_cursor")],
            )
        last = decoded
    resolver = ApproverResolver(session, now)  # each unit read once for the whole page
    # An admin's or auditor's rows are all visible: read a page and one more, so that a
    # page costs the ORM objects it shows. Others' rows are checked one by one and many
    # may be passed over (a parent unit's head sees a child unit's permits only when
    # they escalate), so those are read in larger batches.
    batch = SCAN_BATCH if exact_check else limit + 1
    views: list[PermitView] = []
    while True:
        page = statement if last is None else statement.where(Permit.id > last)
        rows = (await session.scalars(page.order_by(Permit.id).limit(batch))).all()
        for permit in rows:
            last = permit.id
            status = effective_status(permit, now)
            # Approvers cost queries: resolve them only where they matter, for the
            # `approvers` of pending permits, or to decide what a non-privileged caller sees.
            approvers: list[Approver] = []
            if status == "pending" or exact_check:
                approvers = await resolver.resolve(
                    unit_code=permit.unit_code, requester_nip=permit.requester_nip
                )
            view = PermitView(permit, status, approvers)
            may_decide = any(a.nip == employee.nip for a in approvers)
            if filters.awaiting_me and not (may_decide and status == "pending"):
                continue
            if exact_check and not (
                may_decide
                or employee.nip in (permit.requester_nip, permit.decided_by, permit.closed_by)
                or privileged
            ):
                continue
            if len(views) == limit:
                # One more visible permit exists: the page ends at the one before it. (Rows
                # the query found but the caller may not see never promise a next page.)
                return views, encode_cursor(views[-1].permit.id)
            views.append(view)
        if len(rows) < batch:
            return views, None
