"""Request and response bodies of the signed permits' endpoints."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from app.credentials.verifier import CredentialClaims, Reason
from app.schemas import InputModel


class CredentialOut(BaseModel):
    credential: str = Field(description="The signed permit: a compact JWS (EdDSA).")
    verify_url: str = Field(description="The page that verifies it; its QR code is the .svg/.png.")


class VerifyRequest(InputModel):
    example: ClassVar[dict[str, Any] | None] = {
        "credential": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiIsInR5cCI6Iml6aW4tc2lhcmFuLXBlcm1pdCtqd3Qi"
        "fQ.e30.c2ln"
    }

    credential: StrictStr = Field(
        description="Any text: what is not a credential is answered `malformed`, not refused."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return data  # any string gets a verdict (SPEC §9), NUL included: it is `malformed`


class VerifyOut(BaseModel):
    valid: bool
    reason: Reason
    permit: CredentialClaims | None = Field(
        description="The credential's claims; null unless its signature verified."
    )


class PublicKey(BaseModel):
    """A JSON Web Key (RFC 7517): the public half only."""

    model_config = ConfigDict(extra="allow")  # the key type's own members (`x`, `crv`, …)

    kty: str
    kid: str
    alg: str | None = None
    use: str | None = None


class KeySet(BaseModel):
    keys: list[PublicKey]
