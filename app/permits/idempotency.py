"""`Idempotency-Key` on submissions and decisions (docs/RULES.md#idempotency), declared by a
route as one dependency (`Idempotent`).

A retry with the same key and request replays the first response and changes
nothing; the same key with another request is a 422; keys are scoped to the
caller and kept 24 hours. The record is written in the same transaction as the
change it describes, so a replay exists exactly when the change does. While the
first request is still running, a concurrent duplicate gets 409 instead of
waiting (PostgreSQL: a try-lock on the key; SQLite: writers are serialised, so
the duplicate simply runs after the first and replays it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import rfc8785
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import CurrentEmployee, WriteSession
from app.errors import Conflict, InvalidInput, field_error
from app.http import resource_response
from app.permits.models import IdempotencyRecord
from app.schemas import Absent
from app.timeutil import utcnow

KEEP_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 200


def request_fingerprint(method: str, path: str, body: Any) -> str:
    canonical = rfc8785.dumps({"method": method, "path": path, "body": body})
    return hashlib.sha256(canonical).hexdigest()


KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
"""Visible ASCII characters, and spaces between them (the document's pattern too)."""
_KEY = re.compile(KEY_PATTERN)


def check_key(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH or _KEY.fullmatch(key) is None:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            "(spaces only between them).",
            code="invalid_idempotency_key",
            errors=[
                field_error(["header", "Idempotency-Key"], "invalid", "invalid_idempotency_key")
            ],
        )
    return key


async def previous_response(
    session: AsyncSession, principal: str, key: str, fingerprint: str
) -> IdempotencyRecord | None:
    """The stored first response for this key, or None when the request should run."""
    if session.get_bind().dialect.name == "postgresql":
        locked = await session.scalar(
            select(func.pg_try_advisory_xact_lock(func.hashtextextended(f"{principal}\n{key}", 0)))
        )
        if not locked:
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                code="idempotency_in_flight",
                headers={"Retry-After": "1"},
            )
    record = await session.get(IdempotencyRecord, (principal, key))
    if record is None:
        return None
    if record.created_at <= utcnow() - KEEP_FOR:
        await session.delete(record)
        await session.flush()
        return None
    if record.request_sha256 != fingerprint:
        raise InvalidInput(
            "This Idempotency-Key was used for a different request.",
            code="idempotency_key_reused",
            errors=[field_error(["header", "Idempotency-Key"], "reused", "idempotency_key_reused")],
        )
    return record


async def remember(
    session: AsyncSession,
    principal: str,
    key: str,
    fingerprint: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    session.add(
        IdempotencyRecord(
            principal=principal,
            key=key,
            request_sha256=fingerprint,
            status_code=status_code,
            response=response,
            created_at=utcnow(),
        )
    )
    await session.flush()


async def forget_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= utcnow() - KEEP_FOR)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Once:
    """Runs a route's change once per `Idempotency-Key` and replays its first response."""

    request: Request
    session: AsyncSession
    principal: str
    key: str | None

    async def __call__(
        self,
        body: BaseModel | None,
        change: Callable[[], Awaitable[BaseModel]],
        status_code: int = 200,
    ) -> JSONResponse:
        """`change`'s result as the response; with a key, the first response to the same
        request, stored in the change's own transaction."""
        path = self.request.url.path
        if self.key is None:
            return resource_response(path, (await change()).model_dump(mode="json"), status_code)
        check_key(self.key)
        payload = body.model_dump(mode="json") if body is not None else None
        fingerprint = request_fingerprint(self.request.method, path, payload)
        previous = await previous_response(self.session, self.principal, self.key, fingerprint)
        if previous is not None:
            response = resource_response(path, previous.response, previous.status_code)
            response.headers["Idempotent-Replayed"] = "true"
            return response
        result = (await change()).model_dump(mode="json")
        await remember(self.session, self.principal, self.key, fingerprint, status_code, result)
        return resource_response(path, result, status_code)


async def once_per_key(
    request: Request,
    session: WriteSession,
    employee: CurrentEmployee,
    key: Annotated[
        str | Absent,
        Header(
            alias="Idempotency-Key",
            max_length=MAX_KEY_LENGTH,
            description="Replays the first response for 24 h.",
            json_schema_extra={"pattern": KEY_PATTERN},
        ),
    ] = None,
) -> Once:
    return Once(request, session, employee.nip, key)


Idempotent = Annotated[Once, Depends(once_per_key)]
"""Declares `Idempotency-Key` on a route; the route runs its change through it."""
