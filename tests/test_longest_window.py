"""The longest window (docs/RULES.md#longest-window): no stored permit's window is longer
than 7 days, whatever wrote it, and the check, which reads only the permits ending
within that of the instant asked about, still finds a permit of exactly that length
beside a season of permits to come. Migration 0009 holds the table to it and refuses a
database holding a longer window, changing nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from app.config import LONGEST_WINDOW
from app.migrate import alembic_config, upgrade
from tests.credentials_support import approved
from tests.permits_support import Office, set_window
from tests.support import Org, fetch_rows, in_a_thread
from tests.test_check_rules import _asker, _outcome

pytestmark = pytest.mark.anyio


def _start(microsecond: int) -> datetime:
    return (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=microsecond)


@pytest.mark.parametrize("microsecond", [0, 999_999])
async def test_the_table_keeps_the_longest_window_and_refuses_a_longer_one(
    app: FastAPI, org: Org, backend: str, microsecond: int
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    start = _start(microsecond)
    await set_window(app, permit["id"], start, LONGEST_WINDOW)  # exactly the longest: kept
    # PostgreSQL reckons to the microsecond; SQLite to the millisecond, with half a second's
    # slack (app.permits.models.SQLITE_SLACK).
    least = timedelta(microseconds=1) if backend == "postgresql" else timedelta(seconds=1)
    for longer in (least, timedelta(days=1)):
        with pytest.raises(IntegrityError, match="window_length"):
            await set_window(app, permit["id"], start, LONGEST_WINDOW + longer)
    stored = await office.client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)
    assert stored.status_code == 200, stored.text
    ends = datetime.fromisoformat(stored.json()["ends_at"])
    assert ends == start + LONGEST_WINDOW  # the refused writes changed nothing


async def test_a_permit_of_the_longest_window_answers_beside_a_season_to_come(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    office = ask.office
    week = await approved(office)
    start = _start(0)
    await set_window(app, week["id"], start, LONGEST_WINDOW)
    # A season of approvals after it, which the check's range of ends leaves unread, and a
    # request still pending inside its window, which it reads.
    season = [await approved(office, start=start + timedelta(days=8 + n)) for n in range(12)]
    pending = await office.submit(start=start + timedelta(days=2))

    async def answer(at: datetime) -> tuple[bool, str, str | None]:
        return _outcome(await ask("employee", at))  # the fast path and the route agree

    end = start + LONGEST_WINDOW
    assert await answer(start - timedelta(seconds=1)) == (False, "not_started", week["id"])
    assert await answer(start) == (True, "approved", week["id"])
    # Both cover two days in: the approved one answers.
    assert await answer(start + timedelta(days=2, minutes=1)) == (True, "approved", week["id"])
    assert await answer(end - timedelta(microseconds=1)) == (True, "approved", week["id"])
    assert await answer(end) == (False, "not_started", season[0]["id"])
    # Revoked, the week ranks after the request pending inside it, and still answers alone.
    revoked = await office.act(week["id"], "revoke", office.head["nip"], {"reason": "Dicabut"})
    assert revoked.status_code == 200, revoked.text
    assert await answer(start + timedelta(days=2, minutes=1)) == (False, "pending", pending["id"])
    assert await answer(end - timedelta(seconds=1)) == (False, "revoked", week["id"])


async def test_migration_0009_refuses_a_database_with_a_longer_window_and_changes_nothing(
    app: FastAPI, org: Org, database_url: str
) -> None:
    office = await Office.create(org)
    permit = await office.submit()
    start = _start(0)
    in_a_thread(lambda: command.downgrade(alembic_config(database_url), "0008"))
    await set_window(app, permit["id"], start, timedelta(days=8))  # by hand, before 0009

    with pytest.raises(RuntimeError, match=r"1 permit\(s\) have a window longer than 7 days"):
        in_a_thread(lambda: upgrade(database_url))
    version, ends = await fetch_rows(
        database_url,
        "SELECT version_num FROM alembic_version",
        f"SELECT ends_at FROM permits WHERE id = '{permit['id']}'",  # noqa: S608 (an id we made)
    )
    assert [tuple(row) for row in version] == [("0008",)]
    assert len(ends) == 1  # the row is as it was: nothing changed, nothing removed

    await set_window(app, permit["id"], start, LONGEST_WINDOW)  # shortened by the operator
    in_a_thread(lambda: upgrade(database_url))
    with pytest.raises(IntegrityError, match="window_length"):
        await set_window(app, permit["id"], start, timedelta(days=8))
