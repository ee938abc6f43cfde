"""Every table, imported in one place for Alembic and the tests."""

from app.audit.models import AuditEvent
from app.auth.models import ApiKey
from app.db import Base
from app.org.models import Delegation, Employee, Unit, Workspace
from app.outbox.models import Webhook, WebhookDelivery
from app.permits.models import IdempotencyRecord, Permit
from app.push.models import EventTicket

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Delegation",
    "Employee",
    "EventTicket",
    "IdempotencyRecord",
    "Permit",
    "Unit",
    "Webhook",
    "WebhookDelivery",
    "Workspace",
]
