"""Signed permits: issuing one to a reader of an approved permit, serving a status list,
and judging a presented credential (docs/RULES.md#signed-permits)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.credentials import issuing, statuslists
from app.credentials.keys import KeyRing
from app.credentials.verifier import Verdict, verify
from app.errors import Conflict
from app.ids import could_be_id
from app.org.models import Employee
from app.permits.lifecycle import effective_status
from app.permits.models import Permit
from app.permits.status_list import withdrawn_entries
from app.permits.visibility import visible_permit
from app.timeutil import utcnow


@dataclass(frozen=True)
class Issued:
    credential: str
    verify_url: str


async def issue(
    session: AsyncSession, reader: Employee, permit_id: str, keys: KeyRing, base_url: str
) -> Issued:
    """A credential of the permit, for one of its readers (404 for anyone else), while it
    is approved (409 `not_approved` otherwise)."""
    now = utcnow()
    permit, _ = await visible_permit(session, reader, permit_id, now, for_update=False)
    status = effective_status(permit, now)
    if status != "approved":
        raise Conflict(
            f"Permit {permit_id} is {status}; only an approved permit has a credential.",
            code="not_approved",
            current_status=status,
        )
    requester = await session.get(Employee, permit.requester_nip)
    name = requester.name if requester is not None else permit.requester_nip
    signer = await keys.signer(session)
    credential = issuing.sign(issuing.claims(permit, name, base_url, now), signer)
    return Issued(credential, issuing.verify_url(base_url, credential))


async def status_list_token(
    session: AsyncSession, number: int, keys: KeyRing, base_url: str
) -> str | None:
    """Status list `number` as a signed token, the bits as the permits' statuses are now;
    None if there is no such list."""
    entries = await withdrawn_entries(session, number)
    if entries is None:
        return None
    size, withdrawn = entries
    signer = await keys.signer(session)
    lst = statuslists.compressed_bits(size, withdrawn)
    return issuing.sign(
        statuslists.payload(base_url, number, lst, utcnow()), signer, statuslists.TYPE
    )


async def judge(session: AsyncSession, credential: str, keys: KeyRing) -> Verdict:
    """The verdict on a presented credential, now, with the permit's status as recorded
    (a revocation is known at once)."""

    async def status_of(permit_id: str) -> str | None:
        if not could_be_id(permit_id):
            return None
        return await session.scalar(select(Permit.status).where(Permit.id == permit_id))

    async def public_key(kid: str) -> Ed25519PublicKey | None:
        return await keys.public_key(session, kid)

    return await verify(credential, public_key, status_of, utcnow())
