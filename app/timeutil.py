"""One way to read and write instants: UTC, RFC 3339 with `Z`, microseconds.

The audit hash covers timestamps exactly as served, so every timestamp the API
returns goes through `format_instant`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, PlainSerializer


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC)


def format_instant(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Instant = Annotated[
    AwareDatetime, PlainSerializer(format_instant, return_type=str, when_used="json")
]
"""An aware datetime on input (naive is refused), RFC 3339 UTC on output."""
