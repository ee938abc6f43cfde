"""The check's fast path: the common, well-formed request answered below FastAPI.

Gateways and bots call `GET /api/v1/authorizations/check` thousands of times a
second, nearly always the same way: one credential, one complete pair of
parameters. This ASGI layer answers exactly that case itself, with one reading
that validates the credential and fetches the candidate permits (one statement;
on SQLite a kept reading while nothing was committed: `app.authorizations.reader`),
and the same rules, disclosure and body as the route (`app.authorizations.service`).
Anything else — a missing, malformed, unknown, revoked or unscoped credential, a
parameter out of its declared range or not a NIP, an unknown or repeated parameter,
a CORS request — goes on to the FastAPI route, which owns validation and every error
(docs/RULES.md#check-query). So the fast path can only ever give the answer the
route would give, sooner; it never refuses anything itself, except that a database
it cannot reach gets the same 503 problem the route would give.

The request-context layer (request id, security headers, access log) and CORS still
apply, and so does the rate limit, which this layer applies itself (`app.fastpath`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from pydantic import TypeAdapter, ValidationError
from starlette.types import Scope, Send

from app.auth.credentials import (
    PresentedKey,
    caller_name,
    grants,
    judge_api_key,
    judge_employee,
)
from app.authorizations import service
from app.authorizations.reader import CheckReader, Form, Pair, Reading
from app.authorizations.service import Caller
from app.errors import AppError, Unauthenticated
from app.fastpath import FastPath, send_json, send_problem, verified_credential
from app.permits.vocabulary import PLATFORMS
from app.timeutil import InstantIn, utcnow

CHECK_PATH = "/api/v1/authorizations/check"
_FORMS: dict[frozenset[str], Form] = {
    frozenset({"nip", "workspace_code"}): "employee",
    frozenset({"nip", "workspace_code", "at"}): "employee",
    frozenset({"platform", "channel"}): "channel",
    frozenset({"platform", "channel", "at"}): "channel",
}
_INSTANT: TypeAdapter[datetime] = TypeAdapter(InstantIn)
_NO_STORE = (b"cache-control", b"no-store")


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The query's parameters as Starlette reads them (`parse_qsl`, blanks kept: each
    field split at its first `=`, `+` read as a space, then percent-decoded), without
    its work where there is nothing to decode (no `%`, no `+`)."""
    fields = (field.partition("=") for field in query.split("&") if field)
    if "%" in query or "+" in query:
        return [(_decoded(name), _decoded(value)) for name, _, value in fields]
    return [(name, value) for name, _, value in fields]


def _decoded(text: str) -> str:
    """One name or value as `parse_qsl` decodes it; the short ones remembered (a gateway
    asks after the same channels again and again: `unquote` costs ≈ 2 µs a value)."""
    return _remembered(text) if len(text) <= 256 else _unquoted(text)


def _unquoted(text: str) -> str:
    return unquote(text.replace("+", " "))


_remembered = lru_cache(maxsize=4096)(_unquoted)


class Query:
    """A check query the route would accept as it is, or None."""

    __slots__ = ("at", "pair")

    def __init__(self, pair: Pair, at: datetime | None) -> None:
        self.pair, self.at = pair, at

    @classmethod
    def parse(cls, query_string: bytes) -> Query | None:
        pairs = query_pairs(query_string.decode("latin-1"))
        params = dict(pairs)
        form = _FORMS.get(frozenset(params))
        if form is None or len(params) != len(pairs):
            return None
        at = None
        if "at" in params:
            try:
                at = _INSTANT.validate_python(params["at"])
            except ValidationError:
                return None
        if form == "employee":
            nip, workspace = params["nip"], params["workspace_code"]
            if not 0 < len(workspace) <= 32 or service.nip_error(nip) is not None:
                return None  # the route says what is wrong (docs/RULES.md#check-query)
            return cls(Pair.of(nip, workspace, None, None), at)
        platform, channel = params["platform"], params["channel"]
        if platform not in PLATFORMS or not 0 < len(channel) <= 200:
            return None
        return cls(Pair.of(None, None, platform, channel), at)


class Credential:
    """The request's credential as the route reads it (`app.fastpath.verified_credential`):
    an API key (id and secret) or a bearer token's verified NIP, to be judged against the
    row the check's statement reads with the permits."""

    __slots__ = ("caller", "key_id", "secret")

    def __init__(self, *, key_id: str | None = None, secret: str = "", caller: str | None = None):
        self.key_id, self.secret, self.caller = key_id, secret, caller

    @property
    def name(self) -> str:
        return caller_name(nip=self.caller, key_id=self.key_id)

    def accepted_by(self, reading: Reading) -> bool:
        """Whether the route's authentication accepts it (the same rules:
        docs/RULES.md#credentials), and a key grants the check (docs/RULES.md#api-keys)."""
        try:
            if self.key_id is None:
                judge_employee(reading.caller_active)
                return True
            judge_api_key(self.secret, reading.key_secret_sha256, reading.key_revoked)
        except Unauthenticated:
            return False
        return reading.key_scopes is not None and _text_grants_check(reading.key_scopes)


@lru_cache(maxsize=1024)
def _text_grants_check(scopes: str) -> bool:
    """Whether a key's scopes, as the database sends them (JSON text), grant the check
    (a key's scopes are few and rarely change: each text is parsed once)."""
    parsed = json.loads(scopes)
    return isinstance(parsed, list) and grants(parsed, "check")


async def _credential(scope: Scope, state: Mapping[str, Any]) -> Credential | None:
    credential = await verified_credential(scope, state)
    if credential is None:
        return None
    if isinstance(credential, PresentedKey):
        return Credential(key_id=credential.key_id, secret=credential.secret)
    return Credential(caller=credential)


class CheckFastPath(FastPath):
    """ASGI layer: answers well-formed checks itself, passes everything else on."""

    route = CHECK_PATH

    def takes(self, scope: Scope) -> bool:
        return bool(scope["path"] == CHECK_PATH)

    async def answer(self, scope: Scope, send: Send) -> bool:
        reader: CheckReader | None = self.state.get("check_reader")
        query = Query.parse(scope["query_string"])
        if reader is None or query is None:
            return False
        credential = await _credential(scope, self.state)
        if credential is None:
            return False
        checked_at = utcnow()
        at = query.at or checked_at
        try:
            reading = await reader.read(
                query.pair,
                at,
                checked_at,
                key_id=credential.key_id,
                caller=credential.caller,
            )
            if not credential.accepted_by(reading) or not self.admitted(scope, credential.name):
                return False
            caller = None
            if credential.caller is not None:
                caller = Caller(
                    credential.caller, reading.caller_is_admin, reading.caller_is_auditor
                )
            verdict = await service.answer(reader, query.pair.form, reading, at, checked_at, caller)
        except AppError as exc:  # the database is unavailable: the route would say the same
            await send_problem(scope, send, exc, CHECK_PATH)
            return True
        body = service.body(verdict, checked_at, self.state["metrics"])
        await send_json(scope, send, body, [_NO_STORE])
        self.count.answered += 1
        return True
