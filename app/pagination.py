"""Keyset pagination: `{"items": [...], "next_cursor": ...}`, stable under inserts.

The cursor is the sort key of the last item returned, opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, StringConstraints, WithJsonSchema
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidInput, field_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_INT64 = 2**63

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
# Declared so; `decode_cursor` refuses anything else, and any cursor not of this service's
# making, as `invalid_cursor`.
_CursorText = Annotated[
    str,
    StringConstraints(max_length=512),
    WithJsonSchema({"type": "string", "maxLength": 512, "pattern": r"^[A-Za-z0-9_-]+$"}),
]
Cursor = Annotated[
    _CursorText | None,
    Query(description="`next_cursor` of the previous page (opaque: only the service's own)."),
]


T = TypeVar("T")
M = TypeVar("M")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _invalid_cursor() -> InvalidInput:
    return InvalidInput(
        "The cursor is not one this service issued.",
        code="invalid_cursor",
        errors=[field_error(["query", "cursor"], "unrecognised cursor", "invalid_cursor")],
    )


def decode_cursor(cursor: str) -> str | int:
    """The key inside `cursor`: a printable ASCII string or a 64-bit integer.

    Every key this service pages by is one of those. Anything else (a NUL, a
    lone surrogate, a number past BIGINT) would reach the database and fail there.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _invalid_cursor() from None
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return value
    if isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64:
        return value
    raise _invalid_cursor()


def decode_string_cursor(cursor: str) -> str:
    """The string key inside `cursor` (pages ordered by a string column, e.g. ids)."""
    key = decode_cursor(cursor)
    if not isinstance(key, str):
        raise _invalid_cursor()
    return key


@dataclass(frozen=True)
class PageRequest:
    """What a client asks of a list (docs/RULES.md#pagination): how many, and after what."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def after(self) -> str | None:
        """The string key the page starts after; None for the first page."""
        return decode_string_cursor(self.cursor) if self.cursor is not None else None


async def page_request(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> PageRequest:
    return PageRequest(limit, cursor)


PageParams = Annotated[PageRequest, Depends(page_request)]
"""`limit` and `cursor` of a list endpoint, declared once."""


async def keyset_page(
    session: AsyncSession,
    statement: Select[M],
    key: InstrumentedAttribute[str],
    *,
    cursor: str | None,
    limit: int,
    key_of: Callable[[M], str],
    newest_first: bool = False,
) -> tuple[Sequence[M], str | None]:
    """One page of `statement` ordered by the unique string column `key` (time-ordered ids:
    oldest first, or `newest_first`)."""
    if cursor is not None:
        after = decode_string_cursor(cursor)
        statement = statement.where(key < after if newest_first else key > after)
    order = key.desc() if newest_first else key
    rows = (await session.scalars(statement.order_by(order).limit(limit + 1))).all()
    if len(rows) > limit:
        return rows[:limit], encode_cursor(key_of(rows[limit - 1]))
    return rows, None
