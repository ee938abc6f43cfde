"""The docs pages (docs/RULES.md#docs-pages): served by the service itself (no CDN), each
under a strict Content Security Policy, and rendered by a real browser under it (Debian's
Chromium, headless; `.ci/run` installs it)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support import KeyRing, ServerProcess, browse, server_env

pytestmark = pytest.mark.anyio

PAGES = ("/docs", "/redoc")
# ReDoc's footer shows its maker's logo from their CDN: the policy refuses it, by design
# (nothing is loaded from elsewhere); the page renders without it.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def _script_policy(policy: str) -> str:
    return next(part for part in policy.split(";") if part.strip().startswith("script-src"))


async def test_docs_pages_load_nothing_from_elsewhere_and_declare_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    for path in PAGES:
        page = await client.get(path)
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        scripts = _script_policy(policy)
        assert "'unsafe-inline'" not in scripts
        assert "'unsafe-eval'" not in scripts
        assert "http" not in policy  # no other origin may serve anything
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources
        for source in sources:
            assert source.startswith("/docs/assets/"), (path, source)
            assert (await client.get(source)).status_code == 200, source
    swagger = await client.get("/docs")
    assert "'sha256-" in _script_policy(swagger.headers["content-security-policy"])


@pytest.mark.slow
async def test_docs_pages_render_in_a_browser_under_their_policy(
    database_url: str, keyring: KeyRing, tmp_path: Path
) -> None:
    server = ServerProcess(server_env(database_url, keyring, tmp_path / "data"), tmp_path)
    try:
        server.wait_ready()
        for path, rendered in (("/docs", 'class="opblock'), ("/redoc", "api-content")):
            stdout, stderr = await browse(
                server.base_url + path, "--virtual-time-budget=15000", "--dump-dom"
            )
            assert rendered in stdout, (path, stdout[-2000:], stderr[-3000:])
            refused = [
                line
                for line in stderr.splitlines()
                if "Content Security Policy" in line and REDOC_LOGO not in line
            ]
            assert refused == [], path
    finally:
        server.stop()
