"""Backup and restore on real processes: ``schedctl snapshot save`` from a 3-node cluster under
load, ``schedctl snapshot inspect``, ``schedd restore`` into the three data directories of a
NEW cluster, which then has every job and run of the backup, keeps firing, hands out fences
above every fence of the old cluster, and whose replicas agree."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from schedd.agent import Context, Worker
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for
from tests.integration.conftest import register, schedctl

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def _worker(cluster: LocalCluster, worker_id: str, fences: list[int]) -> Worker:
    worker = Worker(
        cluster.endpoints_env,
        queues=["default"],
        worker_id=worker_id,
        concurrency=4,
        credentials=cluster.worker_credentials,
    )

    @worker.default_handler
    def record(ctx: Context) -> None:
        fences.append(ctx.fence)

    return worker


def _restore(backup: Path, data_dir: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schedd", "restore", str(backup), "--data-dir", data_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_save_under_load_and_restore_into_a_new_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    backup = tmp_path_factory.mktemp("backup") / "cluster.snap"
    a = register(LocalCluster(str(tmp_path_factory.mktemp("old")), nodes=3, extra_args=FAST_ARGS))
    old_fences: list[int] = []
    worker_a = _worker(a, "old-worker", old_fences)
    a.start()
    try:
        a.wait_for_leader(timeout=30)
        worker_a.start()
        with a.client(retry_for=30) as client:
            for i in range(20):
                client.create_job(f"tick-{i}", every_ms=1000)
            wait_for(lambda: len(old_fences) >= 40, 60, "firings on the old cluster")
            stop = threading.Event()

            def load() -> None:  # a little write load while the snapshot is taken
                i = 0
                while not stop.is_set():
                    client.create_job(f"load-{i}", every_ms=HOUR_MS)
                    i += 1

            loader = threading.Thread(target=load)
            loader.start()
            try:
                fences_before = list(old_fences)
                jobs_before = {j.name for j in client.list_jobs(limit=None)}
                runs_before = {r.run_id for r in client.list_runs(limit=100_000)}
                saved = schedctl(a.endpoints_env, "snapshot", "save", str(backup))
            finally:
                stop.set()
                loader.join()
            assert saved.returncode == 0, saved.stderr
            assert "saved" in saved.stdout and not list(backup.parent.glob(".*.tmp"))
        inspected = schedctl(a.endpoints_env, "--json", "snapshot", "inspect", str(backup))
        assert inspected.returncode == 0, inspected.stderr
        header = json.loads(inspected.stdout)
        assert header["checksum"] == "ok" and header["node_ids"] == ["n1", "n2", "n3"]
        assert header["jobs"] >= len(jobs_before) and header["runs"] >= len(runs_before)
    finally:
        worker_a.stop()
        a.stop()
    # every fence handed out before the save is in the snapshot, below its next fence
    assert header["next_fence"] > max(fences_before)

    # the new cluster: its own certificates and ports, the old cluster's tokens (they are state)
    root_b = tmp_path_factory.mktemp("new")
    shutil.copy(a.token_file, root_b / "admin.token")
    os.chmod(root_b / "admin.token", 0o600)
    b = register(LocalCluster(str(root_b), nodes=3, extra_args=FAST_ARGS))
    for spec in b.specs:
        t0 = time.monotonic()
        done = _restore(backup, spec.data_dir)
        assert done.returncode == 0, done.stderr
        assert f"at log index {header['applied_index']}" in done.stdout
        assert time.monotonic() - t0 < 60
    again = _restore(backup, b.specs[0].data_dir)  # never over a node's data
    assert again.returncode == 1 and "already holds" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    new_fences: list[int] = []
    worker_b = _worker(b, "new-worker", new_fences)
    b.start()
    try:
        b.wait_for_leader(timeout=30)
        for spec in b.specs:
            # the leader may be elected before the third node serves gRPC
            st = wait_for(functools.partial(b.status, spec.node_id), 10, f"{spec.node_id} up")
            assert st.applied_index >= header["applied_index"]
        with b.client(retry_for=30) as client:
            assert jobs_before <= {j.name for j in client.list_jobs(limit=None)}
            restored = client.list_runs(limit=100_000)
            assert runs_before <= {r.run_id for r in restored}
            largest_in_snapshot = max(r.fence for r in restored if r.run_id in runs_before)
            assert largest_in_snapshot < header["next_fence"]
            worker_b.start()
            wait_for(lambda: len(new_fences) >= 20, 60, "firings on the new cluster")
            assert min(new_fences) >= header["next_fence"] > largest_in_snapshot
            # quiet, so that the replicas can be compared at one applied index: with a worker
            # and 20 jobs firing every second the index moves between the status calls
            worker_b.stop()
            for i in range(20):
                client.pause_job(f"tick-{i}")
            client.create_job("after-restore", every_ms=HOUR_MS)
        b.wait_converged(timeout=30)
        # a restored node restarted replays its own journal from the backup's index; one that
        # lost its data dir is sent the leader's Raft snapshot (the restored one): both converge
        leader = b.wait_for_leader()
        followers = [s.node_id for s in b.specs if s.node_id != leader]
        b.kill_node(followers[0])
        b.kill_node(followers[1])
        shutil.rmtree(b.spec(followers[1]).data_dir)
        b.start_node(followers[0])
        b.start_node(followers[1])
        with b.client(retry_for=30) as client:
            client.create_job("after-rejoin", every_ms=HOUR_MS)
        b.wait_converged(timeout=60)
    finally:
        worker_b.stop()
        b.stop()


def test_inspect_refuses_a_damaged_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-backup.snap"
    bad.write_bytes(b"hello")
    got = schedctl("127.0.0.1:1", "snapshot", "inspect", str(bad))
    assert got.returncode == 1
    assert got.stderr.count("\n") == 1 and "not a schedd backup" in got.stderr


def test_save_without_a_cluster_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "never.snap"
    got = schedctl("127.0.0.1:1", "snapshot", "save", str(target))
    assert got.returncode == 4, got.stderr
    assert got.stderr.count("\n") == 1 and "no node answered" in got.stderr
    assert list(tmp_path.iterdir()) == []
