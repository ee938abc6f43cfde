"""What the fast paths share: the credential, read as the routes read it, and the answer.

Two reads are answered below FastAPI when the request is the common, well-formed
kind: the check (`app.authorizations.fastpath`) and a permit read
(`app.permits.fastpath`). Each answers only the case that succeeds and passes
everything else to its FastAPI route, which owns validation and every error. They
sit inside the request-context layer (request id, security headers, access log) and
CORS, in front of the rate-limit layer: they admit their callers against the rate
limit themselves (`FastPath.admitted`) and put its headers on what they send
(`send_json`, `send_problem`), so an answer of theirs passes one `send` wrapper of ours
(the request context's) instead of two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import credentials
from app.errors import AppError, app_error_response
from app.metrics import ROUTE_TEMPLATE
from app.ratelimit import RateLimited, RateLimits, spent_headers


class FastPathCount:
    """How many requests a fast path answered (and, by difference, passed on)."""

    def __init__(self) -> None:
        self.answered = 0


class FastPath:
    """ASGI layer: answers the GET requests it `takes` itself when it can (`answer`), and
    passes everything else on."""

    route: str
    """The template of the route it answers for (the `route` label of `/metrics`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        count: FastPathCount,
        limits: RateLimits,
        state: Mapping[str, Any],
    ) -> None:
        self.app = app
        self.count = count
        self.limits = limits
        self.state = state
        """The application's state (`app.state`) as the plain mapping it keeps its values
        in: read on every request, where `app.state.name` costs a failed attribute lookup
        and a call of `State.__getattr__` (≈ 0.4 µs)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and self.takes(scope)
            and await self.answer(scope, send)
        ):
            scope[ROUTE_TEMPLATE] = self.route
            return
        await self.app(scope, receive, send)

    def takes(self, scope: Scope) -> bool:
        """Whether the request is of the kind this layer answers (path and query)."""
        raise NotImplementedError

    async def answer(self, scope: Scope, send: Send) -> bool:
        """Answer and say True, or say False having sent nothing."""
        raise NotImplementedError

    def admitted(self, scope: Scope, caller: str) -> bool:
        """Whether the rate limit admits the verified `caller` (`app.ratelimit`); when it
        does not, the route, which verifies the caller again, sends the 429."""
        try:
            self.limits.admit(scope, caller)
        except RateLimited:
            return False
        return True


def credential_headers(scope: Scope) -> tuple[str | None, str | None] | None:
    """The request's `Authorization` and `X-API-Key` as the routes read them, or None
    when either is repeated or the request is a CORS one (the CORS layer and the route
    handle those)."""
    headers = _credential_headers(scope)
    return None if headers is None else (headers.authorization, headers.api_key)


async def verified_credential(
    scope: Scope, state: Mapping[str, Any]
) -> credentials.PresentedKey | str | None:
    """The request's credential as the routes read it: an API key of the right shape
    (judged later against the row the fast path reads), or the NIP a valid bearer token
    names (verified by the application's `token_verifier`, in its `state`); None for
    anything the route must judge (docs/RULES.md#credentials)."""
    headers = _credential_headers(scope)
    return None if headers is None else await _verified(headers, state)


async def bearer_nip(authorization: str, state: Mapping[str, Any]) -> str | None:
    """The NIP a valid bearer token names, or None for anything the route must judge."""
    nip = await _verified(credentials.CredentialHeaders(authorization, None), state)
    return nip if isinstance(nip, str) else None


def _credential_headers(scope: Scope) -> credentials.CredentialHeaders | None:
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    for name, _ in raw:
        if name == b"origin":
            return None
    headers = credentials.credential_headers(raw)
    return None if headers.repeated else headers


async def _verified(
    headers: credentials.CredentialHeaders, state: Mapping[str, Any]
) -> credentials.PresentedKey | str | None:
    try:
        credential = credentials.presented(headers)
        if isinstance(credential, credentials.PresentedKey):
            return credential
        return await credentials.token_nip(state["token_verifier"], credential)
    except AppError:  # refused, or the keys cannot be loaded: the route says which
        return None


JSON_TYPE = (b"content-type", b"application/json")


_AS_JSON_DUMPS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""What `json.dumps` cannot write, orjson refuses too (TypeError), rather than writing an
instant or a dataclass in a format of its own: the fast paths format their instants."""


def json_body(content: Any) -> bytes:
    """`content` as JSON, the bytes Starlette's JSONResponse writes (`json.dumps(…,
    ensure_ascii=False, separators=(",", ":"))`) for what the fast paths answer with:
    strings, booleans, 64-bit integers, nulls, lists, and objects with string keys (no
    floats); orjson, several times faster."""
    return orjson.dumps(content, option=_AS_JSON_DUMPS)


async def send_json(
    scope: Scope, send: Send, content: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A 200 with `content` as the route's JSONResponse would encode it (`json_body`), and
    the RateLimit headers of the budget the request spent (`app.ratelimit.spent_headers`)."""
    body = json_body(content)
    start_headers = [
        JSON_TYPE,
        *(headers or []),
        *spent_headers(scope),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


async def send_problem(scope: Scope, send: Send, error: AppError, instance: str) -> None:
    """`error` as the route's problem response, with the RateLimit headers of the budget
    the request spent, as `RateLimitMiddleware` puts them on the route's."""
    response = app_error_response(error, instance)
    response.raw_headers.extend(spent_headers(scope))
    await response(scope, no_receive, send)


async def no_receive() -> Any:
    """The `receive` of an answer that needs no request body."""
    return {"type": "http.disconnect"}
