"""The keys signed permits are signed with (docs/RULES.md#credential-key).

- One key signs at a time, the same on every instance: the operator's
  (`CREDENTIAL_KEY_FILE`, Ed25519 PEM), or else one the service generates once and keeps
  in the database sealed with SECRETS_KEY (`app.secretbox`). `ensure_signing_key` settles
  it at every start; instances starting at once take turns, so they agree on one.
- Every key's public half is published in `/.well-known/jwks.json` while it signs and,
  once retired, until `published_until`: past the end of every credential it can have
  signed (the latest end of any permit ever approved, and at least the longest a permit
  approved now could run: `POLICY_MAX_LEAD_DAYS` + `POLICY_MAX_DURATION_MINUTES`).
- Rotation: `izin-siaran credential-key rotate` (a generated key), or a new
  `CREDENTIAL_KEY_FILE` and a restart. Running instances read the keys again at least
  every `REFRESH_SECONDS`, and at once when a credential names a key they do not know.
  A request that finds the keys due reads them itself, in its own session (a few rows:
  what a verification's own status read costs). No request waits for another's read: a
  request waiting while it holds a pool connection, for a read waiting for a connection,
  is a deadlock once the pool is full.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import SYSTEM_ACTOR, append_event
from app.config import Settings
from app.credentials.models import CredentialKey
from app.db import Database, take_turns
from app.errors import AppError
from app.jwk import load_private_pem, private_pem, public_jwk
from app.permits.models import Permit
from app.secretbox import SecretBox, SecretsKeyError
from app.timeutil import format_instant, utcnow

log = logging.getLogger(__name__)

REFRESH_SECONDS = 10.0
"""How stale an instance's view of the keys may get (a rotation elsewhere)."""

# An arbitrary constant naming "settling the signing key" among the advisory locks.
_KEYS_LOCK = 0x1_2A51_C4ED


class CredentialKeyError(RuntimeError):
    """The configured key cannot be used (the message says why)."""


class CredentialKeyUnavailable(
    AppError, status=503, code="credential_key_unavailable", title="Cannot sign"
): ...


@dataclass(frozen=True)
class Signer:
    kid: str
    key: Ed25519PrivateKey


def read_key_file(settings: Settings) -> Ed25519PrivateKey | None:
    """The key of `CREDENTIAL_KEY_FILE`, if set; `CredentialKeyError` if it is unusable."""
    path = settings.credential_key_file
    if path is None:
        return None
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CredentialKeyError(f"CREDENTIAL_KEY_FILE: cannot read {path}: {exc}") from None
    try:
        return load_private_pem(pem, f"CREDENTIAL_KEY_FILE {path}")
    except ValueError as exc:
        raise CredentialKeyError(str(exc)) from None


async def ensure_signing_key(
    session: AsyncSession, box: SecretBox, settings: Settings, file_key: Ed25519PrivateKey | None
) -> str:
    """At start, in a writing transaction: the key that signs is `file_key` (the operator's,
    registered if new) or the generated one (made now if there is none); any other key
    that signed is retired. Its `kid`."""
    await take_turns(session, _KEYS_LOCK)
    signing = list(await session.scalars(select(CredentialKey).where(_signs())))
    if file_key is not None:
        jwk = public_jwk(file_key.public_key())
        row = await session.get(CredentialKey, jwk["kid"])
        if row is None:
            row = await _add(session, jwk, None, "file")
        elif row.retired_at is not None:
            row.retired_at = row.published_until = None
    else:
        row = next((key for key in signing if key.private_sealed is not None), None)
        if row is None:
            row = await _generate(session, box)
    await _retire(session, [key for key in signing if key.kid != row.kid], settings)
    return row.kid


async def rotate_signing_key(session: AsyncSession, box: SecretBox, settings: Settings) -> str:
    """A new generated key signs from now on; the one before is retired (still published
    until its credentials end). Its `kid`. Not with `CREDENTIAL_KEY_FILE`: the operator
    rotates theirs by replacing the file and restarting."""
    if settings.credential_key_file is not None:
        raise CredentialKeyError(
            "CREDENTIAL_KEY_FILE is set: rotate by putting a new key in the file (on every "
            "instance) and restarting; the key before stays published until its permits end"
        )
    await take_turns(session, _KEYS_LOCK)
    signing = list(await session.scalars(select(CredentialKey).where(_signs())))
    row = await _generate(session, box)
    await _retire(session, signing, settings)
    return row.kid


async def list_keys(session: AsyncSession) -> Sequence[CredentialKey]:
    return (await session.scalars(select(CredentialKey).order_by(CredentialKey.created_at))).all()


def _signs() -> Any:
    return CredentialKey.retired_at.is_(None)


async def _generate(session: AsyncSession, box: SecretBox) -> CredentialKey:
    key = Ed25519PrivateKey.generate()
    jwk = public_jwk(key.public_key())
    return await _add(session, jwk, box.seal(private_pem(key).decode()), "generated")


async def _add(
    session: AsyncSession, jwk: dict[str, Any], sealed: str | None, source: str
) -> CredentialKey:
    row = CredentialKey(kid=jwk["kid"], public_jwk=jwk, private_sealed=sealed, created_at=utcnow())
    session.add(row)
    await session.flush()
    await append_event(
        session,
        actor=SYSTEM_ACTOR,
        action="credential_key.created",
        subject=f"credential_key:{row.kid}",
        data={"kid": row.kid, "source": source},
    )
    return row


async def _retire(session: AsyncSession, rows: Sequence[CredentialKey], settings: Settings) -> None:
    if not rows:
        return
    now = utcnow()
    longest = timedelta(
        days=settings.policy_max_lead_days, minutes=settings.policy_max_duration_minutes
    )
    latest_end: datetime | None = await session.scalar(
        select(func.max(Permit.ends_at)).where(Permit.status_idx.is_not(None))
    )
    until = max(now + longest, latest_end or now)
    for row in rows:
        row.retired_at, row.published_until = now, until
        await append_event(
            session,
            actor=SYSTEM_ACTOR,
            action="credential_key.retired",
            subject=f"credential_key:{row.kid}",
            data={"kid": row.kid, "published_until": format_instant(until)},
        )
    await session.flush()


@dataclass(frozen=True)
class _Keys:
    published: dict[str, tuple[dict[str, Any], Ed25519PublicKey]]
    signer: Signer | None
    why_not: str  # why this instance cannot sign, when `signer` is None


class KeyRing:
    """This process's view of the keys: what it publishes, what it verifies with, and the
    key it signs with; read from the database at most `REFRESH_SECONDS` old, by the
    request that finds them due, in its own session (module docstring)."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        file_key: Ed25519PrivateKey | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db, self._box, self._file_key, self._clock = db, box, file_key, clock
        self._keys = _Keys({}, None, "the keys have not been read yet")
        self._read_at = -float("inf")
        self._opened: dict[str, Ed25519PrivateKey] = {}

    async def load(self) -> None:
        """Read the published keys and open the one that signs (at start, and in tests:
        what an instance's next refresh does)."""
        async with self._db.read() as session:
            await self._load(session)

    async def _fresh(self, session: AsyncSession, since: float) -> None:
        """The keys as read at `since` (a `clock()` instant) or later."""
        if self._read_at < since:
            await self._load(session)

    async def _load(self, session: AsyncSession) -> None:
        began, now = self._clock(), utcnow()
        rows = (
            await session.scalars(
                select(CredentialKey).where(or_(_signs(), CredentialKey.published_until > now))
            )
        ).all()
        published = {row.kid: (row.public_jwk, _public_key(row.public_jwk)) for row in rows}
        signer, why_not = None, "no key signs: the service has not settled one (restart it)"
        current = next((row for row in rows if row.retired_at is None), None)
        if current is not None:
            signer, why_not = self._signer(current)
        if began < self._read_at:
            return  # another request's read, begun later, finished first: it stands
        if signer is None and why_not != self._keys.why_not:
            log.error("this instance cannot sign permits: %s", why_not)  # once, not per request
        self._keys = _Keys(published, signer, why_not)
        self._read_at = began  # what was read is as of then

    def _signer(self, row: CredentialKey) -> tuple[Signer | None, str]:
        if row.private_sealed is None:
            key = self._file_key
            if key is not None and public_jwk(key.public_key())["kid"] == row.kid:
                return Signer(row.kid, key), ""
            return None, (
                f"the signing key {row.kid} is another instance's CREDENTIAL_KEY_FILE: give "
                "every instance the same file"
            )
        opened = self._opened.get(row.kid)
        if opened is None:
            try:
                pem = self._box.open(row.private_sealed)
            except SecretsKeyError as exc:
                return None, f"the signing key does not open: {exc}"
            opened = self._opened[row.kid] = load_private_pem(pem.encode(), "the signing key")
        return Signer(row.kid, opened), ""

    async def signer(self, session: AsyncSession) -> Signer:
        """The key to sign with now; `CredentialKeyUnavailable` (503) if this instance
        cannot (the reason is in the problem, and in the log when the keys are read)."""
        await self._fresh(session, self._clock() - REFRESH_SECONDS)
        keys = self._keys
        if keys.signer is None:
            raise CredentialKeyUnavailable(f"This instance cannot sign permits: {keys.why_not}.")
        return keys.signer

    async def public_key(self, session: AsyncSession, kid: str) -> Ed25519PublicKey | None:
        """The published key `kid`, or None: a key this service never had, or retired long
        enough ago that no credential it signed is still unexpired."""
        asked = self._clock()
        await self._fresh(session, asked - REFRESH_SECONDS)
        if kid not in self._keys.published:
            # A key made since the last read (a rotation elsewhere)?
            await self._fresh(session, asked)
        entry = self._keys.published.get(kid)
        return entry[1] if entry is not None else None

    async def published(self, session: AsyncSession) -> list[dict[str, Any]]:
        """The published keys' JWKs, for `/.well-known/jwks.json`."""
        await self._fresh(session, self._clock() - REFRESH_SECONDS)
        return [jwk for jwk, _ in self._keys.published.values()]


def _public_key(jwk: dict[str, Any]) -> Ed25519PublicKey:
    key = OKPAlgorithm.from_jwk(jwk)
    if not isinstance(key, Ed25519PublicKey):
        raise CredentialKeyError(f"stored key {jwk.get('kid')} is not an Ed25519 public key")
    return key
