"""`GET /metrics`: what operators alert on, in Prometheus' text format (docs/RULES.md#metrics).

Written with the official client library (`prometheus_client`). What the service
counts as it goes — requests by route template and status with their latency, the
check's answers by `reason` — lives in each application's own registry, so that two
applications in one process (the tests) never mix their counts. What the database
knows — permits by status — is read when Prometheus scrapes, through the rule that
says what a permit's status is (`app.permits.lifecycle`), never kept in memory.

Under `izin-siaran serve --workers N` each worker is a process of its own: the CLI
then gives them a shared folder (`PROMETHEUS_MULTIPROC_DIR`, the client library's
multi-process mode) and a scrape of any one worker sums every worker's counts.
"""

from __future__ import annotations

import hmac
import os
import shutil
from pathlib import Path

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import Scope

from app.db import ReadSession
from app.errors import Unauthenticated
from app.permits.lifecycle import count_by_status
from app.ratelimit import RateLimits
from app.timeutil import utcnow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Only the series of docs/RULES.md#metrics: no `_created` timestamp beside each counter.
disable_created_metrics()  # type: ignore[no-untyped-call]
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
"""The route label of a request no route took (a 404): the path itself would let any
client add a label value, and Prometheus keeps every value it has seen."""

# Seconds: the check answers in about a millisecond; writes take some; 10 s is the
# database's worst allowed wait.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# Seconds from a change's commit to its webhook's 2xx: most within a second, retries later.
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000, 172800)


class Metrics:
    """One application's counts."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        """Every count at zero: what a start of the service begins with."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "izin_siaran_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "izin_siaran_http_request_duration_seconds",
            "Time from a request's arrival to its response's end, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.check_answers = Counter(
            "izin_siaran_check_answers",
            "Answers of the check (single or through its fast path), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "izin_siaran_webhook_deliveries",
            "Webhook delivery attempts by outcome: succeeded, retrying (failed, tried again "
            "later), failed (no attempt left).",
            ["outcome"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "izin_siaran_webhook_delivery_latency_seconds",
            "Time from a change's audit event to its webhook's 2xx, retries included.",
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.subscribers = Gauge(
            "izin_siaran_event_stream_subscribers",
            "Event-stream connections open now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.events_sent = Counter(
            "izin_siaran_event_stream_events",
            "Events written to event-stream subscribers.",
            registry=self.registry,
        )
        # A label lookup hashes and locks; the labelled series are few, so keep them.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._answers: dict[str, Counter] = {}

    def request(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one answered request (`app.middleware`, the outermost layer)."""
        key = (scope["method"], route_template(scope), status)
        series = self._series.get(key)
        if series is None:
            method, route, _ = key
            series = self._series[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def check_answer(self, reason: str) -> None:
        counter = self._answers.get(reason)
        if counter is None:
            counter = self._answers[reason] = self.check_answers.labels(reason)
        counter.inc()

    def delivery(self, outcome: str, latency_seconds: float | None = None) -> None:
        """One webhook delivery attempt's outcome (`app.push.sender`)."""
        self.deliveries.labels(outcome).inc()
        if latency_seconds is not None:
            self.delivery_latency.observe(latency_seconds)

    def exposition(self, permits: dict[str, int]) -> bytes:
        """The text Prometheus reads: every count so far (every worker's, in multi-process
        mode), then the permits by status just read."""
        if os.environ.get(MULTIPROCESS_DIR):
            counted = CollectorRegistry()
            MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
        else:
            counted = self.registry
        snapshot = CollectorRegistry()
        snapshot.register(_PermitCounts(permits))
        return generate_latest(counted) + generate_latest(snapshot)


class _PermitCounts(Collector):
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "izin_siaran_permits",
            "Permits by status now (expiry applied as on every read), read at scrape time.",
            labels=["status"],
        )
        for status, count in self.counts.items():
            family.add_metric([status], count)
        return [family]


ROUTE_TEMPLATE = "izs.route"


def route_template(scope: Scope) -> str:
    """The route's path template (`/api/v1/permits/{permit_id}`), as the fast paths name
    theirs or FastAPI's routing found it; `UNMATCHED` when no route took the request."""
    template = scope.get(ROUTE_TEMPLATE)
    if template is None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
    return str(template)


def prepare_multiprocess(workers: int, data_dir: Path) -> None:
    """Before `serve` starts `workers` > 1 processes: the shared, emptied folder of the
    client library's multi-process mode (`PROMETHEUS_MULTIPROC_DIR`, or one in DATA_DIR).
    Counts start from zero at every start, as they do with one worker."""
    if workers <= 1:
        return
    folder = Path(os.environ.get(MULTIPROCESS_DIR) or data_dir / "metrics")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROCESS_DIR] = str(folder)


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request, session: ReadSession) -> Response:
    """The service's metrics; with `METRICS_TOKEN` set, for `Authorization: Bearer <it>` only."""
    token = request.app.state.settings.metrics_token.get_secret_value()
    if token and not _bearer_is(request, token):
        limits: RateLimits = request.app.state.rate_limits
        limits.failed(request.scope)  # a wrong token spends the address' failure budget
        raise Unauthenticated("`/metrics` needs `Authorization: Bearer <METRICS_TOKEN>`.")
    counts = await count_by_status(session, utcnow())
    app_metrics: Metrics = request.app.state.metrics
    return Response(app_metrics.exposition(counts), media_type=CONTENT_TYPE)


def _bearer_is(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())
