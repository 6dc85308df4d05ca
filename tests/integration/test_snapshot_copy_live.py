"""A long snapshot copy on the leader costs no leader change (schedd/raft/snapshots.py).

Three :class:`RaftNode` s on 127.0.0.1 (schedd's configuration: journal, LMDB store, password)
hold real jobs. The leader is asked to compact and its copy is held for twice the longest
election timeout, as a copy of a large state on a slow disk would take (1.4-3.1 s at a million
jobs, ``bench/compaction.py``). Meanwhile writes go on through the same leader.

* With the copy in the background, every write commits, no node's term moves, and the snapshot
  with its compacted journal rebuilds a node that lost its LMDB to the others' exact state.
* The negative control copies in the tick thread, as pysyncobj does: no write commits through
  the leader while the copy is held, and the followers elect another leader.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count

import pytest

from schedd.errors import SchedError
from schedd.raft.adapter import RaftNode
from schedd.raft.settings import RaftSettings
from schedd.state.store import Store
from schedd.testing import free_ports
from tests._held_store import HeldStore
from tests._util import wait_for
from tests.unit.test_apply import create

pytestmark = pytest.mark.integration

# Slower elections than schedd's default (0.4-1.0 s), so that a loaded test box does not
# change leaders on its own during the observation window.
SETTINGS = RaftSettings(election_min_s=1.0, election_max_s=2.0)
HOLD_S = 2 * SETTINGS.election_max_s


class Cluster:
    def __init__(self, root: str, settings: RaftSettings) -> None:
        self.root, self.settings = root, settings
        self.addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]
        self.stores: list[HeldStore] = []
        self.nodes: list[RaftNode] = []
        for i in range(3):
            self.stores.append(HeldStore(self.state_dir(i), map_size=64 << 20))
            self.nodes.append(self._node(i))
        self.names = count()

    def state_dir(self, i: int) -> str:
        return os.path.join(self.root, f"n{i}", "state")

    def _node(self, i: int) -> RaftNode:
        a = self.addrs[i]
        others = [b for b in self.addrs if b != a]
        return RaftNode(
            a, others, self.stores[i], os.path.join(self.root, f"n{i}"), "pw", self.settings
        )

    def leader(self) -> int:
        return (
            wait_for(
                lambda: next((i + 1 for i, n in enumerate(self.nodes) if n.is_leader()), 0),
                30,
                "a leader",
            )
            - 1
        )

    def write(self, i: int, timeout: float = 10.0) -> None:
        self.nodes[i].propose(create(f"job-{next(self.names):05d}", cron="0 3 * * *"), timeout)

    def terms(self) -> list[int]:
        return [n.raftCurrentTerm for n in self.nodes]

    def converged(self) -> bool:
        return (
            len({s.applied_index() for s in self.stores}) == 1
            and len({s.digest() for s in self.stores}) == 1
        )

    def restart_without_state(self, i: int) -> None:
        """Stop node ``i``, delete its LMDB, start it again: it rebuilds from its snapshot
        and journal, then catches up."""
        self.nodes[i].destroy_synchronous()
        self.stores[i].close()
        shutil.rmtree(self.state_dir(i))
        self.stores[i] = HeldStore(self.state_dir(i), map_size=64 << 20)
        self.nodes[i] = self._node(i)

    def close(self) -> None:
        for s in self.stores:
            s.release.set()
        for n in self.nodes:
            n.destroy_synchronous()
        for s in self.stores:
            s.close()


@contextmanager
def cluster(settings: RaftSettings) -> Iterator[Cluster]:
    root = tempfile.mkdtemp(prefix="snapshot-live-")
    c = Cluster(root, settings)
    try:
        yield c
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


def writes_during_held_copy(c: Cluster, leader: int) -> int:
    """Hold the leader's next snapshot copy for HOLD_S, writing through the leader meanwhile;
    the number of writes that committed."""
    store = c.stores[leader]
    store.hold.set()
    c.nodes[leader].forceLogCompaction()
    assert store.copying.wait(10), "the leader never started its snapshot copy"
    threading.Timer(HOLD_S, store.release.set).start()
    committed = 0
    while not store.release.is_set():
        try:
            c.write(leader, timeout=0.5)
            committed += 1
        except SchedError:  # the negative control: not applied, or not confirmed in time
            pass
    return committed


def test_the_leader_keeps_leading_while_it_copies_a_snapshot() -> None:
    with cluster(SETTINGS) as c:
        leader = c.leader()
        for _ in range(100):
            c.write(leader)
        terms = c.terms()
        assert writes_during_held_copy(c, leader) >= 10
        assert c.terms() == terms  # no election anywhere
        snapshot = os.path.join(c.root, f"n{leader}", "raft.snapshot")
        wait_for(lambda: Store.snapshot_last_index(snapshot) > 0, 30, "the snapshot renamed")
        for _ in range(20):
            c.write(leader)
        wait_for(c.converged, 30, "the replicas converging")
        # The snapshot and the compacted journal are one consistent state: a node that lost its
        # LMDB rebuilds from them, and catches up to the others' exact state.
        c.restart_without_state(leader)
        for _ in range(20):
            c.write(c.leader())
        wait_for(c.converged, 30, "the rebuilt node converging")


def test_negative_control_a_copy_in_the_tick_thread_costs_the_leadership() -> None:
    with cluster(dataclasses.replace(SETTINGS, background_snapshots=False)) as c:
        leader = c.leader()
        for _ in range(100):
            c.write(leader)
        terms = c.terms()
        assert writes_during_held_copy(c, leader) == 0
        wait_for(lambda: c.terms() != terms, 30, "an election after the stalled leader")
