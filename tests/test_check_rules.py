"""The check's rules, over HTTP with the real app: the window by `at` and the status now
(docs/RULES.md#check-window), the ranking whatever the number of permits
(docs/RULES.md#check-ranking), what a caller may see (docs/RULES.md#check-disclosure) and
which queries are malformed (docs/RULES.md#check-query). Every check is asked through
the fast path and through the route (a parameter the fast path does not know sends it
there), and both must give the same answer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.authorizations import service
from app.authorizations.reader import LIVE, Candidate, CheckReader, Form, Pair
from app.authorizations.rules import evaluate
from app.org.models import Employee
from app.permits.models import Permit
from app.permits.vocabulary import channel_key
from app.timeutil import utcnow
from tests.permits_support import Office, move_window
from tests.support import Org, assert_problem, make_nip

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/authorizations/check"
_FULL_WIDTH = {ord("0") + n: 0xFF10 + n for n in range(10)}  # digits, but not ASCII ones
CHANNEL = "@diskominfotik.anambas"


async def every_permit(app: FastAPI, form: Form, first: str, second: str) -> list[Candidate]:
    """Every permit of a pair, straight from the database, as the check's rows."""
    if form == "employee":
        pair = (Permit.requester_nip == first, Permit.workspace_code == second)
    else:
        pair = (Permit.platform == first, Permit.channel_key == second)
    query = (
        select(
            Permit.id,
            Permit.requester_nip,
            Permit.workspace_code,
            Permit.unit_code,
            Permit.platform,
            Permit.channel,
            Permit.starts_at,
            Permit.ends_at,
            Permit.status,
            Permit.decided_by,
            Permit.closed_by,
            Employee.active,
        )
        .join(Employee, Employee.nip == Permit.requester_nip)
        .where(*pair)
    )
    async with app.state.db.engine.connect() as connection:
        return [Candidate(*row) for row in await connection.execute(query)]


def _answered(app: FastAPI) -> int:
    return int(app.state.check_fast_path.answered)


class Ask:
    """Asks the check about one office's staff member and workspace, and about the channel,
    through the fast path and through the route; both must agree."""

    def __init__(self, app: FastAPI, office: Office, headers: dict[str, str]) -> None:
        self.app, self.office, self.headers = app, office, headers

    def params(self, form: Form, at: datetime | None) -> dict[str, str]:
        if form == "employee":
            query = {
                "nip": self.office.staff["nip"],
                "workspace_code": self.office.workspace["code"],
            }
        else:
            query = {"platform": "youtube", "channel": CHANNEL}
        return {**query, **({"at": at.isoformat()} if at is not None else {})}

    async def __call__(
        self, form: Form, at: datetime | None = None, **params: str
    ) -> dict[str, Any]:
        query = {**self.params(form, at), **params}
        client = self.office.client
        before = _answered(self.app)
        fast = await client.get(CHECK, params=query, headers=self.headers)
        assert fast.status_code == 200, fast.text
        assert _answered(self.app) == before + 1, f"the fast path did not answer {query}"
        routed = await client.get(CHECK, params={**query, "via": "route"}, headers=self.headers)
        assert routed.status_code == 200, routed.text
        assert _answered(self.app) == before + 1, "the fast path answered a query it does not know"
        answers = []
        for response in (fast, routed):
            assert response.headers["cache-control"] == "no-store"
            body = dict(response.json())
            assert body.pop("checked_at").endswith("Z")
            answers.append(body)
        assert answers[0] == answers[1], query
        return answers[0]

    async def both(self, at: datetime | None = None) -> list[dict[str, Any]]:
        return [await self("employee", at), await self("channel", at)]


async def _key(client: httpx.AsyncClient, org: Org) -> dict[str, str]:
    created = await client.post("/api/v1/api-keys", json={"name": "gerbang"}, headers=org.admin)
    assert created.status_code == 201, created.text
    return {"X-API-Key": created.json()["key"]}


async def _asker(app: FastAPI, client: httpx.AsyncClient, org: Org) -> Ask:
    return Ask(app, await Office.create(org), await _key(client, org))


def _start(permit: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(permit["starts_at"]).astimezone(UTC)


def _outcome(answer: dict[str, Any]) -> tuple[bool, str, str | None]:
    return answer["authorized"], answer["reason"], (answer["permit"] or {}).get("id")


async def _ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


# --- docs/RULES.md#check-window ------------------------------------------------------------


async def test_a_permit_still_pending_answers_pending_inside_its_window_even_after_its_start(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    permit = await ask.office.submit(starts_in=timedelta(hours=2), channel=CHANNEL)
    start = _start(permit)
    for at in (start, start + timedelta(minutes=30), start + timedelta(minutes=59.99)):
        for answer in await ask.both(at):
            assert _outcome(answer) == (False, "pending", permit["id"]), at


async def test_a_pending_permit_is_expired_only_once_its_start_has_passed_in_real_time(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    permit = await ask.office.submit(starts_in=timedelta(hours=2), channel=CHANNEL)
    await move_window(app, permit["id"], timedelta(minutes=2), minutes=60)
    start = _start((await client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)).json())
    inside = start + timedelta(minutes=10)
    for answer in await ask.both(inside):
        assert _outcome(answer) == (False, "pending", permit["id"])
    # The same instant asked again once its start has passed in real time (time passing is
    # the window moving back by as much).
    await move_window(app, permit["id"], timedelta(minutes=-8), minutes=60)
    moved = _start((await client.get(f"/api/v1/permits/{permit['id']}", headers=org.admin)).json())
    for at in (moved, moved + timedelta(minutes=10), moved + timedelta(minutes=50)):
        for answer in await ask.both(at):
            assert _outcome(answer) == (False, "expired", permit["id"]), at


async def test_permits_not_approved_are_no_candidates_outside_their_window(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """Around an approval: a denial after it, a pending window and a cancellation before it,
    a revocation after the denial. Outside their own windows only the approval answers."""
    ask = await _asker(app, client, org)
    office, head = ask.office, ask.office.head["nip"]
    base = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    pending = await office.submit(start=base - timedelta(minutes=90), minutes=30, channel=CHANNEL)
    cancelled = await office.submit(start=base - timedelta(minutes=50), minutes=30, channel=CHANNEL)
    await _ok(await office.act(cancelled["id"], "cancel", office.staff["nip"]))
    approved = await office.submit(start=base, minutes=60, channel=CHANNEL)
    await _ok(await office.act(approved["id"], "approve", head))
    denied = await office.submit(start=base + timedelta(hours=2), minutes=60, channel=CHANNEL)
    await _ok(await office.act(denied["id"], "deny", head, {"reason": "Bentrok acara"}))
    revoked = await office.submit(start=base + timedelta(hours=4), minutes=60, channel=CHANNEL)
    await _ok(await office.act(revoked["id"], "approve", head))
    await _ok(await office.act(revoked["id"], "revoke", head, {"reason": "Melanggar"}))

    not_started = (False, "not_started", approved["id"])
    ended = (False, "ended", approved["id"])
    expected = [
        (base - timedelta(hours=3), not_started),
        (base - timedelta(minutes=60), not_started),  # between the pending and the cancelled
        (base - timedelta(minutes=1), not_started),  # just after the cancelled
        (base + timedelta(minutes=30), (True, "approved", approved["id"])),
        (base + timedelta(minutes=90), ended),  # before the denied
        (base + timedelta(hours=3, minutes=30), ended),  # between the denied and the revoked
        (base + timedelta(days=2), ended),  # after them all
        # Inside their own windows they answer.
        (base - timedelta(minutes=80), (False, "pending", pending["id"])),
        (base - timedelta(minutes=40), (False, "cancelled", cancelled["id"])),
        (base + timedelta(hours=2, minutes=10), (False, "denied", denied["id"])),
        (base + timedelta(hours=4, minutes=10), (False, "revoked", revoked["id"])),
    ]
    for at, outcome in expected:
        for answer in await ask.both(at):
            assert _outcome(answer) == outcome, at


async def test_without_an_approval_outside_every_window_there_is_no_permit(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    office, head = ask.office, ask.office.head["nip"]
    denied = await office.submit(starts_in=timedelta(hours=2), channel=CHANNEL)
    await _ok(await office.act(denied["id"], "deny", head, {"reason": "Bentrok acara"}))
    await office.submit(starts_in=timedelta(hours=4), channel=CHANNEL)  # pending
    for at in (None, _start(denied) + timedelta(hours=1), _start(denied) + timedelta(days=3)):
        for answer in await ask.both(at):
            assert _outcome(answer) == (False, "no_permit", None), at
            assert answer["permit"] is None


# --- docs/RULES.md#check-ranking: however many permits the pair has ------------------------


async def test_sixty_pending_windows_hide_no_approval(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """Pending windows that start before the approval and end before it ends, three times
    more than the statement reads of the live permits: the approval still answers before
    its start, inside its window (where they cover the instant too) and after its end."""
    ask = await _asker(app, client, org)
    office = ask.office
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    approved = await office.submit(start=start, minutes=120, channel=CHANNEL)
    await _ok(await office.act(approved["id"], "approve", office.head["nip"]))
    crowd = 3 * LIVE
    for n in range(crowd):
        await office.submit(
            start=start - timedelta(minutes=60) + timedelta(seconds=30 * n),
            minutes=120,
            channel=CHANNEL,
        )
    assert len(await every_permit(app, "channel", "youtube", channel_key(CHANNEL))) == crowd + 1
    for at, outcome in (
        (start - timedelta(minutes=90), (False, "not_started", approved["id"])),
        (start + timedelta(minutes=30), (True, "approved", approved["id"])),
        (start + timedelta(minutes=119), (True, "approved", approved["id"])),
        (start + timedelta(hours=3), (False, "ended", approved["id"])),
    ):
        for answer in await ask.both(at):
            assert _outcome(answer) == outcome, at


async def test_sixty_denied_and_cancelled_windows_hide_no_approval(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """Denied and cancelled windows starting inside the approval's and ending after it:
    the approval answers inside its window, and, after them all, it is the last approval
    to have ended."""
    ask = await _asker(app, client, org)
    office, head = ask.office, ask.office.head["nip"]
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    approved = await office.submit(start=start, minutes=60, channel=CHANNEL)
    await _ok(await office.act(approved["id"], "approve", head))
    for n in range(3 * LIVE):
        permit = await office.submit(
            start=start + timedelta(minutes=5, seconds=30 * n), minutes=120, channel=CHANNEL
        )
        if n % 2:
            await _ok(await office.act(permit["id"], "deny", head, {"reason": "Bentrok acara"}))
        else:
            await _ok(await office.act(permit["id"], "cancel", office.staff["nip"]))
    for at, outcome in (
        (start - timedelta(minutes=1), (False, "not_started", approved["id"])),
        (start + timedelta(minutes=45), (True, "approved", approved["id"])),
        (start + timedelta(hours=5), (False, "ended", approved["id"])),
    ):
        for answer in await ask.both(at):
            assert _outcome(answer) == outcome, at


async def test_the_answer_is_evaluate_over_every_permit_of_the_pair(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """A seeded random pair (every status, windows past and to come, some of them
    crowded, two rooms on one channel): at every start and end (and a microsecond either
    side) and at random instants, in time order and shuffled, the answer over HTTP is
    `evaluate` over every permit of the pair."""
    rng = random.Random(20261203)
    ask = await _asker(app, client, org)
    office, head = ask.office, ask.office.head["nip"]
    room = await org.workspace(office.unit["code"])
    base = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
    approved_windows: dict[str, list[tuple[datetime, datetime]]] = {}
    for n in range(45):
        workspace = rng.choice([office.workspace["code"], room["code"]])
        start = base + timedelta(minutes=rng.randrange(0, 600, 5))
        minutes = rng.choice([10, 30, 60, 120])
        permit = await office.submit(
            start=start, minutes=minutes, channel=CHANNEL, workspace_code=workspace
        )
        action = rng.choice(["pending", "pending", "approve", "deny", "cancel", "revoke"])
        window = (start, start + timedelta(minutes=minutes))
        taken = approved_windows.setdefault(workspace, [])
        if action in ("approve", "revoke") and any(
            window[0] < end and begin < window[1] for begin, end in taken
        ):
            action = "deny"  # approvals of one room never overlap
        if action in ("approve", "revoke"):
            await _ok(await office.act(permit["id"], "approve", head))
            taken.append(window)
        if action == "revoke":
            await _ok(await office.act(permit["id"], "revoke", head, {"reason": "Melanggar"}))
        elif action == "deny":
            await _ok(await office.act(permit["id"], "deny", head, {"reason": "Bentrok"}))
        elif action == "cancel":
            await _ok(await office.act(permit["id"], "cancel", office.staff["nip"]))
        if action != "approve" and n % 4 == 0:  # some of them into the past: expired if pending
            await move_window(
                app, permit["id"], timedelta(minutes=-rng.randrange(30, 900)), minutes
            )

    pairs: dict[Form, tuple[str, str]] = {
        "employee": (office.staff["nip"], office.workspace["code"]),
        "channel": ("youtube", channel_key(CHANNEL)),
    }
    rows = {form: await every_permit(app, form, *pair) for form, pair in pairs.items()}
    assert len(rows["channel"]) == 45
    edges = {edge for row in rows["channel"] for edge in (row.starts_at, row.ends_at)}
    instants = sorted(
        {e + timedelta(microseconds=d) for e in edges for d in (-1, 0, 1)}
        | {base + timedelta(minutes=rng.uniform(-900, 900)) for _ in range(40)}
    )
    shuffled = rng.sample(instants, 80)
    reasons = set()
    fresh = CheckReader(app.state.check_reader._raw, keep=False)  # as on PostgreSQL
    for at in [*instants, *shuffled]:
        for form in pairs:
            answer = await ask(form, at)
            expected = service.body(evaluate(rows[form], at, utcnow()), at)
            del expected["checked_at"]
            assert answer == expected, (form, at)
            reasons.add(answer["reason"])
            # A reading not kept holds the one permit that answers, and nothing else.
            now = utcnow()
            reading = await fresh.read(Pair(form, *pairs[form]), at, now)
            picked = evaluate(rows[form], at, now).row
            assert [c.id for c in reading.candidates] == ([] if picked is None else [picked.id])
    assert {"approved", "not_started", "ended", "pending", "expired", "denied"} <= reasons


def test_evaluate_ranks_permits_covering_the_instant() -> None:
    """docs/RULES.md#check-ranking (1), without the database: approved now, then pending now,
    then the rest; ties by the earliest start, then the smallest id; the status is now's."""
    at = datetime(2026, 12, 3, 10, tzinfo=UTC)

    def row(n: str, status: str, starts: int, *, active: bool = True) -> Candidate:
        begin = at + timedelta(minutes=starts)
        return Candidate(
            n, "r", "w", "u", "youtube", "c", begin, begin + timedelta(hours=2), status, None,
            None, active,
        )  # fmt: skip

    def pick(rows: Sequence[Candidate], now: datetime = at - timedelta(hours=1)) -> tuple[str, str]:
        verdict = evaluate(rows, at, now)
        return verdict.reason, "" if verdict.row is None else verdict.row.id

    denied, pending, later = (
        row("a", "denied", -60),
        row("b", "pending", -30),
        row("c", "pending", -10),
    )
    approved, twin = row("z", "approved", -5), row("y", "approved", -5)
    assert pick([denied, pending, later, approved]) == ("approved", "z")
    assert pick([denied, approved, twin]) == ("approved", "y")
    assert pick([denied, later, pending]) == ("pending", "b")
    # Once `pending`'s start has passed in real time, it is expired, among the rest.
    now = at - timedelta(minutes=20)
    assert pick([denied, later, pending], now) == ("pending", "c")
    assert pick([denied, pending], now) == ("denied", "a")
    assert pick([pending], now) == ("expired", "b")
    assert pick([row("x", "approved", -5, active=False)]) == ("employee_inactive", "x")
    assert pick([]) == ("no_permit", "")


# --- docs/RULES.md#check-disclosure ------------------------------------------------------------


async def test_a_plain_employee_sees_only_whether_a_permit_they_may_not_read_is_approved(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    office, head = ask.office, ask.office.head["nip"]
    base = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    approved = await office.submit(start=base, minutes=60, channel=CHANNEL)
    await _ok(await office.act(approved["id"], "approve", head))
    denied = await office.submit(start=base + timedelta(hours=2), minutes=60, channel=CHANNEL)
    await _ok(await office.act(denied["id"], "deny", head, {"reason": "Bentrok acara"}))
    pending = await office.submit(start=base + timedelta(hours=4), minutes=60, channel=CHANNEL)
    instants = {
        "not_started": base - timedelta(hours=1),
        "approved": base + timedelta(minutes=30),
        "ended": base + timedelta(minutes=90),
        "denied": base + timedelta(hours=2, minutes=30),
        "pending": base + timedelta(hours=4, minutes=30),
    }
    ids = {"approved": approved["id"], "not_started": approved["id"], "ended": approved["id"]}
    ids |= {"denied": denied["id"], "pending": pending["id"]}

    # Full answers: an API key, an admin, an auditor, and the permits' readers: the
    # requester, the head (their approver now, who decided them too) and a colleague
    # holding a delegation for the unit now (an approver now, no party).
    auditor = await org.employee(roles=["auditor"])
    delegate = await org.employee(unit_code=office.unit["code"])
    await office.delegate(delegate["nip"])
    readers: list[dict[str, str]] = [ask.headers, org.admin, org.as_(auditor["nip"])]
    readers += [org.as_(office.staff["nip"]), org.as_(head), org.as_(delegate["nip"])]
    for headers in readers:
        asker = Ask(app, office, headers)
        for reason, at in instants.items():
            for answer in await asker.both(at):
                assert _outcome(answer) == (reason == "approved", reason, ids[reason])

    # A colleague of the same unit and an employee of another unit may read none of them.
    outsider = await org.employee()
    for nip in (office.colleague["nip"], outsider["nip"]):
        asker = Ask(app, office, org.as_(nip))
        for reason, at in instants.items():
            for answer in await asker.both(at):
                shown = "approved" if reason == "approved" else "no_permit"
                assert _outcome(answer) == (reason == "approved", shown, None), (nip, reason)


async def test_the_approvers_are_read_only_for_an_employee_who_could_be_one(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """Disclosure needs a permit's approvers only to see whether the caller is one; an
    employee who heads no unit and holds no delegation is nobody's approver, so their check
    is one statement. The answers are the same either way (route and fast path agree)."""
    ask = await _asker(app, client, org)
    office = ask.office
    permit = await office.submit(starts_in=timedelta(hours=3), channel=CHANNEL)
    await _ok(await office.act(permit["id"], "approve", office.head["nip"]))
    inside = _start(permit) + timedelta(minutes=5)
    elsewhere, _ = await org.unit_with_head()  # heads another unit: approver of none of these
    later = await org.employee()
    await office.delegate(later["nip"], starts_in=timedelta(days=1))  # a Plh from tomorrow
    reader = app.state.check_reader
    for nip, statements in (
        (office.colleague["nip"], 1),
        (elsewhere["head_nip"], 2),
        (later["nip"], 2),
    ):
        asker = Ask(app, office, org.as_(nip))
        before = reader.statements_run
        response = await client.get(
            CHECK, params=asker.params("employee", inside), headers=asker.headers
        )
        assert reader.statements_run - before == statements, nip
        assert _outcome(response.json()) == (True, "approved", None)
        for answer in await asker.both(inside):
            assert _outcome(answer) == (True, "approved", None)


async def test_whoever_decided_or_closed_a_permit_reads_it_after_they_no_longer_could(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    office = ask.office
    delegate = await org.employee(unit_code=office.unit["code"])
    delegation = await office.delegate(delegate["nip"])
    permit = await office.submit(starts_in=timedelta(hours=3), channel=CHANNEL)
    await _ok(await office.act(permit["id"], "deny", delegate["nip"], {"reason": "Bentrok"}))
    inside = _start(permit) + timedelta(minutes=5)
    for answer in await Ask(app, office, org.as_(delegate["nip"])).both(inside):
        assert _outcome(answer) == (False, "denied", permit["id"])
    ended = await client.delete(f"/api/v1/delegations/{delegation['id']}", headers=org.admin)
    assert ended.status_code in (200, 204), ended.text
    for answer in await Ask(app, office, org.as_(delegate["nip"])).both(inside):
        assert _outcome(answer) == (False, "denied", permit["id"])  # decided_by
    for answer in await Ask(app, office, org.as_(office.colleague["nip"])).both(inside):
        assert _outcome(answer) == (False, "no_permit", None)


async def test_unknown_and_inactive_employees_are_no_permit_to_a_plain_employee(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    office = ask.office
    permit = await office.submit(starts_in=timedelta(hours=2), channel=CHANNEL)
    await _ok(await office.act(permit["id"], "approve", office.head["nip"]))
    inside = _start(permit) + timedelta(minutes=5)
    unknown = {"nip": make_nip()}
    head = org.as_(office.head["nip"])  # a reader of the permit, but no admin or auditor
    for headers in (ask.headers, org.admin, head):
        answer = await Ask(app, office, headers)("employee", inside, **unknown)
        full = headers is not head
        assert _outcome(answer) == (False, "unknown_employee" if full else "no_permit", None)
    response = await client.patch(
        f"/api/v1/employees/{office.staff['nip']}", json={"active": False}, headers=org.admin
    )
    assert response.status_code == 200, response.text
    for headers in (ask.headers, org.admin, head):
        full = headers is not head
        for form in ("employee", "channel"):
            answer = await Ask(app, office, headers)(form, inside)
            if full:
                assert answer["reason"] == "employee_inactive"
                assert answer["authorized"] is False
            else:
                assert _outcome(answer) == (False, "no_permit", None)


async def test_checks_asked_together_answer_as_alone(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    """Many checks at once (on PostgreSQL they go to the database together, as one statement
    over arrays), by an API key and by an employee who needs the permits' approvers read:
    each answers as it does alone."""
    ask = await _asker(app, client, org)
    office, head = ask.office, ask.office.head["nip"]
    base = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    for n in range(4):
        permit = await office.submit(start=base + timedelta(hours=2 * n), channel=CHANNEL)
        if n % 2 == 0:
            await _ok(await office.act(permit["id"], "approve", head))
    delegate = await org.employee(unit_code=office.unit["code"])
    await office.delegate(delegate["nip"])
    askers = [ask, Ask(app, office, org.as_(delegate["nip"]))]
    askers.append(Ask(app, office, org.as_(office.colleague["nip"])))
    questions = [
        (asker, form, base + timedelta(minutes=25 * m))
        for asker in askers
        for form in ("employee", "channel")
        for m in range(-2, 18)
    ]

    async def asked(asker: Ask, form: Form, at: datetime) -> dict[str, Any]:
        response = await client.get(CHECK, params=asker.params(form, at), headers=asker.headers)
        assert response.status_code == 200, response.text
        body = dict(response.json())
        del body["checked_at"]
        return body

    alone = [await asked(*question) for question in questions]
    raw = app.state.check_reader._raw
    trips = getattr(raw, "round_trips", None)
    together = await asyncio.gather(*(asked(*question) for question in questions))
    assert list(together) == alone
    if trips is not None:  # PostgreSQL: fewer trips than reads (the colleague's take two)
        assert raw.round_trips - trips < len(questions)
    assert {answer["reason"] for answer in alone} >= {"approved", "pending", "no_permit"}


# --- docs/RULES.md#check-query -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"nip": "1"}, "invalid_nip", "nip"),
        ({"nip": "19850501201003100"}, "invalid_nip", "nip"),  # 17 digits
        ({"nip": "1985050120100310011"}, "invalid_nip", "nip"),  # 19 digits
        ({"nip": "19850501201003100x"}, "invalid_nip", "nip"),
        ({"nip": "198505012010031001".translate(_FULL_WIDTH)}, "invalid_nip", "nip"),
        ({"nip": "198513012010031001"}, "invalid_nip", "nip"),  # born in month 13
        ({"nip": "198505012010031000"}, "invalid_nip", "nip"),  # sequence 000
        ({"nip": "198505012010033001"}, "invalid_nip", "nip"),  # sex 3
        ({"at": "2030-01-01T09:00:00"}, "validation_error", "at"),  # naive
        ({"at": "tomorrow"}, "validation_error", "at"),
        ({"nip": None, "workspace_code": None}, "invalid_check_query", None),  # neither
        ({"platform": "youtube", "channel": "c"}, "invalid_check_query", None),  # both
    ],
)
async def test_a_malformed_query_is_422_from_the_route(
    app: FastAPI,
    client: httpx.AsyncClient,
    org: Org,
    params: dict[str, str | None],
    code: str,
    field: str | None,
) -> None:
    """Through an API key, a plain employee and an admin: the fast path passes it on."""
    office = await Office.create(org)
    good = {"nip": office.staff["nip"], "workspace_code": office.workspace["code"]}
    query = {k: v for k, v in {**good, **params}.items() if v is not None}
    await _refused(app, client, org, office, query, code, field)


async def test_an_unknown_platform_is_422_from_the_route(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    office = await Office.create(org)
    query = {"platform": "myspace", "channel": CHANNEL}
    await _refused(app, client, org, office, query, "validation_error", "platform")


async def _refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    org: Org,
    office: Office,
    query: dict[str, str],
    code: str,
    field: str | None,
) -> None:
    for headers in (await _key(client, org), org.as_(office.staff["nip"]), org.admin):
        before = _answered(app)
        problem = assert_problem(await client.get(CHECK, params=query, headers=headers), 422, code)
        assert _answered(app) == before  # the fast path passed it on
        if field is not None:
            assert ["query", field] in [error["loc"] for error in problem["errors"]]


async def test_a_well_formed_nip_nobody_holds_is_no_422(
    app: FastAPI, client: httpx.AsyncClient, org: Org
) -> None:
    ask = await _asker(app, client, org)
    for nip in (make_nip(), make_nip(employment="pppk")):
        answer = await ask("employee", nip=nip)
        assert _outcome(answer) == (False, "unknown_employee", None)
