"""Principal resolution and permission dependencies that read like SPEC §3.

`CurrentPrincipal` is anyone authenticated; `CurrentEmployee`, `Admin` and
`AuditorOrAdmin` narrow it. Roles come from the service's own records, never
from the token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.auth.principal import Principal
from app.auth.tokens import TokenVerifier, bearer_token
from app.db import SessionDep
from app.errors import Forbidden, Unauthenticated
from app.org.models import NIP_LENGTH, Employee

API_KEY_PREFIX = "izs"
KEY_ID_LENGTH = 26


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def could_be_key_id(value: str) -> bool:
    """Key ids are 26 ASCII letters and digits; anything else names no key and is not
    sent to the database (PostgreSQL rejects some strings, e.g. with a NUL, outright)."""
    return len(value) == KEY_ID_LENGTH and value.isascii() and value.isalnum()


def could_be_nip(value: str) -> bool:
    """Every stored NIP is 18 ASCII digits (see `could_be_key_id` for why this matters)."""
    return len(value) == NIP_LENGTH and value.isascii() and value.isdigit()


async def _employee_from_token(
    session: AsyncSession, verifier: TokenVerifier, token: str
) -> Employee:
    nip = await verifier.verified_nip(token)
    employee = await session.get(Employee, nip) if could_be_nip(nip) else None
    if employee is None:
        raise Unauthenticated(
            "The token is valid but names no employee known to this service.",
            code="unknown_employee",
        )
    if not employee.active:
        raise Unauthenticated(
            "The employee named by the token is inactive.", code="employee_inactive"
        )
    return employee


async def _api_key(session: AsyncSession, presented: str) -> ApiKey:
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    valid_shape = prefix == API_KEY_PREFIX and could_be_key_id(key_id) and secret
    key = await session.get(ApiKey, key_id) if valid_shape else None
    if key is None or not hmac.compare_digest(key.secret_sha256, hash_secret(secret)):
        raise Unauthenticated("The API key is not valid.", code="invalid_api_key", scheme="ApiKey")
    if key.revoked_at is not None:
        raise Unauthenticated(
            "The API key has been revoked.", code="api_key_revoked", scheme="ApiKey"
        )
    return key


async def get_principal(request: Request, session: SessionDep) -> Principal:
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if authorization and api_key:
        raise Unauthenticated(
            "Send either a bearer token or an API key, not both.", code="ambiguous_credentials"
        )
    if api_key:
        return Principal(api_key=await _api_key(session, api_key))
    if not authorization:
        raise Unauthenticated("This endpoint needs a bearer token or an X-API-Key.")
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("Use `Authorization: Bearer <token>`.", code="invalid_token")
    verifier: TokenVerifier = request.app.state.token_verifier
    return Principal(employee=await _employee_from_token(session, verifier, token))


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def _employee(principal: CurrentPrincipal) -> Employee:
    if principal.employee is None:
        raise Forbidden(
            "API keys grant only their scopes; this endpoint is for employees.",
            code="insufficient_scope",
        )
    return principal.employee


CurrentEmployee = Annotated[Employee, Depends(_employee)]


async def _admin(employee: CurrentEmployee) -> Employee:
    if not employee.is_admin:
        raise Forbidden("This action needs the admin role.", code="admin_required")
    return employee


Admin = Annotated[Employee, Depends(_admin)]


async def _auditor_or_admin(employee: CurrentEmployee) -> Employee:
    if not (employee.is_admin or employee.is_auditor):
        raise Forbidden("This action needs the auditor or admin role.", code="auditor_required")
    return employee


AuditorOrAdmin = Annotated[Employee, Depends(_auditor_or_admin)]
