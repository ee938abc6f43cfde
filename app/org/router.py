"""HTTP endpoints of the organisation: parse, call the service, shape the response.

Reading: units and workspaces are visible to every employee (a requester must
be able to find the workspace); employee records to admins, auditors and the
employee themself; delegations to every employee. Changing: admins, and for a
unit's delegations also that unit's head.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, NamedTuple, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import Admin, CurrentEmployee, WriteSession
from app.db import ReadSession
from app.errors import API_PROBLEMS, created_links, problem_responses
from app.http import declare
from app.org import delegations as delegation_service
from app.org import service
from app.org.models import Delegation, Employee, Unit, Workspace
from app.org.schemas import (
    DelegationCreate,
    DelegationOut,
    Deputyship,
    EmployeeCreate,
    EmployeeFilters,
    EmployeeOut,
    EmployeeUpdate,
    MeOut,
    UnitCreate,
    UnitFilters,
    UnitOut,
    UnitUpdate,
    WorkspaceCreate,
    WorkspaceFilters,
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
Endpoint = Callable[..., Awaitable[Any]]


def _created(response: Response, location: str, out: type[Out], record: object) -> Out:
    """The 201's body, with the new record's `Location` (docs/RULES.md#created)."""
    response.headers["Location"] = location
    return out.model_validate(record)


# --- what a route reads: loaded, or a 404, once the caller is known to see it ---------


async def _unit(code: str, session: ReadSession, _: CurrentEmployee) -> Unit:
    return await service.get_unit(session, code)


async def _delegation(delegation_id: str, session: ReadSession, _: CurrentEmployee) -> Delegation:
    return await delegation_service.get_delegation(session, delegation_id)


CurrentUnit = Annotated[Unit, Depends(_unit)]
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


# --- units, workspaces and employees: their routes, made from this table ----------------
# Who reads which is the service's (`service.units`, `service.read_employee`, …); creating
# and changing are for admins; a create answers 201 with `Location` (docs/RULES.md#created).


class _Record(NamedTuple):
    path: str  # of the collection
    key: str  # the record's key: its path parameter, in its `Location` and its links
    order: Any  # the key's column: the list's order
    out: type[BaseModel]
    filters: type[BaseModel]  # the list's query
    create_body: type[BaseModel]
    update_body: type[BaseModel]
    listing: Callable[[Employee, Any], Select[Any]]  # the service's, for each operation
    read: Callable[[AsyncSession, Employee, str], Awaitable[Any]]
    create: Callable[[AsyncSession, str, Any], Awaitable[Any]]
    update: Callable[[AsyncSession, str, str, Any], Awaitable[Any]]
    descriptions: dict[str, str]  # the operations' (list, read, create, update)
    links: tuple[str, ...]  # the operations a new record's key links to


# Each row gives `_Record`'s fields in order: path, key, order, out, filters, create_body,
# update_body, listing, read, create, update, descriptions, links.
_RECORDS = (
    _Record(
        "/units",
        "code",
        Unit.code,
        UnitOut,
        UnitFilters,
        UnitCreate,
        UnitUpdate,
        service.units,
        service.read_unit,
        service.create_unit,
        service.update_unit,
        {
            "list": "Units, ordered by code.",
            "read": "One unit (unit kerja).",
            "create": "Create a unit (unit kerja). Admins only.",
            "update": "Change a unit: name, parent, head, or deactivate it "
            '(`"active": false`). Admins only.',
        },
        ("read_unit", "update_unit", "list_delegations", "create_delegation"),
    ),
    _Record(
        "/workspaces",
        "code",
        Workspace.code,
        WorkspaceOut,
        WorkspaceFilters,
        WorkspaceCreate,
        WorkspaceUpdate,
        service.workspaces,
        service.read_workspace,
        service.create_workspace,
        service.update_workspace,
        {
            "list": "Workspaces, ordered by code.",
            "read": "One workspace (ruang kerja).",
            "create": "Create a workspace (ruang kerja) owned by a unit. Admins only.",
            "update": "Change a workspace, move it to another unit, or deactivate it. Admins only.",
        },
        ("read_workspace", "update_workspace"),
    ),
    _Record(
        "/employees",
        "nip",
        Employee.nip,
        EmployeeOut,
        EmployeeFilters,
        EmployeeCreate,
        EmployeeUpdate,
        service.employees,
        service.read_employee,
        service.create_employee,
        service.update_employee,
        {
            "list": "Employees, ordered by NIP. Admins and auditors see everyone; "
            "others only themselves.",
            "read": "One employee. Visible to admins, auditors and the employee themself "
            "(others: 404).",
            "create": "Register an employee (PNS or PPPK). The NIP is checked part by part. "
            "Admins only.",
            "update": "Change an employee, their roles, or deactivate them. Admins only.",
        },
        ("read_employee", "update_employee"),
    ),
)


def _list_endpoint(record: _Record) -> Endpoint:
    async def endpoint(
        session: ReadSession, caller: CurrentEmployee, page: PageParams, filters: BaseModel
    ) -> Any:
        records = record.listing(caller, filters)
        return await page_of(session, records, record.order, record.out, page)

    return declare(endpoint, filters=Annotated[record.filters, Query()])


def _read_endpoint(record: _Record) -> Endpoint:
    async def endpoint(session: ReadSession, caller: CurrentEmployee, **key: str) -> Any:
        return record.out.model_validate(await record.read(session, caller, key[record.key]))

    return declare(endpoint, path_key=record.key)


def _create_endpoint(record: _Record) -> Endpoint:
    async def endpoint(
        session: WriteSession, admin: Admin, response: Response, body: BaseModel
    ) -> Any:
        made = await record.create(session, admin.nip, body)
        location = f"/api/v1{record.path}/{getattr(made, record.key)}"
        return _created(response, location, record.out, made)

    return declare(endpoint, body=record.create_body)


def _update_endpoint(record: _Record) -> Endpoint:
    async def endpoint(session: WriteSession, admin: Admin, body: BaseModel, **key: str) -> Any:
        changed = await record.update(session, admin.nip, key[record.key], body)
        return record.out.model_validate(changed)

    return declare(endpoint, body=record.update_body, path_key=record.key)


def _operations(record: _Record) -> Iterator[tuple[str, str, str, Endpoint, dict[str, Any]]]:
    """Each route of `record`: its operation, path, method, endpoint and the rest it declares."""
    noun = record.path.strip("/").removesuffix("s")
    item = f"{record.path}/{{{record.key}}}"
    links = created_links(record.key, record.key, *record.links)
    page: Any = Page[record.out]  # type: ignore[name-defined]  # a model made at run time
    yield f"list_{noun}s", record.path, "GET", _list_endpoint(record), {"response_model": page}
    yield (
        f"create_{noun}",
        record.path,
        "POST",
        _create_endpoint(record),
        {"status_code": 201, "responses": {**_CREATE, **links}},
    )
    yield f"read_{noun}", item, "GET", _read_endpoint(record), {"responses": _READ}
    yield f"update_{noun}", item, "PATCH", _update_endpoint(record), {"responses": _UPDATE}


for _record in _RECORDS:
    for _operation, _path, _method, _endpoint, _declared in _operations(_record):
        router.add_api_route(
            _path,
            _endpoint,
            methods=[_method],
            name=_operation,
            description=_record.descriptions[_operation.partition("_")[0]],
            tags=["organisation"],
            **{"response_model": _record.out, **_declared},
        )


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
    """One delegation (Plh/Plt), in force or not: where a new one's `Location` points."""
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
