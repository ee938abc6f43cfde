"""A flame graph of the service under one benchmark scenario.

py-spy samples the one uvicorn worker (pinned to CPU 0) while wrk (on CPU 1)
drives the scenario, on a database seeded as `bench/run.py` seeds it:

    .venv/bin/pip install py-spy==0.4.3      # a profiler, not a dependency of the service
    .venv/bin/python bench/profile.py --backend postgresql --scenario check --shape crowded
    .venv/bin/python bench/profile.py --backend postgresql --scenario write

Writes `bench/results/flame-<scenario>-<backend>-<shape>.svg` (open it in a browser);
`--format raw`, the folded stacks (`.txt`); `--format summary`, the folded stacks and, for
the check, where its samples went (`CHECK_PARTS`: bench/README.md's profile tables).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from app.auth.local import load_or_create_signer  # noqa: E402
from app.config import load_settings  # noqa: E402
from bench.run import (  # noqa: E402
    Server,
    add_log_level,
    check_paths,
    drop,
    ensure_wrk,
    prepare,
    server_env,
    signed_credentials,
)
from bench.seed import SHAPES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument(
        "--scenario",
        choices=["check", "permit", "list", "credential", "status-list", "verify", "write"],
        default="check",
    )
    parser.add_argument("--permits", type=int, default=10_000)
    parser.add_argument("--shape", choices=SHAPES, default="spread", help="as bench/run.py seeds")
    parser.add_argument(
        "--form",
        choices=["employee", "channel"],
        default="employee",
        help="the check's form: NIP + workspace, or platform + channel",
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument(
        "--format",
        choices=["flamegraph", "raw", "summary"],
        default="flamegraph",
        help="raw: folded stacks; summary: raw, and the check's samples by part",
    )
    add_log_level(parser)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy==0.4.3")
    wrk = ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="izs-profile-"))
    url, seeded, dropper = asyncio.run(prepare(args.backend, folder, args.permits, args.shape))
    env = server_env(url, folder, args.log_level)
    lua = HERE / "lua"
    wrk_env = {**os.environ, "BENCH_LUA": str(lua)}
    settings = load_settings(_env_file=None, data_dir=folder / "data", database_url=url)
    signer = load_or_create_signer(settings.data_dir)
    if args.scenario == "check":
        paths = folder / "employee.txt"
        paths.write_text(check_paths(seeded, args.form))
        script = lua / "get_varied.lua"
        wrk_env |= {"BENCH_PATHS": str(paths), "BENCH_HEADER": f"X-API-Key: {seeded.api_key}"}
        connections = 32
    elif args.scenario in ("permit", "list", "credential", "status-list"):
        paths = folder / "paths.txt"
        if args.scenario == "permit":
            paths.write_text("\n".join(f"/api/v1/permits/{i}" for i in seeded.permit_ids))
        elif args.scenario == "status-list":
            paths.write_text("/api/v1/status-lists/0\n")
        elif args.scenario == "credential":
            paths.write_text(
                "\n".join(f"/api/v1/permits/{i}/credential" for i in seeded.approved_ids)
            )
        else:
            paths.write_text("/api/v1/permits?limit=50\n")
        script = lua / "get_varied.lua"
        admin = signer.mint(settings, seeded.admin, minutes=60)
        wrk_env |= {"BENCH_PATHS": str(paths), "BENCH_HEADER": f"Authorization: Bearer {admin}"}
        connections = 32
    elif args.scenario == "verify":
        bodies = folder / "bodies.txt"  # written once the service runs (it signs them)
        script = lua / "post_varied.lua"
        wrk_env |= {"BENCH_BODIES": str(bodies), "BENCH_POST_PATH": "/api/v1/credentials/verify"}
        connections = 32
    else:
        workspaces = folder / "workspaces.txt"
        workspaces.write_text("\n".join(seeded.write_workspaces))
        t0 = int((datetime.now(UTC) + timedelta(days=1)).timestamp()) // 1800 * 1800
        script = lua / "write_mix.lua"
        wrk_env |= {
            "BENCH_WORKSPACES": str(workspaces),
            "BENCH_THREADS": "1",
            "BENCH_T0": str(t0),
            "BENCH_REQUESTER": signer.mint(settings, seeded.staff[0], minutes=60),
            "BENCH_HEAD": signer.mint(settings, seeded.heads["BENCH-U000"], minutes=60),
        }
        connections = 8
    suffix = "svg" if args.format == "flamegraph" else "txt"
    py_spy_format = "raw" if args.format == "summary" else args.format
    form = "-channel" if args.scenario == "check" and args.form == "channel" else ""
    out = HERE / "results" / f"flame-{args.scenario}{form}-{args.backend}-{args.shape}.{suffix}"
    service = Server("app.main:app", env, log=folder / "service.log")
    try:
        if args.scenario == "verify":
            admin = signer.mint(settings, seeded.admin, minutes=60)
            bodies.write_text(signed_credentials(service.url, admin, seeded))
        drive = [wrk, "-t1", f"-c{connections}", f"-d{args.seconds + 4}s", "-s", str(script)]
        load = subprocess.Popen(
            ["taskset", "-c", "1", *drive, service.url],
            env=wrk_env,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(2)  # past the warm-up: connections open, statements prepared
        subprocess.run(
            [
                *(py_spy, "record", "--pid", str(service.process.pid)),
                *("--duration", str(args.seconds), "--rate", "250"),
                *("--format", py_spy_format, "-o", str(out)),
            ],
            check=True,
        )
        load.wait()
    finally:
        service.stop()
        asyncio.run(drop(dropper))
        shutil.rmtree(folder, ignore_errors=True)
    print(f"written to {out}")
    if args.format == "summary":
        for part, share in summarize(out).items():
            print(f"{share:6.1%}  {part}")


CHECK_PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("writing the response: JSON encoding, the layers' send wrappers, uvicorn", ("send_json ",)),
    ("the answer's body: the verdict as data, instants formatted", ("body (app/authorizations",)),
    (
        "reading: the statement's trip (app/rawdb.py, asyncpg) and its rows",
        ("CheckReader.read", "PostgresReader.", "SqliteReader.", "_reading (", "asyncpg"),
    ),
    ("the credential: the key hashed and judged", ("_credential (", "Credential.accepted_by")),
    ("the query parsed", ("Query.parse",)),
    ("the access log's line (LOG_LEVEL=INFO)", ("log_access (",)),
    ("the verdict: ranking and disclosure", ("answer (app/authorizations/service.py",)),
]
"""The check's parts, in this order: a sample counts for the first whose frames its stack
holds. What is left counts for our layers when its innermost frame is theirs."""
OUR_LAYERS = "our layers' own work: request id, rate limit, metrics, the fast path's own lines"
OURS = ("app/middleware.py", "app/ratelimit.py", "app/metrics.py", "app/requestctx.py")
OURS += ("app/fastpath.py", "app/authorizations/fastpath.py", "prometheus_client")
THE_REST = "uvicorn, the event loop, Starlette's and FastAPI's layers, the rest"


def summarize(folded: Path) -> dict[str, float]:
    """The share of a check profile's samples (py-spy's folded stacks) in each part."""
    counts = dict.fromkeys([*(part for part, _ in CHECK_PARTS), OUR_LAYERS, THE_REST], 0)
    for line in folded.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        counts[_part_of(stack)] += int(samples)
    total = sum(counts.values()) or 1
    return {part: count / total for part, count in counts.items()}


def _part_of(stack: str) -> str:
    for part, frames in CHECK_PARTS:
        if any(frame in stack for frame in frames):
            return part
    innermost = stack.rsplit(";", 1)[-1]
    return OUR_LAYERS if any(name in innermost for name in OURS) else THE_REST


if __name__ == "__main__":
    main()
