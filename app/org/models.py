"""Units, workspaces, employees and delegations: the organisation permits hang on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime
from app.nip import NIP_LENGTH

CODE_LENGTH = 32
UNIT_KINDS = ("administrative", "service", "meeting", "studio", "other")


class Unit(Base):
    __tablename__ = "units"

    code: Mapped[str] = mapped_column(String(CODE_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_code: Mapped[str | None] = mapped_column(
        ForeignKey("units.code"), index=True, default=None
    )
    head_nip: Mapped[str | None] = mapped_column(
        ForeignKey("employees.nip", use_alter=True), index=True, default=None
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Workspace(Base):
    __tablename__ = "workspaces"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('administrative', 'service', 'meeting', 'studio', 'other')", name="kind"
        ),
    )

    code: Mapped[str] = mapped_column(String(CODE_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Employee(Base):
    __tablename__ = "employees"
    __table_args__ = (CheckConstraint("employment IN ('pns', 'pppk')", name="employment"),)

    nip: Mapped[str] = mapped_column(String(NIP_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    employment: Mapped[str] = mapped_column(String(10))
    unit_code: Mapped[str | None] = mapped_column(
        ForeignKey("units.code"), index=True, default=None
    )
    position: Mapped[str | None] = mapped_column(String(200), default=None)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_auditor: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def roles(self) -> list[str]:
        return [
            role for role, held in (("admin", self.is_admin), ("auditor", self.is_auditor)) if held
        ]


class Delegation(Base):
    """A Plh (head temporarily absent) or Plt (post vacant) for one unit and window.

    Never deleted: ending one early sets `revoked_at`, so the record of who could
    decide, and when, survives.
    """

    __tablename__ = "delegations"
    __table_args__ = (
        CheckConstraint("kind IN ('plh', 'plt')", name="kind"),
        CheckConstraint("ends_at > starts_at", name="window"),
        Index("ix_delegations_unit_code_starts_at", "unit_code", "starts_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    delegate_nip: Mapped[str] = mapped_column(ForeignKey("employees.nip"), index=True)
    kind: Mapped[str] = mapped_column(String(3))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(64), default=None)
