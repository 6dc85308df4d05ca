"""A follower restart, end to end: how long until a restarted node serves and has caught up.

A fresh 3-node cluster (real ``schedd run`` processes, product defaults). Then, ``--restarts``
times: stop a follower (SIGTERM), create ``--jobs`` jobs in bulk while it is down, start it
again, and measure from the start command

* **answering**: until the node answers ``GetNodeStatus`` (process start, state open, Raft up);
* **caught up**: until its applied index reaches the leader's commit index taken before the
  start (it was sent what it missed: the leader redials a restarted peer within
  ``connectionRetryTime``, 1 s).

    python bench/restart.py                       # 6 restarts, 200 jobs missed each time
    python bench/restart.py --restarts 10 --jobs 2000 --json out.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import latency_summary_ms, progress, save_json  # noqa: E402

from schedd.testing import LocalCluster  # noqa: E402


def start_and_catch_up(
    cluster: LocalCluster,
    node: str,
    target: int,
    timeout_s: float,
    poll_s: float = 0.02,
    status_timeout_s: float = 0.5,
) -> tuple[float, float]:
    """Start the stopped ``node``; seconds from the start command until it answers
    ``GetNodeStatus``, and until its applied index reaches ``target`` (the leader's commit
    index before the start), to within ``poll_s``."""
    t0 = time.monotonic()
    cluster.start_node(node)
    served: float | None = None
    while True:
        st = cluster.status(node, timeout=status_timeout_s)
        now = time.monotonic() - t0
        if st is not None and served is None:
            served = now
        if st is not None and st.applied_index >= target:
            return (now if served is None else served), now
        if now > timeout_s:
            raise TimeoutError(f"{node} did not catch up within {timeout_s:g} s")
        time.sleep(poll_s)  # polled: the figures are to within poll_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--restarts", type=int, default=6)
    p.add_argument("--jobs", type=int, default=200, help="jobs created while the node is down")
    p.add_argument("--json", dest="out", help="write every figure to this file")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="schedd-bench-restart-")
    cluster = LocalCluster(root, nodes=3)
    answering: list[float] = []
    caught_up: list[float] = []
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        with cluster.client(retry_for=30) as client:
            for r in range(a.restarts):
                roles = {s.node_id: cluster.status(s.node_id) for s in cluster.specs}
                leader = next(
                    n for n, st in roles.items() if st is not None and st.role == "leader"
                )
                victim = next(n for n in roles if n != leader)
                cluster.stop_node(victim)
                for first in range(0, a.jobs, 1000):
                    client.create_jobs(
                        [
                            {"name": f"r{r}-{i:06d}", "cron": "0 3 1 1 *"}
                            for i in range(first, min(a.jobs, first + 1000))
                        ]
                    )
                leader_st = cluster.status(leader)
                assert leader_st is not None, "the leader stopped answering"
                target = leader_st.commit_index
                served, now = start_and_catch_up(cluster, victim, target, 120.0)
                answering.append(served)
                caught_up.append(now)
                progress(
                    f"restart {r + 1}/{a.restarts}: {victim} answering after {served:.2f} s, caught up after {now:.2f} s"
                )
                cluster.wait_converged(timeout=60)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "restarts": a.restarts,
        "jobs_missed_per_restart": a.jobs,
        "answering": latency_summary_ms(answering),
        "caught_up": latency_summary_ms(caught_up),
        "catch_up_after_answering": latency_summary_ms(
            [c - s for s, c in zip(answering, caught_up, strict=True)]
        ),
    }
    print(
        f"restart -> answering p50 {statistics.median(answering):.2f} s, "
        f"caught up p50 {statistics.median(caught_up):.2f} s, max {max(caught_up):.2f} s "
        f"({a.restarts} restarts, {a.jobs} jobs missed each)"
    )
    save_json(a.out, result)


if __name__ == "__main__":
    main()
