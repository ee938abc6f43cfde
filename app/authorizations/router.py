"""`GET /api/v1/authorizations/check`, for gateways, bots and guards: docs/RULES.md#check-window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, StringConstraints, WithJsonSchema

from app.auth.dependencies import EmployeeOrServiceClient
from app.authorizations import service
from app.authorizations.reader import CheckReader, Pair
from app.authorizations.rules import Reason
from app.authorizations.service import Caller
from app.errors import API_PROBLEMS, Forbidden, InvalidInput, field_error
from app.permits.vocabulary import Platform
from app.schemas import NIP_PATTERN, NO_NUL
from app.timeutil import InstantIn, InstantText, utcnow

router = APIRouter(prefix="/api/v1/authorizations", tags=["authorizations"])


class CheckedPermit(BaseModel):
    id: str
    requester_nip: str
    workspace_code: str
    platform: Platform
    channel: str
    starts_at: InstantText
    ends_at: InstantText


class CheckResult(BaseModel):
    authorized: bool
    reason: Reason
    checked_at: InstantText
    permit: CheckedPermit | None


# The query's parameters as the document declares them; the route checks them itself
# below (`invalid_nip`, `invalid_check_query`), the NUL rule is the outer layer's.
_Nip = Annotated[
    str,
    StringConstraints(max_length=32),
    WithJsonSchema({"type": "string", "maxLength": 32, "pattern": NIP_PATTERN}),
]
_WorkspaceCode = Annotated[
    str,
    StringConstraints(max_length=32),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 32, "pattern": NO_NUL}),
]
_Channel = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL}),
]


@router.get(
    "/check",
    response_model=CheckResult,
    responses=API_PROBLEMS,
)
async def check(
    request: Request,
    principal: EmployeeOrServiceClient,
    nip: Annotated[_Nip | None, Query()] = None,
    workspace_code: Annotated[_WorkspaceCode | None, Query()] = None,
    platform: Annotated[Platform | None, Query()] = None,
    channel: Annotated[_Channel | None, Query()] = None,
    at: Annotated[InstantIn | None, Query(description="Default: now.")] = None,
) -> JSONResponse:
    """Is this stream authorised at `at`? Give `nip` + `workspace_code`, or `platform` + `channel`.

    Always 200 for a well-formed query, with `Cache-Control: no-store`; never stale after a
    revocation. `at` picks the permit's window, the status is the permit's status now. A
    NIP that is not one, an unknown platform, a naive `at`, or not exactly one pair is a 422.
    An employee who is no admin or auditor sees `permit` only for a permit they may read;
    otherwise only `approved` or `no_permit`.
    """
    if principal.api_key is not None and not principal.has_scope("check"):
        raise Forbidden("This API key lacks the `check` scope.", code="insufficient_scope")
    by_employee = nip is not None or workspace_code is not None
    by_channel = platform is not None or channel is not None
    if (
        by_employee == by_channel
        or (by_employee and not (nip and workspace_code))
        or (by_channel and not (platform and channel))
    ):
        raise InvalidInput(
            "Give either `nip` and `workspace_code`, or `platform` and `channel`.",
            code="invalid_check_query",
            errors=[
                field_error(["query"], "one complete pair of parameters", "invalid_check_query")
            ],
        )
    if nip is not None and (problem := service.nip_error(nip)) is not None:
        # docs/RULES.md#check-query: the NIP rule of `app.nip`.
        raise InvalidInput(
            f"`nip` is not a NIP: {problem}.",
            code="invalid_nip",
            errors=[field_error(["query", "nip"], problem, "invalid_nip")],
        )
    checked_at = utcnow()
    reader: CheckReader = request.app.state.check_reader
    pair = Pair.of(nip, workspace_code, platform, channel)
    at = at or checked_at
    employee = principal.employee
    caller = (
        None if employee is None else Caller(employee.nip, employee.is_admin, employee.is_auditor)
    )
    reading = await reader.read(pair, at, checked_at, caller=caller.nip if caller else None)
    verdict = await service.answer(reader, pair.form, reading, at, checked_at, caller)
    body = service.body(verdict, checked_at, request.app.state.metrics)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
