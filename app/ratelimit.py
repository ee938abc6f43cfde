"""Rate limits (docs/RULES.md#rate-limits): budgets keyed on who the caller *is*, never on
what a request sends.

- A verified caller (an employee's NIP, an API key's id) spends a budget of their own,
  where their credential is verified: `app.auth.dependencies.get_principal` for the
  routes, and the fast paths, through `RateLimits.admit`. The check has its own, larger
  budget, so a busy gateway is never slowed by the limit meant for people.
- A request whose credential fails verification, or that has none, spends its client
  address' failure budget (`RateLimits.failed`). Once that is spent, further *failing*
  requests from the address are refused; a verified caller there keeps their own budget.
  So random tokens mint nothing: they all spend the one budget of where they come from.
- Public endpoints (every path outside `/api/` — the JWKS, the verify page, the docs —
  but `/healthz` and `/readyz`, and the API's public operations: status lists and
  credential verification, `PUBLIC_API`) spend the client address' public budget, here
  in `RateLimitMiddleware`.
- The client address is the socket peer; with `TRUSTED_PROXIES`, the address those
  proxies forwarded (uvicorn's `ProxyHeadersMiddleware`, added in `app.main` only then).
  IPv6 addresses count by their /64, the block one subscriber usually holds.
- Memory is bounded by construction: each budget keeps at most `CAPACITY` buckets and
  drops the least recently used one to make room, whatever callers send.

Over a budget: 429 `rate_limited` with `Retry-After`. Every response that spent a budget
carries the IETF RateLimit header fields draft's `RateLimit-Limit`, `-Remaining`, `-Reset`
and `-Policy`. Each instance counts for itself: N instances admit up to N times the rate.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import AppError, app_error_response

CHECK_PATHS = frozenset({"/api/v1/authorizations/check", "/api/v1/authorizations/check-batch"})
NEVER_LIMITED = frozenset({"/healthz", "/readyz"})
PUBLIC_API = ("/api/v1/credentials/verify", "/api/v1/status-lists/")
"""The API's public operations (SPEC §9): no credential, the address' public budget."""
CAPACITY = 16_384
"""Buckets a budget keeps at most (≈ 310 bytes each: ≈ 5 MB a budget, four budgets)."""

_SPENT = "ratelimit"  # where a request's spending is kept in its ASGI scope's state
CALLER = "caller"  # and the verified caller it was admitted as (for the access log)


class Spent(NamedTuple):
    """What one request took from a budget."""

    allowed: bool
    left: float
    wait: float  # seconds until the request would be allowed
    budget: Budget

    def headers(self) -> list[tuple[bytes, bytes]]:
        budget = self.budget
        reset = math.ceil((budget.limit - self.left) / budget.rate)
        return [
            *budget.fixed_headers,
            (b"ratelimit-remaining", b"%d" % self.left),
            (b"ratelimit-reset", b"%d" % reset),
        ]


class RateLimited(AppError, status=429, code="rate_limited", title="Too many requests"):
    def __init__(self, spent: Spent) -> None:
        retry_after = str(max(1, math.ceil(spent.wait)))
        super().__init__(
            f"Too many requests from this caller; retry in {retry_after} s.",
            headers={"Retry-After": retry_after},
        )


class Budget:
    """`limit` requests a minute per key, refilled continuously, bursts up to `limit`: token
    buckets, at most `capacity` of them (the least recently used is dropped for a new key;
    forgetting a bucket is generous, never wrongly strict)."""

    def __init__(self, limit: int, clock: Callable[[], float], capacity: int = CAPACITY) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.capacity = capacity
        self.fixed_headers = [
            (b"ratelimit-limit", str(limit).encode()),
            (b"ratelimit-policy", f"{limit};w=60".encode()),
        ]
        self._clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key: [tokens, updated]

    def __len__(self) -> int:
        return len(self._buckets)

    def refill(self) -> None:
        """Every key's budget full again (forgotten)."""
        self._buckets.clear()

    def take(self, key: str, cost: int = 1) -> Spent:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.capacity:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [float(self.limit), now]
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.limit, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            return Spent(True, bucket[0], 0.0, self)
        return Spent(False, bucket[0], (cost - bucket[0]) / self.rate, self)


def client_address(scope: Scope) -> str:
    """Where a request comes from, for the address budgets: the client host (already the
    forwarded one behind a trusted proxy), an IPv6 host by its /64."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    if ":" in host:
        try:
            return str(ipaddress.IPv6Network((host, 64), strict=False))
        except ValueError:
            return host
    return host


class RateLimits:
    """The service's budgets, one set per process."""

    def __init__(
        self,
        *,
        per_minute: int,
        check_per_minute: int,
        auth_failures_per_minute: int,
        public_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.callers = Budget(per_minute, clock)
        self.checks = Budget(check_per_minute, clock)
        self.failures = Budget(auth_failures_per_minute, clock)
        self.public = Budget(public_per_minute, clock)

    def refill(self) -> None:
        """Full budgets for everyone: what a start of the service begins with."""
        for budget in (self.callers, self.checks, self.failures, self.public):
            budget.refill()

    def admit(self, scope: Scope, caller: str, cost: int = 1) -> None:
        """A verified caller (`app.auth.credentials.caller_name`) spends their own budget;
        `RateLimited` when it is spent."""
        budget = self.checks if scope["path"] in CHECK_PATHS else self.callers
        scope.setdefault("state", {})[CALLER] = caller
        _spend(scope, budget, caller, cost)

    def failed(self, scope: Scope) -> None:
        """A request whose credential failed (or that had none) spends its address' failure
        budget; `RateLimited` when that is spent (the 429 replaces the 401)."""
        _spend(scope, self.failures, client_address(scope))

    def public_request(self, scope: Scope) -> None:
        _spend(scope, self.public, client_address(scope))


def _spend(scope: Scope, budget: Budget, key: str, cost: int = 1) -> None:
    spent = budget.take(key, cost)
    scope.setdefault("state", {})[_SPENT] = spent
    if not spent.allowed:
        raise RateLimited(spent)


def spent_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The RateLimit headers of the budget the request spent, for its response (none when
    it spent none). The fast paths, in front of this layer, put them on their answers."""
    spent: Spent | None = scope.get("state", {}).get(_SPENT)
    return [] if spent is None else spent.headers()


def is_public(path: str) -> bool:
    """Whether a path is public, and so limited by its address' public budget."""
    if path.startswith("/api/"):
        return path.startswith(PUBLIC_API)
    return path not in NEVER_LIMITED


class RateLimitMiddleware:
    """Limits the public endpoints per address, and puts the RateLimit headers of whatever
    budget a request spent on its response."""

    def __init__(self, app: ASGIApp, *, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared by every layer below, whatever copies the scope
        path: str = scope["path"]
        if is_public(path):
            try:
                self.limits.public_request(scope)
            except RateLimited as exc:
                response = app_error_response(exc, path)
                response.raw_headers.extend(spent_headers(scope))
                await response(scope, receive, send)
                return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = spent_headers(scope)
                if spent:
                    message = {**message, "headers": [*message.get("headers", []), *spent]}
            await send(message)

        await self.app(scope, receive, send_with_limits)
