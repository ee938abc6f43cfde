"""The benchmark harness: seed, serve, drive with wrk, compare with the framework's ceiling.

    .venv/bin/python bench/run.py                       # both databases, 10^4 permits
    .venv/bin/python bench/run.py --permits 1000000     # the same at 10^6
    .venv/bin/python bench/run.py --smoke               # CI: tiny, a few seconds

One uvicorn worker pinned to CPU 0, wrk pinned to CPU 1, 32 connections, a warm-up
run before each measured one. The ceiling app (bench/ceiling.py) is measured in the
same run; every figure is also given as a ratio to it. Results: bench/results/*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))

from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.auth.local import load_or_create_signer  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from bench.gc_watch import totals as gc_totals  # noqa: E402
from bench.seed import SHAPES, Seeded, seed  # noqa: E402

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CPUS = os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(cpu: int, command: list[str]) -> list[str]:
    return (
        ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") and CPUS > 1 else command
    )


class Server:
    def __init__(
        self,
        app: str,
        env: dict[str, str],
        app_dir: Path = PROJECT,
        workers: int = 1,
        *,
        pin: bool = True,
        log: Path | None = None,
        gc_dir: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "uvicorn" if gc_dir is None else "bench.gc_watch",  # --gc: its passes timed
            app,
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--app-dir",
            str(app_dir),
            "--workers",
            str(workers),
        ]
        # One worker has CPU 0 to itself; more (or more instances) share the machine.
        started = pinned(0, command) if workers == 1 and pin else command
        # Its log lines (the access log with `--log-level INFO`) to a file, as in production.
        self.log = None if log is None else log.open("a")
        watched = {} if gc_dir is None else {"BENCH_GC_DIR": str(gc_dir)}
        self.process = subprocess.Popen(
            started, env={**os.environ, **env, **watched}, cwd=PROJECT, stderr=self.log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{app} did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.log is not None:
            self.log.close()


class Instances:
    """`count` instances of the service on one database, each its own uvicorn (with
    `workers` workers), as separate hosts behind a load balancer would be: the load is
    split evenly between them (`run_wrk` with several URLs)."""

    def __init__(
        self,
        env: dict[str, str],
        app_dir: Path,
        *,
        workers: int = 1,
        count: int = 1,
        log: Path | None = None,
        gc_dir: Path | None = None,
    ) -> None:
        self.gc_dir = gc_dir
        self.servers: list[Server] = []
        try:
            for _ in range(count):
                self.servers.append(
                    Server(
                        "app.main:app",
                        env,
                        app_dir=app_dir,
                        workers=workers,
                        pin=count == 1,
                        log=log,
                        gc_dir=gc_dir,
                    )
                )
        except BaseException:
            self.stop()
            raise
        self.url = self.servers[0].url
        self.urls = [server.url for server in self.servers]
        self.pids = [server.process.pid for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def _gc_dir(args: argparse.Namespace, folder: Path, tree: int) -> Path | None:
    """Where a service's collector times go with `--gc`: a folder for each checkout, new
    for each start (the processes of an earlier round have ended)."""
    if not args.gc:
        return None
    return Path(tempfile.mkdtemp(prefix=f"gc-{tree}-", dir=folder))


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """`--log-level`, the service's LOG_LEVEL (`server_env`), for every harness."""
    parser.add_argument(
        "--log-level",
        choices=["WARNING", "INFO"],
        default="WARNING",
        help="the service's LOG_LEVEL: INFO (its default) writes an access-log line a request, "
        "to a file in the run's folder",
    )


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found; installing the Debian package", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def parse_wrk(output: str) -> dict[str, float]:
    def duration(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"^\s+{re.escape(label)}\s+(\S+)", output, re.M)
        result[key] = duration(match.group(1)) if match else float("nan")
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    result["requests"] = float(total.group(1)) if total else 0
    result["errors"] = float(non_2xx.group(1) if non_2xx else 0) + float(
        sum(int(x) for x in socket_errors.groups()) if socket_errors else 0
    )
    return result


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command name) of every process (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it ended meanwhile
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
            found.append((int(entry.name), int(rest.split()[1]), name))
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 if it has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU time spent by the server under test (with its worker processes; or several
    servers) and by PostgreSQL's processes, between two readings; with `gc_dir` (`--gc`),
    also the time the server's garbage collector took (`bench/gc_watch.py`).

    Counted process by process: one that ended between the readings is left out (its time
    is gone from /proc with it), one that started counts from zero. (Summed over the
    processes at each reading, a database connection closed during a run made the
    database's figure negative.)"""

    def __init__(self, *server_pids: int, gc_dir: Path | None = None) -> None:
        self.server_pids = server_pids
        self.gc_dir = gc_dir

    def read(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of each process of each part (`gc`: one entry, 0)."""
        processes = _processes()
        tree = set(self.server_pids)
        for _ in range(3):  # taskset → uvicorn → its workers
            tree |= {pid for pid, parent, _ in processes if parent in tree}
        database = [pid for pid, _, name in processes if name == "postgres"]
        seconds = {
            "server": {pid: _cpu_seconds(pid) for pid in tree},
            "database": {pid: _cpu_seconds(pid) for pid in database},
        }
        if self.gc_dir is not None:
            seconds["gc"] = {0: gc_totals(self.gc_dir)["gc_seconds"]}
        return seconds

    @staticmethod
    def spent(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
    ) -> dict[str, float]:
        """CPU seconds of each part between two readings, over the processes alive at the
        second."""
        return {
            part: sum(now - before[part].get(pid, 0.0) for pid, now in processes.items())
            for part, processes in after.items()
        }


WRK_TIMEOUT_SECONDS = 30
"""A request unanswered this long counts as an error (and as a latency of this long)."""


def cpu_model() -> str:
    """The processor's name as the kernel reports it (Linux), or the machine's type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.machine()


def run_wrk(
    wrk: str,
    url: str | list[str],
    script: Path,
    env: dict[str, str],
    *,
    connections: int,
    seconds: float,
    warm_env: dict[str, str] | None = None,
    watch: CpuWatch | None = None,
) -> dict[str, float]:
    """A warm-up run (its figures dropped), then the measured run; with `watch`, the CPU
    time per request of the server and of the database during the measured run. Several
    URLs (instances): one wrk per URL at once, the connections split between them, the
    rates and counts summed, the latencies the worst of them."""
    urls = [url] if isinstance(url, str) else url
    each = max(1, connections // len(urls))

    def together(duration: int, more: dict[str, str] | None = None) -> list[str]:
        runs = [
            subprocess.Popen(
                pinned(
                    1,
                    [
                        wrk,
                        "-t1",
                        f"-c{each}",
                        f"-d{duration}s",
                        # wrk's own default (2 s) counts a slow answer as an error: drawing
                        # a QR code takes tens of ms, so 32 connections queue for seconds.
                        *("--timeout", f"{WRK_TIMEOUT_SECONDS}s"),
                        "--latency",
                        "-s",
                        f"{script}",
                        address,
                    ],
                ),
                # The write mix's threads: each wrk books its own share of the workspaces.
                env={**os.environ, **env, **(more or {}), "BENCH_TID_OFFSET": str(n)},
                stdout=subprocess.PIPE,
                text=True,
            )
            for n, address in enumerate(urls)
        ]
        outputs = [run.communicate()[0] for run in runs]
        if any(run.returncode for run in runs):
            raise RuntimeError("wrk failed")
        return outputs

    together(max(1, int(seconds // 3)), warm_env)  # the warm-up
    before = watch.read() if watch else {}
    parts = [parse_wrk(output) for output in together(int(seconds))]
    result = {
        "rps": sum(p["rps"] for p in parts),
        "requests": sum(p["requests"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "p50_ms": max(p["p50_ms"] for p in parts),
        "p99_ms": max(p["p99_ms"] for p in parts),
    }
    if watch and result["requests"]:
        for part, spent in watch.spent(before, watch.read()).items():
            result[f"{part}_cpu_us_per_request"] = round(spent / result["requests"] * 1e6, 1)
    return result


def check_paths(seeded: Seeded, form: str) -> str:
    """The check's paths over the seeded samples, one a line, in the form asked for
    (`employee`: NIP + workspace; `channel`: platform + channel)."""
    return "\n".join(
        f"/api/v1/authorizations/check?nip={n}&workspace_code={w}"
        if form == "employee"
        else f"/api/v1/authorizations/check?platform={p}&channel={c.replace('@', '%40')}"
        for n, w, p, c in seeded.samples
    )


async def prepare(
    backend: str, folder: Path, permits: int, shape: str = "spread"
) -> tuple[str, Seeded, str | None]:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
        dropper = None
    else:
        name = f"izs_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = (
            f"{PG_ADMIN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
        )
        dropper = name
    await asyncio.to_thread(upgrade, url)
    db = Database.connect(url, pool_size=2, timeout=600)  # bulk inserts are slow statements
    try:
        started = time.perf_counter()
        seeded = await seed(db, permits, shape=shape)
        print(
            f"  seeded {permits} permits ({shape}) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    finally:
        await db.dispose()
    if dropper:
        # Measure a database in its steady state, not autovacuum catching up with the
        # bulk load on the core the measurements need.
        started = time.perf_counter()
        connection = await asyncpg.connect(f"{PG_ADMIN.rsplit('/', 1)[0]}/{dropper}")
        try:
            await connection.execute("VACUUM (ANALYZE)")
        finally:
            await connection.close()
        print(f"  vacuumed in {time.perf_counter() - started:.1f} s", flush=True)
    return url, seeded, dropper


async def drop(name: str | None) -> None:
    if name:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _service_round(
    service: Instances,
    args: argparse.Namespace,
    wrk: str,
    files: Path,
    scenarios: list[tuple[str, str, dict[str, str]]],
    lua: dict[str, str],
    key: dict[str, str],
    token: dict[str, str],
    requester: str,
    seeded: Seeded,
    base: int,
) -> dict[str, Any]:
    """One round of the service's scenarios (those `--only` selects)."""
    results: dict[str, Any] = {}
    varied = HERE / "lua" / "get_varied.lua"
    selected = [s for s in scenarios if _selected(args, s[0])]
    watch = CpuWatch(*service.pids, gc_dir=service.gc_dir)
    for label, paths, credential in selected:
        results[label] = run_wrk(
            wrk,
            service.urls,
            varied,
            {**lua, **credential, "BENCH_PATHS": str(files / paths)},
            connections=args.connections,
            seconds=args.duration,
            watch=watch,
        )
    if _selected(args, VERIFY):
        bodies = files / "verify.txt"
        if not bodies.exists():  # credentials this service signed: the first round's
            bodies.write_text(signed_credentials(service.url, token[seeded.admin], seeded))
        results[VERIFY] = run_wrk(
            wrk,
            service.urls,
            HERE / "lua" / "post_varied.lua",
            {
                **lua,
                "BENCH_BODIES": str(bodies),
                "BENCH_POST_PATH": "/api/v1/credentials/verify",
            },
            connections=args.connections,
            seconds=args.duration,
            watch=watch,
        )
    if _selected(args, BATCH):
        batch = run_wrk(
            wrk,
            service.urls,
            HERE / "lua" / "post_varied.lua",
            {
                **lua,
                **key,
                "BENCH_BODIES": str(files / "batches.txt"),
                "BENCH_POST_PATH": "/api/v1/authorizations/check-batch",
            },
            connections=args.connections,
            seconds=args.duration,
            watch=watch,
        )
        batch["checks_per_second"] = batch["rps"] * BATCH_SIZE
        results[BATCH] = batch
    if _selected(args, "check nip+workspace, API key, 8 connections"):
        results["check nip+workspace, API key, 8 connections"] = run_wrk(
            wrk,
            service.urls,
            varied,
            {**lua, **key, "BENCH_PATHS": str(files / "employee.txt")},
            connections=8,
            seconds=args.duration,
            watch=watch,
        )
    if not _selected(args, WRITE_MIX):
        return results
    write_env = {
        **lua,
        "BENCH_WORKSPACES": str(files / "workspaces.txt"),
        "BENCH_THREADS": str(len(service.urls)),  # one wrk thread per instance
        "BENCH_T0": str(base + 29 * 86400),
        "BENCH_REQUESTER": token[requester],
        "BENCH_HEAD": token[seeded.heads["BENCH-U000"]],
    }
    mix = run_wrk(
        wrk,
        service.urls,
        HERE / "lua" / "write_mix.lua",
        write_env,
        connections=min(8, args.connections),
        seconds=args.duration,
        warm_env={"BENCH_T0": str(base)},
        watch=watch,
    )
    mix["pairs_per_second"] = mix["rps"] / 2
    results[f"{WRITE_MIX} (submit + approve), 8 connections"] = mix
    return results


WRITE_MIX = "write mix"
INSERT_CEILING = "bare INSERT (ceiling), 8 connections"


VERIFY = "verify: POST /credentials/verify (public)"
BATCH_SIZE = 100
BATCH = f"check-batch of {BATCH_SIZE} (both forms), API key"


def signed_credentials(url: str, admin: str, seeded: Seeded, count: int = 500) -> str:
    """The bodies of verify requests: credentials of approved permits, signed by the
    service at `url`, one JSON body per line."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as client:
        lines = []
        for permit_id in seeded.approved_ids[:count]:
            response = client.get(f"/api/v1/permits/{permit_id}/credential")
            response.raise_for_status()
            lines.append(json.dumps({"credential": response.json()["credential"]}))
    return "\n".join(lines)


def _selected(args: argparse.Namespace, label: str) -> bool:
    return not args.only or any(word in label for word in args.only)


def server_env(url: str, folder: Path, log_level: str = "WARNING") -> dict[str, str]:
    """The environment of a benchmarked server: local-mode auth, no rate limit in the way,
    and no access log unless `log_level` is INFO (the service's default)."""
    return {
        "DATABASE_URL": url,
        "DATA_DIR": str(folder / "data"),
        "LOG_LEVEL": log_level,
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "RATE_LIMIT_CHECK_PER_MINUTE": "10000000",
        "RATE_LIMIT_PUBLIC_PER_MINUTE": "1000000",
        "POLICY_MAX_LEAD_DAYS": "3650",  # each round books its writes 60 days further out
        "AUTH_JWKS_URL": "",
        "BOOTSTRAP_ADMIN_NIPS": "",
    }


async def _stamp(url: str, tree: Path) -> None:
    """Mark the database as at `tree`'s newest migration, so that tree's service starts on it.

    For `--against` only, and only sound when the migrations between the two trees change
    nothing either tree reads (0004 recomputes channel keys, 0008 the indexes' INCLUDE,
    0009 adds a CHECK; both trees read the same tables).
    """
    head = ScriptDirectory(str(tree / "migrations")).get_current_head()
    db = Database.connect(url, pool_size=1)
    try:
        async with db.engine.begin() as connection:
            stamp = text("UPDATE alembic_version SET version_num = :head")
            await connection.execute(stamp, {"head": head})
    finally:
        await db.dispose()


def bench_backend(
    backend: str, args: argparse.Namespace, wrk: str, shape: str = "spread"
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"izs-bench-{backend}-"))
    url, seeded, dropper = asyncio.run(prepare(backend, folder, args.permits, shape))
    env = server_env(url, folder, args.log_level)
    settings = load_settings(_env_file=None, data_dir=folder / "data", database_url=url)
    signer = load_or_create_signer(settings.data_dir)
    token = {
        nip: signer.mint(settings, nip, minutes=120)
        for nip in (seeded.admin, seeded.staff[0], seeded.heads["BENCH-U000"])
    }
    requester = seeded.staff[0]  # staff of BENCH-U000, whose workspaces the write mix books
    token[requester] = signer.mint(settings, requester, minutes=120)

    files = folder / "paths"
    files.mkdir()
    for form in ("employee", "channel"):
        (files / f"{form}.txt").write_text(check_paths(seeded, form))
    (files / "permit.txt").write_text("\n".join(f"/api/v1/permits/{i}" for i in seeded.permit_ids))
    (files / "credential.txt").write_text(
        "\n".join(f"/api/v1/permits/{i}/credential" for i in seeded.approved_ids)
    )
    (files / "qr.txt").write_text(
        "\n".join(f"/api/v1/permits/{i}/credential.png" for i in seeded.approved_ids)
    )
    (files / "status-list.txt").write_text("/api/v1/status-lists/0\n")
    queries = [
        {"nip": n, "workspace_code": w} if i % 2 else {"platform": p, "channel": c}
        for i, (n, w, p, c) in enumerate(seeded.samples)
    ]
    stream = itertools.cycle(queries)  # full batches, every sample in one at least
    batches = -(-len(queries) // BATCH_SIZE)
    (files / "batches.txt").write_text(
        "\n".join(
            json.dumps({"checks": list(itertools.islice(stream, BATCH_SIZE))})
            for _ in range(batches)
        )
    )
    (files / "list.txt").write_text("/api/v1/permits?limit=50\n")
    (files / "ceiling.txt").write_text("/ceiling\n")
    (files / "inserts.txt").write_text(  # as large as a submission's body
        "\n".join(
            json.dumps({"title": "Bench", "channel": f"@bench.{n}", "purpose": "official" * 40})
            for n in range(100)
        )
    )
    (files / "workspaces.txt").write_text("\n".join(seeded.write_workspaces))
    lua = {"BENCH_LUA": str(HERE / "lua")}
    key = {"BENCH_HEADER": f"X-API-Key: {seeded.api_key}"}
    jwt_admin = {"BENCH_HEADER": f"Authorization: Bearer {token[seeded.admin]}"}
    jwt_staff = {"BENCH_HEADER": f"Authorization: Bearer {token[seeded.staff[0]]}"}
    anyone = {"BENCH_HEADER": "User-Agent: izin-siaran-bench"}  # the public endpoints
    varied = HERE / "lua" / "get_varied.lua"
    scenarios = [
        ("check nip+workspace, API key", "employee.txt", key),
        ("check platform+channel, API key", "channel.txt", key),
        ("check nip+workspace, JWT", "employee.txt", jwt_staff),
        ("GET /permits/{id}", "permit.txt", jwt_admin),
        ("GET /permits (page of 50)", "list.txt", jwt_admin),
        ("credential: GET /permits/{id}/credential, JWT", "credential.txt", jwt_admin),
        ("credential QR: GET /permits/{id}/credential.png, JWT", "qr.txt", jwt_admin),
        ("status list: GET /status-lists/0 (public)", "status-list.txt", anyone),
    ]
    rounds: list[dict[str, Any]] = []
    # The warm-up books windows from day 1, the measured run from day 30: no clashes; each
    # round books 60 days later than the one before.
    t0 = int((datetime.now(UTC) + timedelta(days=1)).timestamp()) // 1800 * 1800
    service: Instances | None = None
    try:
        for round_number in range(args.rounds):
            print(f"   round {round_number + 1} of {args.rounds}", flush=True)
            results: dict[str, Any] = {}
            if service is not None:
                service.stop()  # one core for the app: the ceiling runs alone, then the service
            ceiling = Server("ceiling:app", {"CEILING_DATABASE_URL": url}, app_dir=HERE)
            try:
                results["ceiling (bare FastAPI)"] = run_wrk(
                    wrk,
                    ceiling.url,
                    varied,
                    {**lua, **key, "BENCH_PATHS": str(files / "ceiling.txt")},
                    connections=args.connections,
                    seconds=args.duration,
                    watch=CpuWatch(ceiling.process.pid),
                )
                if _selected(args, WRITE_MIX):
                    results[INSERT_CEILING] = run_wrk(
                        wrk,
                        ceiling.url,
                        HERE / "lua" / "post_varied.lua",
                        {
                            **lua,
                            "BENCH_BODIES": str(files / "inserts.txt"),
                            "BENCH_POST_PATH": "/ceiling/insert",
                        },
                        connections=min(8, args.connections),
                        seconds=args.duration,
                        watch=CpuWatch(ceiling.process.pid),
                    )
            finally:
                ceiling.stop()
            # With --against, the other tree's service runs right after this one's, on the
            # same data, each round: an interleaved A/B. Each books its own 60 days.
            trees = [(PROJECT, "")] + ([(args.against, " [against]")] if args.against else [])
            for index, (tree, suffix) in enumerate(trees):
                if service is not None:
                    service.stop()
                if args.against:
                    asyncio.run(_stamp(url, tree))
                service = Instances(
                    env,
                    tree,
                    workers=args.workers,
                    count=args.instances,
                    log=folder / "service.log",
                    gc_dir=_gc_dir(args, folder, index),
                )
                base = t0 + (round_number * len(trees) + index) * 60 * 86400
                measured = _service_round(
                    service, args, wrk, files, scenarios, lua, key, token, requester, seeded, base
                )
                results.update({label + suffix: figures for label, figures in measured.items()})
            top = results["ceiling (bare FastAPI)"]["rps"]
            for figures in results.values():
                figures["x_ceiling"] = round(figures["rps"] / top, 3) if top else 0.0
            inserts = results.get(INSERT_CEILING, {}).get("rps")
            for label, figures in results.items():
                if inserts and label.startswith(WRITE_MIX):  # pairs against single INSERTs
                    figures["x_insert"] = round(figures["pairs_per_second"] / inserts, 3)
            rounds.append(results)
    finally:
        if service is not None:
            service.stop()
        asyncio.run(drop(dropper))
        shutil.rmtree(folder, ignore_errors=True)
    return _medians(rounds)


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (ratios are each round's own, then the median)."""
    merged: dict[str, Any] = {}
    for label in rounds[0]:
        merged[label] = {
            figure: statistics.median(r[label][figure] for r in rounds)
            for figure in rounds[0][label]
        }
        merged[label]["rounds"] = len(rounds)
        # Each round's own ratio, so that a report can say how far the rounds spread.
        merged[label]["x_ceiling_each_round"] = [r[label]["x_ceiling"] for r in rounds]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description="Izin Siaran benchmark harness")
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--permits", type=int, default=10_000)
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=list(SHAPES),
        choices=SHAPES,
        help="spread: a few permits per pair; crowded: 50 per pair and per channel",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="report the median of this many")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn workers of the service (not the ceiling)"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="instances of the service on the one database, the load split between them "
        "(PostgreSQL; more than one: none pinned)",
    )
    add_log_level(parser)
    parser.add_argument(
        "--gc",
        action="store_true",
        help="time the service's garbage collector (bench/gc_watch.py; one worker): its "
        "microseconds a request follow the CPU figures",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    parser.add_argument(
        "--only", nargs="+", default=[], help="only the scenarios whose label holds one of these"
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout of the project: its service is measured after this one's in "
        "every round, on the same data (labels end in [against])",
    )
    args = parser.parse_args()
    if args.smoke:
        args.permits, args.duration, args.connections, args.rounds = 200, 2.0, 4, 1
    wrk = ensure_wrk()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {CPUS} cores, Python {platform.python_version()}",
        "cpu": cpu_model(),
        "permits": args.permits,
        "connections": args.connections,
        "seconds": args.duration,
        "rounds": args.rounds,
        "workers": args.workers,
        "instances": args.instances,
        "log_level": args.log_level,
        "gc_timed": args.gc,
        "backends": {},
    }
    for backend, shape in itertools.product(args.backends, args.shapes):
        name = backend if shape == "spread" else f"{backend}, {shape}"
        print(f"== {name}", flush=True)
        results = bench_backend(backend, args, wrk, shape)
        report["backends"][name] = results
        print(
            "| scenario | req/s | p50 ms | p99 ms | errors | x ceiling | CPU µs/req: server, database |"
            "\n|---|---|---|---|---|---|---|"
        )
        for label, f in results.items():
            cpu = f"{f.get('server_cpu_us_per_request', 0):.0f}, {f.get('database_cpu_us_per_request', 0):.0f}"
            if "gc_cpu_us_per_request" in f:
                cpu += f" (GC {f['gc_cpu_us_per_request']:.1f})"
            ratio = f"{f['x_ceiling']:.2f}"
            if "x_insert" in f:
                ratio += f" ({f['pairs_per_second']:.0f} pairs/s = {f['x_insert']:.2f} x INSERT)"
            print(
                f"| {label} | {f['rps']:.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['errors']:.0f} | {ratio} | {cpu} |"
            )
    if not args.smoke:
        stamp = report["when"][:19].replace(":", "")
        scale = f"w{args.workers}" + (f"-i{args.instances}" if args.instances > 1 else "")
        scale += "-info" if args.log_level == "INFO" else ""
        out = HERE / "results" / f"{stamp}-{args.permits}-{scale}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {out}")
    failed = [
        (b, label)
        for b, results in report["backends"].items()
        for label, f in results.items()
        if f["errors"] or not f["requests"]
    ]
    if failed:
        raise SystemExit(f"errors during the run: {failed}")


if __name__ == "__main__":
    main()
