"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.errors import problem_response, public_operation
from app.migrate import current_revision, head_revision

router = APIRouter(tags=["operations"])


READY_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    database: str
    schema_revision: str


@router.get("/healthz", **public_operation())
async def healthz() -> Health:
    """The process is up. Says nothing about the database."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, **public_operation(503))
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
