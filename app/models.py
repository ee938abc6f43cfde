"""Every table, imported in one place for Alembic and the tests."""

from app.audit.models import AuditEvent
from app.auth.models import ApiKey
from app.credentials.models import CredentialKey
from app.db import Base
from app.org.models import Delegation, Employee, Unit, Workspace
from app.outbox.models import Webhook, WebhookDelivery
from app.permits.models import IdempotencyRecord, Permit, StatusList
from app.push.models import EventTicket

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "CredentialKey",
    "Delegation",
    "Employee",
    "EventTicket",
    "IdempotencyRecord",
    "Permit",
    "StatusList",
    "Unit",
    "Webhook",
    "WebhookDelivery",
    "Workspace",
]
