"""Who may decide a permit (docs/RULES.md#approvers).

The head of the unit that owns the workspace, and every active employee holding
a delegation (Plh/Plt) in force for that unit at decision time. If the requester
is one of them — or the unit has nobody who could decide — the decision moves
up to the parent unit, and so on. Nobody ever decides their own permit.

One statement reads a unit and all its ancestors with their deciders (`chain`);
`approvers` picks from what it read. The ORM path (`ApproverResolver`) and the
permit read's fast path (`app.permits.reader`) share both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

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


def approvers(
    units: Mapping[str, UnitDeciders], *, unit_code: str, requester_nip: str
) -> list[Approver]:
    """The employees who may decide a permit of `requester_nip` for a workspace of
    `unit_code`, from `units` holding that unit and its ancestors."""
    code: str | None = unit_code
    escalated = False
    for _ in range(MAX_DEPTH):
        unit = units.get(code) if code is not None else None
        if unit is None:
            break
        deciders = unit.deciders
        if deciders and all(d.nip != requester_nip for d in deciders):
            if escalated:
                return [
                    replace(d, capacity="parent_head") if d.capacity == "head" else d
                    for d in deciders
                ]
            return list(deciders)
        code, escalated = unit.parent_code, True
    return []


class ApproverResolver:
    """Resolves approvers at one instant, reading each unit's chain once.

    A list page asks about the same few units again and again; one resolver serves
    the whole page, one statement per unit it has not met yet.
    """

    def __init__(self, session: AsyncSession, at: datetime) -> None:
        self._session = session
        self._at = at
        self._units: dict[str, UnitDeciders] = {}

    async def resolve(self, *, unit_code: str, requester_nip: str) -> list[Approver]:
        if unit_code not in self._units:
            result = await self._session.execute(
                _CHAIN_OF_CODE, {"code": unit_code, "at": self._at}
            )
            self._units.update(units_of(result.all()))
        return approvers(self._units, unit_code=unit_code, requester_nip=requester_nip)


async def resolve_approvers(
    session: AsyncSession, *, unit_code: str, requester_nip: str, at: datetime
) -> list[Approver]:
    """The employees who may decide a permit of `requester_nip` for a workspace of `unit_code`."""
    return await ApproverResolver(session, at).resolve(
        unit_code=unit_code, requester_nip=requester_nip
    )
