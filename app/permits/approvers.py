"""Who may decide a permit (docs/RULES.md#approvers).

The head of the unit that owns the workspace, and every active employee holding
a delegation (Plh/Plt) in force for that unit at decision time. If the requester
is one of them — or the unit has nobody who could decide — the decision moves
up to the parent unit, and so on. Nobody ever decides their own permit.

Escalation (docs/RULES.md#escalation): a permit still pending within
`POLICY_ESCALATE_BEFORE_START_MINUTES` of its start has, beside those approvers, the
approvers one level above the unit whose approvers they are (the head there as
`parent_head`, its delegates as `plh`/`plt`). It holds by time on every read and decision,
like expiry, whether or not the sweep has recorded it (`is_escalated`). The policy's lead
travels with the sessions (`session_policy`) and the hot readers, so every path applies the
same rule.

One statement reads a unit and all its ancestors with their deciders (`chain`);
`approvers` picks from what it read. The ORM path (`ApproverResolver`) and the
permit read's fast path (`app.permits.reader`) share both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import UTCDateTime
from app.org.models import CODE_LENGTH

MAX_DEPTH = 32  # units form a tree; this only guards against a corrupted one


@dataclass(frozen=True)
class Approver:
    nip: str
    capacity: str  # head, plh, plt or parent_head
    unit_code: str


def chain(start: str) -> str:
    """The deciders of the unit `start` names (an SQL expression) and of its ancestors.

    A row per unit and delegation in force at `:at`, or one row for a unit without
    any: the unit's depth (0 for `start`), code, parent, head and whether the head
    is active, the delegate, the kind and whether the delegate is active. Ordered
    by depth, then by delegation start. A unit that does not exist has a row with
    only its depth and nothing else. Columns are named `chain_*`, so the statement
    can sit beside others.
    """
    return (
        "WITH RECURSIVE up(depth, code) AS ("  # noqa: S608 (constants only)
        f"SELECT 0, CAST({start} AS VARCHAR({CODE_LENGTH})) UNION ALL "
        f"SELECT up.depth + 1, CAST(u.parent_code AS VARCHAR({CODE_LENGTH})) "
        "FROM up JOIN units AS u ON u.code = up.code "
        f"WHERE u.parent_code IS NOT NULL AND up.depth < {MAX_DEPTH - 1}) "
        "SELECT up.depth AS chain_depth, u.code AS chain_code, u.parent_code AS chain_parent, "
        "u.head_nip AS chain_head, "
        "(SELECT h.active FROM employees AS h WHERE h.nip = u.head_nip) AS chain_head_active, "
        "d.delegate_nip AS chain_delegate, d.kind AS chain_kind, "
        "(SELECT e.active FROM employees AS e WHERE e.nip = d.delegate_nip) "
        "AS chain_delegate_active, d.starts_at AS chain_since, d.id AS chain_delegation "
        "FROM up "
        "LEFT JOIN units AS u ON u.code = up.code "
        "LEFT JOIN delegations AS d ON d.unit_code = u.code AND d.revoked_at IS NULL "
        "AND d.starts_at <= :at AND d.ends_at > :at"
    )


def may_decide(nip: str, at: str) -> str:
    """Whether the employee `nip` names (an SQL expression) could decide some permit at
    `at` or at any later instant until the next commit: they head a unit, or hold a
    delegation that is not revoked and not over (one still to start counts). Nobody else is
    any permit's approver (`chain` finds only heads and delegates in force), so a reader may
    skip reading a permit's approvers for them: the answer is the same. No employee (a
    service client's check): false, without looking."""
    return (
        f"({nip} IS NOT NULL AND (EXISTS (SELECT 1 FROM units AS mu WHERE mu.head_nip = {nip}) "  # noqa: S608 (constants only)
        "OR EXISTS (SELECT 1 FROM delegations AS md "
        f"WHERE md.delegate_nip = {nip} AND md.revoked_at IS NULL AND md.ends_at > {at})))"
    )


CHAIN_COLUMNS = 10
CHAIN_ORDER = "chain_depth, chain_since, chain_delegation"

_CHAIN_OF_CODE = text(f"{chain(':code')} ORDER BY {CHAIN_ORDER}").bindparams(
    bindparam("at", type_=UTCDateTime())
)


@dataclass(frozen=True)
class UnitDeciders:
    parent_code: str | None
    deciders: list[Approver]  # the head (if active) as "head", then delegates in force


def units_of(rows: Iterable[Sequence[Any]]) -> dict[str, UnitDeciders]:
    """The units in rows of `chain` (its columns first, in its order), by code."""
    heads: dict[str, tuple[str | None, list[Approver]]] = {}
    for _depth, code, parent, head, head_active, delegate, kind, active, *_ in rows:
        if code is None:
            continue  # a unit that does not exist: the walk stops there
        if code not in heads:
            deciders = [Approver(head, "head", code)] if head is not None and head_active else []
            heads[code] = (parent, deciders)
        deciders = heads[code][1]
        if delegate is not None and active and all(d.nip != delegate for d in deciders):
            deciders.append(Approver(delegate, kind, code))
    return {code: UnitDeciders(parent, deciders) for code, (parent, deciders) in heads.items()}


class Decidable(Protocol):
    """What a permit's approvers depend on (a `Permit`, or a row read below the ORM)."""

    @property
    def unit_code(self) -> str: ...
    @property
    def requester_nip(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...


REMIND_BEFORE = "izs.remind_before"
ESCALATE_BEFORE = "izs.escalate_before"
"""Keys of the policy's leads (a `timedelta`, or None: off) in a session's `info`."""


def session_policy(
    remind_before_minutes: int, escalate_before_minutes: int
) -> dict[str, timedelta | None]:
    """The `info` every session of the service carries (`app.db.Database.connect`): how long
    before its start a pending permit is reminded of, and escalated."""
    return {
        REMIND_BEFORE: timedelta(minutes=remind_before_minutes) or None,
        ESCALATE_BEFORE: timedelta(minutes=escalate_before_minutes) or None,
    }


def is_escalated(permit: Decidable, at: datetime, before: timedelta | None) -> bool:
    """Escalated at `at`: recorded `pending` and within `before` of its start. (Once it
    has expired nobody decides it, and those it was escalated to keep reading it.)"""
    return before is not None and permit.status == "pending" and at >= permit.starts_at - before


def approvers_of(
    units: Mapping[str, UnitDeciders],
    permit: Decidable,
    at: datetime,
    escalate_before: timedelta | None,
) -> list[Approver]:
    """Who may decide `permit` at `at`, from `units` holding its unit and the ancestors."""
    return approvers(
        units,
        unit_code=permit.unit_code,
        requester_nip=permit.requester_nip,
        escalated=is_escalated(permit, at, escalate_before),
    )


def _deciding_unit(
    units: Mapping[str, UnitDeciders], code: str | None, requester_nip: str
) -> tuple[str, list[Approver], bool] | None:
    """From `code` up, the first unit with deciders other than the requester: its code, its
    deciders, and whether it is above `code`."""
    above = False
    for _ in range(MAX_DEPTH):
        unit = units.get(code) if code is not None else None
        if unit is None:
            return None
        if unit.deciders and all(d.nip != requester_nip for d in unit.deciders):
            return code, unit.deciders, above  # type: ignore[return-value]
        code, above = unit.parent_code, True
    return None


def _as_above(deciders: list[Approver]) -> list[Approver]:
    return [replace(d, capacity="parent_head") if d.capacity == "head" else d for d in deciders]


def approvers(
    units: Mapping[str, UnitDeciders],
    *,
    unit_code: str,
    requester_nip: str,
    escalated: bool = False,
) -> list[Approver]:
    """The employees who may decide a permit of `requester_nip` for a workspace of
    `unit_code`, from `units` holding that unit and its ancestors; `escalated`, with the
    approvers one level above theirs."""
    found = _deciding_unit(units, unit_code, requester_nip)
    if found is None:
        return []
    code, deciders, above = found
    chosen = _as_above(deciders) if above else list(deciders)
    if escalated:
        higher = _deciding_unit(units, units[code].parent_code, requester_nip)
        if higher is not None:
            known = {a.nip for a in chosen}
            chosen += [a for a in _as_above(higher[1]) if a.nip not in known]
    return chosen


class ApproverResolver:
    """Resolves approvers at one instant, reading each unit's chain once.

    A list page asks about the same few units again and again; one resolver serves
    the whole page, one statement per unit it has not met yet.
    """

    def __init__(self, session: AsyncSession, at: datetime) -> None:
        self._session = session
        self._at = at
        self._units: dict[str, UnitDeciders] = {}
        self._escalate_before: timedelta | None = session.info.get(ESCALATE_BEFORE)

    async def resolve(self, permit: Decidable, *, escalated: bool | None = None) -> list[Approver]:
        """The permit's approvers at the resolver's instant; `escalated` True or False
        overrides the rule (the sweep names who an escalation adds)."""
        if permit.unit_code not in self._units:
            result = await self._session.execute(
                _CHAIN_OF_CODE, {"code": permit.unit_code, "at": self._at}
            )
            self._units.update(units_of(result.all()))
        if escalated is None:
            return approvers_of(self._units, permit, self._at, self._escalate_before)
        return approvers(
            self._units,
            unit_code=permit.unit_code,
            requester_nip=permit.requester_nip,
            escalated=escalated,
        )


async def resolve_approvers(
    session: AsyncSession, permit: Decidable, at: datetime
) -> list[Approver]:
    """The employees who may decide `permit` at `at`."""
    return await ApproverResolver(session, at).resolve(permit)
