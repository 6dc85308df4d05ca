"""The snapshot copy runs beside the tick thread (schedd/raft/snapshots.py).

A real :class:`RaftNode` (schedd's journal and LMDB store, pysyncobj's own message handling)
fed by hand as a follower, ticked by the test, with a recording transport. The store's copies
wait until the test releases them, so "the copy is still running" is a state the test holds,
not a race it hopes for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pysyncobj.config import SERIALIZER_STATE

from schedd.raft import snapshots
from schedd.raft.adapter import RaftNode
from schedd.raft.settings import RaftSettings
from schedd.raft.snapshots import BackgroundSnapshots
from schedd.state.store import CopyCancelled, Store
from tests._held_store import HeldStore
from tests._util import wait_for
from tests.unit.test_raft_replication import LEADER, OTHER, SELF, RecordingTransport

NO_OP = b"\x01"  # pysyncobj's no-op command: committed and applied, no state change


class Node:
    def __init__(
        self, root: str, background: bool = True, settings: RaftSettings | None = None
    ) -> None:
        self.root = root
        self.store = HeldStore(os.path.join(root, "state"), map_size=16 << 20)
        self.raft = RaftNode(
            SELF,
            [LEADER.address, OTHER],
            self.store,
            root,
            "pw",
            settings or RaftSettings(background_snapshots=background),
            transport_class=RecordingTransport,
            auto_tick=False,
        )
        self.snapshot = os.path.join(root, "raft.snapshot")

    def receive(self, first: int, last: int, term: int = 1) -> None:
        """Entries ``first..last`` of ``term`` from the leader, all committed."""
        self.raft._SyncObj__onMessageReceived(  # type: ignore[attr-defined]
            LEADER,
            {
                "type": "append_entries",
                "term": term,
                "commit_index": last,
                "prevLogIdx": first - 1,
                "prevLogTerm": 0 if first == 2 else term,
                "entries": [(NO_OP, i, term) for i in range(first, last + 1)],
            },
        )

    def tick(self) -> None:
        self.raft.doTick(0.0)

    def journal(self) -> list[int]:
        return [e[1] for e in self.raft._SyncObj__raftLog[:]]  # type: ignore[attr-defined]

    @property
    def snapshots(self) -> BackgroundSnapshots:
        s = self.raft._SyncObj__serializer  # type: ignore[attr-defined]
        assert isinstance(s, BackgroundSnapshots)
        return s

    def tick_until_copied(self) -> None:
        def done() -> bool:
            self.tick()
            return not self.snapshots.copying

        wait_for(done, 30, "the snapshot copy ending")

    def start_copy(self) -> None:
        """Ask for a compaction and tick once: the copy starts (and waits if held)."""
        self.raft.forceLogCompaction()
        self.tick()
        assert self.store.copying.wait(10), "no snapshot copy started"

    def close(self) -> None:
        self.store.release.set()
        self.raft.destroy()
        if self.raft._snapshots is not None:
            self.raft._snapshots.wait(30)
        self.store.close()


@pytest.fixture
def node(tmp_path: Any) -> Iterator[Node]:
    n = Node(str(tmp_path))
    yield n
    n.close()


def test_entries_apply_while_the_copy_runs_and_the_journal_is_compacted_after(
    node: Node,
) -> None:
    node.receive(2, 10)
    node.tick()
    node.store.hold.set()
    node.start_copy()
    node.receive(11, 20)
    for _ in range(5):
        node.tick()
    assert node.raft.raftLastApplied == 20  # the tick thread went on applying
    assert node.snapshots.checkSerializing()[0] == SERIALIZER_STATE.SERIALIZING
    assert not os.path.exists(node.snapshot)
    node.store.release.set()
    node.tick_until_copied()
    assert Store.snapshot_last_index(node.snapshot) == 10  # the state when the copy began
    # compacted to the entry before the snapshot's (pysyncobj keeps the two it names)
    assert node.journal() == list(range(9, 21))
    assert not os.path.exists(node.snapshot + ".tmp")


def test_negative_control_a_copy_in_the_tick_thread_stalls_it(tmp_path: Any) -> None:
    """The same held copy with background snapshots off: the tick returns only once the
    copy was released, so a held copy would have stopped heartbeats and applies."""
    n = Node(str(tmp_path), background=False)
    try:
        n.receive(2, 10)
        n.tick()
        n.store.hold.set()
        threading.Timer(0.3, n.store.release.set).start()
        n.raft.forceLogCompaction()
        n.tick()
        assert n.store.release.is_set()  # the tick waited for the copy
        assert Store.snapshot_last_index(n.snapshot) == 10
    finally:
        n.close()


def test_a_snapshot_received_during_the_copy_supersedes_it(node: Node, tmp_path: Any) -> None:
    node.receive(2, 10)
    node.tick()
    node.store.hold.set()
    node.start_copy()
    # The leader sends a newer snapshot (index 30) meanwhile: it is installed at once.
    image = _snapshot_file(str(tmp_path / "leader"), last=30)
    _send_snapshot(node, image)
    assert Store.snapshot_last_index(node.snapshot) == 30
    node.store.release.set()
    node.tick_until_copied()
    # The older copy (index 10) must not replace the newer file, nor compact the journal.
    assert Store.snapshot_last_index(node.snapshot) == 30
    assert node.journal()[:2] == [29, 30]
    assert not os.path.exists(node.snapshot + ".tmp")
    assert node.raft.compactions.by_outcome["superseded"] == 1


def test_negative_control_without_the_generation_check_the_older_copy_wins(
    node: Node, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: if a received snapshot did not count, the older copy would
    be renamed over it."""
    monkeypatch.setattr(
        BackgroundSnapshots,
        "setTransmissionData",
        lambda self, data: super(BackgroundSnapshots, self).setTransmissionData(data),
    )
    node.receive(2, 10)
    node.tick()
    node.store.hold.set()
    node.start_copy()
    _send_snapshot(node, _snapshot_file(str(tmp_path / "leader"), last=30))
    node.store.release.set()
    node.tick_until_copied()
    assert Store.snapshot_last_index(node.snapshot) == 10


def test_the_policy_asks_for_no_compaction_while_a_copy_runs(tmp_path: Any) -> None:
    """A request made during a copy would start the next copy the tick after it ends,
    whatever the policy's minimum interval and cost share say."""
    settings = RaftSettings(
        compaction_min_entries=5, compaction_min_interval_s=1.0, compaction_max_share=0.0
    )
    n = Node(str(tmp_path), settings=settings)
    try:
        n.receive(2, 10)
        n.tick()
        n.store.hold.set()
        n.start_copy()
        n.receive(11, 30)
        n.raft._compaction.last_end -= 10.0  # the previous compaction ended long ago
        for _ in range(3):
            n.tick()
        assert not n.raft._SyncObj__forceLogCompaction  # type: ignore[attr-defined]
        n.store.release.set()
        n.store.copying.clear()
        n.tick_until_copied()
        n.tick()
        assert not n.store.copying.is_set()  # the next one waits for the policy's interval
    finally:
        n.close()


def test_a_failed_copy_keeps_the_previous_snapshot_and_the_journal(node: Node) -> None:
    node.receive(2, 10)
    node.tick()
    node.start_copy()
    node.tick_until_copied()
    assert Store.snapshot_last_index(node.snapshot) == 10
    node.receive(11, 20)
    node.tick()
    node.store.copying.clear()
    node.store.fail_with = OSError(28, "No space left on device")
    node.start_copy()
    node.tick_until_copied()
    assert Store.snapshot_last_index(node.snapshot) == 10
    assert node.raft.compactions.by_outcome == {"kept": 1, "failed": 1, "superseded": 0}
    assert node.journal() == list(range(9, 21))
    assert not os.path.exists(node.snapshot + ".tmp")
    # and the next compaction works
    node.store.fail_with = None
    node.store.copying.clear()
    node.start_copy()
    node.tick_until_copied()
    assert Store.snapshot_last_index(node.snapshot) == 20
    assert node.journal() == [19, 20]


def test_stopping_waits_for_the_copy_and_leaves_no_partial_file(node: Node) -> None:
    node.receive(2, 10)
    node.tick()
    node.store.hold.set()
    node.start_copy()
    node.raft.destroy()
    snapshots = node.raft._snapshots
    assert snapshots is not None
    assert not snapshots.wait(0.05)  # still held
    node.store.release.set()
    assert snapshots.wait(30)
    assert not os.path.exists(node.snapshot + ".tmp")
    assert not os.path.exists(node.snapshot)  # never renamed: the journal still holds it all


def test_a_store_with_a_copy_running_is_left_open_at_close(tmp_path: Any) -> None:
    store = Store(str(tmp_path / "state"), map_size=16 << 20)
    meta = ((NO_OP, 2, 1), (NO_OP, 1, 1), set())
    source = store.snapshot_source(meta)
    store.close()  # a copy still holds a read transaction: LMDB stays open under it
    out = str(tmp_path / "snap")
    source.write(out)
    assert Store.snapshot_last_index(out) == 2
    store.close()  # nothing held now: closed


def test_a_partial_copy_left_by_a_crash_is_removed_at_start(tmp_path: Any) -> None:
    partial = tmp_path / "raft.snapshot.tmp"
    partial.write_bytes(b"half a copy")
    n = Node(str(tmp_path))
    try:
        assert not partial.exists()
    finally:
        n.close()


def _record_releases(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Replace the release thread by a record of (path, inode, links) at the moment the old
    snapshot was handed over: what the tick thread left for the thread to free."""
    released: list[tuple[str, int, int]] = []

    def record(path: str) -> None:
        st = os.stat(path)
        released.append((path, st.st_ino, st.st_nlink))

    monkeypatch.setattr(snapshots, "release", record)
    return released


def _first_snapshot(node: Node) -> int:
    """Entries 2..10 applied and compacted into a first snapshot; its inode."""
    node.receive(2, 10)
    node.tick()
    node.start_copy()
    node.tick_until_copied()
    return os.stat(node.snapshot).st_ino


def test_the_old_snapshot_is_freed_after_the_rename_not_by_it(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_inode = _first_snapshot(node)
    released = _record_releases(monkeypatch)
    node.receive(11, 20)
    node.tick()
    node.store.copying.clear()
    node.start_copy()
    node.tick_until_copied()
    assert Store.snapshot_last_index(node.snapshot) == 20
    # the rename left the old file whole, under its second name only, for the thread
    [(aside, inode, links)] = released
    assert (inode, links) == (old_inode, 1)
    assert aside.startswith(node.snapshot + ".old.")
    monkeypatch.undo()
    snapshots.release(aside)
    wait_for(lambda: not os.path.exists(aside), 10, "the old snapshot freed")


def test_a_received_snapshot_sets_the_old_one_aside_too(
    node: Node, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_inode = _first_snapshot(node)
    released = _record_releases(monkeypatch)
    _send_snapshot(node, _snapshot_file(str(tmp_path / "leader"), last=30))
    assert Store.snapshot_last_index(node.snapshot) == 30
    assert [(i, n) for _, i, n in released] == [(old_inode, 1)]


def test_a_first_snapshot_has_nothing_to_set_aside(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = _record_releases(monkeypatch)
    _first_snapshot(node)
    assert Store.snapshot_last_index(node.snapshot) == 10
    assert released == []
    assert not [n for n in os.listdir(node.root) if ".old." in n]


def test_set_aside_files_left_by_a_crash_are_freed_at_start(tmp_path: Any) -> None:
    left = tmp_path / "raft.snapshot.old.123.1"
    left.write_bytes(b"x" * (3 * snapshots.RELEASE_STEP_BYTES // 2))
    n = Node(str(tmp_path))
    try:
        wait_for(lambda: not left.exists(), 10, "the leftover freed")
    finally:
        n.close()


# ---- helpers ---------------------------------------------------------------------------------


def _snapshot_file(root: str, last: int) -> bytes:
    store = Store(os.path.join(root, "state"), map_size=16 << 20)
    path = os.path.join(root, "snap")
    store.write_snapshot(path, ((NO_OP, last, 1), (NO_OP, last - 1, 1), set()))
    store.close()
    with open(path, "rb") as f:
        return f.read()


def _send_snapshot(node: Node, image: bytes) -> None:
    """pysyncobj's snapshot install: the file in chunks, then an empty last chunk."""
    for chunk in (
        (image[: len(image) // 2], True, False),
        (image[len(image) // 2 :], False, False),
        (b"", False, True),
    ):
        node.raft._SyncObj__onMessageReceived(  # type: ignore[attr-defined]
            LEADER,
            {"type": "append_entries", "term": 1, "commit_index": 30, "serialized": chunk},
        )


def test_the_time_a_paced_copy_waited_is_not_counted_as_its_cost(node: Node) -> None:
    """The policy spaces compactions by what they cost (``compaction_max_share``); a copy that
    took 4 s of which it waited 3.5 s for its pace cost 0.5 s."""
    node.raft._snapshot_done(10.0, 14.0, "kept", 3.5)
    assert node.raft._compaction.last_took_s == pytest.approx(0.5)
    assert node.raft._compaction.last_end == 14.0


def test_copies_are_paced_at_the_configured_rate(tmp_path: Any) -> None:
    # the image of an almost empty state is ~16 KiB: at 0.1 MiB/s about 0.15 s, mostly waited
    n = Node(str(tmp_path), settings=RaftSettings(snapshot_copy_mib_s=0.1))
    done: list[tuple[str, float]] = []
    real = n.raft._snapshots._on_done  # type: ignore[union-attr]

    def record(started: float, ended: float, outcome: str, paused_s: float) -> None:
        done.append((outcome, paused_s))
        real(started, ended, outcome, paused_s)

    n.raft._snapshots._on_done = record  # type: ignore[union-attr]
    try:
        n.receive(2, 10)
        n.tick()
        n.start_copy()
        n.tick_until_copied()
        assert Store.snapshot_last_index(n.snapshot) == 10
        [(outcome, paused_s)] = done
        assert outcome == "kept" and paused_s > 0
        counts = n.raft.compactions
        assert counts.by_outcome == {"kept": 1, "failed": 0, "superseded": 0}
        assert counts.paused_seconds == pytest.approx(paused_s)
    finally:
        n.close()


def test_stopping_cancels_a_paced_copy(tmp_path: Any) -> None:
    # ~16 KiB at 1 KiB/s would take ~16 s; cancelled, the copy ends at its next step
    n = Node(str(tmp_path), settings=RaftSettings(snapshot_copy_mib_s=1 / 1024))
    try:
        n.receive(2, 10)
        n.tick()
        n.start_copy()
        copy = n.snapshots._copy
        assert copy is not None
        n.raft.destroy()
        assert n.snapshots.wait(30)
        assert isinstance(copy.error, CopyCancelled)
        assert not os.path.exists(n.snapshot + ".tmp")
        assert not os.path.exists(n.snapshot)
    finally:
        n.close()
