"""Request and response bodies of the permit endpoints."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, Field, StrictBool

from app.permits.vocabulary import Capacity, Platform, Purpose, Status
from app.schemas import Code, InputModel, OutputModel, Trimmed
from app.timeutil import Instant

Channel = Annotated[str, Trimmed(200)]
Title = Annotated[str, Trimmed(200)]
Reason = Annotated[str, Trimmed(2000)]
Note = Annotated[str, Trimmed(2000, empty=True)]


class Attestations(InputModel):
    """The requester's statements that the stream keeps the SE's other clauses."""

    no_uniform_misuse: StrictBool | None = None
    no_confidential_information: StrictBool | None = None
    no_disparagement: StrictBool | None = None
    no_demeaning_content: StrictBool | None = None
    no_sara_hoax_or_negative_content: StrictBool | None = None
    political_neutrality: StrictBool | None = None


class PermitCreate(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "workspace_code": "DKI-STUDIO",
        "platform": "youtube",
        "channel": "@diskominfotik.anambas",
        "purpose": "public_information",
        "title": "Siaran langsung sosialisasi Mal Pelayanan Publik",
        "description": "Tanya jawab layanan perizinan bersama warga Tarempa",
        "starts_at": "2027-01-12T09:00:00+07:00",
        "ends_at": "2027-01-12T10:30:00+07:00",
        "attestations": {
            "no_uniform_misuse": True,
            "no_confidential_information": True,
            "no_disparagement": True,
            "no_demeaning_content": True,
            "no_sara_hoax_or_negative_content": True,
            "political_neutrality": True,
        },
    }

    workspace_code: Code
    platform: Platform
    channel: Channel
    purpose: Purpose
    title: Title
    description: Annotated[str, Trimmed(5000, empty=True)] | None = None
    starts_at: Instant
    ends_at: Instant
    attestations: Attestations = Field(default_factory=Attestations)


class ApproveBody(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "note": "Disetujui; gunakan latar resmi Pemkab Kepulauan Anambas."
    }

    note: Note | None = None


class DenyBody(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "reason": "Studio dipakai untuk rekaman iklan layanan masyarakat pada jam itu."
    }

    reason: Reason


class CancelBody(InputModel):
    example: ClassVar[dict[str, Any] | None] = {"reason": "Acara diundur ke pekan depan."}

    reason: Note | None = None


class RevokeBody(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "reason": "Jadwal bertabrakan dengan siaran resmi Bupati."
    }

    reason: Reason


class PermitOut(OutputModel):
    id: str
    requester_nip: str
    workspace_code: str
    unit_code: str
    platform: Platform
    channel: str
    purpose: Purpose
    title: str
    description: str | None
    starts_at: Instant
    ends_at: Instant
    attestations: dict[str, bool]
    status: Status
    decided_by: str | None
    decided_as: Capacity | None
    decided_at: Instant | None
    decision_note: str | None
    closed_by: str | None = Field(description="Who cancelled or revoked the permit.")
    closed_at: Instant | None
    close_reason: str | None
    created_at: Instant
    updated_at: Instant
    version: int
    approvers: list[str] = Field(
        description="NIPs who may decide the permit now; empty once decided."
    )


# --- the published policy (`GET /api/v1/policy`) ---------------------------------------


class PolicyClause(BaseModel):
    number: int
    citation: str
    text_id: str = Field(description="The clause in Bahasa Indonesia.")
    text_en: str


class PolicyAttestation(BaseModel):
    name: str
    clause: int


class PolicyRule(BaseModel):
    code: str = Field(description="The `code` of the problem a submission breaking it gets.")
    rule: str
    clause: int | list[int]
    attestations: list[PolicyAttestation] | None = Field(
        None, description="Only on `attestation_required`."
    )
    limits: dict[str, int] | None = Field(None, description="Only on `invalid_window`.")


class PolicyOut(BaseModel):
    source: str
    clauses: list[PolicyClause]
    rules: list[PolicyRule]
