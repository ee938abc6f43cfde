"""The check: "is this stream authorised at this instant?" (SPEC §5).

Only committed permit rows are read, in the request's own transaction, with no
cache: once a revocation is acknowledged (committed), every later check on any
instance reads it. One indexed query picks the candidate permits of an
(employee, workspace) or a (platform, channel) pair; `most_relevant` ranks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.org.models import Employee, Workspace
from app.permits.models import Permit
from app.timeutil import format_instant

CANDIDATES = 20
_COLUMNS = (
    Permit.id,
    Permit.requester_nip,
    Permit.workspace_code,
    Permit.platform,
    Permit.channel,
    Permit.starts_at,
    Permit.ends_at,
    Permit.status,
)


@dataclass(frozen=True)
class Answer:
    authorized: bool
    reason: str
    permit: dict[str, Any] | None = None


def _permit_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "requester_nip": row.requester_nip,
        "workspace_code": row.workspace_code,
        "platform": row.platform,
        "channel": row.channel,
        "starts_at": format_instant(row.starts_at),
        "ends_at": format_instant(row.ends_at),
    }


def most_relevant(rows: Sequence[Row[Any]], at: datetime) -> Answer:
    """Rank candidate permits (all ending after `at`, plus the last one that ended) for `at`.

    1. a permit whose window holds `at`: approved ones first;
    2. else the next permit to come: approved (not_started), then pending, then others;
    3. else the last permit that ended: approved (ended), else its own status.
    """
    current = [r for r in rows if r.starts_at <= at < r.ends_at]
    upcoming = sorted((r for r in rows if r.starts_at > at), key=lambda r: r.starts_at)
    past = sorted((r for r in rows if r.ends_at <= at), key=lambda r: r.ends_at, reverse=True)
    if current:
        approved = [r for r in current if r.status == "approved"]
        row = approved[0] if approved else current[0]
        status = "expired" if row.status == "pending" else row.status
        return Answer(status == "approved", status, _permit_json(row))
    if upcoming:
        rank = {"approved": 0, "pending": 1}
        row = min(upcoming, key=lambda r: (rank.get(r.status, 2), r.starts_at))
        reason = "not_started" if row.status == "approved" else row.status
        return Answer(False, reason, _permit_json(row))
    if past:
        row = past[0]
        status = "expired" if row.status == "pending" else row.status
        return Answer(False, "ended" if status == "approved" else status, _permit_json(row))
    return Answer(False, "no_permit")


async def _candidates(session: AsyncSession, where: list[Any], at: datetime) -> Sequence[Row[Any]]:
    live = (
        await session.execute(
            select(*_COLUMNS)
            .where(*where, Permit.ends_at > at)
            .order_by(Permit.starts_at)
            .limit(CANDIDATES)
        )
    ).all()
    if live:
        return live  # type: ignore[return-value]
    last = (
        await session.execute(
            select(*_COLUMNS)
            .where(*where, Permit.ends_at <= at)
            .order_by(Permit.ends_at.desc())
            .limit(1)
        )
    ).all()
    return last  # type: ignore[return-value]


async def check_employee_workspace(
    session: AsyncSession, nip: str, workspace_code: str, at: datetime
) -> Answer:
    active = await session.scalar(select(Employee.active).where(Employee.nip == nip))
    if active is None:
        return Answer(False, "unknown_employee")
    if not active:
        return Answer(False, "employee_inactive")
    if await session.scalar(select(Workspace.code).where(Workspace.code == workspace_code)) is None:
        return Answer(False, "unknown_workspace")
    rows = await _candidates(
        session, [Permit.requester_nip == nip, Permit.workspace_code == workspace_code], at
    )
    return most_relevant(rows, at)


async def check_channel(
    session: AsyncSession, platform: str, channel_key: str, at: datetime
) -> Answer:
    rows = await _candidates(
        session, [Permit.platform == platform, Permit.channel_key == channel_key], at
    )
    answer = most_relevant(rows, at)
    if answer.authorized and answer.permit is not None:
        active = await session.scalar(
            select(Employee.active).where(Employee.nip == answer.permit["requester_nip"])
        )
        if not active:
            return Answer(False, "employee_inactive", answer.permit)
    return answer
