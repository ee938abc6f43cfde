"""Request and response bodies of the organisation endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, computed_field

from app.schemas import Code, InputModel, Name, NipStr, OutputModel, Text
from app.timeutil import Instant, utcnow

WorkspaceKind = Literal["administrative", "service", "meeting", "studio", "other"]
EmploymentKind = Literal["pns", "pppk"]
Role = Literal["admin", "auditor"]
DelegationKind = Literal["plh", "plt"]


# --- the lists' filters (each optional; the list's query) ------------------------------


class _Filters(BaseModel):
    model_config = ConfigDict(frozen=True)


class UnitFilters(_Filters):
    parent_code: str | None = Field(None, max_length=32)
    active: bool | None = None


class WorkspaceFilters(_Filters):
    unit_code: str | None = Field(None, max_length=32)
    kind: WorkspaceKind | None = None
    active: bool | None = None


class EmployeeFilters(_Filters):
    unit_code: str | None = Field(None, max_length=32)
    active: bool | None = None


# --- bodies -----------------------------------------------------------------------------


class UnitCreate(InputModel):
    code: Code
    name: Name
    parent_code: Code | None = None
    head_nip: NipStr | None = None
    active: StrictBool = True


class UnitUpdate(InputModel):
    """Only the fields present change; `null` clears `parent_code` or `head_nip`."""

    name: Name | None = None
    parent_code: Code | None = None
    head_nip: NipStr | None = None
    active: StrictBool | None = None


class UnitOut(OutputModel):
    code: str
    name: str
    parent_code: str | None
    head_nip: str | None
    active: bool
    created_at: Instant
    updated_at: Instant


class WorkspaceCreate(InputModel):
    code: Code
    name: Name
    unit_code: Code
    kind: WorkspaceKind
    active: StrictBool = True


class WorkspaceUpdate(InputModel):
    name: Name | None = None
    unit_code: Code | None = None
    kind: WorkspaceKind | None = None
    active: StrictBool | None = None


class WorkspaceOut(OutputModel):
    code: str
    name: str
    unit_code: str
    kind: WorkspaceKind
    active: bool
    created_at: Instant
    updated_at: Instant


class EmployeeCreate(InputModel):
    nip: NipStr
    name: Name
    employment: EmploymentKind = "pns"
    unit_code: Code | None = None
    position: Name | None = None
    roles: list[Role] = Field(default_factory=list, max_length=2)
    active: StrictBool = True


class EmployeeUpdate(InputModel):
    name: Name | None = None
    employment: EmploymentKind | None = None
    unit_code: Code | None = None
    position: Name | None = None
    roles: list[Role] | None = Field(default=None, max_length=2)
    active: StrictBool | None = None


class EmployeeOut(OutputModel):
    nip: str
    name: str
    employment: EmploymentKind
    unit_code: str | None
    position: str | None
    roles: list[Role]
    active: bool
    created_at: Instant
    updated_at: Instant


class DelegationCreate(InputModel):
    delegate_nip: NipStr
    kind: DelegationKind
    starts_at: Instant
    ends_at: Instant
    reason: Text


class DelegationOut(OutputModel):
    id: str
    unit_code: str
    delegate_nip: str
    kind: DelegationKind
    starts_at: Instant
    ends_at: Instant
    reason: str
    created_by: str
    created_at: Instant
    revoked_at: Instant | None
    revoked_by: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def in_force(self) -> bool:
        """Whether the delegate may act for the unit right now."""
        now: datetime = utcnow()
        return self.revoked_at is None and self.starts_at <= now < self.ends_at


class Deputyship(OutputModel):
    unit_code: str
    kind: DelegationKind
    delegation_id: str
    starts_at: Instant
    ends_at: Instant


class MeOut(EmployeeOut):
    heads: list[str] = Field(description="Codes of the active units this employee heads.")
    deputises: list[Deputyship] = Field(
        description="Delegations (Plh/Plt) in force now for this employee."
    )
