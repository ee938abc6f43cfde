"""The check's reading of the database, below the ORM (docs/RULES.md#check-ranking).

A single SQL statement reads everything a check needs: the caller's credential
(the API key's row, or the active, admin and auditor flags of the employee a token
names), whether the employee and the workspace exist, and the one permit of an
(employee, workspace) or a (platform, channel) pair that `rules.evaluate` picks for
the instant `at`, judged at the moment `now` (`deciding`): the best permit covering
`at`, ranked in SQL by the very data `rules.evaluate` ranks by
(`rules.COVERING_RANK`); else the next approved permit to start after `at`; else the
last approved permit to end by `at`. The later are read only when the earlier find
nothing, and on PostgreSQL only the row that answers is read from the table.

Where readings are kept (below), it reads instead what may answer the same check at
later instants (`candidates`): every permit covering `at` (up to `LIVE` of them, best
first), the next approval to start and the last to end, and the next instant after
`at` at which a permit of the pair starts or ends (`kept_until`).

Either way the answer is the same however many permits the pair has: `rules.evaluate`
ranks whatever rows are read, and they hold the one it would pick from all of them.
Every part is an index range scan: the covering permits', over (pair, `ends_at`) from
`at` to `at` + the longest stored window (`:reach`; no window is longer,
docs/RULES.md#longest-window), so only those ending within a week are read however
many the pair has still to come; the next approval's, the first entry after `at` of
the pair's approvals by start; the last approval's, over (pair, `ends_at`) back from
`at`, the history since it ended.

It runs on the hot reads' own connection (`app.rawdb`), so an acknowledged
revocation is seen by every later check (docs/RULES.md#never-stale).

Where the database can say cheaply whether anything was committed since it last
looked (SQLite, `RawReader.version`), a reading is kept and answers the same check
for any later instant before `kept_until` until something is committed (`Kept`):
asking costs a few microseconds on every check, instead of the statement, and any
commit at all (a revoke, a key revoked, an employee deactivated, by this process or
another) forgets every kept reading. However crowded the pair, no permit starts or
ends between the instant read and `kept_until`, so the same rows decide. On
PostgreSQL only a round trip could tell, so every check reads the one deciding row.

A plain employee who is no party of the permit picked needs its approvers now for
the disclosure rule (docs/RULES.md#check-disclosure): `CheckReader.approvers` reads
them, a second statement only in that case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from app.authorizations.rules import COVERING_RANK, COVERING_TIES, LAST_TO_END, NEXT_TO_START
from app.permits.approvers import (
    CHAIN_ORDER,
    Approver,
    approvers_of,
    chain,
    may_decide,
    units_of,
)
from app.permits.lifecycle import effective_status_sql
from app.permits.models import STORED_WINDOW_MOST
from app.permits.vocabulary import channel_key
from app.rawdb import RawReader, Statement

LIVE = 20
"""Permits covering the instant read at most where readings are kept, best first: a reading
holding fewer holds them all, and may answer later instants (`Kept`); one holding as many
answers its own instant only."""

MOST_KEPT = 10_000
"""Readings kept at most; when full they are all forgotten, which costs reads, not truth."""

Form = Literal["employee", "channel"]


class Pair(NamedTuple):
    """What a check asks about (docs/RULES.md#check-query): an employee and a workspace
    (`nip`, `workspace_code`), or a platform and a channel, matched by its key
    (docs/RULES.md#channels)."""

    form: Form
    first: str
    second: str

    @classmethod
    def of(
        cls, nip: str | None, workspace_code: str | None, platform: str | None, channel: str | None
    ) -> Pair:
        """The pair of a well-formed query: exactly one of the two forms is given."""
        if nip is not None and workspace_code is not None:
            return cls("employee", nip, workspace_code)
        assert platform is not None
        assert channel is not None
        return cls("channel", platform, channel_key(channel))


_PERMIT = (
    "p.id, p.requester_nip, p.workspace_code, p.unit_code, p.platform, p.channel, "
    "p.starts_at, p.ends_at, p.status, p.decided_by, p.closed_by"
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


def covering_order(table: str) -> str:
    """`rules.evaluate`'s ranking of covering permits, from the same data: the status now
    (docs/RULES.md#expiry, from its one home), then the ties. Every column it reads is in
    the pair's index on PostgreSQL (`app.permits.models.COVERING_INCLUDE`)."""
    status_now = effective_status_sql(table, ":now")
    return (
        f"CASE ({status_now}) "
        + "".join(f"WHEN '{status}' THEN {n} " for n, status in enumerate(COVERING_RANK))
        + f"ELSE {len(COVERING_RANK)} END, "
        + ", ".join(f"{table}.{column}" for column in COVERING_TIES)
    )


PARAMETERS = {
    "first": "text",
    "second": "text",
    "at": "timestamptz",
    "reach": "timestamptz",
    "now": "timestamptz",
    "key_id": "text",
    "caller": "text",
}


def _part(selection: str, limit: int) -> str:
    """The first `limit` permits of `selection` (a condition on `p` and its order)."""
    return (
        f"SELECT * FROM (SELECT {_PERMIT} FROM permits AS p WHERE {selection} "  # noqa: S608
        f"LIMIT {limit}) AS part"
    )


# A permit covering `at` ends after it, and by `:reach` (`at` + the longest stored window):
# the range of the pair's index to read, however many permits are to come. The condition
# on `starts_at` is written `NOT …`: as a range, it could lead SQLite to the workspace's
# (workspace_code, starts_at) index, every requester's permits, instead of the pair's.
_COVERS = "{t}.ends_at > :at AND {t}.ends_at <= :reach AND NOT {t}.starts_at > :at"


def _last_approved_end(form: Form) -> str:
    """The end of the pair's last approval by `at`: the first entry of a range of the
    pair's (pair, `ends_at`) index, back from `at`. Its ties are then taken by id (both
    follow an index, where one ORDER BY of both could read or sort every approval of
    the pair's history)."""
    pair_q = _PAIR[form].format(t="q")
    return (
        f"SELECT q.ends_at FROM permits AS q WHERE {pair_q} AND q.status = 'approved' "  # noqa: S608
        "AND q.ends_at <= :at ORDER BY q.ends_at DESC LIMIT 1"
    )


def _approved_next(form: Form, table: str) -> str:
    """The pair's approvals to start after `at`, in `rules.evaluate`'s order for the next
    to start (`NEXT_TO_START`): the first entry of the pair's approvals by (start, id)."""
    return (
        f"{_PAIR[form].format(t=table)} AND {table}.status = 'approved' "
        f"AND {table}.starts_at > :at ORDER BY "
        + ", ".join(f"{table}.{column}" for column in NEXT_TO_START)
    )


def _approved_last(form: Form, table: str) -> str:
    """The pair's approvals ending at the last approved end by `at`, in `rules.evaluate`'s
    order for the last to end (`LAST_TO_END`, descending)."""
    return (
        f"{_PAIR[form].format(t=table)} AND {table}.status = 'approved' "
        f"AND {table}.ends_at = ({_last_approved_end(form)}) ORDER BY "
        + ", ".join(f"{table}.{column} DESC" for column in LAST_TO_END)
    )


def deciding(form: Form) -> str:
    """The one permit `rules.evaluate` picks for the pair at `:at` and `:now`
    (docs/RULES.md#check-ranking), as a row source of at most one row: the best permit
    covering `at`, else the next approval to start after it, else the last approval to
    end by it. Each is a subquery giving an id, ranked in SQL by the very data
    `evaluate` ranks by, in `evaluate`'s order. `COALESCE` stops at the first argument
    that is not NULL (PostgreSQL documents that it evaluates no argument after it), so
    the later ones are read only when the earlier find nothing; what is picked does
    not depend on it. On PostgreSQL the covering permits' ranking and the approvals'
    ids are in the pair's index (`app.permits.models.COVERING_INCLUDE`), so of the
    table only the row that answers is read.

    The next approval is the first entry after `at` of the pair's approvals by (start,
    id), a partial index. The last is found in two steps: its end (the first entry of a
    range of the pair's (pair, `ends_at`) index, back from `at`), then the id among the
    approvals ending then, in the range of that one instant — never the pair's whole
    index, which PostgreSQL would otherwise read, filtered, for an id and an end asked
    for at once."""
    pair_c = _PAIR[form].format(t="c")
    best_covering = (
        f"SELECT c.id FROM permits AS c WHERE {pair_c} AND {_COVERS.format(t='c')} "  # noqa: S608
        f"ORDER BY {covering_order('c')} LIMIT 1"
    )
    next_approval = f"SELECT n.id FROM permits AS n WHERE {_approved_next(form, 'n')} LIMIT 1"  # noqa: S608
    last_approval = f"SELECT l.id FROM permits AS l WHERE {_approved_last(form, 'l')} LIMIT 1"  # noqa: S608
    return (
        f"SELECT {_PERMIT} FROM permits AS p "  # noqa: S608
        f"WHERE p.id = COALESCE(({best_covering}), ({next_approval}), ({last_approval}))"
    )


def candidates(form: Form) -> str:
    """What a `Kept` reading holds of the pair at `:at` and `:now` (module docstring):
    every permit covering `at` (up to `LIVE`, best first), the next approval to start
    after it and the last approval to end by it, each part a range of the pair's index."""
    pair = _PAIR[form].format(t="p")
    return " UNION ALL ".join(
        [
            # docs/RULES.md#check-ranking (1): the permits covering `at`, best first.
            _part(f"{pair} AND {_COVERS.format(t='p')} ORDER BY {covering_order('p')}", LIVE),
            # (2): the next approved permit to start (the first entry after `at` of the
            # pair's approvals by start, a partial index), and the last approved to end.
            _part(_approved_next(form, "p"), 1),
            _part(_approved_last(form, "p"), 1),
        ]
    )


def kept_until(form: Form) -> str:
    """The first instant after `:at` at which a permit of the pair starts or ends: every
    permit starting after `at` is live at `at`, so it is the least, over the live
    permits, of the start of those still to start and the end of those covering `at`."""
    pair_q = _PAIR[form].format(t="q")
    return (
        "(SELECT MIN(CASE WHEN q.starts_at > :at THEN q.starts_at ELSE q.ends_at END) "  # noqa: S608
        f"FROM permits AS q WHERE {pair_q} AND q.ends_at > :at)"
    )


# Whether the caller could be any permit's approver now: if not, the disclosure rule needs
# no read of the answering permit's approvers (`app.permits.approvers.may_decide`).
_CALLER_MAY_DECIDE = may_decide(":caller", ":now")


def statement(form: Form, *, kept: bool = False) -> str:
    """The statement of a form; built only from the constants above, values are parameters.
    Its permits: the one that answers (`deciding`), or with `kept` what a `Kept` reading
    holds (`candidates`) and when it stops holding (`kept_until`)."""
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
        "k.scopes AS key_scopes, c.active AS caller_active, c.is_admin AS caller_is_admin, "
        f"c.is_auditor AS caller_is_auditor, {_CALLER_MAY_DECIDE} AS caller_may_decide, "
        f"{subject}, {kept_until(form) if kept else 'NULL'} AS kept_until, "
        f"p.*, {_REQUESTER[form]} AS requester_active "
        "FROM (SELECT 1 AS one) AS one "
        f"{subject_joins}"
        "LEFT JOIN api_keys AS k ON k.id = :key_id "
        "LEFT JOIN employees AS c ON c.nip = :caller "
        f"LEFT JOIN ({candidates(form) if kept else deciding(form)}) AS p ON 1 = 1"
    )


_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)
_REACH_LAST = _LAST_INSTANT - STORED_WINDOW_MOST


def arguments(
    pair: Pair, at: datetime, now: datetime, *, key_id: str | None, caller: str | None
) -> dict[str, Any]:
    """The values of a form's statement (`PARAMETERS`) for a check of `pair` at `at`."""
    return {
        "first": pair.first,
        "second": pair.second,
        "at": at,
        # The latest instant Python can hold, for an `at` within a week of it.
        "reach": at + STORED_WINDOW_MOST if at < _REACH_LAST else _LAST_INSTANT,
        "now": now,
        "key_id": key_id,
        "caller": caller,
    }


APPROVERS = Statement(
    f"{chain(':code')} ORDER BY {CHAIN_ORDER}", {"code": "text", "at": "timestamptz"}
)
"""The deciders of a unit and of its ancestors (`app.permits.approvers.chain`)."""


class Candidate(NamedTuple):
    """A permit row `rules.evaluate` may pick and `rules.disclose` judges (a tuple: one
    is made for each row a check reads, several times cheaper than a frozen dataclass)."""

    id: str
    requester_nip: str
    workspace_code: str
    unit_code: str
    platform: str
    channel: str
    starts_at: datetime
    ends_at: datetime
    status: str
    decided_by: str | None
    closed_by: str | None
    requester_active: bool


class Reading(NamedTuple):
    """What the database says about one check, credential included (a tuple, as
    `Candidate`)."""

    key_secret_sha256: str | None  # None: no such key (or none asked about)
    key_revoked: bool
    key_scopes: str | None  # JSON text (as both databases send it), parsed by the caller
    caller_active: bool | None  # None: the token names no employee (or none asked about)
    caller_is_admin: bool
    caller_is_auditor: bool
    caller_may_decide: bool  # heads a unit or holds a delegation in force (the caller asked)
    employee_active: bool | None  # (employee, workspace) form only
    workspace_known: bool
    candidates: Sequence[Candidate]  # each permit once, in no particular order
    # The first start or end of a permit of the pair after the instant read (a kept
    # reading's only; None: none, or not asked).
    kept_until: datetime | None = None


_HEAD = 10  # the columns before the permit's


def _reading(rows: Sequence[Any], stamp: Callable[[Any], datetime]) -> Reading:
    head = rows[0]
    candidates: dict[str, Candidate] = {}
    for row in rows:
        permit = row[_HEAD:]
        if permit[0] is None or permit[0] in candidates:
            continue
        candidates[permit[0]] = Candidate._make(
            (*permit[:6], stamp(permit[6]), stamp(permit[7]), *permit[8:11], bool(permit[11]))
        )
    return Reading(
        key_secret_sha256=head[0],
        key_revoked=bool(head[1]),
        key_scopes=head[2],
        caller_active=None if head[3] is None else bool(head[3]),
        caller_is_admin=bool(head[4]),
        caller_is_auditor=bool(head[5]),
        caller_may_decide=bool(head[6]),
        employee_active=None if head[7] is None else bool(head[7]),
        workspace_known=bool(head[8]),
        candidates=list(candidates.values()),
        kept_until=None if head[9] is None else stamp(head[9]),
    )


@dataclass(frozen=True, slots=True)
class Kept:
    """A reading read for the instant `since`, which answers for any instant from `since`
    to before `until` (at any later moment) while nothing is committed.

    It holds every permit covering `since` (fewer than `LIVE`, so the statement's limit
    left none out), the next approved permit to start after it and the last approved
    permit to end by it; `until` is the pair's first start or end after `since` (None:
    there is none). No permit of the pair starts or ends in between, so for any instant
    `at` there the same permits cover `at`, the same approval is the next to start and
    the same the last to end: `rules.evaluate` finds here every row it would pick from
    all the pair's permits, whatever the moment (a status now is computed from the row,
    not read).
    """

    since: datetime
    until: datetime | None
    reading: Reading

    @classmethod
    def of(cls, reading: Reading, at: datetime) -> Kept | None:
        """None when the covering permits may not all be there (the statement's limit)."""
        if sum(c.starts_at <= at < c.ends_at for c in reading.candidates) >= LIVE:
            return None
        return cls(at, reading.kept_until, reading)

    def holds_at(self, at: datetime) -> bool:
        return self.since <= at and (self.until is None or at < self.until)


class CheckReader:
    """Runs the check's statement on the hot reads' connection (`app.rawdb`), and keeps
    readings where the database can say they still hold (module docstring)."""

    def __init__(
        self, raw: RawReader, *, keep: bool = True, escalate_before: timedelta | None = None
    ) -> None:
        self._raw = raw
        self.escalate_before = escalate_before  # the policy's (docs/RULES.md#escalation)
        # False (or a database that cannot say what was committed): every check reads.
        self._keep = keep and raw.version() is not None
        # The deciding row; where readings are kept, the reading a `Kept` holds.
        self._statements = {
            form: Statement(statement(form, kept=self._keep), PARAMETERS)
            for form in ("employee", "channel")
        }
        self._kept: dict[tuple[Pair, str | None, str | None], Kept] = {}
        self._kept_version: int | None = None
        self.statements_run = 0  # for the tests and the benchmark

    async def read(
        self,
        pair: Pair,
        at: datetime,
        now: datetime,
        *,
        key_id: str | None = None,
        caller: str | None = None,
    ) -> Reading:
        """The reading of a pair for the instant `at`, at the moment `now`."""
        version = self._raw.version() if self._keep else None
        key = (pair, key_id, caller)
        if version is not None:
            if version != self._kept_version:  # something was committed: forget it all
                self._kept.clear()
                self._kept_version = version
            kept = self._kept.get(key)
            if kept is not None and kept.holds_at(at):
                return kept.reading
        self.statements_run += 1
        rows = await self._raw.fetch(
            self._statements[pair.form], arguments(pair, at, now, key_id=key_id, caller=caller)
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

    async def approvers(self, permit: Candidate, now: datetime) -> list[Approver]:
        """The permit's approvers now (docs/RULES.md#readers): who may decide or revoke it."""
        self.statements_run += 1
        rows = await self._raw.fetch(APPROVERS, {"code": permit.unit_code, "at": now})
        return approvers_of(units_of(rows), permit, now, self.escalate_before)
