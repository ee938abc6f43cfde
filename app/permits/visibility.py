"""Who may read a permit (docs/RULES.md#readers): one rule for reads, lists, the check's
disclosure and every later path that shows a permit.

Readers: its requester, whoever decided or closed it, anyone who may decide or revoke
it now (its approvers now), auditors and admins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from app.permits.approvers import Approver


class PermitFacts(Protocol):
    """What reading rights and the effective status depend on: a `Permit`, or a row read
    below the ORM (`app.permits.reader`, `app.authorizations.reader`)."""

    @property
    def status(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def requester_nip(self) -> str: ...
    @property
    def decided_by(self) -> str | None: ...
    @property
    def closed_by(self) -> str | None: ...


class ReaderFacts(Protocol):
    """Who asks: an `Employee`, or a caller read below the ORM."""

    @property
    def nip(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def is_auditor(self) -> bool: ...


def sees_everything(reader: ReaderFacts) -> bool:
    """Admins and auditors read every permit (docs/RULES.md#readers)."""
    return reader.is_admin or reader.is_auditor


def is_party(permit: PermitFacts, reader: ReaderFacts) -> bool:
    """The requester, or whoever decided or closed the permit."""
    return reader.nip in (permit.requester_nip, permit.decided_by, permit.closed_by)


def may_read(permit: PermitFacts, reader: ReaderFacts, approvers: Sequence[Approver]) -> bool:
    """Whether `reader` may read `permit`, given its approvers now."""
    return (
        sees_everything(reader)
        or is_party(permit, reader)
        or any(a.nip == reader.nip for a in approvers)
    )
