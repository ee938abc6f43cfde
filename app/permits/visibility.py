"""Who may read a permit (docs/RULES.md#readers): one rule for reads, lists, the check's
disclosure and every later path that shows a permit.

Readers: its requester, whoever decided or closed it, anyone who may decide or revoke
it now (its approvers now), auditors and admins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, or_
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from app.org.models import Employee
from app.org.roles import ReaderFacts, sees_everything
from app.permits.approvers import Approver, resolve_approvers
from app.permits.facts import PermitFacts
from app.permits.models import Permit
from app.permits.repository import get_permit


def is_party(permit: PermitFacts, reader: ReaderFacts) -> bool:
    """The requester, or whoever decided or closed the permit."""
    return reader.nip in (permit.requester_nip, permit.decided_by, permit.closed_by)


def party_condition(nip: str) -> ColumnElement[bool]:
    """`is_party` as SQL: the permits `nip` requested, decided or closed."""
    return or_(Permit.requester_nip == nip, Permit.decided_by == nip, Permit.closed_by == nip)


def may_read(permit: PermitFacts, reader: ReaderFacts, approvers: Sequence[Approver]) -> bool:
    """Whether `reader` may read `permit`, given its approvers now."""
    return (
        sees_everything(reader)
        or is_party(permit, reader)
        or any(a.nip == reader.nip for a in approvers)
    )


async def visible_permit(
    session: AsyncSession, reader: Employee, permit_id: str, at: datetime, *, for_update: bool
) -> tuple[Permit, list[Approver]]:
    """The permit and its approvers at `at`, if `reader` may read it; 404 otherwise, as
    for a permit that does not exist (no existence leak)."""
    permit = await get_permit(session, permit_id, for_update=for_update)
    if permit is not None:
        approvers = await resolve_approvers(session, permit, at)
        if may_read(permit, reader, approvers):
            return permit, approvers
    raise NotFound(f"Permit {permit_id} does not exist.")
