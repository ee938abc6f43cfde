"""Kept readings of the check (`app.authorizations.reader`): where the database can say
cheaply that nothing was committed (SQLite), a check's reading answers the same check,
at the same or a later instant before the pair's next start or end, until anything is
committed. These tests hold that to
the answers of a fresh read at every instant that matters (each start and end of the
pair's permits), and show that a commit of any connection, of this process or another,
is seen by the very next check."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.authorizations import service
from app.authorizations.reader import LIVE, Candidate, CheckReader, Form, Kept, Pair, Reading
from app.permits.vocabulary import channel_key
from app.timeutil import utcnow
from tests.conftest import BACKENDS
from tests.permits_support import Office, move_window
from tests.support import Org
from tests.test_check_rules import every_permit

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/authorizations/check"
CHANNEL = "@diskominfotik.anambas"
MICROSECOND = timedelta(microseconds=1)


def _reads(app: FastAPI) -> int:
    reader: CheckReader = app.state.check_reader
    return reader.statements_run


async def _key(client: httpx.AsyncClient, org: Org) -> dict[str, str]:
    created = await client.post("/api/v1/api-keys", json={"name": "gerbang"}, headers=org.admin)
    assert created.status_code == 201, created.text
    return {"X-API-Key": created.json()["key"]}


async def _ask(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str]
) -> dict[str, Any]:
    response = await client.get(CHECK, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body = dict(response.json())
    del body["checked_at"]
    return body


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


async def _compare_at_every_edge(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], office: Office, base: datetime
) -> tuple[int, int]:
    """Ask both forms at every start and end of the pair's permits (and a microsecond
    either side), in time order, each twice; every answer must be a fresh read's. Returns
    how many times the service ran the statement, and how many checks it answered."""
    moments = {base - timedelta(hours=1), base + timedelta(days=2)}
    for form in ("employee", "channel"):
        for permit in await every_permit(app, form, *_pair(office, form)):
            for edge in (permit.starts_at, permit.ends_at):
                moments |= {edge - MICROSECOND, edge, edge + MICROSECOND}
    before = _reads(app)
    forms: tuple[Form, ...] = ("employee", "channel")
    for at in sorted(moments):
        for form in forms:
            if form == "employee":
                params = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
            else:
                params = {"platform": "youtube", "channel": CHANNEL}
            answer = await _ask(client, headers, {**params, "at": _instant(at)})
            again = await _ask(client, headers, {**params, "at": _instant(at)})
            now = utcnow()
            expected = service.body(
                service.decide(form, await _fresh(app, office, form, at, now), at, now), at
            )
            del expected["checked_at"]
            assert answer == again == expected, (form, at)
    return _reads(app) - before, 2 * 2 * len(moments)


def _pair(office: Office, form: Form) -> tuple[str, str]:
    if form == "employee":
        return office.staff["nip"], office.workspace["code"]
    return "youtube", channel_key(CHANNEL)


async def _fresh(app: FastAPI, office: Office, form: Form, at: datetime, now: datetime) -> Reading:
    """The statement's reading at `at`, read now, nothing kept."""
    fresh = CheckReader(app.state.check_reader._raw, keep=False)
    return await fresh.read(Pair(form, *_pair(office, form)), at, now)


async def test_kept_answers_are_a_fresh_reads_at_every_start_and_end(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    office = await Office.create(org)
    headers = await _key(client, org)
    head = office.head["nip"]
    base = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    windows = [  # (start in minutes from base, minutes, decision)
        (0, 60, "approve"),
        (30, 90, None),  # pending, overlapping the approval
        (120, 60, "deny"),
        (180, 60, "approve"),
        (240, 30, "cancel"),
        (300, 60, "approve"),
        (300, 60, None),  # the same window, pending: the last to end are tied
        # And in another room (approvals of one room never overlap): on the channel, an
        # approval tied with the one above, so the last to end are tied by id.
        (300, 60, "approve in another room"),
    ]
    room = await org.workspace(office.unit["code"])
    for offset, minutes, decision in windows:
        start = base + timedelta(minutes=offset)
        elsewhere = (
            {"workspace_code": room["code"]} if decision == "approve in another room" else {}
        )
        permit = await office.submit(start=start, minutes=minutes, channel=CHANNEL, **elsewhere)
        if decision == "cancel":
            acted = await office.act(permit["id"], "cancel", office.staff["nip"])
        elif decision == "deny":
            acted = await office.act(permit["id"], "deny", head, {"reason": "Bentrok acara"})
        elif decision is not None:
            acted = await office.act(permit["id"], "approve", head)
        if decision is not None:
            assert acted.status_code == 200, acted.text
    # Pending while its start passed in real time, overlapping an approval: expired now,
    # whichever instant is asked.
    overdue = await office.submit(start=base, minutes=60, channel=CHANNEL)
    await move_window(app, overdue["id"], timedelta(minutes=-30), minutes=60 * 8)
    approved = await office.submit(
        start=base, minutes=60, channel=CHANNEL, workspace_code=room["code"]
    )
    acted = await office.act(approved["id"], "approve", head)
    assert acted.status_code == 200, acted.text
    await move_window(app, approved["id"], timedelta(minutes=-20), minutes=10)

    reads, asked = await _compare_at_every_edge(app, client, headers, office, base)
    if backend == "sqlite":
        # Nothing was committed since: a form reads again only at an instant past a start
        # or an end, so never for the second asking at an instant.
        assert 2 <= reads <= asked // 2
    else:
        assert reads == asked  # PostgreSQL cannot tell cheaply: every check reads


async def test_a_crowded_instant_is_read_at_every_check(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    """As many permits covering an instant as the statement reads at most: the reading
    may have left some out, so it cannot be kept, and yet it answers as every permit of
    the pair would."""
    office = await Office.create(org)
    headers = await _key(client, org)
    base = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    for n in range(LIVE):
        await office.submit(start=base + timedelta(minutes=n), minutes=240, channel=CHANNEL)
    approved = await office.submit(start=base + timedelta(minutes=60), channel=CHANNEL)
    acted = await office.act(approved["id"], "approve", office.head["nip"])
    assert acted.status_code == 200, acted.text

    reads, _ = await _compare_at_every_edge(app, client, headers, office, base)
    assert reads >= 2 * 2 * LIVE  # read again at least while all are live


async def test_a_pair_with_many_permits_is_kept_between_its_starts_and_ends(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    """Many more permits than the statement reads, few covering any instant (a studio's
    season): the answers are a fresh read's at every edge, and on SQLite the second
    asking at an instant never reads."""
    office = await Office.create(org)
    headers = await _key(client, org)
    head = office.head["nip"]
    base = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    for n in range(2 * LIVE):
        permit = await office.submit(start=base + timedelta(hours=2 * n), channel=CHANNEL)
        if n % 3 == 0:
            acted = await office.act(permit["id"], "approve", head)
        elif n % 3 == 1:
            acted = await office.act(permit["id"], "deny", head, {"reason": "Bentrok acara"})
        else:
            continue
        assert acted.status_code == 200, acted.text

    reads, asked = await _compare_at_every_edge(app, client, headers, office, base)
    if backend == "sqlite":
        assert 2 <= reads <= asked // 2
    else:
        assert reads == asked


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "sqlite"], indirect=True)
async def test_a_reading_is_kept_for_later_instants_until_a_commit(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    """On SQLite, where readings are kept (PostgreSQL reads every time: the tests above)."""
    office = await Office.create(org)
    headers = await _key(client, org)
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    permit = await office.submit(start=start, minutes=60)
    approved = await office.act(permit["id"], "approve", office.head["nip"])
    assert approved.status_code == 200, approved.text
    end = start + timedelta(minutes=60)
    pair = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    steps = [  # (instant, reason, whether the statement runs)
        (start - timedelta(minutes=30), "not_started", True),
        (start - MICROSECOND, "not_started", False),
        (start, "approved", True),  # the permit starts: another reading
        (start + timedelta(minutes=1), "approved", False),
        (end - MICROSECOND, "approved", False),
        (end, "ended", True),  # and ends
        (end + timedelta(days=300), "ended", False),
        (start - timedelta(hours=1), "not_started", True),  # earlier than what was kept
        (start - MICROSECOND, "not_started", False),
        (end, "ended", True),
    ]
    for at, reason, reads in steps:
        before = _reads(app)
        answer = await _ask(client, headers, {**pair, "at": _instant(at)})
        assert answer["reason"] == reason, at
        assert _reads(app) - before == int(reads), at
    other = await org.employee()  # any commit, even one that changes nothing asked about
    assert other["nip"]
    before = _reads(app)
    assert (await _ask(client, headers, {**pair, "at": _instant(end)}))["reason"] == "ended"
    assert _reads(app) - before == 1


async def test_every_commit_is_seen_by_the_next_check(
    client: httpx.AsyncClient, org: Org, app: FastAPI, database_url: str
) -> None:
    """Through the API (another connection of this process) and from another process
    writing straight to the database: the next check reads again and answers from it."""
    office = await Office.create(org)
    headers = await _key(client, org)
    permit = await office.submit()
    approved = await office.act(permit["id"], "approve", office.head["nip"])
    assert approved.status_code == 200, approved.text
    await move_window(app, permit["id"], timedelta(minutes=-1))  # on air now
    pair = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    for _ in range(3):
        assert (await _ask(client, headers, pair))["reason"] == "approved"

    _deactivate_from_another_process(database_url, office.staff["nip"])
    assert (await _ask(client, headers, pair))["reason"] == "employee_inactive"

    reactivated = await client.patch(
        f"/api/v1/employees/{office.staff['nip']}", json={"active": True}, headers=org.admin
    )
    assert reactivated.status_code == 200, reactivated.text
    assert (await _ask(client, headers, pair))["reason"] == "approved"
    revoked = await office.act(
        permit["id"], "revoke", office.head["nip"], {"reason": "Melanggar angka 3"}
    )
    assert revoked.status_code == 200, revoked.text
    assert (await _ask(client, headers, pair))["reason"] == "revoked"


_DEACTIVATE = """
import asyncio, sqlite3, sys
import asyncpg
url, nip = sys.argv[1], sys.argv[2]
sql = "UPDATE employees SET active = {} WHERE nip = {}"
if url.startswith("sqlite"):
    with sqlite3.connect(url.split(":///", 1)[1]) as connection:
        assert connection.execute(sql.format(0, "?"), (nip,)).rowcount == 1
else:
    async def main():
        connection = await asyncpg.connect(url.replace("+asyncpg", "", 1))
        assert await connection.execute(sql.format("false", "$1"), nip) == "UPDATE 1"
        await connection.close()
    asyncio.run(main())
"""


def _deactivate_from_another_process(database_url: str, nip: str) -> None:
    subprocess.run([sys.executable, "-c", _DEACTIVATE, database_url, nip], check=True, timeout=60)


def _candidate(n: int, starts_at: datetime, minutes: int = 60) -> Candidate:
    return Candidate(
        id=f"p{n:03d}",
        requester_nip="199001012020121001",
        workspace_code="R-1",
        unit_code="U-1",
        platform="youtube",
        channel=CHANNEL,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=minutes),
        status="pending",
        decided_by=None,
        closed_by=None,
        requester_active=True,
    )


def _reading(candidates: list[Candidate], until: datetime | None = None) -> Reading:
    return Reading(None, False, None, None, False, False, False, True, True, candidates, until)


def test_a_crowded_instant_is_never_kept() -> None:
    """With `LIVE` permits covering the instant the statement may have left some out, so
    the reading says nothing about other instants; with fewer it holds until the next
    start or end it names (`kept_until`), or for ever when it names none."""
    now = datetime(2026, 12, 2, 8, tzinfo=UTC)
    ended = _candidate(0, now - timedelta(hours=3))
    covering = [_candidate(n, now - timedelta(minutes=n), 600) for n in range(1, LIVE + 1)]
    until = now + timedelta(minutes=600 - LIVE)
    assert Kept.of(_reading([*covering, ended], until), now) is None
    kept = Kept.of(_reading([*covering[:-1], ended], until), now)
    assert kept is not None
    assert kept.holds_at(now)
    assert kept.holds_at(until - MICROSECOND)
    assert not kept.holds_at(until)
    assert not kept.holds_at(now - MICROSECOND)
    forever = Kept.of(_reading([ended]), now)
    assert forever is not None
    assert forever.holds_at(now + timedelta(days=3650))


def test_a_kept_reading_judges_the_status_at_the_moment_of_each_check() -> None:
    """A pending permit whose start passes in real time while nothing is committed: the
    kept reading still holds it, and the status is judged at each check's moment
    (docs/RULES.md#expiry), not at the moment it was read."""
    read_at = datetime(2026, 12, 2, 8, tzinfo=UTC)
    pending = _candidate(1, read_at + timedelta(hours=1))
    inside = read_at + timedelta(hours=1, minutes=30)  # an instant the permit covers
    kept = Kept.of(_reading([pending], pending.ends_at), inside)
    assert kept is not None
    assert kept.holds_at(inside + timedelta(minutes=10))
    before_start = read_at + timedelta(minutes=59)
    verdict = service.decide("channel", kept.reading, inside, before_start)
    assert (verdict.reason, verdict.row) == ("pending", pending)
    after_start = read_at + timedelta(hours=1)
    verdict = service.decide("channel", kept.reading, inside, after_start)
    assert (verdict.reason, verdict.row) == ("expired", pending)
