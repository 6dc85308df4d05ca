"""What a Raft log compaction costs as the state grows: the snapshot copy time per node.

A fresh 3-node cluster whose nodes compact after 20 entries or 5 s (``compaction_node``:
schedd's policy with smaller thresholds, so that compactions happen while jobs are created).
Creates ``--jobs`` jobs in bulk (1,000 per call), waits ``--settle`` seconds, then reads every
node's ``event=log_compacted`` lines (the copy's milliseconds and the journal entries it
covered), the leader changes it saw (terms in its ``event=leader_changed`` lines, minus the
first) and the LMDB file size. The last compactions copy the whole state. ``call_ms``: the
create calls' latency (a stalled or changing leader shows there). ``probe``: the lag of
``--probe-jobs`` jobs firing every second meanwhile, on a worker in this process (the effect
of the compactions, and of the create load itself, on firing). ``--sync-snapshots`` copies
in the Raft thread, as before the background copy: the baseline.

    python bench/compaction.py --jobs 100000
    python bench/compaction.py --jobs 100000 --sync-snapshots
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import latency_summary_ms, node_log_events, progress, save_json  # noqa: E402
from compaction_node import CompactionCluster  # noqa: E402

from schedd.agent import Context, Worker  # noqa: E402
from schedd.client import Client  # noqa: E402


class LagProbe:
    """Jobs firing every second (``* * * * * *``) on a worker in this process while the jobs
    are created: how late each firing's handler starts (``time.time()`` at start minus its
    scheduled time), and how many slots of the window never started."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.scheduled: dict[str, float] = {}
        self.window_start = 0.0
        self.window_end = 0.0

    def start(self, cluster: CompactionCluster, client: Client, jobs: int) -> Worker:
        worker = Worker(
            cluster.endpoints,
            credentials=cluster.worker_credentials,
            concurrency=64,
            worker_id="compaction-probe",
        )

        @worker.handler("*")
        def _probe(ctx: Context) -> None:
            t = time.time()
            self.started.setdefault(ctx.run_id, t)
            self.scheduled[ctx.run_id] = ctx.scheduled_ms / 1000.0

        worker.start()
        client.create_jobs([{"name": f"probe-{i:02d}", "cron": "* * * * * *"} for i in range(jobs)])
        return worker

    def summary(self, jobs: int) -> dict[str, object]:
        lags = [
            self.started[r] - at
            for r, at in self.scheduled.items()
            if self.window_start <= at < self.window_end
        ]
        expected = int(self.window_end - self.window_start) * jobs
        return {
            "jobs": jobs,
            "window_s": round(self.window_end - self.window_start, 1),
            "lag": latency_summary_ms(lags),
            "late_over_1s": sum(1 for x in lags if x > 1.0),
            "started": len(lags),
            "expected_about": expected,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--settle", type=float, default=12.0)
    p.add_argument(
        "--sync-snapshots",
        action="store_true",
        help="copy in the Raft thread, as before the background copy (the baseline)",
    )
    p.add_argument(
        "--probe-jobs",
        type=int,
        default=10,
        help="jobs firing every second during the create, whose lag is measured (0: none)",
    )
    p.add_argument("--json", dest="out")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="schedd-bench-compaction-")
    cluster = CompactionCluster(
        root, entries=20, seconds=5, nodes=3, sync_snapshots=a.sync_snapshots
    )
    result: dict[str, object] = {
        "jobs": a.jobs,
        "copy": "raft thread" if a.sync_snapshots else "background",
    }
    calls: list[float] = []
    probe = LagProbe()
    worker: Worker | None = None
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        with cluster.client(retry_for=60) as client:
            if a.probe_jobs:
                worker = probe.start(cluster, client, a.probe_jobs)
        t0 = time.monotonic()
        probe.window_start = time.time() + 2.0  # the probe jobs' first slots are warm-up
        with cluster.client(retry_for=60) as client:
            for first in range(0, a.jobs, 1000):
                c0 = time.monotonic()
                client.create_jobs(
                    [
                        {"name": f"job-{i:07d}", "cron": "0 3 1 1 *"}
                        for i in range(first, min(a.jobs, first + 1000))
                    ]
                )
                calls.append(time.monotonic() - c0)
                if first % 20_000 == 0:
                    progress(f"{first + 1000} jobs")
        result["create_s"] = round(time.monotonic() - t0, 1)
        probe.window_end = time.time()
        # A leader change or a stalled leader shows as a slow call (the client retries).
        calls.sort()
        result["call_ms"] = {
            "p50": round(calls[len(calls) // 2] * 1000, 1),
            "p99": round(calls[min(len(calls) - 1, int(len(calls) * 0.99))] * 1000, 1),
            "max": round(calls[-1] * 1000, 1),
            "over_1s": sum(1 for c in calls if c > 1.0),
        }
        time.sleep(a.settle)  # at least one more compaction per node, of the whole state
        if worker is not None:
            result["probe"] = probe.summary(a.probe_jobs)
            worker.stop()
            worker = None
        nodes: dict[str, object] = {}
        for spec in cluster.specs:
            ms, leader_changes = node_log_events(spec.log_path)
            mdb = glob.glob(os.path.join(spec.data_dir, "**", "data.mdb"), recursive=True)
            nodes[spec.node_id] = {
                "compactions": len(ms),
                "last_ms": ms[-3:],
                "max_ms": max(ms, default=0),
                "leader_changes": leader_changes,
                "lmdb_bytes": sum(os.path.getsize(m) for m in mdb),
            }
        result["nodes"] = nodes
    finally:
        if worker is not None:
            worker.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=1))
    save_json(a.out, result)


if __name__ == "__main__":
    main()
