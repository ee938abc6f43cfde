"""Signed permits: issuing one to a reader of an approved permit, serving a status list,
and judging a presented credential (docs/RULES.md#signed-permits)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.credentials import issuing, statuslists
from app.credentials.keys import KeyRing, Signer
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
    return _SIGNED_LISTS.token(signer, base_url, number, size, withdrawn)


class _SignedLists:
    """Status list tokens already signed, by what they say: the bits are read from the
    permits on every request, and a list whose bits, key and address are those of a token
    signed less than `REUSE_SECONDS` ago is answered with that token (compressing 16 KiB
    at zlib's highest level costs ~10 ms; reading the set bits, a fraction of that). A
    changed bit is a different key here, so a new token at once."""

    REUSE_SECONDS = 60.0
    MOST = 64

    def __init__(self) -> None:
        self._made: dict[bytes, tuple[float, str]] = {}

    def token(
        self, signer: Signer, base_url: str, number: int, size: int, withdrawn: list[int]
    ) -> str:
        said = hashlib.sha256(
            f"{signer.kid} {base_url} {number} {size} {sorted(withdrawn)}".encode()
        ).digest()
        made = self._made.get(said)
        if made is not None and time.monotonic() - made[0] < self.REUSE_SECONDS:
            return made[1]
        lst = statuslists.compressed_bits(size, withdrawn)
        token = issuing.sign(
            statuslists.payload(base_url, number, lst, utcnow()), signer, statuslists.TYPE
        )
        if len(self._made) >= self.MOST:
            self._made.clear()
        self._made[said] = (time.monotonic(), token)
        return token


_SIGNED_LISTS = _SignedLists()


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
