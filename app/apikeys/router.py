"""API keys for service clients (the streaming gateway, monitoring bots). Admins only."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from app.auth.dependencies import Admin, WriteSession
from app.auth.models import ApiKey
from app.db import ReadSession
from app.errors import API_PROBLEMS, created_links, problem_responses
from app.pagination import Page, PageParams
from app.records import page_of

from . import service
from .schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

router = APIRouter(
    prefix="/api/v1/api-keys",
    tags=["api-keys"],
    responses=API_PROBLEMS,
)


@router.post(
    "",
    status_code=201,
    responses={
        **problem_responses(400, 413),
        **created_links("key_id", "id", "read_api_key", "revoke_api_key"),
    },
)
async def create_api_key(
    body: ApiKeyCreate, session: WriteSession, admin: Admin, response: Response
) -> ApiKeyCreated:
    """Create a key. The secret `key` is in this response only; store it now."""
    key, secret = await service.create_api_key(session, admin.nip, body)
    response.headers["Location"] = f"/api/v1/api-keys/{key.id}"
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.get("")
async def list_api_keys(session: ReadSession, _: Admin, page: PageParams) -> Page[ApiKeyOut]:
    """All keys, revoked ones included, oldest first. Secrets are never shown."""
    return await page_of(session, select(ApiKey), ApiKey.id, ApiKeyOut, page)


@router.get("/{key_id}", responses=problem_responses(404))
async def read_api_key(key_id: str, session: ReadSession, _: Admin) -> ApiKeyOut:
    """One API key, without its secret (shown only when it was created). Admins."""
    return ApiKeyOut.model_validate(await service.get_api_key(session, key_id))


@router.delete("/{key_id}", responses=problem_responses(404, 409))
async def revoke_api_key(key_id: str, session: WriteSession, admin: Admin) -> ApiKeyOut:
    """Revoke a key: it stops working at once. The record stays for the audit trail."""
    return ApiKeyOut.model_validate(await service.revoke_api_key(session, admin.nip, key_id))
