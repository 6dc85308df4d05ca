"""How long one full garbage collection holds a leader with a large backlog of PENDING runs.

A full collection traverses every tracked object of the process; the leader's in-memory index
of PENDING runs (schedd.server.pending) holds about one per run. This fills that index with
``--runs`` runs and times ``gc.collect()`` (the median of ``--repeat``), the figure behind
docs/operations.md, "Garbage collection".

    python bench/gc_pause.py --runs 100000 --runs 500000
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from schedd.server.pending import _Tables
from schedd.server.planner import Candidate

T0 = 1_800_000_000_000


def pause_ms(runs: int, repeat: int) -> tuple[int, float]:
    """(tracked objects, median ms of a full collection) with ``runs`` PENDING runs indexed."""
    tables = _Tables()
    for i in range(runs):
        name = f"job-{i:07d}"
        tables.add(
            Candidate(
                run_id=f"{name}:1:{T0 + i}", attempt=1, queue="default", job=name, ready_ms=T0 + i
            )
        )
    took = []
    for _ in range(repeat):
        t = time.perf_counter()
        gc.collect()
        took.append((time.perf_counter() - t) * 1000)
    tracked = len(gc.get_objects())
    del tables
    gc.collect()
    return tracked, statistics.median(took)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, action="append", default=[])
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    for runs in a.runs or [100_000, 500_000]:
        tracked, ms = pause_ms(runs, a.repeat)
        print(
            f"{runs:,} PENDING runs indexed: {tracked:,} tracked objects, full collection {ms:.0f} ms"
        )


if __name__ == "__main__":
    main()
