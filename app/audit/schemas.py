"""An audit event exactly as served, which is exactly what its hash covers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.audit.models import AuditEvent
from app.timeutil import format_instant


class AuditEventOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            seq=event.seq,
            at=format_instant(event.at),
            actor=event.actor,
            action=event.action,
            subject=event.subject,
            data=event.data,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )
