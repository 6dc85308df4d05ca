"""Online membership change on real processes: 3 -> 5 -> 3 under a job firing every second
(the leader among the removed), a dead node replaced by a new one on a new port, a new node
catching up by a snapshot install, restarts starting from the replicated member list, and the
refusals (a change that would leave no working majority, unknown members, bad addresses)."""

from __future__ import annotations

import json
import sys

import pytest

from schedd import errors
from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for

from .conftest import register, schedctl, start_shell_worker

pytestmark = pytest.mark.integration

SUCCEEDED = types_pb2.RUN_STATE_SUCCEEDED


def caught_up(client: Client, n: int) -> bool:
    """``n`` members, every one connected and within a few entries of the leader."""
    try:
        members = client.list_members()
    except errors.SchedError:
        return False
    if len(members) != n or not all(m.connected and m.voter for m in members):
        return False
    top = max(m.match_index for m in members)
    return all(top - m.match_index <= 5 for m in members)


def statuses_agree(cluster: LocalCluster, ids: set[str]) -> bool:
    """Every running node lists exactly the members ``ids`` as itself plus its peers."""
    for spec in cluster.specs:
        if not cluster.alive(spec.node_id):
            continue
        st = cluster.status(spec.node_id)
        if st is None or {st.node_id, *st.peers} != ids:
            return False
    return True


def check_every_slot_ran_once(client: Client, job: str, first_due: int, effects: str) -> int:
    paused = client.pause_job(job)
    last_due = paused.next_due_ms - 1000

    def all_done() -> list[types_pb2.Run] | None:
        runs = [r for r in client.list_runs(job=job, limit=10_000) if r.scheduled_ms <= last_due]
        return runs if runs and all(r.state == SUCCEEDED for r in runs) else None

    runs = wait_for(all_done, 60, "every claimed run to succeed")
    scheduled = [r.scheduled_ms for r in runs]
    expected = list(range(first_due, last_due + 1, 1000))
    assert sorted(set(expected) - set(scheduled)) == [], "lost firings"
    assert scheduled == expected, "each scheduled second has exactly one run"
    with open(effects) as f:
        lines = [line.split() for line in f if line.strip()]
    applied = {(rid, int(fence)) for rid, fence, _ in lines}
    for r in runs:
        assert (r.run_id, r.fence) in applied, f"no effect for {r.run_id} fence {r.fence}"
    assert len({r.fence for r in runs}) == len(runs), "fences are unique"
    return len(runs)


def test_grow_to_five_and_shrink_to_three_under_load(make_cluster, tmp_path) -> None:
    cluster: LocalCluster = make_cluster()
    effects = str(tmp_path / "effects.log")
    open(effects, "w").close()
    worker = start_shell_worker(
        cluster.endpoints_env, effects, str(tmp_path / "worker.log"), "--concurrency", "4"
    )
    try:
        with cluster.client(timeout=5, retry_for=60) as client:
            job = client.create_job("tick", cron="* * * * * *", request_id="create-tick")
            wait_for(lambda: caught_up(client, 3), 30, "3 members caught up")
            for node in ("n4", "n5"):
                assert cluster.add_node(node).join
                register(cluster)
                wait_for(lambda: caught_up(client, len(cluster.specs)), 60, f"{node} caught up")
            assert statuses_agree(cluster, {"n1", "n2", "n3", "n4", "n5"})
            # n5 caught up through n4's addition, whose member list lacks n5: an old change
            # it applied, not its removal
            with open(cluster.spec("n5").log_path) as f:
                assert "event=removed_from_cluster" not in f.read()
            listed = schedctl(cluster.endpoints_env, "member", "list")
            assert listed.returncode == 0, listed.stderr
            assert all(f"n{i}" in listed.stdout for i in range(1, 6)), listed.stdout

            # shrink: the leader first (it hands leadership over), then a joined node
            leader = cluster.wait_for_leader()
            out = schedctl(cluster.endpoints_env, "member", "remove", leader, "--json")
            assert out.returncode == 0, out.stderr
            left = {m["node_id"] for m in json.loads(out.stdout)["members"]}
            assert leader not in left and len(left) == 4
            cluster.forget_node(leader)
            assert cluster.wait_for_leader(timeout=30) != leader
            client.remove_member("n5")
            cluster.forget_node("n5")
            wait_for(lambda: caught_up(client, 3), 60, "3 members caught up")
            ids = {s.node_id for s in cluster.specs}
            wait_for(lambda: statuses_agree(cluster, ids), 30, "every node lists the 3 members")

            # a joined node restarts from the member list its state recorded
            cluster.stop_node("n4")
            cluster.start_node("n4")
            wait_for(lambda: caught_up(client, 3), 60, "n4 back after a restart")
            wait_for(  # firings on the final cluster too
                lambda: sum(r.state == SUCCEEDED for r in client.list_runs(job="tick")) >= 12,
                60,
                "12 succeeded firings",
            )
            count = check_every_slot_ran_once(client, "tick", job.next_due_ms, effects)
            assert count >= 10
        cluster.wait_converged(timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_a_dead_node_is_replaced_by_a_new_one_on_a_new_port(make_cluster) -> None:
    cluster: LocalCluster = make_cluster()
    with cluster.client(timeout=5, retry_for=60) as client:
        for i in range(20):
            client.create_job(f"j{i}", cron="0 3 * * *")
        leader = cluster.wait_for_leader()
        dead = next(s.node_id for s in cluster.specs if s.node_id != leader)
        cluster.kill_node(dead)

        # 2 of 3 alive: a 4th member would need 3 healthy ones to commit
        refused = schedctl(
            cluster.endpoints_env, "member", "add", "n9", "--raft", "127.0.0.1:1", "--grpc",
            "127.0.0.1:2",
        )  # fmt: skip
        assert refused.returncode != 0
        assert "bring them back" in refused.stderr and len(refused.stderr.splitlines()) == 1
        unknown = schedctl(cluster.endpoints_env, "member", "remove", "nope")
        assert unknown.returncode != 0 and "not a member" in unknown.stderr
        with pytest.raises(errors.InvalidArgument, match="raft_address"):
            client.add_member("n9", "no-port", "127.0.0.1:2")

        out = schedctl(cluster.endpoints_env, "member", "remove", dead)
        assert out.returncode == 0, out.stderr
        cluster.forget_node(dead)
        cluster.add_node("n4")
        register(cluster)
        wait_for(lambda: caught_up(client, 3), 60, "the new node caught up")
        assert {m.node_id for m in client.list_members()} == {s.node_id for s in cluster.specs}
        moved = schedctl(cluster.endpoints_env, "leader", "transfer", "n4")
        assert moved.returncode == 0, moved.stderr
        wait_for(lambda: cluster.leader() == "n4", 30, "n4 to lead")
        client.create_job("after", cron="0 4 * * *")
    _, digest = cluster.wait_converged(timeout=60)
    # a full restart: the original nodes' --peer flags still name the dead node; the state's
    # member list is used instead
    cluster.stop()
    cluster.start()
    cluster.wait_for_leader(timeout=60)
    with cluster.client(timeout=5, retry_for=60) as client:
        wait_for(lambda: caught_up(client, 3), 60, "3 members after a full restart")
        assert client.get_job("after").name == "after"
    ids = {s.node_id for s in cluster.specs}
    wait_for(lambda: statuses_agree(cluster, ids), 30, "every node lists the 3 members")


def test_a_new_node_catches_up_by_a_snapshot_install(tmp_path) -> None:
    """The log is compacted every 50 entries: the new node cannot get the old entries and is
    sent the leader's snapshot (with the member list in it)."""

    class Compacting(LocalCluster):
        def command(self, spec):  # type: ignore[no-untyped-def]
            cmd = super().command(spec)
            return [sys.executable, "-m", "tests.integration.compacting_node", *cmd[3:]]

    cluster = Compacting(str(tmp_path / "c"), nodes=3, extra_args=list(FAST_ARGS))
    register(cluster)
    cluster.start()
    try:
        cluster.wait_for_leader(timeout=30)
        with cluster.client(timeout=5, retry_for=60) as client:
            for i in range(150):
                client.create_job(f"s{i}", cron="0 3 * * *")
            leader = cluster.wait_for_leader()
            log_path = cluster.spec(leader).log_path
            wait_for(
                lambda: "raft.snapshot" in _ls(cluster.spec(leader).data_dir),
                30,
                "the leader to write a snapshot",
            )
            cluster.add_node("n4")
            register(cluster)
            wait_for(lambda: caught_up(client, 4), 60, "n4 caught up")
            _, digest = cluster.wait_converged(timeout=60)
            st = cluster.status("n4")
            assert st is not None and st.applied_index > 150
            with open(cluster.spec("n4").log_path) as f:
                assert "restored state from snapshot" in f.read(), log_path
            # its member list came with the snapshot or the entries after it: a restart keeps it
            cluster.stop_node("n4")
            cluster.start_node("n4")
            wait_for(lambda: caught_up(client, 4), 60, "n4 back after a restart")
            wait_for(
                lambda: statuses_agree(cluster, {"n1", "n2", "n3", "n4"}),
                30,
                "every node lists the 4 members",
            )
    finally:
        cluster.stop()


def _ls(path: str) -> list[str]:
    import os

    return os.listdir(path) if os.path.isdir(path) else []
