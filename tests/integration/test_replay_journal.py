"""bench/replay_journal.py applies a node's own journal again: it must reach the very state the
node reached (else its CPU figures would be of other work), and count the firings it applied."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from schedd.agent import Context, Worker
from schedd.state.store import Store
from schedd.testing import LocalCluster
from tests._util import wait_for

BENCH = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

pytestmark = pytest.mark.integration


def test_a_replayed_journal_reaches_the_nodes_own_state(tmp_path: Path) -> None:
    sys.path.insert(0, BENCH)
    try:
        import replay_journal
    finally:
        sys.path.remove(BENCH)
    cluster = LocalCluster(str(tmp_path / "c"), nodes=3)
    cluster.start()
    ran: list[str] = []
    try:
        cluster.wait_for_leader(timeout=30)
        at = int(time.time() * 1000) + 1500
        with cluster.client(timeout=30, retry_for=30) as client:
            for r in client.create_jobs(
                [{"name": f"once-{i}", "at_ms": at, "queue": "replay"} for i in range(20)]
            ):
                assert r.ok, r.message
        worker = Worker(
            cluster.endpoints,
            queues=["replay"],
            credentials=cluster.worker_credentials,
            concurrency=8,
            worker_id="replay-w",
        )

        @worker.handler("*")
        def handle(ctx: Context) -> None:
            ran.append(ctx.run_id)

        worker.start()
        try:
            wait_for(lambda: len(ran) == 20, 30, "the 20 firings to run")
            with cluster.client(timeout=30) as client:
                wait_for(
                    lambda: len(client.list_runs(state="succeeded")) == 20,
                    30,
                    "the 20 runs recorded as succeeded",
                )
        finally:
            worker.stop(drain_timeout=5)
        cluster.wait_converged(timeout=30)
    finally:
        cluster.stop()
    node = Store(str(tmp_path / "c" / "n1" / "state"))
    try:
        applied, want = node.applied_index(), node.digest()
    finally:
        node.close()
    entries = [
        e for e in replay_journal.read_entries(str(tmp_path / "c" / "n1")) if e[0] <= applied
    ]
    kinds, batches = replay_journal.census(entries)
    assert kinds["fire_due"] == 20 and kinds["create_job"] == 20
    replica = str(tmp_path / "replica")
    replay_journal.replay(entries, batches, store_root=replica)
    got = Store(replica)
    try:
        assert (got.applied_index(), got.digest()) == (applied, want)
    finally:
        got.close()
