"""The auditor API: read, export and verify the chain (docs/RULES.md#audit). Auditors and admins."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.audit import queries
from app.audit.export import neutralised
from app.audit.models import AuditEvent
from app.audit.schemas import AuditEventOut
from app.audit.verify import verify_stream
from app.auth.dependencies import AuditorOrAdmin
from app.db import Database, ReadSession
from app.errors import API_PROBLEMS, InvalidInput
from app.pagination import Page, PageParams, decode_cursor, encode_cursor

router = APIRouter(
    prefix="/api/v1/audit",
    tags=["audit"],
    responses=API_PROBLEMS,
)

CSV_COLUMNS = ("seq", "at", "actor", "action", "subject", "data", "prev_hash", "hash")


async def _filters(filters: Annotated[queries.EventFilters, Query()]) -> queries.EventFilters:
    return filters


Filters = Annotated[queries.EventFilters, Depends(_filters)]


class ChainStatus(BaseModel):
    valid: bool
    count: int
    head: str | None = None
    seq: int | None = None
    reason: str | None = None


def _after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    value = decode_cursor(cursor)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput("The cursor is not one this service issued.", code="invalid_cursor")
    return value


@router.get("/events")
async def list_events(
    session: ReadSession, _: AuditorOrAdmin, filters: Filters, page: PageParams
) -> Page[AuditEventOut]:
    """Audit events, oldest first (by `seq`)."""
    statement = queries.filtered(filters).where(AuditEvent.seq > _after(page.cursor))
    statement = statement.order_by(AuditEvent.seq).limit(page.limit + 1)
    rows = (await session.scalars(statement)).all()
    items = [AuditEventOut.from_row(row) for row in rows[: page.limit]]
    next_cursor = encode_cursor(items[-1].seq) if len(rows) > page.limit else None
    return Page[AuditEventOut](items=items, next_cursor=next_cursor)


@router.get(
    "/events.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "The events as CSV: a header row, then one row an event.",
        }
    },
)
async def export_events(request: Request, _: AuditorOrAdmin, filters: Filters) -> StreamingResponse:
    """The same events as CSV, streamed (memory stays flat however many there are).

    `data` is the event's JSON object; the export ends at the newest event when it began.
    """
    db: Database = request.app.state.db
    up_to = await queries.last_seq(db)

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        async for batch in queries.walk(db, queries.filtered(filters), up_to=up_to):
            for event in batch:
                event["data"] = json.dumps(
                    event["data"], ensure_ascii=False, sort_keys=True, separators=(",", ":")
                )
                writer.writerow([neutralised(event[c]) for c in CSV_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-events.csv"'},
    )


@router.get("/verify", response_model_exclude_none=True)
async def verify_chain(request: Request, _: AuditorOrAdmin) -> ChainStatus:
    """Recompute the whole chain: `valid`, the count and head hash, or the first bad `seq`."""
    db: Database = request.app.state.db
    report = await verify_stream(queries.walk(db, queries.filtered(queries.EventFilters())))
    return ChainStatus(**report.as_json())
