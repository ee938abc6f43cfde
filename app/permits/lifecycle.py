"""The permit's lifecycle (docs/RULES.md#states): its effective state, computed in one place.

A pending permit whose `starts_at` has passed is expired on every read and every
decision attempt, whether or not the sweep has recorded it
(docs/RULES.md#expiry).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class HasStatus(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...


def is_overdue(permit: HasStatus, now: datetime) -> bool:
    """Still recorded `pending` although its window began (docs/RULES.md#expiry)."""
    return permit.status == "pending" and now >= permit.starts_at


def effective_status(permit: HasStatus, now: datetime) -> str:
    """The permit's status at `now` (docs/RULES.md#expiry)."""
    return "expired" if is_overdue(permit, now) else permit.status
