"""A permit read in one round trip to the database, below the ORM.

`GET /api/v1/permits/{id}` needs the caller (active? admin? auditor?), the
permit, and — to say who may decide it and whether the caller may see it — the
deciders of its unit and of the unit's ancestors (`app.permits.approvers.chain`).
One statement reads all three; it runs on the hot reads' own connection
(`app.rawdb`), so it sees every committed change at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.permits.approvers import CHAIN_COLUMNS, CHAIN_ORDER, UnitDeciders, chain, units_of
from app.permits.models import Permit
from app.rawdb import RawReader, Statement

_INTERNAL = frozenset({"channel_key", "reminded_at", "escalated_at", "status_list", "status_idx"})
COLUMNS = tuple(c.key for c in Permit.__table__.columns if c.key not in _INTERNAL)
"""The permit's columns as the API shows them (all but the matching key, the sweep's
bookkeeping and the status list entry), in table order."""
INSTANTS = frozenset(
    {"starts_at", "ends_at", "decided_at", "closed_at", "created_at", "updated_at"}
)
_CALLER = 3  # active, is_admin, is_auditor

STATEMENT = Statement(
    "SELECT c.active, c.is_admin, c.is_auditor, "  # noqa: S608 (constants only)
    f"{', '.join(f'p.{column}' for column in COLUMNS)}, ch.* "
    "FROM (SELECT 1 AS one) AS one "
    "LEFT JOIN employees AS c ON c.nip = :caller "
    "LEFT JOIN permits AS p ON p.id = :id "
    f"LEFT JOIN ({chain('(SELECT q.unit_code FROM permits AS q WHERE q.id = :id)')}) AS ch "
    f"ON 1 = 1 ORDER BY {CHAIN_ORDER}",
    {"caller": "text", "id": "text", "at": "timestamptz"},
)


@dataclass(frozen=True)
class PermitRow:
    """The permit's columns; its attributes are those `app.permits.visibility.may_read` and
    `app.permits.lifecycle.effective_status` look at."""

    fields: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.fields["status"])

    @property
    def starts_at(self) -> datetime:
        value: datetime = self.fields["starts_at"]
        return value

    @property
    def requester_nip(self) -> str:
        return str(self.fields["requester_nip"])

    @property
    def unit_code(self) -> str:
        return str(self.fields["unit_code"])

    @property
    def decided_by(self) -> str | None:
        value: str | None = self.fields["decided_by"]
        return value

    @property
    def closed_by(self) -> str | None:
        value: str | None = self.fields["closed_by"]
        return value


@dataclass(frozen=True)
class Caller:
    nip: str
    active: bool
    is_admin: bool
    is_auditor: bool


@dataclass(frozen=True)
class PermitReading:
    caller: Caller | None  # None: the NIP names no employee
    permit: PermitRow | None  # None: no such permit
    units: dict[str, UnitDeciders]  # the permit's unit and its ancestors


class PermitReader:
    """Runs the permit read's statement on the hot reads' connection."""

    def __init__(self, raw: RawReader, *, escalate_before: timedelta | None = None) -> None:
        self._raw = raw
        self.escalate_before = escalate_before  # the policy's (docs/RULES.md#escalation)

    async def read(self, permit_id: str, *, caller: str, at: datetime) -> PermitReading:
        """The permit `permit_id`, the employee `caller`, and the deciders in force at `at`."""
        rows = await self._raw.fetch(STATEMENT, {"id": permit_id, "caller": caller, "at": at})
        head = rows[0]
        person = None
        if head[0] is not None:
            person = Caller(caller, bool(head[0]), bool(head[1]), bool(head[2]))
        permit = None
        if head[_CALLER] is not None:
            permit = PermitRow(self._fields(head[_CALLER : _CALLER + len(COLUMNS)]))
        units = units_of(row[-CHAIN_COLUMNS:] for row in rows)
        return PermitReading(person, permit, units)

    def _fields(self, values: Any) -> dict[str, Any]:
        fields = dict(zip(COLUMNS, values, strict=True))
        for name in INSTANTS:
            if fields[name] is not None:
                fields[name] = self._raw.instant(fields[name])
        if isinstance(fields["attestations"], str):  # JSON text, on both databases
            fields["attestations"] = json.loads(fields["attestations"])
        return fields
