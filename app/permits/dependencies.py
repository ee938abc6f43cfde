"""The permit routes' dependencies: a list's filters, and a decision's request (the permit,
the caller, `If-Match` and `Idempotency-Key`) read once for the four decision endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

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


async def list_filters(filters: Annotated[listing.Filters, Query()]) -> listing.Filters:
    """The list's filters, from its query (a dependency of its own, so that the query model
    is the only query parameter it declares)."""
    return filters


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


async def decision(
    permit_id: str,
    session: WriteSession,
    employee: CurrentEmployee,
    version: IfMatchVersion,
    once: Idempotent,
) -> Decision:
    return Decision(permit_id, session, employee, version, once)


DecisionDep = Annotated[Decision, Depends(decision)]
