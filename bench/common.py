"""Small helpers shared by the benchmark parts: progress lines, percentiles, process CPU."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

_T0 = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, stamped with the seconds since the benchmark started."""
    print(f"[bench +{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted, non-empty sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary_ms(seconds: Iterable[float]) -> dict[str, float | int]:
    """p50/p90/p99/max/min/mean (in ms) of latencies given in seconds."""
    values = sorted(seconds)
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p90_ms": round(percentile(values, 90) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3),
        "min_ms": round(values[0] * 1000, 3),
        "mean_ms": round(sum(values) / len(values) * 1000, 3),
    }


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may contain spaces; the fields after it are space separated
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@dataclass
class CpuMeter:
    """CPU seconds of some processes between ``start()`` and ``stop()``, as cores used.

    ``stop()`` also keeps the raw figures: ``cpu_s`` (CPU seconds of each process in the window,
    user + system, from /proc) and ``wall_s`` (the window's length)."""

    pids: dict[str, int]
    _start: dict[str, float | None] | None = None
    _t0: float = 0.0
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    wall_s: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: process_cpu_s(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float | None]:
        """Cores used by each process (CPU seconds / wall seconds) since ``start()``."""
        wall = max(1e-9, time.monotonic() - self._t0)
        self.wall_s = round(wall, 3)
        self.cpu_s = {}
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            before = (self._start or {}).get(name)
            after = process_cpu_s(pid)
            used = None if before is None or after is None else after - before
            self.cpu_s[name] = None if used is None else round(used, 3)
            out[name] = None if used is None else round(used / wall, 3)
        return out


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every process still running, then wait for each; one that outlives ``timeout``
    is killed."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def node_log_events(log_path: str) -> tuple[list[int], int]:
    """From a node's log: the milliseconds of each log compaction (its ``event=log_compacted
    ms=`` lines, in order) and the leader changes it saw (the terms of its
    ``event=leader_changed`` lines, minus the first)."""
    with open(log_path, errors="replace") as f:
        text = f.read()
    took = [int(x) for x in re.findall(r"event=log_compacted ms=(\d+)", text)]
    terms = set(re.findall(r"event=leader_changed .*?term=(\d+)", text))
    return took, max(0, len(terms) - 1)


def save_json(path: str | None, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` (a bench's ``--json``); nothing when it is None."""
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
