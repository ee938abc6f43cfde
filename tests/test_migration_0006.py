"""Migration 0006 on a database with permits (docs/RULES.md#status-lists): every approved
permit gets a distinct entry of a status list, as an approval now would; down and up again
leave the schema as the models declare it (`alembic check` in CI)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from alembic import command

from app.migrate import alembic_config, upgrade
from app.permits.status_list import FILL, SIZE
from tests.credentials_support import approved
from tests.permits_support import Office
from tests.support import Org, fetch_rows, in_a_thread

pytestmark = pytest.mark.anyio


async def test_permits_approved_before_0006_get_distinct_entries(
    client: httpx.AsyncClient, org: Org, database_url: str
) -> None:
    office = await Office.create(org)
    permits = [await approved(office, starts_in=timedelta(hours=2 * n + 1)) for n in range(5)]
    pending = await office.submit(starts_in=timedelta(hours=20))
    revoked = permits.pop()
    response = await office.act(revoked["id"], "revoke", office.head["nip"], {"reason": "X"})
    assert response.status_code == 200

    in_a_thread(lambda: command.downgrade(alembic_config(database_url), "0005"))
    in_a_thread(lambda: upgrade(database_url))

    entries, lists = await fetch_rows(
        database_url,
        "SELECT id, status, status_list, status_idx FROM permits ORDER BY id",
        "SELECT number, size, used FROM status_lists",
    )
    given = {row[0]: (row[2], row[3]) for row in entries if row[1] == "approved"}
    assert set(given) == {p["id"] for p in permits}
    assert len(set(given.values())) == len(given)  # distinct
    assert all(number == 0 and 0 <= index < SIZE for number, index in given.values())
    others = {row[0]: (row[2], row[3]) for row in entries if row[1] != "approved"}
    assert others == {pending["id"]: (None, None), revoked["id"]: (None, None)}
    assert [tuple(row) for row in lists] == [(0, SIZE, len(permits))]
    assert len(permits) < FILL
