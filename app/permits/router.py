"""HTTP endpoints of the permit workflow (SPEC §4)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.schemas import AuditEventOut
from app.audit.service import events_of_subject
from app.auth.dependencies import CurrentEmployee, WriteSession
from app.db import ReadSession
from app.errors import API_PROBLEMS, Forbidden, created_links, problem_responses
from app.org.models import Employee
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.permits import idempotency, listing, service
from app.permits.policy import describe
from app.permits.schemas import (
    ApproveBody,
    CancelBody,
    DenyBody,
    PermitCreate,
    PermitOut,
    RevokeBody,
)
from app.permits.vocabulary import Status
from app.timeutil import InstantIn

router = APIRouter(prefix="/api/v1", tags=["permits"], responses=API_PROBLEMS)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=idempotency.MAX_KEY_LENGTH,
        description="Replays the first response for 24 h.",
    ),
]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", max_length=64, description="The permit's ETag (version).")
]

_DECISION = problem_responses(400, 404, 409, 412, 413)


def _etag(version: int) -> str:
    return f'"{version}"'


def _if_match_version(value: str | None) -> int | None:
    """The version an If-Match names; `*` or absent: no condition. Unparsable: matches nothing."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    return int(text) if text.isdigit() else -1


def _permit_response(view: service.PermitView, status_code: int = 200) -> JSONResponse:
    body = PermitOut.model_validate(view.out()).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers={"ETag": _etag(view.permit.version)})


async def _idempotent(
    request: Request,
    session: WriteSession,
    caller: str,
    key: str | None,
    body: BaseModel | None,
    run: Callable[[], Awaitable[tuple[service.PermitView, int]]],
) -> JSONResponse:
    """Run `run` once per Idempotency-Key; replay its first response afterwards."""
    if key is None:
        view, status_code = await run()
        return _permit_response(view, status_code)
    idempotency.check_key(key)
    payload = body.model_dump(mode="json") if body is not None else None
    fingerprint = idempotency.request_fingerprint(request.method, request.url.path, payload)
    previous = await idempotency.previous_response(session, caller, key, fingerprint)
    if previous is not None:
        response = JSONResponse(previous.response, status_code=previous.status_code)
        response.headers["Idempotent-Replayed"] = "true"
        if "version" in previous.response:
            response.headers["ETag"] = _etag(int(previous.response["version"]))
        return response
    view, status_code = await run()
    response = _permit_response(view, status_code)
    await idempotency.remember(session, caller, key, fingerprint, status_code, _json(response))
    return response


def _json(response: JSONResponse) -> dict[str, Any]:
    return dict(json.loads(bytes(response.body)))


Text = TypeVar("Text", str, str | None)


async def _decide(
    transition: Callable[
        [AsyncSession, Employee, str, Text, int | None], Awaitable[service.PermitView]
    ],
    text: Text,
    *,
    permit_id: str,
    request: Request,
    session: AsyncSession,
    employee: Employee,
    body: BaseModel | None,
    if_match: str | None,
    idempotency_key: str | None,
) -> JSONResponse:
    """Run one state transition, honouring If-Match and Idempotency-Key."""

    async def run() -> tuple[service.PermitView, int]:
        version = _if_match_version(if_match)
        return await transition(session, employee, permit_id, text, version), 200

    return await _idempotent(request, session, employee.nip, idempotency_key, body, run)


@router.get("/policy", tags=["policy"])
async def read_policy(request: Request, _: CurrentEmployee) -> dict[str, Any]:
    """The SE 47/2025 rules a submission must meet, with their limits and citations."""
    return describe(service.limits_from(request.app.state.settings))


@router.post(
    "/permits",
    status_code=201,
    response_model=PermitOut,
    responses={
        **problem_responses(400, 409, 413),
        **created_links(
            "permit_id",
            "id",
            "read_permit",
            "approve_permit",
            "deny_permit",
            "cancel_permit",
            "revoke_permit",
            "permit_events",
        ),
    },
)
async def submit_permit(
    body: PermitCreate,
    request: Request,
    session: WriteSession,
    employee: CurrentEmployee,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Ask the unit head for permission to broadcast from a workspace (SE 47/2025, clause 4)."""
    limits = service.limits_from(request.app.state.settings)

    async def run() -> tuple[service.PermitView, int]:
        return await service.submit_permit(session, employee, body, limits), 201

    response = await _idempotent(request, session, employee.nip, idempotency_key, body, run)
    if response.status_code == 201:
        response.headers["Location"] = f"/api/v1/permits/{_json(response)['id']}"
    return response


@router.get("/permits")
async def list_permits(
    session: ReadSession,
    employee: CurrentEmployee,
    status: Status | None = None,
    workspace_code: Annotated[str | None, Query(max_length=32)] = None,
    unit_code: Annotated[str | None, Query(max_length=32)] = None,
    requester_nip: Annotated[str | None, Query(max_length=32)] = None,
    from_: Annotated[
        InstantIn | None, Query(alias="from", description="Windows ending after this.")
    ] = None,
    to: Annotated[InstantIn | None, Query(description="Windows starting before this.")] = None,
    awaiting: Annotated[
        Literal["me"] | None, Query(description="`me`: pending permits you may decide.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[PermitOut]:
    """Permits the caller may see, oldest first."""
    filters = listing.Filters(
        status=status,
        workspace_code=workspace_code,
        unit_code=unit_code,
        requester_nip=requester_nip,
        starts_before=to,
        ends_after=from_,
        awaiting_me=awaiting == "me",
    )
    views, next_cursor = await listing.list_visible(
        session, employee, filters, cursor=cursor, limit=limit
    )
    return Page[PermitOut](
        items=[PermitOut.model_validate(v.out()) for v in views], next_cursor=next_cursor
    )


@router.get("/permits/{permit_id}", response_model=PermitOut, responses=problem_responses(404))
async def read_permit(
    permit_id: str, session: ReadSession, employee: CurrentEmployee
) -> JSONResponse:
    """One permit, with its version as `ETag`."""
    return _permit_response(await service.read_permit(session, employee, permit_id))


@router.post("/permits/{permit_id}/approve", response_model=PermitOut, responses=_DECISION)
async def approve_permit(
    permit_id: str,
    request: Request,
    session: WriteSession,
    employee: CurrentEmployee,
    body: ApproveBody | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Approve a pending permit. Approvers only; never the requester."""
    return await _decide(
        service.approve,
        body.note if body else None,
        permit_id=permit_id,
        request=request,
        session=session,
        employee=employee,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


@router.post("/permits/{permit_id}/deny", response_model=PermitOut, responses=_DECISION)
async def deny_permit(
    permit_id: str,
    body: DenyBody,
    request: Request,
    session: WriteSession,
    employee: CurrentEmployee,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Deny a pending permit, with a reason. Approvers only."""
    return await _decide(
        service.deny,
        body.reason,
        permit_id=permit_id,
        request=request,
        session=session,
        employee=employee,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


@router.post("/permits/{permit_id}/cancel", response_model=PermitOut, responses=_DECISION)
async def cancel_permit(
    permit_id: str,
    request: Request,
    session: WriteSession,
    employee: CurrentEmployee,
    body: CancelBody | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Withdraw your own permit while pending, or while approved and not yet started."""
    return await _decide(
        service.cancel,
        body.reason if body else None,
        permit_id=permit_id,
        request=request,
        session=session,
        employee=employee,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


@router.post("/permits/{permit_id}/revoke", response_model=PermitOut, responses=_DECISION)
async def revoke_permit(
    permit_id: str,
    body: RevokeBody,
    request: Request,
    session: WriteSession,
    employee: CurrentEmployee,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Withdraw an approval before the window ends. Approvers only; effective at once."""
    return await _decide(
        service.revoke,
        body.reason,
        permit_id=permit_id,
        request=request,
        session=session,
        employee=employee,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


@router.get("/permits/{permit_id}/events", responses=problem_responses(404))
async def permit_events(
    permit_id: str, session: ReadSession, employee: CurrentEmployee
) -> list[AuditEventOut]:
    """This permit's audit events, oldest first. Auditors and admins."""
    await service.read_permit(session, employee, permit_id)
    if not (employee.is_admin or employee.is_auditor):
        raise Forbidden("The audit trail is for auditors and admins.", code="auditor_required")
    events = await events_of_subject(session, f"permit:{permit_id}")
    return [AuditEventOut.from_row(e) for e in events]
