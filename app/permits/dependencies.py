"""The permit routes' dependencies: a list's filters, and a decision's request (the permit,
the caller, `If-Match` and `Idempotency-Key`) read once for the four decision endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import CurrentEmployee, WriteSession
from app.http import IfMatchVersion
from app.org.models import Employee
from app.permits import listing, service
from app.permits.idempotency import Idempotent, Once
from app.permits.lifecycle import ACTIONS
from app.permits.vocabulary import Status
from app.timeutil import InstantIn


def list_filters(
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
) -> listing.Filters:
    """The list's filters, from its query."""
    return listing.Filters(
        status=status,
        workspace_code=workspace_code,
        unit_code=unit_code,
        requester_nip=requester_nip,
        starts_before=to,
        ends_after=from_,
        awaiting_me=awaiting == "me",
    )


ListFilters = Annotated[listing.Filters, Depends(list_filters)]


@dataclass(frozen=True)
class Decision:
    """A request to move the permit `permit_id` on, with its `If-Match` and
    `Idempotency-Key`: each decision endpoint names its action and passes its body."""

    permit_id: str
    session: AsyncSession
    employee: Employee
    version: int | None
    once: Once

    async def __call__(self, action: str, body: BaseModel | None) -> JSONResponse:
        # The body's text is the one the lifecycle records for this action (`note`, `reason`).
        field = ACTIONS[action][0].text
        text = getattr(body, field) if body is not None and field is not None else None
        return await self.once(
            body,
            lambda: service.take_action(
                self.session, self.employee, self.permit_id, action, text, self.version
            ),
        )


def decision(
    permit_id: str,
    session: WriteSession,
    employee: CurrentEmployee,
    version: IfMatchVersion,
    once: Idempotent,
) -> Decision:
    return Decision(permit_id, session, employee, version, once)


DecisionDep = Annotated[Decision, Depends(decision)]
