"""Verify a signed permit of Izin Siaran, as a platform or a guard's app would: offline but
for the service's published keys and status list (docs/RULES.md#verification).

    python verify_credential.py https://izin.anambaskab.go.id <credential>

prints the verdict (`valid`, `revoked`, `not_yet_valid`, `expired`, `bad_signature`,
`malformed`) and, once the signature verifies, the claims; exits 0 only when valid.
Needs PyJWT with its crypto extra (`pip install "pyjwt[crypto]"`) and nothing else. A real
verifier keeps the JWKS (fetching it again only for a `kid` it does not know) and each
status list for its `ttl`, so it goes on working without a network for that long.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
import zlib
from typing import Any

import jwt
from jwt.utils import base64url_decode

PERMIT_TYPE = "izin-siaran-permit+jwt"
LIST_TYPE = "statuslist+jwt"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (https in use)
        return bytes(response.read())


def verify(credential: str, issuer: str) -> tuple[str, dict[str, Any] | None]:
    # 1. A compact JWS of this kind: EdDSA, the permit type, a key id.
    try:
        header = jwt.get_unverified_header(credential)
    except jwt.PyJWTError:
        return "malformed", None
    if header.get("alg") != "EdDSA" or header.get("typ") != PERMIT_TYPE or "kid" not in header:
        return "malformed", None
    # 2. Signed by a key the issuer publishes.
    keys = jwt.PyJWKSet.from_json(fetch(f"{issuer}/.well-known/jwks.json").decode())
    try:
        key = keys[header["kid"]]
    except KeyError:
        return "bad_signature", None
    try:
        claims = jwt.decode(
            credential,
            key,
            algorithms=["EdDSA"],
            issuer=issuer,
            options={"verify_exp": False, "verify_nbf": False},  # judged last, below
        )
    except jwt.InvalidSignatureError:
        return "bad_signature", None
    except jwt.PyJWTError:
        return "malformed", None
    # 3. Not withdrawn: its bit in the status list the credential names, itself signed.
    reference = claims["status"]["status_list"]
    listed = fetch(reference["uri"]).decode()
    if jwt.get_unverified_header(listed).get("typ") != LIST_TYPE:
        return "malformed", claims
    status = jwt.decode(
        listed, keys[jwt.get_unverified_header(listed)["kid"]], algorithms=["EdDSA"]
    )
    if status["sub"] != reference["uri"]:
        return "malformed", claims
    bits = zlib.decompress(base64url_decode(status["status_list"]["lst"]))
    index = reference["idx"]
    if (bits[index // 8] >> (index % 8)) & 1:
        return "revoked", claims
    # 4. Within its window.
    now = time.time()
    if now < claims["nbf"]:
        return "not_yet_valid", claims
    if now >= claims["exp"]:
        return "expired", claims
    return "valid", claims


if __name__ == "__main__":
    reason, claims = verify(sys.argv[2], sys.argv[1].rstrip("/"))
    print(reason)
    if claims is not None:
        print(json.dumps(claims, indent=2, ensure_ascii=False))
    sys.exit(0 if reason == "valid" else 1)
