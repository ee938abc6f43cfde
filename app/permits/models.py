"""Permits (izin siaran langsung) and the idempotency records of their requests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.config import LONGEST_WINDOW
from app.db import Base, UTCDateTime
from app.permits.vocabulary import PLATFORMS, PURPOSES, STATUSES

COVERING_INCLUDE = ("starts_at", "status", "id")
"""What ranks a pair's permits covering an instant (docs/RULES.md#check-ranking: the status
now, from `status` and `starts_at`; then `starts_at`, `id`), held in the pair's index on
PostgreSQL (migration 0008) so the check ranks them without reading the table."""

CHECK_PAIRS = (
    ("requester_workspace", ("requester_nip", "workspace_code")),
    ("channel", ("platform", "channel_key")),
)
"""The check's two forms of pair (app/authorizations/reader.py), as its indexes name them."""


SQLITE_SLACK = timedelta(milliseconds=500)
"""SQLite reckons a window in days as floating point from times to the millisecond
(`julianday`): its CHECK allows this much over `LONGEST_WINDOW`, so that a window of
exactly the longest is never refused."""

WINDOW_LENGTH = {
    "postgresql": f"ends_at - starts_at <= interval '{LONGEST_WINDOW.total_seconds():.0f} seconds'",
    "sqlite": "(julianday(ends_at) - julianday(starts_at)) * 86400 <= "
    f"{(LONGEST_WINDOW + SQLITE_SLACK).total_seconds()}",
}
"""docs/RULES.md#longest-window as each database's CHECK (`window_length`, migration 0009)."""

STORED_WINDOW_MOST = LONGEST_WINDOW + timedelta(seconds=1)
"""No stored permit's window is longer (`WINDOW_LENGTH`, SQLite's slack and rounding
included): a permit covering an instant ends within this of it."""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Permit(Base):
    __tablename__ = "permits"
    __table_args__ = (
        CheckConstraint(_in("platform", PLATFORMS), name="platform"),
        CheckConstraint(_in("purpose", PURPOSES), name="purpose"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint("ends_at > starts_at", name="window"),
        *(
            CheckConstraint(length, name="window_length").ddl_if(dialect=dialect)
            for dialect, length in WINDOW_LENGTH.items()
        ),
        # An approved permit has its entry in a status list (docs/RULES.md#status-lists).
        CheckConstraint("status <> 'approved' OR status_idx IS NOT NULL", name="status_entry"),
        Index("uq_permits_status_entry", "status_list", "status_idx", unique=True),
        # The check by employee and workspace, and by platform and channel: each of its
        # reads is a range of `ends_at` within one pair (app/authorizations/reader.py). On
        # PostgreSQL they also hold what ranks the permits covering an instant, so the
        # best is found in the index alone, however crowded the pair.
        *(
            Index(
                f"ix_permits_{name}_ends",
                *pair,
                "ends_at",
                postgresql_include=list(COVERING_INCLUDE),
            )
            for name, pair in CHECK_PAIRS
        ),
        # Its next approval to start after an instant, ties by id (`rules.NEXT_TO_START`):
        # the first entry of a range.
        *(
            Index(
                f"ix_permits_{name}_approved_starts",
                *pair,
                "starts_at",
                "id",
                postgresql_where=text("status = 'approved'"),
                sqlite_where=text("status = 'approved'"),
            )
            for name, pair in CHECK_PAIRS
        ),
        Index("ix_permits_workspace_starts_at", "workspace_code", "starts_at"),
        Index("ix_permits_unit_status", "unit_code", "status"),
        # The sweep's reminders and escalations still to record (few rows whatever the
        # history: only pending permits not yet reminded of, or escalated).
        *(
            Index(
                f"ix_permits_{recorded}_due",
                "starts_at",
                postgresql_where=text(f"status = 'pending' AND {recorded} IS NULL"),
                sqlite_where=text(f"status = 'pending' AND {recorded} IS NULL"),
            )
            for recorded in ("reminded_at", "escalated_at")
        ),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    requester_nip: Mapped[str] = mapped_column(ForeignKey("employees.nip"))
    workspace_code: Mapped[str] = mapped_column(ForeignKey("workspaces.code"))
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    platform: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(200))
    # `channel` folded for matching: lower case, without a leading "@".
    channel_key: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attestations: Mapped[dict[str, bool]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    decided_as: Mapped[str | None] = mapped_column(String(16), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    decision_note: Mapped[str | None] = mapped_column(Text, default=None)
    closed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    close_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # When the sweep recorded the reminder and the escalation of a permit still pending
    # near its start (docs/RULES.md#escalation): each once. The escalation holds by time,
    # recorded or not.
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Its entry in a status list, given when it is approved and kept for good: the bit that
    # says whether its signed credential is withdrawn (docs/RULES.md#status-lists).
    status_list: Mapped[int | None] = mapped_column(Integer, default=None)
    status_idx: Mapped[int | None] = mapped_column(Integer, default=None)


class StatusList(Base):
    """A status list of signed permits: `size` entries, `used` of them given so far
    (docs/RULES.md#status-lists)."""

    __tablename__ = "status_lists"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyRecord(Base):
    """The first response to an `Idempotency-Key`, replayed for 24 hours."""

    __tablename__ = "idempotency_records"

    principal: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
