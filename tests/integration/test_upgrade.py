"""A rolling upgrade on real processes: three nodes of a version that supports feature level 1
are restarted one at a time with this version (level 7: online membership changes, bulk
creation, job dependencies, firing ahead, leases in the fire item, re-opens after several
failed upstreams) while a job
fires every second (ahead of its time once the level is raised). The cluster's level rises only once every member runs the new version;
until then a membership change is refused naming the old nodes; a node restarted with the old
version after the raise refuses to start; nothing is lost on the way."""

from __future__ import annotations

import sys

import pytest

from schedd import errors
from schedd.state.apply import features
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for

from .conftest import register, start_shell_worker
from .test_membership import caught_up, check_every_slot_ran_once

pytestmark = pytest.mark.integration


class MixedVersions(LocalCluster):
    """Nodes in ``old`` run as the previous version (tests/integration/old_node.py)."""

    old: set[str] = set()

    def command(self, spec):  # type: ignore[no-untyped-def]
        cmd = super().command(spec)
        if spec.node_id in self.old:
            return [sys.executable, "-m", "tests.integration.old_node", *cmd[3:]]
        return cmd


def levels(cluster: LocalCluster) -> dict[str, tuple[int, int]]:
    """node -> (the cluster's level as it applied it, the level its version supports)."""
    out = {}
    for spec in cluster.specs:
        st = cluster.status(spec.node_id)
        if st is not None:
            out[spec.node_id] = (st.feature_level, st.features_supported)
    return out


def test_a_rolling_upgrade_raises_the_level_once_every_node_runs_the_new_version(tmp_path) -> None:
    assert features.SUPPORTED == features.REOPEN_EVERY_FAILED == 7
    cluster = MixedVersions(str(tmp_path / "c"), nodes=3, extra_args=list(FAST_ARGS))
    cluster.old = {"n1", "n2", "n3"}
    register(cluster)
    cluster.start()
    effects = str(tmp_path / "effects.log")
    open(effects, "w").close()
    worker = None
    try:
        cluster.wait_for_leader(timeout=30)
        worker = start_shell_worker(cluster.endpoints_env, effects, str(tmp_path / "w.log"))
        with cluster.client(timeout=5, retry_for=60) as client:
            job = client.create_job("tick", cron="* * * * * *", request_id="create-tick")
            wait_for(
                lambda: levels(cluster) == {n: (1, 1) for n in ("n1", "n2", "n3")},
                30,
                "every old node at level 1",
            )
            with pytest.raises(errors.FailedPrecondition, match="n1, n2, n3 run"):
                client.add_member("n9", "127.0.0.1:1", "127.0.0.1:2")
            with pytest.raises(errors.FailedPrecondition, match="n1, n2, n3 run"):
                client.create_jobs([{"name": "bulk", "every_ms": 60_000}])
            with pytest.raises(errors.FailedPrecondition, match="n1, n2, n3 run"):
                client.create_job("after-tick", depends_on=["tick"])

            for node in ("n1", "n2", "n3"):
                cluster.old.discard(node)
                cluster.stop_node(node)
                cluster.start_node(node)
                wait_for(lambda: caught_up(client, 3), 60, f"{node} back with the new version")
                if node != "n3":
                    assert all(lvl == 1 for lvl, _ in levels(cluster).values()), levels(cluster)
            wait_for(
                lambda: levels(cluster) == {n: (7, 7) for n in ("n1", "n2", "n3")},
                30,
                "the level raised to 7 on every node",
            )
            after = client.create_job("after-tick", depends_on=["tick"], queue="nobody-serves-it")
            assert after.depends_on == ("tick",)

            # back to the old version after the raise: refused at start, exit 70
            cluster.old.add("n2")
            cluster.stop_node("n2")
            cluster.start_node("n2")
            code = cluster.procs["n2"].wait(timeout=30)
            assert code == 70
            with open(cluster.spec("n2").log_path) as f:
                assert "feature level 7" in f.read()
            cluster.old.discard("n2")
            cluster.start_node("n2")
            wait_for(lambda: caught_up(client, 3), 60, "n2 back")

            cluster.add_node("n4")  # membership changes work now
            register(cluster)
            wait_for(lambda: caught_up(client, 4), 60, "n4 caught up")
            assert check_every_slot_ran_once(client, "tick", job.next_due_ms, effects) >= 5
        cluster.wait_converged(timeout=60)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=20)
        cluster.stop()
