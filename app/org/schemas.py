"""Request and response bodies of the organisation endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, computed_field

from app.schemas import (
    Absent,
    Code,
    FilterText,
    InputModel,
    Name,
    NipStr,
    OutputModel,
    PatchModel,
    Text,
)
from app.timeutil import Instant, utcnow

WorkspaceKind = Literal["administrative", "service", "meeting", "studio", "other"]
EmploymentKind = Literal["pns", "pppk"]
Role = Literal["admin", "auditor"]
DelegationKind = Literal["plh", "plt"]


# --- the lists' filters (each optional; the list's query) ------------------------------


class _Filters(BaseModel):
    model_config = ConfigDict(frozen=True)


class UnitFilters(_Filters):
    parent_code: FilterText | None = None
    active: bool | None = None


class WorkspaceFilters(_Filters):
    unit_code: FilterText | None = None
    kind: WorkspaceKind | None = None
    active: bool | None = None


class EmployeeFilters(_Filters):
    unit_code: FilterText | None = None
    active: bool | None = None


# --- bodies -----------------------------------------------------------------------------


class UnitCreate(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "code": "DISKOMINFOTIK",
        "name": "Dinas Komunikasi, Informatika dan Statistik",
        "parent_code": "SETDA",
        "head_nip": "197808172003121001",
    }

    code: Code
    name: Name
    parent_code: Code | None = None
    head_nip: NipStr | None = None
    active: StrictBool = True


class UnitUpdate(PatchModel):
    """Only the fields present change; `null` clears `parent_code` or `head_nip`."""

    example: ClassVar[dict[str, Any] | None] = {"head_nip": "198311252008011003"}

    name: Name | Absent = None
    parent_code: Code | None = None
    head_nip: NipStr | None = None
    active: StrictBool | Absent = None


class UnitOut(OutputModel):
    code: str
    name: str
    parent_code: str | None
    head_nip: str | None
    active: bool
    created_at: Instant
    updated_at: Instant


class WorkspaceCreate(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "code": "DKI-STUDIO",
        "name": "Studio Siaran Diskominfotik, Tarempa",
        "unit_code": "DISKOMINFOTIK",
        "kind": "studio",
    }

    code: Code
    name: Name
    unit_code: Code
    kind: WorkspaceKind
    active: StrictBool = True


class WorkspaceUpdate(PatchModel):
    """Only the fields present change."""

    example: ClassVar[dict[str, Any] | None] = {"name": "Ruang Rapat Bupati", "kind": "meeting"}

    name: Name | Absent = None
    unit_code: Code | Absent = None
    kind: WorkspaceKind | Absent = None
    active: StrictBool | Absent = None


class WorkspaceOut(OutputModel):
    code: str
    name: str
    unit_code: str
    kind: WorkspaceKind
    active: bool
    created_at: Instant
    updated_at: Instant


class EmployeeCreate(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "nip": "199204032019032005",
        "name": "Nurul Aini, S.I.Kom",
        "employment": "pns",
        "unit_code": "DISKOMINFOTIK",
        "position": "Pranata Humas",
    }

    nip: NipStr
    name: Name
    employment: EmploymentKind = "pns"
    unit_code: Code | None = None
    position: Name | None = None
    roles: list[Role] = Field(default_factory=list, max_length=2)
    active: StrictBool = True


class EmployeeUpdate(PatchModel):
    """Only the fields present change; `null` clears `unit_code` or `position`."""

    example: ClassVar[dict[str, Any] | None] = {
        "unit_code": "KEC-SIANTAN",
        "position": "Staf Pelayanan",
    }

    name: Name | Absent = None
    employment: EmploymentKind | Absent = None
    unit_code: Code | None = None
    position: Name | None = None
    roles: Annotated[list[Role], Field(max_length=2)] | Absent = None
    active: StrictBool | Absent = None


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
    example: ClassVar[dict[str, Any] | None] = {
        "delegate_nip": "198311252008011003",
        "kind": "plh",
        "starts_at": "2027-01-11T08:00:00+07:00",
        "ends_at": "2027-01-15T17:00:00+07:00",
        "reason": "Kepala Dinas mengikuti rapat koordinasi di Tanjungpinang",
    }

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
