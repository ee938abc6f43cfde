"""The outermost ASGI layer: request id, body size limit, access log, last-resort 500.

Written as plain ASGI (not `BaseHTTPMiddleware`) so it adds no per-request task
and can refuse an oversized body while it streams in.
"""

from __future__ import annotations

import logging
import re
import time
from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.credentials import caller_kind
from app.errors import problem_response
from app.logs import ACCESS_LOG, log_access
from app.metrics import Metrics, route_template
from app.ratelimit import CALLER
from app.requestctx import new_request_id, set_request_id

error_log = logging.getLogger("app.errors")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_NIP_IN_PATH = re.compile(r"(?<![0-9])[0-9]{14}([0-9]{4})(?![0-9])")


def logged_path(path: str) -> str:
    """The path as the access log writes it: a NIP in it (`/api/v1/employees/{nip}`) shown
    by its last 4 digits only, as the credential's hint would (a NIP is personal data).
    The same few paths come request after request: remembered (1.4 µs → 0.1), but for
    long ones (a 414's)."""
    return _logged_path(path) if len(path) <= 256 else _masked(path)


def _masked(path: str) -> str:
    return _NIP_IN_PATH.sub(r"…\1", path)


_logged_path = lru_cache(maxsize=1024)(_masked)


MAX_PATH_LENGTH = 2048
MAX_QUERY_LENGTH = 16_384

# Sent on every response. The interactive docs load their own scripts, so they get no CSP.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
]
API_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
NO_STORE = (b"cache-control", b"no-store")
_API_EXTRA = [*SECURITY_HEADERS, *API_HEADERS]


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming_id, declared = _request_headers(scope)
        request_id = incoming_id or new_request_id()
        set_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        limit = self.max_body_bytes
        received = 0

        if len(scope["path"]) > MAX_PATH_LENGTH or len(scope["query_string"]) > MAX_QUERY_LENGTH:
            await self._send_problem(scope, send, request_id, 414, started)
            return
        # No identifier or filter can hold NUL, and PostgreSQL refuses it outright.
        if "\x00" in scope["path"]:
            await self._send_problem(scope, send, request_id, 404, started)
            return
        if b"%00" in scope["query_string"]:  # no letter in it: either case is this
            await self._send_problem(scope, send, request_id, 422, started)
            return
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._send_problem(scope, send, request_id, 413, started)
            return
        api = scope["path"].startswith("/api/")
        id_header = (b"x-request-id", request_id.encode())
        extra_headers = _API_EXTRA if api else SECURITY_HEADERS

        refused = False

        async def limited_receive() -> Message:
            # A streamed body that outgrows the limit: answer 413 ourselves and tell
            # the app the client left (raising here would become FastAPI's generic 400).
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    if not response_started:
                        await self._send_problem(scope, send, request_id, 413, started)
                    return {"type": "http.disconnect"}
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if refused:
                return  # the 413 already went out; whatever the app says now is moot
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [*message.get("headers", ()), id_header, *extra_headers]
                if api:
                    for name, _ in headers:
                        if name == b"cache-control":
                            break
                    else:
                        headers.append(NO_STORE)  # permit and organisation data: not for caches
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            if refused:
                return
            error_log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not response_started:
                await self._send_problem(scope, send, request_id, 500, started)
                return
            raise
        if not refused:
            self._access(scope, status, started)

    async def _send_problem(
        self, scope: Scope, send: Send, request_id: str, status: int, started: float
    ) -> None:
        if status == 404:
            response = problem_response(
                404, "not_found", "No resource has a NUL character in its name.", instance=None
            )
        elif status == 422:
            response = problem_response(
                422,
                "validation_error",
                "Query parameters may not contain NUL characters.",
                title="Invalid input",
                errors=[{"loc": ["query"], "msg": "contains NUL", "code": "nul_character"}],
                instance=scope["path"],
            )
        elif status == 414:
            response = problem_response(
                414,
                "uri_too_long",
                f"The path may be at most {MAX_PATH_LENGTH} and the query "
                f"{MAX_QUERY_LENGTH} characters long.",
                instance=scope["path"][:200],
            )
        elif status == 413:
            response = problem_response(
                413,
                "payload_too_large",
                f"The request body is larger than {self.max_body_bytes} bytes.",
                instance=scope["path"],
            )
        else:
            response = problem_response(
                500,
                "internal_error",
                f"An unexpected error occurred; quote request id {request_id} when reporting it.",
                instance=scope["path"],
            )
        response.headers["X-Request-ID"] = request_id
        response.raw_headers.extend(SECURITY_HEADERS)
        await response({"type": "http"}, _no_receive, send)
        self._access(scope, status, started)

    def _access(self, scope: Scope, status: int, started: float) -> None:
        """The request's line in the access log and its count in `/metrics`."""
        seconds = time.perf_counter() - started
        self.metrics.request(scope, status, seconds)
        if not ACCESS_LOG.isEnabledFor(logging.INFO):
            return
        log_access(
            scope["method"],
            logged_path(scope["path"]),
            route_template(scope),
            status,
            round(seconds * 1000, 1),
            caller_kind(scope.get("state", {}).get(CALLER)),
        )


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _request_headers(scope: Scope) -> tuple[str | None, str | None]:
    """The request's own id (`X-Request-ID`, when it is a valid one) and its declared
    `Content-Length`, in one pass over its headers (the first of each counts)."""
    request_id = declared = None
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            if request_id is None:
                request_id = value.decode("latin-1")
        elif key == b"content-length" and declared is None:
            declared = value.decode("latin-1")
    if request_id is not None and not _VALID_REQUEST_ID.match(request_id):
        request_id = None  # an empty one included
    return request_id, declared
