"""The webhook sender (docs/RULES.md#delivery): inside every service process, no daemon.

It claims due deliveries from the outbox — on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
of several instances exactly one takes each attempt; on SQLite under its one writer — and
marks each claimed row with a lease (a token, and a `next_attempt_at` past the attempt's
longest time). Then, outside any transaction, it posts, and records the answer only if the
lease is still its own. One write transaction a turn records every answer that came in and
claims what is due for the room there is (on SQLite, where a write waits for its turn,
that turn is the cost). An instance that dies mid-attempt leaves the row to be claimed
again when the lease runs out: delivery is at least once, and nothing committed is lost.
A webhook deactivated meanwhile ends its rows at the claim (`webhook_inactive`).

Each attempt is signed afresh (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature`), resolves the URL again and connects to the address it checked,
follows no redirect, reads no more of the answer than its status, and ends within
`WEBHOOK_TIMEOUT_SECONDS`. A failure is tried again after each delay of
`WEBHOOK_RETRY_SCHEDULE_SECONDS`, then marked `failed`. One endpoint has at most
`WEBHOOK_CONCURRENCY_PER_ENDPOINT` attempts in flight per instance, and its due rows are
not claimed while it has none to spare, so a slow or dead endpoint never holds up another.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import certifi
import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import __version__
from app.config import Settings
from app.db import Database
from app.errors import InvalidInput
from app.metrics import Metrics
from app.outbox.models import Webhook, WebhookDelivery
from app.push.addresses import (
    RESOLVE_SECONDS,
    AddressRules,
    BlockedAddress,
    Unresolved,
    checked_address,
    parse,
)
from app.push.webhooks import INACTIVE, signing_key
from app.secretbox import SecretBox, SecretsKeyError
from app.timeutil import utcnow

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
"""The longest the sender sleeps without being woken: rows written by another process
that sent no notice (the CLI on SQLite) wait at most this long."""
LEASE_MARGIN_SECONDS = RESOLVE_SECONDS + 5.0
"""How long past its timeout an attempt may take (resolving, recording) before its lease
lapses and another instance may make it again (at least once: a duplicate, never a loss)."""


@dataclass(frozen=True)
class Job:
    """A claimed delivery: what an attempt needs, read when it was claimed."""

    id: str
    webhook_id: str
    message_id: str
    payload: str
    attempts: int  # this attempt's number, from 1
    lease: str
    created_at: datetime
    url: str
    keys: tuple[str, ...] | None  # the secrets that sign it; None: SECRETS_KEY opens none


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """One `v1,<base64 HMAC-SHA256>` entry of `webhook-signature` (Standard Webhooks)."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Sender:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        settings: Settings,
        metrics: Metrics,
        rules: AddressRules,
    ) -> None:
        self._db, self._box, self._metrics, self._rules = db, box, metrics, rules
        self._timeout = settings.webhook_timeout_seconds
        self._schedule = list(settings.webhook_retry_schedule_seconds)
        self._per_endpoint = settings.webhook_concurrency_per_endpoint
        self._capacity = settings.webhook_concurrency
        self._lease = timedelta(seconds=self._timeout + LEASE_MARGIN_SECONDS)
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        trust = ssl.create_default_context(cafile=certifi.where())
        if settings.webhook_ca_file is not None:
            trust.load_verify_locations(cafile=settings.webhook_ca_file)
        self._client = httpx.AsyncClient(
            verify=trust,
            follow_redirects=False,
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_connections=self._capacity, max_keepalive_connections=8),
            headers={"user-agent": f"Izin-Siaran-Webhooks/{__version__}"},
        )
        self._loop: asyncio.Task[None] | None = None
        self._outcomes: list[tuple[Job, Outcome, datetime]] = []
        self._opened: dict[str, str] = {}  # sealed secret -> secret, read once

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-sender")

    def wake(self) -> None:
        """Something may be due now (a change committed, an attempt ended)."""
        self._wakeup.set()

    async def close(self) -> None:
        """Stop claiming and abandon attempts under way: their leases run out and another
        instance (or this one, restarted) makes them again."""
        tasks = [t for t in (self._loop, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # answers already in: recorded if they can be
            async with self._db.write() as session, session.begin():
                await self._record(session, self._take_outcomes())
        await self._client.aclose()

    # --- claiming ------------------------------------------------------------------------

    async def _run(self) -> None:
        """Each turn, in one write transaction: record the answers that came in, and claim
        what is due for the room there is (on SQLite a write turn is the cost). With no
        answer to record and nothing due, no transaction: a read says when to look again."""
        failures = 0
        while True:
            self._wakeup.clear()
            answers = self._take_outcomes()
            jobs: list[Job] = []
            try:
                due_in = 0.0 if answers else await self._until_due()
                if answers or (due_in <= 0 and self._has_room()):
                    async with self._db.write() as session, session.begin():
                        recorded = await self._record(session, answers)
                        jobs = await self._claim(session)
                    for state, seconds in recorded:
                        self._metrics.delivery(state, seconds)
                wait = 0.0 if jobs else (due_in if due_in > 0 else POLL_SECONDS)
                failures = 0
            except Exception:
                failures += 1
                log.exception("webhook sender: recording or claiming failed; retrying")
                self._outcomes[:0] = answers
                wait = min(POLL_SECONDS * failures, 30.0)
            for job in jobs:
                self._in_flight[job.webhook_id] += 1
                task = asyncio.create_task(self._attempt(job), name=f"webhook-{job.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if wait > 0 and not self._outcomes:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait, POLL_SECONDS)):
                        await self._wakeup.wait()
            else:
                await asyncio.sleep(0)

    def _has_room(self) -> bool:
        return sum(self._in_flight.values()) < self._capacity

    async def _claim(self, session: AsyncSession) -> list[Job]:
        room = self._capacity - sum(self._in_flight.values())
        if room <= 0:
            return []
        busy = self._busy()
        now = utcnow()
        statement = (
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(room * 2)
        )
        if busy:
            statement = statement.where(WebhookDelivery.webhook_id.not_in(busy))
        if self._db.dialect == "postgresql":
            statement = statement.with_for_update(skip_locked=True, of=WebhookDelivery)
        jobs: list[Job] = []
        taken = Counter(self._in_flight)
        for row, hook in (await session.execute(statement)).all():
            if not hook.active:  # deactivated just now: it ends as deactivation ends them
                row.status, row.last_error, row.next_attempt_at = "failed", INACTIVE, None
                continue
            if taken[row.webhook_id] >= self._per_endpoint:
                continue
            taken[row.webhook_id] += 1
            row.attempts += 1
            row.lease = secrets.token_hex(16)
            row.next_attempt_at = now + self._lease
            row.last_attempt_at = now
            jobs.append(
                Job(
                    row.id,
                    row.webhook_id,
                    row.message_id,
                    row.payload,
                    row.attempts,
                    row.lease,
                    row.created_at,
                    hook.url,
                    self._keys(hook, now),
                )
            )
            if len(jobs) >= room:
                break
        return jobs

    def _keys(self, hook: Webhook, now: datetime) -> tuple[str, ...] | None:
        """The webhook's signing secrets now (the previous one too during a rotation's
        overlap), each opened once per process; None if SECRETS_KEY opens none."""
        sealed = [hook.secret_sealed]
        if (
            hook.previous_secret_sealed
            and hook.previous_secret_until
            and (hook.previous_secret_until > now)
        ):
            sealed.append(hook.previous_secret_sealed)
        try:
            return tuple(self._open(s) for s in sealed)
        except SecretsKeyError as exc:
            log.error("webhook %s: %s", hook.id, exc)
            return None

    def _open(self, sealed: str) -> str:
        secret = self._opened.get(sealed)
        if secret is None:
            if len(self._opened) >= 10_000:
                self._opened.clear()
            secret = self._opened[sealed] = self._box.open(sealed)
        return secret

    def _busy(self) -> list[str]:
        """The webhooks with no room for another attempt in flight."""
        return [hook for hook, n in self._in_flight.items() if n >= self._per_endpoint]

    async def _until_due(self) -> float:
        """Seconds until the next pending delivery this instance has room for is due (0 or
        less: due now; at most `POLL_SECONDS`)."""
        statement = select(func.min(WebhookDelivery.next_attempt_at)).where(
            WebhookDelivery.status == "pending"
        )
        if busy := self._busy():
            statement = statement.where(WebhookDelivery.webhook_id.not_in(busy))
        async with self._db.read() as session:
            due = await session.scalar(statement)
        if due is None:
            return POLL_SECONDS
        return min(POLL_SECONDS, (due - utcnow()).total_seconds())

    # --- attempting ----------------------------------------------------------------------

    async def _attempt(self, job: Job) -> None:
        try:
            outcome = await self._post(job)
        except Exception:
            log.exception("webhook delivery %s: attempt failed unexpectedly", job.id)
            outcome = Outcome(error="internal_error")
        finally:
            self._in_flight[job.webhook_id] -= 1
            if self._in_flight[job.webhook_id] <= 0:
                del self._in_flight[job.webhook_id]
        self._outcomes.append((job, outcome, utcnow()))
        self.wake()

    async def _post(self, job: Job) -> Outcome:
        if job.keys is None:
            return Outcome(error="secrets_key_mismatch")
        try:
            target = parse(job.url, self._rules)
            address = await checked_address(target, self._rules)
        except InvalidInput:  # the settings changed since the URL was accepted
            return Outcome(error="invalid_url")
        except BlockedAddress:
            return Outcome(error="blocked_address")
        except Unresolved:
            return Outcome(error="dns_error")
        keys = job.keys
        stamp = int(time.time())
        url = httpx.URL(job.url)
        headers = {
            "host": url.netloc.decode("ascii"),
            "content-type": "application/json",
            "webhook-id": job.message_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": " ".join(
                signature(key, job.message_id, stamp, job.payload) for key in keys
            ),
        }
        # Connect to the address just checked; TLS still verifies the name in the URL.
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.stream(
                    "POST",
                    url.copy_with(host=str(address)),
                    content=job.payload.encode(),
                    headers=headers,
                    extensions=extensions,
                ) as response:
                    return Outcome(status_code=response.status_code)
        except TimeoutError:
            return Outcome(error="timeout")
        except httpx.TimeoutException:
            return Outcome(error="timeout")
        except httpx.HTTPError as exc:
            log.info("webhook delivery %s to %s: %s", job.id, target.host, exc)
            return Outcome(error="connection_error")

    # --- recording ---------------------------------------------------------------------

    def _take_outcomes(self) -> list[tuple[Job, Outcome, datetime]]:
        taken, self._outcomes = self._outcomes, []
        return taken

    async def _record(
        self, session: AsyncSession, batch: list[tuple[Job, Outcome, datetime]]
    ) -> list[tuple[str, float | None]]:
        """Each answer's outcome on its row, if its lease is still the attempt's; the
        outcomes recorded, and the latency of each success, for the metrics."""
        recorded: list[tuple[str, float | None]] = []
        for job, outcome, at in batch:
            state, values = self._next_state(job, outcome, at)
            result = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == job.id,
                    WebhookDelivery.lease == job.lease,
                    WebhookDelivery.status == "pending",
                )
                .values(**values)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                took = (at - job.created_at).total_seconds()
                recorded.append((state, took if state == "succeeded" else None))
            # else: the lease ran out and another attempt owns the row; it records itself
        return recorded

    def _next_state(
        self, job: Job, outcome: Outcome, at: datetime
    ) -> tuple[str, dict[str, object]]:
        """The delivery's outcome label and its row's new values after this attempt."""
        error = outcome.error
        if error is None and not outcome.succeeded:
            error = "unexpected_status"
        values: dict[str, object] = {
            "lease": None,
            "last_status_code": outcome.status_code,
            "last_error": error,
        }
        if outcome.succeeded:
            return "succeeded", {
                **values,
                "status": "succeeded",
                "succeeded_at": at,
                "next_attempt_at": None,
            }
        if job.attempts > len(self._schedule):
            return "failed", {**values, "status": "failed", "next_attempt_at": None}
        delay = timedelta(seconds=self._schedule[job.attempts - 1])
        return "retrying", {**values, "next_attempt_at": at + delay}
