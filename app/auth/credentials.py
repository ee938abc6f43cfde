"""Credentials: how a request presents one, and the rules that judge it.

This is the one home of docs/RULES.md#credentials and docs/RULES.md#api-keys.

Reading needs no database: `credential_headers` takes a request's `Authorization`
and `X-API-Key` as sent, `presented` says which one credential they carry (or
refuses them), and `token_nip` verifies a bearer token. Judging needs the
credential's stored row, which comes from wherever the caller found it (an ORM
`get` for the routes, `app.auth.dependencies.get_principal`; the columns of the
check's one statement for its fast path, `app.authorizations.fastpath`); the rule
is one function per kind, `judge_api_key` and `judge_employee`. The routes, both
fast paths and the rate limiter call these functions, so a credential one path
accepts, every path accepts, and for the same reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable
from typing import NamedTuple

from app.auth.tokens import TokenVerifier
from app.errors import Unauthenticated
from app.ids import could_be_id
from app.nip import could_be_nip

API_KEY_PREFIX = "izs"


def hash_secret(secret: str) -> str:
    """What is stored of an API key's secret (docs/RULES.md#api-keys)."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- reading: what the request carries ----------------------------------------------


class CredentialHeaders(NamedTuple):
    """A request's credential headers as sent: the first `Authorization` and the first
    `X-API-Key` (what the routes read), and whether either came more than once."""

    authorization: str | None
    api_key: str | None
    repeated: bool = False


def credential_headers(headers: Iterable[tuple[bytes, bytes]]) -> CredentialHeaders:
    """The credential headers among a request's raw (ASGI, lower-cased) headers."""
    authorization = api_key = None
    repeated = False
    for name, value in headers:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
            else:
                repeated = True
        elif name == b"x-api-key":
            if api_key is None:
                api_key = value.decode("latin-1")
            else:
                repeated = True
    return CredentialHeaders(authorization, api_key, repeated)


class PresentedKey(NamedTuple):
    """An API key of the right shape (`izs_<id>_<secret>`), not yet judged."""

    key_id: str
    secret: str


class PresentedToken(NamedTuple):
    """A bearer token, not yet verified."""

    token: str


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header's value, or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def presented(headers: CredentialHeaders) -> PresentedKey | PresentedToken:
    """The one credential the headers carry; `Unauthenticated` when they carry none, both,
    or one of the wrong shape (docs/RULES.md#credentials)."""
    authorization, api_key = headers.authorization, headers.api_key
    if authorization and api_key:
        raise Unauthenticated(
            "Send either a bearer token or an API key, not both.", code="ambiguous_credentials"
        )
    if api_key:
        prefix, _, rest = api_key.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != API_KEY_PREFIX or not could_be_id(key_id) or not secret:
            raise _invalid_api_key()
        return PresentedKey(key_id, secret)
    if not authorization:
        raise Unauthenticated("This endpoint needs a bearer token or an X-API-Key.")
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("Use `Authorization: Bearer <token>`.", code="invalid_token")
    return PresentedToken(token)


async def token_nip(verifier: TokenVerifier, token: PresentedToken) -> str:
    """The NIP a bearer token speaks for, verified; a NIP that could name no employee is
    refused here, before anything asks the database about it."""
    nip = await verifier.verified_nip(token.token)
    if not could_be_nip(nip):
        raise _unknown_employee()
    return nip


def caller_name(*, nip: str | None = None, key_id: str | None = None) -> str:
    """How a verified caller is named: in the audit trail, and for their rate-limit
    budget (an employee by NIP, a service client by its key's id)."""
    return nip if nip is not None else f"api-key:{key_id}"


def caller_kind(name: str | None) -> str:
    """What kind of caller a `caller_name` names: `employee`, `api_key`, or `anonymous`
    (no verified caller)."""
    if name is None:
        return "anonymous"
    return "api_key" if name.startswith("api-key:") else "employee"


# --- judging: the presented credential against its stored row ------------------------


def judge_api_key(secret: str, stored_sha256: str | None, revoked: bool) -> None:
    """An API key is accepted when its stored row (`stored_sha256` None: there is none)
    matches the secret and is not revoked (docs/RULES.md#api-keys)."""
    if stored_sha256 is None or not hmac.compare_digest(stored_sha256, hash_secret(secret)):
        raise _invalid_api_key()
    if revoked:
        raise Unauthenticated(
            "The API key has been revoked.", code="api_key_revoked", scheme="ApiKey"
        )


def judge_employee(active: bool | None) -> None:
    """The employee a verified token names must be on record (`active` None: not) and
    active (docs/RULES.md#credentials)."""
    if active is None:
        raise _unknown_employee()
    if not active:
        raise Unauthenticated(
            "The employee named by the token is inactive.", code="employee_inactive"
        )


def grants(scopes: Collection[str], scope: str) -> bool:
    """A key grants exactly its scopes (docs/RULES.md#api-keys)."""
    return scope in scopes


def _invalid_api_key() -> Unauthenticated:
    return Unauthenticated("The API key is not valid.", code="invalid_api_key", scheme="ApiKey")


def _unknown_employee() -> Unauthenticated:
    return Unauthenticated(
        "The token is valid but names no employee known to this service.",
        code="unknown_employee",
    )
