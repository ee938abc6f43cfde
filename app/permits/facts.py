"""What the permit rules read, as protocols that compose: a `Permit` and an `Employee`
satisfy them, and so do the rows read below the ORM (`app.permits.reader`,
`app.authorizations.reader`). Each rule asks for the least it reads; the check's row
(`app.authorizations.rules.Window`) extends these rather than restating them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class HasStatus(Protocol):
    """What the effective status depends on (docs/RULES.md#expiry)."""

    @property
    def status(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...


class PermitFacts(HasStatus, Protocol):
    """What reading rights and the effective status depend on (docs/RULES.md#readers)."""

    @property
    def requester_nip(self) -> str: ...
    @property
    def decided_by(self) -> str | None: ...
    @property
    def closed_by(self) -> str | None: ...
