"""The interactive API docs, served by the service itself, with a strict Content Security
Policy (docs/RULES.md#docs-pages).

`/docs` (Swagger UI) and `/redoc` (ReDoc) load their scripts, styles and favicon from
`/docs/assets/`, files of the `fastapi-offline` package: no CDN, so the docs work on an
offline or filtered network. Their one inline script (Swagger UI's start-up) is allowed by
its SHA-256 hash, computed from the page as served; no other inline or foreign script
runs. Styles may be inline: both UIs set them from their scripts.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _assets_dir() -> Path:
    return Path(str(importlib.resources.files("fastapi_offline") / "static"))


def page_policy(html: str) -> str:
    """The Content-Security-Policy of a docs page: scripts from the service and the page's
    own inline scripts (by hash), styles from the service or inline, images from the
    service or `data:`, requests to the service only; no frames, forms or plugins."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}".rstrip()
        + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def install_docs(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their files from this service."""
    page: dict[str, Any] = {
        "openapi_url": app.openapi_url or "/openapi.json",
        "title": f"{app.title} — API",
    }
    pages = {
        "/docs": get_swagger_ui_html(
            **page,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        ),
        "/redoc": get_redoc_html(
            **page,
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        ),
    }
    app.mount(ASSETS, StaticFiles(directory=_assets_dir()), name="docs-assets")
    for path, response in pages.items():
        html = bytes(response.body).decode()
        app.add_api_route(
            path,
            _page_endpoint(html),
            methods=["GET"],
            include_in_schema=False,
            name=path.strip("/"),
        )


def _page_endpoint(html: str) -> Callable[[], Awaitable[HTMLResponse]]:
    response_headers = {"Content-Security-Policy": page_policy(html)}

    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers=response_headers)

    return page
