"""Sustained load: ``--jobs`` cron jobs ``* * * * * *`` (that many firings due at every
whole second; ``--spread``: interval jobs of 1 s spread evenly over the second) for
``--seconds``, on a fresh 3-node cluster with one in-process worker.

Reports, for the firings scheduled inside the window: delivered / expected (a handler started
by the end of the window plus ``--drain`` seconds), the start lag of the delivered ones
(p50/p99/max: handler start minus scheduled time), whether the oldest went first (the
scheduled time of the oldest undelivered firing at the end of the window, and the lag of the
last firings delivered), the CPU per delivered firing of each process, and the **leader
changes** during the run (term changes in the nodes' logs): above capacity, a node that is
late with its heartbeats must not cost an election (pysyncobj has no pre-vote).

    python bench/sustained.py --jobs 2000 --seconds 60
    python bench/sustained.py --jobs 1000 --seconds 20 --spread
    python bench/sustained.py --jobs 2000 --seconds 60 --node-arg=--election-timeout=400ms-1s
    python bench/sustained.py --jobs 5000 --seconds 20 --server-path <tree>   # another server
    python bench/sustained.py --jobs 3000 --seconds 20 --concurrency 5000 \
        --node-arg=--fire-ahead=1s             # a second's firings committed ahead
    python bench/sustained.py --jobs 5000 --seconds 20 --concurrency 5000 --async-handler

``--concurrency`` is the bench worker's (512 by default): with fire-ahead, a worker only gets
as many firings ahead as it has free slots. ``--async-handler``: its handler is an ``async def``
(a task on the agent's event loop, no thread per firing).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import CpuMeter, latency_summary_ms, progress  # noqa: E402

from schedd.agent import Context, Worker  # noqa: E402
from schedd.testing import LocalCluster  # noqa: E402


def run(
    jobs: int,
    seconds: float,
    drain: float,
    node_args: list[str],
    keep: bool,
    spread: bool = False,
    server_path: str | None = None,
    concurrency: int = 512,
    async_handler: bool = False,
) -> dict:
    """One sustained run (see the module docstring). ``spread``: interval jobs of 1 s whose
    slots are spread evenly over the second (job i at i x 1000/jobs ms past it) instead of cron
    jobs all due on the whole second. ``server_path`` goes first on the nodes' PYTHONPATH."""
    root = tempfile.mkdtemp(prefix="schedd-bench-sustained-")
    env = dict(os.environ)
    if server_path:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.path.abspath(server_path), env.get("PYTHONPATH")) if p
        )
        env["PYTHONSAFEPATH"] = "1"
    cluster = LocalCluster(root, nodes=3, extra_args=node_args, env=env)
    starts: list[tuple[float, int]] = []
    lock = threading.Lock()
    worker: Worker | None = None
    result: dict[str, Any] = {
        "jobs": jobs,
        "seconds": seconds,
        "node_args": node_args,
        "workload": "spread" if spread else "aligned",
        "concurrency": concurrency,
        "handler": "async" if async_handler else "sync",
    }
    ok = False
    try:
        progress(f"sustained: starting 3 nodes in {root}")
        cluster.start()
        leader = cluster.wait_for_leader(timeout=30)
        with cluster.client(timeout=30, retry_for=60) as client:
            specs: list[dict[str, Any]] = [
                {"name": f"s-{i:06d}", "queue": "sustained"}
                | (
                    {"every_ms": 1000, "anchor_ms": i * 1000 // jobs}
                    if spread
                    else {"cron": "* * * * * *"}
                )
                for i in range(jobs)
            ]
            for at in range(0, jobs, 1000):
                for r in client.create_jobs(specs[at : at + 1000]):
                    if not r.ok:
                        raise RuntimeError(f"create {r.name}: {r.message}")
        worker = Worker(
            cluster.endpoints,
            queues=["sustained"],
            credentials=cluster.worker_credentials,
            concurrency=concurrency,
            worker_id="bench-sustained",
        )

        def record(ctx: Context) -> None:
            with lock:
                starts.append((time.time(), ctx.scheduled_ms))

        if async_handler:

            @worker.handler("*")
            async def _run_async(ctx: Context) -> None:
                record(ctx)

        else:
            worker.handler("*")(record)

        pids = {f"{n}{' (leader)' if n == leader else ''}": p.pid for n, p in cluster.procs.items()}
        pids["bench_process"] = os.getpid()
        meter = CpuMeter(pids)
        worker.start()
        time.sleep(3.0)  # warm-up: the worker connects, the first seconds fire
        t0 = int(time.time()) + 1
        time.sleep(max(0.0, t0 - time.time()))
        meter.start()
        progress(f"sustained: measuring {seconds:g} s of {jobs} firings/s")
        time.sleep(seconds)
        t1 = t0 + int(seconds)
        time.sleep(drain)
        result["cpu_cores"] = meter.stop()
        with lock:
            window = [(s, ms) for s, ms in starts if t0 * 1000 <= ms < t1 * 1000]
        expected = jobs * int(seconds)
        result["expected"] = expected
        result["delivered"] = len(window)
        result["delivered_fraction"] = round(len(window) / expected, 3)
        lags = [s - ms / 1000.0 for s, ms in window]
        result["lag"] = latency_summary_ms(lags)
        by_second: dict[int, int] = {}
        for _, ms in window:
            by_second[ms // 1000] = by_second.get(ms // 1000, 0) + 1
        incomplete = sorted(sec for sec in range(t0, t1) if by_second.get(sec, 0) < jobs)
        result["oldest_incomplete_second"] = (incomplete[0] - t0) if incomplete else None
        result["complete_seconds"] = len(range(t0, t1)) - len(incomplete)
        cpu = meter.cpu_s
        result["cpu_us_per_delivered"] = {
            k: round(v / max(1, len(window)) * 1e6, 1) for k, v in cpu.items() if v is not None
        }
        terms: set[int] = set()
        for log in glob.glob(os.path.join(root, "n*", "node.log")):
            with open(log) as f:
                for line in f:
                    if "event=leader_changed" in line and "term=" in line:
                        terms.add(int(line.split("term=")[1].split()[0]))
        result["terms"] = sorted(terms)
        result["leader_changes"] = max(0, len(terms) - 1)
        # delivering less than expected is the figure, not a failed run
        result["valid"] = ok = True
    finally:
        if worker is not None:
            worker.stop(drain_timeout=1.0)
        cluster.stop()
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            progress(f"sustained: logs kept in {root}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000, help="firings due at every whole second")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--drain", type=float, default=2.0, help="seconds after the window")
    p.add_argument("--node-arg", action="append", default=[])
    p.add_argument("--spread", action="store_true", help="slots spread over each second")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument(
        "--concurrency", type=int, default=512, help="the bench worker's concurrency [512]"
    )
    p.add_argument(
        "--async-handler",
        action="store_true",
        help="the bench worker's handler is an async def (a task on the agent's loop)",
    )
    p.add_argument(
        "--server-path",
        default=None,
        help="directory put first on the nodes' PYTHONPATH (another tree's server)",
    )
    a = p.parse_args()
    r = run(
        a.jobs,
        a.seconds,
        a.drain,
        a.node_arg,
        a.keep,
        spread=a.spread,
        server_path=a.server_path,
        concurrency=a.concurrency,
        async_handler=a.async_handler,
    )
    lag = r["lag"]
    print(
        f"{a.jobs}/s {r['workload']} for {a.seconds:g} s {a.node_arg or ''}"
        f"{' (async handler)' if a.async_handler else ''}: delivered {r['delivered']}/"
        f"{r['expected']} ({r['delivered_fraction']:.0%}); lag p50 {lag.get('p50_ms')} ms, "
        f"p99 {lag.get('p99_ms')} ms, max {lag.get('max_ms')} ms; seconds fully delivered "
        f"{r['complete_seconds']}, oldest incomplete second +{r['oldest_incomplete_second']}; "
        f"leader changes {r['leader_changes']}; CPU us per firing {r['cpu_us_per_delivered']}"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
