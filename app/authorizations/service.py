"""The check: "is this stream authorised at this instant?" (docs/RULES.md#check-window).

`app.authorizations.reader` reads a pair's candidate permits in one round trip;
`app.authorizations.rules` judges them (`evaluate`) and says how much of the answer the
caller may see (`disclose`); `body` shapes the response. The full route and the fast
path (`app.authorizations.fastpath`) both answer through `answer`, so they cannot
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from app.authorizations.reader import Candidate, CheckReader, Form, Reading
from app.authorizations.rules import Verdict, disclose, evaluate, needs_approvers
from app.metrics import Metrics
from app.nip import NipError, infer_employment
from app.timeutil import format_instant


@dataclass(frozen=True)
class Caller:
    """An employee asking (`app.org.roles.ReaderFacts`); service clients are None."""

    nip: str
    is_admin: bool
    is_auditor: bool


def nip_error(nip: str) -> str | None:
    """Why `nip` is no NIP (`app.nip`, PNS or PPPK), or None (docs/RULES.md#check-query)."""
    try:
        infer_employment(nip)
    except NipError as exc:
        return str(exc)
    return None


def decide(form: Form, reading: Reading, at: datetime, now: datetime) -> Verdict[Candidate]:
    """The full answer for `at`, judged at the moment `now` (docs/RULES.md#check-ranking)."""
    if form == "employee":
        if reading.employee_active is None:
            return Verdict("unknown_employee")
        if not reading.employee_active:
            return Verdict("employee_inactive")
        if not reading.workspace_known:
            return Verdict("unknown_workspace")
    return evaluate(reading.candidates, at, now)


async def answer(
    reader: CheckReader,
    form: Form,
    reading: Reading,
    at: datetime,
    now: datetime,
    caller: Caller | None,
) -> Verdict[Candidate]:
    """The answer `caller` gets (docs/RULES.md#check-disclosure): the verdict, and, only
    when the caller is an employee who is no party of its permit but heads a unit or
    holds a delegation (`Reading.caller_may_decide`, read with the verdict's rows), a
    read of the permit's approvers now. `reading` must have been read for `caller`."""
    verdict = decide(form, reading, at, now)
    if needs_approvers(verdict, caller) and reading.caller_may_decide:
        assert verdict.row is not None
        return disclose(verdict, caller, await reader.approvers(verdict.row, now))
    # The caller is no approver of anything (or the rule needs no approvers): the
    # approvers, whoever they are, would not change the answer.
    return disclose(verdict, caller)


_permit_time = lru_cache(maxsize=4096)(format_instant)
"""`format_instant` of a permit's start or end: the same few permits answer most checks, and
their instants are written once (an instant's text is its value's alone; 1 µs a time)."""


def _permit_json(row: Candidate) -> dict[str, Any]:
    return {
        "id": row.id,
        "requester_nip": row.requester_nip,
        "workspace_code": row.workspace_code,
        "platform": row.platform,
        "channel": row.channel,
        "starts_at": _permit_time(row.starts_at),
        "ends_at": _permit_time(row.ends_at),
    }


def body(
    verdict: Verdict[Candidate], checked_at: datetime, metrics: Metrics | None = None
) -> dict[str, Any]:
    """The response body (`router.CheckResult`), for the route and the fast path alike;
    the answer sent is counted by its reason in `metrics` (`/metrics`)."""
    if metrics is not None:
        metrics.check_answer(verdict.reason)
    return {
        "authorized": verdict.authorized,
        "reason": verdict.reason,
        "checked_at": format_instant(checked_at),
        "permit": None if verdict.row is None else _permit_json(verdict.row),
    }
