"""The permit's lifecycle: its transitions as one table (`TRANSITIONS`), the one function that
applies a row of it (`apply_transition`), and the permit's effective state, computed in one
place (`effective_status`, and `status_condition` for SQL).

States and transitions: docs/RULES.md#states, docs/RULES.md#transitions. Rows taken by the
system are driven by time: they hold on every read and every decision attempt whether or
not the sweep (`expire_overdue`) has recorded them yet (docs/RULES.md#expiry).

Concurrency: `apply_transition` locks the permit's row, so of any number of concurrent
transitions of one permit exactly one finds it in the state it needs. Two approved permits
of one workspace never overlap (docs/RULES.md#workspace-conflict): checked here for a clear
answer, and on PostgreSQL enforced by an exclusion constraint for the race this check
cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, func, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import SYSTEM_ACTOR
from app.errors import AppError, Conflict, Forbidden, NotFound
from app.org.models import Employee
from app.permits import events, status_list
from app.permits.approvers import ESCALATE_BEFORE, REMIND_BEFORE, Approver, ApproverResolver
from app.permits.facts import HasStatus
from app.permits.models import Permit
from app.permits.repository import get_permit, overlapping_approved
from app.permits.visibility import visible_permit
from app.permits.vocabulary import STATUSES
from app.timeutil import format_instant, utcnow


class Party(Enum):
    """Who may take a transition (docs/RULES.md#approvers)."""

    APPROVER = "an approver of the permit now, never its requester"
    REQUESTER = "the permit's requester"
    SYSTEM = "the service itself, when time makes it so"


class Writes(Enum):
    """What a transition writes besides the status, the version and `updated_at`."""

    DECIDES = "decided_by, decided_as, decided_at, decision_note"
    CLOSES = "closed_by, closed_at, close_reason"
    STATUS = "nothing else"


@dataclass(frozen=True)
class Window:
    """A guard on the permit's window: `now` before (or from) one of its instants."""

    instant: Literal["starts_at", "ends_at"]
    before: bool
    refusal: str  # why not, in the `invalid_transition` problem

    def holds(self, permit: object, now: datetime) -> bool:
        at: datetime = getattr(permit, self.instant)
        return now < at if self.before else now >= at

    def condition(self, now: datetime) -> ColumnElement[bool]:
        """The same guard as SQL, for lists and the sweep."""
        at = getattr(Permit, self.instant)
        return at > now if self.before else at <= now  # type: ignore[no-any-return]

    def sql(self, table: str, now: str) -> str:
        """The same guard as raw SQL over `table`'s columns, `now` being a parameter."""
        return f"{table}.{self.instant} {'>' if self.before else '<='} {now}"


@dataclass(frozen=True)
class WorkspaceFree:
    """The guard of an approval: no other approved permit of the workspace overlaps the
    window (docs/RULES.md#workspace-conflict)."""


UNSTARTED = Window("starts_at", True, "its window has begun; an approver may revoke it")
UNENDED = Window("ends_at", True, "its window has ended")
STARTED = Window("starts_at", False, "its window has not begun")
NO_OVERLAP = WorkspaceFree()

APPROVER, REQUESTER, SYSTEM = Party.APPROVER, Party.REQUESTER, Party.SYSTEM
DECIDES, CLOSES, STATUS = Writes.DECIDES, Writes.CLOSES, Writes.STATUS


Guard = Window | WorkspaceFree | None
Text = Literal["note", "reason"] | None


@dataclass(frozen=True)
class Transition:
    source: str
    action: str
    target: str
    by: Party
    writes: Writes
    audit: str  # the audit event's action
    guard: Guard
    text: Text  # the request's text: recorded as, and in the event


_Row = tuple[str, str, str, Party, Writes, str, Guard, Text]  # a `Transition`'s fields

_ROWS: tuple[_Row, ...] = (
    # from, action, to, by, writes, audit action, guard, text (the request's, recorded as)
    ("pending", "approve", "approved", APPROVER, DECIDES, "permit.approved", NO_OVERLAP, "note"),
    ("pending", "deny", "denied", APPROVER, DECIDES, "permit.denied", None, "reason"),
    ("pending", "cancel", "cancelled", REQUESTER, CLOSES, "permit.cancelled", None, "reason"),
    ("approved", "cancel", "cancelled", REQUESTER, CLOSES, "permit.cancelled", UNSTARTED, "reason"),
    ("approved", "revoke", "revoked", APPROVER, CLOSES, "permit.revoked", UNENDED, "reason"),
    ("pending", "expire", "expired", SYSTEM, STATUS, "permit.expired", STARTED, None),
)  # fmt: skip
TRANSITIONS: tuple[Transition, ...] = tuple(Transition(*row) for row in _ROWS)
ACTIONS: dict[str, tuple[Transition, ...]] = {
    action: tuple(t for t in TRANSITIONS if t.action == action)
    for action in dict.fromkeys(t.action for t in TRANSITIONS)
}
_BY_TIME: tuple[tuple[Transition, Window], ...] = tuple(
    (t, t.guard) for t in TRANSITIONS if t.by is SYSTEM and isinstance(t.guard, Window)
)
"""The rows time takes (the system's), each with its window guard: what `effective_status`
and its SQL forms apply."""


# --- the effective state (docs/RULES.md#expiry) -------------------------------------------


def effective_status(permit: HasStatus, now: datetime) -> str:
    """The permit's status at `now`: the recorded one, moved on by every row of the table
    that time has made due, whether or not the sweep has recorded it."""
    for transition, window in _BY_TIME:
        if permit.status == transition.source and window.holds(permit, now):
            return transition.target
    return permit.status


def is_overdue(permit: HasStatus, now: datetime) -> bool:
    """Still recorded `pending` although its window began."""
    return effective_status(permit, now) != permit.status


def status_condition(status: str, now: datetime) -> ColumnElement[bool]:
    """SQL for "the effective status at `now` is `status`", from the same rows as
    `effective_status`: recorded so and not moved on by time, or moved there by time."""
    stays = and_(
        Permit.status == status,
        *(not_(w.condition(now)) for t, w in _BY_TIME if t.source == status),
    )
    arrives = [
        and_(Permit.status == t.source, w.condition(now)) for t, w in _BY_TIME if t.target == status
    ]
    return or_(stays, *arrives)


def status_column(now: datetime) -> ColumnElement[str]:
    """SQL for the effective status at `now` as a value (for counting by status), from
    the same rows as `effective_status`."""
    return case(
        *((and_(Permit.status == t.source, w.condition(now)), t.target) for t, w in _BY_TIME),
        else_=Permit.status,
    )


async def count_by_status(session: AsyncSession, now: datetime) -> dict[str, int]:
    """How many permits have each status at `now` (every status, zero included)."""
    status = status_column(now)
    rows = await session.execute(select(status, func.count()).group_by(status))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(name): int(count) for name, count in rows})
    return counts


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """SQL for the permits whose recorded status time has moved on (what the sweep records)."""
    return or_(*(and_(Permit.status == t.source, w.condition(now)) for t, w in _BY_TIME))


def effective_status_sql(table: str, now: str) -> str:
    """`effective_status` as a raw SQL expression over `table`'s columns, `now` being a
    parameter: for the statements of the hot reads (`app.authorizations.reader`)."""
    cases = " ".join(
        f"WHEN {table}.status = '{t.source}' AND {w.sql(table, now)} THEN '{t.target}'"
        for t, w in _BY_TIME
    )
    return f"CASE {cases} ELSE {table}.status END"


# --- applying a transition (docs/RULES.md#transitions) -------------------------------------


class PreconditionFailed(AppError):
    status, code, title = 412, "version_mismatch", "Precondition failed"


async def apply_transition(
    session: AsyncSession,
    permit_id: str,
    action: str,
    *,
    by: Employee | None = None,
    text: str | None = None,
    if_match: int | None = None,
) -> Permit:
    """Take `action` on the permit, by `by` (None: the system), in the caller's transaction:
    lock the row, judge who may take it, `If-Match` (docs/RULES.md#if-match) and the table
    on the effective state, then write the row and its audit event."""
    rows = ACTIONS[action]
    party = rows[0].by  # one party per action: tests/test_permit_lifecycle.py holds it so
    now = utcnow()
    approver: Approver | None = None
    if by is None:
        if party is not SYSTEM:
            raise ValueError(f"{action} is taken by {party.value}, not by the system")
        permit = await get_permit(session, permit_id, for_update=True)
        if permit is None:
            raise NotFound(f"Permit {permit_id} does not exist.")
    else:
        permit, approvers = await visible_permit(session, by, permit_id, now, for_update=True)
        approver = _authorised(party, permit, by, approvers, action)
    _check_version(permit, if_match)
    # People act on the effective state; the system records it, so it reads the stored one.
    state = permit.status if party is SYSTEM else effective_status(permit, now)
    row = next((t for t in rows if t.source == state), None)
    if row is None:
        raise _invalid(permit.id, state, rows[0].target)
    if isinstance(row.guard, Window) and not row.guard.holds(permit, now):
        raise _invalid(permit.id, state, row.target, row.guard.refusal)

    # An approved permit gets its status list entry (docs/RULES.md#status-lists).
    entry = await status_list.allot(session) if row.target == "approved" else None

    def change() -> None:
        permit.status = row.target
        if entry is not None:
            permit.status_list, permit.status_idx = entry
        actor = by.nip if by is not None else None
        if row.writes is DECIDES:
            permit.decided_by, permit.decided_at, permit.decision_note = actor, now, text
            permit.decided_as = approver.capacity if approver is not None else None
        elif row.writes is CLOSES:
            permit.closed_by, permit.closed_at, permit.close_reason = actor, now, text
        permit.version += 1
        permit.updated_at = now

    await _save(session, permit, change, books_workspace=row.guard is NO_OVERLAP)
    # The event comes last: its append holds the audit chain's lock until the commit.
    await events.record(
        session,
        permit,
        actor=by.nip if by is not None else SYSTEM_ACTOR,
        action=row.audit,
        data=_event_data(row, state, permit, approver, text),
        status=permit.status,
        approvers=[],  # no target of the table is `pending`: a decided permit has none
    )
    return permit


async def expire_overdue(session: AsyncSession, *, batch: int = 500) -> int:
    """Record `expired` for up to `batch` pending permits whose window has begun, through
    `apply_transition`; the number recorded. Safe on many instances: rows another sweeper
    (or a decision) holds are skipped, not waited for (PostgreSQL; SQLite has one writer)."""
    statement = (
        select(Permit.id).where(overdue_condition(utcnow())).order_by(Permit.starts_at).limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    permit_ids = (await session.scalars(statement)).all()
    for permit_id in permit_ids:
        await apply_transition(session, permit_id, "expire")
    return len(permit_ids)


@dataclass(frozen=True)
class Notice:
    """What a permit still pending gets once as its start nears (docs/RULES.md#escalation):
    an audit event (and its webhook messages) by the system, recorded by the sweep once the
    permit is within the policy's lead (`lead`, a key of the session's `info`) of its start,
    and before it starts. Escalation itself holds by time alone
    (`app.permits.approvers.is_escalated`): the event records when it began to."""

    action: str
    lead: str
    recorded: Literal["reminded_at", "escalated_at"]


NOTICES = (
    Notice("permit.reminder", REMIND_BEFORE, "reminded_at"),
    Notice("permit.escalated", ESCALATE_BEFORE, "escalated_at"),
)


async def record_notices(session: AsyncSession, *, batch: int = 500) -> int:
    """Record up to `batch` due notices of each kind; how many. Safe on many instances:
    a notice is recorded with the row locked and only where none was, so each once
    (PostgreSQL skips rows another sweep holds; SQLite has one writer)."""
    now, count = utcnow(), 0
    for notice in NOTICES:
        lead: timedelta | None = session.info.get(notice.lead)
        if lead is None:
            continue
        recorded = getattr(Permit, notice.recorded)
        statement = (
            select(Permit)
            .where(status_condition("pending", now), Permit.starts_at <= now + lead)
            .where(recorded.is_(None))
            .order_by(Permit.starts_at)
            .limit(batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        resolver = ApproverResolver(session, now)
        for permit in (await session.scalars(statement)).all():
            setattr(permit, notice.recorded, now)
            approvers = await resolver.resolve(permit)
            data: dict[str, Any] = {"starts_at": format_instant(permit.starts_at)}
            if notice.recorded == "reminded_at":
                data["approvers"] = [a.nip for a in approvers]
            else:
                before = {a.nip for a in await resolver.resolve(permit, escalated=False)}
                data["added_approvers"] = [a.nip for a in approvers if a.nip not in before]
            await events.record(
                session,
                permit,
                actor=SYSTEM_ACTOR,
                action=notice.action,
                data=data,
                status="pending",
                approvers=approvers,
            )
            count += 1
    return count


def _authorised(
    party: Party, permit: Permit, by: Employee, approvers: list[Approver], action: str
) -> Approver | None:
    """The capacity `by` acts in (approvers), or the problem why they may not act."""
    if party is REQUESTER:
        if by.nip != permit.requester_nip:
            raise Forbidden(f"Only the requester may {action} a permit.", code="not_requester")
        return None
    if party is SYSTEM:
        raise ValueError(f"{action} is taken by the system, not by {by.nip}")
    mine = next((a for a in approvers if a.nip == by.nip), None)
    if mine is not None:
        return mine
    if by.nip == permit.requester_nip:
        raise Forbidden("Nobody decides their own permit.", code="self_decision_forbidden")
    if not approvers:
        raise Conflict(
            f"Nobody can decide permit {permit.id}: no head or delegate other than the requester "
            f"up to the top of the hierarchy above {permit.unit_code}.",
            code="no_approver",
        )
    raise Forbidden(
        f"Only the approvers of permit {permit.id} may decide it "
        f"({', '.join(a.nip for a in approvers)}).",
        code="not_an_approver",
    )


def _check_version(permit: Permit, if_match: int | None) -> None:
    if if_match is not None and if_match != permit.version:
        raise PreconditionFailed(
            f"Permit {permit.id} is at version {permit.version}, not {if_match}; read it again.",
            current_version=permit.version,
        )


def _invalid(permit_id: str, status: str, target: str, why: str = "") -> Conflict:
    detail = f"Permit {permit_id} is {status}; it cannot be {target}"
    return Conflict(
        detail + (f" ({why})." if why else "."), code="invalid_transition", current_status=status
    )


async def _save(
    session: AsyncSession, permit: Permit, change: Callable[[], None], *, books_workspace: bool
) -> None:
    if not books_workspace:
        change()
        await session.flush()
        return
    other = await overlapping_approved(session, permit)
    if other is not None:
        raise _workspace_conflict(permit, other)
    try:
        # The savepoint comes before the change, so a refused UPDATE leaves the
        # transaction usable for naming the other permit.
        async with session.begin_nested():
            change()
            await session.flush()
    except IntegrityError:
        # The exclusion constraint saw an approval this transaction could not.
        await session.refresh(permit)
        other = await overlapping_approved(session, permit)
        if other is None:
            raise
        raise _workspace_conflict(permit, other) from None


def _workspace_conflict(permit: Permit, other: Permit) -> Conflict:
    return Conflict(
        f"Workspace {permit.workspace_code} is already booked by approved permit {other.id} "
        f"({format_instant(other.starts_at)} to {format_instant(other.ends_at)}).",
        code="workspace_conflict",
        conflicting_permit_id=other.id,
    )


def _event_data(
    row: Transition, before: str, permit: Permit, approver: Approver | None, text: str | None
) -> dict[str, Any]:
    """The event's `data`, a public contract (docs/AUDIT.md): from, to, version; the
    approver's capacity and unit; the request's text; for the system, the instant that
    made the transition due."""
    data: dict[str, Any] = {"from": before, "to": permit.status, "version": permit.version}
    if approver is not None:
        data["decided_as" if row.writes is DECIDES else "acting_as"] = approver.capacity
        data["acting_for_unit"] = approver.unit_code
    if row.text is not None:
        data[row.text] = text
    if row.by is SYSTEM and isinstance(row.guard, Window):
        data[row.guard.instant] = format_instant(getattr(permit, row.guard.instant))
    return data
