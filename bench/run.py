"""schedd benchmark: schedd next to raw pysyncobj and APScheduler, measured in one run.

    python bench/run.py [--quick] [--runs 3] [--no-unsafe] [--no-insecure] [--metrics]
                        [--extended] [--out FILE.json]

Parts (see bench/README.md for what each figure means):
  (a) schedd burst throughput: N one-shot jobs due at one instant, 3-node cluster, one worker
  (b) schedd lag: 100 cron jobs firing every second, handler start minus scheduled time
  (c) raw pysyncobj, same settings as schedd: commits/s with many calls in flight, one sync call
  (d) APScheduler 3.x in memory: N jobs due at once; 100 jobs every second
  (e) (a) and (b) again with every node started with --unsafe-no-fsync, right next to the
      durable runs (unless --no-unsafe): the cost of the durable journal
  (f) (a) and (b) again with every node started with --insecure (plaintext, no tokens), right
      next to the default runs (mutual TLS + a token; unless --no-insecure): the cost of security
  (g) with --metrics: (a) and (b) again with every node serving Prometheus metrics, right
      next to the default runs (metrics off): the cost of metrics (target: >= 0.95x firings/s)
  (h) the floor (bench/floor.py): a minimal replicated dispatcher on schedd's own Raft layer,
      the same burst as (a); and (b) with the firings spread evenly over each second
  with --extended:
  (i) sustained load (bench/sustained.py): 1,000, 5,000 and 10,000 firings/s aligned and
      1,000/s spread, delivered/expected, lag and CPU per firing per process; the worker has
      as many slots as firings due per second (at least 512)
  (j) failover (bench/failover.py): --kills leader SIGKILLs, then as many SIGTERMs
  (k) bulk create (bench/populate.py): --bulk-jobs jobs through CreateJobs

Also prints the issue's targets with the figure measured for each and whether it is met.

Prints a table (figure, schedd, baseline, ratio) and a durable vs --unsafe-no-fsync table on
stdout and writes every raw number to the JSON file. Progress goes to stderr. Everything binds
to 127.0.0.1 and every process started here is stopped before the part returns. Exit status 1
when a part raised.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import Any

from common import load_average, progress

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


@dataclass(frozen=True)
class Plan:
    jobs: int
    lag_s: float
    raft_s: float
    raft_inflight: int
    concurrency: int
    runs: int
    keep: bool
    server_path: str | None
    unsafe: bool = (
        True  # also run (a) and (b) with --unsafe-no-fsync, interleaved with the durable runs
    )
    insecure: bool = True  # also run (a) and (b) with --insecure, interleaved likewise
    metrics: bool = False  # also run (a) and (b) with --metrics on every node, likewise
    extended: bool = False  # also the sustained, failover and bulk-create parts (i)-(k)
    sustained_s: float = 20.0
    kills: int = 10
    bulk_jobs: int = 20_000


# part names, by mode: the default (durable journal, mutual TLS + token), --unsafe-no-fsync,
# --insecure
SCHEDD_THROUGHPUT = {
    "default": "schedd_throughput",
    "unsafe": "schedd_throughput_unsafe",
    "insecure": "schedd_throughput_insecure",
    "metrics": "schedd_throughput_metrics",
}
SCHEDD_LAG = {
    "default": "schedd_lag",
    "unsafe": "schedd_lag_unsafe",
    "insecure": "schedd_lag_insecure",
    "metrics": "schedd_lag_metrics",
}


def _git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", REPO, *args], capture_output=True, text=True, timeout=10
        ).stdout

    try:
        # the nodes import this work tree: list what differs from the commit
        changed = [
            line.split(maxsplit=1)[-1]
            for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
            if line.strip()
        ]
        return {
            "commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(changed),
            "changed_files": changed,
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "changed_files": []}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in (
        "schedd",
        "pysyncobj",
        "apscheduler",
        "grpcio",
        "protobuf",
        "lmdb",
        "croniter",
        "cryptography",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _machine() -> dict[str, Any]:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None
            )
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_gib": mem,
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def _part(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one part; an exception becomes ``{"error": ...}`` so the other parts still run."""
    t0 = time.monotonic()
    try:
        res = fn()
    except Exception as e:  # report and go on: one broken part must not hide the others
        progress(f"{name}: FAILED: {e!r}")
        res = {"error": repr(e), "traceback": traceback.format_exc(), "valid": False}
    res["wall_s"] = round(time.monotonic() - t0, 1)
    results.setdefault(name, []).append(res)


SUSTAINED = ((1000, False), (5000, False), (10000, False), (1000, True))


def sustained_slots(rate: int) -> int:
    """The bench worker's concurrency for a sustained rate: a second's firings in flight. The
    leader never has more firings in flight to a worker than its slots, so a 512-slot worker
    measured its own slots at 5,000/s (47-72 % delivered), not the cluster (100 % with 5,000)."""
    return max(512, rate)


def sustained_name(rate: int, spread: bool) -> str:
    return f"sustained_{rate}_{'spread' if spread else 'aligned'}"


def bulk_create(jobs: int, keep: bool) -> dict[str, Any]:
    """(k) ``jobs`` jobs created through ``CreateJobs`` (1,000 per call, 2 calls in flight) on
    a fresh cluster: jobs/s and CPU per job (``bench/populate.py``)."""
    import shutil
    import tempfile

    import populate

    root = tempfile.mkdtemp(prefix="schedd-bench-bulk-")
    ok = False
    try:
        res = populate.measure("bulk", jobs, root, in_flight=2, threads=32)
        res["valid"] = ok = res["listed"] == jobs and res["elections"] == 0
        return res
    finally:
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            progress(f"bulk create: kept {root}")


def run_all(plan: Plan) -> dict[str, Any]:
    import signal

    import aps_bench
    import failover
    import floor
    import raw_raft
    import schedd_bench
    import sustained

    parts: dict[str, list[dict[str, Any]]] = {}

    def throughput(mode: str) -> dict[str, Any]:
        return schedd_bench.throughput(
            plan.jobs,
            concurrency=plan.concurrency,
            keep=plan.keep,
            server_path=plan.server_path,
            unsafe_no_fsync=mode == "unsafe",
            insecure=mode == "insecure",
            metrics=mode == "metrics",
        )

    def lag(mode: str) -> dict[str, Any]:
        return schedd_bench.lag(
            100,
            plan.lag_s,
            concurrency=plan.concurrency,
            keep=plan.keep,
            server_path=plan.server_path,
            unsafe_no_fsync=mode == "unsafe",
            insecure=mode == "insecure",
            metrics=mode == "metrics",
        )

    for i in range(plan.runs):
        if plan.runs > 1:
            progress(f"=== run {i + 1}/{plan.runs} ===")
        # the modes back to back, the order rotated every run (no mode always goes first)
        modes = (
            ["default"]
            + ["unsafe"] * plan.unsafe
            + ["insecure"] * plan.insecure
            + ["metrics"] * plan.metrics
        )
        modes = modes[i % len(modes) :] + modes[: i % len(modes)]
        # interleaved so that schedd and its baselines see the same machine conditions
        _part(
            parts,
            "raw_pysyncobj",
            lambda: raw_raft.run(plan.raft_s, plan.raft_inflight, keep=plan.keep),
        )
        _part(parts, "floor", lambda: floor.run(plan.jobs, plan.concurrency, keep=plan.keep))
        for mode in modes:
            _part(parts, SCHEDD_THROUGHPUT[mode], partial(throughput, mode))
        _part(parts, "apscheduler_throughput", lambda: aps_bench.throughput(plan.jobs))
        for mode in modes:
            _part(parts, SCHEDD_LAG[mode], partial(lag, mode))
        _part(
            parts,
            "schedd_lag_spread",
            lambda: schedd_bench.lag(
                100,
                plan.lag_s,
                concurrency=plan.concurrency,
                keep=plan.keep,
                server_path=plan.server_path,
                spread=True,
            ),
        )
        _part(parts, "apscheduler_lag", lambda: aps_bench.lag(100, plan.lag_s))
        if not plan.extended:
            continue
        for rate, spread in SUSTAINED:
            _part(
                parts,
                sustained_name(rate, spread),
                partial(
                    sustained.run,
                    rate,
                    plan.sustained_s,
                    2.0,
                    [],
                    plan.keep,
                    spread=spread,
                    server_path=plan.server_path,
                    concurrency=sustained_slots(rate),
                ),
            )
        _part(parts, "failover_kill", partial(failover.run, plan.kills, signal.SIGKILL, plan.keep))
        _part(parts, "failover_term", partial(failover.run, plan.kills, signal.SIGTERM, plan.keep))
        _part(parts, "bulk_create", partial(bulk_create, plan.bulk_jobs, plan.keep))
    return parts


# ---- summary -------------------------------------------------------------------------------


def _values(runs: list[dict[str, Any]], *path: str) -> list[float]:
    out = []
    for r in runs:
        v: Any = r
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, int | float):
            out.append(float(v))
    return out


@dataclass(frozen=True)
class Stat:
    median: float | None
    lo: float | None
    hi: float | None
    n: int
    invalid: int

    @staticmethod
    def of(runs: list[dict[str, Any]], *path: str) -> Stat:
        vals = _values(runs, *path)
        invalid = sum(1 for r in runs if not r.get("valid", False))
        if not vals:
            return Stat(None, None, None, 0, invalid)
        return Stat(statistics.median(vals), min(vals), max(vals), len(vals), invalid)

    def fmt(self, digits: int = 0) -> str:
        if self.median is None:
            return "n/a"
        text = f"{self.median:,.{digits}f}"
        if self.n > 1:
            text += f" [{self.lo:,.{digits}f}–{self.hi:,.{digits}f}]"
        if self.invalid:
            text += " *"
        return text


def _ratio(a: Stat, b: Stat) -> str:
    if a.median is None or b.median in (None, 0):
        return "n/a"
    assert b.median is not None
    r = a.median / b.median
    return f"{r:.3f}×" if r < 0.1 else f"{r:.2f}×"


def summary(parts: dict[str, list[dict[str, Any]]], plan: Plan) -> list[dict[str, str]]:
    sa, sb = parts.get("schedd_throughput", []), parts.get("schedd_lag", [])
    raw, aa, al = (
        parts.get("raw_pysyncobj", []),
        parts.get("apscheduler_throughput", []),
        parts.get("apscheduler_lag", []),
    )
    fl, sp = parts.get("floor", []), parts.get("schedd_lag_spread", [])
    fps = Stat.of(sa, "firings_per_s")
    none = Stat(None, None, None, 0, 0)
    rows: list[tuple[str, Stat, str, Stat, int]] = [
        (
            f"burst: firings/s, {plan.jobs} due at once",
            fps,
            "floor firings/s (bench/floor.py, same burst)",
            Stat.of(fl, "firings_per_s"),
            0,
        ),
        *(
            (
                f"burst: CPU µs per firing, {ours}",
                Stat.of(sa, "cpu_us_per_firing", our_key),
                f"floor, {theirs}",
                Stat.of(fl, "cpu_us_per_firing", their_key),
                0,
            )
            for ours, our_key, theirs, their_key in (
                ("all processes", "all", "all processes", "all"),
                ("leader", "leader", "leader", "leader"),
                ("both followers", "followers", "both followers", "followers"),
                ("worker (+ bench client)", "bench_process", "echoing worker", "worker"),
            )
        ),
        (
            f"burst: firings/s, {plan.jobs} due at once (due → completion committed)",
            fps,
            f"raw pysyncobj commits/s ({plan.raft_inflight} in flight)",
            Stat.of(raw, "commits_per_s"),
            0,
        ),
        (
            f"burst: firings/s, {plan.jobs} due at once",
            fps,
            "APScheduler in-memory firings/s",
            Stat.of(aa, "firings_per_s"),
            0,
        ),
        (
            "burst: due → last completion, s",
            Stat.of(sa, "due_to_last_completion_s"),
            "APScheduler due → last job ran, s",
            Stat.of(aa, "due_to_last_job_s"),
            2,
        ),
        (
            "lag p50 ms at 100 firings/s",
            Stat.of(sb, "lag", "p50_ms"),
            "APScheduler lag p50 ms",
            Stat.of(al, "lag", "p50_ms"),
            1,
        ),
        (
            "lag p99 ms at 100 firings/s",
            Stat.of(sb, "lag", "p99_ms"),
            "APScheduler lag p99 ms",
            Stat.of(al, "lag", "p99_ms"),
            1,
        ),
        (
            "lag max ms at 100 firings/s",
            Stat.of(sb, "lag", "max_ms"),
            "APScheduler lag max ms",
            Stat.of(al, "lag", "max_ms"),
            1,
        ),
        (
            "lag p50 ms at 100 firings/s spread",
            Stat.of(sp, "lag", "p50_ms"),
            "—",
            none,
            1,
        ),
        (
            "lag p99 ms at 100 firings/s spread",
            Stat.of(sp, "lag", "p99_ms"),
            "—",
            none,
            1,
        ),
        (
            "lag p50 ms at 100 firings/s",
            Stat.of(sb, "lag", "p50_ms"),
            "raw pysyncobj one sync call p50 ms",
            Stat.of(raw, "sync_p50_ms"),
            2,
        ),
        (
            "job creation: create_job calls/s (32 threads)",
            Stat.of(sa, "create_per_s"),
            "raw pysyncobj commits/s",
            Stat.of(raw, "commits_per_s"),
            0,
        ),
    ]
    return (
        [
            {
                "figure": f,
                "schedd": s.fmt(d),
                "baseline": bname,
                "baseline_value": b.fmt(d),
                "ratio": _ratio(s, b),
            }
            for f, s, bname, b, d in rows
        ]
        + extended_summary(parts, plan)
        + fsync_summary(parts, plan, "unsafe")
        + fsync_summary(parts, plan, "insecure")
        + fsync_summary(parts, plan, "metrics")
    )


def extended_summary(parts: dict[str, list[dict[str, Any]]], plan: Plan) -> list[dict[str, str]]:
    """Rows of the --extended parts (no baseline: the figures stand alone)."""
    if not plan.extended:
        return []
    specs: list[tuple[str, str, tuple[str, ...], int]] = []
    for rate, spread in SUSTAINED:
        name = sustained_name(rate, spread)
        kind = "spread" if spread else "aligned"
        specs += [
            (f"sustained {rate:,}/s {kind}: delivered/expected", name, ("delivered_fraction",), 3),
            (f"sustained {rate:,}/s {kind}: lag p99 ms", name, ("lag", "p99_ms"), 0),
        ]
    for sig in ("kill", "term"):
        for what in ("elected", "first_firing"):
            specs.append(
                (
                    f"leader SIG{sig.upper()} → {what.replace('_', ' ')} p99 s ({plan.kills} kills)",
                    f"failover_{sig}",
                    (what, "p99_s"),
                    2,
                )
            )
    specs += [
        (f"bulk create {plan.bulk_jobs:,} jobs: jobs/s", "bulk_create", ("create_per_s",), 0),
        (
            "bulk create: leader CPU µs per job",
            "bulk_create",
            ("leader_cpu_us_per_job",),
            0,
        ),
    ]
    return [
        {
            "figure": figure,
            "schedd": Stat.of(parts.get(part, []), *path).fmt(digits),
            "baseline": "—",
            "baseline_value": "",
            "ratio": "",
        }
        for figure, part, path, digits in specs
    ]


@dataclass(frozen=True)
class Target:
    """One of the performance issue's targets, and the figure that answers it."""

    text: str
    part: str
    path: tuple[str, ...]
    limit: float
    at_least: bool  # the figure must be >= limit (else <= limit)
    baseline: tuple[str, tuple[str, ...]] | None = None  # compare to limit x this baseline


TARGETS = (
    Target(
        "CPU per firing, whole box ≤ 100 µs",
        "schedd_throughput",
        ("cpu_us_per_firing", "all"),
        100,
        False,
    ),
    Target("burst ≥ 15,000 firings/s", "schedd_throughput", ("firings_per_s",), 15_000, True),
    Target(
        "burst ≥ 0.6× the floor",
        "schedd_throughput",
        ("firings_per_s",),
        0.6,
        True,
        ("floor", ("firings_per_s",)),
    ),
    Target(
        "burst ≥ 1× APScheduler in memory",
        "schedd_throughput",
        ("firings_per_s",),
        1.0,
        True,
        ("apscheduler_throughput", ("firings_per_s",)),
    ),
    Target("lag aligned p50 ≤ 3 ms", "schedd_lag", ("lag", "p50_ms"), 3, False),
    Target("lag aligned p99 ≤ 10 ms", "schedd_lag", ("lag", "p99_ms"), 10, False),
    Target("lag spread p50 ≤ 3 ms", "schedd_lag_spread", ("lag", "p50_ms"), 3, False),
    Target("lag spread p99 ≤ 10 ms", "schedd_lag_spread", ("lag", "p99_ms"), 10, False),
    Target(
        "sustained 5,000/s aligned: 100 % delivered",
        sustained_name(5000, False),
        ("delivered_fraction",),
        1.0,
        True,
    ),
    Target(
        "sustained 5,000/s aligned: lag p99 ≤ 1 s",
        sustained_name(5000, False),
        ("lag", "p99_ms"),
        1000,
        False,
    ),
    Target(
        "leader SIGKILL → first firing p99 ≤ 2 s",
        "failover_kill",
        ("first_firing", "p99_s"),
        2.0,
        False,
    ),
    Target("SIGTERM handover p99 ≤ 0.5 s", "failover_term", ("elected", "p99_s"), 0.5, False),
    Target("bulk create ≥ 20,000 jobs/s", "bulk_create", ("create_per_s",), 20_000, True),
)


def targets(parts: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    """Each target with the median figure measured for it (and, for ratios, the same-run
    baseline) and a verdict; targets whose part did not run are left out."""
    out = []
    for t in TARGETS:
        figure = Stat.of(parts.get(t.part, []), *t.path)
        if figure.median is None:
            continue
        value = figure.median
        measured = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        if t.baseline is not None:
            base = Stat.of(parts.get(t.baseline[0], []), *t.baseline[1])
            if not base.median:
                continue
            value = figure.median / base.median
            measured = f"{value:.2f}× ({figure.median:,.0f} / {base.median:,.0f})"
        met = value >= t.limit if t.at_least else value <= t.limit
        out.append({"target": t.text, "measured": measured, "verdict": "met" if met else "NOT met"})
    return out


FSYNC_TARGET = 0.75  # the target: durable >= 0.75x unsafe on every figure with a target
TLS_TARGET = 0.85  # security's target: TLS + auth >= 0.85x --insecure on throughput
TLS_LAG_MS = 1.0  # ... and lag p50 within +1 ms
METRICS_TARGET = 0.95  # metrics on >= 0.95x metrics off on burst firings/s
#: the mode compared with the default: (row kind, baseline label, target)
COMPARED = {
    "unsafe": ("durable_vs_unsafe", "--unsafe-no-fsync", FSYNC_TARGET),
    "insecure": ("secure_vs_insecure", "--insecure", TLS_TARGET),
    # compared the other way round: --metrics is the figure, the default (off) the baseline
    "metrics": ("metrics_vs_off", "metrics off", METRICS_TARGET),
}


def _paired(
    durable: list[dict[str, Any]], unsafe: list[dict[str, Any]], path: tuple[str, ...]
) -> Stat:
    """durable / unsafe per run (run i of each mode ran back to back), over the runs where both
    have the figure: median [min-max]."""
    ratios = []
    for d, u in zip(durable, unsafe, strict=False):
        dv, uv = _values([d], *path), _values([u], *path)
        if dv and uv and uv[0]:
            ratios.append(dv[0] / uv[0])
    if not ratios:
        return Stat(None, None, None, 0, 0)
    return Stat(statistics.median(ratios), min(ratios), max(ratios), len(ratios), 0)


def fsync_summary(
    parts: dict[str, list[dict[str, Any]]], plan: Plan, other: str = "unsafe"
) -> list[dict[str, str]]:
    """Rows comparing the default with ``other``: the durable journal with ``--unsafe-no-fsync``
    (``unsafe``), or mutual TLS + token with ``--insecure`` (``insecure``), run back to back.
    For ``insecure`` the target is score >= 0.85 on throughput and lag p50 at most 1 ms more.

    ``ratio`` is durable / unsafe, median of the figure in each mode. ``score`` is that ratio
    turned so that higher is better for durable (throughput: durable / unsafe; latency and CPU:
    unsafe / durable); the target (``FSYNC_TARGET``) is score >= 0.75 for the rows that have
    one. ``per_run`` is the durable / unsafe ratio of each pair of runs, median [min-max]."""
    if not {"unsafe": plan.unsafe, "insecure": plan.insecure, "metrics": plan.metrics}[other]:
        return []
    kind, label, target = COMPARED[other]
    dt_, ut = parts.get(SCHEDD_THROUGHPUT["default"], []), parts.get(SCHEDD_THROUGHPUT[other], [])
    dl, ul = parts.get(SCHEDD_LAG["default"], []), parts.get(SCHEDD_LAG[other], [])
    if other == "metrics":  # the figure is metrics on; the baseline the default (off)
        dt_, ut, dl, ul = ut, dt_, ul, dl
    # (figure, durable runs, unsafe runs, path, digits, higher is better, has the target)
    specs: list[
        tuple[str, list[dict[str, Any]], list[dict[str, Any]], tuple[str, ...], int, bool, bool]
    ] = [
        (f"burst: firings/s, {plan.jobs} due at once", dt_, ut, ("firings_per_s",), 0, True, True),
        (
            "job creation: create_job calls/s (32 threads)",
            dt_,
            ut,
            ("create_per_s",),
            0,
            True,
            True,
        ),
        ("lag p50 ms at 100 firings/s", dl, ul, ("lag", "p50_ms"), 1, False, True),
        ("lag p99 ms at 100 firings/s", dl, ul, ("lag", "p99_ms"), 1, False, True),
        (
            "burst: node CPU µs per firing (3 nodes)",
            dt_,
            ut,
            ("cpu_us_per_firing", "nodes"),
            0,
            False,
            False,
        ),
        (
            "burst: leader CPU µs per firing",
            dt_,
            ut,
            ("cpu_us_per_firing", "leader"),
            0,
            False,
            False,
        ),
        (
            "creation: node CPU µs per create_job (3 nodes)",
            dt_,
            ut,
            ("create_cpu_us_per_job", "nodes"),
            0,
            False,
            False,
        ),
        (
            "lag: node CPU µs per firing (3 nodes)",
            dl,
            ul,
            ("cpu_us_per_firing", "nodes"),
            0,
            False,
            False,
        ),
    ]
    out = []
    for figure, d_runs, u_runs, path, digits, higher_better, targeted in specs:
        d, u = Stat.of(d_runs, *path), Stat.of(u_runs, *path)
        score: float | None = None
        if d.median is not None and u.median:
            score = (
                d.median / u.median
                if higher_better
                else (u.median / d.median if d.median else None)
            )
        verdict = ""
        target_text = f">= {target:.2f}" if targeted else ""
        if targeted and other == "insecure" and not higher_better:
            targeted = path == ("lag", "p50_ms")
            target_text = f"<= +{TLS_LAG_MS:g} ms" if targeted else ""
            if targeted:
                ok = d.median is not None and u.median is not None
                verdict = (
                    "n/a"
                    if not ok
                    else ("met" if (d.median or 0) - (u.median or 0) <= TLS_LAG_MS else "NOT met")
                )
        elif targeted and other == "metrics" and path != ("firings_per_s",):
            targeted, target_text = False, ""  # the target is on burst firings/s only
        elif targeted:
            verdict = "n/a" if score is None else ("met" if score >= target else "NOT met")
        per_run = _paired(d_runs, u_runs, path)
        out.append(
            {
                "figure": figure,
                "kind": kind,
                "schedd": d.fmt(digits),
                "baseline": label,
                "baseline_value": u.fmt(digits),
                "ratio": _ratio(d, u),
                "per_run": per_run.fmt(2) if per_run.n else "n/a",
                "better": "higher" if higher_better else "lower",
                "score": "n/a" if score is None else f"{score:.2f}",
                "target": target_text,
                "verdict": verdict,
            }
        )
    return out


def _print_rows(headers: list[str], table: list[list[str]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_table(rows: list[dict[str, str]], parts: dict[str, list[dict[str, Any]]]) -> None:
    main = [
        r
        for r in rows
        if r.get("kind") not in ("durable_vs_unsafe", "secure_vs_insecure", "metrics_vs_off")
    ]
    metrics = [r for r in rows if r.get("kind") == "metrics_vs_off"]
    fsync = [r for r in rows if r.get("kind") == "durable_vs_unsafe"]
    tls = [r for r in rows if r.get("kind") == "secure_vs_insecure"]
    _print_rows(
        ["figure", "schedd", "baseline", "ratio"],
        [
            [
                r["figure"],
                r["schedd"],
                f"{r['baseline_value']} ({r['baseline']})" if r["baseline_value"] else "—",
                r["ratio"],
            ]
            for r in main
        ],
    )
    print(
        "\nratio = schedd / baseline (throughput: higher is better for schedd; latency: lower is)."
    )
    if fsync:
        print("\nschedd durable journal (default) vs --unsafe-no-fsync, run back to back:\n")
        _print_rows(
            [
                "figure",
                "durable",
                "unsafe-no-fsync",
                "durable/unsafe",
                "per run",
                "better",
                "score",
                "target",
            ],
            [
                [
                    r["figure"],
                    r["schedd"],
                    r["baseline_value"],
                    r["ratio"],
                    r["per_run"],
                    r["better"],
                    r["score"],
                    f"{r['target']} {r['verdict']}".strip(),
                ]
                for r in fsync
            ],
        )
        print(
            "\ndurable/unsafe = median durable / median unsafe; per run = durable / unsafe of each pair of runs, "
            "median [min–max].\nscore = the ratio turned so that higher is better for durable (throughput: "
            "durable/unsafe; latency, CPU: unsafe/durable).\nTarget: score >= 0.75 (lag: durable at most "
            "1.33× the unsafe lag)."
        )
    if tls:
        print("\nschedd mutual TLS + token (default) vs --insecure, run back to back:\n")
        _print_rows(
            [
                "figure",
                "TLS+auth",
                "insecure",
                "tls/insecure",
                "per run",
                "better",
                "score",
                "target",
            ],
            [
                [
                    r["figure"],
                    r["schedd"],
                    r["baseline_value"],
                    r["ratio"],
                    r["per_run"],
                    r["better"],
                    r["score"],
                    f"{r['target']} {r['verdict']}".strip(),
                ]
                for r in tls
            ],
        )
        print("\nTarget: throughput score >= 0.85; lag p50 at most 1 ms above --insecure.")
    if metrics:
        print("\nschedd with --metrics on every node vs without (the default), run back to back:\n")
        _print_rows(
            [
                "figure",
                "metrics on",
                "metrics off",
                "on/off",
                "per run",
                "better",
                "score",
                "target",
            ],
            [
                [
                    r["figure"],
                    r["schedd"],
                    r["baseline_value"],
                    r["ratio"],
                    r["per_run"],
                    r["better"],
                    r["score"],
                    f"{r['target']} {r['verdict']}".strip(),
                ]
                for r in metrics
            ],
        )
        print(f"\nTarget: burst firings/s score >= {METRICS_TARGET} (metrics on / off).")
    for name in SCHEDD_LAG.values():
        lag = parts.get(name, [])
        if lag:
            counts = ", ".join(
                f"{r.get('firings', '?')}/{r.get('expected_firings', '?')}" for r in lag
            )
            print(f"\n{name} firings received/expected per run: {counts}")
    goals = targets(parts)
    if goals:
        print("\nThe performance issue's targets (medians of this run):\n")
        _print_rows(
            ["target", "measured", "verdict"],
            [[g["target"], g["measured"], g["verdict"]] for g in goals],
        )
    bad = [
        f"{name} run {i + 1}: {r.get('error') or 'invalid (see JSON)'}"
        for name, runs in parts.items()
        for i, r in enumerate(runs)
        if not r.get("valid", False)
    ]
    if bad:
        print("\n* invalid or failed:")
        for b in bad:
            print(f"  - {b}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="schedd benchmark (see bench/README.md)")
    parser.add_argument(
        "--quick", action="store_true", help="1000 jobs, 8 s lag window, 3 s raw Raft"
    )
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results", "latest.json"), help="JSON output file"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat every part this many times; the table shows median [min–max]",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="jobs due at once in the burst parts"
    )
    parser.add_argument("--lag-seconds", type=float, default=None, help="length of the lag window")
    parser.add_argument("--concurrency", type=int, default=512, help="schedd worker concurrency")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dirs (node logs) even on success"
    )
    parser.add_argument(
        "--no-unsafe",
        action="store_true",
        help="skip the schedd runs with --unsafe-no-fsync (the durable vs unsafe comparison)",
    )
    parser.add_argument(
        "--no-insecure",
        action="store_true",
        help="skip the schedd runs with --insecure (the TLS + auth vs plaintext comparison)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also run the schedd parts with --metrics on every node (metrics on vs off)",
    )
    parser.add_argument(
        "--extended",
        action="store_true",
        help="also the sustained-rate (1k, 5k, 10k/s aligned, 1k/s spread), failover "
        "(--kills SIGKILLs and SIGTERMs) and bulk-create parts",
    )
    parser.add_argument("--kills", type=int, default=10, help="--extended: leader kills per signal")
    parser.add_argument(
        "--server-path",
        default=None,
        help="directory put first on the nodes' PYTHONPATH: measure the schedd server of another "
        "tree (e.g. a worktree with a candidate fix) against the same baselines",
    )
    args = parser.parse_args(argv)
    plan = Plan(
        jobs=args.jobs or (1000 if args.quick else 5000),
        lag_s=args.lag_seconds or (8.0 if args.quick else 20.0),
        raft_s=3.0 if args.quick else 5.0,
        raft_inflight=2000,
        concurrency=args.concurrency,
        runs=max(1, args.runs),
        keep=args.keep,
        server_path=args.server_path,
        unsafe=not args.no_unsafe,
        insecure=not args.no_insecure,
        metrics=args.metrics,
        extended=args.extended,
        sustained_s=10.0 if args.quick else 20.0,
        kills=args.kills,
        bulk_jobs=5_000 if args.quick else 20_000,
    )
    started = time.monotonic()
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": _git_commit(),
        "python": sys.version.split()[0],
        "machine": _machine(),
        "versions": _versions(),
        "plan": plan.__dict__,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    progress(f"plan: {plan}")
    parts = run_all(plan)
    rows = summary(parts, plan)
    meta["wall_s"] = round(time.monotonic() - started, 1)
    report = {"meta": meta, "table": rows, "targets": targets(parts), "parts": parts}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2, sort_keys=False)
        f.write("\n")
    print_table(rows, parts)
    print(f"\nraw numbers: {args.out}  (total {meta['wall_s']:.0f} s)")
    failed = any("error" in r for runs in parts.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
