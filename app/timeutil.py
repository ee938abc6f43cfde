"""One way to read and write instants: UTC, RFC 3339 with `Z`, microseconds.

The audit hash covers timestamps exactly as served, so every timestamp the API
returns goes through `format_instant`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, PlainSerializer, WithJsonSchema

# RFC 3339 date-time; the offset is checked by AwareDatetime so that a missing one
# gets its own message ("naive"). Numbers (Unix times) are not RFC 3339 and are refused.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC)


def format_instant(value: datetime) -> str:
    """`2025-10-20T02:00:00.000000Z` (isoformat: several times cheaper than strftime)."""
    return as_utc(value).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with an offset, e.g. 2025-10-20T09:00:00+07:00"
        )
    return value


def _in_range(value: datetime) -> datetime:
    """An instant must exist in UTC (docs/RULES.md#times): `9999-12-31T23:00:00-05:00` or
    `0001-01-01T00:00:00+07:00` do not, and are refused here rather than failing later."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(
            "is out of range: instants run from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
        ) from None
    return value


InstantIn = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_range)]
"""An RFC 3339 date-time with an offset, in range (naive times and numbers are refused).
Every timestamp that enters the service, in a body, a query or a filter, is read by it."""

DATE_TIME = WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization")
Instant = Annotated[
    InstantIn, PlainSerializer(format_instant, return_type=str, when_used="json"), DATE_TIME
]
"""`InstantIn` on input; RFC 3339 UTC with microseconds on output (`format: date-time`)."""
InstantText = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An instant already written by `format_instant` (the check's body, built by hand)."""
