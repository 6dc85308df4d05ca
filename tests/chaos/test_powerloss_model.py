"""The power-loss model (chaos/powerloss.py) in one process, on temporary directories: a cut
keeps exactly what was synced (file data at its last fsync/fdatasync, directory entries at the
directory's last fsync), with the real schedd journal and LMDB store on top (milliseconds)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from chaos import powerloss
from schedd.raft.journal import DurableJournal
from schedd.state import disk
from schedd.state.store import Store

pytestmark = pytest.mark.chaos


class Node:
    """A data dir with a shadow installed, as in a node process started by the harness."""

    def __init__(self, root: str) -> None:
        self.data = os.path.join(root, "data")
        self.shadow_dir = os.path.join(root, "shadow")
        os.makedirs(self.data, exist_ok=True)
        self.shadow = powerloss.Shadow(self.data, self.shadow_dir)
        self.shadow.baseline()
        self._uninstall = self.shadow.install()

    def path(self, *names: str) -> str:
        return os.path.join(self.data, *names)

    def cut(self) -> dict[str, object]:
        """The power cut: the process is gone (the shadow uninstalled), the data dir rebuilt;
        then a new process would start a new baseline (:meth:`restart`)."""
        self._uninstall()
        return powerloss.cut(self.data, self.shadow_dir)

    def restart(self) -> None:
        self.shadow = powerloss.Shadow(self.data, self.shadow_dir)
        self.shadow.baseline()
        self._uninstall = self.shadow.install()

    def close(self) -> None:
        self._uninstall()


@pytest.fixture
def node(tmp_path: os.PathLike[str]) -> Iterator[Node]:
    n = Node(str(tmp_path))
    yield n
    n.close()


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def new_file(node: Node, name: str, data: bytes, sync: bool = True) -> int:
    fd = disk.open_file(node.path(name))
    disk.pwrite(fd, node.path(name), data, 0)
    if sync:
        disk.fdatasync(fd, node.path(name))
    return fd


def test_unsynced_appends_are_lost_synced_ones_survive(node: Node) -> None:
    fd = new_file(node, "f", b"hello ")
    disk.fsync_dir(node.data)
    disk.pwrite(fd, node.path("f"), b"world", 6)
    disk.fdatasync(fd, node.path("f"))
    disk.pwrite(fd, node.path("f"), b", and more", 11)  # never synced
    os.close(fd)
    assert read(node.path("f")) == b"hello world, and more"
    node.cut()
    assert read(node.path("f")) == b"hello world"


def test_negative_control_nothing_synced_nothing_kept(node: Node) -> None:
    """The model does lose data: the same writes without any sync leave nothing."""
    fd = new_file(node, "f", b"hello world", sync=False)
    os.close(fd)
    assert read(node.path("f")) == b"hello world"
    node.cut()
    assert read(node.path("f")) is None


def test_unsynced_truncate_is_undone_synced_one_kept(node: Node) -> None:
    fd = new_file(node, "f", b"0123456789")
    disk.fsync_dir(node.data)
    disk.truncate(fd, node.path("f"), 4)
    os.close(fd)
    node.cut()
    assert read(node.path("f")) == b"0123456789"
    node.restart()
    fd = disk.open_file(node.path("f"))
    disk.truncate(fd, node.path("f"), 4)
    disk.fdatasync(fd, node.path("f"))
    disk.pwrite(fd, node.path("f"), b"xyz", 4)  # unsynced regrowth after the synced truncate
    os.close(fd)
    node.cut()
    assert read(node.path("f")) == b"0123"


def test_rename_needs_the_directory_fsync(node: Node) -> None:
    os.close(new_file(node, "meta", b"old"))
    disk.fsync_dir(node.data)
    os.close(new_file(node, "meta.tmp", b"new"))
    disk.rename(node.path("meta.tmp"), node.path("meta"))
    node.cut()  # the rename was never made durable
    assert read(node.path("meta")) == b"old" and read(node.path("meta.tmp")) is None
    node.restart()
    os.close(new_file(node, "meta.tmp", b"new"))
    disk.rename(node.path("meta.tmp"), node.path("meta"))
    disk.fsync_dir(node.data)
    node.cut()
    assert read(node.path("meta")) == b"new" and read(node.path("meta.tmp")) is None


def test_write_file_is_atomic_and_durable_only_with_sync(node: Node) -> None:
    disk.write_file(node.path("m.json"), b"v1")
    disk.write_file(node.path("m.json"), b"v2", sync=False)
    node.cut()
    assert read(node.path("m.json")) == b"v1"
    assert sorted(os.listdir(node.data)) == ["m.json"]


def test_a_synced_file_whose_directory_was_never_fsynced_disappears(node: Node) -> None:
    os.close(new_file(node, "f", b"data"))
    node.cut()
    assert read(node.path("f")) is None


def test_a_listed_file_never_synced_survives_empty(node: Node) -> None:
    os.close(new_file(node, "f", b"data", sync=False))
    disk.fsync_dir(node.data)
    summary = node.cut()
    assert read(node.path("f")) == b""
    assert summary["empty"] == ["f"]


def test_baseline_counts_as_durable_and_the_log_is_left_alone(node: Node) -> None:
    os.close(new_file(node, "f", b"synced"))
    disk.fsync_dir(node.data)
    node.cut()
    node.restart()  # a new process: what exists now survived
    with open(node.path("node.log"), "ab") as f:
        f.write(b"a log line\n")
    with open(node.path("stray"), "wb") as f:
        f.write(b"never synced")
    node.cut()
    assert read(node.path("f")) == b"synced"
    assert read(node.path("node.log")) == b"a log line\n"
    assert read(node.path("stray")) is None


def test_an_unfinished_baseline_leaves_the_data_dir_alone(tmp_path: os.PathLike[str]) -> None:
    data = os.path.join(str(tmp_path), "data")
    os.makedirs(data)
    with open(os.path.join(data, "f"), "wb") as f:
        f.write(b"x")
    assert powerloss.cut(data, os.path.join(str(tmp_path), "no-shadow"))["restored"] is False
    assert read(os.path.join(data, "f")) == b"x"


def test_subdirectory_entry_needs_the_parent_fsync(node: Node) -> None:
    os.makedirs(node.path("state"))
    os.close(new_file(node, "state/data.mdb", b"lmdb"))
    disk.fsync_dir(node.path("state"))  # state/'s entries, but not state/ itself in the data dir
    node.cut()
    assert not os.path.exists(node.path("state"))
    node.restart()
    os.makedirs(node.path("state"))
    os.close(new_file(node, "state/data.mdb", b"lmdb"))
    disk.fsync_dir(node.path("state"))
    disk.fsync_dir(node.data)
    node.cut()
    assert read(node.path("state", "data.mdb")) == b"lmdb"


def test_a_reused_inode_does_not_change_the_old_names_content(node: Node) -> None:
    """An inode freed and given to a new file (modelled with a hard link that keeps it alive):
    the durable old name keeps the old content; the new name gets the new one once listed."""
    os.close(new_file(node, "meta", b"old content"))
    disk.fsync_dir(node.data)
    os.link(node.path("meta"), node.path("other"))  # the same inode under a second name
    os.close(new_file(node, "meta.tmp", b"replacement"))
    os.rename(node.path("meta.tmp"), node.path("meta"))  # 'meta' now resolves to another inode
    fd = os.open(node.path("other"), os.O_RDWR)
    os.ftruncate(fd, 0)
    disk.pwrite(fd, node.path("other"), b"reused", 0)
    disk.fdatasync(fd, node.path("other"))
    os.close(fd)
    node.cut()  # neither the rename nor 'other' was made durable in the directory
    assert read(node.path("meta")) == b"old content"
    assert read(node.path("other")) is None


def test_writes_seen_under_another_name_mean_a_whole_copy(node: Node) -> None:
    """The incremental copy trusts recorded writes only when they went through the synced name
    (else the record may be an earlier file's, on a reused inode)."""
    fd = new_file(node, "a", b"AAAA")
    disk.fsync_dir(node.data)
    disk.pwrite(fd, node.path("a"), b"x", 3)
    os.link(node.path("a"), node.path("b"))
    os.pwrite(fd, b"BB", 0)  # not seen by the model, below the recorded offset
    disk.fdatasync(fd, node.path("b"))
    os.close(fd)
    node.cut()
    assert read(node.path("a")) == b"BBAx"


# ---- the real journal and store under the model ---------------------------------------------------


def entries(n: int, start: int = 1, term: int = 1) -> list[tuple[bytes, int, int]]:
    return [(b"cmd-%d" % i * 10, i, term) for i in range(start, start + n)]


def crash(j: DurableJournal) -> None:
    """The process dies: nothing more is written (no _destroy)."""
    os.close(j._fd)


def test_durable_journal_keeps_exactly_the_synced_entries(node: Node) -> None:
    j = DurableJournal(node.path("raft.journal"))
    for e in entries(20):
        j.add(*e)
    j.sync()
    for e in entries(7, start=21):
        j.add(*e)
    j.setCurrentTerm(3, "n2")
    crash(j)
    node.cut()
    j2 = DurableJournal(node.path("raft.journal"))
    assert list(j2[:]) == entries(20)
    assert (j2.getCurrentTerm(), j2.getVotedForNodeId()) == (3, "n2")
    crash(j2)


def test_unsafe_journal_loses_everything_after_the_last_forced_sync(node: Node) -> None:
    """--unsafe-no-fsync: writes reach the page cache every sync() but only the checkpoint's
    sync(force=True) makes them durable; term and vote are never synced."""
    j = DurableJournal(node.path("raft.journal"), fsync=False)
    for e in entries(10):
        j.add(*e)
    j.sync()
    j.sync(force=True)  # the once-a-second checkpoint
    for e in entries(15, start=11):
        j.add(*e)
    j.sync()  # written (a process crash would keep it), not synced
    j.setCurrentTerm(4, "n1")
    crash(j)
    assert (
        len(DurableJournal(node.path("raft.journal"), fsync=False)) == 25
    )  # page cache: all there
    node.cut()
    j2 = DurableJournal(node.path("raft.journal"), fsync=False)
    assert list(j2[:]) == entries(10)
    assert (j2.getCurrentTerm(), j2.getVotedForNodeId()) == (0, None)
    crash(j2)


def test_compaction_under_the_model(node: Node) -> None:
    j = DurableJournal(node.path("raft.journal"))
    for e in entries(30):
        j.add(*e)
    j.sync()
    j.deleteEntriesTo(10)  # crash-safe replacement of the file, directory fsynced
    for e in entries(5, start=31):
        j.add(*e)
    j.sync()
    for e in entries(5, start=36):
        j.add(*e)
    crash(j)
    node.cut()
    j2 = DurableJournal(node.path("raft.journal"))
    assert [e[1] for e in j2[:]] == list(range(11, 36))
    crash(j2)


def test_a_sync_cut_short_is_a_torn_tail_the_journal_repairs(node: Node) -> None:
    j = DurableJournal(node.path("raft.journal"))
    for e in entries(10):
        j.add(*e)
    j.sync()
    size = os.path.getsize(node.path("raft.journal"))
    for e in entries(10, start=11):
        j.add(*e)
    j.sync()
    crash(j)
    # What a SIGKILL in the middle of the incremental copy of the second sync leaves:
    shadow_copies = os.path.join(node.shadow_dir, powerloss.CONTENT_DIR)
    (copy,) = [
        os.path.join(shadow_copies, k)
        for k in os.listdir(shadow_copies)
        if not k.endswith(".tmp") and os.path.getsize(os.path.join(shadow_copies, k)) > size
    ]
    os.truncate(copy, size + 17)
    node.cut()
    j2 = DurableJournal(node.path("raft.journal"))
    assert [e[1] for e in j2[:]] == list(range(1, 11))
    crash(j2)


def test_lmdb_keeps_its_last_sync(node: Node) -> None:
    s = Store(node.path("state"))
    with s._env.begin(write=True) as txn:
        txn.put(b"a", b"1", db=s.db("jobs"))
    s.sync()
    with s._env.begin(write=True) as txn:
        txn.put(b"b", b"2", db=s.db("jobs"))
    s._env.close()  # the process dies: no close(), no sync
    node.cut()
    s2 = Store(node.path("state"))
    with s2.read() as txn:
        assert txn.get(b"a", db=s2.db("jobs")) == b"1"
        assert txn.get(b"b", db=s2.db("jobs")) is None
    s2.close()


def test_lmdb_never_synced_comes_back_empty(node: Node) -> None:
    s = Store(node.path("state"))
    with s._env.begin(write=True) as txn:
        txn.put(b"a", b"1", db=s.db("jobs"))
    s._env.close()
    node.cut()
    assert os.path.getsize(node.path("state", "data.mdb")) == 0
    s2 = Store(node.path("state"))
    assert s2.counts()["jobs"] == 0
    s2.close()


def test_a_cut_is_a_reboot(node: Node) -> None:
    before = powerloss.boot_id(node.shadow_dir)
    assert powerloss.boot_id(node.shadow_dir) == before  # stable while the machine runs
    node.cut()
    assert powerloss.boot_id(node.shadow_dir) != before
