"""Loading records: one by its key, or the 404 that says it does not exist; or a page.

`get_or_404` is the one lookup behind the organisation's and the API keys' "load or
404" (the routes' dependencies and the services that change a record): a key that
could name no record is not sent to the database (`could_be`). `matching` and
`page_of` are the lists' filters and keyset pages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.db import Base
from app.errors import NotFound
from app.pagination import Page, PageRequest, keyset_page
from app.schemas import changes_between
from app.timeutil import utcnow

Record = TypeVar("Record", bound=Base)
Row = TypeVar("Row")
Out = TypeVar("Out", bound=BaseModel)


async def get_or_404(
    session: AsyncSession,
    model: type[Record],
    key: str,
    what: str,
    *,
    for_update: bool = False,
    could_be: Callable[[str], bool] | None = None,
) -> Record:
    """The `model` row keyed `key` (locked when `for_update`); `NotFound` naming it as
    `what` ("Unit", "API key", …) when there is none."""
    row = None
    if could_be is None or could_be(key):
        row = await session.get(model, key, with_for_update=for_update)
    if row is None:
        raise NotFound(f"{what} {key} does not exist.")
    return row


def matching(statement: Select[Row], *filters: tuple[Any, object]) -> Select[Row]:
    """`statement` narrowed by each (column, value) filter given; a value of None (the
    filter left out) narrows nothing."""
    for column, value in filters:
        if value is not None:
            statement = statement.where(
                column.is_(value) if isinstance(value, bool) else column == value
            )
    return statement


async def page_of(
    session: AsyncSession,
    statement: Select[Row],
    key: InstrumentedAttribute[str],
    out: type[Out],
    page: PageRequest,
    *,
    newest_first: bool = False,
) -> Page[Out]:
    """The `page` of `statement`'s rows, ordered by their unique string `key` (oldest first,
    or `newest_first`), each shaped as `out`."""
    rows, next_cursor = await keyset_page(
        session,
        statement,
        key,
        cursor=page.cursor,
        limit=page.limit,
        key_of=lambda row: getattr(row, key.key),
        newest_first=newest_first,
    )
    return Page[Any](items=[out.model_validate(row) for row in rows], next_cursor=next_cursor)


def apply_changes(
    record: Any, fields: dict[str, Any], snapshot: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """Set a PATCH's `fields` on `record`; what changed, as its `*.updated` audit event
    records it (`{field: {from, to}}`, by `snapshot`), and if anything did, `updated_at`
    is now."""
    before = snapshot(record)
    for name, value in fields.items():
        setattr(record, name, value)
    changes = changes_between(before, snapshot(record))
    if changes:
        record.updated_at = utcnow()
    return changes
