"""Loading a record by its key, or the 404 that says it does not exist.

The one lookup behind the organisation's and the API keys' "load or 404" (the
routes' dependencies and the services that change a record): a key that could
name no record is not sent to the database (`could_be`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Base
from app.errors import NotFound

Record = TypeVar("Record", bound=Base)


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
