"""Seed a benchmark database quickly: an organisation and N permits with a realistic mix.

Bulk inserts through SQLAlchemy Core (no API, no audit events: the seeded history is
not what is measured). Approved permits of a workspace never overlap, as in life.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from app.auth.credentials import hash_secret
from app.auth.models import ApiKey
from app.db import Database
from app.ids import new_id
from app.org.models import Employee, Unit, Workspace
from app.permits import policy, status_list
from app.permits.models import Permit, StatusList
from app.permits.vocabulary import PLATFORMS, channel_key

API_KEY_ID = "01benchbenchbenchbenchbenc"
API_KEY_SECRET = "bench-secret-not-for-production"
ATTESTATIONS = dict.fromkeys(policy.ATTESTATIONS, True)
PERMITS_PER_DAY = 10_000 / 120  # 10^4 permits: 60 days back, 60 days ahead
FUTURE = timedelta(days=60)  # inside the default 90-day lead time
WORKSPACES_PER_UNIT = 10
STATUS_MIX = [
    ("approved", 50),
    ("pending", 15),
    ("denied", 10),
    ("revoked", 10),
    ("expired", 10),
    ("cancelled", 5),
]


@dataclass
class Seeded:
    admin: str = ""
    heads: dict[str, str] = field(default_factory=dict)  # unit -> head NIP
    staff: list[str] = field(default_factory=list)
    workspaces: list[str] = field(default_factory=list)
    write_workspaces: list[str] = field(default_factory=list)
    samples: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # nip, ws, platform, channel
    permit_ids: list[str] = field(default_factory=list)
    approved_ids: list[str] = field(default_factory=list)  # those with a credential
    api_key: str = f"izs_{API_KEY_ID}_{API_KEY_SECRET}"


def status_entries(rng: random.Random) -> Iterator[tuple[int, int]]:
    """Entries `(list, index)` as approvals get them (app/permits/status_list.py): random
    free indexes of a list until `FILL` are given, then the next list."""
    for number in itertools.count():
        for index in rng.sample(range(status_list.SIZE), status_list.FILL):
            yield number, index


SHAPES = ("spread", "crowded")
PER_PAIR = 50
"""The crowded shape's permits per (requester, workspace) pair, each pair on a channel of
its own: as many per channel."""
WORKSPACES_PER_REQUESTER = 40


async def seed(
    db: Database,
    permits: int,
    *,
    shape: str = "spread",
    units: int = 20,
    staff_per_unit: int = 25,
) -> Seeded:
    """`spread`: permits of random staff in random rooms of their unit, a few per
    (requester, workspace) pair. `crowded`: `PER_PAIR` permits on every pair and channel,
    each requester on `WORKSPACES_PER_REQUESTER` workspaces (a studio's season of
    broadcasts); the same status mix and calendar."""
    assert shape in SHAPES
    rng = random.Random(47)
    now = datetime.now(UTC)
    out = Seeded()
    unit_rows, employee_rows, workspace_rows = [], [], []
    counter = 0

    def person(unit: str | None, **roles: bool) -> str:
        nonlocal counter
        counter += 1
        value = f"1985{1 + counter // 999 % 12:02d}01201001{1 + counter // 11988 % 2}{1 + counter % 999:03d}"
        employee_rows.append(
            {
                "nip": value,
                "name": f"Pegawai {counter}",
                "employment": "pns",
                "unit_code": unit,
                "position": None,
                "is_admin": roles.get("admin", False),
                "is_auditor": False,
                "active": True,
                "created_at": now,
                "updated_at": now,
            }
        )
        return value

    out.admin = person(None, admin=True)
    for u in range(units):
        code = f"BENCH-U{u:03d}"
        unit_rows.append(
            {
                "code": code,
                "name": f"Unit {u}",
                "parent_code": None,
                "head_nip": None,
                "active": True,
                "created_at": now,
                "updated_at": now,
            }
        )
    for u in range(units):
        code = f"BENCH-U{u:03d}"
        head = person(code)
        out.heads[code] = head
        unit_rows[u]["head_nip"] = head
        out.staff += [person(code) for _ in range(staff_per_unit)]
        for w in range(WORKSPACES_PER_UNIT):
            ws = f"BENCH-W{u:03d}-{w}"
            workspace_rows.append(
                {
                    "code": ws,
                    "name": ws,
                    "unit_code": code,
                    "kind": "studio",
                    "active": True,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            (out.write_workspaces if u == 0 else out.workspaces).append(ws)
    async with db.write() as session, session.begin():
        heads = {row["code"]: row.pop("head_nip") for row in unit_rows}
        await session.execute(insert(Unit), [{**row, "head_nip": None} for row in unit_rows])
        await session.execute(insert(Employee), employee_rows)
        await session.execute(insert(Workspace), workspace_rows)
        for code, head in heads.items():
            await session.execute(
                Unit.__table__.update().where(Unit.code == code).values(head_nip=head)
            )
        await session.execute(
            insert(ApiKey),
            [
                {
                    "id": API_KEY_ID,
                    "name": "bench",
                    "scopes": ["check"],
                    "secret_sha256": hash_secret(API_KEY_SECRET),
                    "created_at": now,
                    "created_by": out.admin,
                    "revoked_at": None,
                    "revoked_by": None,
                }
            ],
        )

    statuses = [s for s, weight in STATUS_MIX for _ in range(weight)]
    pairs: list[tuple[str, str, str, str]] = []  # crowded: requester, workspace, unit, channel
    if shape == "crowded":
        rooms = [(row["code"], row["unit_code"]) for row in workspace_rows]
        rooms = [room for room in rooms if room[0] not in out.write_workspaces]
        for number in range(max(1, permits // PER_PAIR)):
            requester = out.staff[number // WORKSPACES_PER_REQUESTER % len(out.staff)]
            ws, ws_unit = rooms[number % len(rooms)]
            pairs.append((requester, ws, ws_unit, f"@studio.{number}"))
    # History grows into the past at a steady rate; the future is what the lead-time
    # limit allows, and as busy at 10^6 permits as at 10^4.
    span = timedelta(days=max(1.0, permits / PERMITS_PER_DAY))
    first = now + FUTURE - span
    approved_share = dict(STATUS_MIX)["approved"] / sum(w for _, w in STATUS_MIX)
    per_workspace = max(1.0, permits * approved_share / (units * WORKSPACES_PER_UNIT))
    step = span / per_workspace  # the mean distance between approved windows of a room
    next_free: dict[str, datetime] = {}
    staff_unit = {row["nip"]: row["unit_code"] for row in employee_rows}
    batch: list[dict[str, object]] = []
    entries = status_entries(rng)
    used: Counter[int] = Counter()
    for i in range(permits):
        if pairs:
            requester, ws, unit, channel = pairs[i % len(pairs)]
        else:
            requester = rng.choice(out.staff)
            unit = staff_unit[requester]
            ws = f"BENCH-W{int(unit[-3:]):03d}-{rng.randrange(WORKSPACES_PER_UNIT)}"
            if ws in out.write_workspaces:
                ws = f"BENCH-W001-{rng.randrange(WORKSPACES_PER_UNIT)}"
                unit = "BENCH-U001"
            channel = f"@asn.{requester[-6:]}.{i % 7}"
        status = rng.choice(statuses)
        length = timedelta(minutes=rng.choice((30, 60, 90, 120)))
        if status == "approved":  # never overlapping within a room, as in life
            gap = max(timedelta(0), 2 * step - length) * rng.random()
            start = next_free.get(ws, first) + gap
            if start + length > now + FUTURE:
                status = "denied"  # the room's calendar is full that far ahead
            else:
                next_free[ws] = start + length
        if status != "approved":
            start = first + span * rng.random()
        if status == "pending" and start < now:
            status = "expired"
        platform = PLATFORMS[i % len(pairs) % len(PLATFORMS)] if pairs else rng.choice(PLATFORMS)
        permit_id = new_id()
        entry: tuple[int | None, int | None] = (None, None)
        if status in ("approved", "revoked"):  # approved once: given an entry then
            entry = next(entries)
            used[entry[0]] += 1
        batch.append(
            {
                "id": permit_id,
                "requester_nip": requester,
                "workspace_code": ws,
                "unit_code": unit,
                "platform": platform,
                "channel": channel,
                "channel_key": channel_key(channel),
                "purpose": "official",
                "title": "Seeded",
                "description": None,
                "starts_at": start,
                "ends_at": start + length,
                "attestations": ATTESTATIONS,
                "status": status,
                "decided_by": None,
                "decided_as": None,
                "decided_at": None,
                "decision_note": None,
                "closed_by": None,
                "closed_at": None,
                "close_reason": None,
                "created_at": now,
                "updated_at": now,
                "version": 1,
                "status_list": entry[0],
                "status_idx": entry[1],
            }
        )
        if len(out.samples) < 2000 and rng.random() < 0.2:
            out.samples.append((requester, ws, platform, channel))
        if len(out.permit_ids) < 2000 and rng.random() < 0.2:
            out.permit_ids.append(permit_id)
        if status == "approved" and len(out.approved_ids) < 2000 and rng.random() < 0.4:
            out.approved_ids.append(permit_id)
        if len(batch) == 5000 or i == permits - 1:
            async with db.write() as session, session.begin():
                await session.execute(insert(Permit), batch)
            batch = []
    async with db.write() as session, session.begin():
        lists = [
            {"number": number, "size": status_list.SIZE, "used": count, "created_at": now}
            for number, count in sorted(used.items())
        ]
        if lists:
            await session.execute(insert(StatusList), lists)
    return out
