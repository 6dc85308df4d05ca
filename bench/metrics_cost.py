#!/usr/bin/env python3
"""Cost of Prometheus metrics on burst firings/s: the burst part of ``run.py`` (schedd_bench
``throughput``: N one-shot jobs due at one instant, a fresh 3-node cluster, one in-process
worker) with and without ``--metrics`` on every node, in interleaved pairs.

    python bench/metrics_cost.py [--pairs 4] [--jobs 5000] [--out FILE.json]

Pairs run back to back in ABBA order (off, on | on, off | off, on ...), so a drift of the
machine's speed during the run weighs on both modes alike. Nobody scrapes during the burst:
this is the cost of recording. Per pair: firings/s of each mode and on/off; over all pairs the
median [min–max] of the per-pair ratio against the target (on/off >= 0.95), and the geometric
mean of the ratios with a 95 % confidence interval (t over the log ratios): whether the run can
tell a 5 % cost from noise at all. CPU per firing
(user + system from /proc/PID/stat over the burst window, divided by the firings) per process:
the leader, the two followers (mean) and the benchmark process (worker and client). The table
goes to stdout, every raw number to the JSON file, progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from typing import Any

import schedd_bench
from common import load_average, progress
from run import METRICS_TARGET, Stat, _git_commit, _machine, _paired, _values, _versions
from schedd_bench import BENCH_PROCESS

import schedd

HERE = os.path.dirname(os.path.abspath(__file__))


def per_process_us(result: dict[str, Any]) -> dict[str, float | None]:
    """CPU µs per firing of the leader, the followers (mean of the two), all 3 nodes and the
    benchmark process, over the burst window of one ``throughput`` result."""
    cpu: dict[str, float | None] = result.get("cpu_s") or {}
    n = min(result.get("jobs", 0), result.get("completed", 0))

    def us(v: float | None) -> float | None:
        return None if v is None or n <= 0 else round(v / n * 1e6, 1)

    nodes = {k: v for k, v in cpu.items() if k != BENCH_PROCESS}
    leader = [v for k, v in nodes.items() if k.endswith("(leader)")]
    followers = [v for k, v in nodes.items() if not k.endswith("(leader)") and v is not None]
    return {
        "leader": us(leader[0]) if leader else None,
        "follower_mean": us(statistics.mean(followers)) if followers else None,
        "nodes": us(sum(v for v in nodes.values() if v is not None)) if nodes else None,
        "bench_process": us(cpu.get(BENCH_PROCESS)),
    }


def run_pairs(
    pairs: int, jobs: int, concurrency: int, keep: bool
) -> dict[str, list[dict[str, Any]]]:
    """``pairs`` pairs of bursts, ABBA order; results by mode (index i of each is pair i)."""
    out: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for i in range(pairs):
        order = ["off", "on"] if i % 2 == 0 else ["on", "off"]
        progress(f"=== pair {i + 1}/{pairs}: {' then '.join(order)} ===")
        for mode in order:
            t0 = time.monotonic()
            try:
                res = schedd_bench.throughput(
                    jobs, concurrency=concurrency, keep=keep, metrics=mode == "on"
                )
            except Exception as e:  # keep the pairing: a failed burst is an invalid entry
                progress(f"metrics {mode}: FAILED: {e!r}")
                res = {"error": repr(e), "valid": False}
            res["wall_s"] = round(time.monotonic() - t0, 1)
            res["order_in_pair"] = order.index(mode)
            res["cpu_us_per_firing_by_process"] = per_process_us(res)
            out[mode].append(res)
            progress(
                f"metrics {mode}: {res.get('firings_per_s')} firings/s, "
                f"CPU µs/firing {res['cpu_us_per_firing_by_process']}"
            )
    return out


ROWS: list[tuple[str, tuple[str, ...], int, bool]] = [
    # (figure, path in a result, digits, higher is better)
    ("burst firings/s", ("firings_per_s",), 0, True),
    ("leader CPU µs per firing", ("cpu_us_per_firing_by_process", "leader"), 0, False),
    (
        "follower CPU µs per firing (mean)",
        ("cpu_us_per_firing_by_process", "follower_mean"),
        0,
        False,
    ),
    ("3 nodes CPU µs per firing", ("cpu_us_per_firing_by_process", "nodes"), 0, False),
    (
        "bench process CPU µs per firing",
        ("cpu_us_per_firing_by_process", "bench_process"),
        0,
        False,
    ),
    ("create_job calls/s (32 threads)", ("create_per_s",), 0, True),
]


# two-sided 95 % quantiles of Student's t, by degrees of freedom (1.96 beyond the table)
_T975 = [12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086]  # fmt: skip


def ratio_ci(ratios: list[float]) -> tuple[float, float, float] | None:
    """Geometric mean of per-pair ratios and its 95 % confidence interval (t over the log
    ratios); None with fewer than 2 ratios."""
    logs = [math.log(r) for r in ratios if r > 0]
    if len(logs) < 2:
        return None
    mean, half = statistics.mean(logs), statistics.stdev(logs) / math.sqrt(len(logs))
    t = _T975[len(logs) - 2] if len(logs) - 2 < len(_T975) else 1.96
    return math.exp(mean), math.exp(mean - t * half), math.exp(mean + t * half)


def pair_ratios(results: dict[str, list[dict[str, Any]]], *path: str) -> list[float]:
    """metrics on ÷ off of ``path`` for each pair where both runs have the figure."""
    out = []
    for off, on in zip(results["off"], results["on"], strict=False):
        a, b = _values([on], *path), _values([off], *path)
        if a and b and b[0]:
            out.append(a[0] / b[0])
    return out


def summarize(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    on, off = results["on"], results["off"]
    rows = []
    for figure, path, digits, higher in ROWS:
        a, b = Stat.of(on, *path), Stat.of(off, *path)
        per = _paired(on, off, path)
        row = {
            "figure": figure,
            "metrics on": a.fmt(digits),
            "metrics off": b.fmt(digits),
            "on/off per pair": per.fmt(3) if per.n else "n/a",
            "better": "higher" if higher else "lower",
        }
        ci = ratio_ci(pair_ratios(results, *path))
        if ci is not None:
            row["geo mean [95% CI]"] = f"{ci[0]:.3f} [{ci[1]:.3f}–{ci[2]:.3f}]"
        if path == ("firings_per_s",):
            ok = per.median is not None and per.median >= METRICS_TARGET
            row["target"] = f">= {METRICS_TARGET} {'met' if ok else 'NOT met'} (median)"
        rows.append(row)
    return rows


def print_report(results: dict[str, list[dict[str, Any]]], rows: list[dict[str, str]]) -> None:
    print("pair  order    off firings/s  on firings/s  on/off  leader µs/firing off→on")
    for i, (off, on) in enumerate(zip(results["off"], results["on"], strict=False)):
        f_off, f_on = off.get("firings_per_s"), on.get("firings_per_s")
        ratio = f"{f_on / f_off:.3f}" if f_on and f_off else "n/a"
        order = "off,on" if off.get("order_in_pair") == 0 else "on,off"
        lo = off["cpu_us_per_firing_by_process"]["leader"]
        lon = on["cpu_us_per_firing_by_process"]["leader"]
        print(f"{i + 1:<5} {order:<8} {f_off!s:<14} {f_on!s:<13} {ratio:<7} {lo} → {lon}")
    print()
    headers = [
        "figure",
        "metrics on",
        "metrics off",
        "on/off per pair",
        "geo mean [95% CI]",
        "better",
        "target",
    ]
    widths = [max(len(h), *(len(r.get(h, "")) for r in rows)) for h in headers]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(
            "  ".join(r.get(h, "").ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
        )
    print(
        "\nmedian [min–max] over the pairs; 'on/off per pair' is metrics on ÷ off of each pair "
        "(back to back, ABBA order);\n'geo mean [95% CI]': the geometric mean of those ratios "
        "and its 95 % confidence interval (Student's t over the log ratios)."
    )
    bad = [
        f"{mode} pair {i + 1}: {r.get('error') or 'invalid (see JSON)'}"
        for mode, runs in results.items()
        for i, r in enumerate(runs)
        if not r.get("valid", False)
    ]
    for b in bad:
        print(f"* {b}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="burst firings/s with and without --metrics")
    ap.add_argument("--pairs", type=int, default=4, help="interleaved off/on pairs")
    ap.add_argument("--jobs", type=int, default=5000, help="jobs due at once per burst")
    ap.add_argument("--concurrency", type=int, default=512, help="worker concurrency")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "metrics_cost.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (node logs)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": _git_commit(),
        "machine": _machine(),
        "versions": _versions(),
        "schedd_imported_from": os.path.dirname(schedd.__file__),
        "argv": sys.argv[1:] if argv is None else argv,
    }
    results = run_pairs(max(1, args.pairs), args.jobs, args.concurrency, args.keep)
    rows = summarize(results)
    meta["wall_s"] = round(time.monotonic() - started, 1)
    meta["load_average_at_end"] = load_average()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "table": rows, "results": results}, f, indent=2)
        f.write("\n")
    print_report(results, rows)
    print(f"\nraw numbers: {args.out}  (total {meta['wall_s']:.0f} s)")
    return 1 if any("error" in r for runs in results.values() for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
