"""An audit event exactly as served, which is exactly what its hash covers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from app.audit.models import AuditEvent
from app.timeutil import InstantText, format_instant


class ServedEvent(BaseModel):
    """An audit event as served, but for its `hash`: exactly what the hash covers
    (`app.audit.chain`), so an event is hashed from this when it is appended."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: InstantText
    actor: str
    action: str
    subject: str
    data: dict[str, Any]
    prev_hash: str

    @field_validator("at", mode="before")
    @classmethod
    def _served_instant(cls, value: object) -> object:
        return format_instant(value) if isinstance(value, datetime) else value


class AuditEventOut(ServedEvent):
    hash: str

    @classmethod
    def from_row(cls, event: AuditEvent) -> AuditEventOut:
        return cls.model_validate(event)
