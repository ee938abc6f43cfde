"""Signed permits (SPEC §9, docs/RULES.md#signed-permits): the credential of an approved
permit, checked by jwcrypto against the published JWKS; its status bit; verification's
reasons in their order; the verify page; the keys. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from jwcrypto.common import base64url_decode, base64url_encode

from app.config import Settings
from app.main import create_app
from app.nip import WIB
from tests.credentials_support import (
    JWKS,
    VERIFY,
    approved,
    credential_of,
    opened,
    published_keys,
    running,
    status_bit,
    verdict,
)
from tests.permits_support import Office, move_window
from tests.support import ADMIN_NIP, Org, assert_problem, serving

pytestmark = pytest.mark.anyio

BASE = "https://izin.anambaskab.go.id"
TYP = "izin-siaran-permit+jwt"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"public_base_url": BASE})


@pytest.fixture
async def office(org: Org) -> Office:
    return await Office.create(org)


# --- issuing -------------------------------------------------------------------------------


async def test_the_credential_is_an_eddsa_jws_that_says_what_the_permit_says(
    client: httpx.AsyncClient, office: Office
) -> None:
    permit = await approved(office, channel="@DiskominfoTik.Anambas", platform="tiktok")
    issued = await credential_of(office, permit["id"])
    credential = issued["credential"]
    assert issued["verify_url"] == f"{BASE}/verify?credential={credential}"

    header, claims = opened(credential, await published_keys(client))
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "izin-siaran-permit+jwt"
    starts = datetime.fromisoformat(permit["starts_at"])
    ends = datetime.fromisoformat(permit["ends_at"])
    now = datetime.now(UTC).timestamp()
    assert now - 60 < claims["iat"] <= now + 1
    assert claims == {
        "iss": BASE,
        "sub": permit["id"],
        "iat": claims["iat"],
        "nbf": int(starts.timestamp()) + (starts.microsecond > 0),
        "exp": int(ends.timestamp()),
        "name": office.staff["name"],
        "nip_hint": office.staff["nip"][-4:],
        "workspace_code": office.workspace["code"],
        "unit_code": office.unit["code"],
        "platform": "tiktok",
        "channel": "@DiskominfoTik.Anambas",
        "decided_as": "head",
        "status": claims["status"],
    }
    (reference,) = claims["status"].values()
    assert set(reference) == {"idx", "uri"}
    assert isinstance(reference["idx"], int)
    assert 0 <= reference["idx"] < 1 << 17
    assert reference["uri"].startswith(f"{BASE}/api/v1/status-lists/")
    # A credential is public: nowhere the whole NIP (it encodes a birth date and sex).
    assert office.staff["nip"] not in base64url_decode(credential.split(".")[1]).decode()


async def test_every_reader_gets_it_and_the_same_permit_keeps_its_status_entry(
    client: httpx.AsyncClient, office: Office
) -> None:
    permit = await approved(office)
    other = await approved(office, starts_in=timedelta(hours=3))
    keys = await published_keys(client)
    entries = set()
    for nip in (office.staff["nip"], office.head["nip"], ADMIN_NIP):
        _, claims = opened((await credential_of(office, permit["id"], nip))["credential"], keys)
        entries.add(json.dumps(claims["status"]))
    assert len(entries) == 1  # stable: every credential of a permit points at one bit
    _, claims = opened((await credential_of(office, other["id"]))["credential"], keys)
    assert json.dumps(claims["status"]) not in entries


async def test_only_an_approved_permit_has_one_and_only_its_readers_get_it(
    client: httpx.AsyncClient, office: Office
) -> None:
    pending = await office.submit()
    path = f"/api/v1/permits/{pending['id']}/credential"
    for suffix in ("", ".png", ".svg"):
        problem = assert_problem(
            await client.get(path + suffix, headers=office.org.as_(office.staff["nip"])),
            409,
            "not_approved",
        )
        assert problem["current_status"] == "pending"
    permit = await approved(office)
    path = f"/api/v1/permits/{permit['id']}/credential"
    hidden = await client.get(path, headers=office.org.as_(office.colleague["nip"]))
    assert_problem(hidden, 404, "not_found")
    revoked = await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Batal"})
    assert revoked.status_code == 200
    problem = assert_problem(
        await client.get(path, headers=office.org.as_(office.staff["nip"])), 409, "not_approved"
    )
    assert problem["current_status"] == "revoked"
    assert_problem(await client.get(path), 401)


# --- the status list -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "who", "body"),
    [("revoke", "head", {"reason": "Jadwal bentrok"}), ("cancel", "staff", {})],
)
async def test_revoking_or_cancelling_sets_the_bit_at_once(
    client: httpx.AsyncClient, office: Office, action: str, who: str, body: dict[str, Any]
) -> None:
    permit = await approved(office)
    bystander = await approved(office, starts_in=timedelta(hours=3))
    credential = (await credential_of(office, permit["id"]))["credential"]
    other = (await credential_of(office, bystander["id"]))["credential"]
    assert await status_bit(client, credential) == 0

    nip = office.head["nip"] if who == "head" else office.staff["nip"]
    assert (await office.act(permit["id"], action, nip, body)).status_code == 200
    assert await status_bit(client, credential) == 1
    assert await status_bit(client, other) == 0
    assert (await verdict(client, credential))["reason"] == "revoked"
    assert (await verdict(client, other))["reason"] == "not_yet_valid"


async def test_the_status_list_is_public_short_lived_and_unknown_lists_are_404(
    client: httpx.AsyncClient, office: Office
) -> None:
    permit = await approved(office)
    _, claims = opened(
        (await credential_of(office, permit["id"]))["credential"], await published_keys(client)
    )
    path = urlsplit(claims["status"]["status_list"]["uri"]).path
    response = await client.get(path)  # no credential at all
    assert response.status_code == 200
    cache = response.headers["cache-control"]
    assert "public" in cache
    max_age = int(cache.split("max-age=")[1].split(",")[0])
    assert 0 < max_age <= 60
    _, listed = opened(response.text, await published_keys(client))
    assert listed["ttl"] <= 60
    assert listed["iat"] <= datetime.now(UTC).timestamp() < listed["exp"]
    # Unchanged bits answer the token already signed (docs/RULES.md#status-lists): another
    # approval changes no bit; a revocation changes the token at once.
    assert (await client.get(path)).text == response.text
    await approved(office, starts_in=timedelta(hours=3))
    assert (await client.get(path)).text == response.text
    await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Batal"})
    assert (await client.get(path)).text != response.text
    assert_problem(await client.get("/api/v1/status-lists/999"), 404, "not_found")
    assert_problem(await client.get("/api/v1/status-lists/-1"), 422)
    assert_problem(await client.get("/api/v1/status-lists/x"), 422)


# --- verification ---------------------------------------------------------------------------


async def test_a_running_permit_is_valid_and_the_verdict_carries_its_claims(
    client: httpx.AsyncClient, app: FastAPI, office: Office
) -> None:
    permit = await running(app, office)
    credential = (await credential_of(office, permit["id"]))["credential"]
    answer = await verdict(client, credential)
    assert answer["valid"] is True
    assert answer["reason"] == "valid"
    _, claims = opened(credential, await published_keys(client))
    assert answer["permit"] == claims


async def test_time_decides_not_yet_valid_and_expired(
    client: httpx.AsyncClient, app: FastAPI, office: Office
) -> None:
    later = await approved(office)  # starts in an hour
    ended = await approved(office, starts_in=timedelta(hours=3))
    await move_window(app, ended["id"], timedelta(hours=-3), 60)
    soon = await verdict(client, (await credential_of(office, later["id"]))["credential"])
    assert (soon["valid"], soon["reason"]) == (False, "not_yet_valid")
    assert soon["permit"]["sub"] == later["id"]
    past = await verdict(client, (await credential_of(office, ended["id"]))["credential"])
    assert (past["valid"], past["reason"]) == (False, "expired")


async def test_revoked_is_known_at_once_and_comes_before_time(
    client: httpx.AsyncClient, app: FastAPI, office: Office
) -> None:
    permit = await running(app, office)
    credential = (await credential_of(office, permit["id"]))["credential"]
    assert (await verdict(client, credential))["reason"] == "valid"
    response = await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Dicabut"})
    assert response.status_code == 200
    assert (await verdict(client, credential))["reason"] == "revoked"
    await move_window(app, permit["id"], timedelta(hours=-5), 60)  # and now it has ended too
    answer = await verdict(client, credential)
    assert answer["reason"] == "revoked"
    assert answer["permit"]["sub"] == permit["id"]


def _tampered(credential: str, **changes: Any) -> str:
    header, payload, signature = credential.split(".")
    claims = json.loads(base64url_decode(payload))
    claims.update(changes)
    return ".".join((header, base64url_encode(json.dumps(claims)), signature))


def _foreign(credential: str, key: Ed25519PrivateKey, **header: Any) -> str:
    """The same claims signed by a key that is not the service's."""
    claims = json.loads(base64url_decode(credential.split(".")[1]))
    kid = jwt.get_unverified_header(credential)["kid"]
    fields = {"kid": kid, "typ": "izin-siaran-permit+jwt", **header}
    return jwt.encode(claims, key, algorithm="EdDSA", headers=fields)


async def test_tampered_and_foreign_credentials_have_a_bad_signature(
    client: httpx.AsyncClient, app: FastAPI, office: Office
) -> None:
    permit = await running(app, office)
    credential = (await credential_of(office, permit["id"]))["credential"]
    stranger = Ed25519PrivateKey.generate()
    for forged in (
        _tampered(credential, channel="@akun.lain"),
        _tampered(credential, exp=4102444800),  # 2100
        _tampered(credential, sub="01J0000000000000000000000X"),
        _foreign(credential, stranger),  # the service's kid, another key
        _foreign(credential, stranger, kid="some-other-key"),
        credential[:-4] + ("AAAA" if not credential.endswith("AAAA") else "BBBB"),
    ):
        answer = await verdict(client, forged)
        assert (answer["valid"], answer["reason"], answer["permit"]) == (
            False,
            "bad_signature",
            None,
        ), forged
    # Revoked and forged: the signature is judged first.
    await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Dicabut"})
    answer = await verdict(client, _tampered(credential, channel="@x"))
    assert answer["reason"] == "bad_signature"


def _b64(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


async def test_anything_else_is_malformed_never_an_error(
    client: httpx.AsyncClient, app: FastAPI, office: Office
) -> None:
    permit = await running(app, office)
    credential = (await credential_of(office, permit["id"]))["credential"]
    header, payload, signature = credential.split(".")
    stranger = Ed25519PrivateKey.generate()
    claims = json.loads(base64url_decode(payload))
    malformed = [
        "",
        "hello",
        "a.b.c",
        "..",
        "\x00",
        "💥.💥.💥",
        credential + ".extra",
        credential * 20,  # longer than any credential
        f"{header}.{_b64([1, 2])}.{signature}",  # claims that are not an object
        f"{header}.{_b64('not json')}.{signature}",
        f"{_b64({'alg': 'none', 'typ': 'izin-siaran-permit+jwt'})}.{payload}.",
        jwt.encode(
            claims, "secret" * 8, algorithm="HS256", headers={"typ": "izin-siaran-permit+jwt"}
        ),
        _foreign(credential, stranger, typ="JWT"),  # another kind of token
        jwt.encode(claims, stranger, algorithm="EdDSA", headers={"typ": TYP}),  # no kid
        jwt.encode(
            {k: v for k, v in claims.items() if k != "status"},
            stranger,
            algorithm="EdDSA",
            headers={"typ": "izin-siaran-permit+jwt", "kid": "k"},
        ),
        jwt.encode(
            {**claims, "exp": "tomorrow"},
            stranger,
            algorithm="EdDSA",
            headers={"typ": "izin-siaran-permit+jwt", "kid": "k"},
        ),
    ]
    for text in malformed:
        answer = await verdict(client, text)
        assert (answer["valid"], answer["reason"], answer["permit"]) == (
            False,
            "malformed",
            None,
        ), text[:80]


async def test_a_credential_that_is_not_a_string_is_a_422(client: httpx.AsyncClient) -> None:
    for body in ({"credential": 1}, {"credential": None}, {"credential": ["a"]}, {}, []):
        response = await client.post(VERIFY, json=body)
        assert_problem(response, 422, "validation_error")
    response = await client.post(VERIFY, json={"credential": "x", "extra": 1})
    assert_problem(response, 422, "validation_error")


# --- the verify page ------------------------------------------------------------------------


async def test_the_verify_page_tells_valid_from_revoked_in_its_html_alone(
    client: httpx.AsyncClient, app: FastAPI, office: Office
) -> None:
    permit = await running(app, office, minutes=90)
    issued = await credential_of(office, permit["id"])
    page = await client.get(
        urlsplit(issued["verify_url"]).path, params={"credential": issued["credential"]}
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="id">' in html
    assert 'data-reason="valid"' in html
    assert "SAH — izin berlaku" in html
    assert office.staff["name"] in html
    assert f"…{office.staff['nip'][-4:]}" in html
    assert office.staff["nip"] not in html  # never the whole NIP
    _, claims = opened(issued["credential"], await published_keys(client))
    ends = datetime.fromtimestamp(claims["exp"], UTC).astimezone(WIB)
    assert f"pukul {ends:%H.%M} WIB" in html
    assert "<script" not in html
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # so no script at all: default-src 'none'
    assert "'unsafe-inline'" not in policy
    assert page.headers["cache-control"] == "no-store"

    await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Dicabut"})
    page = await client.get("/verify", params={"credential": issued["credential"]})
    assert 'data-reason="revoked"' in page.text
    assert "TIDAK SAH" in page.text
    assert "SAH — izin berlaku" not in page.text


async def test_the_verify_page_without_a_credential_is_a_form(client: httpx.AsyncClient) -> None:
    page = await client.get("/verify")
    assert page.status_code == 200
    assert '<form method="get" action="/verify">' in page.text
    assert "data-reason" not in page.text
    garbage = await client.get("/verify", params={"credential": "<script>alert(1)</script>"})
    assert 'data-reason="malformed"' in garbage.text
    assert "<script>" not in garbage.text


# --- the keys -------------------------------------------------------------------------------


async def test_the_jwks_publishes_the_public_half_only(client: httpx.AsyncClient) -> None:
    response = await client.get(JWKS)
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert response.headers["access-control-allow-origin"] == "*"


async def test_public_endpoints_are_limited_per_address(settings: Settings) -> None:
    limited = create_app(settings.model_copy(update={"rate_limit_public_per_minute": 3}))
    async with serving(limited):
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            for _ in range(3):
                assert (await verdict(http, "x"))["reason"] == "malformed"
            refused = await http.post(VERIFY, json={"credential": "x"})
            assert_problem(refused, 429, "rate_limited")
            assert int(refused.headers["retry-after"]) >= 1
            # The one budget of the address, whatever the public endpoint or credential.
            for path in ("/api/v1/status-lists/0", "/verify", JWKS):
                assert_problem(await http.get(path, headers={"X-API-Key": "x"}), 429)
            assert (await http.get("/healthz")).status_code == 200  # never limited
