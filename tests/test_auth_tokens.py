"""Bearer tokens (docs/RULES.md #roles): what is accepted, every way a token is refused, where the
keys come from (rotation, rate-limited refetch, failing closed when they cannot be loaded).

Refusals are checked the same way each time: a 401 RFC 9457 problem with a `code` and a
`WWW-Authenticate` challenge. Tokens that PyJWT refuses to produce (`alg: none`, HMAC
keyed with a public key) are built by hand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from app.auth import tokens as tokens_module
from app.auth.jwks import (
    MIN_REFETCH_SECONDS,
    RETRY_AFTER_FAILURE_SECONDS,
    KeysUnavailable,
    RemoteKeySource,
)
from app.auth.tokens import MAX_TOKEN_LENGTH, TokenVerifier
from app.config import Settings
from app.errors import Unauthenticated
from app.main import create_app
from tests.support import ADMIN_NIP, AUDIENCE, ISSUER, KeyRing, Org, Tokens, assert_problem, serving

pytestmark = pytest.mark.anyio

ME = "/api/v1/me"
CHALLENGE = 'Bearer realm="izin-siaran"'


# --- helpers -----------------------------------------------------------------------------


def _b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _by_hand(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_b64(header)}.{_b64(claims)}.{_b64(signature)}"


def _hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))  # type: ignore[attr-defined]
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return dict(jwk)


def _new_private_key(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _ring(tmp_path: Path) -> KeyRing:
    """An identity provider of the test's own: rotating its keys disturbs no other test."""
    folder = tmp_path / "idp"
    folder.mkdir()
    return KeyRing.generate(folder)


def _sign(private_key: Any, alg: str, kid: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid})


async def _refused(
    client: httpx.AsyncClient, headers: dict[str, str], code: str = "invalid_token"
) -> dict[str, Any]:
    """401 problem with `code` and a Bearer challenge (RFC 6750 §3)."""
    response = await client.get(ME, headers=headers)
    body = assert_problem(response, 401, code)
    challenge = response.headers.get("WWW-Authenticate")
    assert challenge is not None, response.headers
    assert challenge.startswith(CHALLENGE), challenge
    if code == "unauthenticated":
        # No credentials at all: a bare challenge, no error code (RFC 6750 §3.1).
        assert challenge == CHALLENGE
    else:
        assert 'error="invalid_token"' in challenge, challenge
    return body


async def _accepted(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(ME, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["nip"] == ADMIN_NIP


@pytest.fixture
async def app_factory(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """Start more apps on the test's database, with settings changed; all stopped at the end."""
    async with AsyncExitStack() as stack:

        async def start(**update: Any) -> httpx.AsyncClient:
            application = await stack.enter_async_context(
                serving(create_app(settings.model_copy(update=update)))
            )
            transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://izin-siaran.test")
            )

        yield start


# --- accepted ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_each_asymmetric_algorithm_is_accepted(
    client: httpx.AsyncClient, tokens: Tokens, alg: str
) -> None:
    await _accepted(client, tokens.auth(ADMIN_NIP, alg=alg))


async def test_scheme_name_is_case_insensitive(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await _accepted(client, {"Authorization": f"bearer {tokens.mint(ADMIN_NIP)}"})
    await _accepted(client, {"Authorization": f"BEARER {tokens.mint(ADMIN_NIP)}"})


async def test_clock_skew_within_leeway_is_tolerated(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    now = int(time.time())
    await _accepted(client, tokens.auth(ADMIN_NIP, exp=now - 10))
    await _accepted(client, tokens.auth(ADMIN_NIP, nbf=now + 10))
    await _accepted(client, tokens.auth(ADMIN_NIP, iat=now + 10))


async def test_audience_list_containing_ours_is_accepted(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await _accepted(client, tokens.auth(ADMIN_NIP, aud=["account", AUDIENCE]))


async def test_unrelated_claims_are_ignored(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await _accepted(client, tokens.auth(ADMIN_NIP, jti="abc", azp="portal", name="Admin"))


async def test_nip_comes_from_the_configured_claim(
    app_factory: Callable[..., Any], tokens: Tokens
) -> None:
    http = await app_factory(auth_nip_claim="nip")
    claims = {**tokens.claims("not-a-nip"), "nip": ADMIN_NIP}
    token = jwt.encode(claims, tokens.keyring.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    response = await http.get(ME, headers=_bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["nip"] == ADMIN_NIP
    # `sub` alone no longer names anybody.
    await _refused(http, tokens.auth(ADMIN_NIP))


# --- refused: the request --------------------------------------------------------------


async def test_no_credentials(client: httpx.AsyncClient) -> None:
    await _refused(client, {}, "unauthenticated")


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic YWRtaW46YWRtaW4=",
        "Token {token}",
        "Bearer",
        "Bearer ",
        "Bearer{token}",
        "{token}",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer eyJhbGciOiJSUzI1NiJ9",
        "Bearer %%%.%%%.%%%",
    ],
)
async def test_malformed_authorization_header(
    client: httpx.AsyncClient, tokens: Tokens, authorization: str
) -> None:
    value = authorization.format(token=tokens.mint(ADMIN_NIP))
    await _refused(client, {"Authorization": value})


async def test_oversized_token(client: httpx.AsyncClient, tokens: Tokens) -> None:
    """A well-signed token is refused once it passes 8 KiB, and accepted up to it."""

    def padded(n: int) -> str:
        return tokens.mint(ADMIN_NIP, padding="x" * n)

    low, high = 0, MAX_TOKEN_LENGTH  # padded(low) fits, padded(high) does not
    assert len(padded(low)) <= MAX_TOKEN_LENGTH < len(padded(high))
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if len(padded(middle)) <= MAX_TOKEN_LENGTH else (low, middle)
    await _accepted(client, _bearer(padded(low)))
    body = await _refused(client, _bearer(padded(high)))
    assert "longer" in body["detail"]
    await _refused(client, _bearer(padded(64 * 1024)))


async def test_both_credentials_at_once(
    client: httpx.AsyncClient, tokens: Tokens, org: Org
) -> None:
    key = await client.post("/api/v1/api-keys", json={"name": "gw"}, headers=org.admin)
    assert key.status_code == 201, key.text
    headers = {**tokens.auth(ADMIN_NIP), "X-API-Key": key.json()["key"]}
    await _refused(client, headers, "ambiguous_credentials")


# --- refused: signature and header -----------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_forged_signature_same_kid(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing, alg: str
) -> None:
    impostor = _new_private_key(alg)
    token = _sign(impostor, alg, keyring.kids[alg], tokens.claims(ADMIN_NIP))
    body = await _refused(client, _bearer(token))
    assert "signature" in body["detail"]


async def test_tampered_payload(client: httpx.AsyncClient, tokens: Tokens, org: Org) -> None:
    staff = await org.employee()
    header, _payload, signature = tokens.mint(staff["nip"]).split(".")
    forged = f"{header}.{_b64(tokens.claims(ADMIN_NIP))}.{signature}"
    await _refused(client, _bearer(forged))
    # The untouched token still works: it is the change that is refused.
    response = await client.get(ME, headers=tokens.auth(staff["nip"]))
    assert response.status_code == 200


async def test_signature_stripped(client: httpx.AsyncClient, tokens: Tokens) -> None:
    header, payload, _signature = tokens.mint(ADMIN_NIP).split(".")
    await _refused(client, _bearer(f"{header}.{payload}."))
    await _refused(client, _bearer(f"{header}.{payload}"))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none(client: httpx.AsyncClient, tokens: Tokens, alg: str) -> None:
    claims = tokens.claims(ADMIN_NIP)
    for header in ({"alg": alg, "typ": "JWT"}, {"alg": alg, "typ": "JWT", "kid": "rsa-1"}):
        await _refused(client, _bearer(_by_hand(header, claims)))
        await _refused(client, _bearer(_by_hand(header, claims, b"signature")))


async def test_hmac_keyed_with_the_public_key(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing
) -> None:
    """The classic RS256 → HS256 confusion, with every public form of the key as secret."""
    public = keyring.rsa.public_key()
    secrets = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(keyring.public_jwks()["keys"][0]).encode(),
    ]
    claims = tokens.claims(ADMIN_NIP)
    for secret in secrets:
        for header in (
            {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"},
            {"alg": "HS256", "typ": "JWT"},
        ):
            await _refused(client, _bearer(_hs256(secret, header, claims)))


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "ES384", "HS256", "HS512"])
async def test_other_algorithms_are_refused(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing, alg: str
) -> None:
    claims = tokens.claims(ADMIN_NIP)
    if alg.startswith("HS"):
        key: Any = b"k" * 64
    elif alg.startswith(("RS", "PS")):
        key = keyring.rsa
    else:
        key = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": "rsa-1"})
    body = await _refused(client, _bearer(token))
    assert alg in body["detail"]


async def test_algorithm_must_match_the_key_kid_names(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing
) -> None:
    claims = tokens.claims(ADMIN_NIP)
    # Signed correctly by the EC key, but naming the RSA key's kid.
    token = jwt.encode(claims, keyring.ec, algorithm="ES256", headers={"kid": "rsa-1"})
    await _refused(client, _bearer(token))


@pytest.mark.parametrize("kid", ["who-knows", "../../etc/passwd", "", "rsa-1 ", "RSA-1"])
async def test_unknown_kid(client: httpx.AsyncClient, tokens: Tokens, kid: str) -> None:
    await _refused(client, tokens.auth(ADMIN_NIP, headers={"kid": kid}))


async def test_kid_missing_or_not_a_string(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing
) -> None:
    claims = tokens.claims(ADMIN_NIP)
    # Three keys published: without a kid there is no telling which one is meant.
    no_kid = jwt.encode(claims, keyring.rsa, algorithm="RS256")
    await _refused(client, _bearer(no_kid))
    header = {"alg": "RS256", "typ": "JWT", "kid": 1}
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    rsa_alg = RSAAlgorithm(RSAAlgorithm.SHA256)
    signature = rsa_alg.sign(signing_input.encode(), keyring.rsa)
    await _refused(client, _bearer(f"{signing_input}.{_b64(signature)}"))


async def test_header_that_brings_its_own_key(
    client: httpx.AsyncClient, tokens: Tokens, tmp_path: Path
) -> None:
    """An attacker's key, offered by value (`jwk`, `x5c`) or by reference (`jku`, `x5u`)."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = _public_jwk(attacker, "attacker", "RS256")
    attacker_jwks = tmp_path / "attacker-jwks.json"
    attacker_jwks.write_text(json.dumps({"keys": [attacker_jwk]}))
    claims = tokens.claims(ADMIN_NIP)
    for extra in (
        {"jku": attacker_jwks.as_uri()},
        {"jku": "https://evil.example/jwks.json"},
        {"x5u": "https://evil.example/cert.pem"},
        {"jwk": attacker_jwk},
        {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
    ):
        for kid in ("attacker", "rsa-1"):
            token = jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": kid, **extra})
            await _refused(client, _bearer(token))
        # Even signed by the real key, a token that points elsewhere is not accepted.
        await _refused(client, tokens.auth(ADMIN_NIP, headers=extra))


async def test_unknown_critical_header(client: httpx.AsyncClient, tokens: Tokens) -> None:
    headers = {"crit": ["urn:example:must-understand"], "urn:example:must-understand": 1}
    await _refused(client, tokens.auth(ADMIN_NIP, headers=headers))


# --- refused: claims -------------------------------------------------------------------


@dataclass(frozen=True)
class _In:
    """A time claim `seconds` from now, computed when the test runs (not when collected)."""

    seconds: int


def _resolve(claims: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {k: now + v.seconds if isinstance(v, _In) else v for k, v in claims.items()}


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        pytest.param({"exp": _In(-120)}, "token_expired", id="expired"),
        pytest.param({"exp": _In(-86_400)}, "token_expired", id="expired-long-ago"),
        pytest.param({"exp": None}, "invalid_token", id="no-exp"),
        pytest.param({"exp": "tomorrow"}, "invalid_token", id="exp-not-a-number"),
        pytest.param({"nbf": _In(600)}, "invalid_token", id="nbf-future"),
        pytest.param({"nbf": _In(60)}, "invalid_token", id="nbf-just-beyond-leeway"),
        pytest.param({"iat": _In(600)}, "invalid_token", id="iat-future"),
        pytest.param({"iss": None}, "invalid_token", id="no-iss"),
        pytest.param({"iss": "https://evil.example/realms/asn"}, "invalid_token", id="wrong-iss"),
        pytest.param({"iss": ISSUER[:-3]}, "invalid_token", id="iss-prefix"),
        pytest.param({"iss": ISSUER.rsplit("/", 1)[0]}, "invalid_token", id="iss-parent"),
        pytest.param({"iss": ISSUER + "x"}, "invalid_token", id="iss-extended"),
        pytest.param({"iss": ISSUER.upper()}, "invalid_token", id="iss-case"),
        pytest.param({"aud": None}, "invalid_token", id="no-aud"),
        pytest.param({"aud": "another-service"}, "invalid_token", id="wrong-aud"),
        pytest.param({"aud": AUDIENCE[:-1]}, "invalid_token", id="aud-prefix"),
        pytest.param({"aud": AUDIENCE + "-admin"}, "invalid_token", id="aud-extended"),
        pytest.param({"aud": ["account", "broker"]}, "invalid_token", id="aud-list-without-ours"),
        pytest.param({"aud": []}, "invalid_token", id="aud-empty-list"),
        pytest.param({"sub": None}, "invalid_token", id="no-sub"),
        pytest.param({"sub": ""}, "invalid_token", id="empty-sub"),
        pytest.param({"sub": 198904042014021003}, "invalid_token", id="sub-number"),
    ],
)
async def test_bad_claims(
    client: httpx.AsyncClient, tokens: Tokens, claims: dict[str, Any], code: str
) -> None:
    # Each claim is checked with every algorithm: the checks do not depend on the key type.
    for alg in ("RS256", "ES256", "EdDSA"):
        await _refused(client, tokens.auth(ADMIN_NIP, alg=alg, **_resolve(claims)), code)


async def test_issuer_as_a_list_is_refused(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing
) -> None:
    # PyJWT will not encode this, so the payload is signed as raw bytes.
    payload = json.dumps(tokens.claims(ADMIN_NIP, iss=[ISSUER])).encode()
    token = jwt.PyJWS().encode(payload, keyring.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    await _refused(client, _bearer(token))


async def test_expired_token_says_so(client: httpx.AsyncClient, tokens: Tokens) -> None:
    body = await _refused(
        client, tokens.auth(ADMIN_NIP, exp=int(time.time()) - 120), "token_expired"
    )
    assert "expired" in body["detail"]


# --- refused: the employee -------------------------------------------------------------


@pytest.mark.parametrize(
    "nip",
    [
        "198505012010031999",  # well-formed, nobody
        "1989\x00",  # PostgreSQL refuses NUL outright: must not become a 500
        "9" * 300,
        "' OR '1'='1",
        ADMIN_NIP + " ",
        " " + ADMIN_NIP,
    ],
    ids=["unknown", "nul", "long", "quote", "trailing-space", "leading-space"],
)
async def test_token_for_nobody_we_know(
    client: httpx.AsyncClient, tokens: Tokens, nip: str
) -> None:
    await _refused(client, tokens.auth(nip), "unknown_employee")


async def test_inactive_employee_is_refused_until_reactivated(
    client: httpx.AsyncClient, tokens: Tokens, org: Org
) -> None:
    staff = await org.employee()
    token = tokens.auth(staff["nip"])
    assert (await client.get(ME, headers=token)).status_code == 200

    async def set_active(active: bool) -> None:
        response = await client.patch(
            f"/api/v1/employees/{staff['nip']}", json={"active": active}, headers=org.admin
        )
        assert response.status_code == 200, response.text
        assert response.json()["active"] is active

    await set_active(False)
    # The very token that worked a moment ago: the check is against the records, each time.
    await _refused(client, token, "employee_inactive")
    await set_active(True)
    assert (await client.get(ME, headers=token)).status_code == 200


async def test_roles_come_from_the_database_not_the_token(
    client: httpx.AsyncClient, tokens: Tokens, org: Org
) -> None:
    staff = await org.employee()
    claims: dict[str, Any] = {
        "roles": ["admin"],
        "realm_access": {"roles": ["admin", "auditor"]},
        "resource_access": {AUDIENCE: {"roles": ["admin"]}},
        "groups": ["/admin"],
        "scope": "openid admin",
        "is_admin": True,
    }
    boastful = tokens.auth(staff["nip"], **claims)

    async def create_unit() -> httpx.Response:
        return await client.post(
            "/api/v1/units", json={"code": f"X{staff['nip'][-6:]}", "name": "x"}, headers=boastful
        )

    assert_problem(await create_unit(), 403, "admin_required")
    me = await client.get(ME, headers=boastful)
    assert me.json()["roles"] == []
    # Promoted in the records, the same token is now an admin's.
    promote = await client.patch(
        f"/api/v1/employees/{staff['nip']}", json={"roles": ["admin"]}, headers=org.admin
    )
    assert promote.status_code == 200, promote.text
    assert (await create_unit()).status_code == 201
    # And the bootstrap admin's token without any role claim is still an admin's.
    assert (await client.get(ME, headers=tokens.auth(ADMIN_NIP))).json()["roles"] == ["admin"]


# --- keys: rotation and refetching ---------------------------------------------------------


async def test_key_rotation_is_picked_up_at_once(
    app_factory: Callable[..., Any], tokens: Tokens, tmp_path: Path
) -> None:
    """The IdP publishes a new key and signs with it: accepted on first sight, even right
    after the keys were loaded; further unknown kids do not refetch for 30 s."""
    ring = _ring(tmp_path)
    http = await app_factory(auth_jwks_url=ring.jwks_url)
    claims = tokens.claims(ADMIN_NIP)
    await _accepted(http, _bearer(_sign(ring.rsa, "RS256", "rsa-1", claims)))  # keys loaded

    rotated = _new_private_key("EdDSA")
    ring.write_jwks(extra=[_public_jwk(rotated, "ed-2", "EdDSA")])
    await _accepted(http, _bearer(_sign(rotated, "EdDSA", "ed-2", claims)))
    # The old keys still work alongside the new one.
    await _accepted(http, _bearer(_sign(ring.ec, "ES256", "ec-1", claims)))

    # A second unknown kid within MIN_REFETCH_SECONDS does not refetch: flood protection.
    another = _new_private_key("RS256")
    ring.write_jwks(
        extra=[_public_jwk(rotated, "ed-2", "EdDSA"), _public_jwk(another, "rsa-3", "RS256")]
    )
    started = time.monotonic()
    response = await http.get(ME, headers=_bearer(_sign(another, "RS256", "rsa-3", claims)))
    assert time.monotonic() - started < MIN_REFETCH_SECONDS  # the premise of the check
    assert_problem(response, 401, "invalid_token")


async def test_unknown_kid_flood_does_not_break_known_keys(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    results = await asyncio.gather(
        *(
            client.get(ME, headers=tokens.auth(ADMIN_NIP, headers={"kid": f"made-up-{i}"}))
            for i in range(20)
        )
    )
    assert {r.status_code for r in results} == {401}
    await _accepted(client, tokens.auth(ADMIN_NIP))


# --- keys: unavailable -----------------------------------------------------------------------


async def test_missing_jwks_fails_closed(
    app_factory: Callable[..., Any], tokens: Tokens, tmp_path: Path
) -> None:
    http = await app_factory(auth_jwks_url=(tmp_path / "nowhere" / "jwks.json").as_uri())
    for alg in ("RS256", "ES256", "EdDSA"):
        response = await http.get(ME, headers=tokens.auth(ADMIN_NIP, alg=alg))
        body = assert_problem(response, 503, "auth_unavailable")
        assert "nowhere" not in body["detail"]  # no internal paths to the client
    # Nothing else is broken: unauthenticated endpoints answer, refusals stay refusals.
    assert (await http.get("/healthz")).status_code == 200
    await _refused(http, {}, "unauthenticated")
    await _refused(http, _bearer(_by_hand({"alg": "none"}, tokens.claims(ADMIN_NIP))))


@pytest.mark.parametrize(
    "content",
    [
        "",
        "garbage{",
        "[]",
        "null",
        '{"keys": "all of them"}',
        '{"keys": []}',
        '{"keys": [{}]}',
        '{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "rsa-1"}]}',
        "[" * 100_000 + "]" * 100_000,
        "\udcff",
    ],
    ids=[
        "empty",
        "not-json",
        "list",
        "null",
        "keys-not-list",
        "no-keys",
        "empty-key",
        "hmac-only",
        "deep-nesting",
        "not-utf8",
    ],
)
async def test_unusable_jwks_fails_closed(
    app_factory: Callable[..., Any], tokens: Tokens, tmp_path: Path, content: str
) -> None:
    jwks = tmp_path / "idp-jwks.json"
    jwks.write_bytes(content.encode("utf-8", "surrogateescape"))
    http = await app_factory(auth_jwks_url=jwks.as_uri())
    response = await http.get(ME, headers=tokens.auth(ADMIN_NIP))
    assert_problem(response, 503, "auth_unavailable")


async def test_encryption_only_and_foreign_algorithm_keys_are_not_used(
    app_factory: Callable[..., Any], tokens: Tokens, keyring: KeyRing, tmp_path: Path
) -> None:
    rsa_jwk = keyring.public_jwks()["keys"][0]
    jwks = tmp_path / "idp-jwks.json"
    jwks.write_text(
        json.dumps({"keys": [{**rsa_jwk, "use": "enc"}, {**rsa_jwk, "alg": "RS512", "kid": "x"}]})
    )
    http = await app_factory(auth_jwks_url=jwks.as_uri())
    assert_problem(await http.get(ME, headers=tokens.auth(ADMIN_NIP)), 503, "auth_unavailable")


async def test_unusable_keys_next_to_good_ones_are_skipped(
    app_factory: Callable[..., Any], tokens: Tokens, keyring: KeyRing, tmp_path: Path
) -> None:
    jwks = tmp_path / "idp-jwks.json"
    junk = [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, {"kty": "RSA", "kid": "broken"}]
    jwks.write_text(json.dumps({"keys": junk + keyring.public_jwks()["keys"]}))
    http = await app_factory(auth_jwks_url=jwks.as_uri())
    await _accepted(http, tokens.auth(ADMIN_NIP, alg="ES256"))
    await _refused(http, tokens.auth(ADMIN_NIP, headers={"kid": "hmac"}))


# --- the key source on its own, with a clock the test turns ------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class _CountingSource(RemoteKeySource):
    """The real source; it only counts how often it reads the JWKS."""

    downloads = 0

    async def _download(self) -> bytes:
        self.downloads += 1
        return await super()._download()


def _source(ring: KeyRing, clock: _Clock, cache_seconds: float = 300) -> _CountingSource:
    return _CountingSource(ring.jwks_url, cache_seconds=cache_seconds, clock=clock)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return _ring(tmp_path)


async def test_source_loads_lazily_and_caches(ring: KeyRing) -> None:
    clock = _Clock()
    source = _source(ring, clock)
    assert source.downloads == 0  # nothing fetched before a token needs it
    for _ in range(5):
        assert await source.key_for("rsa-1") is not None
        assert await source.key_for("ec-1") is not None
    assert source.downloads == 1
    clock.now += 299
    await source.key_for("ed-1")
    assert source.downloads == 1
    clock.now += 2  # past cache_seconds: refreshed once
    await source.key_for("ed-1")
    await source.key_for("ed-1")
    assert source.downloads == 2


async def test_source_refetches_on_unknown_kid_at_most_every_30_s(ring: KeyRing) -> None:
    clock = _Clock()
    source = _source(ring, clock)
    assert await source.key_for("rsa-1") is not None

    # Rotation right after a load is seen at once.
    clock.now += 1
    ring.write_jwks(extra=[_public_jwk(_new_private_key("RS256"), "rsa-2", "RS256")])
    assert await source.key_for("rsa-2") is not None
    assert source.downloads == 2

    # Made-up kids: no fetch until MIN_REFETCH_SECONDS have passed since the last one.
    ring.write_jwks(extra=[_public_jwk(_new_private_key("RS256"), "rsa-3", "RS256")])
    for _ in range(50):
        assert await source.key_for("made-up") is None
    assert await source.key_for("rsa-3") is None
    assert source.downloads == 2
    clock.now += MIN_REFETCH_SECONDS + 0.5
    assert await source.key_for("rsa-3") is not None
    assert source.downloads == 3
    assert await source.key_for("made-up") is None
    assert source.downloads == 3

    # A key the IdP withdrew is dropped on the next refresh.
    ring.write_jwks()
    clock.now += 301
    assert await source.key_for("rsa-1") is not None
    assert await source.key_for("rsa-3") is None


async def test_source_concurrent_unknown_kids_fetch_once(ring: KeyRing) -> None:
    clock = _Clock()
    source = _source(ring, clock)
    await source.key_for("rsa-1")
    ring.write_jwks(extra=[_public_jwk(_new_private_key("EdDSA"), "ed-2", "EdDSA")])
    found = await asyncio.gather(*(source.key_for("ed-2") for _ in range(30)))
    assert all(key is not None for key in found)
    assert source.downloads == 2


async def test_source_fails_closed_then_recovers_without_hammering(ring: KeyRing) -> None:
    clock = _Clock()
    good = ring.jwks_path.read_text()
    ring.jwks_path.unlink()
    source = _source(ring, clock)
    with pytest.raises(KeysUnavailable):
        await source.key_for("rsa-1")
    assert source.downloads == 1
    # While the failure is recent, requests fail fast without touching the IdP again.
    ring.jwks_path.write_text(good)
    for _ in range(20):
        with pytest.raises(KeysUnavailable):
            await source.key_for("rsa-1")
    assert source.downloads == 1
    clock.now += RETRY_AFTER_FAILURE_SECONDS + 0.1
    assert await source.key_for("rsa-1") is not None
    assert source.downloads == 2


async def test_source_keeps_last_good_keys_while_the_idp_is_down(ring: KeyRing) -> None:
    clock = _Clock()
    source = _source(ring, clock, cache_seconds=60)
    assert await source.key_for("ec-1") is not None
    ring.jwks_path.write_text("<html>502 Bad Gateway</html>")
    clock.now += 61  # stale: a refresh is attempted, fails, the old keys keep serving
    assert await source.key_for("ec-1") is not None
    assert source.downloads == 2
    for _ in range(20):  # and the IdP is not asked again on every request
        assert await source.key_for("ec-1") is not None
        assert await source.key_for("unknown") is None
    assert source.downloads == 2
    clock.now += RETRY_AFTER_FAILURE_SECONDS + 0.1
    ring.write_jwks()
    assert await source.key_for("ec-1") is not None
    assert source.downloads == 3
    clock.now += 1
    assert await source.key_for("ec-1") is not None
    assert source.downloads == 3


async def test_source_picks_the_only_key_when_kid_is_absent(tmp_path: Path) -> None:
    single = tmp_path / "single.json"
    key = _new_private_key("EdDSA")
    single.write_text(json.dumps({"keys": [_public_jwk(key, "only", "EdDSA")]}))
    source = RemoteKeySource(single.as_uri(), cache_seconds=300)
    found = await source.key_for(None)
    assert found is not None
    assert found.key_id == "only"


# --- verified tokens remembered ------------------------------------------------------------


class _CountingVerifier(TokenVerifier):
    """The real verifier; it only counts the signature checks it makes."""

    decodes = 0

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        self.decodes += 1
        return super()._decode(token, key, alg)


def _verifier(
    ring: KeyRing, source: RemoteKeySource, clock: Callable[[], float]
) -> _CountingVerifier:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{ring.folder / 'unused.db'}",
        data_dir=ring.folder / "data",
        auth_jwks_url=ring.jwks_url,
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
    )
    return _CountingVerifier(settings, source, clock=clock)


async def test_a_verified_token_is_remembered_until_it_expires(ring: KeyRing) -> None:
    """The signature is checked once per token; the expiry is checked on every use."""
    wall = _Clock()
    wall.now = time.time()
    verifier = _verifier(ring, _source(ring, _Clock()), wall)
    tokens = Tokens(ring)
    token = tokens.mint(ADMIN_NIP, exp=int(wall.now) + 120)
    for _ in range(3):
        assert await verifier.verified_nip(token) == ADMIN_NIP
    assert verifier.decodes == 1
    wall.now += 120 + verifier.leeway - 1  # still inside the leeway
    assert await verifier.verified_nip(token) == ADMIN_NIP
    wall.now += 1
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verified_nip(token)
    assert refused.value.code == "token_expired"
    assert verifier.decodes == 1  # refused from what was remembered: the clock said so


async def test_a_remembered_token_needs_the_key_that_verified_it(ring: KeyRing) -> None:
    """The IdP replaces its keys (same kids): once the service reloads the JWKS, tokens
    signed by the old keys are refused even though they verified before."""
    keys_clock = _Clock()
    source = _source(ring, keys_clock, cache_seconds=300)
    verifier = _verifier(ring, source, time.time)  # only the key source's clock is moved
    old = Tokens(ring).mint(ADMIN_NIP)
    assert await verifier.verified_nip(old) == ADMIN_NIP
    assert await verifier.verified_nip(old) == ADMIN_NIP
    assert verifier.decodes == 1

    replaced = KeyRing.generate(ring.folder)  # new keys under the same kids, same file
    keys_clock.now += 301  # the cached JWKS is stale: reloaded on the next use
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verified_nip(old)
    assert refused.value.code == "invalid_token"
    assert verifier.decodes == 2  # checked afresh against the new keys, and failed
    assert await verifier.verified_nip(Tokens(replaced).mint(ADMIN_NIP)) == ADMIN_NIP


async def test_remembered_tokens_are_bounded(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens_module, "MAX_REMEMBERED_TOKENS", 3)
    verifier = _verifier(ring, _source(ring, _Clock()), time.time)
    minted = [Tokens(ring).mint(ADMIN_NIP, jti=str(i)) for i in range(5)]
    for token in minted:
        assert await verifier.verified_nip(token) == ADMIN_NIP
    assert len(verifier._verified) <= 3
    for token in minted:  # forgotten ones verify again, at the cost of a signature check
        assert await verifier.verified_nip(token) == ADMIN_NIP
