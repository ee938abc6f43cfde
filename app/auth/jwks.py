"""Where verification keys come from: a JWKS at `file://` or `https://`, or local mode.

Keys are cached for `cache_seconds`. A token naming a `kid` the cache lacks
triggers at most one refetch per `MIN_REFETCH_SECONDS` (a key rotation is picked
up at once, a flood of made-up `kid`s cannot turn into a flood of fetches). A
failed fetch is not retried for `RETRY_AFTER_FAILURE_SECONDS`, whatever asks for
it: while the identity provider is down the last good keys keep serving (with
none, callers fail closed) and requests do not queue up behind fetches that time
out. Nothing is fetched per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import httpx
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
MIN_REFETCH_SECONDS = 30.0
RETRY_AFTER_FAILURE_SECONDS = 5.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 256 * 1024


class KeysUnavailable(Exception):
    """No usable key set could be loaded (unreachable, garbage, empty)."""


class KeySource(Protocol):
    async def key_for(self, kid: str | None) -> PyJWK | None: ...


def parse_jwks(raw: bytes | str | dict[str, Any]) -> dict[str | None, PyJWK]:
    """The usable asymmetric keys of a JWKS document, by `kid`."""
    try:
        document = raw if isinstance(raw, dict) else json.loads(raw)
        key_set = PyJWKSet.from_dict(document)
    except (
        ValueError,
        PyJWKError,
        PyJWKSetError,
        TypeError,
        AttributeError,
        RecursionError,  # absurdly nested JSON
    ) as exc:
        raise KeysUnavailable(f"not a usable JWKS: {exc}") from exc
    keys = {
        key.key_id: key
        for key in key_set.keys
        if key.algorithm_name in ALLOWED_ALGORITHMS and key.public_key_use in (None, "sig")
    }
    if not keys:
        raise KeysUnavailable("the JWKS has no RS256, ES256 or EdDSA signing key")
    return keys


class StaticKeySource:
    """A fixed key set (local mode)."""

    def __init__(self, keys: dict[str | None, PyJWK]) -> None:
        self._keys = keys

    async def key_for(self, kid: str | None) -> PyJWK | None:
        return _pick(self._keys, kid)


class RemoteKeySource:
    """A JWKS at `https://…` or `file://…`, cached for `cache_seconds`."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at = -math.inf  # last successful load
        self._failed_at = -math.inf  # last failed attempt
        self._forced_at = -math.inf  # last refetch caused by an unknown `kid`
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> PyJWK | None:
        if self._due(kid):
            async with self._lock:
                if self._due(kid):  # not already done by a request that held the lock
                    await self._refresh()
        if not self._keys:
            raise KeysUnavailable(f"no keys could be loaded from {self.url}")
        return _pick(self._keys, kid)

    def _stale(self, now: float) -> bool:
        return now - self._fetched_at > self.cache_seconds

    def _due(self, kid: str | None) -> bool:
        now = self._clock()
        if now - self._failed_at < RETRY_AFTER_FAILURE_SECONDS:
            return False
        if self._stale(now):
            return True
        unknown = _pick(self._keys, kid) is None
        return unknown and now - self._forced_at > MIN_REFETCH_SECONDS

    async def _refresh(self) -> None:
        forced = not self._stale(self._clock())  # only an unknown `kid` gets here then
        try:
            self._keys = parse_jwks(await self._download())
            self._fetched_at = self._clock()
        except (KeysUnavailable, OSError, httpx.HTTPError) as exc:
            # Keep serving the last good keys; with none, callers fail closed.
            self._failed_at = self._clock()
            log.error("cannot load JWKS from %s: %s", self.url, exc)
        finally:
            # Stamped once the attempt is over, so requests that queued behind it see
            # its result instead of being turned away while it was under way.
            if forced:
                self._forced_at = self._clock()

    async def _download(self) -> bytes:
        parsed = urlparse(self.url)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
            return await asyncio.to_thread(_read_limited, path)
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
            response = await client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise KeysUnavailable("JWKS document too large")
            return response.content


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise KeysUnavailable("JWKS document too large")
    return data


def _pick(keys: dict[str | None, PyJWK], kid: str | None) -> PyJWK | None:
    if kid is not None:
        return keys.get(kid)
    # A token without `kid` is accepted only when the set leaves no choice.
    return next(iter(keys.values())) if len(keys) == 1 else None
