"""Ed25519 keys as JSON Web Keys: the public half (RFC 8037) named by its RFC 7638
thumbprint. Shared by local mode's token key and the signed permits' keys, which both
appear in `/.well-known/jwks.json`."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from jwt.utils import base64url_encode

REQUIRED_MEMBERS = ("crv", "kty", "x")
"""An OKP key's members its thumbprint covers (RFC 7638 §3.2)."""


def public_jwk(key: Ed25519PublicKey) -> dict[str, Any]:
    """The key as a JWK for EdDSA signatures, `kid` = its RFC 7638 thumbprint (SHA-256 of
    the required members in canonical JSON, base64url)."""
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key, as_dict=True)
    required = {name: jwk[name] for name in REQUIRED_MEMBERS}
    kid = base64url_encode(hashlib.sha256(rfc8785.dumps(required)).digest()).decode()
    return {**required, "kid": kid, "alg": "EdDSA", "use": "sig"}


def private_pem(key: Ed25519PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM (for a file of mode 0600, or sealing)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_pem(pem: bytes, where: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; `ValueError` naming `where` for anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} is not a PEM private key without a password: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{where} does not hold an Ed25519 private key")
    return key
