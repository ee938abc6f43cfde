"""The permit workflow: submission under SE 47/2025, reading one permit, and the
transitions of its lifecycle, which `app.permits.lifecycle` holds as a table and applies
(docs/RULES.md#transitions).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.ids import new_id
from app.org.models import Employee, Unit, Workspace
from app.permits import events, policy
from app.permits.approvers import resolve_approvers
from app.permits.lifecycle import apply_transition, effective_status
from app.permits.models import Permit
from app.permits.presentation import present
from app.permits.schemas import PermitCreate, PermitOut
from app.permits.visibility import visible_permit
from app.permits.vocabulary import channel_key
from app.timeutil import format_instant, utcnow


def limits_from(settings: Settings) -> policy.Limits:
    return policy.Limits(
        max_duration=timedelta(minutes=settings.policy_max_duration_minutes),
        max_lead=timedelta(days=settings.policy_max_lead_days),
    )


async def read_permit(session: AsyncSession, employee: Employee, permit_id: str) -> PermitOut:
    """The permit if `employee` may read it (docs/RULES.md#readers); 404 otherwise."""
    now = utcnow()
    permit, approvers = await visible_permit(session, employee, permit_id, now, for_update=False)
    return present(permit, effective_status(permit, now), approvers)


async def take_action(
    session: AsyncSession,
    employee: Employee,
    permit_id: str,
    action: str,
    text: str | None = None,
    if_match: int | None = None,
) -> PermitOut:
    """`employee` approves, denies, cancels or revokes the permit (docs/RULES.md#transitions)."""
    permit = await apply_transition(
        session, permit_id, action, by=employee, text=text, if_match=if_match
    )
    return present(permit, permit.status, [])


# --- submission -----------------------------------------------------------------


async def submit_permit(
    session: AsyncSession, requester: Employee, body: PermitCreate, limits: policy.Limits
) -> PermitOut:
    now = utcnow()
    policy.check_purpose(body.purpose)
    policy.check_attestations(body.attestations.model_dump())
    policy.check_window(body.starts_at, body.ends_at, now=now, limits=limits)
    workspace = await session.get(Workspace, body.workspace_code)
    if workspace is None:
        raise policy.unknown_workspace(body.workspace_code)
    unit = await session.get(Unit, workspace.unit_code)
    if not workspace.active or unit is None or not unit.active:
        raise policy.workspace_inactive(workspace.code)
    permit = Permit(
        id=new_id(),
        requester_nip=requester.nip,
        workspace_code=workspace.code,
        unit_code=workspace.unit_code,
        platform=body.platform,
        channel=body.channel,
        channel_key=channel_key(body.channel),
        purpose=body.purpose,
        title=body.title,
        description=body.description,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        attestations={k: bool(v) for k, v in body.attestations.model_dump().items()},
        status="pending",
        created_at=now,
        updated_at=now,
        version=1,
    )
    session.add(permit)
    await session.flush()
    # Everything else first: the audit append holds the chain's lock until the commit.
    approvers = await resolve_approvers(session, permit, now)
    status = effective_status(permit, now)
    await events.record(
        session,
        permit,
        actor=requester.nip,
        action="permit.submitted",
        data={
            "workspace_code": permit.workspace_code,
            "unit_code": permit.unit_code,
            "platform": permit.platform,
            "channel": permit.channel,
            "purpose": permit.purpose,
            "title": permit.title,
            "starts_at": format_instant(permit.starts_at),
            "ends_at": format_instant(permit.ends_at),
            "attestations": permit.attestations,
        },
        status=status,
        approvers=approvers,
    )
    return present(permit, status, approvers)
