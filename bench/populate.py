"""Fill a running cluster with N jobs, for the benchmarks that need a large state (join.py,
backup.py).

There is no batch create: every job is one ``CreateJob`` call and one Raft entry. The fastest
way through the public API is many calls in flight, as :func:`schedd_bench._create_jobs` does
(32 threads on one ``Client``). On the shared 2-core box 16, 32 and 64 threads and an
``AsyncClient`` with 64 or 256 calls in flight all gave 230-340 creates/s: the cluster (one
entry per job, applied on 3 nodes sharing 2 cores) is the limit, not the client.
"""

from __future__ import annotations

import time
from typing import Any

from common import CpuMeter, progress
from schedd_bench import _create_jobs

from schedd.client import Client

#: a recurring job that is never due while a benchmark runs: 03:00 UTC on 1 January
QUIET_CRON = "0 3 1 1 *"


def create_jobs(
    client: Client,
    count: int,
    *,
    prefix: str = "job-",
    threads: int = 32,
    chunk: int = 5000,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Create ``count`` jobs named ``{prefix}{i:06d}`` (cron :data:`QUIET_CRON`) with
    ``threads`` calls in flight, ``chunk`` jobs at a time (one progress line per chunk).

    Returns ``jobs``, ``create_s`` (wall seconds), ``create_per_s`` and, when ``pids`` (name ->
    process id) is given, ``cpu_s``: the CPU seconds (user + system, /proc) each of those
    processes used during the creation."""
    meter = CpuMeter(pids or {})
    meter.start()
    t0 = time.monotonic()
    for start in range(0, count, chunk):
        names = [f"{prefix}{i:06d}" for i in range(start, min(count, start + chunk))]
        _create_jobs(client, [(name, {"cron": QUIET_CRON}) for name in names], threads)
        done = start + len(names)
        took = time.monotonic() - t0
        progress(f"created {done}/{count} jobs in {took:.0f} s ({done / took:.0f}/s)")
    create_s = time.monotonic() - t0
    meter.stop()
    out: dict[str, Any] = {
        "jobs": count,
        "threads": threads,
        "create_s": round(create_s, 1),
        "create_per_s": round(count / create_s, 1),
    }
    if pids:
        out["cpu_s"] = meter.cpu_s
    return out
