"""Rules of the organisation: units, workspaces, employees.

Services only `flush()`; the request's unit of work commits. Every change
appends its audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import SYSTEM_ACTOR, append_event
from app.errors import AlreadyExists, Conflict, InvalidInput, NotFound, field_error
from app.nip import NipError, infer_employment, parse_nip
from app.org.models import Employee, Unit, Workspace
from app.org.schemas import (
    EmployeeCreate,
    EmployeeUpdate,
    UnitCreate,
    UnitUpdate,
    WorkspaceCreate,
    WorkspaceUpdate,
)
from app.timeutil import utcnow


def snapshot(obj: Unit | Workspace | Employee) -> dict[str, Any]:
    """The audited state of an organisation record."""
    fields: tuple[str, ...]
    if isinstance(obj, Unit):
        fields = ("code", "name", "parent_code", "head_nip", "active")
    elif isinstance(obj, Workspace):
        fields = ("code", "name", "unit_code", "kind", "active")
    else:
        fields = ("nip", "name", "employment", "unit_code", "position", "roles", "active")
    return {name: getattr(obj, name) for name in fields}


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}


def _refuse_nulls(fields: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in fields and fields[name] is None:
            raise InvalidInput(
                f"{name} cannot be null.",
                errors=[field_error(["body", name], "cannot be null", "not_nullable")],
            )


async def _flush_new(session: AsyncSession, obj: object, what: str) -> None:
    session.add(obj)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise AlreadyExists(f"{what} already exists.") from None


# --- references ---------------------------------------------------------------


async def require_unit(
    session: AsyncSession, code: str, loc: Sequence[str], *, active: bool = True
) -> Unit:
    unit = await session.get(Unit, code)
    if unit is None:
        raise InvalidInput(
            f"Unit {code} does not exist.",
            code="unknown_unit",
            errors=[field_error(loc, f"no unit {code}", "unknown_unit")],
        )
    if active and not unit.active:
        raise InvalidInput(
            f"Unit {code} is inactive.",
            code="unit_inactive",
            errors=[field_error(loc, f"unit {code} is inactive", "unit_inactive")],
        )
    return unit


async def require_active_employee(session: AsyncSession, nip: str, loc: Sequence[str]) -> Employee:
    employee = await session.get(Employee, nip)
    if employee is None:
        raise InvalidInput(
            f"Employee {nip} does not exist.",
            code="unknown_employee",
            errors=[field_error(loc, f"no employee {nip}", "unknown_employee")],
        )
    if not employee.active:
        raise InvalidInput(
            f"Employee {nip} is inactive.",
            code="employee_inactive",
            errors=[field_error(loc, f"employee {nip} is inactive", "employee_inactive")],
        )
    return employee


async def get_unit(session: AsyncSession, code: str, *, for_update: bool = False) -> Unit:
    unit = await session.get(Unit, code, with_for_update=for_update)
    if unit is None:
        raise NotFound(f"Unit {code} does not exist.")
    return unit


async def get_workspace(session: AsyncSession, code: str, *, for_update: bool = False) -> Workspace:
    workspace = await session.get(Workspace, code, with_for_update=for_update)
    if workspace is None:
        raise NotFound(f"Workspace {code} does not exist.")
    return workspace


async def get_employee(session: AsyncSession, nip: str, *, for_update: bool = False) -> Employee:
    employee = await session.get(Employee, nip, with_for_update=for_update)
    if employee is None:
        raise NotFound(f"Employee {nip} does not exist.")
    return employee


# --- units --------------------------------------------------------------------


async def _check_parent(session: AsyncSession, unit_code: str, parent_code: str) -> None:
    """The parent must exist and must not be the unit itself or one of its descendants."""
    await require_unit(session, parent_code, ["body", "parent_code"])
    cursor: str | None = parent_code
    while cursor is not None:
        if cursor == unit_code:
            raise InvalidInput(
                f"Unit {parent_code} is {unit_code} itself or below it; units form a tree.",
                code="unit_cycle",
                errors=[field_error(["body", "parent_code"], "would form a cycle", "unit_cycle")],
            )
        cursor = (await get_unit(session, cursor)).parent_code


async def create_unit(session: AsyncSession, actor: str, body: UnitCreate) -> Unit:
    if await session.get(Unit, body.code) is not None:
        raise AlreadyExists(f"Unit {body.code} already exists.")
    if body.parent_code is not None:
        await _check_parent(session, body.code, body.parent_code)
    if body.head_nip is not None:
        await require_active_employee(session, body.head_nip, ["body", "head_nip"])
    now = utcnow()
    unit = Unit(**body.model_dump(), created_at=now, updated_at=now)
    await _flush_new(session, unit, f"Unit {body.code}")
    await append_event(
        session,
        actor=actor,
        action="unit.created",
        subject=f"unit:{unit.code}",
        data=snapshot(unit),
        unit_code=unit.code,
    )
    return unit


async def update_unit(session: AsyncSession, actor: str, code: str, body: UnitUpdate) -> Unit:
    unit = await get_unit(session, code, for_update=True)
    fields = body.model_dump(exclude_unset=True)
    _refuse_nulls(fields, "name", "active")
    if fields.get("parent_code") is not None and fields["parent_code"] != unit.parent_code:
        await _check_parent(session, unit.code, fields["parent_code"])
    elif fields.get("active") is True and not unit.active and unit.parent_code is not None:
        # Reactivating under an inactive parent would undo what deactivation guards.
        await require_unit(session, unit.parent_code, ["body", "active"])
    if fields.get("head_nip") is not None and fields["head_nip"] != unit.head_nip:
        await require_active_employee(session, fields["head_nip"], ["body", "head_nip"])
    if fields.get("active") is False and unit.active:
        await _refuse_deactivating_unit_in_use(session, unit.code)
    await _apply_update(session, actor, unit, fields, "unit", unit.code)
    return unit


async def _refuse_deactivating_unit_in_use(session: AsyncSession, code: str) -> None:
    child = await session.scalar(
        select(exists().where(Unit.parent_code == code, Unit.active.is_(True)))
    )
    workspace = await session.scalar(
        select(exists().where(Workspace.unit_code == code, Workspace.active.is_(True)))
    )
    if child or workspace:
        raise Conflict(
            f"Unit {code} still has active sub-units or workspaces; deactivate or move them first.",
            code="unit_in_use",
        )


async def _apply_update(
    session: AsyncSession,
    actor: str,
    obj: Unit | Workspace | Employee,
    fields: dict[str, Any],
    kind: str,
    key: str,
) -> None:
    before = snapshot(obj)
    for name, value in fields.items():
        setattr(obj, name, value)
    changes = _changes(before, snapshot(obj))
    if changes:
        obj.updated_at = utcnow()
        await session.flush()
        await append_event(
            session,
            actor=actor,
            action=f"{kind}.updated",
            subject=f"{kind}:{key}",
            data={"changes": changes},
            unit_code=getattr(obj, "code" if kind == "unit" else "unit_code"),
        )


# --- workspaces ---------------------------------------------------------------


async def create_workspace(session: AsyncSession, actor: str, body: WorkspaceCreate) -> Workspace:
    if await session.get(Workspace, body.code) is not None:
        raise AlreadyExists(f"Workspace {body.code} already exists.")
    await require_unit(session, body.unit_code, ["body", "unit_code"])
    now = utcnow()
    workspace = Workspace(**body.model_dump(), created_at=now, updated_at=now)
    await _flush_new(session, workspace, f"Workspace {body.code}")
    await append_event(
        session,
        actor=actor,
        action="workspace.created",
        subject=f"workspace:{workspace.code}",
        data=snapshot(workspace),
        unit_code=workspace.unit_code,
    )
    return workspace


async def update_workspace(
    session: AsyncSession, actor: str, code: str, body: WorkspaceUpdate
) -> Workspace:
    workspace = await get_workspace(session, code, for_update=True)
    fields = body.model_dump(exclude_unset=True)
    _refuse_nulls(fields, "name", "unit_code", "kind", "active")
    if "unit_code" in fields and fields["unit_code"] != workspace.unit_code:
        await require_unit(session, fields["unit_code"], ["body", "unit_code"])
    elif fields.get("active") is True and not workspace.active:
        # An active workspace in an inactive unit is what deactivating the unit refuses.
        await require_unit(session, workspace.unit_code, ["body", "active"])
    await _apply_update(session, actor, workspace, fields, "workspace", workspace.code)
    return workspace


# --- employees ----------------------------------------------------------------


def _check_nip(nip: str, employment: str) -> None:
    try:
        parse_nip(nip, "pppk" if employment == "pppk" else "pns")
    except NipError as exc:
        label = "NI PPPK" if employment == "pppk" else "NIP"
        raise InvalidInput(
            f"Invalid {label} {nip}: {exc}.",
            code="invalid_nip",
            errors=[field_error(["body", "nip"], str(exc), "invalid_nip")],
        ) from None


def _role_flags(roles: Sequence[str]) -> dict[str, bool]:
    return {"is_admin": "admin" in roles, "is_auditor": "auditor" in roles}


async def create_employee(session: AsyncSession, actor: str, body: EmployeeCreate) -> Employee:
    _check_nip(body.nip, body.employment)
    if await session.get(Employee, body.nip) is not None:
        raise AlreadyExists(f"Employee {body.nip} already exists.")
    if body.unit_code is not None:
        await require_unit(session, body.unit_code, ["body", "unit_code"])
    now = utcnow()
    fields = body.model_dump(exclude={"roles"})
    employee = Employee(**fields, **_role_flags(body.roles), created_at=now, updated_at=now)
    await _flush_new(session, employee, f"Employee {body.nip}")
    await append_event(
        session,
        actor=actor,
        action="employee.created",
        subject=f"employee:{employee.nip}",
        data=snapshot(employee),
        unit_code=employee.unit_code,
    )
    return employee


async def update_employee(
    session: AsyncSession, actor: str, nip: str, body: EmployeeUpdate
) -> Employee:
    employee = await get_employee(session, nip, for_update=True)
    fields = body.model_dump(exclude_unset=True)
    _refuse_nulls(fields, "name", "employment", "roles", "active")
    if "employment" in fields:
        _check_nip(employee.nip, fields["employment"])
    if fields.get("unit_code") is not None and fields["unit_code"] != employee.unit_code:
        await require_unit(session, fields["unit_code"], ["body", "unit_code"])
    if fields.get("active") is False and employee.active:
        headed = (await session.scalars(select(Unit.code).where(Unit.head_nip == nip))).all()
        if headed:
            raise Conflict(
                f"Employee {nip} heads {', '.join(headed)}; appoint another head first.",
                code="employee_is_head",
            )
    if "roles" in fields:
        fields.update(_role_flags(fields.pop("roles")))
    await _apply_update(session, actor, employee, fields, "employee", employee.nip)
    return employee


async def ensure_admins(session: AsyncSession, nips: Sequence[str]) -> None:
    """BOOTSTRAP_ADMIN_NIPS: each exists, active, with the admin role."""
    for nip in nips:
        employee = await session.get(Employee, nip, with_for_update=True)
        if employee is None:
            body = EmployeeCreate(
                nip=nip, name=nip, employment=infer_employment(nip), roles=["admin"]
            )
            await create_employee(session, SYSTEM_ACTOR, body)
        elif not (employee.active and employee.is_admin):
            roles = sorted({*employee.roles, "admin"})
            await update_employee(
                session,
                SYSTEM_ACTOR,
                nip,
                EmployeeUpdate(active=True, roles=roles),
            )
