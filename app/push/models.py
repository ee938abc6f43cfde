"""The event stream's single-use tickets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class EventTicket(Base):
    """A single-use ticket for the event stream (browsers' EventSource sends no headers).
    Only its SHA-256 is stored."""

    __tablename__ = "event_tickets"

    ticket_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Who the stream will be for, as `app.auth.credentials.caller_name` names them.
    caller: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
