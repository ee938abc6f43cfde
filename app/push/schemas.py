"""Request and response bodies of the webhook and event-stream endpoints."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StrictBool, StringConstraints

from app.permits.vocabulary import PermitEvent
from app.schemas import Absent, InputModel, OutputModel, PatchModel, Text
from app.timeutil import Instant

EventChoice = PermitEvent | Literal["*"]
Events = Annotated[
    list[EventChoice],
    Field(
        min_length=1,
        max_length=9,
        description='The permit events to send, or `["*"]` for every one.',
    ),
]
Url = Annotated[
    str,
    StringConstraints(min_length=8, max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$"),
    Field(
        description="Where messages are posted: `https://` (http only with "
        "WEBHOOK_ALLOW_HTTP), not a private, loopback or link-local address."
    ),
]
DeliveryStatus = Literal["pending", "succeeded", "failed"]


class WebhookCreate(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "url": "https://gerbang.anambaskab.go.id/hooks/izin-siaran",
        "events": ["permit.approved", "permit.revoked", "permit.cancelled"],
        "description": "Gerbang siaran Diskominfotik: putus siaran yang izinnya dicabut",
    }

    url: Url
    events: Events
    description: Text | None = None


class WebhookUpdate(PatchModel):
    """Only the fields present change; `null` clears `description`."""

    example: ClassVar[dict[str, Any] | None] = {"events": ["*"]}

    url: Url | Absent = None
    events: Events | Absent = None
    description: Text | None = None
    active: StrictBool | Absent = None


class WebhookOut(OutputModel):
    id: str
    url: str
    events: list[EventChoice]
    description: str | None
    active: bool
    created_at: Instant
    updated_at: Instant


class SecretOut(OutputModel):
    secret: str = Field(
        description="`whsec_` + base64 of 32 random bytes: the signing key is the base64 "
        "part decoded. Shown only in this response."
    )


class WebhookCreated(WebhookOut, SecretOut):
    pass


class RotatedSecret(SecretOut):
    previous_secret_valid_until: Instant = Field(
        description="Until then deliveries carry a signature with the previous secret too."
    )


class DeliveryOut(OutputModel):
    id: str
    webhook_id: str
    message_id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    event_type: str
    audit_seq: int
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: Instant | None
    created_at: Instant


class TicketOut(OutputModel):
    ticket: str = Field(description="For `GET /api/v1/events/stream?ticket=…`, once.")
    expires_at: Instant
