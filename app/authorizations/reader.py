"""The check's one round trip to the database, below the ORM (SPEC §5).

A single SQL statement answers everything a check needs: the caller's credential
(the API key's row, or the active flag of the employee a token names), whether
the employee and the workspace exist, and the candidate permits of an
(employee, workspace) or a (platform, channel) pair:

* up to `CANDIDATES` permits still running or to come at the instant: the approved
  one holding the instant first (so pending windows cannot crowd it out), then by
  start;
* the last permit that had ended by the instant.

Every part is an index range scan over (pair, `ends_at`), so its cost follows
the live permits of the pair, not the history.

It runs on the hot reads' own connection (`app.rawdb`): committed rows, no
cache, so an acknowledged revocation is seen by every later check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.rawdb import RawReader, Statement

CANDIDATES = 20
"""Live permits read per check, by start; more can only be pending windows nobody decided."""

Form = Literal["employee", "channel"]

_PERMIT = (
    "p.id, p.requester_nip, p.workspace_code, p.platform, p.channel, "
    "p.starts_at, p.ends_at, p.status"
)
_PAIR = {
    "employee": "p.requester_nip = :first AND p.workspace_code = :second",
    "channel": "p.platform = :first AND p.channel_key = :second",
}
_REQUESTER = {
    # The employee of an (employee, workspace) check is joined once as `e`; a channel's
    # candidates each bring their requester's flag, since any of them may be the answer.
    "employee": "e.active",
    "channel": "(SELECT r.active FROM employees AS r WHERE r.nip = p.requester_nip)",
}


PARAMETERS = {
    "first": "text",
    "second": "text",
    "at": "timestamptz",
    "key_id": "text",
    "caller": "text",
}


def statement(form: Form) -> str:
    """The statement of a form; built only from the constants above, values are parameters.

    The live permits come approved-and-holding-the-instant first, so that pending
    windows crowding the pair can never push the one approval out of the first
    `CANDIDATES`; then by start.
    """
    pair = _PAIR[form]
    candidates = (
        f"SELECT * FROM (SELECT {_PERMIT} FROM permits AS p WHERE {pair} AND p.ends_at > :at "  # noqa: S608
        "ORDER BY (p.status = 'approved' AND p.starts_at <= :at) DESC, p.starts_at "
        f"LIMIT {CANDIDATES}) AS live "
        f"UNION ALL SELECT * FROM (SELECT {_PERMIT} FROM permits AS p WHERE {pair} "
        "AND p.ends_at <= :at ORDER BY p.ends_at DESC LIMIT 1) AS ended"
    )
    if form == "employee":
        subject = "e.active AS employee_active, w.code IS NOT NULL AS workspace_known"
        subject_joins = (
            "LEFT JOIN employees AS e ON e.nip = :first "
            "LEFT JOIN workspaces AS w ON w.code = :second "
        )
    else:  # the channel form names no employee and no workspace
        subject = "CAST(NULL AS BOOLEAN) AS employee_active, 1 = 0 AS workspace_known"
        subject_joins = ""
    return (
        "SELECT k.secret_sha256 AS key_secret_sha256, k.revoked_at IS NOT NULL AS key_revoked, "  # noqa: S608 (constants only)
        f"k.scopes AS key_scopes, c.active AS caller_active, {subject}, "
        f"p.*, {_REQUESTER[form]} AS requester_active "
        "FROM (SELECT 1 AS one) AS one "
        f"{subject_joins}"
        "LEFT JOIN api_keys AS k ON k.id = :key_id "
        "LEFT JOIN employees AS c ON c.nip = :caller "
        f"LEFT JOIN ({candidates}) AS p ON 1 = 1"
    )


@dataclass(frozen=True)
class Candidate:
    """A permit the ranking may pick (`app.authorizations.service.decide`)."""

    id: str
    requester_nip: str
    workspace_code: str
    platform: str
    channel: str
    starts_at: datetime
    ends_at: datetime
    status: str
    requester_active: bool


@dataclass(frozen=True)
class Reading:
    """What the database says about one check, credential included."""

    key_secret_sha256: str | None  # None: no such key (or none asked about)
    key_revoked: bool
    key_scopes: str | list[str] | None  # JSON text on SQLite, parsed by the caller
    caller_active: bool | None  # None: the token names no employee (or none asked about)
    employee_active: bool | None  # (employee, workspace) form only
    workspace_known: bool
    candidates: Sequence[Candidate]


def _reading(rows: Sequence[Any], stamp: Callable[[Any], datetime]) -> Reading:
    head = rows[0]
    candidates = [
        Candidate(
            id=row[6],
            requester_nip=row[7],
            workspace_code=row[8],
            platform=row[9],
            channel=row[10],
            starts_at=stamp(row[11]),
            ends_at=stamp(row[12]),
            status=row[13],
            requester_active=bool(row[14]),
        )
        for row in rows
        if row[6] is not None
    ]
    return Reading(
        key_secret_sha256=head[0],
        key_revoked=bool(head[1]),
        key_scopes=head[2],
        caller_active=None if head[3] is None else bool(head[3]),
        employee_active=None if head[4] is None else bool(head[4]),
        workspace_known=bool(head[5]),
        candidates=candidates,
    )


class CheckReader:
    """Runs the check's statement on the hot reads' connection (`app.rawdb`)."""

    def __init__(self, raw: RawReader) -> None:
        self._raw = raw
        self._statements = {
            form: Statement(statement(form), PARAMETERS) for form in ("employee", "channel")
        }

    async def read(
        self,
        form: Form,
        first: str,
        second: str,
        at: datetime,
        *,
        key_id: str | None = None,
        caller: str | None = None,
    ) -> Reading:
        rows = await self._raw.fetch(
            self._statements[form],
            {"first": first, "second": second, "at": at, "key_id": key_id, "caller": caller},
        )
        return _reading(rows, self._raw.instant)
