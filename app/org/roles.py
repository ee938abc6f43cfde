"""What an employee's roles let them read (docs/RULES.md#roles): admins and auditors read
everything — every permit, every employee record, the audit trail. One predicate, for the
organisation's records, the permits' readers and the auditor-or-admin routes alike.
"""

from __future__ import annotations

from typing import Protocol


class ReaderFacts(Protocol):
    """Who asks: an `Employee`, or a caller read below the ORM (docs/RULES.md#readers)."""

    @property
    def nip(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def is_auditor(self) -> bool: ...


def sees_everything(reader: ReaderFacts) -> bool:
    """Admins and auditors read every permit, employee record and audit event
    (docs/RULES.md#readers)."""
    return reader.is_admin or reader.is_auditor
