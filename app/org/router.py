"""HTTP endpoints of the organisation: parse, call the service, shape the response.

Reading: units and workspaces are visible to every employee (a requester must
be able to find the workspace); employee records to admins, auditors and the
employee themself; delegations to every employee. Changing: admins, and for a
unit's delegations also that unit's head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

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
from app.pagination import Page, PageParams
from app.records import page_of
from app.timeutil import utcnow

router = APIRouter(prefix="/api/v1", responses=API_PROBLEMS)

_READ = problem_responses(404)
_CREATE = problem_responses(400, 409, 413)
_UPDATE = problem_responses(400, 404, 409, 413)
Out = TypeVar("Out", bound=BaseModel)
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


CodeFilter = Annotated[str | None, Query(max_length=32)]


def _creates(path: str, key: str, *operation_ids: str) -> Callable[[Endpoint], Endpoint]:
    """A POST that creates a record of the organisation: 201 with `Location`, its problems,
    and links from the new record's `key` to the operations that take it."""
    return router.post(
        path,
        status_code=201,
        tags=["organisation"],
        responses={**_CREATE, **created_links(key, key, *operation_ids)},
    )


def _created(response: Response, location: str, out: type[Out], record: object) -> Out:
    """The 201's body, with the new record's `Location` (docs/RULES.md#created)."""
    response.headers["Location"] = location
    return out.model_validate(record)


# --- what a route reads: loaded, or a 404, once the caller is known to see it ---------


async def _unit(code: str, session: ReadSession, _: CurrentEmployee) -> Unit:
    return await service.get_unit(session, code)


async def _workspace(code: str, session: ReadSession, _: CurrentEmployee) -> Workspace:
    return await service.get_workspace(session, code)


async def _employee_record(nip: str, session: ReadSession, caller: CurrentEmployee) -> Employee:
    """Admins, auditors and the employee themself see the record; others get a 404
    (docs/RULES.md#not-found)."""
    if nip != caller.nip and not service.sees_all_employees(caller):
        raise NotFound(f"Employee {nip} does not exist.")
    return await service.get_employee(session, nip)


async def _delegation(delegation_id: str, session: ReadSession, _: CurrentEmployee) -> Delegation:
    return await delegation_service.get_delegation(session, delegation_id)


CurrentUnit = Annotated[Unit, Depends(_unit)]
CurrentWorkspace = Annotated[Workspace, Depends(_workspace)]
EmployeeRecord = Annotated[Employee, Depends(_employee_record)]
CurrentDelegation = Annotated[Delegation, Depends(_delegation)]


@router.get("/me", tags=["organisation"])
async def read_me(session: ReadSession, employee: CurrentEmployee) -> MeOut:
    """The caller's employee record, the units they head and the delegations they hold now."""
    heads = await service.units_headed_by(session, employee.nip)
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


@_creates("/units", "code", "read_unit", "update_unit", "list_delegations", "create_delegation")
async def create_unit(
    body: UnitCreate, session: WriteSession, admin: Admin, response: Response
) -> UnitOut:
    """Create a unit (unit kerja). Admins only."""
    unit = await service.create_unit(session, admin.nip, body)
    return _created(response, f"/api/v1/units/{unit.code}", UnitOut, unit)


@router.get("/units", tags=["organisation"])
async def list_units(
    session: ReadSession,
    _: CurrentEmployee,
    page: PageParams,
    parent_code: CodeFilter = None,
    active: bool | None = None,
) -> Page[UnitOut]:
    """Units, ordered by code."""
    return await page_of(session, service.units(parent_code, active), Unit.code, UnitOut, page)


@router.get("/units/{code}", tags=["organisation"], responses=_READ)
async def read_unit(unit: CurrentUnit) -> UnitOut:
    return UnitOut.model_validate(unit)


@router.patch("/units/{code}", tags=["organisation"], responses=_UPDATE)
async def update_unit(code: str, body: UnitUpdate, session: WriteSession, admin: Admin) -> UnitOut:
    """Change a unit: name, parent, head, or deactivate it (`"active": false`). Admins only."""
    return UnitOut.model_validate(await service.update_unit(session, admin.nip, code, body))


# --- workspaces ---------------------------------------------------------------


@_creates("/workspaces", "code", "read_workspace", "update_workspace")
async def create_workspace(
    body: WorkspaceCreate, session: WriteSession, admin: Admin, response: Response
) -> WorkspaceOut:
    """Create a workspace (ruang kerja) owned by a unit. Admins only."""
    workspace = await service.create_workspace(session, admin.nip, body)
    return _created(response, f"/api/v1/workspaces/{workspace.code}", WorkspaceOut, workspace)


@router.get("/workspaces", tags=["organisation"])
async def list_workspaces(
    session: ReadSession,
    _: CurrentEmployee,
    page: PageParams,
    unit_code: CodeFilter = None,
    kind: WorkspaceKind | None = None,
    active: bool | None = None,
) -> Page[WorkspaceOut]:
    """Workspaces, ordered by code."""
    workspaces = service.workspaces(unit_code, kind, active)
    return await page_of(session, workspaces, Workspace.code, WorkspaceOut, page)


@router.get("/workspaces/{code}", tags=["organisation"], responses=_READ)
async def read_workspace(workspace: CurrentWorkspace) -> WorkspaceOut:
    return WorkspaceOut.model_validate(workspace)


@router.patch("/workspaces/{code}", tags=["organisation"], responses=_UPDATE)
async def update_workspace(
    code: str, body: WorkspaceUpdate, session: WriteSession, admin: Admin
) -> WorkspaceOut:
    """Change a workspace, move it to another unit, or deactivate it. Admins only."""
    workspace = await service.update_workspace(session, admin.nip, code, body)
    return WorkspaceOut.model_validate(workspace)


# --- employees ----------------------------------------------------------------


@_creates("/employees", "nip", "read_employee", "update_employee")
async def create_employee(
    body: EmployeeCreate, session: WriteSession, admin: Admin, response: Response
) -> EmployeeOut:
    """Register an employee (PNS or PPPK). The NIP is checked part by part. Admins only."""
    employee = await service.create_employee(session, admin.nip, body)
    return _created(response, f"/api/v1/employees/{employee.nip}", EmployeeOut, employee)


@router.get("/employees", tags=["organisation"])
async def list_employees(
    session: ReadSession,
    caller: CurrentEmployee,
    page: PageParams,
    unit_code: CodeFilter = None,
    active: bool | None = None,
) -> Page[EmployeeOut]:
    """Employees, ordered by NIP. Admins and auditors see everyone; others only themselves."""
    employees = service.employees(caller, unit_code, active)
    return await page_of(session, employees, Employee.nip, EmployeeOut, page)


@router.get("/employees/{nip}", tags=["organisation"], responses=_READ)
async def read_employee(employee: EmployeeRecord) -> EmployeeOut:
    """One employee. Visible to admins, auditors and the employee themself (others: 404)."""
    return EmployeeOut.model_validate(employee)


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
    return _created(response, f"/api/v1/delegations/{delegation.id}", DelegationOut, delegation)


@router.get("/units/{code}/delegations", tags=["delegations"], responses=_READ)
async def list_delegations(
    unit: CurrentUnit, session: ReadSession, page: PageParams
) -> Page[DelegationOut]:
    """A unit's delegations, past, present and future, oldest first."""
    delegations = delegation_service.delegations_of(unit.code)
    return await page_of(session, delegations, Delegation.id, DelegationOut, page)


@router.get("/delegations/{delegation_id}", tags=["delegations"], responses=_READ)
async def read_delegation(delegation: CurrentDelegation) -> DelegationOut:
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
