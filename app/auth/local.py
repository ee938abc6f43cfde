"""Local mode: the service's own Ed25519 signing key, kept in DATA_DIR.

Created once, atomically (two processes starting together agree on one key),
readable only by its owner. Anyone who can read it can mint tokens, so local
mode is for trying the service on one machine, not for production.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.config import Settings
from app.files import create_once
from app.jwk import load_private_pem, private_pem, public_jwk
from app.timeutil import utcnow

KEY_FILE = "local-signing-key.pem"


class LocalSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_jwk: dict[str, Any] = public_jwk(private_key.public_key())
        self.kid: str = self.public_jwk["kid"]

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def mint(self, settings: Settings, nip: str, *, minutes: int = 60) -> str:
        now = utcnow()
        claims = {
            "iss": settings.issuer,
            "aud": settings.audience,
            settings.auth_nip_claim: nip,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(minutes=minutes),
        }
        return jwt.encode(claims, self._private_key, algorithm="EdDSA", headers={"kid": self.kid})


def load_or_create_signer(data_dir: Path) -> LocalSigner:
    path = create_once(data_dir / KEY_FILE, private_pem(Ed25519PrivateKey.generate()))
    try:
        return LocalSigner(load_private_pem(path.read_bytes(), str(path)))
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
