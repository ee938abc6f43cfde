"""uvicorn with the garbage collector's passes timed: what `bench/run.py --gc` starts.

    python -m bench.gc_watch app.main:app --port 8000   # uvicorn's own arguments

Every pass of the collector is timed (`gc.callbacks`), by generation; twice a second the
totals so far go to `$BENCH_GC_DIR/<pid>.json`, which the harness reads before and after
a measured run as it reads the CPU times. One process only: the workers of `--workers N`
are processes of their own and are not watched.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from uvicorn.main import main

GENERATIONS = len(gc.get_threshold())
seconds = [0.0] * GENERATIONS
passes = [0] * GENERATIONS
_started = [0.0]


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    generation = info["generation"]
    seconds[generation] += time.perf_counter() - _started[0]
    passes[generation] += 1


def _written(folder: Path) -> None:
    target = folder / f"{os.getpid()}.json"
    while True:
        text = json.dumps({"seconds": seconds, "passes": passes})
        temporary = target.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(target)  # a reader never sees half a file
        time.sleep(0.5)


def totals(folder: Path) -> dict[str, float]:
    """The collector's seconds and passes so far, summed over the watched processes."""
    found = {"gc_seconds": 0.0, "gc_passes": 0.0}
    for file in folder.glob("*.json"):
        figures = json.loads(file.read_text())
        found["gc_seconds"] += sum(figures["seconds"])
        found["gc_passes"] += sum(figures["passes"])
    return found


if __name__ == "__main__":
    gc.callbacks.append(_timed)
    threading.Thread(target=_written, args=(Path(os.environ["BENCH_GC_DIR"]),), daemon=True).start()
    main()
