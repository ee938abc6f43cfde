"""The check's rules as pure functions: which permit answers, with which reason, and how much
of the answer a caller may see. No I/O: the reader (`app.authorizations.reader`) fetches
the rows, the route and the fast path call these.

Rules: docs/RULES.md#check-window, docs/RULES.md#check-ranking,
docs/RULES.md#check-disclosure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args

from app.org.roles import ReaderFacts, sees_everything
from app.permits.approvers import Approver
from app.permits.facts import HasStatus, PermitFacts
from app.permits.lifecycle import effective_status
from app.permits.visibility import is_party, may_read

Reason = Literal[
    "approved",
    "no_permit",
    "pending",
    "denied",
    "revoked",
    "cancelled",
    "expired",
    "not_started",
    "ended",
    "unknown_employee",
    "unknown_workspace",
    "employee_inactive",
]
"""Every reason the check gives: the route's response model, the fast path and `evaluate`."""
REASONS: tuple[Reason, ...] = get_args(Reason)

# The ranking as data (docs/RULES.md#check-ranking): `evaluate` and the reader's SQL
# (`app.authorizations.reader`) both order by these.
COVERING_RANK: tuple[str, ...] = ("approved", "pending")
"""Among permits covering `at`, these statuses (now) come first, in this order; every other
status after them."""

COVERING_TIES: tuple[str, ...] = ("starts_at", "id")
"""Ties among covering permits of one rank: the smallest of these columns first."""
NEXT_TO_START: tuple[str, ...] = ("starts_at", "id")
"""Approved permits still to start: the smallest of these answers `not_started`."""
LAST_TO_END: tuple[str, ...] = ("ends_at", "id")
"""Approved permits that have ended: the largest of these answers `ended`."""

_covering_ties = attrgetter(*COVERING_TIES)
_next_to_start = attrgetter(*NEXT_TO_START)
_last_to_end = attrgetter(*LAST_TO_END)

UNDISCLOSED: frozenset[str] = frozenset({"unknown_employee", "employee_inactive"})
"""Reasons a plain employee is answered `no_permit` (docs/RULES.md#check-disclosure)."""


class Window(HasStatus, Protocol):
    """What the ranking looks at in a permit row (`app.authorizations.reader.Candidate`):
    its effective status (`HasStatus`), and the rest of its window."""

    @property
    def id(self) -> str: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def requester_active(self) -> bool: ...


class Shown(Window, PermitFacts, Protocol):
    """A row the disclosure rule judges: ranked, and read by the readers' rule."""


W = TypeVar("W", bound=Window)


@dataclass(frozen=True)
class Verdict(Generic[W]):
    """The check's answer: its reason, and the permit it is about (None: no permit)."""

    reason: Reason
    row: W | None = None

    @property
    def authorized(self) -> bool:
        return self.reason == "approved"


def covering_rank(status_now: str) -> int:
    """The place of a status (now) among permits covering `at`: `COVERING_RANK`, then the rest."""
    return COVERING_RANK.index(status_now) if status_now in COVERING_RANK else len(COVERING_RANK)


def covers(row: Window, at: datetime) -> bool:
    """The window holds `at`: `starts_at` ≤ `at` < `ends_at` (docs/RULES.md#check-window)."""
    return row.starts_at <= at < row.ends_at


def evaluate(rows: Iterable[W], at: datetime, now: datetime) -> Verdict[W]:
    """The answer of a pair's permits for the instant `at`, judged at the moment `now`.

    `at` picks the window, `now` the status (docs/RULES.md#check-window): a permit's status
    is its status now (`effective_status`, docs/RULES.md#expiry), whatever `at` is.
    Ranking (docs/RULES.md#check-ranking):

    1. Permits whose window covers `at` (starts_at ≤ at < ends_at): those approved now
       first, then those pending now, then every other status; ties by the earliest
       starts_at, then the smallest id. The reason is that permit's status now, except
       that an approved permit whose requester is now inactive answers `employee_inactive`.
    2. Else approved permits whose window does not cover `at`: the next to start
       (earliest starts_at after `at`, then smallest id) answers `not_started`; else the
       last to end (latest ends_at at or before `at`, then largest id) answers `ended`.
       A permit in any other status outside its window is not a candidate.
    3. Else `no_permit`, with no permit.

    The rows may come in any order and repeat; any set holding the permits these rules
    pick gives the answer every permit of the pair would give.
    """
    covering: W | None = None
    covering_key: tuple[int, Any] | None = None
    upcoming: W | None = None
    ended: W | None = None
    for row in rows:
        if covers(row, at):
            key = (covering_rank(effective_status(row, now)), _covering_ties(row))
            if covering_key is None or key < covering_key:
                covering, covering_key = row, key
        elif row.status != "approved":
            continue
        elif row.starts_at > at:
            if upcoming is None or _next_to_start(row) < _next_to_start(upcoming):
                upcoming = row
        elif ended is None or _last_to_end(row) > _last_to_end(ended):
            ended = row
    if covering is not None:
        status = effective_status(covering, now)
        if status == "approved" and not covering.requester_active:
            return Verdict("employee_inactive", covering)
        return Verdict(_reason(status), covering)
    if upcoming is not None:
        return Verdict("not_started", upcoming)
    if ended is not None:
        return Verdict("ended", ended)
    return Verdict("no_permit")


_REASON_OF: dict[str, Reason] = {reason: reason for reason in REASONS}


def _reason(status: str) -> Reason:
    """A permit status, as the reason of the same name."""
    return _REASON_OF[status]


S = TypeVar("S", bound=Shown)


def needs_approvers(verdict: Verdict[S], caller: ReaderFacts | None) -> bool:
    """Whether `disclose` needs the permit's approvers now: only for an employee who does
    not see everything and is no party of the permit (docs/RULES.md#readers)."""
    return (
        caller is not None
        and verdict.row is not None
        and verdict.reason not in UNDISCLOSED
        and not sees_everything(caller)
        and not is_party(verdict.row, caller)
    )


def disclose(
    verdict: Verdict[S], caller: ReaderFacts | None, approvers: Sequence[Approver] = ()
) -> Verdict[S]:
    """What of `verdict` the caller may see (docs/RULES.md#check-disclosure).

    Service clients (`caller` None), admins and auditors see all of it. Any other employee
    sees all of it for a permit they may read (docs/RULES.md#readers; `approvers` are the
    permit's approvers now, needed only when the caller is no party of it); for one they
    may not read, no permit, and only `approved` or `no_permit`. `unknown_employee` and
    `employee_inactive` are `no_permit` to them.
    """
    if caller is None or sees_everything(caller):
        return verdict
    if verdict.reason in UNDISCLOSED:
        return Verdict("no_permit")
    if verdict.row is None or may_read(verdict.row, caller, approvers):
        return verdict
    return Verdict("approved" if verdict.authorized else "no_permit")
