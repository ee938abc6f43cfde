"""The check's one round trip to the database, below the ORM (SPEC §5).

A single SQL statement answers everything a check needs: the caller's credential
(the API key's row, or the active flag of the employee a token names), whether
the employee and the workspace exist, and the candidate permits of an
(employee, workspace) or a (platform, channel) pair:

* up to `CANDIDATES` permits still running or to come at the instant: the approved
  one holding the instant first (so pending windows cannot crowd it out), then by
  start;
* the permits that ended last by the instant (the ties of its latest end, up to
  `CANDIDATES`, by id from the last: the ranking's tie-break).

Every part is an index range scan over (pair, `ends_at`), so its cost follows
the live permits of the pair, not the history.

It runs on the hot reads' own connection (`app.rawdb`), so an acknowledged
revocation is seen by every later check.

Where the database can say cheaply whether anything was committed since it last
looked (SQLite, `RawReader.version`), a reading is kept and answers the same
check for any later instant until something is committed (`Kept`): asking costs a
few microseconds on every check, instead of the statement, and any commit at all
(a revoke, a key revoked, an employee deactivated, by this process or another)
forgets every kept reading. On PostgreSQL only a round trip could tell, so every
check reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.rawdb import RawReader, Statement

CANDIDATES = 20
"""Live permits read per check, by start; more can only be pending windows nobody decided."""

MOST_KEPT = 10_000
"""Readings kept at most; when full they are all forgotten, which costs reads, not truth."""

Form = Literal["employee", "channel"]

_PERMIT = (
    "p.id, p.requester_nip, p.workspace_code, p.platform, p.channel, "
    "p.starts_at, p.ends_at, p.status"
)
_PAIR = {
    "employee": "{t}.requester_nip = :first AND {t}.workspace_code = :second",
    "channel": "{t}.platform = :first AND {t}.channel_key = :second",
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
    pair, pair_q = _PAIR[form].format(t="p"), _PAIR[form].format(t="q")
    last_end = (
        f"SELECT q.ends_at FROM permits AS q WHERE {pair_q} AND q.ends_at <= :at "  # noqa: S608
        "ORDER BY q.ends_at DESC LIMIT 1"
    )
    candidates = (
        f"SELECT * FROM (SELECT {_PERMIT} FROM permits AS p WHERE {pair} AND p.ends_at > :at "  # noqa: S608
        "ORDER BY (p.status = 'approved' AND p.starts_at <= :at) DESC, p.starts_at "
        f"LIMIT {CANDIDATES}) AS live "
        f"UNION ALL SELECT * FROM (SELECT {_PERMIT} FROM permits AS p WHERE {pair} "
        f"AND p.ends_at = ({last_end}) ORDER BY p.id DESC LIMIT {CANDIDATES}) AS ended"
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


@dataclass(frozen=True, slots=True)
class Kept:
    """A reading read for the instant `since`, which answers for any later instant while
    nothing is committed.

    It holds every permit live at `since` (fewer than `CANDIDATES`, so the statement's
    limit left none out) and those that ended last by then. For a later instant
    the statement would return the ones of these still live, and those that ended
    last by then: no more than are here. The ranking (`service.decide`) sorts the
    same rows out of these by the instant asked, so it answers as a fresh read would.
    """

    since: datetime
    reading: Reading

    @classmethod
    def of(cls, reading: Reading, at: datetime) -> Kept | None:
        """None when the live permits may not all be there (the statement's limit)."""
        if sum(c.ends_at > at for c in reading.candidates) >= CANDIDATES:
            return None
        return cls(at, reading)

    def holds_at(self, at: datetime) -> bool:
        return self.since <= at


class CheckReader:
    """Runs the check's statement on the hot reads' connection (`app.rawdb`), and keeps
    readings where the database can say they still hold (module docstring)."""

    def __init__(self, raw: RawReader, *, keep: bool = True) -> None:
        self._raw = raw
        self._keep = keep  # False: every check reads (the tests compare against it)
        self._statements = {
            form: Statement(statement(form), PARAMETERS) for form in ("employee", "channel")
        }
        self._kept: dict[tuple[str, str, str, str | None, str | None], Kept] = {}
        self._kept_version: int | None = None
        self.statements_run = 0  # for the tests and the benchmark

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
        version = self._raw.version() if self._keep else None
        key = (form, first, second, key_id, caller)
        if version is not None:
            if version != self._kept_version:  # something was committed: forget it all
                self._kept.clear()
                self._kept_version = version
            kept = self._kept.get(key)
            if kept is not None and kept.holds_at(at):
                return kept.reading
        self.statements_run += 1
        rows = await self._raw.fetch(
            self._statements[form],
            {"first": first, "second": second, "at": at, "key_id": key_id, "caller": caller},
        )
        reading = _reading(rows, self._raw.instant)
        if version is not None and version == self._kept_version:
            # Read after `version` was asked: a commit in between is seen by this read,
            # and changes the version the next check asks for, so it is forgotten then.
            # (Were the version newer already, this read might be older than it.)
            kept = Kept.of(reading, at)
            if kept is not None:
                if len(self._kept) >= MOST_KEPT:
                    self._kept.clear()
                self._kept[key] = kept
        return reading
