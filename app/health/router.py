"""Liveness, readiness and the local-mode JWKS."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from app.errors import problem_response, problem_responses
from app.migrate import current_revision, head_revision

router = APIRouter(tags=["operations"])


def _public(*statuses: int) -> dict[str, Any]:
    """A public operation as the document declares it: no credential (`security: []`), and
    the problems any request can meet (URI too long, the address' rate limit, a failure),
    with `statuses`."""
    return {
        "responses": problem_responses(414, 429, 500, *statuses),
        "openapi_extra": {"security": []},
    }


READY_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: Literal["ok"]


class PublicKey(BaseModel):
    """A JSON Web Key (RFC 7517): the public half only."""

    model_config = ConfigDict(extra="allow")  # the key type's own members (`x`, `n`, `e`, …)

    kty: str
    kid: str
    alg: str | None = None
    use: str | None = None


class KeySet(BaseModel):
    keys: list[PublicKey]


class Readiness(BaseModel):
    status: Literal["ready"]
    database: str
    schema_revision: str


@router.get("/healthz", **_public())
async def healthz() -> Health:
    """The process is up. Says nothing about the database."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, **_public(503))
async def readyz(request: Request) -> Any:
    """Ready to serve: the database answers and its schema is at this version's head."""
    db = request.app.state.db
    try:
        revision = await asyncio.wait_for(current_revision(db.engine), READY_TIMEOUT_SECONDS)
    except Exception:  # any failure to reach the database means "not ready"
        return problem_response(503, "database_unavailable", "The database does not answer.")
    head = head_revision()
    if revision != head:
        return problem_response(
            503,
            "schema_not_at_head",
            f"The database schema is at {revision}, this version needs {head}; run migrations.",
        )
    return Readiness(status="ready", database=db.dialect, schema_revision=revision)


@router.get("/.well-known/jwks.json", response_model=KeySet, **_public(404))
async def jwks(request: Request) -> JSONResponse:
    """The local-mode signing key (public part). Not served when an identity provider is set."""
    signer = request.app.state.local_signer
    if signer is None:
        return problem_response(
            404, "not_found", "This service uses an external identity provider (AUTH_JWKS_URL)."
        )
    return JSONResponse(signer.jwks, headers={"Cache-Control": "public, max-age=300"})
