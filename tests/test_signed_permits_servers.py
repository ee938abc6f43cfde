"""Signed permits through real servers (docs/RULES.md#signed-permits): the QR codes read by a
real decoder, the verify page in a real browser at a phone's size with JavaScript off, the
docs' third-party verifier, and two instances on one database."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import BrowserContext, async_playwright
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from app.permits.models import Permit
from app.secretbox import new_key
from tests.conftest import PROJECT_DIR
from tests.credentials_support import (
    approved,
    credential_of,
    opened,
    published_keys,
    status_bit,
    verdict,
)
from tests.permits_support import Office
from tests.support import (
    KeyRing,
    Org,
    ServerProcess,
    Tokens,
    browse,
    chromium,
    free_port,
    server_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

GREEN, RED = (0x17, 0x6B, 0x33), (0xA6, 0x1B, 0x1B)  # the page's valid and invalid verdicts


@pytest.fixture
def server(database_url: str, keyring: KeyRing, tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    env = server_env(
        database_url,
        keyring,
        tmp_path / "data",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        RATE_LIMIT_PUBLIC_PER_MINUTE="100000",
    )
    process = ServerProcess(env, tmp_path, port=port)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


async def _begun_a_minute_ago(database_url: str, permit_id: str) -> None:
    """Time passing: the permit's window began a minute ago and lasts an hour."""
    begin = datetime.now(UTC) - timedelta(minutes=1)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Permit)
                .where(Permit.id == permit_id)
                .values(starts_at=begin, ends_at=begin + timedelta(hours=1))
            )
    finally:
        await engine.dispose()


def _decoded(image: Image.Image) -> list[str]:
    """The QR codes in `image`, as a phone's QR scanner reads them. Only QR codes are looked
    for: a decoder trying every format may find a one-dimensional barcode in the modules'
    pattern (a screenshot once read as an EAN-13 beside the QR code)."""
    return [
        result.text
        for result in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    ]


def _same_permit(decoded: list[str], url: str, keys: Any) -> bool:
    """The one code read is a verify URL of a credential that says what `url`'s says (each
    request signs afresh: only `iat` may differ)."""
    (read,) = decoded
    prefix = url.split("=")[0] + "="
    assert read.startswith(prefix), read
    _, claims = opened(read.removeprefix(prefix), keys)
    _, expected = opened(url.removeprefix(prefix), keys)
    return {**claims, "iat": 0} == {**expected, "iat": 0}


def _has_colour(image: Image.Image, colour: tuple[int, int, int]) -> bool:
    counts = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return any(count > 1000 for count, pixel in counts if pixel == colour)


@asynccontextmanager
async def phone_browser() -> AsyncIterator[BrowserContext]:
    """Debian's Chromium through Playwright, as a phone with JavaScript turned off."""
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield await browser.new_context(
                java_script_enabled=False,
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
            )
        finally:
            await browser.close()


async def _look(phone: BrowserContext, url: str) -> tuple[dict[str, str], bytes]:
    """What the page shows at `url`: its verdict (reason, heading, all text, the HTML), and
    a screenshot of the whole page; no Content Security Policy refusal on the way."""
    page = await phone.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    try:
        response = await page.goto(url)
        assert response is not None
        assert response.status == 200
        box = page.locator("#verdict")
        seen = {
            "reason": await box.get_attribute("data-reason") or "",
            "heading": await box.locator("h1").inner_text(),
            "text": await page.locator("main").inner_text(),
            "html": await page.content(),
        }
        shot = await page.screenshot(full_page=True)
    finally:
        await page.close()
    assert not [line for line in refused if "Content Security Policy" in line], refused
    return seen, shot


def _third_party_verdict(base_url: str, credential: str) -> str:
    """docs/verify_credential.py, run as a platform would run it."""
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "docs" / "verify_credential.py"), base_url, credential],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.strip().splitlines()[0]


async def test_qr_codes_the_page_in_a_phone_browser_and_the_docs_verifier(
    server: ServerProcess, tokens: Tokens, database_url: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        office = await Office.create(Org(http, tokens))
        permit = await approved(office)
        await _begun_a_minute_ago(database_url, permit["id"])
        issued = await credential_of(office, permit["id"])
        url, credential = issued["verify_url"], issued["credential"]
        assert url.startswith(f"{server.base_url}/verify?credential=")
        staff = office.org.as_(office.staff["nip"])

        png = await http.get(f"/api/v1/permits/{permit['id']}/credential.png", headers=staff)
        assert png.headers["content-type"] == "image/png"
        keys = await published_keys(http)
        assert _same_permit(_decoded(Image.open(io.BytesIO(png.content))), url, keys)

        svg = await http.get(f"/api/v1/permits/{permit['id']}/credential.svg", headers=staff)
        assert svg.headers["content-type"].startswith("image/svg+xml")
        drawing = tmp_path / "credential.svg"
        drawing.write_bytes(svg.content)
        shot = tmp_path / "svg.png"
        await browse(drawing.as_uri(), "--window-size=700,700", f"--screenshot={shot}")
        # The SVG as a browser draws it, read as a phone's camera would read it.
        assert _same_permit(_decoded(Image.open(shot)), url, keys)

        async with phone_browser() as phone:
            verdict_box, shot_bytes = await _look(phone, url)
            assert verdict_box["reason"] == "valid"
            assert verdict_box["heading"].startswith("SAH")
            assert office.staff["name"] in verdict_box["text"]
            assert office.staff["nip"] not in verdict_box["html"]
            page = Image.open(io.BytesIO(shot_bytes))
            assert page.size[0] == 390 * 2  # nothing wider than the phone (2x pixels)
            assert _has_colour(page, GREEN)  # the page's style applied under its policy
            assert not _has_colour(page, RED)
            assert _third_party_verdict(server.base_url, credential) == "valid"

            response = await office.act(
                permit["id"], "revoke", office.head["nip"], {"reason": "Batal"}
            )
            assert response.status_code == 200
            verdict_box, shot_bytes = await _look(phone, url)
            assert verdict_box["reason"] == "revoked"
            assert verdict_box["heading"].startswith("TIDAK SAH")
            page = Image.open(io.BytesIO(shot_bytes))
            assert _has_colour(page, RED)
            assert not _has_colour(page, GREEN)
        assert _third_party_verdict(server.base_url, credential) == "revoked"
        tampered = credential[:-6] + ("A" * 6 if not credential.endswith("A" * 6) else "B" * 6)
        assert _third_party_verdict(server.base_url, tampered) == "bad_signature"
        assert _third_party_verdict(server.base_url, "nonsense") == "malformed"


async def test_two_instances_sign_verify_and_revoke_alike(
    database_url: str, keyring: KeyRing, tokens: Tokens, tmp_path: Path
) -> None:
    """Two processes on one database (on SQLite, one file on one machine), each with its
    own data folder and the same SECRETS_KEY."""
    secrets = new_key()
    servers = []
    try:
        for name in ("a", "b"):
            port = free_port()
            env = server_env(
                database_url,
                keyring,
                tmp_path / name,
                PUBLIC_BASE_URL="https://izin.anambaskab.go.id",
                SECRETS_KEY=secrets,
                RATE_LIMIT_PUBLIC_PER_MINUTE="100000",
            )
            servers.append(ServerProcess(env, tmp_path, port=port))
        for process in servers:
            process.wait_ready()
        async with (
            httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as a,
            httpx.AsyncClient(base_url=servers[1].base_url, timeout=30) as b,
        ):
            assert (await a.get("/.well-known/jwks.json")).json() == (
                await b.get("/.well-known/jwks.json")
            ).json()
            office_a = await Office.create(Org(a, tokens))
            office_b = Office(
                Org(b, tokens),
                **{
                    name: getattr(office_a, name)
                    for name in ("unit", "head", "staff", "colleague", "workspace")
                },
            )
            permit = await approved(office_a)
            await _begun_a_minute_ago(database_url, permit["id"])
            from_a = (await credential_of(office_a, permit["id"]))["credential"]
            from_b = (await credential_of(office_b, permit["id"]))["credential"]
            for credential in (from_a, from_b):
                for instance in (a, b):
                    opened(credential, await published_keys(instance))  # jwcrypto verifies
                    assert (await verdict(instance, credential))["reason"] == "valid"
                    assert await status_bit(instance, credential) == 0
            revoked = await office_b.act(
                permit["id"], "revoke", office_b.head["nip"], {"reason": "Dicabut"}
            )
            assert revoked.status_code == 200
            for credential in (from_a, from_b):
                for instance in (a, b):
                    assert (await verdict(instance, credential))["reason"] == "revoked"
                    assert await status_bit(instance, credential) == 1
    finally:
        for process in servers:
            process.stop()
