"""A large state, measured: create N jobs, then what it costs to hold, list, explain and restart.

A fresh 3-node cluster (real ``schedd run`` processes, product defaults, durable journal). Then:

* **create**: ``--jobs`` jobs in bulk (``CreateJobs`` of 1,000, 2 calls in flight; cron
  ``0 3 1 1 *``, never due during the run): jobs/s and CPU per job per node;
* **hold**: each node's resident memory (``VmRSS``, its peak ``VmHWM``, and its two parts:
  ``RssAnon``, the process's own memory, and ``RssFile``, LMDB's mapped pages), the size of its
  LMDB file, Raft journal and snapshot, and the log compactions it made (``event=log_compacted``
  lines: how many, how long the last and the longest took) and the leader changes it saw;
* **list**: every job through the SDK (``Client.list_jobs``, 100,000 per call, each in pages
  of 1,000);
* **explain**: ``Client.explain_job`` of 50 jobs spread over the name range, p50/p99;
* **restart**: a follower stopped (SIGTERM) and started: until it answers ``GetNodeStatus``,
  and until it has applied the leader's commit index; its memory once caught up;
* **retention** (``--retention-wait S``): the leader's first full retention pass over the job
  table (its ``event=retention_pass jobs=… s=…`` line), waited for at most S seconds after
  the jobs are created.

    python bench/scale.py --jobs 1000000 --json scale-1m.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    latency_summary_ms,
    load_average,
    node_log_events,
    progress,
    save_json,
)
from populate import create_jobs  # noqa: E402
from restart import start_and_catch_up  # noqa: E402

from schedd.testing import LocalCluster  # noqa: E402


def _memory_mib(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            # RssFile: LMDB's mapped pages (page cache the kernel can reclaim); RssAnon: the heap
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _size_mib(pattern: str) -> float:
    return round(sum(os.path.getsize(p) for p in glob.glob(pattern)) / 2**20, 1)


def _compactions(log_path: str) -> dict[str, Any]:
    """The node's log compactions (how many, how long the last and the longest took) and the
    leader changes it saw."""
    took, leader_changes = node_log_events(log_path)
    return {
        "count": len(took),
        "last_ms": took[-1] if took else None,
        "max_ms": max(took, default=None),
        "leader_changes": leader_changes,
    }


def _list_all(client: Any, expected: int, chunk: int = 100_000) -> tuple[int, list[str]]:
    """List every job through the SDK, ``chunk`` at a time (each chunk is pages of 1,000), so
    the client never holds more than one chunk: 10 M job objects would not fit beside the
    nodes. Returns how many were listed and 50 names spread over the table."""
    listed, after, names = 0, "", []
    step = max(1, expected // 50)
    while True:
        got = client.list_jobs(limit=chunk, after=after)
        names += [j.name for i, j in enumerate(got) if (listed + i) % step == 0]
        listed += len(got)
        if len(got) < chunk:
            return listed, names[:50]
        after = got[-1].name


def _holding(cluster: LocalCluster) -> dict[str, Any]:
    out = {}
    for spec in cluster.specs:
        node = spec.node_id
        d = os.path.join(cluster.root, node)
        out[node] = {
            **_memory_mib(cluster.procs[node].pid),
            "lmdb_mib": _size_mib(os.path.join(d, "state", "*.mdb")),
            "journal_mib": _size_mib(os.path.join(d, "raft.journal")),
            "snapshot_mib": _size_mib(os.path.join(d, "raft.snapshot")),
            "compactions": _compactions(os.path.join(d, "node.log")),
        }
    return out


def _retention_pass(cluster: LocalCluster, leader: str, wait_s: float) -> dict[str, Any]:
    """The leader's first ``event=retention_pass`` line within ``wait_s`` seconds."""
    path = os.path.join(cluster.root, leader, "node.log")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.search(
                    r"event=retention_pass jobs=(\d+) housekeeping_passes=(\d+) s=([\d.]+)", line
                )
                if m:
                    return {"jobs": int(m[1]), "housekeeping_passes": int(m[2]), "s": float(m[3])}
        # polled: the line comes once per full pass (minutes at a million jobs)
        time.sleep(1.0)
    return {"seen": False, "waited_s": wait_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    p.add_argument(
        "--retention-wait",
        type=float,
        default=0.0,
        help="wait this long for the leader's first full retention pass (0: do not wait)",
    )
    p.add_argument("--json", dest="out", help="write every figure to this file")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="schedd-bench-scale-")
    cluster = LocalCluster(root, nodes=3)
    result: dict[str, Any] = {"jobs": a.jobs, "load_at_start": load_average()}
    ok = False
    try:
        progress(f"scale: 3 nodes in {root}, {a.jobs} jobs")
        cluster.start()
        leader = cluster.wait_for_leader(timeout=30)
        pids = {n: proc.pid for n, proc in cluster.procs.items()}
        with cluster.client(timeout=120.0, retry_for=300.0) as client:
            created = create_jobs(client, a.jobs, bulk=True, in_flight=2, chunk=20_000, pids=pids)
            result["create"] = created
            result["leader"] = leader
            time.sleep(2.0)  # the followers apply the last entries
            result["hold"] = _holding(cluster)
            progress(f"scale: holding {json.dumps(result['hold'])}")

            t0 = time.monotonic()
            result["listed"], names = _list_all(client, a.jobs)
            result["list_all_s"] = round(time.monotonic() - t0, 2)
            progress(f"scale: listed {result['listed']} jobs in {result['list_all_s']} s")

            lat = []
            at_ms = int(time.time() * 1000)
            for name in names:
                t = time.perf_counter()
                client.explain_job(name, at_ms)
                lat.append(time.perf_counter() - t)
            result["explain"] = latency_summary_ms(lat)

            status = {s.node_id: cluster.status(s.node_id) for s in cluster.specs}
            leader = next(n for n, st in status.items() if st is not None and st.role == "leader")
            victim = next(n for n in status if n != leader)
            cluster.stop_node(victim)
            leader_st = cluster.status(leader)
            assert leader_st is not None, "the leader stopped answering"
            target = leader_st.commit_index
            served, caught_up = start_and_catch_up(
                cluster, victim, target, 600.0, poll_s=0.05, status_timeout_s=1.0
            )
            result["restart"] = {
                "node": victim,
                "answering_s": round(served, 2),
                "caught_up_s": round(caught_up, 2),
                "memory_after_mib": _memory_mib(cluster.procs[victim].pid),
            }
            progress(f"scale: restart {result['restart']}")
        if a.retention_wait > 0:
            result["retention_pass"] = _retention_pass(cluster, leader, a.retention_wait)
            progress(f"scale: retention {result['retention_pass']}")
        result["load_at_end"] = load_average()
        ok = True
    finally:
        cluster.stop()
        if ok and not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            progress(f"scale: kept {root}")
    hold = result["hold"]
    print(
        f"{a.jobs} jobs: created at {result['create']['create_per_s']:.0f}/s; RSS per node "
        f"{statistics.median(h['VmRSS'] for h in hold.values()):.0f} MiB (peak "
        f"{max(h['VmHWM'] for h in hold.values()):.0f}); LMDB "
        f"{statistics.median(h['lmdb_mib'] for h in hold.values()):.0f} MiB per node; list all "
        f"{result['list_all_s']} s; explain p50 {result['explain'].get('p50_ms')} ms; restart: "
        f"answering {result['restart']['answering_s']} s, caught up "
        f"{result['restart']['caught_up_s']} s; retention full pass "
        f"{result.get('retention_pass', 'not waited for')}"
    )
    save_json(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
