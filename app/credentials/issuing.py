"""A signed permit (SPEC §9, docs/RULES.md#signed-permits): the claims of an approved
permit, signed as a compact JWS, and its verify URL as a QR code."""

from __future__ import annotations

import io
import math
from datetime import datetime
from typing import Any, Literal

import jwt
import segno

from app.credentials.keys import Signer
from app.permits.models import Permit

TYPE = "izin-siaran-permit+jwt"
"""The credential's `typ` header: it is no other kind of token."""
NIP_HINT_DIGITS = 4
"""A credential is public: it shows a NIP's last digits only (the rest encodes a birth
date and sex)."""
STATUS_LISTS = "/api/v1/status-lists/"


def status_list_uri(base_url: str, number: int) -> str:
    return f"{base_url}{STATUS_LISTS}{number}"


def verify_url(base_url: str, credential: str) -> str:
    """The page that verifies `credential` (a compact JWS is URL-safe as it is)."""
    return f"{base_url}/verify?credential={credential}"


def nip_hint(nip: str) -> str:
    return nip[-NIP_HINT_DIGITS:]


def claims(permit: Permit, name: str, base_url: str, now: datetime) -> dict[str, Any]:
    """What the credential says: who (by name and the NIP's last digits), where, which
    channel, when, decided how, and where its status bit is. Valid from the first whole
    second of the window to the last (`nbf` rounded up, `exp` down)."""
    assert permit.status_list is not None  # approved: it has its entry
    assert permit.status_idx is not None
    return {
        "iss": base_url,
        "sub": permit.id,
        "iat": int(now.timestamp()),
        "nbf": math.ceil(permit.starts_at.timestamp()),
        "exp": math.floor(permit.ends_at.timestamp()),
        "name": name,
        "nip_hint": nip_hint(permit.requester_nip),
        "workspace_code": permit.workspace_code,
        "unit_code": permit.unit_code,
        "platform": permit.platform,
        "channel": permit.channel,
        "decided_as": permit.decided_as,
        "status": {
            "status_list": {
                "idx": permit.status_idx,
                "uri": status_list_uri(base_url, permit.status_list),
            }
        },
    }


def sign(payload: dict[str, Any], signer: Signer, typ: str = TYPE) -> str:
    """`payload` as a compact JWS, EdDSA (Ed25519), with `typ` and the key's `kid`."""
    return jwt.encode(
        payload, signer.key, algorithm="EdDSA", headers={"kid": signer.kid, "typ": typ}
    )


def qr_code(url: str, kind: Literal["png", "svg"]) -> bytes:
    """`url` as a QR code (error correction M: readable with some of it smudged), four
    modules of quiet zone around it."""
    code = segno.make_qr(url, error="m")
    out = io.BytesIO()
    if kind == "svg":
        code.save(out, kind="svg", scale=4, border=4, xmldecl=False, title="Izin siaran")
    else:
        code.save(out, kind="png", scale=5, border=4)
    return out.getvalue()
