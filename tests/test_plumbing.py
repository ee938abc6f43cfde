"""Request plumbing of docs/RULES.md #conventions: request ids, problems for every failure, body
limits, one transaction per request (STYLE 2), and a database that stops answering.

Every failure is an RFC 9457 problem with a machine-readable `code` and the
request id; no stack trace or SQL reaches a client.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import io
import json
import logging
import logging.handlers
import multiprocessing
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from select import PIPE_BUF
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.config import Settings
from app.logs import (
    _ACCESS_MESSAGE,
    ACCESS_LOG,
    WRITE_AFTER,
    ServiceHandler,
    _formatter,
    configure_logging,
    log_access,
)
from app.main import YOUNG_COLLECTION_AFTER, Service, create_app
from app.rawdb import trips_at_once
from app.requestctx import new_request_id, set_request_id
from tests.conftest import PG_ADMIN_DSN
from tests.support import ADMIN_NIP, Org, Tokens, assert_problem, make_code, serving

pytestmark = pytest.mark.anyio

UNITS = "/api/v1/units"
MAX_BODY = 1_048_576  # the default MAX_BODY_BYTES


async def audit_count(app: FastAPI) -> int:
    async with app.state.db.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def unit_exists(client: httpx.AsyncClient, org: Org, code: str) -> bool:
    response = await client.get(f"{UNITS}/{code}", headers=org.admin)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


# --- request ids --------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc-123", "trace.2025-10-20T09:00:00Z", "x" * 128])
async def test_a_valid_request_id_is_echoed(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize("sent", [None, "x" * 300, "has spaces", "semi;colon", ""])
async def test_a_request_id_is_generated_when_absent_or_invalid(
    client: httpx.AsyncClient, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = (await client.get("/healthz", headers=headers)).headers["X-Request-ID"]
    second = (await client.get("/healthz", headers=headers)).headers["X-Request-ID"]
    assert first != sent
    assert len(first) == 32
    assert int(first, 16) >= 0  # hex
    assert first != second  # a fresh id per request


def test_generated_request_ids_differ_across_forked_workers() -> None:
    """A worker forked from a process that already made ids makes ids of its own."""
    parent = [new_request_id(), new_request_id()]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply(new_request_id)
    assert len(child) == 32
    assert int(child, 16) >= 0
    assert child[:16] != parent[0][:16] == parent[1][:16]
    assert child not in parent


async def test_problems_carry_the_request_id(client: httpx.AsyncClient, org: Org) -> None:
    sent = await client.get(f"{UNITS}/NOPE", headers={**org.admin, "X-Request-ID": "req-42"})
    assert assert_problem(sent, 404, "not_found")["request_id"] == "req-42"
    assert sent.headers["X-Request-ID"] == "req-42"

    generated = await client.get(f"{UNITS}/NOPE", headers={**org.admin, "X-Request-ID": "x" * 300})
    body = assert_problem(generated, 404, "not_found")
    assert body["request_id"] == generated.headers["X-Request-ID"] != "x" * 300

    unauthenticated = await client.get(UNITS, headers={"X-Request-ID": "no-token"})
    assert assert_problem(unauthenticated, 401)["request_id"] == "no-token"


# --- routing problems ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v2/units"])
async def test_an_unknown_path_is_a_not_found_problem(
    client: httpx.AsyncClient, org: Org, path: str
) -> None:
    body = assert_problem(await client.get(path, headers=org.admin), 404, "not_found")
    assert path in body["detail"]


async def test_a_wrong_method_is_a_method_not_allowed_problem(
    client: httpx.AsyncClient, org: Org
) -> None:
    response = await client.put(UNITS, headers=org.admin, json={})
    body = assert_problem(response, 405, "method_not_allowed")
    assert "PUT" in body["detail"]
    assert {m.strip() for m in response.headers["Allow"].split(",")} >= {"GET", "POST"}

    on_item = await client.delete(f"{UNITS}/ANY", headers=org.admin)
    assert_problem(on_item, 405, "method_not_allowed")
    assert "PATCH" in on_item.headers["Allow"]


# --- bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b'{"code": ', b"not json", b'{"code": "U1",}', b"\xff\xfe"])
async def test_malformed_json_is_a_400_problem(
    client: httpx.AsyncClient, org: Org, app: FastAPI, content: bytes
) -> None:
    before = await audit_count(app)
    response = await client.post(
        UNITS, content=content, headers={**org.admin, "Content-Type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")
    assert await audit_count(app) == before


async def test_a_schema_invalid_body_is_a_422_problem_naming_each_field(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    before = await audit_count(app)
    response = await client.post(UNITS, json={"code": 5, "surprise": 1}, headers=org.admin)
    body = assert_problem(response, 422, "validation_error")
    errors = body["errors"]
    assert all(set(e) == {"loc", "msg", "code"} for e in errors), errors
    assert all(isinstance(e["msg"], str) and e["msg"] for e in errors)
    by_loc = {tuple(e["loc"]): e["code"] for e in errors}
    assert by_loc[("body", "name")] == "required"
    assert by_loc[("body", "surprise")] == "unknown_field"
    assert ("body", "code") in by_loc
    assert await audit_count(app) == before


async def test_a_body_over_the_limit_with_content_length_is_413_and_stores_nothing(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    code = make_code()
    before = await audit_count(app)
    big = {"code": code, "name": "Unit", "padding": "y" * MAX_BODY}
    response = await client.post(UNITS, json=big, headers=org.admin)
    assert int(response.request.headers["Content-Length"]) > MAX_BODY
    body = assert_problem(response, 413, "payload_too_large")
    assert str(MAX_BODY) in body["detail"]
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert not await unit_exists(client, org, code)
    assert await audit_count(app) == before


async def _chunks(head: bytes, filler: int, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    for _ in range(filler):
        yield b"z" * 100_000
    yield tail


async def test_a_streamed_body_over_the_limit_is_413_and_stores_nothing(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    """No Content-Length: the limit is enforced while the body streams in."""
    code = make_code()
    before = await audit_count(app)
    body = _chunks(b'{"code": "' + code.encode() + b'", "name": "', 12, b'"}')
    response = await client.post(
        UNITS, content=body, headers={**org.admin, "Content-Type": "application/json"}
    )
    assert "Content-Length" not in response.request.headers
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert_problem(response, 413, "payload_too_large")
    assert not await unit_exists(client, org, code)
    assert await audit_count(app) == before


async def test_a_streamed_body_within_the_limit_is_served(
    client: httpx.AsyncClient, org: Org
) -> None:
    code = make_code()
    body = _chunks(b'{"code": "' + code.encode() + b'", ', 0, b'"name": "Streamed"}')
    response = await client.post(
        UNITS, content=body, headers={**org.admin, "Content-Type": "application/json"}
    )
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 201, response.text
    assert await unit_exists(client, org, code)


# --- unexpected errors --------------------------------------------------------------


@pytest.fixture
async def exploding_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app plus one test-only route that fails the way a bug would."""
    application = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("secret internal detail: password=hunter2")

    application.add_api_route("/test-only/explode", explode, methods=["GET", "POST"])
    async with serving(application):
        yield application


async def test_an_unexpected_exception_is_a_500_problem_without_details(
    exploding_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(app=exploding_app, raise_app_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/test-only/explode", headers={"X-Request-ID": "trace-me"})
            generated = await http.post("/test-only/explode")
    body = assert_problem(response, 500, "internal_error")
    assert body["request_id"] == "trace-me" == response.headers["X-Request-ID"]
    assert "trace-me" in body["detail"]
    for leak in ("secret", "hunter2", "RuntimeError", "Traceback", 'File "'):
        assert leak not in response.text
    generated_body = assert_problem(generated, 500, "internal_error")
    assert generated_body["request_id"] == generated.headers["X-Request-ID"]
    # The operator gets the stack trace, in the log.
    logged = [r for r in caplog.records if r.name == "app.errors" and r.exc_info]
    assert len(logged) == 2
    exc_info = logged[0].exc_info
    assert exc_info is not None
    assert isinstance(exc_info[1], RuntimeError)


def _layers(application: FastAPI) -> list[str]:
    """The ASGI layers a request passes, outermost first, down to the router."""
    names, layer = [], application.build_middleware_stack()
    while hasattr(layer, "app"):
        names.append(type(layer).__name__)
        layer = layer.app
    return names


@pytest.mark.parametrize(
    ("proxies", "origins"), [([], []), (["10.0.0.0/24"], []), ([], ["https://app.example"])]
)
async def test_the_services_layers_are_outside_fastapis(
    settings: Settings, proxies: list[str], origins: list[str]
) -> None:
    """The check and a permit read, answered by the fast paths, pass no layer of FastAPI's;
    FastAPI's plain-text 500 layer is not there at all (the request context answers
    unhandled errors: the test above)."""
    application = create_app(
        settings.model_copy(update={"trusted_proxies": proxies, "cors_origins": origins})
    )
    layers = _layers(application)
    expected = [
        *(["ProxyHeadersMiddleware"] if proxies else []),
        "RequestContextMiddleware",
        *(["CORSMiddleware"] if origins else []),
        "CheckFastPath",
        "PermitFastPath",
        "RateLimitMiddleware",
    ]
    assert layers[: len(expected)] == expected, layers
    assert "ServerErrorMiddleware" not in layers
    assert "ExceptionMiddleware" in layers[len(expected) :]


def test_what_fastapis_error_layer_alone_would_do_is_refused() -> None:
    """A 500 handler or debug mode lives in the layer the service leaves out: asking for
    either fails when the stack is built, not silently."""
    with pytest.raises(RuntimeError, match="debug"):
        Service(debug=True).build_middleware_stack()
    handled = Service()
    handled.add_exception_handler(500, lambda request, exc: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(RuntimeError, match="500 handler"):
        handled.build_middleware_stack()


# --- one transaction per request: a failed commit is never a success ----------------


@contextmanager
def failing_commits() -> Iterator[None]:
    """Every ORM commit fails (as if the disk were full) while this block runs."""

    def refuse(session: Session) -> None:
        raise RuntimeError("the disk is full")

    event.listen(Session, "before_commit", refuse)
    try:
        yield
    finally:
        event.remove(Session, "before_commit", refuse)


async def test_a_commit_that_fails_never_returns_2xx(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    code = make_code()
    before = await audit_count(app)
    with failing_commits():
        response = await client.post(UNITS, json={"code": code, "name": "Never"}, headers=org.admin)
    assert_problem(response, 500, "internal_error")
    assert "disk" not in response.text
    assert not await unit_exists(client, org, code)
    assert await audit_count(app) == before


# A new unit makes the database insert a row that breaks a deferred foreign key: the
# statements succeed, and the database itself refuses the transaction at COMMIT.
_REFUSE_AT_COMMIT = {
    "sqlite": [
        "CREATE TABLE commit_guard_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE commit_guard (parent_id INTEGER REFERENCES commit_guard_parent (id) "
        "DEFERRABLE INITIALLY DEFERRED)",
        "CREATE TRIGGER commit_guard_on_units AFTER INSERT ON units "
        "BEGIN INSERT INTO commit_guard VALUES (-1); END",
    ],
    "postgresql": [
        "CREATE TABLE commit_guard_parent (id integer PRIMARY KEY)",
        "CREATE TABLE commit_guard (parent_id integer REFERENCES commit_guard_parent (id) "
        "DEFERRABLE INITIALLY DEFERRED)",
        "CREATE FUNCTION commit_guard_insert() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO commit_guard VALUES (-1); RETURN NEW; END $$",
        "CREATE TRIGGER commit_guard_on_units AFTER INSERT ON units "
        "FOR EACH ROW EXECUTE FUNCTION commit_guard_insert()",
    ],
}


async def test_a_commit_the_database_refuses_never_returns_2xx(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str
) -> None:
    async with app.state.db.engine.begin() as connection:
        for statement in _REFUSE_AT_COMMIT[backend]:
            await connection.execute(text(statement))
    before = await audit_count(app)
    code = make_code()
    response = await client.post(UNITS, json={"code": code, "name": "Never"}, headers=org.admin)
    assert_problem(response, 409, "conflict")
    assert "FOREIGN KEY" not in response.text.upper()
    assert "commit_guard" not in response.text
    assert not await unit_exists(client, org, code)
    assert await audit_count(app) == before
    async with app.state.db.engine.begin() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM commit_guard")) == 0
        on_table = " ON units" if backend == "postgresql" else ""
        await connection.execute(text(f"DROP TRIGGER commit_guard_on_units{on_table}"))
    # The refused transaction was ended, not left holding a connection (or SQLite's
    # write lock): the next write goes through at once.
    started = time.monotonic()
    retried = await client.post(UNITS, json={"code": code, "name": "Now"}, headers=org.admin)
    assert retried.status_code == 201, retried.text
    assert time.monotonic() - started < 5


# --- the database stops answering ---------------------------------------------------


@asynccontextmanager
async def database_unreachable(
    app: FastAPI, backend: str, database_url: str
) -> AsyncIterator[None]:
    """The running app's database stops accepting connections, then comes back.

    PostgreSQL: the database refuses new connections and its open ones are
    terminated. SQLite: the pool is emptied and the file can no longer be opened (as
    when its volume goes away).
    """
    url = make_url(database_url)
    if backend == "postgresql":
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                url.database,
            )
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS true')
            await admin.close()
    else:
        assert url.database is not None
        path = anyio.Path(url.database)
        await app.state.db.engine.dispose()
        aside = path.with_name(path.name + ".away")
        await path.rename(aside)
        await path.mkdir()  # a directory where the database file was: SQLite cannot open it
        try:
            yield
        finally:
            await path.rmdir()
            await aside.rename(path)


async def test_an_unreachable_database_answers_503_problems_quickly(
    client: httpx.AsyncClient, org: Org, app: FastAPI, backend: str, database_url: str
) -> None:
    headers = org.admin
    assert (await client.get(UNITS, headers=headers)).status_code == 200  # pool warmed up
    code = make_code()
    async with database_unreachable(app, backend, database_url):
        for method, path, body in [
            ("GET", UNITS, None),
            ("GET", "/api/v1/me", None),
            ("POST", UNITS, {"code": code, "name": "During the outage"}),
            ("PATCH", f"{UNITS}/{code}", {"name": "x"}),
        ]:
            started = time.monotonic()
            response = await client.request(method, path, json=body, headers=headers)
            elapsed = time.monotonic() - started
            problem = assert_problem(response, 503, "database_unavailable")
            assert problem["request_id"] == response.headers["X-Request-ID"]
            assert response.headers["Retry-After"].isdigit()
            assert elapsed < 3, (method, path, elapsed)
        assert_problem(await client.get("/readyz"), 503, "database_unavailable")
        assert (await client.get("/healthz")).status_code == 200
    # It recovers by itself, without a restart, and nothing was half-written.
    assert (await client.get("/readyz")).status_code == 200
    assert not await unit_exists(client, org, code)
    created = await client.post(UNITS, json={"code": code, "name": "After"}, headers=headers)
    assert created.status_code == 201, created.text


# --- the process ---------------------------------------------------------------------


async def test_what_start_up_made_is_kept_out_of_full_collections_while_serving(
    settings: Settings,
) -> None:
    application = create_app(settings)
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    async with application.router.lifespan_context(application):
        assert gc.get_freeze_count() > 10_000  # the application and its libraries
        # The young generation collected after YOUNG_COLLECTION_AFTER allocations, not 700.
        assert gc.get_threshold() == (YOUNG_COLLECTION_AFTER, *before[1:])
    assert gc.get_freeze_count() == 0  # handed back to the collector
    assert gc.get_threshold() == before  # and its thresholds as they were


@contextmanager
def handlers_of_root(keep_others: bool) -> Iterator[None]:
    """Pytest puts handlers of its own on the root logger; without them the service's
    handler is the only one, as when the service runs, and writes access lines itself."""
    root = logging.getLogger()
    saved = list(root.handlers)
    if not keep_others:
        root.handlers = [h for h in saved if isinstance(h, ServiceHandler)]
    try:
        yield
    finally:
        root.handlers = saved


@contextmanager
def access_log_to(*handlers: logging.Handler) -> Iterator[None]:
    """These handlers, and no other, on the root logger; the access log at INFO."""
    root = logging.getLogger()
    saved, level = list(root.handlers), ACCESS_LOG.level
    root.handlers = list(handlers)
    ACCESS_LOG.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers = saved
        ACCESS_LOG.setLevel(level)


@pytest.mark.parametrize("through_logging", [False, True], ids=["direct", "through-logging"])
async def test_json_logs_are_one_object_a_line_with_the_request_id(
    settings: Settings, tokens: Tokens, capsys: pytest.CaptureFixture[str], through_logging: bool
) -> None:
    """LOG_FORMAT=json (docs/RULES.md#logs): every line a JSON object with its level,
    logger, time and request id; the access log's with route, status, duration and the
    kind of caller — written by the service's handler itself, or through `logging` when
    another handler listens too."""
    application = create_app(
        settings.model_copy(update={"log_format": "json", "log_level": "INFO"})
    )
    try:
        with handlers_of_root(keep_others=through_logging):
            async with serving(application):
                transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    answer = await http.get("/healthz", headers={"X-Request-ID": "log-check-1"})
                    unit = await http.get(
                        "/api/v1/units/NOPE",
                        headers={**tokens.auth(ADMIN_NIP), "X-Request-ID": "log-check-2"},
                    )
                    person = await http.get(
                        f"/api/v1/employees/{ADMIN_NIP}", headers=tokens.auth(ADMIN_NIP)
                    )
        assert (answer.status_code, unit.status_code, person.status_code) == (200, 404, 200)
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]  # every line parses
        access = [r for r in records if r["logger"] == "app.access"]
        assert access
        health, read, employee = access[-3:]
        # A NIP is personal data: in a path it is logged by its last 4 digits only.
        assert employee["path"] == f"/api/v1/employees/…{ADMIN_NIP[-4:]}"
        assert employee["route"] == "/api/v1/employees/{nip}"
        ours = [r for r in records if r["logger"].startswith(("app", "uvicorn"))]
        assert not [r for r in ours if ADMIN_NIP in json.dumps(r, ensure_ascii=False)]
        assert health["request_id"] == "log-check-1"
        assert health["message"].startswith("GET /healthz 200")
        assert {"time", "level", "logger", "request_id", "message"} <= set(health)
        assert health["time"].endswith("+00:00")
        assert (health["route"], health["status"], health["principal"]) == (
            "/healthz",
            200,
            "anonymous",
        )
        assert read["request_id"] == "log-check-2"
        assert (read["method"], read["path"], read["route"]) == (
            "GET",
            "/api/v1/units/NOPE",
            "/api/v1/units/{code}",
        )
        assert (read["status"], read["principal"]) == (404, "employee")
        assert isinstance(read["duration_ms"], float)
        assert read["duration_ms"] >= 0
    finally:
        configure_logging(settings.log_level)  # the text format for the tests that follow


_ACCESS_FIELDS = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PATCH", "DELETE"]),
        "path": st.text(min_size=1),
        "route": st.text(),
        "status": st.integers(100, 599),
        "duration_ms": st.floats(0, 1e6).map(lambda ms: round(ms, 1)),
        "principal": st.sampled_from(["employee", "api_key", "anonymous"]),
    }
)


@given(
    log_format=st.sampled_from(["text", "json"]),
    created=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    request_id=st.text(),
    fields=_ACCESS_FIELDS,
)
def test_an_access_line_is_the_formatters_own(
    log_format: str, created: float, request_id: str, fields: dict[str, Any]
) -> None:
    """The access line the service's handler writes itself (`app.logs`) is, byte for byte,
    what its formatter (logging's text, python-json-logger's JSON) writes for the record
    `log_access` makes through `logging`. The record's `msecs` as Python 3.11's and
    3.12's `LogRecord` work it out (the project's Python: Dockerfile, CI)."""
    handler = ServiceHandler(log_format)
    arguments = tuple(fields[name] for name in ("method", "path", "status", "duration_ms"))
    record = logging.LogRecord(
        ACCESS_LOG.name, logging.INFO, __file__, 1, _ACCESS_MESSAGE, arguments, None
    )
    for name in ("method", "path", "route", "status", "duration_ms", "principal"):
        record.__dict__[name] = fields[name]  # as `extra=` does, in `log_access`'s order
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    record.request_id = request_id
    assert handler.access_line(created, request_id, **fields) == handler.format(record)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_access_writes_the_same_line_either_way(log_format: str) -> None:
    """`log_access` writes the line itself where the service's handler is the only one,
    and through `logging` where another listens: the same line, but for its time."""
    handler = ServiceHandler(log_format)
    lines: list[str] = []
    set_request_id("line-check")
    for others in ([], [logging.NullHandler()]):
        handler.stream = io.StringIO()
        with access_log_to(handler, *others):
            log_access("POST", "/api/v1/x", "/api/v1/x", 201, 12.5, "api_key")
        lines.append(handler.stream.getvalue())
    direct, through = lines
    assert direct.count("\n") == through.count("\n") == 1
    assert direct.endswith("\n")
    if log_format == "json":
        direct_line, through_line = json.loads(direct), json.loads(through)
        assert direct_line.pop("time").endswith("+00:00")
        assert through_line.pop("time").endswith("+00:00")
        assert list(direct_line.items()) == list(through_line.items())
        assert direct_line["message"] == "POST /api/v1/x 201 12.5ms"
    else:
        when = len("2026-12-06 12:00:00,000")
        assert (
            direct[when:]
            == through[when:]
            == " INFO app.access [line-check] POST /api/v1/x 201 12.5ms\n"
        )


def test_the_default_log_format_is_text() -> None:
    assert Settings(_env_file=None).log_format == "text"  # type: ignore[call-arg]


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_the_text_logs_time_is_loggings_own(created: float) -> None:
    """The text format writes its time once a second (`app.logs`), as `logging` would."""
    mine = _formatter("text")
    theirs = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "GET / 200", None, None)
    record.created, record.msecs, record.request_id = created, (created % 1) * 1000, "r"
    assert mine.format(record) == theirs.format(record)
    assert mine.format(record) == theirs.format(record)  # the second time, from memory


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.writes.append(text)
        self.written.set()
        return super().write(text)


async def test_access_lines_go_out_together_once_due_and_in_order() -> None:
    """On the event loop access lines wait for others to go out with them, up to
    `WRITE_AFTER` seconds after the first: one write for all of them then; a record of
    any other logger written before then goes out after them, in order."""
    handler = ServiceHandler("text")
    handler.stream = stream = _Writes()
    loop = asyncio.get_running_loop()
    with access_log_to(handler):
        asked = loop.time()
        for status in (200, 201, 204):
            log_access("GET", "/x", "/x", status, 1.0, "anonymous")
            await asyncio.sleep(0)  # lines of later turns wait too
        assert stream.writes == []
        await asyncio.wait_for(stream.written.wait(), timeout=5)
        assert loop.time() - asked >= WRITE_AFTER * 0.9  # the loop's clock: ms resolution
        assert len(stream.writes) == 1
        assert [line.split()[-2] for line in stream.getvalue().splitlines()] == [
            "200",
            "201",
            "204",
        ]
        stream.written.clear()
        log_access("GET", "/x", "/x", 404, 1.0, "anonymous")
        logging.getLogger("app.elsewhere").warning("after the 404's line")
        lines = stream.getvalue().splitlines()
        assert lines[-2].endswith("GET /x 404 1.0ms")
        assert lines[-1].endswith("after the 404's line")
        stream.written.clear()
        log_access("GET", "/x", "/x", 409, 1.0, "anonymous")  # the next line: a write due
        await asyncio.wait_for(stream.written.wait(), timeout=5)
        assert len(stream.getvalue().splitlines()) == 6  # nothing written twice
        log_access("GET", "/x", "/x", 500, 1.0, "anonymous")
        handler.flush()  # as `logging.shutdown` at exit
        assert stream.getvalue().splitlines()[-1].endswith("GET /x 500 1.0ms")
        log_access("GET", "/x", "/x", 503, 1.0, "anonymous")
        handler.close()
        assert stream.getvalue().splitlines()[-1].endswith("GET /x 503 1.0ms")


async def test_access_lines_go_out_in_writes_a_pipe_keeps_whole() -> None:
    """Workers share one standard error: a write holds at most PIPE_BUF bytes, so no
    other process's write lands inside a line; every line comes out, in order."""
    handler = ServiceHandler("json")
    handler.stream = stream = _Writes()
    with access_log_to(handler):
        for n in range(200):
            log_access("GET", f"/api/v1/permits/{n}/é", "/api/v1/permits/{id}", 200, 1.0, "x")
        assert len(stream.writes) > 1  # each once PIPE_BUF is full: not waiting
        stream.written.clear()
        await asyncio.wait_for(stream.written.wait(), timeout=5)  # the rest, when due
    assert all(len(w.encode()) <= PIPE_BUF and w.endswith("\n") for w in stream.writes)
    paths = [json.loads(line)["path"] for line in stream.getvalue().splitlines()]
    assert paths == [f"/api/v1/permits/{n}/é" for n in range(200)]


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_a_broken_log_stream_never_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record's emit that finds pending access lines and a broken stream reports it as
    `logging` does (`handleError`), never raises into the code that logged."""
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError stays quiet
    handler = ServiceHandler("text")
    handler.stream = _Broken()
    handler._pending.append("a pending line")
    record = logging.LogRecord("app.errors", logging.ERROR, __file__, 1, "boom", None, None)
    handler.handle(record)  # does not raise
    handler._write_when_due()  # nor does the write that was due
    assert handler._pending == []


def test_another_handler_on_the_way_takes_the_access_line_through_logging() -> None:
    """A handler on `app` (the access log's parent) gets the access lines: written
    through `logging`, not past it."""
    handler = ServiceHandler("text")
    handler.stream = io.StringIO()
    parent = logging.getLogger("app")
    theirs = logging.handlers.BufferingHandler(100)
    parent.addHandler(theirs)
    try:
        with access_log_to(handler):
            log_access("GET", "/x", "/x", 200, 1.0, "anonymous")
    finally:
        parent.removeHandler(theirs)
    assert [r.getMessage() for r in theirs.buffer] == ["GET /x 200 1.0ms"]
    assert handler.stream.getvalue().endswith("GET /x 200 1.0ms\n")


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # An included router (FastAPI's `include_router`) keeps its routes on the original.
        included = getattr(route, "original_router", None)
        yield from _routes(getattr(included or route, "routes", None) or [])


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


async def test_every_endpoint_and_dependency_runs_on_the_event_loop(app: FastAPI) -> None:
    """FastAPI runs a plain `def` endpoint or dependency in a worker thread: a hop there and
    back, each waiting for a turn of a busy event loop, inside the request's transaction
    (a write's turn, on SQLite). Nothing here blocks, so everything is `async def`."""
    found = list(_routes(app.routes))
    assert len(found) > 30
    sync = sorted(
        {
            f"{route.path}: {getattr(call, '__qualname__', call)!r}"
            for route in found
            for call in (route.dependant.call, *_calls(route.dependant))
            if not (
                inspect.iscoroutinefunction(call)
                or inspect.isasyncgenfunction(call)
                or inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004
            )
        }
    )
    assert sync == []


@pytest.mark.parametrize(
    ("pool_size", "cores", "trips"),
    [(10, 2, 2), (10, 1, 2), (10, 16, 5), (1, 8, 1), (10, None, 5), (3, 4, 1), (40, 8, 8)],
)
def test_a_hot_statements_trips_at_once_follow_the_pool_and_the_cores(
    pool_size: int, cores: int | None, trips: int
) -> None:
    """Half the pool, at least one; at most the cores, but two where the pool allows
    (`app.rawdb.trips_at_once`)."""
    assert trips_at_once(pool_size, cores) == trips
