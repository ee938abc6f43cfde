"""API keys: created with a one-time secret, stored as a SHA-256, revoked, never erased."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import append_event
from app.auth.credentials import API_KEY_PREFIX, hash_secret
from app.auth.models import ApiKey
from app.errors import Conflict
from app.ids import could_be_id, new_id
from app.records import get_or_404
from app.timeutil import format_instant, utcnow

from .schemas import ApiKeyCreate


async def create_api_key(
    session: AsyncSession, actor: str, body: ApiKeyCreate
) -> tuple[ApiKey, str]:
    """The new key and its secret, which is not stored and cannot be shown again."""
    key_id = new_id()
    secret = secrets.token_urlsafe(32)
    scopes = sorted(set(body.scopes))
    key = ApiKey(
        id=key_id,
        name=body.name,
        scopes=scopes,
        secret_sha256=hash_secret(secret),
        created_at=utcnow(),
        created_by=actor,
    )
    session.add(key)
    await _record(session, actor, key, "created", {"name": body.name, "scopes": list(scopes)})
    return key, f"{API_KEY_PREFIX}_{key_id}_{secret}"


async def _record(
    session: AsyncSession, actor: str, key: ApiKey, verb: str, data: dict[str, Any]
) -> None:
    """The key's change and its audit event (`api_key.created`, `api_key.revoked`)."""
    data = {"id": key.id, **data}
    await append_event(session, actor, f"api_key.{verb}", f"api-key:{key.id}", data)


async def get_api_key(session: AsyncSession, key_id: str, *, for_update: bool = False) -> ApiKey:
    return await get_or_404(
        session, ApiKey, key_id, "API key", for_update=for_update, could_be=could_be_id
    )


async def revoke_api_key(session: AsyncSession, actor: str, key_id: str) -> ApiKey:
    key = await get_api_key(session, key_id, for_update=True)
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is already revoked.", code="already_revoked")
    key.revoked_at = utcnow()
    key.revoked_by = actor
    await _record(session, actor, key, "revoked", {"revoked_at": format_instant(key.revoked_at)})
    return key
