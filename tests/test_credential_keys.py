"""The keys signed permits are signed with (docs/RULES.md#credential-key): one key on every
instance, generated once and kept sealed in the database, or the operator's file; rotation
that keeps old credentials verifying until they end; instances that cannot sign say so.
Several instances are several applications on one database, each with its own data folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from jwcrypto import jwk
from pydantic import SecretStr
from sqlalchemy import update

from app.config import Settings
from app.credentials.models import CredentialKey
from app.jwk import private_pem
from app.main import create_app
from app.secretbox import new_key
from tests.conftest import run_cli
from tests.credentials_support import (
    JWKS,
    VERIFY,
    approved,
    credential_of,
    running,
    status_bit,
    verdict,
)
from tests.permits_support import Office
from tests.support import Org, Tokens, assert_problem, audit_trail, serving

pytestmark = pytest.mark.anyio

SECRETS = new_key()

Instance = tuple[FastAPI, httpx.AsyncClient]
Starter = Callable[..., Awaitable[Instance]]


@pytest.fixture
async def start(settings: Settings, tmp_path: Path) -> AsyncIterator[Starter]:
    """Starts an instance of the service on the test's database: its own data folder,
    `SECRETS_KEY` shared unless given, `changes` applied to its settings."""
    async with AsyncExitStack() as stack:
        made = 0

        async def starter(**changes: Any) -> Instance:
            nonlocal made
            made += 1
            changes.setdefault("secrets_key", SecretStr(SECRETS))
            config = settings.model_copy(
                update={"data_dir": tmp_path / f"instance-{made}", **changes}
            )
            application = create_app(config)
            await stack.enter_async_context(serving(application))
            transport = httpx.ASGITransport(app=application)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://t")
            )
            return application, client

        yield starter


def _kids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {key["kid"] for key in response.json()["keys"]}


def _kid(credential: str) -> str:
    return str(jwt.get_unverified_header(credential)["kid"])


def _thumbprint(key: Ed25519PrivateKey) -> str:
    """RFC 7638, by jwcrypto (not the service's code)."""
    return str(jwk.JWK.from_pem(private_pem(key)).thumbprint())


def _key_file(folder: Path, name: str) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    path = folder / name
    path.write_bytes(private_pem(key))
    return path, key


async def test_instances_started_at_once_agree_on_one_key(start: Starter) -> None:
    (_, a), (_, b) = await asyncio.gather(start(), start())
    keys = _kids(await a.get(JWKS))
    assert len(keys) == 1
    assert _kids(await b.get(JWKS)) == keys


async def test_a_credential_from_one_instance_is_judged_alike_by_another(
    start: Starter, tokens: Tokens
) -> None:
    app_a, a = await start()
    _, b = await start()
    office = await Office.create(Org(a, tokens))
    permit = await running(app_a, office)
    credential = (await credential_of(office, permit["id"]))["credential"]
    assert (await verdict(b, credential))["reason"] == "valid"
    assert await status_bit(b, credential) == 0
    revoked = await office.act(permit["id"], "revoke", office.head["nip"], {"reason": "Dicabut"})
    assert revoked.status_code == 200
    assert (await verdict(b, credential))["reason"] == "revoked"  # at once, on the other
    assert await status_bit(b, credential) == 1
    assert await status_bit(a, credential) == 1


async def test_an_instance_without_the_shared_secrets_key_cannot_sign_but_still_verifies(
    start: Starter, tokens: Tokens
) -> None:
    app_a, a = await start()
    _, b = await start(secrets_key=SecretStr(new_key()))  # a different SECRETS_KEY
    office = await Office.create(Org(a, tokens))
    permit = await running(app_a, office)
    credential = (await credential_of(office, permit["id"]))["credential"]
    refused = await b.get(
        f"/api/v1/permits/{permit['id']}/credential", headers=office.org.as_(office.staff["nip"])
    )
    problem = assert_problem(refused, 503, "credential_key_unavailable")
    assert "SECRETS_KEY" in problem["detail"]
    assert_problem(await b.get("/api/v1/status-lists/0"), 503, "credential_key_unavailable")
    assert (await verdict(b, credential))["reason"] == "valid"  # public keys need no secret
    assert _kids(await b.get(JWKS)) == _kids(await a.get(JWKS))


async def test_rotation_keeps_old_credentials_verifying_until_their_keys_retire(
    start: Starter, tokens: Tokens, database_url: str, tmp_path: Path
) -> None:
    app_a, a = await start()
    app_b, b = await start()
    office = await Office.create(Org(a, tokens))
    permit = await running(app_a, office)
    old = (await credential_of(office, permit["id"]))["credential"]
    (old_kid,) = _kids(await a.get(JWKS))

    rotated = run_cli(
        "credential-key",
        "rotate",
        env={
            "DATABASE_URL": database_url,
            "SECRETS_KEY": SECRETS,
            "DATA_DIR": str(tmp_path / "cli"),
        },
    )
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.split()[-1]
    assert new_kid != old_kid

    await app_a.state.keyring.load()  # what instance A's next refresh (≤ 10 s) does
    assert _kids(await a.get(JWKS)) == {old_kid, new_kid}
    new = (await credential_of(office, permit["id"]))["credential"]
    assert _kid(new) == new_kid
    # Instance B has not refreshed: a credential naming a key it does not know makes it read
    # the keys again at once.
    assert (await verdict(b, new))["reason"] == "valid"
    assert (await verdict(b, old))["reason"] == "valid"
    assert _kids(await b.get(JWKS)) == {old_kid, new_kid}
    assert await status_bit(b, new) == await status_bit(b, old) == 0

    listed = run_cli("credential-key", "list", env={"DATABASE_URL": database_url})
    assert listed.returncode == 0, listed.stderr
    assert new_kid in listed.stdout
    assert "retired" in listed.stdout

    # Once every permit the old key can have signed has ended, it is no longer published.
    async with app_a.state.db.engine.begin() as connection:
        await connection.execute(
            update(CredentialKey)
            .where(CredentialKey.kid == old_kid)
            .values(published_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    for application in (app_a, app_b):
        await application.state.keyring.load()
    assert _kids(await a.get(JWKS)) == {new_kid}
    assert (await verdict(b, old))["reason"] == "bad_signature"
    assert (await verdict(b, new))["reason"] == "valid"
    actions = [action for action, _, _ in await audit_trail(app_a, f"credential_key:{old_kid}")]
    assert actions == ["credential_key.created", "credential_key.retired"]


async def test_a_retired_key_stays_published_past_the_last_permit_it_may_have_signed(
    start: Starter, tokens: Tokens, settings: Settings
) -> None:
    app_a, a = await start()
    office = await Office.create(Org(a, tokens))
    await approved(office, starts_in=timedelta(days=80), minutes=120)
    (old_kid,) = _kids(await a.get(JWKS))
    async with app_a.state.db.write() as session, session.begin():
        from app.credentials.keys import rotate_signing_key

        await rotate_signing_key(session, app_a.state.secret_box, app_a.state.settings)
        retired = await session.get(CredentialKey, old_kid)
        assert retired is not None
        assert retired.published_until is not None
        longest = timedelta(
            days=settings.policy_max_lead_days, minutes=settings.policy_max_duration_minutes
        )
        assert retired.published_until >= datetime.now(UTC) + longest - timedelta(minutes=1)


async def test_the_operators_key_file_signs_and_a_new_file_retires_the_old_key(
    start: Starter, tokens: Tokens, tmp_path: Path, database_url: str
) -> None:
    first, first_key = _key_file(tmp_path, "first.pem")
    app_a, a = await start(credential_key_file=first)
    assert _kids(await a.get(JWKS)) == {_thumbprint(first_key)}
    office = await Office.create(Org(a, tokens))
    permit = await running(app_a, office)
    old = (await credential_of(office, permit["id"]))["credential"]
    assert _kid(old) == _thumbprint(first_key)
    # Rotating is the operator's: a new file, and a restart.
    refused = run_cli(
        "credential-key",
        "rotate",
        env={"DATABASE_URL": database_url, "CREDENTIAL_KEY_FILE": str(first)},
    )
    assert refused.returncode == 1
    assert "CREDENTIAL_KEY_FILE" in refused.stderr

    second, second_key = _key_file(tmp_path, "second.pem")
    _, b = await start(credential_key_file=second)
    assert _kids(await b.get(JWKS)) == {_thumbprint(first_key), _thumbprint(second_key)}
    new = (
        await b.get(
            f"/api/v1/permits/{permit['id']}/credential",
            headers=office.org.as_(office.staff["nip"]),
        )
    ).json()["credential"]
    assert _kid(new) == _thumbprint(second_key)
    for credential in (old, new):
        assert (await verdict(b, credential))["reason"] == "valid"
    # Instance A still holds the first file: it now says it cannot sign, and why.
    await app_a.state.keyring.load()
    refused_a = await a.get(
        f"/api/v1/permits/{permit['id']}/credential", headers=office.org.as_(office.staff["nip"])
    )
    assert (
        "CREDENTIAL_KEY_FILE"
        in assert_problem(refused_a, 503, "credential_key_unavailable")["detail"]
    )


async def test_keys_due_for_a_read_are_read_in_the_requests_own_session(
    start: Starter, tokens: Tokens
) -> None:
    """Many requests at once, each holding one of the pool's connections, while the keys
    are due for a read: the read takes no connection of its own, so none waits for a
    connection that only a request waiting for that read could give back."""
    application, client = await start(database_pool_size=2, database_timeout_seconds=1)
    office = await Office.create(Org(client, tokens))
    permits = [await approved(office, starts_in=timedelta(days=n + 1)) for n in range(3)]
    credential = (await credential_of(office, permits[0]["id"]))["credential"]
    # As after REFRESH_SECONDS: the next use reads the keys again. Requests that hold a
    # connection when they need the keys (a credential, a status list) come with ones
    # that need the keys first (a verification).
    application.state.keyring._read_at = float("-inf")
    answers = await asyncio.gather(
        *(
            client.get(
                f"/api/v1/permits/{permits[n % 3]['id']}/credential",
                headers=office.org.as_(office.staff["nip"]),
            )
            if n % 3 == 0
            else client.get("/api/v1/status-lists/0")
            if n % 3 == 1
            else client.post(VERIFY, json={"credential": credential})
            for n in range(24)
        )
    )
    assert [answer.status_code for answer in answers] == [200] * 24, answers[0].text


@pytest.mark.parametrize("content", ["rsa", "garbage", "missing"])
async def test_an_unusable_key_file_stops_the_start_with_its_name(
    settings: Settings, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "key.pem"
    if content == "rsa":
        from cryptography.hazmat.primitives import serialization

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    elif content == "garbage":
        path.write_text("not a key")
    application = create_app(settings.model_copy(update={"credential_key_file": path}))
    with pytest.raises(Exception, match="CREDENTIAL_KEY_FILE") as raised:
        async with serving(application):
            pass
    assert str(path) in str(raised.value)
