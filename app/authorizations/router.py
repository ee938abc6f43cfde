"""`GET /api/v1/authorizations/check` and its batch form, for gateways, bots and guards:
docs/RULES.md#check-window, #check-batch."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from app.auth.dependencies import EmployeeOrServiceClient
from app.auth.principal import Principal
from app.authorizations import service
from app.authorizations.reader import CheckReader, Pair
from app.authorizations.rules import Reason
from app.authorizations.service import Caller
from app.errors import API_PROBLEMS, Forbidden, InvalidInput, field_error, problem_responses
from app.permits.vocabulary import Platform
from app.schemas import NIP_PATTERN, NO_NUL, InputModel
from app.timeutil import InstantIn, InstantText, utcnow

router = APIRouter(prefix="/api/v1/authorizations", tags=["authorizations"])

BATCH_MOST = 100
"""Queries a batch check holds at most (SPEC §10)."""


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


def _require_check_scope(principal: Principal) -> None:
    if principal.api_key is not None and not principal.has_scope("check"):
        raise Forbidden("This API key lacks the `check` scope.", code="insufficient_scope")


def _pair(
    nip: str | None,
    workspace_code: str | None,
    platform: str | None,
    channel: str | None,
    loc: list[str | int],
) -> Pair:
    """The pair a query asks about (docs/RULES.md#check-query), or a 422 whose errors
    name `loc`: not exactly one complete pair, or a NIP that is not one."""
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
            errors=[field_error(loc, "one complete pair of parameters", "invalid_check_query")],
        )
    if nip is not None and (problem := service.nip_error(nip)) is not None:
        # docs/RULES.md#check-query: the NIP rule of `app.nip`.
        raise InvalidInput(
            f"`nip` is not a NIP: {problem}.",
            code="invalid_nip",
            errors=[field_error([*loc, "nip"], problem, "invalid_nip")],
        )
    return Pair.of(nip, workspace_code, platform, channel)


def _caller(principal: Principal) -> Caller | None:
    employee = principal.employee
    return (
        None if employee is None else Caller(employee.nip, employee.is_admin, employee.is_auditor)
    )


async def _answer(
    request: Request, pair: Pair, at: datetime | None, checked_at: datetime, caller: Caller | None
) -> dict[str, Any]:
    """One query's answer, as the single check and each query of a batch give it."""
    reader: CheckReader = request.app.state.check_reader
    at = at or checked_at
    reading = await reader.read(pair, at, checked_at, caller=caller.nip if caller else None)
    verdict = await service.answer(reader, pair.form, reading, at, checked_at, caller)
    return service.body(verdict, checked_at, request.app.state.metrics)


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
    _require_check_scope(principal)
    pair = _pair(nip, workspace_code, platform, channel, ["query"])
    body = await _answer(request, pair, at, utcnow(), _caller(principal))
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


class CheckQuery(BaseModel):
    """One query of a batch: the single check's parameters, as JSON fields."""

    model_config = ConfigDict(extra="forbid")

    nip: _Nip | None = None
    workspace_code: _WorkspaceCode | None = None
    platform: Platform | None = None
    channel: _Channel | None = None
    at: InstantIn | None = Field(default=None, description="Default: now.")


class CheckBatch(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "checks": [
            {"nip": "198904042014021003", "workspace_code": "DKI-STUDIO"},
            {"platform": "youtube", "channel": "@diskominfotik.anambas"},
            {
                "nip": "198904042014021003",
                "workspace_code": "DKI-STUDIO",
                "at": "2027-01-12T09:30:00+07:00",
            },
        ]
    }

    checks: list[CheckQuery] = Field(min_length=1, max_length=BATCH_MOST)


class CheckBatchResult(BaseModel):
    results: list[CheckResult]


@router.post(
    "/check-batch",
    response_model=CheckBatchResult,
    responses={**API_PROBLEMS, **problem_responses(400, 413)},
)
async def check_batch(
    request: Request, principal: EmployeeOrServiceClient, batch: CheckBatch
) -> JSONResponse:
    """Up to 100 checks in one request: each answer exactly what the single check gives.

    Answers come in the order of `checks`, with the single check's rules, callers and
    disclosure, all judged at one moment (`checked_at`). One malformed query makes the
    whole request a 422 whose `errors` name its index. Each query spends one check of the
    caller's rate budget. The reads go to the database together (docs/RULES.md#check-batch).
    """
    _require_check_scope(principal)
    pairs = [
        _pair(q.nip, q.workspace_code, q.platform, q.channel, ["body", "checks", index])
        for index, q in enumerate(batch.checks)
    ]
    if len(pairs) > 1:  # the first was spent when the caller was admitted
        request.app.state.rate_limits.admit(request.scope, principal.actor, len(pairs) - 1)
    checked_at, caller = utcnow(), _caller(principal)
    results = await asyncio.gather(
        *(
            _answer(request, pair, query.at, checked_at, caller)
            for pair, query in zip(pairs, batch.checks, strict=True)
        )
    )
    return JSONResponse({"results": results}, headers={"Cache-Control": "no-store"})
