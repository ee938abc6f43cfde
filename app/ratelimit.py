"""A rate limit per caller: token buckets in this process, answered with 429 + Retry-After.

The caller is whoever presents the credential (bearer token or API key; the
client address when there is none), recognised without touching the database,
so limiting costs a dictionary lookup. The check has its own, much larger budget,
so a busy gateway is never slowed by the limit meant for people. Headers follow
the IETF RateLimit header fields draft: `RateLimit-Limit`, `RateLimit-Remaining`,
`RateLimit-Reset` and `RateLimit-Policy`.

Each instance counts for itself: N instances behind a load balancer admit up to N
times the configured rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.credentials import credential_headers
from app.errors import problem_response

CHECK_PATH = "/api/v1/authorizations/check"
MAX_TRACKED_CALLERS = 100_000


@dataclass
class Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """`limit` requests per minute, refilled continuously, bursts up to `limit`."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.fixed_headers = [
            (b"ratelimit-limit", str(limit).encode()),
            (b"ratelimit-policy", f"{limit};w=60".encode()),
        ]
        self._clock = clock
        self._buckets: dict[int, Bucket] = {}

    def take(self, caller: int) -> tuple[bool, float, float]:
        """(allowed, tokens left, seconds until one more token)."""
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_CALLERS:
                self._buckets.clear()  # forgetting is generous, never wrongly strict
            bucket = self._buckets[caller] = Bucket(float(self.limit), now)
        else:
            bucket.tokens = min(self.limit, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, bucket.tokens, 0.0
        return False, bucket.tokens, (1 - bucket.tokens) / self.rate


def _caller(scope: Scope) -> int:
    """Who is calling, by the credential presented as the routes read it
    (`app.auth.credentials.credential_headers`), or by client address without one."""
    headers = credential_headers(scope["headers"])
    presented = headers.authorization if headers.authorization is not None else headers.api_key
    if presented is not None:
        return hash(presented)
    client = scope.get("client")
    return hash(client[0] if client else "")


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_minute: int,
        check_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.general = TokenBuckets(per_minute, clock)
        self.check = TokenBuckets(check_per_minute, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        buckets = self.check if path == CHECK_PATH else self.general
        allowed, left, wait = buckets.take(_caller(scope))
        headers = [
            *buckets.fixed_headers,
            (b"ratelimit-remaining", b"%d" % left),
            (b"ratelimit-reset", b"%d" % math.ceil((buckets.limit - left) / buckets.rate)),
        ]
        if not allowed:
            retry_after = str(max(1, math.ceil(wait)))
            response = problem_response(
                429,
                "rate_limited",
                f"Too many requests from this caller; retry in {retry_after} s.",
                headers={"Retry-After": retry_after},
                instance=path,
            )
            response.raw_headers.extend(headers)
            await response(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_limits)
