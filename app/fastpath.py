"""What the fast paths share: the credential headers, the bearer token, the answer.

Two reads are answered below FastAPI when the request is the common, well-formed
kind: the check (`app.authorizations.fastpath`) and a permit read
(`app.permits.fastpath`). Each answers only the case that succeeds and passes
everything else to its FastAPI route, which owns validation and every error. They
sit inside the outer layers (request id, security headers, access log, rate
limit), just outside FastAPI's routing.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.dependencies import could_be_nip
from app.auth.tokens import bearer_token
from app.errors import AppError


class FastPathCount:
    """How many requests a fast path answered (and, by difference, passed on)."""

    def __init__(self) -> None:
        self.answered = 0


class FastPath:
    """ASGI layer: answers the GET requests it `takes` itself when it can (`answer`), and
    passes everything else on."""

    def __init__(self, app: ASGIApp, *, count: FastPathCount) -> None:
        self.app = app
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not self.takes(scope)
            or not await self.answer(scope, send)
        ):
            await self.app(scope, receive, send)

    def takes(self, scope: Scope) -> bool:
        """Whether the request is of the kind this layer answers (path and query)."""
        raise NotImplementedError

    async def answer(self, scope: Scope, send: Send) -> bool:
        """Answer and say True, or say False having sent nothing."""
        raise NotImplementedError


def credential_headers(scope: Scope) -> tuple[str | None, str | None] | None:
    """The request's `Authorization` and `X-API-Key`, or None when either is repeated or
    the request is a CORS one (the CORS layer and the route handle those)."""
    authorization = api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is not None:
                return None
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            if api_key is not None:
                return None
            api_key = value.decode("latin-1")
        elif name == b"origin":
            return None
    return authorization, api_key


async def bearer_nip(scope: Scope, authorization: str) -> str | None:
    """The NIP a valid bearer token names, or None for anything the route must judge."""
    token = bearer_token(authorization)
    if token is None:
        return None
    try:
        nip = await scope["app"].state.token_verifier.verified_nip(token)
    except AppError:
        return None
    return nip if could_be_nip(nip) else None


JSON_TYPE = (b"content-type", b"application/json")


async def send_json(
    send: Send, content: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A 200 with `content` as Starlette's JSONResponse would encode it."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    start_headers = [JSON_TYPE, *(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


async def no_receive() -> Any:
    """The `receive` of an answer that needs no request body."""
    return {"type": "http.disconnect"}
