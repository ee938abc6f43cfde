"""Authentication (SPEC §3): JWTs against a JWKS, API keys, local mode, bootstrap admins."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text

from app.auth.local import KEY_FILE, load_or_create_signer
from app.config import Settings
from app.main import create_app
from tests.support import ADMIN_NIP, ISSUER, KeyRing, Org, Tokens, assert_problem, make_nip

pytestmark = pytest.mark.anyio

ME = "/api/v1/me"


def _b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _refused(
    client: httpx.AsyncClient, headers: dict[str, str], code: str = "invalid_token"
) -> dict[str, Any]:
    response = await client.get(ME, headers=headers)
    body = assert_problem(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith(("Bearer", "ApiKey"))
    return body


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_asymmetric_tokens_are_accepted(
    client: httpx.AsyncClient, tokens: Tokens, alg: str
) -> None:
    response = await client.get(ME, headers=tokens.auth(ADMIN_NIP, alg=alg))
    assert response.status_code == 200, response.text
    assert response.json()["nip"] == ADMIN_NIP


async def test_no_credentials_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    await _refused(client, {}, "unauthenticated")
    await _refused(client, {"Authorization": "Basic YWRtaW46YWRtaW4="})
    await _refused(client, _bearer("not-a-jwt"))


async def test_forged_signature_is_refused(client: httpx.AsyncClient, tokens: Tokens) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        tokens.claims(ADMIN_NIP), impostor, algorithm="RS256", headers={"kid": "rsa-1"}
    )
    await _refused(client, _bearer(token))


async def test_tampered_payload_is_refused(client: httpx.AsyncClient, tokens: Tokens) -> None:
    header, _payload, signature = tokens.mint(make_nip()).split(".")
    forged = f"{header}.{_b64(tokens.claims(ADMIN_NIP))}.{signature}"
    await _refused(client, _bearer(forged))


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": int(time.time()) - 120}, "token_expired"),
        ({"nbf": int(time.time()) + 600}, "invalid_token"),
        ({"exp": None}, "invalid_token"),
        ({"iss": "https://evil.example/realms/asn"}, "invalid_token"),
        ({"iss": ISSUER[:-3]}, "invalid_token"),
        ({"iss": None}, "invalid_token"),
        ({"aud": "another-service"}, "invalid_token"),
        ({"aud": None}, "invalid_token"),
        ({"sub": None}, "invalid_token"),
    ],
    ids=[
        "expired",
        "nbf-future",
        "no-exp",
        "wrong-iss",
        "partial-iss",
        "no-iss",
        "wrong-aud",
        "no-aud",
        "no-sub",
    ],
)
async def test_bad_claims_are_refused(
    client: httpx.AsyncClient, tokens: Tokens, claims: dict[str, Any], code: str
) -> None:
    await _refused(client, tokens.auth(ADMIN_NIP, **claims), code)


async def test_audience_list_containing_ours_is_accepted(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    headers = tokens.auth(ADMIN_NIP, aud=["account", "izin-siaran"])
    assert (await client.get(ME, headers=headers)).status_code == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(client: httpx.AsyncClient, tokens: Tokens, alg: str) -> None:
    token = f"{_b64({'alg': alg, 'typ': 'JWT', 'kid': 'rsa-1'})}.{_b64(tokens.claims(ADMIN_NIP))}."
    await _refused(client, _bearer(token))


async def test_hmac_signed_with_the_public_key_is_refused(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing
) -> None:
    public_pem = keyring.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, json.dumps(keyring.public_jwks()["keys"][0]).encode()):
        header = _b64({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})
        signing_input = f"{header}.{_b64(tokens.claims(ADMIN_NIP))}"
        signature = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
        await _refused(client, _bearer(f"{signing_input}.{signature}"))


async def test_unknown_kid_and_foreign_key_headers_are_refused(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await _refused(client, tokens.auth(ADMIN_NIP, headers={"kid": "who-knows"}))
    await _refused(client, tokens.auth(ADMIN_NIP, headers={"kid": "../../etc/passwd"}))
    for header in (
        {"jku": "https://evil.example/jwks.json"},
        {"x5u": "https://evil.example/cert.pem"},
    ):
        await _refused(client, tokens.auth(ADMIN_NIP, headers=header))
    embedded = json.loads(RSAAlgorithm.to_jwk(tokens.keyring.rsa.public_key()))
    await _refused(client, tokens.auth(ADMIN_NIP, headers={"jwk": embedded}))


async def test_oversized_token_is_refused(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await _refused(client, tokens.auth(ADMIN_NIP, padding="x" * 9000))


async def test_token_must_name_an_active_known_employee(
    client: httpx.AsyncClient, tokens: Tokens, org: Org
) -> None:
    await _refused(client, tokens.auth(make_nip()), "unknown_employee")
    staff = await org.employee()
    assert (await client.get(ME, headers=org.as_(staff["nip"]))).status_code == 200
    deactivate = await client.patch(
        f"/api/v1/employees/{staff['nip']}", json={"active": False}, headers=org.admin
    )
    assert deactivate.status_code == 200
    await _refused(client, org.as_(staff["nip"]), "employee_inactive")


async def test_roles_come_from_the_database_not_the_token(
    client: httpx.AsyncClient, tokens: Tokens, org: Org
) -> None:
    staff = await org.employee()
    headers = tokens.auth(staff["nip"], roles=["admin"], realm_access={"roles": ["admin"]})
    response = await client.post(
        "/api/v1/units", json={"code": "EVIL", "name": "x"}, headers=headers
    )
    assert_problem(response, 403, "admin_required")


async def test_both_credentials_at_once_are_refused(client: httpx.AsyncClient, org: Org) -> None:
    headers = {**org.admin, "X-API-Key": "izs_x_y"}
    await _refused(client, headers, "ambiguous_credentials")


async def test_rotated_key_is_picked_up_on_unknown_kid(
    client: httpx.AsyncClient, tokens: Tokens, keyring: KeyRing
) -> None:
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(rotated.public_key()))
    jwk.update({"kid": "rsa-2", "alg": "RS256", "use": "sig"})
    keyring.write_jwks(extra=[jwk])
    try:
        token = jwt.encode(
            tokens.claims(ADMIN_NIP), rotated, algorithm="RS256", headers={"kid": "rsa-2"}
        )
        assert (await client.get(ME, headers=_bearer(token))).status_code == 200
    finally:
        keyring.write_jwks()


@pytest.fixture
async def app_with_jwks(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, Path]]:
    jwks = tmp_path / "idp-jwks.json"
    application = create_app(settings.model_copy(update={"auth_jwks_url": jwks.as_uri()}))
    async with application.router.lifespan_context(application):
        yield application, jwks


@pytest.mark.parametrize(
    "content", [None, "garbage{", '{"keys": []}', '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}']
)
async def test_unusable_jwks_fails_closed(
    app_with_jwks: tuple[FastAPI, Path], tokens: Tokens, content: str | None
) -> None:
    application, jwks = app_with_jwks
    if content is not None:
        jwks.write_text(content)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get(ME, headers=tokens.auth(ADMIN_NIP))
    assert_problem(response, 503, "auth_unavailable")


# --- API keys ---------------------------------------------------------------


async def _new_key(client: httpx.AsyncClient, org: Org, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/api-keys", json={"name": "gateway", **body}, headers=org.admin
    )
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/api/v1/api-keys/{response.json()['id']}"
    return dict(response.json())


async def test_api_key_secret_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    key = await _new_key(client, org)
    assert key["scopes"] == ["check"]
    assert key["key"].startswith(f"izs_{key['id']}_")
    listed = await client.get("/api/v1/api-keys", headers=org.admin)
    assert "key" not in listed.json()["items"][0]
    read = await client.get(f"/api/v1/api-keys/{key['id']}", headers=org.admin)
    assert "key" not in read.json()
    async with app.state.db.engine.connect() as connection:
        stored = (await connection.execute(text("SELECT * FROM api_keys"))).all()
    assert key["key"].split("_", 2)[2] not in repr(stored)


async def test_api_key_grants_only_its_scope(client: httpx.AsyncClient, org: Org) -> None:
    key = await _new_key(client, org)
    headers = {"X-API-Key": key["key"]}
    check = await client.get(
        "/api/v1/authorizations/check",
        params={"nip": ADMIN_NIP, "workspace_code": "NONE"},
        headers=headers,
    )
    assert check.status_code == 200
    for path in (ME, "/api/v1/units", "/api/v1/api-keys"):
        assert_problem(await client.get(path, headers=headers), 403, "insufficient_scope")


async def test_bad_and_revoked_api_keys_are_401(client: httpx.AsyncClient, org: Org) -> None:
    key = await _new_key(client, org)
    check = "/api/v1/authorizations/check?nip=1&workspace_code=X"
    for bad in ("nonsense", f"izs_{key['id']}_wrong", "izs__", key["key"] + "x"):
        response = await client.get(check, headers={"X-API-Key": bad})
        assert_problem(response, 401, "invalid_api_key")
        assert response.headers["WWW-Authenticate"].startswith("ApiKey")
    revoked = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=org.admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert_problem(
        await client.get(check, headers={"X-API-Key": key["key"]}), 401, "api_key_revoked"
    )
    assert_problem(
        await client.delete(f"/api/v1/api-keys/{key['id']}", headers=org.admin),
        409,
        "already_revoked",
    )
    assert_problem(
        await client.delete("/api/v1/api-keys/nope", headers=org.admin), 404, "not_found"
    )


async def test_only_admins_manage_api_keys(client: httpx.AsyncClient, org: Org) -> None:
    staff = await org.employee()
    response = await client.post(
        "/api/v1/api-keys", json={"name": "x"}, headers=org.as_(staff["nip"])
    )
    assert_problem(response, 403, "admin_required")
    assert_problem(await client.get("/api/v1/api-keys", headers=org.as_(staff["nip"])), 403)
    bad_scope = await client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=org.admin
    )
    assert_problem(bad_scope, 422, "validation_error")


async def test_api_key_changes_are_audited(
    client: httpx.AsyncClient, org: Org, app: FastAPI
) -> None:
    key = await _new_key(client, org)
    await client.delete(f"/api/v1/api-keys/{key['id']}", headers=org.admin)
    async with app.state.db.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT action, actor FROM audit_events WHERE subject = :s ORDER BY seq"),
                {"s": f"api-key:{key['id']}"},
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("api_key.created", ADMIN_NIP),
        ("api_key.revoked", ADMIN_NIP),
    ]


# --- local mode and bootstrap -----------------------------------------------------


@pytest.fixture
async def local_app(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, Settings]]:
    local = settings.model_copy(
        update={"auth_jwks_url": "", "auth_issuer": "", "auth_audience": ""}
    )
    application = create_app(local)
    async with application.router.lifespan_context(application):
        yield application, local


async def test_local_mode_publishes_its_key_and_accepts_its_tokens(
    local_app: tuple[FastAPI, Settings],
) -> None:
    application, local = local_app
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        jwks = (await http.get("/.well-known/jwks.json")).json()
        assert [(k["kty"], k["alg"]) for k in jwks["keys"]] == [("OKP", "EdDSA")]
        token = load_or_create_signer(local.data_dir).mint(local, ADMIN_NIP)
        assert (await http.get(ME, headers=_bearer(token))).status_code == 200
    key_file = local.data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_or_create_signer(local.data_dir).kid == jwks["keys"][0]["kid"]


async def test_remote_mode_publishes_no_jwks(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/.well-known/jwks.json"), 404, "not_found")


async def test_bootstrap_admin_is_restored_on_start(
    client: httpx.AsyncClient, org: Org, settings: Settings, tokens: Tokens
) -> None:
    other_admin = await org.employee(roles=["admin"])
    demote = await client.patch(
        f"/api/v1/employees/{ADMIN_NIP}",
        json={"roles": [], "active": False},
        headers=org.as_(other_admin["nip"]),
    )
    assert demote.status_code == 200
    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            me = (await http.get(ME, headers=tokens.auth(ADMIN_NIP))).json()
    assert me["roles"] == ["admin"]
    assert me["active"] is True
