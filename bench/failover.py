"""Leader failover, end to end: how long firings stop when the leader dies.

A fresh 3-node cluster (real ``schedd run`` processes, product defaults), one in-process worker
and ten 1 s interval jobs 100 ms apart (a firing every 100 ms). Then, ``--kills`` times: send the leader ``--signal`` (KILL by
default, or TERM for the planned handover), and measure

* **elected**: from the signal to the first moment a surviving node says it leads (polled
  every 20 ms through ``GetNodeStatus``);
* **first firing**: from the signal to the first handler start under the new leader (a firing
  received after the worker was welcomed by a node other than the old leader).

The old leader is then restarted and the cluster settles (every node applied the leader's
commit index, firings flowing) before the next kill. Prints p50/p99/max of both, and the
needless leader changes (elections between kills) as a check on the election timing.

    python bench/failover.py                      # 10 SIGKILLs
    python bench/failover.py --kills 20 --signal TERM
    python bench/failover.py --json out.json

With 10 kills, p99 is the largest sample.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import percentile, progress  # noqa: E402

from schedd.agent import Context, Worker  # noqa: E402
from schedd.testing import LocalCluster  # noqa: E402


class Connections(logging.Handler):
    """The worker's ``connected`` events: (time, node id)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("event=connected "):
            node = msg.split("node_id=", 1)[1].split(" ", 1)[0]
            self.events.append((time.time(), node))


def _leader_other_than(cluster: LocalCluster, old: str) -> str | None:
    for spec in cluster.specs:
        if spec.node_id == old:
            continue
        st = cluster.status(spec.node_id, timeout=0.5)
        if st is not None and st.role == "leader":
            return spec.node_id
    return None


def _settle(cluster: LocalCluster, starts: list[float], timeout: float = 60.0) -> str:
    """Wait until one leader, every node has applied its commit index, and firings flow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = cluster.leader()
        st = cluster.status(leader) if leader else None
        if st is not None:
            others = [cluster.status(s.node_id) for s in cluster.specs]
            if all(o is not None and o.applied_index >= st.commit_index for o in others):
                if starts and time.time() - starts[-1] < 0.5:
                    return leader  # type: ignore[return-value]
        time.sleep(0.1)
    raise TimeoutError("the cluster did not settle within 60 s; see n*/node.log")


def run(kills: int, sig: int, keep: bool, node_args: list[str] | None = None) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="schedd-bench-failover-")
    cluster = LocalCluster(root, nodes=3, extra_args=node_args or [])
    conns = Connections()
    log = logging.getLogger("bench.failover.agent")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(conns)
    starts: list[float] = []
    lock = threading.Lock()
    worker: Worker | None = None
    samples: list[dict[str, Any]] = []
    ok = False
    try:
        progress(f"failover: starting 3 nodes in {root}")
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        with cluster.client(timeout=10, retry_for=30) as client:
            # ten 1 s interval jobs, anchored 100 ms apart: a firing every 100 ms
            for k in range(10):
                client.create_job(f"tick-{k}", every_ms=1000, anchor_ms=k * 100, queue="failover")
        worker = Worker(
            cluster.endpoints,
            queues=["failover"],
            credentials=cluster.worker_credentials,
            concurrency=16,
            worker_id="bench-failover",
            logger=log,
        )

        @worker.handler("*")
        def _tick(ctx: Context) -> None:
            with lock:
                starts.append(time.time())

        worker.start()
        for i in range(kills):
            old = _settle(cluster, starts)
            terms = {
                s.node_id: getattr(cluster.status(s.node_id), "term", 0) for s in cluster.specs
            }
            t0 = time.time()
            cluster.kill_node(old, sig)
            elected = None
            while time.time() - t0 < 30:
                if _leader_other_than(cluster, old):
                    elected = time.time() - t0
                    break
                time.sleep(0.02)
            first = welcomed_s = None
            while time.time() - t0 < 30:
                welcomed = [t for t, node in conns.events if t > t0 and node != old]
                if welcomed:
                    with lock:
                        after = [s for s in starts if s > max(welcomed[0], t0)]
                    if after:
                        first = after[0] - t0
                        welcomed_s = welcomed[0] - t0
                        break
                time.sleep(0.01)
            sample = {
                "elected_s": elected,
                "welcomed_s": welcomed_s,
                "first_firing_s": first,
                "old_leader": old,
            }
            samples.append(sample)
            progress(
                f"failover: kill {i + 1}/{kills} of {old}: elected "
                f"{elected if elected is None else round(elected, 2)} s, first firing "
                f"{first if first is None else round(first, 2)} s"
            )
            cluster.start_node(old)
            sample["term_before"] = max(terms.values())
        ok = True
    finally:
        if worker is not None:
            worker.stop(drain_timeout=1.0)
        cluster.stop()
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            progress(f"failover: logs kept in {root}")
    elected = sorted(s["elected_s"] for s in samples if s["elected_s"] is not None)
    first = sorted(s["first_firing_s"] for s in samples if s["first_firing_s"] is not None)

    def summary(xs: list[float]) -> dict[str, float | int]:
        if not xs:
            return {"n": 0}
        return {
            "n": len(xs),
            "p50_s": round(statistics.median(xs), 3),
            "p99_s": round(percentile(xs, 99), 3),
            "max_s": round(xs[-1], 3),
        }

    return {
        "signal": signal.Signals(sig).name,
        "node_args": node_args or [],
        "kills": kills,
        "elected": summary(elected),
        "first_firing": summary(first),
        "samples": samples,
        # every kill was followed by a new leader and a firing under it
        "valid": len(first) == len(elected) == kills,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (node logs)")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument(
        "--node-arg", action="append", default=[], help="extra `schedd run` flag (repeatable)"
    )
    args = p.parse_args()
    result = run(args.kills, getattr(signal, f"SIG{args.signal}"), args.keep, args.node_arg)
    e, f = result["elected"], result["first_firing"]
    print(
        f"leader SIG{args.signal} x{args.kills}: elected p50 {e.get('p50_s')} s, p99 "
        f"{e.get('p99_s')} s; first firing under the new leader p50 {f.get('p50_s')} s, "
        f"p99 {f.get('p99_s')} s (max {f.get('max_s')} s)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
