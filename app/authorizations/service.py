"""The check: "is this stream authorised at this instant?" (SPEC §5).

`app.authorizations.reader` fetches, in one round trip, the
candidate permits of an (employee, workspace) or a (platform, channel) pair;
`decide` turns them into the answer. Both the full route and the fast path
(`app.authorizations.fastpath`) answer through here, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.authorizations.reader import Candidate, CheckReader, Form, Reading
from app.timeutil import format_instant


@dataclass(frozen=True)
class Answer:
    authorized: bool
    reason: str
    permit: dict[str, Any] | None = None


def _permit_json(row: Candidate) -> dict[str, Any]:
    return {
        "id": row.id,
        "requester_nip": row.requester_nip,
        "workspace_code": row.workspace_code,
        "platform": row.platform,
        "channel": row.channel,
        "starts_at": format_instant(row.starts_at),
        "ends_at": format_instant(row.ends_at),
    }


def _pick(rows: Sequence[Candidate], at: datetime) -> tuple[str, Candidate | None]:
    """Rank candidate permits for `at`; the order they come in does not matter.

    1. a permit whose window holds `at`: approved ones first, then the earliest;
    2. else the next permit to come: approved (not_started), then pending, then others;
    3. else the last permit that ended: approved (ended), else its own status.
    A pending permit whose start has passed is expired, whether or not a sweep ran.
    """
    current = [r for r in rows if r.starts_at <= at < r.ends_at]
    if current:
        row = min(current, key=lambda r: (r.status != "approved", r.starts_at, r.id))
        return ("expired" if row.status == "pending" else row.status), row
    upcoming = [r for r in rows if r.starts_at > at]
    if upcoming:
        rank = {"approved": 0, "pending": 1}
        row = min(upcoming, key=lambda r: (rank.get(r.status, 2), r.starts_at, r.id))
        return ("not_started" if row.status == "approved" else row.status), row
    past = [r for r in rows if r.ends_at <= at]
    if past:
        row = max(past, key=lambda r: (r.ends_at, r.id))
        status = "expired" if row.status == "pending" else row.status
        return ("ended" if status == "approved" else status), row
    return "no_permit", None


def decide(form: Form, reading: Reading, at: datetime) -> Answer:
    if form == "employee":
        if reading.employee_active is None:
            return Answer(False, "unknown_employee")
        if not reading.employee_active:
            return Answer(False, "employee_inactive")
        if not reading.workspace_known:
            return Answer(False, "unknown_workspace")
    reason, row = _pick(reading.candidates, at)
    if row is None:
        return Answer(False, reason)
    if reason == "approved" and not row.requester_active:
        return Answer(False, "employee_inactive", _permit_json(row))
    return Answer(reason == "approved", reason, _permit_json(row))


def body(answer: Answer, checked_at: datetime) -> dict[str, Any]:
    return {
        "authorized": answer.authorized,
        "reason": answer.reason,
        "checked_at": format_instant(checked_at),
        "permit": answer.permit,
    }


async def check(reader: CheckReader, form: Form, first: str, second: str, at: datetime) -> Answer:
    """The answer for (nip, workspace_code) or (platform, channel_key) at `at`."""
    return decide(form, await reader.read(form, first, second, at), at)
