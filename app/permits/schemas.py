"""Request and response bodies of the permit endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StringConstraints

from app.permits.vocabulary import Capacity, Platform, Purpose, Status
from app.schemas import Code, InputModel, OutputModel
from app.timeutil import Instant

Channel = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Attestations(InputModel):
    """The requester's statements that the stream keeps the SE's other clauses."""

    no_uniform_misuse: StrictBool | None = None
    no_confidential_information: StrictBool | None = None
    no_disparagement: StrictBool | None = None
    no_demeaning_content: StrictBool | None = None
    no_sara_hoax_or_negative_content: StrictBool | None = None
    political_neutrality: StrictBool | None = None


class PermitCreate(InputModel):
    workspace_code: Code
    platform: Platform
    channel: Channel
    purpose: Purpose
    title: Title
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    starts_at: Instant
    ends_at: Instant
    attestations: Attestations = Field(default_factory=Attestations)


class ApproveBody(InputModel):
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class DenyBody(InputModel):
    reason: Reason


class CancelBody(InputModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class RevokeBody(InputModel):
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
