"""Fill a running cluster with N jobs, for the benchmarks that need a large state (join.py,
backup.py); run on its own, it compares the two ways of creating jobs.

Bulk (the default): ``Client.create_jobs``, 1,000 jobs per ``CreateJobs`` call and per Raft
entry, ``in_flight`` calls at a time. One by one: one ``CreateJob`` call and one Raft entry per
job, many calls in flight, as :func:`schedd_bench._create_jobs` does (32 threads on one
``Client``). On the shared 2-core box 16, 32 and 64 threads and an ``AsyncClient`` with 64 or 256
calls in flight all gave 230-340 creates/s one by one: the cluster (one entry per job, applied
on 3 nodes sharing 2 cores) is the limit, not the client. Figures: bench/README.md, "Bulk job
creation".

    python bench/populate.py --jobs 20000 --mode both   # a fresh 3-node cluster per mode
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import CpuMeter, load_average, progress
from schedd_bench import _create_jobs

from schedd.client import Client
from schedd.rules import MAX_CREATE_JOBS
from schedd.testing import FAST_ARGS, LocalCluster

#: a recurring job that is never due while a benchmark runs: 03:00 UTC on 1 January
QUIET_CRON = "0 3 1 1 *"


def create_jobs(
    client: Client,
    count: int,
    *,
    prefix: str = "job-",
    bulk: bool = True,
    in_flight: int = 2,
    threads: int = 32,
    chunk: int = 5000,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Create ``count`` jobs named ``{prefix}{i:06d}`` (cron :data:`QUIET_CRON`), ``chunk`` jobs
    at a time (one progress line per chunk): in bulk, ``CreateJobs`` calls of 1,000 with
    ``in_flight`` of them at a time, or (``bulk=False``) one ``CreateJob`` per job with
    ``threads`` calls in flight.

    Returns ``jobs``, ``mode``, ``create_s`` (wall seconds), ``create_per_s`` and, when ``pids``
    (name -> process id) is given, ``cpu_s``: the CPU seconds (user + system, /proc) each of
    those processes used during the creation, and ``cpu_us_per_job`` of each."""
    meter = CpuMeter(pids or {})
    meter.start()
    t0 = time.monotonic()
    for start in range(0, count, chunk):
        names = [f"{prefix}{i:06d}" for i in range(start, min(count, start + chunk))]
        if bulk:
            _create_in_bulk(client, names, in_flight)
        else:
            _create_jobs(client, [(name, {"cron": QUIET_CRON}) for name in names], threads)
        done = start + len(names)
        took = time.monotonic() - t0
        progress(f"created {done}/{count} jobs in {took:.0f} s ({done / took:.0f}/s)")
    create_s = time.monotonic() - t0
    meter.stop()
    out: dict[str, Any] = {
        "jobs": count,
        "mode": "bulk" if bulk else "one_by_one",
        **({"in_flight": in_flight} if bulk else {"threads": threads}),
        "create_s": round(create_s, 1),
        "create_per_s": round(count / create_s, 1),
    }
    if pids:
        out["cpu_s"] = meter.cpu_s
        out["cpu_us_per_job"] = {
            name: None if s is None else round(s * 1e6 / count) for name, s in meter.cpu_s.items()
        }
    return out


def _create_in_bulk(client: Client, names: list[str], in_flight: int) -> None:
    """``names`` in CreateJobs calls of at most 1,000, ``in_flight`` at a time; every job must be
    created (request ids ``bench-<name>``: a retried call creates nothing twice)."""
    calls = [names[i : i + MAX_CREATE_JOBS] for i in range(0, len(names), MAX_CREATE_JOBS)]

    def one(call: list[str]) -> None:
        specs = [{"name": n, "cron": QUIET_CRON, "request_id": f"bench-{n}"} for n in call]
        failed = [r for r in client.create_jobs(specs) if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs not created, e.g. {failed[0]}")

    with ThreadPoolExecutor(max(1, in_flight), thread_name_prefix="bench-bulk") as pool:
        for f in [pool.submit(one, call) for call in calls]:
            f.result()


def measure(mode: str, jobs: int, root: str, in_flight: int, threads: int) -> dict[str, Any]:
    """A fresh 3-node cluster, ``jobs`` jobs created in ``mode``; CPU of the leader and of all
    nodes (/proc), and a check that the leader lists every job."""
    cluster = LocalCluster(os.path.join(root, mode), nodes=3, extra_args=FAST_ARGS)
    try:
        cluster.start()
        leader = cluster.wait_for_leader(timeout=60)
        pids = {"leader": cluster.procs[leader].pid}
        pids.update({f"node_{n}": p.pid for n, p in cluster.procs.items() if n != leader})
        term = _term(cluster, leader)
        progress(f"{mode}: {jobs} jobs, leader {leader}, load {load_average()}")
        with cluster.client(timeout=60.0, retry_for=120.0) as client:
            out = create_jobs(
                client,
                jobs,
                bulk=mode == "bulk",
                in_flight=in_flight,
                threads=threads,
                pids=pids,
            )
            listed = len(client.list_jobs(limit=None))
        cpu = out["cpu_s"]
        nodes = sum(v for v in cpu.values() if v is not None)
        out["nodes_cpu_us_per_job"] = round(nodes * 1e6 / jobs)
        out["leader_cpu_us_per_job"] = out["cpu_us_per_job"]["leader"]
        out["listed"] = listed
        out["load_after"] = load_average()
        # an election during the run moves the leader's work to another process: the per-node
        # figures then mix roles (nodes_cpu_us_per_job stays right)
        out["elections"] = _term(cluster, cluster.wait_for_leader(timeout=30)) - term
        return out
    finally:
        cluster.stop()


def _term(cluster: LocalCluster, node: str) -> int:
    st = cluster.status(node)
    return st.term if st is not None else -1


def main() -> int:
    ap = argparse.ArgumentParser(description="bulk vs one-by-one job creation on 3 nodes")
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--mode", choices=("bulk", "one_by_one", "both"), default="both")
    ap.add_argument("--in-flight", type=int, default=2, help="bulk: CreateJobs calls at a time")
    ap.add_argument("--threads", type=int, default=32, help="one by one: calls in flight")
    ap.add_argument("--keep", action="store_true", help="keep the clusters' directories")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="schedd-populate-bench-")
    modes = ["bulk", "one_by_one"] if args.mode == "both" else [args.mode]
    results = {}
    ok = False
    try:
        for mode in modes:
            results[mode] = measure(mode, args.jobs, root, args.in_flight, args.threads)
        if len(results) == 2:
            b, o = results["bulk"], results["one_by_one"]
            results["bulk_vs_one_by_one"] = {
                "jobs_per_s": round(b["create_per_s"] / o["create_per_s"], 1),
                "leader_cpu_per_job": round(
                    b["leader_cpu_us_per_job"] / o["leader_cpu_us_per_job"], 3
                ),
            }
        print(json.dumps(results, indent=1))
        ok = all(r["listed"] == args.jobs for m, r in results.items() if m in modes)
        return 0 if ok else 1
    finally:
        if args.keep or not ok:
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
