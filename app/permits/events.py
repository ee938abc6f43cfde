"""What happens to a permit, recorded (docs/RULES.md#push): its audit event and, in the same
transaction, the webhook messages that report it (the outbox). Every permit event —
submission, each transition of the lifecycle, a reminder, an escalation — is recorded here,
so a new one is one call of `record` and one name in `PERMIT_EVENTS`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.service import append_event
from app.outbox import writer as outbox
from app.permits.approvers import Approver
from app.permits.models import Permit
from app.permits.presentation import present
from app.permits.vocabulary import PERMIT_EVENTS


async def record(
    session: AsyncSession,
    permit: Permit,
    *,
    actor: str,
    action: str,
    data: dict[str, Any],
    status: str,
    approvers: Sequence[Approver],
) -> AuditEvent:
    """The permit's change (pending in `session`), its audit event and its webhook
    messages, with the permit as a GET would show it then (`status` and `approvers` at
    the event's instant). Called last in the change's transaction: the audit append holds
    the chain's lock until the commit."""
    if action not in PERMIT_EVENTS:
        raise ValueError(f"{action} is not a permit event")
    event = await append_event(
        session,
        actor=actor,
        action=action,
        subject=f"permit:{permit.id}",
        data=data,
        unit_code=permit.unit_code,
    )
    await outbox.enqueue(session, event, present(permit, status, approvers).model_dump(mode="json"))
    return event
