"""Rules of the organisation: units, workspaces, employees.

Services only `flush()`; the request's unit of work commits. Every change
appends its audit event in the same transaction (docs/RULES.md#audit-events).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import SYSTEM_ACTOR, append_event
from app.db import take_turns
from app.errors import AlreadyExists, Conflict, InvalidInput, NotFound, field_error
from app.nip import NipError, infer_employment, parse_nip
from app.org.models import Employee, Unit, Workspace
from app.org.roles import sees_everything
from app.org.schemas import (
    EmployeeCreate,
    EmployeeFilters,
    EmployeeUpdate,
    UnitCreate,
    UnitFilters,
    UnitUpdate,
    WorkspaceCreate,
    WorkspaceFilters,
    WorkspaceUpdate,
)
from app.records import apply_changes, get_or_404, matching
from app.timeutil import utcnow

OrgRecord = Unit | Workspace | Employee
New = TypeVar("New", Unit, Workspace, Employee)

# What the audit trail calls each kind of record, and which of its fields it keeps.
# An arbitrary constant naming "the bootstrap of admins" among the database's advisory locks.
_BOOTSTRAP_LOCK = 0x1_2A51_B007
_KIND: dict[type[OrgRecord], str] = {Unit: "unit", Workspace: "workspace", Employee: "employee"}
_AUDITED: dict[type[OrgRecord], tuple[str, ...]] = {
    Unit: ("code", "name", "parent_code", "head_nip", "active"),
    Workspace: ("code", "name", "unit_code", "kind", "active"),
    Employee: ("nip", "name", "employment", "unit_code", "position", "roles", "active"),
}


# --- reading -------------------------------------------------------------------------


# --- what a caller reads: the lists and the records (docs/RULES.md#roles) ---------------
# Units and workspaces: every employee (a requester must find the workspace). Employee
# records: admins, auditors and the employee themself.


def units(caller: Employee, filters: UnitFilters) -> Select[Unit]:
    """Units, narrowed by the list's filters (None: not narrowed)."""
    return matching(
        select(Unit), (Unit.parent_code, filters.parent_code), (Unit.active, filters.active)
    )


def workspaces(caller: Employee, filters: WorkspaceFilters) -> Select[Workspace]:
    """Workspaces, narrowed by the list's filters."""
    return matching(
        select(Workspace),
        (Workspace.unit_code, filters.unit_code),
        (Workspace.kind, filters.kind),
        (Workspace.active, filters.active),
    )


def employees(caller: Employee, filters: EmployeeFilters) -> Select[Employee]:
    """The employee records `caller` may read, narrowed by the list's filters."""
    return matching(
        select(Employee),
        (Employee.nip, None if sees_everything(caller) else caller.nip),
        (Employee.unit_code, filters.unit_code),
        (Employee.active, filters.active),
    )


async def read_unit(session: AsyncSession, caller: Employee, code: str) -> Unit:
    return await get_unit(session, code)


async def read_workspace(session: AsyncSession, caller: Employee, code: str) -> Workspace:
    return await get_workspace(session, code)


async def read_employee(session: AsyncSession, caller: Employee, nip: str) -> Employee:
    """The record, if `caller` may read it; others get a 404, as if it did not exist
    (docs/RULES.md#not-found)."""
    if nip != caller.nip and not sees_everything(caller):
        raise NotFound(f"Employee {nip} does not exist.")
    return await get_employee(session, nip)


async def units_headed_by(session: AsyncSession, nip: str) -> list[str]:
    """The codes of the active units `nip` heads, in order."""
    heads = await session.scalars(
        select(Unit.code).where(Unit.head_nip == nip, Unit.active.is_(True)).order_by(Unit.code)
    )
    return list(heads.all())


def snapshot(obj: OrgRecord) -> dict[str, Any]:
    """The audited state of an organisation record."""
    return {name: getattr(obj, name) for name in _AUDITED[type(obj)]}


def _key(obj: OrgRecord) -> str:
    return obj.nip if isinstance(obj, Employee) else obj.code


def _label(model: type[OrgRecord]) -> str:
    return _KIND[model].capitalize()


async def _record(session: AsyncSession, actor: str, obj: OrgRecord, verb: str, data: Any) -> None:
    """The record's change and its audit event (`unit.created`, `employee.updated`, …)."""
    kind = _KIND[type(obj)]
    unit_code = obj.code if isinstance(obj, Unit) else obj.unit_code
    await append_event(session, actor, f"{kind}.{verb}", f"{kind}:{_key(obj)}", data, unit_code)


async def _refuse_existing(session: AsyncSession, model: type[OrgRecord], key: str) -> None:
    if await session.get(model, key) is not None:
        raise AlreadyExists(f"{_label(model)} {key} already exists.")


async def _insert(session: AsyncSession, actor: str, obj: New) -> New:
    """Store a new record, created now, with its audit event. A record with the same key
    stored meanwhile makes it a 409 (docs/RULES.md#org-records)."""
    obj.created_at = obj.updated_at = utcnow()
    session.add(obj)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise AlreadyExists(f"{_label(type(obj))} {_key(obj)} already exists.") from None
    await _record(session, actor, obj, "created", snapshot(obj))
    return obj


async def _apply_update(
    session: AsyncSession, actor: str, obj: OrgRecord, fields: dict[str, Any]
) -> None:
    """Set `fields`; if anything changed, the record is updated now, with its audit event."""
    changes = apply_changes(obj, fields, snapshot)
    if changes:
        await _record(session, actor, obj, "updated", {"changes": changes})


# --- references ---------------------------------------------------------------


async def _require(
    session: AsyncSession, model: type[Unit | Employee], key: str, loc: Sequence[str], active: bool
) -> Any:
    """A record named in a request body: unknown or (when `active`) inactive is a 422 naming
    the field (docs/RULES.md#org-records)."""
    kind, label = _KIND[model], _label(model)
    row: Unit | Employee | None = await session.get(model, key)
    if row is None:
        code, detail, msg = f"unknown_{kind}", "does not exist", f"no {kind} {key}"
    elif active and not row.active:
        code, detail, msg = f"{kind}_inactive", "is inactive", f"{kind} {key} is inactive"
    else:
        return row
    raise InvalidInput(f"{label} {key} {detail}.", code=code, errors=[field_error(loc, msg, code)])


async def require_unit(
    session: AsyncSession, code: str, loc: Sequence[str], *, active: bool = True
) -> Unit:
    unit: Unit = await _require(session, Unit, code, loc, active)
    return unit


async def require_active_employee(session: AsyncSession, nip: str, loc: Sequence[str]) -> Employee:
    employee: Employee = await _require(session, Employee, nip, loc, True)
    return employee


async def get_unit(session: AsyncSession, code: str, *, for_update: bool = False) -> Unit:
    return await get_or_404(session, Unit, code, "Unit", for_update=for_update)


async def get_workspace(session: AsyncSession, code: str, *, for_update: bool = False) -> Workspace:
    return await get_or_404(session, Workspace, code, "Workspace", for_update=for_update)


async def get_employee(session: AsyncSession, nip: str, *, for_update: bool = False) -> Employee:
    return await get_or_404(session, Employee, nip, "Employee", for_update=for_update)


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


def _refuse_self_appointment(actor: str, head_nip: str) -> None:
    """Nobody makes themselves an approver: an admin cannot set themselves as a unit's
    head; another admin must (docs/RULES.md#separation-of-duties)."""
    if head_nip == actor:
        raise InvalidInput(
            "You cannot make yourself a unit's head; another admin must appoint you.",
            code="self_appointment",
            errors=[field_error(["body", "head_nip"], "is yourself", "self_appointment")],
        )


async def _refuse_losing_last_admin(session: AsyncSession, nip: str) -> None:
    """The service keeps an active admin (docs/RULES.md#last-admin). The active admins'
    rows are locked, in NIP order, before anyone's is changed, so two admins demoting each
    other at once take turns, and the second finds the first's change."""
    admins = await session.scalars(
        select(Employee.nip)
        .where(Employee.is_admin.is_(True), Employee.active.is_(True))
        .order_by(Employee.nip)
        .with_for_update()
    )
    if set(admins.all()) == {nip}:
        raise Conflict(
            f"{nip} is the last active admin; make another employee an admin first.",
            code="last_admin",
        )


async def create_unit(session: AsyncSession, actor: str, body: UnitCreate) -> Unit:
    await _refuse_existing(session, Unit, body.code)
    if body.parent_code is not None:
        await _check_parent(session, body.code, body.parent_code)
    if body.head_nip is not None:
        _refuse_self_appointment(actor, body.head_nip)
        await require_active_employee(session, body.head_nip, ["body", "head_nip"])
    return await _insert(session, actor, Unit(**body.model_dump()))


async def update_unit(session: AsyncSession, actor: str, code: str, body: UnitUpdate) -> Unit:
    unit = await get_unit(session, code, for_update=True)
    fields = body.fields()
    if fields.get("parent_code") is not None and fields["parent_code"] != unit.parent_code:
        await _check_parent(session, unit.code, fields["parent_code"])
    elif fields.get("active") is True and not unit.active and unit.parent_code is not None:
        # Reactivating under an inactive parent would undo what deactivation guards.
        await require_unit(session, unit.parent_code, ["body", "active"])
    if fields.get("head_nip") is not None and fields["head_nip"] != unit.head_nip:
        _refuse_self_appointment(actor, fields["head_nip"])
        await require_active_employee(session, fields["head_nip"], ["body", "head_nip"])
    if fields.get("active") is False and unit.active:
        await _refuse_deactivating_unit_in_use(session, unit.code)
    await _apply_update(session, actor, unit, fields)
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


# --- workspaces ---------------------------------------------------------------


async def create_workspace(session: AsyncSession, actor: str, body: WorkspaceCreate) -> Workspace:
    await _refuse_existing(session, Workspace, body.code)
    await require_unit(session, body.unit_code, ["body", "unit_code"])
    return await _insert(session, actor, Workspace(**body.model_dump()))


async def update_workspace(
    session: AsyncSession, actor: str, code: str, body: WorkspaceUpdate
) -> Workspace:
    workspace = await get_workspace(session, code, for_update=True)
    fields = body.fields()
    if "unit_code" in fields and fields["unit_code"] != workspace.unit_code:
        await require_unit(session, fields["unit_code"], ["body", "unit_code"])
    elif fields.get("active") is True and not workspace.active:
        # An active workspace in an inactive unit is what deactivating the unit refuses.
        await require_unit(session, workspace.unit_code, ["body", "active"])
    await _apply_update(session, actor, workspace, fields)
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
    await _refuse_existing(session, Employee, body.nip)
    if body.unit_code is not None:
        await require_unit(session, body.unit_code, ["body", "unit_code"])
    employee = Employee(**body.model_dump(exclude={"roles"}), **_role_flags(body.roles))
    return await _insert(session, actor, employee)


async def update_employee(
    session: AsyncSession, actor: str, nip: str, body: EmployeeUpdate
) -> Employee:
    fields = body.fields()
    if fields.get("active") is False or ("roles" in fields and "admin" not in fields["roles"]):
        # Before the employee's own row is locked: the admins' rows are locked first.
        await _refuse_losing_last_admin(session, nip)
    employee = await get_employee(session, nip, for_update=True)
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
    await _apply_update(session, actor, employee, fields)
    return employee


async def ensure_admins(session: AsyncSession, nips: Sequence[str]) -> None:
    """BOOTSTRAP_ADMIN_NIPS: each exists, active, with the admin role. Instances starting
    at once on a new database take turns (a transaction-scoped lock on PostgreSQL; SQLite
    has one writer), so the second finds what the first made."""
    await take_turns(session, _BOOTSTRAP_LOCK)
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
