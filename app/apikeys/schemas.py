from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from app.schemas import InputModel, Name, OutputModel
from app.timeutil import Instant

Scope = Literal["check", "events"]


class ApiKeyCreate(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "name": "Gerbang siaran Diskominfotik",
        "scopes": ["check"],
    }

    name: Name
    scopes: list[Scope] = Field(
        default=["check"],
        max_length=2,
        description="`check` (the check endpoints), `events` (the event stream); none: a key "
        "that grants nothing.",
    )


class ApiKeyOut(OutputModel):
    id: str
    name: str
    scopes: list[Scope]
    created_at: Instant
    created_by: str
    revoked_at: Instant | None
    revoked_by: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret, for the `X-API-Key` header. Shown only here.")
