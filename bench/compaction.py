"""What a Raft log compaction costs as the state grows: the snapshot copy time per node.

A fresh 3-node cluster whose nodes compact after 20 entries or 5 s (``compaction_node``:
schedd's policy with smaller thresholds, so that compactions happen while jobs are created).
Creates ``--jobs`` jobs in bulk (1,000 per call), waits ``--settle`` seconds, then reads every
node's ``event=log_compacted`` lines (the copy's milliseconds and the journal entries it
covered), the leader changes it saw (terms in its ``event=leader_changed`` lines, minus the
first) and the LMDB file size. The last compactions copy the whole state. ``call_ms``: the
create calls' latency (a stalled or changing leader shows there). ``--sync-snapshots`` copies
in the Raft thread, as before the background copy: the baseline.

    python bench/compaction.py --jobs 100000
    python bench/compaction.py --jobs 100000 --sync-snapshots
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import progress  # noqa: E402
from compaction_node import CompactionCluster  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--settle", type=float, default=12.0)
    p.add_argument(
        "--sync-snapshots",
        action="store_true",
        help="copy in the Raft thread, as before the background copy (the baseline)",
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
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        t0 = time.monotonic()
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
        # A leader change or a stalled leader shows as a slow call (the client retries).
        calls.sort()
        result["call_ms"] = {
            "p50": round(calls[len(calls) // 2] * 1000, 1),
            "p99": round(calls[min(len(calls) - 1, int(len(calls) * 0.99))] * 1000, 1),
            "max": round(calls[-1] * 1000, 1),
            "over_1s": sum(1 for c in calls if c > 1.0),
        }
        time.sleep(a.settle)  # at least one more compaction per node, of the whole state
        nodes: dict[str, object] = {}
        for spec in cluster.specs:
            with open(spec.log_path) as f:
                text = f.read()
            ms = [int(x) for x in re.findall(r"event=log_compacted ms=(\d+)", text)]
            # a copy in the Raft thread longer than an election timeout cost an election
            terms = set(re.findall(r"event=leader_changed .*?term=(\d+)", text))
            mdb = glob.glob(os.path.join(spec.data_dir, "**", "data.mdb"), recursive=True)
            nodes[spec.node_id] = {
                "compactions": len(ms),
                "last_ms": ms[-3:],
                "max_ms": max(ms, default=0),
                "leader_changes": max(0, len(terms) - 1),
                "lmdb_bytes": sum(os.path.getsize(m) for m in mdb),
            }
        result["nodes"] = nodes
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
