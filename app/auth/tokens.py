"""Bearer token verification (RFC 8725 practices).

Only asymmetric algorithms are accepted, the algorithm must be the one of the
key the `kid` names, and the key comes only from the configured key source:
header parameters that point elsewhere (`jku`, `x5u`, `jwk`, `x5c`) are refused.

A token that verified is remembered (bounded, in this process) with its key and its
time limits, so a service presenting the same token on every check pays for the
signature once. A remembered token is accepted only while its `exp`/`nbf` still hold
and the key source still returns the very key that verified it: a JWKS reload that
drops or replaces the key makes the token go through full verification again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK

from app.auth.jwks import ALLOWED_ALGORITHMS, KeySource, KeysUnavailable
from app.config import Settings
from app.errors import ServiceUnavailable, Unauthenticated

MAX_TOKEN_LENGTH = 8 * 1024
_FOREIGN_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")
MAX_REMEMBERED_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class _Verified:
    nip: str
    kid: str | None
    key: PyJWK
    expires: float  # `exp`, seconds since the epoch
    not_before: float  # `nbf`, or -inf


def _refuse(detail: str, code: str = "invalid_token") -> Unauthenticated:
    return Unauthenticated(detail, code=code)


class TokenVerifier:
    def __init__(
        self, settings: Settings, keys: KeySource, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self._clock = clock
        self.issuer = settings.issuer
        self.audience = settings.audience
        self.nip_claim = settings.auth_nip_claim
        self.leeway = settings.auth_leeway_seconds
        self._verified: dict[str, _Verified] = {}

    async def verified_nip(self, token: str) -> str:
        """The NIP a valid token speaks for; `Unauthenticated` otherwise."""
        known = self._verified.get(token)
        if known is not None:
            now = self._clock()
            if now >= known.expires + self.leeway:
                self._verified.pop(token, None)
                raise _refuse("The token has expired.", "token_expired")
            if now >= known.not_before - self.leeway and (
                await self._current_key(known.kid) is known.key
            ):
                return known.nip
            self._verified.pop(token, None)  # the keys changed: verified afresh below
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
        self._remember(token, _Verified(nip, kid, key, *_limits(claims)))
        return nip

    async def _current_key(self, kid: str | None) -> PyJWK | None:
        try:
            return await self.keys.key_for(kid)
        except KeysUnavailable:
            return None

    def _remember(self, token: str, verified: _Verified) -> None:
        if len(self._verified) >= MAX_REMEMBERED_TOKENS:
            self._verified.clear()  # forgetting costs a verification, never a wrong answer
        self._verified[token] = verified

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


def _limits(claims: dict[str, Any]) -> tuple[float, float]:
    """`exp` and `nbf` as PyJWT has just checked them (numbers; `exp` is required)."""
    nbf = claims.get("nbf")
    return float(claims["exp"]), float(nbf) if nbf is not None else -float("inf")
