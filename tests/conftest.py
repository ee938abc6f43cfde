"""Test fixtures: real databases, real keys, the real ASGI app.

Every test that takes `client` runs twice, once on SQLite and once on
PostgreSQL, each time against a freshly migrated, empty database: on SQLite a copy
of a template migrated once per session by `izin-siaran migrate`; on PostgreSQL the
worker's one database made from such a template, emptied before each test
(`ReusedDatabase`). Set
TEST_DATABASES=sqlite (or postgresql) to run one backend only. Under CI=true an
unreachable PostgreSQL fails the run instead of skipping it.

`make test` runs the session in parallel (pytest-xdist): each worker is a session of
its own, with its own templates and databases (the PostgreSQL ones named after the
worker) and its own temporary folders; servers started by `slow` tests listen on free
ports and log into the test's own folder. (Keeping the `slow` tests on one worker with
`--dist loadgroup` would be better, but xdist 3.8 marks the group on `item._nodeid`,
which pytest 9 no longer reads, so the group is silently ignored.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.config import Settings
from app.main import create_app
from tests import support
from tests.support import ADMIN_NIP, KeyRing, Org, Tokens, assert_chain_verifies, serving

BACKENDS = [b.strip() for b in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",")]
PG_ADMIN_DSN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PROJECT_DIR = Path(__file__).resolve().parent.parent
# Names of this session's PostgreSQL databases carry it, so that a leftover shows its owner.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def run_cli(
    *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the real `izin-siaran` console entry point in a child process."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "AUTH_", "DATA_DIR", "BOOTSTRAP_", "POLICY_"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=full_env,
        cwd=kwargs.pop("cwd", PROJECT_DIR),
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 120),
        check=False,
        **kwargs,
    )


def _pg_dsn(database: str) -> str:
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def _pg_admin(*statements: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _blocking(coroutine: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated once, cloned for every test."""
    try:
        _blocking(_pg_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"izs_tmpl_{WORKER}_{uuid.uuid4().hex[:12]}"
    _blocking(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        result = run_cli("migrate", env={"DATABASE_URL": _pg_dsn(name)})
        assert result.returncode == 0, result.stderr
        yield name
    finally:
        _blocking(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# What a test may change besides rows: triggers (and whether they fire), indexes,
# constraints, the schema's revision. A reused database whose fingerprint moved is made
# again from the template.
_FINGERPRINT = """
SELECT md5(concat_ws('|',
    (SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname)
       FROM pg_trigger WHERE NOT tgisinternal),
    (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname)
       FROM pg_class WHERE relnamespace = 'public'::regnamespace),
    (SELECT string_agg(conname, ',' ORDER BY conname)
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace),
    (SELECT string_agg(version_num, ',') FROM alembic_version)))
"""


class ReusedDatabase:
    """This worker's PostgreSQL test database, made once from the template and emptied
    before each test, instead of a new database per test (each `CREATE DATABASE … TEMPLATE`
    and `DROP DATABASE` costs about a quarter of a second of the server's time).

    Emptied means: every other connection to it ended, and every row of every table
    deleted, with `session_replication_role = replica` so that the audit trail's guards
    (which refuse deletes, as they should for the service) and the foreign keys stand
    aside. A test that changed more than rows (a dropped trigger, a schema revision) is
    caught by the fingerprint, and the database is made again. Commits skip waiting for
    the disk (`synchronous_commit = off`, for this database only): that risks only what
    the PostgreSQL server itself would lose in a crash, which no test here causes; the
    tests that stop a database run their own cluster (tests/test_db_outage.py)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.name = f"izs_test_{WORKER}_{uuid.uuid4().hex[:12]}"
        self.fingerprint = ""

    @property
    def url(self) -> str:
        return _pg_dsn(self.name).replace("postgresql://", "postgresql+asyncpg://", 1)

    async def create(self) -> None:
        await _pg_admin(
            f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)',
            f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"',
            f'ALTER DATABASE "{self.name}" SET synchronous_commit = off',
        )
        connection = await asyncpg.connect(_pg_dsn(self.name), timeout=5)
        try:
            self.fingerprint = await connection.fetchval(_FINGERPRINT)
        finally:
            await connection.close()

    async def empty(self) -> None:
        """Ready for the next test: no other connection, no row, the template's schema."""
        await _pg_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 (our name)
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )
        connection = await asyncpg.connect(_pg_dsn(self.name), timeout=5)
        try:
            try:
                changed = await connection.fetchval(_FINGERPRINT) != self.fingerprint
            except asyncpg.PostgresError:  # e.g. a test dropped `alembic_version`
                changed = True
            if changed:
                await connection.close()
                await self.create()
                return
            tables = await connection.fetch(
                "SELECT quote_ident(tablename) FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
            async with connection.transaction():
                await connection.execute("SET LOCAL session_replication_role = replica")
                for (table,) in tables:
                    await connection.execute(f"DELETE FROM {table}")  # noqa: S608 (catalog names)
        finally:
            if not connection.is_closed():
                await connection.close()

    async def drop(self) -> None:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_reused(pg_template: str) -> Iterator[ReusedDatabase]:
    database = ReusedDatabase(pg_template)
    _blocking(database.create())
    try:
        yield database
    finally:
        _blocking(database.drop())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    result = run_cli("migrate", env={"DATABASE_URL": f"sqlite:///{path}"})
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "izin-siaran.db"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    reused: ReusedDatabase = request.getfixturevalue("pg_reused")
    await reused.empty()
    yield reused.url


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.generate(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def settings(database_url: str, keyring: KeyRing, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=tmp_path / "data",
        auth_jwks_url=keyring.jwks_url,
        auth_issuer=support.ISSUER,
        auth_audience=support.AUDIENCE,
        bootstrap_admin_nips=[ADMIN_NIP],
        log_level="WARNING",
        sweep_interval_seconds=0,  # a test sweeps when it means to (`izin-siaran sweep`)
        # Off unless a test turns them on (tests/test_escalation.py): most tests' permits
        # start within the hour, where the defaults would remind and escalate at once.
        policy_remind_before_start_minutes=0,
        policy_escalate_before_start_minutes=0,
    )


_APPS: dict[str, FastAPI] = {}


def _configuration(settings: Settings) -> str:
    """What an application is made from, but for its database and data folder."""
    values = settings.model_dump(exclude={"database_url", "data_dir"})
    return json.dumps(
        values,
        sort_keys=True,
        default=lambda v: v.get_secret_value() if isinstance(v, SecretStr) else str(v),
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The application for `settings`, started (its lifespan) for this test alone.

    An application object is made once per worker for each configuration and started
    again for every test with that configuration, on the test's own database: making one
    (its routes, their dependencies and validators) costs more than most tests. A start
    is a start: the application's state is made anew by its lifespan (database,
    readers, keys; zero counts and full rate-limit budgets), as when a process starts."""
    application = _APPS.get(key := _configuration(settings))
    if application is None:
        application = _APPS[key] = create_app(settings)
    application.state.settings = settings
    async with serving(application):
        yield application


@pytest.fixture
async def client(
    app: FastAPI, tokens: Tokens, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over HTTP. Afterwards, every test's audit chain must verify, both through the
    API and independently (tests that break it on purpose are marked `chain_broken`)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://izin-siaran.test") as http:
        yield http
        if request.node.get_closest_marker("chain_broken") is None:
            await assert_chain_verifies(http, tokens.auth(ADMIN_NIP))


@pytest.fixture
def tokens(keyring: KeyRing) -> Tokens:
    return Tokens(keyring)


@pytest.fixture
def org(client: httpx.AsyncClient, tokens: Tokens) -> Org:
    return Org(client, tokens)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real-server tests (`slow`, tens of seconds each) first: parallel workers then
    share them out at the start and fill the rest of the run with the short tests, instead
    of one worker finishing a long tail alone. The order is otherwise kept."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
