"""Local mode (no AUTH_JWKS_URL: the service signs its own tokens) and BOOTSTRAP_ADMIN_NIPS
(docs/RULES.md #roles): the key is made once, kept private, published, and its tokens work; the
listed NIPs are active admins after every start-up."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from sqlalchemy import text

from app.auth.local import KEY_FILE, load_or_create_signer
from app.config import LOCAL_AUDIENCE, LOCAL_ISSUER, Settings, SettingsError, load_settings
from app.main import create_app
from tests.conftest import run_cli
from tests.support import (
    ADMIN_NIP,
    AUDIENCE,
    ISSUER,
    KeyRing,
    Org,
    Tokens,
    assert_problem,
    make_nip,
    serving,
)

pytestmark = pytest.mark.anyio

ME = "/api/v1/me"
JWKS = "/.well-known/jwks.json"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _local_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Built afresh (not `model_copy`), so nothing cached for remote mode carries over."""
    fields: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "auth_jwks_url": "",
        "auth_issuer": "",
        "auth_audience": "",
        "bootstrap_admin_nips": [ADMIN_NIP],
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


Starter = Callable[[Settings], Any]


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    """Start apps (each with its own lifespan) and talk to them; all stopped at the end."""
    async with AsyncExitStack() as stack:

        async def starter(settings: Settings) -> httpx.AsyncClient:
            application = await stack.enter_async_context(serving(create_app(settings)))
            transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://izin-siaran.test")
            )

        yield starter


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "local-data"


@pytest.fixture
def local_settings(database_url: str, data_dir: Path) -> Settings:
    return _local_settings(database_url, data_dir)


@pytest.fixture
async def local(start: Starter, local_settings: Settings) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await start(local_settings)
    return client


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638, computed here independently of the service."""
    members = {name: jwk[name] for name in ("crv", "kty", "x")}
    digest = hashlib.sha256(json.dumps(members, sort_keys=True, separators=(",", ":")).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


# --- the published key ------------------------------------------------------------------


async def test_local_mode_publishes_its_token_key_and_the_permits_key(
    local: httpx.AsyncClient, local_settings: Settings, data_dir: Path
) -> None:
    response = await local.get(JWKS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "max-age" in response.headers.get("cache-control", "")
    keys = response.json()["keys"]
    assert len(keys) == 2  # the tokens' (local mode) and the signed permits'
    for jwk in keys:
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}  # no private member ("d")
        assert jwk["kid"] == _thumbprint(jwk)
    token = load_or_create_signer(data_dir).mint(local_settings, ADMIN_NIP)
    assert jwt.get_unverified_header(token)["kid"] in {jwk["kid"] for jwk in keys}


async def test_remote_mode_publishes_the_permits_key_only(
    client: httpx.AsyncClient, keyring: KeyRing
) -> None:
    (jwk,) = (await client.get(JWKS)).json()["keys"]
    assert jwk["kid"] == _thumbprint(jwk)
    assert jwk["kid"] not in keyring.jwks_path.read_text()  # not the identity provider's


# --- its tokens ---------------------------------------------------------------------------


async def test_minted_token_is_accepted_for_the_bootstrap_admin(
    local: httpx.AsyncClient, local_settings: Settings, data_dir: Path
) -> None:
    token = load_or_create_signer(data_dir).mint(local_settings, ADMIN_NIP)
    response = await local.get(ME, headers=_bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["nip"] == ADMIN_NIP
    assert response.json()["roles"] == ["admin"]

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == LOCAL_ISSUER
    assert claims["aud"] == LOCAL_AUDIENCE
    assert claims["sub"] == ADMIN_NIP
    assert claims["exp"] - claims["iat"] == 3600


async def test_minted_token_verifies_against_the_published_key(
    local: httpx.AsyncClient, local_settings: Settings, data_dir: Path
) -> None:
    """Anyone holding only the public JWKS can check these tokens (as another service would)."""
    jwks = (await local.get(JWKS)).json()
    token = load_or_create_signer(data_dir).mint(local_settings, ADMIN_NIP)
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token, key, algorithms=["EdDSA"], audience=LOCAL_AUDIENCE, issuer=LOCAL_ISSUER
    )
    assert claims["sub"] == ADMIN_NIP


async def test_local_tokens_are_checked_like_any_other(
    local: httpx.AsyncClient,
    local_settings: Settings,
    data_dir: Path,
    tokens: Tokens,
    tmp_path: Path,
) -> None:
    signer = load_or_create_signer(data_dir)
    expired = signer.mint(local_settings, ADMIN_NIP, minutes=-5)
    assert_problem(await local.get(ME, headers=_bearer(expired)), 401, "token_expired")
    nobody = signer.mint(local_settings, make_nip())
    assert_problem(await local.get(ME, headers=_bearer(nobody)), 401, "unknown_employee")
    # Signed by another data directory's key: not ours.
    stranger = load_or_create_signer(tmp_path / "elsewhere").mint(local_settings, ADMIN_NIP)
    assert_problem(await local.get(ME, headers=_bearer(stranger)), 401, "invalid_token")
    # A token from the external identity provider means nothing in local mode.
    for alg in ("RS256", "ES256", "EdDSA"):
        response = await local.get(ME, headers=tokens.auth(ADMIN_NIP, alg=alg))
        assert_problem(response, 401, "invalid_token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Tokens minted for another issuer or audience, by the right key, are refused too.
    wrong_issuer = load_or_create_signer(data_dir).mint(
        _local_settings("sqlite://", data_dir, auth_issuer="https://idp.example"), ADMIN_NIP
    )
    assert_problem(await local.get(ME, headers=_bearer(wrong_issuer)), 401, "invalid_token")


async def test_cli_mints_a_token_the_service_accepts(
    local: httpx.AsyncClient, data_dir: Path
) -> None:
    local_jwks = (await local.get(JWKS)).json()
    result = run_cli("token", ADMIN_NIP, "--minutes", "5", env={"DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == local_jwks["keys"][0]["kid"]
    response = await local.get(ME, headers=_bearer(token))
    assert response.status_code == 200, response.text
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300


def test_cli_refuses_to_mint_in_remote_mode(tmp_path: Path) -> None:
    env = {
        "DATA_DIR": str(tmp_path),
        "AUTH_JWKS_URL": "https://idp.example/jwks.json",
        "AUTH_ISSUER": "https://idp.example",
        "AUTH_AUDIENCE": "izin-siaran",
    }
    result = run_cli("token", ADMIN_NIP, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert not (tmp_path / KEY_FILE).exists()


# --- the key file ---------------------------------------------------------------------------


def test_key_file_is_created_once_private_and_reused(data_dir: Path) -> None:
    assert not data_dir.exists()
    first = load_or_create_signer(data_dir)
    key_file = data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content, inode = key_file.read_bytes(), key_file.stat().st_ino
    assert b"PRIVATE KEY" in content
    second = load_or_create_signer(data_dir)
    assert second.kid == first.kid
    assert second.public_jwk == first.public_jwk
    assert key_file.read_bytes() == content
    assert key_file.stat().st_ino == inode
    assert sorted(p.name for p in data_dir.iterdir()) == [KEY_FILE]  # no temporary left


def test_processes_starting_together_agree_on_one_key(data_dir: Path) -> None:
    program = (
        "import sys; from pathlib import Path; "
        "from app.auth.local import load_or_create_signer; "
        "print(load_or_create_signer(Path(sys.argv[1])).kid)"
    )
    project = Path(__file__).resolve().parent.parent
    children = [
        subprocess.Popen(
            [sys.executable, "-c", program, str(data_dir)],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    kids = {stdout.strip() for stdout, _ in outputs}
    assert len(kids) == 1
    assert kids == {load_or_create_signer(data_dir).kid}
    assert sorted(p.name for p in data_dir.iterdir()) == [KEY_FILE]
    assert stat.S_IMODE((data_dir / KEY_FILE).stat().st_mode) == 0o600


def test_a_key_file_of_the_wrong_kind_is_refused(data_dir: Path) -> None:
    data_dir.mkdir()
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (data_dir / KEY_FILE).write_bytes(pem)
    with pytest.raises(RuntimeError, match="Ed25519"):
        load_or_create_signer(data_dir)


async def test_restart_keeps_the_key_and_its_tokens(
    start: Starter, local_settings: Settings, data_dir: Path
) -> None:
    first = await start(local_settings)
    jwks = (await first.get(JWKS)).json()
    token = load_or_create_signer(data_dir).mint(local_settings, ADMIN_NIP)
    assert (await first.get(ME, headers=_bearer(token))).status_code == 200
    second = await start(local_settings)  # another instance on the same data directory
    assert (await second.get(JWKS)).json() == jwks
    assert (await second.get(ME, headers=_bearer(token))).status_code == 200


# --- BOOTSTRAP_ADMIN_NIPS -----------------------------------------------------------------


async def _employee(http: httpx.AsyncClient, nip: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get(f"/api/v1/employees/{nip}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_bootstrap_admins_exist_after_start(
    start: Starter, settings: Settings, tokens: Tokens
) -> None:
    pppk = "199001012023451007"  # contract no. 45 cannot be a PNS appointment month
    http = await start(settings.model_copy(update={"bootstrap_admin_nips": [ADMIN_NIP, pppk]}))
    for nip, employment in ((ADMIN_NIP, "pns"), (pppk, "pppk")):
        employee = await _employee(http, nip, tokens.auth(ADMIN_NIP))
        assert employee["active"] is True
        assert employee["roles"] == ["admin"]
        assert employee["name"] == nip  # the name defaults to the NIP
        assert employee["employment"] == employment
        me = await http.get(ME, headers=tokens.auth(nip))
        assert me.status_code == 200
        assert me.json()["roles"] == ["admin"]


async def test_bootstrap_admins_from_the_environment(
    start: Starter,
    database_url: str,
    keyring: KeyRing,
    tmp_path: Path,
    tokens: Tokens,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    second = make_nip()
    monkeypatch.setenv("BOOTSTRAP_ADMIN_NIPS", f" {ADMIN_NIP} ,{second}, ")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=tmp_path / "data",
        auth_jwks_url=keyring.jwks_url,
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
        log_level="WARNING",
    )
    assert settings.bootstrap_admin_nips == [ADMIN_NIP, second]
    http = await start(settings)
    for nip in (ADMIN_NIP, second):
        assert (await http.get(ME, headers=tokens.auth(nip))).json()["roles"] == ["admin"]


@pytest.mark.parametrize("value", ["12345", "198904042014021003,not-a-nip", "198913452014021003"])
def test_an_invalid_bootstrap_nip_stops_start_up(value: str) -> None:
    with pytest.raises(SettingsError, match="BOOTSTRAP_ADMIN_NIPS"):
        load_settings(_env_file=None, bootstrap_admin_nips=value)


@pytest.mark.parametrize(
    ("change", "roles_after"),
    [
        ({"roles": []}, ["admin"]),
        ({"active": False}, ["admin"]),
        ({"roles": [], "active": False}, ["admin"]),
        ({"roles": ["auditor"], "active": False}, ["admin", "auditor"]),
    ],
    ids=["demoted", "deactivated", "both", "auditor-kept"],
)
async def test_restart_restores_a_bootstrap_admin(
    client: httpx.AsyncClient,
    org: Org,
    settings: Settings,
    start: Starter,
    tokens: Tokens,
    app: FastAPI,
    change: dict[str, Any],
    roles_after: list[str],
) -> None:
    other_admin = await org.employee(roles=["admin"])
    as_other = org.as_(other_admin["nip"])
    response = await client.patch(f"/api/v1/employees/{ADMIN_NIP}", json=change, headers=as_other)
    assert response.status_code == 200, response.text
    # Until a restart, the change holds.
    me = await client.get(ME, headers=tokens.auth(ADMIN_NIP))
    if change.get("active") is False:
        assert_problem(me, 401, "employee_inactive")
    else:
        assert me.json()["roles"] == []

    restarted = await start(settings)  # a new lifespan on the same database
    employee = await _employee(restarted, ADMIN_NIP, as_other)
    assert employee["active"] is True
    assert employee["roles"] == roles_after
    me = await restarted.get(ME, headers=tokens.auth(ADMIN_NIP))
    assert me.status_code == 200
    # And the restoration is on the record, by the system.
    async with app.state.db.engine.connect() as connection:
        last = (
            await connection.execute(
                text(
                    "SELECT action, actor FROM audit_events WHERE subject = :s "
                    "ORDER BY seq DESC LIMIT 1"
                ),
                {"s": f"employee:{ADMIN_NIP}"},
            )
        ).one()
    assert tuple(last) == ("employee.updated", "system")


async def test_restart_with_nothing_to_restore_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, start: Starter, app: FastAPI, org: Org
) -> None:
    before = (await client.get(f"/api/v1/employees/{ADMIN_NIP}", headers=org.admin)).json()

    async def events() -> int:
        async with app.state.db.engine.connect() as connection:
            return int(
                (await connection.execute(text("SELECT count(*) FROM audit_events"))).one()[0]
            )

    count = await events()
    restarted = await start(settings)
    after = (await restarted.get(f"/api/v1/employees/{ADMIN_NIP}", headers=org.admin)).json()
    assert after == before
    assert await events() == count
