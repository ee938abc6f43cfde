"""HTTP endpoints of the organisation: parse, call the service, shape the response.

Reading: units and workspaces are visible to every employee (a requester must
be able to find the workspace); employee records to admins, auditors and the
employee themself; delegations to every employee. Changing: admins, and for a
unit's delegations also that unit's head.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from app.auth.dependencies import Admin, CurrentEmployee, WriteSession
from app.db import ReadSession
from app.errors import API_PROBLEMS, NotFound, created_links, problem_responses
from app.org import delegations as delegation_service
from app.org import service
from app.org.models import Delegation, Employee, Unit, Workspace
from app.org.schemas import (
    DelegationCreate,
    DelegationOut,
    Deputyship,
    EmployeeCreate,
    EmployeeOut,
    EmployeeUpdate,
    MeOut,
    UnitCreate,
    UnitOut,
    UnitUpdate,
    WorkspaceCreate,
    WorkspaceKind,
    WorkspaceOut,
    WorkspaceUpdate,
)
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, keyset_page
from app.timeutil import utcnow

router = APIRouter(prefix="/api/v1", responses=API_PROBLEMS)

_READ = problem_responses(404)
_CREATE = problem_responses(400, 409, 413)


def _creates(parameter: str, field: str, *operation_ids: str) -> dict[int | str, dict[str, Any]]:
    return {**_CREATE, **created_links(parameter, field, *operation_ids)}


_UPDATE = problem_responses(400, 404, 409, 413)


def _created(response: Response, location: str) -> None:
    response.headers["Location"] = location


@router.get("/me", tags=["organisation"])
async def read_me(session: ReadSession, employee: CurrentEmployee) -> MeOut:
    """The caller's employee record, the units they head and the delegations they hold now."""
    heads = (
        await session.scalars(
            select(Unit.code)
            .where(Unit.head_nip == employee.nip, Unit.active.is_(True))
            .order_by(Unit.code)
        )
    ).all()
    held = await delegation_service.delegations_in_force(
        session, delegate_nip=employee.nip, at=utcnow()
    )
    return MeOut(
        **EmployeeOut.model_validate(employee).model_dump(),
        heads=list(heads),
        deputises=[
            Deputyship(
                unit_code=d.unit_code,
                kind=d.kind,
                delegation_id=d.id,
                starts_at=d.starts_at,
                ends_at=d.ends_at,
            )
            for d in held
        ],
    )


# --- units --------------------------------------------------------------------


@router.post(
    "/units",
    status_code=201,
    tags=["organisation"],
    responses=_creates(
        "code", "code", "read_unit", "update_unit", "list_delegations", "create_delegation"
    ),
)
async def create_unit(
    body: UnitCreate, session: WriteSession, admin: Admin, response: Response
) -> UnitOut:
    """Create a unit (unit kerja). Admins only."""
    unit = await service.create_unit(session, admin.nip, body)
    _created(response, f"/api/v1/units/{unit.code}")
    return UnitOut.model_validate(unit)


@router.get("/units", tags=["organisation"])
async def list_units(
    session: ReadSession,
    _: CurrentEmployee,
    parent_code: Annotated[str | None, Query(max_length=32)] = None,
    active: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[UnitOut]:
    """Units, ordered by code."""
    statement = select(Unit)
    if parent_code is not None:
        statement = statement.where(Unit.parent_code == parent_code)
    if active is not None:
        statement = statement.where(Unit.active.is_(active))
    rows, next_cursor = await keyset_page(
        session, statement, Unit.code, cursor=cursor, limit=limit, key_of=lambda u: u.code
    )
    return Page[UnitOut](items=[UnitOut.model_validate(u) for u in rows], next_cursor=next_cursor)


@router.get("/units/{code}", tags=["organisation"], responses=_READ)
async def read_unit(code: str, session: ReadSession, _: CurrentEmployee) -> UnitOut:
    return UnitOut.model_validate(await service.get_unit(session, code))


@router.patch("/units/{code}", tags=["organisation"], responses=_UPDATE)
async def update_unit(code: str, body: UnitUpdate, session: WriteSession, admin: Admin) -> UnitOut:
    """Change a unit: name, parent, head, or deactivate it (`"active": false`). Admins only."""
    return UnitOut.model_validate(await service.update_unit(session, admin.nip, code, body))


# --- workspaces ---------------------------------------------------------------


@router.post(
    "/workspaces",
    status_code=201,
    tags=["organisation"],
    responses=_creates("code", "code", "read_workspace", "update_workspace"),
)
async def create_workspace(
    body: WorkspaceCreate, session: WriteSession, admin: Admin, response: Response
) -> WorkspaceOut:
    """Create a workspace (ruang kerja) owned by a unit. Admins only."""
    workspace = await service.create_workspace(session, admin.nip, body)
    _created(response, f"/api/v1/workspaces/{workspace.code}")
    return WorkspaceOut.model_validate(workspace)


@router.get("/workspaces", tags=["organisation"])
async def list_workspaces(
    session: ReadSession,
    _: CurrentEmployee,
    unit_code: Annotated[str | None, Query(max_length=32)] = None,
    kind: WorkspaceKind | None = None,
    active: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[WorkspaceOut]:
    """Workspaces, ordered by code."""
    statement = select(Workspace)
    if unit_code is not None:
        statement = statement.where(Workspace.unit_code == unit_code)
    if kind is not None:
        statement = statement.where(Workspace.kind == kind)
    if active is not None:
        statement = statement.where(Workspace.active.is_(active))
    rows, next_cursor = await keyset_page(
        session, statement, Workspace.code, cursor=cursor, limit=limit, key_of=lambda w: w.code
    )
    return Page[WorkspaceOut](
        items=[WorkspaceOut.model_validate(w) for w in rows], next_cursor=next_cursor
    )


@router.get("/workspaces/{code}", tags=["organisation"], responses=_READ)
async def read_workspace(code: str, session: ReadSession, _: CurrentEmployee) -> WorkspaceOut:
    return WorkspaceOut.model_validate(await service.get_workspace(session, code))


@router.patch("/workspaces/{code}", tags=["organisation"], responses=_UPDATE)
async def update_workspace(
    code: str, body: WorkspaceUpdate, session: WriteSession, admin: Admin
) -> WorkspaceOut:
    """Change a workspace, move it to another unit, or deactivate it. Admins only."""
    workspace = await service.update_workspace(session, admin.nip, code, body)
    return WorkspaceOut.model_validate(workspace)


# --- employees ----------------------------------------------------------------


def _sees_all_employees(employee: Employee) -> bool:
    return employee.is_admin or employee.is_auditor


@router.post(
    "/employees",
    status_code=201,
    tags=["organisation"],
    responses=_creates("nip", "nip", "read_employee", "update_employee"),
)
async def create_employee(
    body: EmployeeCreate, session: WriteSession, admin: Admin, response: Response
) -> EmployeeOut:
    """Register an employee (PNS or PPPK). The NIP is checked part by part. Admins only."""
    employee = await service.create_employee(session, admin.nip, body)
    _created(response, f"/api/v1/employees/{employee.nip}")
    return EmployeeOut.model_validate(employee)


@router.get("/employees", tags=["organisation"])
async def list_employees(
    session: ReadSession,
    caller: CurrentEmployee,
    unit_code: Annotated[str | None, Query(max_length=32)] = None,
    active: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[EmployeeOut]:
    """Employees, ordered by NIP. Admins and auditors see everyone; others only themselves."""
    statement = select(Employee)
    if not _sees_all_employees(caller):
        statement = statement.where(Employee.nip == caller.nip)
    if unit_code is not None:
        statement = statement.where(Employee.unit_code == unit_code)
    if active is not None:
        statement = statement.where(Employee.active.is_(active))
    rows, next_cursor = await keyset_page(
        session, statement, Employee.nip, cursor=cursor, limit=limit, key_of=lambda e: e.nip
    )
    return Page[EmployeeOut](
        items=[EmployeeOut.model_validate(e) for e in rows], next_cursor=next_cursor
    )


@router.get("/employees/{nip}", tags=["organisation"], responses=_READ)
async def read_employee(nip: str, session: ReadSession, caller: CurrentEmployee) -> EmployeeOut:
    """One employee. Visible to admins, auditors and the employee themself (others: 404)."""
    if nip != caller.nip and not _sees_all_employees(caller):
        raise NotFound(f"Employee {nip} does not exist.")
    return EmployeeOut.model_validate(await service.get_employee(session, nip))


@router.patch("/employees/{nip}", tags=["organisation"], responses=_UPDATE)
async def update_employee(
    nip: str, body: EmployeeUpdate, session: WriteSession, admin: Admin
) -> EmployeeOut:
    """Change an employee, their roles, or deactivate them. Admins only."""
    return EmployeeOut.model_validate(await service.update_employee(session, admin.nip, nip, body))


# --- delegations --------------------------------------------------------------


@router.post("/units/{code}/delegations", status_code=201, tags=["delegations"], responses=_UPDATE)
async def create_delegation(
    code: str,
    body: DelegationCreate,
    session: WriteSession,
    caller: CurrentEmployee,
    response: Response,
) -> DelegationOut:
    """Appoint a Plh (head absent) or Plt (post vacant) for a window. Admins and the unit head."""
    delegation = await delegation_service.create_delegation(session, caller, code, body)
    _created(response, f"/api/v1/delegations/{delegation.id}")
    return DelegationOut.model_validate(delegation)


@router.get("/units/{code}/delegations", tags=["delegations"], responses=_READ)
async def list_delegations(
    code: str,
    session: ReadSession,
    _: CurrentEmployee,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[DelegationOut]:
    """A unit's delegations, past, present and future, oldest first."""
    await service.get_unit(session, code)
    statement = select(Delegation).where(Delegation.unit_code == code)
    rows, next_cursor = await keyset_page(
        session, statement, Delegation.id, cursor=cursor, limit=limit, key_of=lambda d: d.id
    )
    return Page[DelegationOut](
        items=[DelegationOut.model_validate(d) for d in rows], next_cursor=next_cursor
    )


@router.get("/delegations/{delegation_id}", tags=["delegations"], responses=_READ)
async def read_delegation(
    delegation_id: str, session: ReadSession, _: CurrentEmployee
) -> DelegationOut:
    delegation = await session.get(Delegation, delegation_id)
    if delegation is None:
        raise NotFound(f"Delegation {delegation_id} does not exist.")
    return DelegationOut.model_validate(delegation)


@router.delete(
    "/delegations/{delegation_id}", tags=["delegations"], responses=problem_responses(404, 409)
)
async def revoke_delegation(
    delegation_id: str, session: WriteSession, caller: CurrentEmployee
) -> DelegationOut:
    """End a delegation now. The record is kept (with `revoked_at`), never erased."""
    delegation = await delegation_service.revoke_delegation(session, caller, delegation_id)
    return DelegationOut.model_validate(delegation)
