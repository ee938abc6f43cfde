"""Webhooks (admins) and the event stream (docs/RULES.md#push)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event
from sqlalchemy import select

from app.auth.dependencies import (
    Admin,
    DeclaresApiKey,
    DeclaresBearer,
    EmployeeOrServiceClient,
    WriteSession,
    admitted,
    verified_caller,
)
from app.auth.principal import Principal
from app.config import Settings
from app.db import Database, ReadSession, transaction
from app.errors import API_PROBLEMS, Forbidden, InvalidInput, created_links, field_error
from app.errors import problem_responses as problems
from app.metrics import Metrics
from app.outbox.models import Webhook, WebhookDelivery
from app.pagination import Page, PageParams
from app.push import tickets, webhooks
from app.push.addresses import AddressRules, check_new_url
from app.push.hub import Closed, Hub, Reader
from app.push.schemas import (
    DeliveryOut,
    RotatedSecret,
    TicketOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)
from app.records import page_of
from app.secretbox import SecretBox

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=API_PROBLEMS)
events_router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=API_PROBLEMS)


# --- webhooks (admins) -------------------------------------------------------------------


async def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


async def _rules(request: Request) -> AddressRules:
    rules: AddressRules = request.app.state.address_rules
    return rules


async def _checked_create(
    _: Admin, body: WebhookCreate, rules: Annotated[AddressRules, Depends(_rules)]
) -> WebhookCreate:
    """The body, its URL checked (a DNS lookup) before the write transaction opens."""
    await check_new_url(body.url, rules)
    return body


async def _checked_update(
    _: Admin, body: WebhookUpdate, rules: Annotated[AddressRules, Depends(_rules)]
) -> WebhookUpdate:
    if body.url is not None:
        await check_new_url(body.url, rules)
    return body


@router.post(
    "",
    status_code=201,
    responses={
        **problems(400, 413),
        **created_links("webhook_id", "id", "read_webhook", "update_webhook"),
    },
)
async def create_webhook(
    body: Annotated[WebhookCreate, Depends(_checked_create)],
    session: WriteSession,
    admin: Admin,
    response: Response,
    box: Annotated[SecretBox, Depends(_box)],
) -> WebhookCreated:
    """Register a receiver of permit events (Standard Webhooks). The signing `secret` is in
    this response only; store it now."""
    hook, secret = await webhooks.create_webhook(session, admin.nip, body, box)
    response.headers["Location"] = f"/api/v1/webhooks/{hook.id}"
    return WebhookCreated(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


@router.get("")
async def list_webhooks(session: ReadSession, _: Admin, page: PageParams) -> Page[WebhookOut]:
    """Every webhook, inactive ones included, oldest first. Secrets are never shown."""
    return await page_of(session, select(Webhook), Webhook.id, WebhookOut, page)


@router.get("/{webhook_id}", responses=problems(404))
async def read_webhook(webhook_id: str, session: ReadSession, _: Admin) -> WebhookOut:
    return WebhookOut.model_validate(await webhooks.get_webhook(session, webhook_id))


@router.patch("/{webhook_id}", responses=problems(400, 404, 413))
async def update_webhook(
    webhook_id: str,
    body: Annotated[WebhookUpdate, Depends(_checked_update)],
    session: WriteSession,
    admin: Admin,
) -> WebhookOut:
    """Change `url`, `events`, `description` or `active`. Deactivating ends the webhook's
    pending deliveries as `failed` (`webhook_inactive`)."""
    hook = await webhooks.update_webhook(session, admin.nip, webhook_id, body)
    return WebhookOut.model_validate(hook)


@router.delete("/{webhook_id}", responses=problems(404, 409))
async def deactivate_webhook(webhook_id: str, session: WriteSession, admin: Admin) -> WebhookOut:
    """Deactivate: nothing more is sent; pending deliveries end as `failed`
    (`webhook_inactive`). The record stays for the audit trail."""
    hook = await webhooks.deactivate_webhook(session, admin.nip, webhook_id)
    return WebhookOut.model_validate(hook)


@router.post("/{webhook_id}/rotate-secret", responses=problems(404))
async def rotate_webhook_secret(
    webhook_id: str,
    session: WriteSession,
    admin: Admin,
    box: Annotated[SecretBox, Depends(_box)],
) -> RotatedSecret:
    """A new secret, shown only here. For 24 hours each delivery is signed with both the new
    and the previous one, so the receiver can switch without losing a message."""
    hook, secret = await webhooks.rotate_secret(session, admin.nip, webhook_id, box)
    assert hook.previous_secret_until is not None
    return RotatedSecret(secret=secret, previous_secret_valid_until=hook.previous_secret_until)


@router.get("/{webhook_id}/deliveries", responses=problems(404))
async def list_deliveries(
    webhook_id: str, session: ReadSession, _: Admin, page: PageParams
) -> Page[DeliveryOut]:
    """The webhook's deliveries, newest first."""
    hook = await webhooks.get_webhook(session, webhook_id)
    statement = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    return await page_of(
        session, statement, WebhookDelivery.id, DeliveryOut, page, newest_first=True
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    responses=problems(404, 409),
)
async def redeliver(
    webhook_id: str, delivery_id: str, session: WriteSession, admin: Admin
) -> DeliveryOut:
    """Send the same message again (the same `webhook-id` and body), as a new delivery."""
    delivery = await webhooks.redeliver(session, admin.nip, webhook_id, delivery_id)
    return DeliveryOut.model_validate(delivery)


# --- the event stream -----------------------------------------------------------------------


def _may_stream(principal: Principal) -> Principal:
    if principal.employee is None and not principal.has_scope("events"):
        raise Forbidden(
            "This API key does not grant the event stream (scope `events`).",
            code="insufficient_scope",
        )
    return principal


async def _stream_caller(
    request: Request,
    _bearer: DeclaresBearer,
    _key: DeclaresApiKey,
    ticket: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="A ticket from `POST /api/v1/events/tickets`, instead of a credential "
            "(for browsers' EventSource).",
        ),
    ] = None,
) -> Principal:
    """The stream's caller, by ticket or credential, read in a transaction of its own that
    ends before the stream begins (a stream holds no database connection)."""
    db: Database = request.app.state.db
    if ticket is not None:
        async with transaction(db.write) as session:
            principal = await admitted(request, tickets.redeem(session, ticket))
    else:
        async with transaction(db.read) as session:
            principal = await verified_caller(request, session)
    return _may_stream(principal)


@events_router.post("/tickets", responses=problems(400, 413))
async def create_event_ticket(caller: EmployeeOrServiceClient, session: WriteSession) -> TicketOut:
    """A single-use ticket for `GET /api/v1/events/stream?ticket=…`, valid 60 s on every
    instance: browsers' EventSource cannot send a header, and tokens never go in URLs."""
    ticket, expires_at = await tickets.issue(session, _may_stream(caller))
    return TicketOut(ticket=ticket, expires_at=expires_at)


def _resume_from(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is None:
        return after
    text = last_event_id.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidInput(
            "Last-Event-ID must be the id (an audit seq) of an event of this stream.",
            errors=[field_error(["header", "Last-Event-ID"], "not an event id", "invalid")],
        )
    return int(text)


class EventStreamResponse(StreamingResponse):
    """`text/event-stream`, not buffered by proxies. (Not FastAPI's own `EventSourceResponse`:
    its keep-alive task fails on a client's ordinary disconnect; Starlette's streaming
    response ends the stream cleanly when the client leaves.)"""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


_SSE_ITEM = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The audit event's `seq`."},
        "event": {"type": "string", "description": "Its `action`; `close` ends the stream."},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "The audit event as `GET /api/v1/audit/events` serves it; for "
            "`close`, `{code, detail}`.",
        },
    },
}


def _sse(event: str, data: str, id: int | None = None) -> bytes:
    return format_sse_event(data_str=data, event=event, id=None if id is None else str(id))


@events_router.get(
    "/stream",
    status_code=200,
    response_class=EventStreamResponse,
    response_model=None,
    responses={
        200: {
            "description": "Server-Sent Events: `id` (seq), `event` (action), `data` (the "
            "audit event); `: ping` comments while idle; a last `close` event with the reason "
            "when the service ends the stream.",
            "content": {"text/event-stream": {"itemSchema": _SSE_ITEM}},
        }
    },
)
async def event_stream(
    request: Request,
    caller: Annotated[Principal, Depends(_stream_caller)],
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=32,
            description="Resume after this event (what EventSource sends on reconnecting).",
        ),
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Resume after this audit `seq` (no header needed)."),
    ] = None,
) -> EventStreamResponse:
    """Audit events as they are committed, as Server-Sent Events. Admins, auditors and API
    keys with scope `events` get every event; other employees the `permit.*` events of
    permits they may read. Resume with `Last-Event-ID` (or `?after=`) with no gap and no
    duplicate; without either the stream starts at the next new event."""
    start = _resume_from(last_event_id, after)
    settings: Settings = request.app.state.settings
    hub: Hub = request.app.state.hub
    metrics: Metrics = request.app.state.metrics
    employee = caller.employee
    reader = (
        None if employee is None else Reader(employee.nip, employee.is_admin, employee.is_auditor)
    )
    await hub.catch_up()  # then join at once: nothing is handed out in between
    subscriber = hub.subscribe(caller.actor, reader, settings.event_stream_queue_size)
    metrics.subscribers.inc()

    async def stream() -> AsyncIterator[bytes]:
        try:
            last = subscriber.position if start is None else start
            while last < subscriber.position:
                seen, last = await hub.history(subscriber, last)
                for event in seen:
                    yield _sse(event.action, event.json, event.seq)
                    metrics.events_sent.inc()
            while True:
                live = await subscriber.next(settings.event_stream_ping_seconds)
                if live is None:
                    yield KEEPALIVE_COMMENT
                    continue
                if live.seq <= last:
                    continue
                last = live.seq
                yield _sse(live.action, live.json, live.seq)
                metrics.events_sent.inc()
        except Closed as closed:
            yield _sse("close", closed.body())
        finally:
            hub.unsubscribe(subscriber)
            metrics.subscribers.dec()

    return EventStreamResponse(stream())
