"""The keys signed permits are signed with (docs/RULES.md#credential-key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class CredentialKey(Base):
    """One Ed25519 key: its public JWK (published while it may still be needed), and its
    private half sealed with SECRETS_KEY when the service generated it (None: the key is
    the operator's, in CREDENTIAL_KEY_FILE). At most one is not retired: the one that
    signs."""

    __tablename__ = "credential_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Published until then once retired: past the end of every credential it signed.
    published_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
