"""How a permit is shown (docs/RULES.md#approvers): the one shape every path returns —
the routes, the permit read's fast path, and the webhook messages that carry a permit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.permits.approvers import Approver
from app.permits.models import Permit
from app.permits.reader import COLUMNS
from app.permits.schemas import PermitOut


def shown(fields: Mapping[str, Any], status: str, approvers: Sequence[Approver]) -> dict[str, Any]:
    """A permit's API fields as one caller sees it at one instant: its columns, its
    effective `status`, and who may decide it while it is pending (docs/RULES.md#approvers).
    The route (`present`) and the permit read's fast path both show a permit this way."""
    out = {key: fields[key] for key in COLUMNS}
    out["status"] = status
    out["approvers"] = [a.nip for a in approvers] if status == "pending" else []
    return out


def present(permit: Permit, status: str, approvers: Sequence[Approver]) -> PermitOut:
    """`shown`, as the response model."""
    fields = {key: getattr(permit, key) for key in COLUMNS}
    return PermitOut.model_validate(shown(fields, status, approvers))
