"""An audit event exactly as served, which is exactly what its hash covers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from app.audit.models import AuditEvent
from app.timeutil import format_instant


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: str
    actor: str
    action: str
    subject: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    @field_validator("at", mode="before")
    @classmethod
    def _served_instant(cls, value: object) -> object:
        return format_instant(value) if isinstance(value, datetime) else value

    @classmethod
    def from_row(cls, event: AuditEvent) -> AuditEventOut:
        return cls.model_validate(event)
