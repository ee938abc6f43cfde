"""The served OpenAPI document is a contract a mainstream client generator uses as is
(docs/RULES.md#conventions, SPEC §7), on SQLite and on PostgreSQL.

A real server in local mode serves `/openapi.json`; `openapi-python-client` turns it into
a Python package (any generator warning fails the test); one whole journey then runs
through that package's typed functions and models only: the admin builds a unit, a
workspace and its people and appoints the head, an ASN submits a permit with the SE's
attestations, the head approves it from their inbox, a streaming gateway's API key asks
the check (authorised), and an auditor verifies the audit chain. The generated client
raises on any status the document does not declare, and every answer must parse into
the model the document names for it with no member the document does not name: when the
document and the service drift apart, this test fails.
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
import pytest

from app.permits.policy import ATTESTATIONS
from tests.conftest import run_cli
from tests.support import ADMIN_NIP, ServerProcess, make_code, make_nip

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

T = TypeVar("T")

# The generator runs ruff on its output when ruff is on PATH (slow, and a warning when it
# is not); the package is imported, not read, so no hooks.
GENERATOR_CONFIG = """\
post_hooks: []
# The QR codes and the status lists (a JWT): the generator knows bodies only by these names.
content_type_overrides:
  application/statuslist+jwt: text/plain
  image/png: application/octet-stream
  image/svg+xml: application/octet-stream
"""


@pytest.fixture
def local_server(
    database_url: str, tmp_path: Path
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """A server in local mode (it signs its own tokens) whose bootstrap admin is ADMIN_NIP,
    and the environment the CLI needs to mint tokens for it."""
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "BOOTSTRAP_ADMIN_NIPS": ADMIN_NIP,
        "LOG_LEVEL": "WARNING",
    }
    server = ServerProcess(env, tmp_path)
    try:
        server.wait_ready()
        yield server, env
    finally:
        server.stop()


@dataclass(frozen=True)
class GeneratedClient:
    """The package `openapi-python-client` made from the served document, imported."""

    package: ModuleType
    models: ModuleType

    def operation(self, name: str) -> ModuleType:
        """The module of one operation, e.g. `permits.submit_permit` (tag.operationId)."""
        return importlib.import_module(f"{self.package.__name__}.api.{name}")

    def client(self, base_url: str, token: str, **options: Any) -> Any:
        return self.package.AuthenticatedClient(
            base_url=base_url,
            token=token,
            raise_on_unexpected_status=True,
            timeout=httpx.Timeout(30.0),
            **options,
        )


@pytest.fixture
def generated(
    local_server: tuple[ServerProcess, dict[str, str]], tmp_path: Path
) -> Iterator[GeneratedClient]:
    """The served `/openapi.json`, through the generator, imported under a name of this
    test's own (both backends' runs share one interpreter); forgotten afterwards."""
    server, _ = local_server
    served = httpx.get(f"{server.base_url}/openapi.json", timeout=30)
    assert served.status_code == 200, served.text
    document = tmp_path / "openapi.json"
    document.write_bytes(served.content)
    config = tmp_path / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    root = tmp_path / "generated"
    root.mkdir()
    name = f"izin_siaran_client_{uuid.uuid4().hex[:12]}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(root / name),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield GeneratedClient(
            package=importlib.import_module(name),
            models=importlib.import_module(f"{name}.models"),
        )
    finally:
        sys.path.remove(str(root))
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


async def mint_tokens(env: dict[str, str], nips: dict[str, str]) -> dict[str, str]:
    """A bearer token for each NIP, from `izin-siaran token` (local mode), minted at once."""
    tokens: dict[str, str] = {}

    async def mint(role: str, nip: str) -> None:
        result = await anyio.to_thread.run_sync(
            partial(run_cli, "token", nip, "--minutes", "60", env=env)
        )
        assert result.returncode == 0, result.stderr
        tokens[role] = result.stdout.strip()

    async with anyio.create_task_group() as group:
        for role, nip in nips.items():
            group.start_soon(mint, role, nip)
    return tokens


def parsed(response: Any, status: HTTPStatus, model: type[T]) -> T:
    """The response has `status`, and the generated `model` read its body with no member
    at its top left over that the document does not declare."""
    assert response.status_code == status, response.content
    body = response.parsed
    assert isinstance(body, model), (response.status_code, response.content)
    assert not getattr(body, "additional_properties", {}), body
    return body


def instant(served: datetime) -> datetime:
    """A timestamp as the generated model parsed it: the document declares every one a
    `date-time`, so it arrives a `datetime`, and the service serves it in UTC."""
    assert isinstance(served, datetime), served
    assert served.utcoffset() == timedelta(0), served
    return served


async def test_a_whole_journey_through_the_generated_client(
    local_server: tuple[ServerProcess, dict[str, str]], generated: GeneratedClient
) -> None:
    server, env = local_server
    m, op = generated.models, generated.operation
    nips = {
        "admin": ADMIN_NIP,
        "head": make_nip(),
        "employee": make_nip(sex=2),
        "auditor": make_nip(),
    }
    tokens = await mint_tokens(env, nips)
    async with contextlib.AsyncExitStack() as stack:
        admin, head, employee, auditor = [
            await stack.enter_async_context(generated.client(server.base_url, tokens[role]))
            for role in ("admin", "head", "employee", "auditor")
        ]

        # The admin builds the organisation: a unit, its studio, its people.
        unit = parsed(
            await op("organisation.create_unit").asyncio_detailed(
                client=admin, body=m.UnitCreate(code=make_code("U"), name="Bidang Uji")
            ),
            HTTPStatus.CREATED,
            m.UnitOut,
        )
        assert (unit.head_nip, unit.parent_code, unit.active) == (None, None, True)
        workspace = parsed(
            await op("organisation.create_workspace").asyncio_detailed(
                client=admin,
                body=m.WorkspaceCreate(
                    code=make_code("W"),
                    name="Studio Uji",
                    unit_code=unit.code,
                    kind=m.WorkspaceCreateKind.STUDIO,
                ),
            ),
            HTTPStatus.CREATED,
            m.WorkspaceOut,
        )
        assert (workspace.unit_code, workspace.kind) == (unit.code, m.WorkspaceOutKind.STUDIO)
        people = {}
        for role, name, position, roles in (
            ("head", "Kepala Bidang Uji", "Kepala Bidang", []),
            ("employee", "Pranata Humas Uji", "Pranata Humas", []),
            ("auditor", "Auditor Inspektorat", "Auditor", [m.EmployeeCreateRolesItem.AUDITOR]),
        ):
            people[role] = parsed(
                await op("organisation.create_employee").asyncio_detailed(
                    client=admin,
                    body=m.EmployeeCreate(
                        nip=nips[role],
                        name=name,
                        employment=m.EmployeeCreateEmployment.PNS,
                        unit_code=unit.code if role != "auditor" else None,
                        position=position,
                        roles=roles,
                    ),
                ),
                HTTPStatus.CREATED,
                m.EmployeeOut,
            )
            assert people[role].nip == nips[role]
            assert people[role].employment == m.EmployeeOutEmployment.PNS
            assert people[role].active is True
        assert people["auditor"].roles == [m.EmployeeOutRolesItem.AUDITOR]

        # A unit's head is appointed once they are its employee (the unit came first).
        unit = parsed(
            await op("organisation.update_unit").asyncio_detailed(
                unit.code, client=admin, body=m.UnitUpdate(head_nip=nips["head"])
            ),
            HTTPStatus.OK,
            m.UnitOut,
        )
        assert unit.head_nip == nips["head"]
        me = parsed(
            await op("organisation.read_me").asyncio_detailed(client=head), HTTPStatus.OK, m.MeOut
        )
        assert (me.nip, me.heads, me.deputises) == (nips["head"], [unit.code], [])

        # The ASN asks to broadcast from the studio an hour from now, attesting to the SE.
        starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        ends_at = starts_at + timedelta(minutes=90)
        permit = parsed(
            await op("permits.submit_permit").asyncio_detailed(
                client=employee,
                idempotency_key=f"journey-{uuid.uuid4().hex}",
                body=m.PermitCreate(
                    workspace_code=workspace.code,
                    platform=m.PermitCreatePlatform.YOUTUBE,
                    channel="@bidang.uji",
                    purpose=m.PermitCreatePurpose.PUBLIC_INFORMATION,
                    title="Siaran langsung sosialisasi SPBE",
                    description="Sosialisasi SPBE bagi masyarakat",
                    starts_at=starts_at,
                    ends_at=ends_at,
                    attestations=m.Attestations(**dict.fromkeys(ATTESTATIONS, True)),
                ),
            ),
            HTTPStatus.CREATED,
            m.PermitOut,
        )
        assert permit.status == m.PermitOutStatus.PENDING
        assert (permit.requester_nip, permit.workspace_code, permit.unit_code) == (
            nips["employee"],
            workspace.code,
            unit.code,
        )
        assert (instant(permit.starts_at), instant(permit.ends_at)) == (starts_at, ends_at)
        assert permit.attestations.to_dict() == dict.fromkeys(ATTESTATIONS, True)
        assert permit.approvers == [nips["head"]]
        assert permit.decided_by is None

        # The head finds it in their inbox and approves it, at the version they read.
        inbox = parsed(
            await op("permits.list_permits").asyncio_detailed(client=head, awaiting="me"),
            HTTPStatus.OK,
            m.PagePermitOut,
        )
        assert [p.id for p in inbox.items] == [permit.id]
        read = await op("permits.read_permit").asyncio_detailed(permit.id, client=head)
        assert parsed(read, HTTPStatus.OK, m.PermitOut).version == permit.version
        approved = parsed(
            await op("permits.approve_permit").asyncio_detailed(
                permit.id,
                client=head,
                body=m.ApproveBody(note="Silakan"),
                if_match=read.headers["etag"],
            ),
            HTTPStatus.OK,
            m.PermitOut,
        )
        assert approved.status == m.PermitOutStatus.APPROVED
        assert (approved.decided_by, approved.decided_as) == (
            nips["head"],
            m.PermitOutDecidedAsType0.HEAD,
        )
        assert (approved.decision_note, approved.approvers) == ("Silakan", [])
        assert approved.version > permit.version

        # The admin gives a streaming gateway a key; the gateway asks the check.
        created = parsed(
            await op("api_keys.create_api_key").asyncio_detailed(
                client=admin,
                body=m.ApiKeyCreate(
                    name="streaming gateway", scopes=[m.ApiKeyCreateScopesItem.CHECK]
                ),
            ),
            HTTPStatus.CREATED,
            m.ApiKeyCreated,
        )
        assert ([s.value for s in created.scopes], created.created_by, created.revoked_at) == (
            ["check"],
            ADMIN_NIP,
            None,
        )
        # The document's `apiKey` scheme: the key as is (no prefix) in `X-API-Key`.
        gateway = await stack.enter_async_context(
            generated.client(server.base_url, created.key, prefix="", auth_header_name="X-API-Key")
        )
        during = starts_at + timedelta(minutes=30)
        for query in (
            {"nip": nips["employee"], "workspace_code": workspace.code},
            {"platform": m.CheckPlatformType0.YOUTUBE, "channel": "@Bidang.Uji"},
        ):
            answer = parsed(
                await op("authorizations.check").asyncio_detailed(
                    client=gateway, at=during, **query
                ),
                HTTPStatus.OK,
                m.CheckResult,
            )
            assert (answer.authorized, answer.reason) == (True, m.CheckResultReason.APPROVED)
            assert answer.permit is not None
            assert not answer.permit.additional_properties
            assert (answer.permit.id, answer.permit.requester_nip) == (
                permit.id,
                nips["employee"],
            )
            assert instant(answer.permit.starts_at) == starts_at
            assert instant(answer.checked_at) <= datetime.now(UTC)

        # The auditor reads the permit's history and verifies the whole chain.
        history = parsed(
            await op("permits.permit_events").asyncio_detailed(permit.id, client=auditor),
            HTTPStatus.OK,
            list,
        )
        assert all(type(e) is m.AuditEventOut and not e.additional_properties for e in history)
        assert [(e.action, e.actor, e.subject) for e in history] == [
            ("permit.submitted", nips["employee"], f"permit:{permit.id}"),
            ("permit.approved", nips["head"], f"permit:{permit.id}"),
        ]
        events = parsed(
            await op("audit.list_events").asyncio_detailed(client=auditor, limit=200),
            HTTPStatus.OK,
            m.PageAuditEventOut,
        )
        assert events.next_cursor is None
        chain = parsed(
            await op("audit.verify_chain").asyncio_detailed(client=auditor),
            HTTPStatus.OK,
            m.ChainStatus,
        )
        assert (chain.valid, chain.count, chain.head) == (
            True,
            len(events.items),
            events.items[-1].hash_,
        )
