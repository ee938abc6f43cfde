"""Webhooks, as admins manage them (docs/RULES.md#webhooks): created with a secret shown
once and kept sealed (`app.secretbox`), changed, deactivated, their secret rotated with a
24-hour overlap, a delivery sent again. Every change is audited (`webhook.*`), never with
a secret in it.
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import append_event
from app.errors import Conflict, NotFound
from app.ids import could_be_id, new_id
from app.outbox.models import Webhook, WebhookDelivery
from app.push.schemas import WebhookCreate, WebhookUpdate
from app.records import apply_changes, get_or_404
from app.secretbox import SecretBox
from app.timeutil import format_instant, utcnow

SECRET_PREFIX = "whsec_"  # noqa: S105 (the standard's prefix, not a secret)
SECRET_BYTES = 32
ROTATION_OVERLAP = timedelta(hours=24)
INACTIVE = "webhook_inactive"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: its base64 part, decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def snapshot(hook: Webhook) -> dict[str, Any]:
    """What the audit trail records of a webhook (never its secrets)."""
    return {
        "url": hook.url,
        "events": list(hook.events),
        "description": hook.description,
        "active": hook.active,
    }


async def _record(
    session: AsyncSession, actor: str, hook: Webhook, verb: str, data: dict[str, Any]
) -> None:
    await append_event(session, actor, f"webhook.{verb}", f"webhook:{hook.id}", data)


async def create_webhook(
    session: AsyncSession, actor: str, body: WebhookCreate, box: SecretBox
) -> tuple[Webhook, str]:
    """The new webhook and its secret (sealed in the database, shown only now). `body.url`
    must have been checked (`app.push.addresses.check_new_url`)."""
    secret, now = new_secret(), utcnow()
    hook = Webhook(
        id=new_id(),
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        description=body.description,
        active=True,
        secret_sealed=box.seal(secret),
        created_at=now,
        created_by=actor,
        updated_at=now,
    )
    session.add(hook)
    await session.flush()
    await _record(session, actor, hook, "created", snapshot(hook))
    return hook, secret


async def get_webhook(session: AsyncSession, hook_id: str, *, for_update: bool = False) -> Webhook:
    return await get_or_404(
        session, Webhook, hook_id, "Webhook", for_update=for_update, could_be=could_be_id
    )


async def update_webhook(
    session: AsyncSession, actor: str, hook_id: str, body: WebhookUpdate
) -> Webhook:
    """Set what the PATCH names (a new `url` checked before); deactivating ends its pending
    deliveries as deactivation does."""
    hook = await get_webhook(session, hook_id, for_update=True)
    fields = body.fields()
    if "events" in fields:
        fields["events"] = list(dict.fromkeys(fields["events"]))
    changes = apply_changes(hook, fields, snapshot)
    if changes:
        if changes.get("active", {}).get("to") is False:
            await _end_pending(session, hook.id)
        await _record(session, actor, hook, "updated", {"changes": changes})
    return hook


async def deactivate_webhook(session: AsyncSession, actor: str, hook_id: str) -> Webhook:
    """`DELETE`: the webhook gets nothing more; its pending deliveries end `failed`."""
    hook = await get_webhook(session, hook_id, for_update=True)
    if not hook.active:
        raise Conflict(f"Webhook {hook_id} is already inactive.", code="already_inactive")
    hook.active = False
    hook.updated_at = utcnow()
    await _end_pending(session, hook.id)
    await _record(session, actor, hook, "deactivated", {"active": False})
    return hook


async def _end_pending(session: AsyncSession, hook_id: str) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook_id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error=INACTIVE, next_attempt_at=None, lease=None)
    )


async def rotate_secret(
    session: AsyncSession, actor: str, hook_id: str, box: SecretBox
) -> tuple[Webhook, str]:
    """A new secret; the current one keeps signing beside it for 24 hours."""
    hook = await get_webhook(session, hook_id, for_update=True)
    secret, now = new_secret(), utcnow()
    hook.previous_secret_sealed = hook.secret_sealed
    hook.previous_secret_until = now + ROTATION_OVERLAP
    hook.secret_sealed = box.seal(secret)
    hook.updated_at = now
    until = format_instant(hook.previous_secret_until)
    await _record(session, actor, hook, "secret_rotated", {"previous_secret_valid_until": until})
    return hook, secret


async def redeliver(
    session: AsyncSession, actor: str, hook_id: str, delivery_id: str
) -> WebhookDelivery:
    """The same message (same `webhook-id` and body) queued again as a new delivery."""
    hook = await get_webhook(session, hook_id)
    old = await session.get(WebhookDelivery, delivery_id) if could_be_id(delivery_id) else None
    if old is None or old.webhook_id != hook.id:
        raise NotFound(f"Delivery {delivery_id} of webhook {hook_id} does not exist.")
    if not hook.active:
        raise Conflict(f"Webhook {hook_id} is inactive; activate it first.", code=INACTIVE)
    now = utcnow()
    again = WebhookDelivery(
        id=new_id(),
        webhook_id=hook.id,
        message_id=old.message_id,
        event_type=old.event_type,
        audit_seq=old.audit_seq,
        payload=old.payload,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(again)
    await session.flush()
    await _record(
        session,
        actor,
        hook,
        "redelivered",
        {"delivery_id": old.id, "new_delivery_id": again.id, "message_id": old.message_id},
    )
    return again


async def check_secrets_key(session: AsyncSession, box: SecretBox) -> None:
    """Say at start-up, not at the first delivery, that this instance's SECRETS_KEY cannot
    open the secrets stored with another key (docs/SECURITY.md#secrets-key)."""
    sealed = await session.scalar(select(Webhook.secret_sealed).where(Webhook.active).limit(1))
    if sealed is not None:
        box.open(sealed)
