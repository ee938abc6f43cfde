"""Builders for permit tests: a unit with its head, a requester, a workspace, permit bodies,
and the one way tests move a permit's window (time passing) without sleeping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from app.audit.models import AuditEvent
from app.permits.models import Permit
from app.permits.policy import ATTESTATIONS
from tests.support import Org

PERMITS = "/api/v1/permits"

WIB = timezone(timedelta(hours=7))


def permit_body(
    workspace_code: str,
    *,
    starts_in: timedelta = timedelta(hours=1),
    minutes: int = 60,
    start: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid submission; times are sent in WIB (+07:00), as a mobile app in Anambas would."""
    begin = (start or datetime.now(UTC) + starts_in).astimezone(WIB)
    body = {
        "workspace_code": workspace_code,
        "platform": "youtube",
        "channel": "@diskominfotik.anambas",
        "purpose": "public_information",
        "title": "Siaran langsung sosialisasi SPBE",
        "description": "Sosialisasi kepada masyarakat",
        "starts_at": begin.isoformat(),
        "ends_at": (begin + timedelta(minutes=minutes)).isoformat(),
        "attestations": dict.fromkeys(ATTESTATIONS, True),
    }
    body.update(overrides)
    return body


async def submit(
    org: Org, nip: str, workspace_code: str, *, key: str | None = None, **body: Any
) -> dict[str, Any]:
    """`nip` asks for a permit (a `permit_body` with `body` applied); it must be created."""
    headers = {**org.as_(nip), **({"Idempotency-Key": key} if key else {})}
    response = await org.client.post(
        PERMITS, json=permit_body(workspace_code, **body), headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def move_window(
    app: FastAPI, permit_id: str, starts_in: timedelta, minutes: int = 60
) -> None:
    """Put a permit's window at `starts_in` from now (negative: in the past), straight in the
    database, as time passing would: no API lets a client do this."""
    await set_window(app, permit_id, datetime.now(UTC) + starts_in, timedelta(minutes=minutes))


async def set_window(app: FastAPI, permit_id: str, start: datetime, length: timedelta) -> None:
    """Write a permit's window straight into the table (`move_window`)."""
    async with app.state.db.engine.begin() as connection:
        await connection.execute(
            update(Permit)
            .where(Permit.id == permit_id)
            .values(starts_at=start, ends_at=start + length)
        )


async def stored_status(app: FastAPI, permit_id: str) -> str:
    """The `status` column as stored (the API shows the effective status)."""
    async with app.state.db.engine.connect() as connection:
        return str(await connection.scalar(select(Permit.status).where(Permit.id == permit_id)))


async def audit_actions(app: FastAPI, permit_id: str) -> list[tuple[str, str]]:
    """(action, actor) of every audit event of a permit, oldest first, read from the database."""
    async with app.state.db.engine.connect() as connection:
        rows = await connection.execute(
            select(AuditEvent.action, AuditEvent.actor)
            .where(AuditEvent.subject == f"permit:{permit_id}")
            .order_by(AuditEvent.seq)
        )
        return [(action, actor) for action, actor in rows]


@dataclass
class Office:
    """A unit with a head and two staff, and a workspace of the unit."""

    org: Org
    unit: dict[str, Any]
    head: dict[str, Any]
    staff: dict[str, Any]
    colleague: dict[str, Any]
    workspace: dict[str, Any]

    @classmethod
    async def create(cls, org: Org, *, parent_code: str | None = None) -> Office:
        unit, head = await org.unit_with_head(parent_code=parent_code)
        staff = await org.employee(unit_code=unit["code"])
        colleague = await org.employee(unit_code=unit["code"])
        workspace = await org.workspace(unit["code"], kind="studio")
        return cls(org, unit, head, staff, colleague, workspace)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.org.client

    async def submit(
        self, nip: str | None = None, workspace_code: str | None = None, **body: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/permits",
            json=permit_body(workspace_code or self.workspace["code"], **body),
            headers=self.org.as_(nip or self.staff["nip"]),
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def act(
        self,
        permit_id: str,
        action: str,
        nip: str,
        body: dict[str, Any] | None = None,
        **headers: str,
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/permits/{permit_id}/{action}",
            json=body or {},
            headers={**self.org.as_(nip), **headers},
        )

    async def delegate(
        self,
        nip: str,
        kind: str = "plh",
        unit_code: str | None = None,
        starts_in: timedelta = timedelta(0),
    ) -> dict[str, Any]:
        now = datetime.now(UTC) + starts_in
        response = await self.client.post(
            f"/api/v1/units/{unit_code or self.unit['code']}/delegations",
            json={
                "delegate_nip": nip,
                "kind": kind,
                "starts_at": now.isoformat(),
                "ends_at": (now + timedelta(days=2)).isoformat(),
                "reason": "Kepala dinas bertugas ke luar daerah",
            },
            headers=self.org.admin,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


async def office_with_every_status(app: FastAPI, org: Org) -> tuple[Office, list[dict[str, str]]]:
    """An office whose staff member has permits in every status, and queries that meet
    every reason the check gives, by employee and by channel, at many instants."""
    office = await Office.create(org)
    head = office.head["nip"]
    approved = await office.submit(starts_in=timedelta(hours=2), minutes=60)
    assert (await office.act(approved["id"], "approve", head)).status_code == 200
    await office.submit(starts_in=timedelta(hours=4), minutes=60)  # pending
    denied = await office.submit(starts_in=timedelta(hours=6), minutes=60)
    assert (await office.act(denied["id"], "deny", head, {"reason": "rapat"})).status_code == 200
    revoked = await office.submit(starts_in=timedelta(hours=8), minutes=60)
    assert (await office.act(revoked["id"], "approve", head)).status_code == 200
    response = await office.act(revoked["id"], "revoke", head, {"reason": "dicabut"})
    assert response.status_code == 200
    expired = await office.submit(starts_in=timedelta(hours=10), minutes=60)
    await move_window(app, expired["id"], starts_in=timedelta(days=-3))
    last = await office.submit(office.colleague["nip"], starts_in=timedelta(hours=16), minutes=60)
    assert (await office.act(last["id"], "approve", head)).status_code == 200

    nip, workspace = office.staff["nip"], office.workspace["code"]
    start = datetime.fromisoformat(approved["starts_at"]).astimezone(UTC)
    instants = [start + timedelta(hours=h, minutes=30) for h in (-1, 0, 1, 2, 4, 6, 8, 12, 15)]
    instants.append(datetime.now(UTC) - timedelta(days=3, minutes=-30))  # inside `expired`
    queries: list[dict[str, str]] = [
        {"nip": nip, "workspace_code": workspace},
        {"platform": "youtube", "channel": "@DiskominfoTik.Anambas"},
        {"nip": nip, "workspace_code": "TIDAK-ADA"},
        {"nip": "199001012020121001", "workspace_code": workspace},
        {"platform": "tiktok", "channel": "siaran-lain"},
    ]
    queries += [{"nip": nip, "workspace_code": workspace, "at": at.isoformat()} for at in instants]
    queries += [
        {"platform": "youtube", "channel": "diskominfotik.anambas", "at": at.isoformat()}
        for at in instants
    ]
    return office, queries


async def api_key(client: httpx.AsyncClient, org: Org, scopes: list[str]) -> str:
    """A new API key with `scopes`, made by the admin."""
    response = await client.post(
        "/api/v1/api-keys", json={"name": "gerbang", "scopes": scopes}, headers=org.admin
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def without_clock(answer: dict[str, Any]) -> dict[str, Any]:
    """A check's answer but its `checked_at` (which must be a UTC instant)."""
    answer = dict(answer)
    assert answer.pop("checked_at").endswith("Z")
    return answer
