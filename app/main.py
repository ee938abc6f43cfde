"""The ASGI application, `app.main:app`."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from starlette.datastructures import State
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import __version__
from app.apikeys.router import router as api_keys_router
from app.audit.router import router as audit_router
from app.auth.jwks import RemoteKeySource, StaticKeySource, parse_jwks
from app.auth.local import load_or_create_signer
from app.auth.tokens import TokenVerifier
from app.authorizations.fastpath import CheckFastPath
from app.authorizations.reader import CheckReader
from app.authorizations.router import router as authorizations_router
from app.config import Settings, SettingsError, load_settings
from app.credentials.keys import KeyRing, ensure_signing_key, read_key_file
from app.credentials.router import router as credentials_router
from app.db import Database
from app.docs import install_docs
from app.errors import file_problems_under_problem_json, install_error_handlers
from app.fastpath import FastPathCount
from app.files import private_dir
from app.health.router import router as health_router
from app.http import declare_headers
from app.logs import configure_logging, write_waiting_lines
from app.metrics import Metrics
from app.metrics import router as metrics_router
from app.middleware import RequestContextMiddleware
from app.migrate import require_head
from app.org.router import router as org_router
from app.org.service import ensure_admins
from app.permits.approvers import ESCALATE_BEFORE, session_policy
from app.permits.fastpath import PermitFastPath
from app.permits.reader import PermitReader
from app.permits.router import router as permits_router
from app.push.addresses import AddressRules
from app.push.hub import Hub
from app.push.router import events_router
from app.push.router import router as webhooks_router
from app.push.sender import Sender
from app.push.webhooks import check_secrets_key
from app.ratelimit import RateLimitMiddleware, RateLimits
from app.rawdb import RawReader, open_raw_reader
from app.secretbox import SecretsKeyError, load_secret_box
from app.sweeper import periodic_sweep

log = logging.getLogger(__name__)

DESCRIPTION = """\
Izin Siaran turns clause 4 of Surat Edaran Bupati Kepulauan Anambas No. 47/2025
into a service: civil servants (ASN) ask their unit head for permission to
live-stream from a workspace, and other services ask whether a stream is
authorised. Errors are RFC 9457 problems with a machine-readable `code`.
"""


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def _operation_id(route: APIRoute) -> str:
    return route.name


YOUNG_COLLECTION_AFTER = 50_000
"""Container objects allocated (net of those freed) between two collections of the
garbage collector's youngest generation while serving; Python's default is 700."""


@asynccontextmanager
async def _frozen_start_up() -> AsyncIterator[None]:
    """Keep what start-up made out of the garbage collector's full passes while serving,
    and collect the young generation less often.

    The application (routes, models, schemas, the libraries behind them) is some
    hundreds of thousands of objects that live as long as the process. Under load
    a full collection comes about once a second and, walking all of them, holds
    every request for ≈ 80 ms: the slowest 1 % of checks. Frozen, they are skipped
    (≈ 3 ms). Garbage is collected first, so nothing dead is frozen; shutting down
    hands everything back to the collector.

    A request's objects are freed by their reference counts as it ends; few form
    cycles, which only the collector frees. At Python's default the young generation
    was collected ≈ 170 times a second under load, each pass walking the objects of
    the requests in flight and freeing almost nothing: ≈ 3 % of the worker's time
    (bench/README.md, "Garbage collection"). Every `YOUNG_COLLECTION_AFTER` allocations
    instead, the garbage cycles wait for a pass at most that many objects long.
    """
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # A start begins with zero counts and full budgets, also when this application object
    # is started again (an ASGI lifespan may run more than once: the tests do).
    app.state.metrics.start()
    app.state.rate_limits.refill()
    private_dir(settings.data_dir)
    policy = session_policy(
        settings.policy_remind_before_start_minutes, settings.policy_escalate_before_start_minutes
    )
    db = Database.connect(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        timeout=settings.database_timeout_seconds,
        info=policy,
    )
    raw: RawReader | None = None
    hub: Hub | None = None
    sender: Sender | None = None
    try:
        await require_head(db.engine)
        raw = await open_raw_reader(
            settings.effective_database_url,
            size=settings.database_pool_size,
            wait_seconds=settings.database_timeout_seconds,
        )
        app.state.raw_reader = raw  # the hot reads (its round trips: tests, the benchmark)
        app.state.check_reader = CheckReader(raw, escalate_before=policy[ESCALATE_BEFORE])
        app.state.permit_reader = PermitReader(raw, escalate_before=policy[ESCALATE_BEFORE])
        if settings.bootstrap_admin_nips:
            async with db.write() as session, session.begin():
                await ensure_admins(session, settings.bootstrap_admin_nips)
        if settings.local_auth:
            signer = load_or_create_signer(settings.data_dir)
            app.state.local_signer = signer
            keys: StaticKeySource | RemoteKeySource = StaticKeySource(parse_jwks(signer.jwks))
            log.warning("local auth mode: tokens are signed by the key in %s", settings.data_dir)
        else:
            app.state.local_signer = None
            keys = RemoteKeySource(
                settings.auth_jwks_url, cache_seconds=settings.auth_jwks_cache_seconds
            )
        app.state.token_verifier = TokenVerifier(settings, keys)
        app.state.db = db
        app.state.secret_box = box = load_secret_box(settings)
        async with db.read() as session:
            try:
                await check_secrets_key(session, box)
            except SecretsKeyError as exc:
                log.error("%s; webhook deliveries will fail until it is fixed", exc)
        file_key = read_key_file(settings)
        async with db.write() as session, session.begin():
            await ensure_signing_key(session, box, settings, file_key)
        app.state.keyring = keyring = KeyRing(db, box, file_key)
        await keyring.load()
        app.state.address_rules = rules = AddressRules(
            allow_http=settings.webhook_allow_http, allow_private=settings.webhook_allow_private
        )
        hub = app.state.hub = Hub(db, settings.effective_database_url)
        sender = Sender(db, box, settings, app.state.metrics, rules)
        hub.on_events(sender.wake)
        await hub.start()
        sender.start()
        log.info("Izin Siaran %s ready on %s", __version__, db.dialect)
        async with periodic_sweep(db, settings.sweep_interval_seconds), _frozen_start_up():
            yield
    finally:
        if sender is not None:
            await sender.close()
        if hub is not None:
            await hub.close()
        if raw is not None:
            await raw.close()
        await db.dispose()
        write_waiting_lines()


def _serve_problems_as_problem_json(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_headers(file_problems_under_problem_json(generate()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class Service(FastAPI):
    """FastAPI with the service's own layers (`add_middleware`: the request context, CORS,
    the fast paths, the rate limit) outside the layers FastAPI puts around its routes, not
    inside them: the check and a permit read, answered by the fast paths, then pass no
    layer of FastAPI's (bench/README.md, "eighth round"). FastAPI's outermost layer,
    `ServerErrorMiddleware`, is left out: it would answer an unhandled error with a
    plain-text 500 before any layer of ours saw it; the request context answers it as a
    problem document with the request id, and logs it (`app.middleware`). `create_app`
    builds the stack, so that a FastAPI composed otherwise fails there."""

    def build_middleware_stack(self) -> ASGIApp:
        ours, self.user_middleware = self.user_middleware, []
        try:
            built = super().build_middleware_stack()
        finally:
            self.user_middleware = ours
        if not isinstance(built, ServerErrorMiddleware):  # FastAPI composes otherwise
            raise RuntimeError(f"FastAPI's outermost layer is {type(built).__name__}")
        if built.handler is not None or built.debug:  # would be dropped with the layer
            raise RuntimeError("a 500 handler or debug mode needs FastAPI's error layer")
        app = built.app
        for cls, args, kwargs in reversed(ours):
            app = cls(app, *args, **kwargs)
        return app


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic
) -> FastAPI:
    """The service; `clock` is the monotonic clock its rate limit refills by."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = Service(
        title="Izin Siaran",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url=None,  # served offline, with their CSP, by app.docs
        redoc_url=None,
        # FastAPI's own OpenTelemetry asks the providers on every request, the check's
        # included, even when nothing exports: only when asked for.
        telemetry=None if settings.telemetry else NO_TELEMETRY,
    )
    # The application's state in a plain mapping of ours, which the fast paths read on
    # every request (`app.fastpath.FastPath.state`).
    state: dict[str, Any] = {}
    app.state = State(state)
    app.state.settings = settings
    install_error_handlers(app)
    _serve_problems_as_problem_json(app)
    # Added innermost first: request context wraps CORS (when configured), which wraps the
    # fast paths of the check and of a permit read (app/fastpath.py), which wrap the rate
    # limit. The fast paths admit their callers against the rate limit and put its headers
    # on their answers themselves, so an answer of theirs passes one `send` wrapper of ours
    # (the request context's) instead of two.
    app.state.check_fast_path = FastPathCount()
    app.state.permit_fast_path = FastPathCount()
    app.state.rate_limits = RateLimits(
        per_minute=settings.rate_limit_per_minute,
        check_per_minute=settings.rate_limit_check_per_minute,
        auth_failures_per_minute=settings.rate_limit_auth_failures_per_minute,
        public_per_minute=settings.rate_limit_public_per_minute,
        clock=clock,
    )
    limits = app.state.rate_limits
    app.add_middleware(RateLimitMiddleware, limits=limits)
    app.add_middleware(PermitFastPath, count=app.state.permit_fast_path, limits=limits, state=state)
    app.add_middleware(CheckFastPath, count=app.state.check_fast_path, limits=limits, state=state)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-API-Key",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "Location",
                "Retry-After",
                "X-Request-ID",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
            max_age=600,
        )
    app.state.metrics = Metrics()
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, metrics=app.state.metrics
    )
    if settings.trusted_proxies:  # outermost: every layer sees the forwarded client address
        proxies = [str(network) for network in settings.trusted_proxies]
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    if settings.docs_enabled:
        install_docs(app)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(org_router)
    app.include_router(api_keys_router)
    app.include_router(permits_router)
    app.include_router(authorizations_router)
    app.include_router(audit_router)
    app.include_router(webhooks_router)
    app.include_router(events_router)
    app.include_router(credentials_router)
    # Built now, once: a composition `Service` refuses fails here, not on the first request.
    app.middleware_stack = app.build_middleware_stack()
    return app


def _app_from_environment() -> FastAPI:
    try:
        return create_app()
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None


app = _app_from_environment()
