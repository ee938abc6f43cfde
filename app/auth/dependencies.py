"""Who is calling, and the request's transaction, as route dependencies.

`CurrentPrincipal` is anyone authenticated; `CurrentEmployee`, `Admin` and
`AuditorOrAdmin` narrow it (docs/RULES.md#roles). Roles come from the service's
own records, never from the token (docs/RULES.md#roles-from-records).

A route declares whether it reads or writes (docs/RULES.md#transactions):
`app.db.ReadSession`, or `WriteSession` here, which opens the write transaction
only once the caller is verified, so that on SQLite a bad credential or a fetch
of the identity provider's keys never holds up the writers that queue for their
turn (`app.db.Database.write`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.credentials import (
    PresentedKey,
    credential_headers,
    judge_api_key,
    judge_employee,
    presented,
    token_nip,
)
from app.auth.models import ApiKey
from app.auth.principal import Principal
from app.auth.tokens import TokenVerifier
from app.db import Database, ReadSession, transaction
from app.errors import Forbidden, Unauthenticated
from app.org.models import Employee
from app.org.roles import sees_everything
from app.ratelimit import RateLimits


async def get_principal(request: Request, session: ReadSession) -> Principal:
    """The caller: the request's credential (`app.auth.credentials`), judged against its
    row as the ORM reads it in the request's read transaction, and admitted by the rate
    limit as who they are (a refused credential spends its address' failure budget:
    docs/RULES.md#rate-limits)."""
    return await admitted(request, _verified(request, session))


async def admitted(request: Request, verifying: Awaitable[Principal]) -> Principal:
    """The caller `verifying` yields, admitted by the rate limit as who they are; a refused
    credential spends its address' failure budget (docs/RULES.md#rate-limits)."""
    limits: RateLimits = request.app.state.rate_limits
    try:
        principal = await verifying
    except Unauthenticated:
        limits.failed(request.scope)
        raise
    limits.admit(request.scope, principal.actor)
    return principal


async def verified_caller(request: Request, session: AsyncSession) -> Principal:
    """`get_principal` in a session of the caller's choosing (a route that must not hold
    the request's transaction open, such as the event stream)."""
    return await admitted(request, _verified(request, session))


async def _verified(request: Request, session: AsyncSession) -> Principal:
    credential = presented(credential_headers(request.scope["headers"]))
    if isinstance(credential, PresentedKey):
        key = await session.get(ApiKey, credential.key_id)
        if key is None:
            judge_api_key(credential.secret, None, revoked=False)
        else:
            judge_api_key(credential.secret, key.secret_sha256, key.revoked_at is not None)
        return Principal(api_key=key)
    verifier: TokenVerifier = request.app.state.token_verifier
    employee = await session.get(Employee, await token_nip(verifier, credential))
    judge_employee(None if employee is None else employee.active)
    return Principal(employee=employee)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def _write_session(
    request: Request, _verified: CurrentPrincipal, read: ReadSession
) -> AsyncIterator[AsyncSession]:
    """The request's write transaction, opened once its caller is verified. The read in
    which the caller was verified ends first, so a request holds one connection at a time:
    a writing route takes what it reads from this session, not from `ReadSession`."""
    await read.close()
    db: Database = request.app.state.db
    async with transaction(db.write) as session:
        yield session


# scope="function": the dependency's exit (the commit) runs before the response is sent.
WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]


# The two credentials as OpenAPI security schemes, so the document says which operation
# takes which (and `/docs` has an "Authorize" button). Declared only: what they read is not
# used, the credential is read and judged by `get_principal` (docs/RULES.md#credentials).
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An employee's token from the identity provider "
    "(in local mode: `izin-siaran token <NIP>`).",
)
API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="A service client's API key, `izs_<id>_<secret>` (scopes: `check`, `events`).",
)
DeclaresBearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
DeclaresApiKey = Annotated[str | None, Security(API_KEY)]


async def _any_caller(
    principal: CurrentPrincipal, _bearer: DeclaresBearer, _key: DeclaresApiKey
) -> Principal:
    return principal


EmployeeOrServiceClient = Annotated[Principal, Depends(_any_caller)]
"""An employee (bearer token) or a service client (API key), as the check takes."""


async def _employee(principal: CurrentPrincipal, _bearer: DeclaresBearer) -> Employee:
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
    if not sees_everything(employee):
        raise Forbidden("This action needs the auditor or admin role.", code="auditor_required")
    return employee


AuditorOrAdmin = Annotated[Employee, Depends(_auditor_or_admin)]
