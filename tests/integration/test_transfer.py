"""Leadership transfer on five real nodes: the target wins every time.

Followers send each other nothing between elections, so their connections are quiet for
minutes; the transfer's target then sends its vote requests on exactly those connections. A
transport that treats "nothing read for the timeout" as a dead peer closes such a connection
at its first frame and drops the vote request: on 4 or 5 nodes the target cannot collect a
majority and the old leader takes leadership back (the bug this test reproduces)."""

from __future__ import annotations

import time

import pytest

from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for

from .conftest import register

pytestmark = pytest.mark.integration


def test_every_transfer_on_five_nodes_reaches_its_target(tmp_path) -> None:
    cluster = LocalCluster(str(tmp_path / "c"), nodes=5, extra_args=list(FAST_ARGS))
    register(cluster)
    cluster.start()
    try:
        leader = cluster.wait_for_leader(timeout=30)
        ids = [s.node_id for s in cluster.specs]
        missed = []
        with cluster.client(timeout=5, retry_for=30) as client:
            for i in range(3):
                time.sleep(4.5)  # longer than the connection timeout (3.5 s): quiet links
                target = next(n for n in ids[i + 1 :] + ids if n != leader)
                client.transfer_leadership(target)
                try:
                    wait_for(lambda t=target: cluster.leader() == t, 10, f"{target} to lead")
                except AssertionError:
                    missed.append((leader, target, cluster.leader()))
                leader = cluster.wait_for_leader(timeout=30)
        assert not missed, f"transfers that did not reach their target: {missed}"
    finally:
        cluster.stop()
