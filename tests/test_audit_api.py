"""The auditor API (docs/RULES.md #audit): list, CSV export, verification; tampering is
pinpointed."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import PROJECT_DIR, run_cli
from tests.support import (
    ADMIN_NIP,
    KeyRing,
    Org,
    ServerProcess,
    Tokens,
    assert_problem,
    server_env,
)

pytestmark = pytest.mark.anyio


async def _some_history(org: Org) -> tuple[dict[str, str], str]:
    """A few admin changes; returns an auditor's headers and a unit code."""
    unit, _head = await org.unit_with_head()
    await org.workspace(unit["code"])
    auditor = await org.employee(unit_code=unit["code"], roles=["auditor"])
    return org.as_(auditor["nip"]), unit["code"]


async def _tamper(app: FastAPI, backend: str, statement: str) -> None:
    """What someone with the database owner's rights could do: drop the guard, then edit."""
    async with app.state.db.engine.begin() as connection:
        if backend == "postgresql":
            await connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            await connection.execute(text("DROP TRIGGER audit_events_refuse_update"))
            await connection.execute(text("DROP TRIGGER audit_events_refuse_delete"))
        await connection.execute(text(statement))


async def test_events_are_listed_oldest_first_with_filters_and_pages(
    client: httpx.AsyncClient, org: Org
) -> None:
    auditor, unit_code = await _some_history(org)
    response = await client.get("/api/v1/audit/events", params={"limit": 3}, headers=auditor)
    assert response.status_code == 200
    first = response.json()
    assert [e["seq"] for e in first["items"]] == [1, 2, 3]
    assert first["items"][0]["prev_hash"] == "0" * 64
    seen = [e["seq"] for e in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (
            await client.get(
                "/api/v1/audit/events", params={"limit": 3, "cursor": cursor}, headers=auditor
            )
        ).json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
    assert seen == list(range(1, len(seen) + 1))

    by_action = await client.get(
        "/api/v1/audit/events", params={"action": "workspace.created"}, headers=auditor
    )
    assert [e["action"] for e in by_action.json()["items"]] == ["workspace.created"]
    by_unit = await client.get(
        "/api/v1/audit/events", params={"unit_code": unit_code}, headers=auditor
    )
    assert {e["action"] for e in by_unit.json()["items"]} >= {
        "unit.created",
        "unit.updated",
        "workspace.created",
    }
    by_actor = await client.get("/api/v1/audit/events", params={"actor": "nobody"}, headers=auditor)
    assert by_actor.json()["items"] == []
    future = await client.get(
        "/api/v1/audit/events", params={"since": "2999-01-01T00:00:00+07:00"}, headers=auditor
    )
    assert future.json() == {"items": [], "next_cursor": None}


async def test_only_auditors_and_admins_read_the_trail(client: httpx.AsyncClient, org: Org) -> None:
    staff = await org.employee()
    for path in ("/api/v1/audit/events", "/api/v1/audit/events.csv", "/api/v1/audit/verify"):
        assert_problem(
            await client.get(path, headers=org.as_(staff["nip"])), 403, "auditor_required"
        )
        assert_problem(await client.get(path), 401)
        assert (await client.get(path, headers=org.admin)).status_code == 200


async def test_csv_export_has_every_event(client: httpx.AsyncClient, org: Org) -> None:
    auditor, _ = await _some_history(org)
    response = await client.get("/api/v1/audit/events.csv", headers=auditor)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    listed = (
        await client.get("/api/v1/audit/events", params={"limit": 200}, headers=auditor)
    ).json()["items"]
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in listed]
    assert json.loads(rows[0]["data"]) == listed[0]["data"]
    assert rows[-1]["hash"] == listed[-1]["hash"]


async def test_verify_reports_count_and_head(client: httpx.AsyncClient, org: Org) -> None:
    auditor, _ = await _some_history(org)
    listed = (
        await client.get("/api/v1/audit/events", params={"limit": 200}, headers=auditor)
    ).json()["items"]
    response = await client.get("/api/v1/audit/verify", headers=auditor)
    assert response.json() == {
        "valid": True,
        "count": len(listed),
        "head": listed[-1]["hash"],
    }


@pytest.mark.chain_broken
async def test_an_altered_event_is_pinpointed(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    auditor, _ = await _some_history(org)
    with pytest.raises(Exception, match="append-only"):
        async with app.state.db.engine.begin() as connection:
            await connection.execute(
                text("UPDATE audit_events SET actor = 'someone' WHERE seq = 3")
            )
    await _tamper(app, backend, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 3")
    body = (await client.get("/api/v1/audit/verify", headers=auditor)).json()
    assert body["valid"] is False
    assert body["seq"] == 3
    assert body["count"] == 2
    assert "altered" in body["reason"]


@pytest.mark.chain_broken
async def test_a_removed_event_is_pinpointed(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    auditor, _ = await _some_history(org)
    await _tamper(app, backend, "DELETE FROM audit_events WHERE seq = 4")
    body = (await client.get("/api/v1/audit/verify", headers=auditor)).json()
    assert body["valid"] is False
    assert body["seq"] == 4
    assert "missing" in body["reason"]


@pytest.mark.chain_broken
async def test_cli_verifies_the_database_and_prints_the_head(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str, database_url: str
) -> None:
    auditor, _ = await _some_history(org)
    head = (await client.get("/api/v1/audit/verify", headers=auditor)).json()
    env = {"DATABASE_URL": database_url}
    verified = run_cli("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["head"] == head["head"]
    printed = run_cli("audit", "head", env=env)
    seq, digest, _at = printed.stdout.split()
    assert (int(seq), digest) == (head["count"], head["head"])

    await _tamper(app, backend, "UPDATE audit_events SET data = '{}' WHERE seq = 2")
    broken = run_cli("audit", "verify", env=env)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["seq"] == 2


@pytest.mark.slow
async def test_independent_script_and_cli_verify_a_running_service(
    database_url: str, keyring: KeyRing, tokens: Tokens, tmp_path: Path
) -> None:
    """docs/verify_audit_chain.py needs only Python and rfc8785, and agrees with the service."""
    server = ServerProcess(server_env(database_url, keyring, tmp_path / "data"), tmp_path)
    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            org = Org(http, tokens)
            await _some_history(org)
            expected = (await http.get("/api/v1/audit/verify", headers=org.admin)).json()
        token = tokens.mint(ADMIN_NIP)
        script = run_verify_script(server.base_url, token)
        assert script.returncode == 0, script.stderr
        assert json.loads(script.stdout) == {
            "valid": True,
            "count": expected["count"],
            "head": expected["head"],
        }
        cli = run_cli("audit", "verify", "--url", server.base_url, "--token", token)
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["head"] == expected["head"]
    finally:
        server.stop()


def run_verify_script(base_url: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "docs" / "verify_audit_chain.py"), base_url],
        env={"IZIN_SIARAN_TOKEN": token, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
