"""Bearer token verification (RFC 8725 practices).

Only asymmetric algorithms are accepted, the algorithm must be the one of the
key the `kid` names, and the key comes only from the configured key source:
header parameters that point elsewhere (`jku`, `x5u`, `jwk`, `x5c`) are refused.
"""

from __future__ import annotations

from typing import Any

import jwt

from app.auth.jwks import ALLOWED_ALGORITHMS, KeySource, KeysUnavailable
from app.config import Settings
from app.errors import ServiceUnavailable, Unauthenticated

MAX_TOKEN_LENGTH = 8 * 1024
_FOREIGN_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")


def _refuse(detail: str, code: str = "invalid_token") -> Unauthenticated:
    return Unauthenticated(detail, code=code)


class TokenVerifier:
    def __init__(self, settings: Settings, keys: KeySource) -> None:
        self.keys = keys
        self.issuer = settings.issuer
        self.audience = settings.audience
        self.nip_claim = settings.auth_nip_claim
        self.leeway = settings.auth_leeway_seconds

    async def verified_nip(self, token: str) -> str:
        """The NIP a valid token speaks for; `Unauthenticated` otherwise."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise _refuse(f"The token is longer than {MAX_TOKEN_LENGTH} characters.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _refuse("The bearer token is not a well-formed JWT.") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise _refuse(f"Tokens signed with {alg!r} are not accepted (RS256, ES256, EdDSA).")
        if any(name in header for name in _FOREIGN_KEY_HEADERS):
            raise _refuse("Tokens may not carry or point to their own keys (jku, x5u, jwk, x5c).")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refuse("The token's kid is not a string.")
        try:
            key = await self.keys.key_for(kid)
        except KeysUnavailable:
            raise ServiceUnavailable(
                "The identity provider's keys cannot be loaded; try again shortly.",
                code="auth_unavailable",
                headers={"Retry-After": "5"},
            ) from None
        if key is None:
            raise _refuse("The token is signed by an unknown key.")
        if key.algorithm_name != alg:
            raise _refuse("The token's algorithm does not match its key.")
        claims = self._decode(token, key.key, alg)
        nip = claims.get(self.nip_claim)
        if not isinstance(nip, str) or not nip:
            raise _refuse(f"The token has no {self.nip_claim!r} claim naming an employee.")
        return nip

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _refuse("The token has expired.", "token_expired") from None
        except jwt.ImmatureSignatureError:
            raise _refuse("The token is not valid yet (nbf/iat in the future).") from None
        except jwt.InvalidAudienceError:
            raise _refuse("The token is not meant for this service (aud).") from None
        except jwt.InvalidIssuerError:
            raise _refuse(
                "The token was issued by an issuer this service does not trust."
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse(f"The token lacks the required {exc.claim!r} claim.") from None
        except jwt.InvalidSignatureError:
            raise _refuse("The token's signature does not verify.") from None
        except jwt.InvalidTokenError:
            raise _refuse("The token is not valid.") from None
        return claims
