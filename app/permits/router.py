"""HTTP endpoints of the permit workflow: each parses, calls the service, returns the permit.

`Idempotency-Key` (docs/RULES.md#idempotency) and `If-Match` (docs/RULES.md#if-match) are
declared as dependencies (`Idempotent`; `DecisionDep` holds both for the decisions), and
`limit` and `cursor` as `PageParams` (docs/RULES.md#pagination).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.audit.schemas import AuditEventOut
from app.audit.service import events_of_subject
from app.auth.dependencies import CurrentEmployee, WriteSession
from app.db import ReadSession
from app.errors import API_PROBLEMS, Forbidden, created_links, problem_responses
from app.http import declare, resource_response
from app.org.roles import sees_everything
from app.pagination import Page, PageParams
from app.permits import listing, service
from app.permits.dependencies import DecisionDep, ListFilters
from app.permits.idempotency import Idempotent
from app.permits.policy import describe
from app.permits.schemas import (
    ApproveBody,
    CancelBody,
    DenyBody,
    PermitCreate,
    PermitOut,
    PolicyOut,
    RevokeBody,
)
from app.schemas import Absent

router = APIRouter(prefix="/api/v1", tags=["permits"], responses=API_PROBLEMS)

_DECISION = problem_responses(400, 404, 409, 412, 413)


@router.get("/policy", tags=["policy"], response_model=PolicyOut, response_model_exclude_unset=True)
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
    once: Idempotent,
) -> JSONResponse:
    """Ask the unit head for permission to broadcast from a workspace (SE 47/2025, clause 4)."""
    limits = service.limits_from(request.app.state.settings)
    return await once(body, lambda: service.submit_permit(session, employee, body, limits), 201)


@router.get("/permits")
async def list_permits(
    session: ReadSession,
    employee: CurrentEmployee,
    filters: ListFilters,
    page: PageParams,
) -> Page[PermitOut]:
    """Permits the caller may see, oldest first."""
    items, next_cursor = await listing.list_visible(session, employee, filters, page)
    return Page[PermitOut](items=items, next_cursor=next_cursor)


@router.get("/permits/{permit_id}", response_model=PermitOut, responses=problem_responses(404))
async def read_permit(
    permit_id: str, request: Request, session: ReadSession, employee: CurrentEmployee
) -> JSONResponse:
    """One permit, with its version as `ETag`."""
    permit = await service.read_permit(session, employee, permit_id)
    return resource_response(request.url.path, permit.model_dump(mode="json"))


# --- the four decisions: one route each, made from this table ---------------------------
# (action, its body, whether the body is required, the operation's description); what each
# action may do, and to which permits, is the lifecycle's row (docs/RULES.md#transitions).
_DECISIONS: tuple[tuple[str, type[BaseModel], bool, str], ...] = (
    (
        "approve",
        ApproveBody,
        False,
        "Approve a pending permit. Approvers only; never the requester.",
    ),
    ("deny", DenyBody, True, "Deny a pending permit, with a reason. Approvers only."),
    (
        "cancel",
        CancelBody,
        False,
        "Withdraw your own permit while pending, or while approved and not yet started.",
    ),
    (
        "revoke",
        RevokeBody,
        True,
        "Withdraw an approval before the window ends. Approvers only; effective at once.",
    ),
)


def _decision_endpoint(action: str) -> Callable[..., Awaitable[JSONResponse]]:
    async def endpoint(decide: DecisionDep, body: BaseModel | None = None) -> JSONResponse:
        return await decide(action, body)

    return endpoint


for _action, _body, _required, _description in _DECISIONS:
    router.add_api_route(
        f"/permits/{{permit_id}}/{_action}",
        # An optional body is declared as the body alone (not `anyOf [body, null]`), and
        # sending none means the same as sending `{}`.
        declare(_decision_endpoint(_action), body=_body if _required else _body | Absent),
        methods=["POST"],
        name=f"{_action}_permit",
        description=_description,
        response_model=PermitOut,
        responses=_DECISION,
    )


@router.get("/permits/{permit_id}/events", responses=problem_responses(404))
async def permit_events(
    permit_id: str, session: ReadSession, employee: CurrentEmployee
) -> list[AuditEventOut]:
    """This permit's audit events, oldest first. Auditors and admins."""
    await service.read_permit(session, employee, permit_id)
    if not sees_everything(employee):
        raise Forbidden("The audit trail is for auditors and admins.", code="auditor_required")
    events = await events_of_subject(session, f"permit:{permit_id}")
    return [AuditEventOut.from_row(e) for e in events]
