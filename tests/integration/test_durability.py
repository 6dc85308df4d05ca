"""What a node does with its data directory after crashes, on real `schedd run` processes:

* a torn journal tail (a write cut short) is repaired on start and the node catches up;
* damage before the tail stops the node with exit 70 and a line naming the file and offset;
* LMDB ahead of the journal (files copied by hand, or a power cut with --unsafe-no-fsync)
  stops the node with exit 70 instead of silently skipping entries;
* a machine crash (another boot id in the node's running marker) sets LMDB aside and rebuilds
  it from the snapshot and journal; a process crash keeps it;
* --unsafe-no-fsync is said at start and shown by `schedctl cluster status`.
"""

from __future__ import annotations

import os
import signal

import pytest

from schedd.testing import LocalCluster
from tests._util import wait_for
from tests.integration.conftest import schedctl

pytestmark = pytest.mark.integration


def converged(cluster: LocalCluster) -> bool:
    sts = [cluster.status(s.node_id, with_digest=True, timeout=2) for s in cluster.specs]
    if any(st is None for st in sts):
        return False
    return len({(st.applied_index, st.state_digest) for st in sts}) == 1


def follower(cluster: LocalCluster) -> str:
    leader = cluster.wait_for_leader()
    return next(s.node_id for s in cluster.specs if s.node_id != leader)


def write_jobs(cluster: LocalCluster, prefix: str, n: int) -> None:
    with cluster.client() as c:
        for i in range(n):
            c.create_job(f"{prefix}-{i}", cron="0 0 1 1 *", request_id=f"{prefix}-{i}")


def test_torn_journal_tail_is_repaired_and_the_node_catches_up(make_cluster) -> None:
    cluster: LocalCluster = make_cluster()
    write_jobs(cluster, "a", 20)
    node = follower(cluster)
    cluster.kill_node(node)
    journal = os.path.join(cluster.spec(node).data_dir, "raft.journal")
    with open(journal, "ab") as f:
        f.write(b"\x10\x00\x00\x00partial record")  # a record cut short by the crash
    write_jobs(cluster, "b", 5)
    cluster.start_node(node)
    wait_for(lambda: converged(cluster), 30, "the restarted node to converge")
    with open(cluster.spec(node).log_path) as f:
        assert "event=journal_torn_tail" in f.read()


def test_damage_before_the_tail_stops_the_node_naming_file_and_offset(make_cluster) -> None:
    cluster: LocalCluster = make_cluster()
    write_jobs(cluster, "a", 20)
    # the writes commit on a majority: wait until the follower damaged below holds them too
    wait_for(lambda: converged(cluster), 30, "convergence")
    node = follower(cluster)
    cluster.kill_node(node)
    journal = os.path.join(cluster.spec(node).data_dir, "raft.journal")
    with open(journal, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    cluster.start_node(node)
    assert cluster.procs[node].wait(timeout=30) == 70
    with open(cluster.spec(node).log_path) as f:
        log = f.read()
    assert "Raft journal damaged" in log and journal in log and "at offset" in log
    assert "Traceback" not in log


def test_state_ahead_of_the_journal_stops_the_node(make_cluster) -> None:
    """The power-cut file mix that used to make replicas diverge silently: LMDB from the cut,
    journal from earlier. Modelled by putting back an old journal next to the current state."""
    cluster: LocalCluster = make_cluster()
    node = follower(cluster)
    d = cluster.spec(node).data_dir
    cluster.kill_node(node)
    with open(os.path.join(d, "raft.journal"), "rb") as f:
        old_journal = f.read()
    cluster.start_node(node)
    write_jobs(cluster, "a", 20)
    wait_for(lambda: converged(cluster), 30, "convergence")
    cluster.kill_node(node)
    with open(os.path.join(d, "raft.journal"), "wb") as f:
        f.write(old_journal)
    cluster.start_node(node)
    assert cluster.procs[node].wait(timeout=30) == 70
    with open(cluster.spec(node).log_path) as f:
        log = f.read()
    assert "journal and snapshot" in log and "Move" in log and "aside" in log


def test_machine_crash_rebuilds_lmdb_and_process_crash_keeps_it(make_cluster) -> None:
    cluster: LocalCluster = make_cluster()
    write_jobs(cluster, "a", 30)
    node = follower(cluster)
    d = cluster.spec(node).data_dir
    wait_for(lambda: converged(cluster), 30, "convergence")

    cluster.kill_node(node)  # a process crash: same boot, LMDB kept
    cluster.start_node(node)
    wait_for(lambda: converged(cluster), 30, "convergence after a process crash")
    assert not os.path.exists(os.path.join(d, "state.torn"))

    cluster.kill_node(node)  # now a machine crash: another boot, and LMDB torn beyond use
    with open(os.path.join(d, "running.boot"), "w") as f:
        f.write("an-earlier-boot")
    with open(os.path.join(d, "state", "data.mdb"), "r+b") as f:
        f.write(b"\xde\xad" * 4096)
    write_jobs(cluster, "b", 5)
    cluster.start_node(node)
    wait_for(lambda: converged(cluster), 30, "convergence after the rebuild")
    assert os.path.isdir(os.path.join(d, "state.torn"))
    with open(cluster.spec(node).log_path) as f:
        assert "event=state_rebuild" in f.read()
    cluster.stop_node(node)  # a clean stop removes the marker
    assert not os.path.exists(os.path.join(d, "running.boot"))


def test_unsafe_no_fsync_is_said_and_shown(make_cluster) -> None:
    from tests.integration.conftest import FAST

    cluster: LocalCluster = make_cluster(extra_args=[*FAST, "--unsafe-no-fsync"])
    write_jobs(cluster, "a", 3)
    out = schedctl(cluster.endpoints_env, "cluster", "status")
    assert out.returncode == 0, out.stderr
    assert "UNSAFE: --unsafe-no-fsync" in out.stdout
    with open(cluster.spec("n1").log_path) as f:
        assert "event=unsafe_no_fsync" in f.read()
    leader = cluster.wait_for_leader()
    cluster.kill_node(leader, signal.SIGKILL)  # acknowledged writes survive a process crash
    with cluster.client() as c:
        wait_for(lambda: len(c.list_jobs()) == 3, 30, "the jobs on the new leader")
