"""Helpers for signed-permit tests: an approved permit and its credential, and reading
credentials and status lists the way a third party would — with jwcrypto, a JOSE library
the service does not use, and the published JWKS."""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from jwcrypto import jwk, jws
from jwcrypto.common import base64url_decode

from tests.permits_support import Office, move_window

JWKS = "/.well-known/jwks.json"
VERIFY = "/api/v1/credentials/verify"


async def approved(office: Office, **body: Any) -> dict[str, Any]:
    """A permit of `office.staff`, approved by the unit's head."""
    permit = await office.submit(**body)
    response = await office.act(permit["id"], "approve", office.head["nip"])
    assert response.status_code == 200, response.text
    return dict(response.json())


async def running(app: FastAPI, office: Office, minutes: int = 60) -> dict[str, Any]:
    """An approved permit whose window began a minute ago (as time passing would make it)."""
    permit = await approved(office)
    await move_window(app, permit["id"], timedelta(minutes=-1), minutes)
    return permit


async def credential_of(office: Office, permit_id: str, nip: str | None = None) -> dict[str, Any]:
    response = await office.client.get(
        f"/api/v1/permits/{permit_id}/credential",
        headers=office.org.as_(nip or office.staff["nip"]),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def published_keys(client: httpx.AsyncClient) -> jwk.JWKSet:
    response = await client.get(JWKS)
    assert response.status_code == 200, response.text
    return jwk.JWKSet.from_json(response.text)


def opened(token: str, keys: jwk.JWKSet) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token's header and claims, its EdDSA signature verified by jwcrypto with the
    published key its `kid` names (raises if it does not verify)."""
    signed = jws.JWS()
    signed.deserialize(token)
    header = signed.jose_header
    key = keys.get_key(header["kid"])
    assert key is not None, f"kid {header['kid']} is not published"
    signed.verify(key, alg="EdDSA")
    return dict(header), json.loads(signed.payload)


async def status_bit(client: httpx.AsyncClient, credential: str) -> int:
    """The credential's bit in its status list, read as a verifier reads it: fetch the list
    its claim names, verify the list's signature, decompress, take the bit."""
    keys = await published_keys(client)
    _, claims = opened(credential, keys)
    reference = claims["status"]["status_list"]
    response = await client.get(urlsplit(reference["uri"]).path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/statuslist+jwt"
    header, listed = opened(response.text, keys)
    assert header["typ"] == "statuslist+jwt"
    assert listed["sub"] == reference["uri"]
    assert listed["status_list"]["bits"] == 1
    bits = zlib.decompress(base64url_decode(listed["status_list"]["lst"]))
    index = reference["idx"]
    return (bits[index // 8] >> (index % 8)) & 1


async def verdict(client: httpx.AsyncClient, credential: Any) -> dict[str, Any]:
    response = await client.post(VERIFY, json={"credential": credential})
    assert response.status_code == 200, response.text
    return dict(response.json())
