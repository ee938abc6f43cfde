"""The outbox (docs/RULES.md#outbox): a webhook message is written in the transaction of
the change it reports, one delivery row per webhook that wants it. A change that commits
is delivered (by `app.push.sender`); one that rolls back takes its rows with it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.ids import new_id
from app.outbox.models import Webhook, WebhookDelivery
from app.timeutil import format_instant

ALL_EVENTS = "*"


def message_id() -> str:
    """A Standard Webhooks message id: one per message, the same on every attempt."""
    return f"msg_{new_id()}"


def wants(events: list[str], event_type: str) -> bool:
    """Whether a webhook subscribed to `events` gets messages of `event_type`."""
    return ALL_EVENTS in events or event_type in events


def payload(event: AuditEvent, permit: dict[str, Any]) -> str:
    """The message body (docs/RULES.md#webhook-messages): the event's type and instant, its
    audit `seq`, who acted, and the permit as a GET returns it; JSON, sent byte for byte
    the same on every attempt."""
    body = {
        "type": event.action,
        "timestamp": format_instant(event.at),
        "data": {"audit_seq": event.seq, "actor": event.actor, "permit": permit},
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


async def enqueue(session: AsyncSession, event: AuditEvent, permit: dict[str, Any]) -> int:
    """Deliveries of `event` to every active webhook that wants it, in the caller's
    transaction; how many."""
    hooks = (await session.execute(select(Webhook.id, Webhook.events).where(Webhook.active))).all()
    targets = [hook_id for hook_id, events in hooks if wants(events, event.action)]
    if not targets:
        return 0
    body, message = payload(event, permit), message_id()
    session.add_all(
        WebhookDelivery(
            id=new_id(),
            webhook_id=hook_id,
            message_id=message,
            event_type=event.action,
            audit_seq=event.seq,
            payload=body,
            status="pending",
            attempts=0,
            next_attempt_at=event.at,
            created_at=event.at,
        )
        for hook_id in targets
    )
    await session.flush()
    return len(targets)
