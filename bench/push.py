"""Push: webhook deliveries per second to a local receiver, and the event stream's fan-out to
idle subscribers, measured against the real service process.

    .venv/bin/python bench/push.py                    # both databases: 2,000 permits, 1,000 subscribers
    .venv/bin/python bench/push.py --smoke            # 100 permits, 100 subscribers, 3 changes
    .venv/bin/python bench/push.py --backends postgresql --webhooks 4 --subscribers 200

Per backend: a fresh database (`izin-siaran migrate`), then, for each webhook count, a fresh
`izin-siaran serve` (one worker, pinned to CPU 0) with that many webhooks (events `*`) pointing
at a receiver on CPU 1 (raw asyncio in a process of its own: records when each request
arrived, answers 204 at once). `--permits` permits are submitted `--concurrency` at a time and
each message's arrival is matched to its submit's response. Then a fresh service again for the
fan-out: `--subscribers` event streams opened as the admin from this process (CPU 1), the
service's RSS before and after, and `--changes` unit creations, each timed from its response to
the moment the last subscriber had the event. Results: bench/results/push-<backend>.json (not
with --smoke).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

SELF = Path(__file__).resolve()
HERE = SELF.parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))

from bench.run import CPUS, PG_ADMIN, free_port, pinned  # noqa: E402
from tests.permits_support import permit_body  # noqa: E402
from tests.support import ADMIN_NIP, make_code, make_nip  # noqa: E402

CLI = shutil.which("izin-siaran", path=str(Path(sys.executable).parent)) or str(
    PROJECT / ".venv" / "bin" / "izin-siaran"
)


# --- processes ---------------------------------------------------------------------------


def _more_files(wanted: int = 65_536) -> None:
    """Raise this process' open-file limit (soft, up to the hard one): a stream is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def service_env(url: str, folder: Path) -> dict[str, str]:
    """A service in local auth mode with the bootstrap admin, plain-HTTP loopback webhooks,
    no sweeper, no rate limit in the way."""
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DATA_DIR": str(folder / "data"),
        "AUTH_JWKS_URL": "",
        "BOOTSTRAP_ADMIN_NIPS": ADMIN_NIP,
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "SWEEP_INTERVAL_SECONDS": "0",
        # The highest values the settings accept (1e6 and 1e7 a minute).
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "RATE_LIMIT_CHECK_PER_MINUTE": "10000000",
        "LOG_LEVEL": "WARNING",
        "POLICY_REMIND_BEFORE_START_MINUTES": "0",
        "POLICY_ESCALATE_BEFORE_START_MINUTES": "0",
        "POLICY_MAX_LEAD_DAYS": "3650",  # every permit has a 2-hour window of its own
        "EVENT_STREAM_QUEUE_SIZE": "100000",
    }


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [CLI, *args], env=env, cwd=PROJECT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"izin-siaran {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


class Service:
    """`izin-siaran serve` (one uvicorn worker, in the process itself) pinned to CPU 0."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            pinned(0, [CLI, "serve", "--port", str(self.port)]),
            env=env,
            cwd=PROJECT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_more_files,
        )
        self.log = log

    async def ready(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the service exited:\n{self.log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the service was not ready in {within} s")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# --- the webhook receiver (a process of its own, on CPU 1) --------------------------------


async def _receive() -> None:
    """`--receiver`: an HTTP endpoint on 127.0.0.1 that answers every request 204 at once
    and records when its head arrived. Prints its port; then answers `count` (requests so
    far) and `take` (them, as JSON, forgotten) on stdin, one line each; ends at EOF."""
    arrivals: list[tuple[float, str, str, bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                at = time.monotonic()
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                arrivals.append((at, lines[0].split(" ")[1], headers.get("webhook-id", ""), body))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    commands = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while command := (await commands.readline()).strip():
        if command == b"count":
            reply = str(len(arrivals))
        else:
            taken = list(arrivals)
            arrivals.clear()
            rows = []
            for at, path, message, body in taken:
                sent = json.loads(body) if body else {}
                permit = sent.get("data", {}).get("permit", {}).get("id")
                rows.append([at, path, message, sent.get("type"), permit])
            reply = json.dumps(rows)
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()
    server.close()


class Receiver:
    """The parent's side of `--receiver`."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port

    @classmethod
    async def start(cls) -> Receiver:
        process = await asyncio.create_subprocess_exec(
            *pinned(1, [sys.executable, str(SELF), "--receiver"]),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 28,
        )
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), 30))
        return cls(process, port)

    async def _ask(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return (await self.process.stdout.readline()).decode()

    async def count(self) -> int:
        return int(await self._ask("count"))

    async def take(self) -> list[list[Any]]:
        """[arrival (monotonic), path, webhook-id, type, permit id] of each request so far."""
        rows: list[list[Any]] = json.loads(await self._ask("take"))
        return rows

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            with contextlib.suppress(ConnectionError):
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# --- the event stream's subscribers (this process, on CPU 1) -----------------------------


class Subscriber(asyncio.Protocol):
    """One event stream over a raw connection: HTTP/1.1, chunked, Server-Sent Events. Each
    event is timed when the bytes that complete it arrive."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._body = b""
        self._events = b""
        self._in_body = False
        self._chunked = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.fanout.request)

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self._in_body = True
            self._chunked = b"transfer-encoding: chunked" in head.lower()
            if not self.status.done():
                self.status.set_result(int(head.split(b" ", 2)[1]))
        if self._chunked:
            self._body += data
            while (line_end := self._body.find(b"\r\n")) >= 0:
                size = int(self._body[:line_end].split(b";")[0], 16)
                if len(self._body) < line_end + size + 4:
                    break
                self._events += self._body[line_end + 2 : line_end + 2 + size]
                self._body = self._body[line_end + size + 4 :]
        else:
            self._events += data
        while (cut := self._events.find(b"\n\n")) >= 0:
            block, self._events = self._events[:cut], self._events[cut + 2 :]
            if not block.startswith(b":"):  # a ping is a comment
                self.fanout.record(block, at)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_result(0)
        elif not self.fanout.closing:
            self.fanout.lost += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Fanout:
    """Many subscribers of one caller, and when each event reached each of them."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.request = (
            f"GET /api/v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.subscribers: list[Subscriber] = []
        self.seen: dict[int, list[float]] = defaultdict(list)  # seq → arrival at each
        self.subjects: dict[str, int] = {}  # subject → seq (its first event)
        self.refused: Counter[int] = Counter()  # answers other than 200, retried
        self.lost = 0
        self.closing = False
        self.progress = asyncio.Event()  # set when an event has reached every subscriber

    def record(self, block: bytes, at: float) -> None:
        seq, data = None, b""
        for line in block.split(b"\n"):
            if line.startswith(b"id:"):
                seq = int(line[3:])
            elif line.startswith(b"data:"):
                data = line[5:]
        if seq is None:
            return
        arrivals = self.seen[seq]
        arrivals.append(at)
        if len(arrivals) == 1:  # the first to see it says what it is
            self.subjects.setdefault(json.loads(data)["subject"], seq)
        if len(arrivals) >= len(self.subscribers):
            self.progress.set()

    async def open(self, count: int, parallel: int = 50) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with gate:
                for attempt in range(50):
                    _, subscriber = await loop.create_connection(
                        lambda: Subscriber(self), "127.0.0.1", self.port
                    )
                    status = await asyncio.wait_for(subscriber.status, 30)
                    if status == 200:
                        self.subscribers.append(subscriber)
                        return
                    subscriber.close()
                    self.refused[status] += 1
                    await asyncio.sleep(0.05 * (attempt + 1))
                raise RuntimeError(f"a stream was refused 50 times: {dict(self.refused)}")

        await asyncio.gather(*(one() for _ in range(count)))

    def _reached_all(self, subject: str) -> bool:
        seq = self.subjects.get(subject)
        return seq is not None and len(self.seen[seq]) >= len(self.subscribers)

    async def arrivals(self, subject: str, within: float = 60) -> list[float]:
        """When the event about `subject` reached each subscriber (those it reached within
        `within` seconds)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not self._reached_all(subject):
                    self.progress.clear()
                    await self.progress.wait()
        seq = self.subjects.get(subject)
        return list(self.seen[seq]) if seq is not None else []

    def close(self) -> None:
        self.closing = True
        for subscriber in self.subscribers:
            subscriber.close()


# --- measuring -----------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values) * 1000, 1),
        "p99": round(_percentile(values, 99) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "min": round(min(values) * 1000, 1),
    }


class Bench:
    """One backend: its database, data folder, tokens, office and receiver."""

    def __init__(self, backend: str, args: argparse.Namespace) -> None:
        self.backend, self.args = backend, args
        self.folder = Path(tempfile.mkdtemp(prefix=f"izs-push-{backend}-"))
        self.database: str | None = None
        self.env: dict[str, str] = {}
        self.receiver: Receiver | None = None
        self.admin: dict[str, str] = {}
        self.admin_token = ""
        self.staff: dict[str, str] = {}
        self.workspace = ""
        self.windows = 0  # permits submitted so far: the next one's window follows theirs

    async def setup(self) -> None:
        if self.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.folder / 'push.db'}"
        else:
            self.database = f"izs_push_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(PG_ADMIN)
            try:
                await admin.execute(f'CREATE DATABASE "{self.database}"')
            finally:
                await admin.close()
            base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            url = f"{base}/{self.database}"
        self.env = service_env(url, self.folder)
        await asyncio.to_thread(cli, self.env, "migrate")
        self.admin_token = await asyncio.to_thread(
            cli, self.env, "token", ADMIN_NIP, "--minutes", "120"
        )
        self.admin = {"Authorization": f"Bearer {self.admin_token}"}
        self.receiver = await Receiver.start()

    async def teardown(self) -> None:
        if self.receiver is not None:
            await self.receiver.stop()
        if self.database is not None:
            admin = await asyncpg.connect(PG_ADMIN)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await admin.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def service(self) -> Service:
        return Service(self.env, self.folder / "service.log")

    async def _post(self, http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
        response = await http.post(path, json=body, headers=self.admin)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    async def office(self, http: httpx.AsyncClient) -> None:
        """A unit with a head, a staff member and a studio: what a permit needs."""
        unit, head, staff, studio = make_code("U"), make_nip(), make_nip(), make_code("W")
        await self._post(http, "/api/v1/units", {"code": unit, "name": "Diskominfotik"})
        await self._post(
            http, "/api/v1/employees", {"nip": head, "name": "Kepala", "unit_code": unit}
        )
        await self._post(
            http, "/api/v1/employees", {"nip": staff, "name": "Staf", "unit_code": unit}
        )
        await self._post(
            http,
            "/api/v1/workspaces",
            {"code": studio, "name": "Studio", "unit_code": unit, "kind": "studio"},
        )
        response = await http.patch(
            f"/api/v1/units/{unit}", json={"head_nip": head}, headers=self.admin
        )
        if response.status_code != 200:
            raise RuntimeError(f"PATCH unit: {response.status_code} {response.text}")
        token = await asyncio.to_thread(cli, self.env, "token", staff, "--minutes", "120")
        self.staff = {"Authorization": f"Bearer {token}"}
        self.workspace = studio

    # --- 1: webhook deliveries -----------------------------------------------------------

    async def deliveries(self, hooks: int) -> dict[str, Any]:
        args, receiver = self.args, self.receiver
        assert receiver is not None
        service = self.service()
        try:
            await service.ready()
            limits = httpx.Limits(max_connections=args.concurrency + 4)
            async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as http:
                if not self.workspace:
                    await self.office(http)
                hook_ids = []
                for n in range(hooks):
                    url = f"http://127.0.0.1:{receiver.port}/hook/{n}"
                    made = await self._post(http, "/api/v1/webhooks", {"url": url, "events": ["*"]})
                    hook_ids.append(made["id"])
                await receiver.take()  # nothing before this run counts
                first = self.windows
                self.windows += args.permits
                responded: dict[str, float] = {}
                refused: Counter[str] = Counter()
                numbers = iter(range(first, first + args.permits))

                async def submitter() -> None:
                    for n in numbers:
                        body = permit_body(self.workspace, starts_in=timedelta(hours=2 + 2 * n))
                        response = await http.post("/api/v1/permits", json=body, headers=self.staff)
                        at = time.monotonic()
                        if response.status_code == 201:
                            responded[response.json()["id"]] = at
                        else:
                            refused[f"{response.status_code} {response.text[:200]}"] += 1

                cpu = service.cpu_seconds()
                started = time.monotonic()
                await asyncio.gather(*(submitter() for _ in range(args.concurrency)))
                submitted = time.monotonic()
                expected = len(responded) * hooks
                deadline = submitted + 60 + expected / 20
                while time.monotonic() < deadline:
                    if await receiver.count() >= expected:
                        break
                    await asyncio.sleep(0.05)
                rows = await receiver.take()
                cpu = service.cpu_seconds() - cpu
                recorded = await self._recorded(http, hook_ids)
                for hook in hook_ids:  # the next run's webhooks are its own
                    await http.delete(f"/api/v1/webhooks/{hook}", headers=self.admin)
        finally:
            service.stop()
        arrivals = sorted(row[0] for row in rows)
        latencies = [row[0] - responded[row[4]] for row in rows if row[4] in responded]
        copies = Counter((row[1], row[2]) for row in rows)
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        # Once every submit is answered the sender has the core to itself (and a backlog).
        after = [at for at in arrivals if at > submitted]
        after_span = after[-1] - submitted if after else 0.0
        return {
            "webhooks": hooks,
            "permits": args.permits,
            "submitted": len(responded),
            "refused_submits": dict(refused),
            "submits_per_second": round(len(responded) / (submitted - started), 1),
            "deliveries_expected": expected,
            "deliveries_received": len(rows),
            "duplicates": sum(n - 1 for n in copies.values()),
            "types": dict(Counter(row[3] for row in rows)),
            "delivery_phase_seconds": round(span, 3),
            "deliveries_per_second": round((len(arrivals) - 1) / span, 1) if span else 0.0,
            "latency_ms": _ms(latencies),
            "delivered_while_submitting": len(arrivals) - len(after),
            "deliveries_per_second_while_submitting": round(
                (len(arrivals) - len(after)) / (submitted - started), 1
            ),
            "delivered_after_last_submit": len(after),
            "deliveries_per_second_after_last_submit": (
                round(len(after) / after_span, 1) if len(after) > 1 else None
            ),
            "drain_after_last_submit_seconds": (
                round(arrivals[-1] - submitted, 3) if arrivals else None
            ),
            "recorded": recorded,
            "service_cpu_ms_per_permit": round(cpu / max(1, len(responded)) * 1000, 2),
        }

    async def _recorded(self, http: httpx.AsyncClient, hook_ids: list[str]) -> dict[str, Any]:
        """The deliveries' recorded states (the sender records each after its answer)."""
        deadline = time.monotonic() + 60
        while True:
            states: Counter[str] = Counter()
            attempts: Counter[int] = Counter()
            for hook in hook_ids:
                cursor = None
                while True:
                    params: dict[str, Any] = {
                        "limit": 200,
                        **({"cursor": cursor} if cursor else {}),
                    }
                    page = (
                        await http.get(
                            f"/api/v1/webhooks/{hook}/deliveries", params=params, headers=self.admin
                        )
                    ).json()
                    for row in page["items"]:
                        states[row["status"]] += 1
                        attempts[row["attempts"]] += 1
                    cursor = page.get("next_cursor")
                    if not cursor:
                        break
            if not states["pending"] or time.monotonic() > deadline:
                return {
                    "states": dict(states),
                    "attempts": {str(k): v for k, v in attempts.items()},
                }
            await asyncio.sleep(0.5)

    # --- 2: the event stream's fan-out -----------------------------------------------------

    async def fanout(self) -> dict[str, Any]:
        args = self.args
        service = self.service()
        warm: Fanout | None = None
        fanout: Fanout | None = None
        try:
            await service.ready()
            async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:

                async def change(into: Fanout) -> list[float]:
                    code = make_code("F")
                    await self._post(http, "/api/v1/units", {"code": code, "name": "Fan-out"})
                    answered = time.monotonic()
                    return [at - answered for at in await into.arrivals(f"unit:{code}")]

                # A few streams and one change first: the measured changes are not the first.
                warm = Fanout(service.port, self.admin_token)
                await warm.open(5)
                await change(warm)
                warm.close()
                await asyncio.sleep(1.0)
                rss_before, files_before = service.rss_kib(), service.open_files()
                fanout = Fanout(service.port, self.admin_token)
                opening = time.monotonic()
                await fanout.open(args.subscribers)
                opened_in = time.monotonic() - opening
                await asyncio.sleep(3.0)  # idle
                rss_after, files_after = service.rss_kib(), service.open_files()
                metrics = (await http.get("/metrics")).text
                counted = [
                    line.split()[-1]
                    for line in metrics.splitlines()
                    if line.startswith("izin_siaran_event_stream_subscribers")
                ]
                changes = []
                for _ in range(args.changes):
                    latencies = await change(fanout)
                    changes.append(
                        {
                            "reached": len(latencies),
                            "last_ms": round(max(latencies) * 1000, 1) if latencies else None,
                            "median_ms": round(statistics.median(latencies) * 1000, 1)
                            if latencies
                            else None,
                            "first_ms": round(min(latencies) * 1000, 1) if latencies else None,
                        }
                    )
                    await asyncio.sleep(0.5)
                rss_end = service.rss_kib()
        finally:
            for group in (warm, fanout):
                if group is not None:
                    group.close()
            await asyncio.sleep(0.5)
            service.stop()
        last = [c["last_ms"] for c in changes if c["last_ms"] is not None]
        median = [c["median_ms"] for c in changes if c["median_ms"] is not None]
        complete = all(c["reached"] == args.subscribers for c in changes)
        return {
            "subscribers": args.subscribers,
            "opened_in_seconds": round(opened_in, 2),
            "refused_while_opening": {str(k): v for k, v in fanout.refused.items()},
            "server_subscribers_gauge": counted[0] if counted else None,
            "rss_kib_before": rss_before,
            "rss_kib_after": rss_after,
            "rss_kib_after_changes": rss_end,
            "kib_per_subscriber": round((rss_after - rss_before) / args.subscribers, 1),
            "open_files_before": files_before,
            "open_files_after": files_after,
            "changes": changes,
            "every_change_reached_every_subscriber": complete,
            "lost_streams": fanout.lost,
            "last_subscriber_ms": {
                "median": round(statistics.median(last), 1) if last else None,
                "max": max(last) if last else None,
            },
            "median_subscriber_ms": {
                "median": round(statistics.median(median), 1) if median else None,
                "max": max(median) if median else None,
            },
        }


async def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(backend, args)
    try:
        await bench.setup()
        results: dict[str, Any] = {"webhooks": []}
        for hooks in args.webhooks:
            print(f"  {hooks} webhook(s), {args.permits} permits", flush=True)
            results["webhooks"].append(await bench.deliveries(hooks))
        print(f"  fan-out to {args.subscribers} subscribers", flush=True)
        results["fanout"] = await bench.fanout()
        return results
    finally:
        await bench.teardown()


def summary(backend: str, results: dict[str, Any]) -> None:
    print(f"-- {backend}")
    print(
        "| webhooks | submits/s | deliveries/s (while submitting) | latency p50 / p99 / max ms | drain s (deliveries/s) | received | dup | states |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results["webhooks"]:
        lat = r["latency_ms"]
        print(
            f"| {r['webhooks']} | {r['submits_per_second']} | {r['deliveries_per_second']} ({r['deliveries_per_second_while_submitting']}) | "
            f"{lat.get('median')} / {lat.get('p99')} / {lat.get('max')} | "
            f"{r['drain_after_last_submit_seconds']} ({r['deliveries_per_second_after_last_submit']}) | {r['deliveries_received']}/{r['deliveries_expected']} | "
            f"{r['duplicates']} | {r['recorded']['states']} |"
        )
    f = results["fanout"]
    print(
        f"fan-out: {f['subscribers']} subscribers opened in {f['opened_in_seconds']} s; RSS "
        f"{f['rss_kib_before']} → {f['rss_kib_after']} KiB ({f['kib_per_subscriber']} KiB each); "
        f"last subscriber median {f['last_subscriber_ms']['median']} ms, max "
        f"{f['last_subscriber_ms']['max']} ms; median subscriber {f['median_subscriber_ms']['median']} ms; "
        f"all reached: {f['every_change_reached_every_subscriber']}; lost {f['lost_streams']}"
    )


def failures(results: dict[str, Any]) -> list[str]:
    found = []
    for r in results["webhooks"]:
        if r["refused_submits"] or r["deliveries_received"] < r["deliveries_expected"]:
            found.append(
                f"{r['webhooks']} webhook(s): {r['deliveries_received']} of {r['deliveries_expected']} delivered, refused {r['refused_submits']}"
            )
    f = results["fanout"]
    if not f["every_change_reached_every_subscriber"] or f["lost_streams"]:
        found.append(f"fan-out: not every change reached every subscriber ({f['changes']})")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="Izin Siaran push benchmark")
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--permits", type=int, default=2000, help="submitted per webhook count")
    parser.add_argument("--webhooks", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--concurrency", type=int, default=8, help="submits in flight")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=10, help="fan-out changes timed")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        asyncio.run(_receive())
        return
    if args.smoke:
        args.permits, args.subscribers, args.changes = 100, 100, 3
    _more_files()
    if CPUS > 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})  # the load, the receiver and the subscribers; CPU 0 serves
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {CPUS} cores, Python {platform.python_version()}",
        "permits": args.permits,
        "concurrency": args.concurrency,
        "subscribers": args.subscribers,
        "changes": args.changes,
    }
    problems = []
    for backend in args.backends:
        print(f"== {backend}", flush=True)
        results = asyncio.run(bench_backend(backend, args))
        summary(backend, results)
        problems += [f"{backend}: {p}" for p in failures(results)]
        if not args.smoke:
            out = HERE / "results" / f"push-{backend}.json"
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps({**report, "backend": backend, **results}, indent=2) + "\n")
            print(f"written to {out}")
    if problems:
        raise SystemExit("problems during the run:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
