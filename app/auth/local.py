"""Local mode: the service's own Ed25519 signing key, kept in DATA_DIR.

Created once, atomically (two processes starting together agree on one key),
readable only by its owner. Anyone who can read it can mint tokens, so local
mode is for trying the service on one machine, not for production.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.config import Settings
from app.files import create_once
from app.timeutil import utcnow

KEY_FILE = "local-signing-key.pem"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class LocalSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        public = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
        # RFC 7638 thumbprint: the required members, sorted, no spaces.
        thumbprint = hashlib.sha256(
            json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
        ).digest()
        self.kid = _b64url(thumbprint)
        self.public_jwk: dict[str, Any] = {**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

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
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = create_once(data_dir / KEY_FILE, pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError(f"{path} does not hold an Ed25519 private key")
    return LocalSigner(key)
