"""`GET /api/v1/permits`: the permits a caller may see, filtered, keyset-paginated by id.

Who sees what is `app.permits.visibility` (docs/RULES.md#readers). For a caller who does
not see everything, candidates are first narrowed in SQL to the permits they are a party to
and those of the units they head or deputise for (and the units below them, where decisions
escalate to); each candidate is then checked exactly with `may_read`. Statuses are the
effective ones (`app.permits.lifecycle.status_condition`, docs/RULES.md#expiry).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.org.models import Delegation, Employee, Unit
from app.org.roles import sees_everything
from app.pagination import PageRequest, encode_cursor
from app.permits.approvers import Approver, ApproverResolver
from app.permits.lifecycle import effective_status, status_condition
from app.permits.models import Permit
from app.permits.presentation import present
from app.permits.schemas import PermitOut
from app.permits.visibility import may_read, party_condition
from app.permits.vocabulary import Status
from app.schemas import FilterText
from app.timeutil import InstantIn, utcnow

SCAN_BATCH = 200
"""Rows read at a time where many of them may be passed over (`list_visible`)."""


class Filters(BaseModel):
    """Which permits a caller asks for, each filter optional: the list's query, as the route
    declares it (`app.permits.dependencies.ListFilters`)."""

    model_config = ConfigDict(frozen=True)

    status: Status | None = None
    workspace_code: FilterText | None = None
    unit_code: FilterText | None = None
    requester_nip: FilterText | None = None
    from_: InstantIn | None = Field(None, alias="from", description="Windows ending after this.")
    to: InstantIn | None = Field(None, description="Windows starting before this.")
    awaiting: Literal["me"] | None = Field(
        None, description="`me`: pending permits you may decide."
    )

    @property
    def awaiting_me(self) -> bool:
        return self.awaiting == "me"


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
        statement = statement.where(status_condition(filters.status, now))
    if filters.awaiting_me:
        statement = statement.where(status_condition("pending", now))
    if filters.workspace_code is not None:
        statement = statement.where(Permit.workspace_code == filters.workspace_code)
    if filters.unit_code is not None:
        statement = statement.where(Permit.unit_code == filters.unit_code)
    if filters.requester_nip is not None:
        statement = statement.where(Permit.requester_nip == filters.requester_nip)
    if filters.to is not None:
        statement = statement.where(Permit.starts_at < filters.to)
    if filters.from_ is not None:
        statement = statement.where(Permit.ends_at > filters.from_)
    return statement


async def list_visible(
    session: AsyncSession, employee: Employee, filters: Filters, page: PageRequest
) -> tuple[list[PermitOut], str | None]:
    """One page of the permits `employee` may read that match `filters`, oldest id first."""
    now = utcnow()
    statement = _filtered(filters, now)
    privileged = sees_everything(employee)
    exact_check = filters.awaiting_me or not privileged
    if exact_check:
        units = await units_deciding_for(session, employee.nip, now)
        candidates: ColumnElement[bool] = Permit.unit_code.in_(units)
        if not filters.awaiting_me:
            candidates = or_(party_condition(employee.nip), candidates)
        statement = statement.where(candidates)
    last = page.after()
    resolver = ApproverResolver(session, now)  # each unit read once for the whole page
    # An admin's or auditor's rows are all visible: read a page and one more, so that a
    # page costs the ORM objects it shows. Others' rows are checked one by one and many
    # may be passed over (a parent unit's head sees a child unit's permits only when
    # they escalate), so those are read in larger batches.
    batch = SCAN_BATCH if exact_check else page.limit + 1
    shown: list[PermitOut] = []
    while True:
        query = statement if last is None else statement.where(Permit.id > last)
        rows = (await session.scalars(query.order_by(Permit.id).limit(batch))).all()
        for permit in rows:
            last = permit.id
            status = effective_status(permit, now)
            # Approvers cost queries: resolve them only where they matter, for the
            # `approvers` of pending permits, or to decide what a non-privileged caller sees.
            approvers: list[Approver] = []
            if status == "pending" or exact_check:
                approvers = await resolver.resolve(permit)
            if filters.awaiting_me and not (
                status == "pending" and any(a.nip == employee.nip for a in approvers)
            ):
                continue
            if not may_read(permit, employee, approvers):
                continue
            if len(shown) == page.limit:
                # One more visible permit exists: the page ends at the one before it. (Rows
                # the query found but the caller may not see never promise a next page.)
                return shown, encode_cursor(shown[-1].id)
            shown.append(present(permit, status, approvers))
        if len(rows) < batch:
            return shown, None
