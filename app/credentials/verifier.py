"""Verifying a signed permit (SPEC §9, docs/RULES.md#verification): the steps the docs give
third parties (`docs/verify_credential.py`), with the permit's status read at once instead
of from a status list. `POST /api/v1/credentials/verify` and the `/verify` page both call
`verify`.

Reasons are judged in this order, the first that applies wins: `malformed` (not a compact
JWS of this kind: header `alg` EdDSA, `typ` izin-siaran-permit+jwt, a `kid`, and the
claims a credential has), `bad_signature` (no published key of this service has that
`kid`, or the signature does not verify with it), `revoked` (the permit is revoked or
cancelled, or no longer known), `not_yet_valid` (before `nbf`), `expired` (from `exp`
on), else `valid`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from app.credentials.issuing import TYPE
from app.permits.status_list import is_withdrawn

Reason = Literal["valid", "revoked", "not_yet_valid", "expired", "bad_signature", "malformed"]
MAX_LENGTH = 8192
"""Longer than any credential this service signs: judged `malformed` unread."""


class StatusReference(BaseModel):
    idx: StrictInt = Field(ge=0)
    uri: StrictStr


class CredentialStatus(BaseModel):
    status_list: StatusReference


class CredentialClaims(BaseModel):
    """What a signed permit says (SPEC §9): times are Unix seconds; `nip_hint` is the
    last 4 digits of the requester's NIP."""

    model_config = ConfigDict(extra="allow")

    iss: StrictStr
    sub: StrictStr
    iat: StrictInt
    nbf: StrictInt
    exp: StrictInt
    name: StrictStr
    nip_hint: StrictStr
    workspace_code: StrictStr
    unit_code: StrictStr
    platform: StrictStr
    channel: StrictStr
    decided_as: StrictStr | None
    status: CredentialStatus


@dataclass(frozen=True)
class Verdict:
    reason: Reason
    claims: CredentialClaims | None  # None unless the signature verified

    @property
    def valid(self) -> bool:
        return self.reason == "valid"


KeyOf = Callable[[str], Awaitable[Ed25519PublicKey | None]]
StatusOf = Callable[[str], Awaitable[str | None]]


async def verify(credential: str, key_of: KeyOf, status_of: StatusOf, now: datetime) -> Verdict:
    """The verdict on `credential` at `now`: `key_of(kid)` is the published key (None if
    there is none), `status_of(permit_id)` the permit's recorded status (None if unknown)."""
    malformed = Verdict("malformed", None)
    if len(credential) > MAX_LENGTH:
        return malformed
    try:
        header = jwt.get_unverified_header(credential)
        unverified: dict[str, Any] = jwt.decode(credential, options={"verify_signature": False})
        CredentialClaims.model_validate(unverified)
    except (jwt.PyJWTError, ValidationError):
        return malformed
    kid = header.get("kid")
    if header.get("alg") != "EdDSA" or header.get("typ") != TYPE or not isinstance(kid, str):
        return malformed
    key = await key_of(kid)
    if key is None:
        return Verdict("bad_signature", None)
    try:
        payload = jwt.decode(
            credential,
            key,
            algorithms=["EdDSA"],
            # Time is judged below, after the status; no audience is ever set.
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
            },
        )
    except jwt.PyJWTError:
        return Verdict("bad_signature", None)
    claims = CredentialClaims.model_validate(payload)
    status = await status_of(claims.sub)
    if status is None or is_withdrawn(status):
        return Verdict("revoked", claims)
    instant = now.timestamp()
    if instant < claims.nbf:
        return Verdict("not_yet_valid", claims)
    if instant >= claims.exp:
        return Verdict("expired", claims)
    return Verdict("valid", claims)
