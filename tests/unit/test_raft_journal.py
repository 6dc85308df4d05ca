"""The durable Raft journal (schedd/raft/journal.py): format, group commit, torn tails,
corruption, crash-safe compaction, term/vote, migration from pysyncobj's format."""

from __future__ import annotations

import logging
import os
import struct

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from schedd.raft.journal import HEADER_SIZE, DurableJournal, JournalCorrupt
from schedd.state import disk


def entries(n: int, start: int = 1, term: int = 1, size: int = 40) -> list[tuple[bytes, int, int]]:
    return [(bytes([i % 251]) * size, i, term) for i in range(start, start + n)]


def reopen(j: DurableJournal) -> DurableJournal:
    """A process crash: the object is dropped without _destroy (nothing buffered is written)."""
    os.close(j._fd)
    return DurableJournal(j.path)


@pytest.fixture
def path(tmp_path: os.PathLike[str]) -> str:
    return os.path.join(str(tmp_path), "raft.journal")


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = disk.fdatasync

    def counting(fd: int, p: str) -> None:
        calls.append(p)
        real(fd, p)

    monkeypatch.setattr(disk, "fdatasync", counting)
    return calls


def test_entries_survive_reopen_after_sync(path: str) -> None:
    j = DurableJournal(path)
    for e in entries(50):
        j.add(*e)
    j.sync()
    j2 = reopen(j)
    assert list(j2[:]) == entries(50)
    assert j2.last_index == 50


def test_group_commit_one_fdatasync_for_many_entries(path: str, syncs: list[str]) -> None:
    j = DurableJournal(path)
    syncs.clear()
    for e in entries(300):
        j.add(*e)
    assert j.dirty
    j.sync()
    j.sync()  # nothing new: no second sync
    assert syncs == [path]
    assert not j.dirty


def test_buffered_entries_are_not_on_disk_before_sync(path: str) -> None:
    j = DurableJournal(path)
    for e in entries(10):
        j.add(*e)
    j.sync()
    for e in entries(5, start=11):
        j.add(*e)
    assert [e[1] for e in reopen(j)[:]] == list(range(1, 11))


def test_unsafe_mode_writes_without_fdatasync(path: str, syncs: list[str]) -> None:
    j = DurableJournal(path, fsync=False)
    syncs.clear()
    for e in entries(10):
        j.add(*e)
    j.sync()
    assert syncs == []  # written to the page cache only
    assert len(reopen(j)) == 10  # survives a process crash
    j3 = DurableJournal(path, fsync=False)
    j3.sync(force=True)  # the node's checkpoint syncs even so
    assert syncs == [path]


def _write(path: str, n: int) -> list[int]:
    j = DurableJournal(path)
    for e in entries(n):
        j.add(*e)
    j.sync()
    offsets = list(j._offsets)
    os.close(j._fd)
    return offsets


@pytest.mark.parametrize("cut", [1, 7, 24, 30])
def test_record_cut_short_is_a_torn_tail(
    path: str, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    offsets = _write(path, 10)
    os.truncate(path, offsets[9] + cut)
    with caplog.at_level(logging.WARNING):
        j = DurableJournal(path)
    assert j.last_index == 9
    assert os.path.getsize(path) == offsets[9]
    assert "event=journal_torn_tail" in caplog.text
    j.add(*entries(1, start=10)[0])
    j.sync()
    assert reopen(j).last_index == 10


def test_zeros_after_the_last_record_are_a_torn_tail(path: str) -> None:
    offsets = _write(path, 5)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)
    j = DurableJournal(path)
    assert j.last_index == 5 and os.path.getsize(path) == size
    assert offsets[0] == HEADER_SIZE


def test_garbage_in_the_last_record_is_a_torn_tail(path: str) -> None:
    offsets = _write(path, 5)
    with open(path, "r+b") as f:
        f.seek(offsets[4] + 30)
        f.write(b"\xff\xfe")
    assert DurableJournal(path).last_index == 4


def test_damage_before_the_tail_stops_with_file_and_offset(path: str) -> None:
    offsets = _write(path, 10)
    with open(path, "r+b") as f:
        f.seek(offsets[3] + 30)
        f.write(b"\xff")
    with pytest.raises(JournalCorrupt) as info:
        DurableJournal(path)
    assert info.value.offset == offsets[3] and info.value.path == path
    assert f"at offset {offsets[3]}" in str(info.value)


def test_a_stale_record_after_a_rewrite_fails_the_chain(path: str) -> None:
    """Records that survived from an older version of the file (a disk that reordered or lost
    writes) do not chain onto the new records before them. A truncation is synced before the
    region is written again, so this is damage, not a torn write."""
    _write(path, 6)
    with open(path, "rb") as f:
        old = f.read()
    j = DurableJournal(path)
    j.deleteEntriesFrom(2)  # keep 1..2
    for e in entries(4, start=3, term=2, size=40):
        j.add(*e)
    j.sync()
    os.close(j._fd)
    with open(path, "rb") as f:
        new = f.read()
    assert len(new) == len(old)
    mixed = new[: j._offsets[3]] + old[j._offsets[3] :]  # old records 4..6 came back
    with open(path, "wb") as f:
        f.write(mixed)
    # Each stale record is intact on its own; only the chain shows it does not belong here.
    with pytest.raises(JournalCorrupt, match="checksum mismatch") as info:
        DurableJournal(path)
    assert info.value.offset == j._offsets[3]


def test_bad_header_is_corruption(path: str) -> None:
    _write(path, 2)
    with open(path, "r+b") as f:
        f.write(b"XXXX")
    with pytest.raises(JournalCorrupt, match="bad header"):
        DurableJournal(path)


def test_truncation_is_durable_at_once(path: str, syncs: list[str]) -> None:
    j = DurableJournal(path)
    for e in entries(10):
        j.add(*e)
    j.sync()
    syncs.clear()
    j.deleteEntriesFrom(4)  # list position 4: keep indexes 1..4
    assert syncs == [path]
    assert [e[1] for e in reopen(j)[:]] == [1, 2, 3, 4]


def test_truncating_only_buffered_entries_touches_no_file(path: str, syncs: list[str]) -> None:
    j = DurableJournal(path)
    for e in entries(5):
        j.add(*e)
    j.sync()
    for e in entries(5, start=6):
        j.add(*e)
    syncs.clear()
    j.deleteEntriesFrom(7)
    assert syncs == [] and j.dirty
    j.sync()
    assert [e[1] for e in reopen(j)[:]] == [1, 2, 3, 4, 5, 6, 7]


def test_compaction_keeps_the_tail_and_replaces_the_file(path: str) -> None:
    j = DurableJournal(path)
    for e in entries(100):
        j.add(*e)
    j.sync()
    for e in entries(3, start=101):
        j.add(*e)  # buffered entries are kept by the rewrite too
    j.deleteEntriesTo(90)
    assert not j.dirty and j[0][1] == 91
    j.add(*entries(1, start=104)[0])
    j.sync()
    assert [e[1] for e in reopen(j)[:]] == list(range(91, 105))
    assert not os.path.exists(path + ".compact")


def test_a_crash_during_compaction_leaves_the_old_journal(path: str) -> None:
    _write(path, 20)
    with open(path + ".compact", "wb") as f:
        f.write(b"SCHEDDRJ half a file")
    assert DurableJournal(path).last_index == 20


def test_clear_then_add(path: str) -> None:
    j = DurableJournal(path)
    for e in entries(10):
        j.add(*e)
    j.sync()
    j.clear()
    j.add(b"snap-prev", 50, 3)
    j.add(b"snap-last", 51, 3)
    j.sync()
    assert [e[1] for e in reopen(j)[:]] == [50, 51]


def test_term_and_vote_are_saved_before_return(path: str, syncs: list[str]) -> None:
    j = DurableJournal(path)
    syncs.clear()
    j.setCurrentTerm(7, "127.0.0.1:7001")
    assert syncs == [path + ".meta.json.tmp"]
    j2 = reopen(j)
    assert (j2.getCurrentTerm(), j2.getVotedForNodeId()) == (7, "127.0.0.1:7001")


def test_commit_index_is_saved_lazily(path: str) -> None:
    from schedd.raft.journal import COMMIT_SAVE_EVERY

    j = DurableJournal(path)
    j.setRaftCommitIndex(42)
    for _ in range(COMMIT_SAVE_EVERY - 1):
        j.onOneSecondTimer()
    assert reopen(j).getRaftCommitIndex() == 1  # not yet
    j = DurableJournal(path)
    j.setRaftCommitIndex(42)
    for _ in range(COMMIT_SAVE_EVERY):
        j.onOneSecondTimer()
    assert reopen(j).getRaftCommitIndex() == 42
    j = DurableJournal(path)
    j.setRaftCommitIndex(43)
    j._destroy()  # a clean stop saves it
    assert DurableJournal(path).getRaftCommitIndex() == 43


def test_damaged_term_record_is_corruption(path: str) -> None:
    j = DurableJournal(path)
    j.setCurrentTerm(3, None)
    os.close(j._fd)
    with open(path + ".meta.json", "r+b") as f:
        f.seek(5)
        f.write(b"9")
    with pytest.raises(JournalCorrupt, match="term/vote"):
        DurableJournal(path)


def test_migrates_a_pysyncobj_journal(path: str, caplog: pytest.LogCaptureFixture) -> None:
    from pysyncobj.journal import FileJournal

    old = FileJournal(path)
    for e in entries(30):
        old.add(*e)
    old.setCurrentTerm(4, "127.0.0.1:7003")
    old.setRaftCommitIndex(25)
    old.onOneSecondTimer()
    old._destroy()
    with caplog.at_level(logging.WARNING):
        j = DurableJournal(path)
    assert "event=journal_migrated" in caplog.text
    assert list(j[:]) == entries(30)
    assert (j.getCurrentTerm(), j.getVotedForNodeId(), j.getRaftCommitIndex()) == (
        4,
        "127.0.0.1:7003",
        25,
    )
    assert not os.path.exists(path + ".meta")
    assert list(reopen(j)[:]) == entries(30)


def test_record_layout_is_documented(path: str) -> None:
    offsets = _write(path, 1)
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"SCHEDDRJ"
    n, _crc, idx, term = struct.unpack_from("<IIQQ", raw, offsets[0])
    assert (n, idx, term) == (40, 1, 1)


class JournalMachine(RuleBasedStateMachine):
    """Random appends, syncs, truncations, compactions and crashes against a model of what the
    file holds (a process crash keeps what was written, loses what was only buffered)."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="journal-")
        self.j = DurableJournal(os.path.join(self.dir, "raft.journal"))
        self.mem: list[tuple[bytes, int, int]] = []
        self.file: list[tuple[bytes, int, int]] = []
        self.term = 1

    def _next(self) -> int:
        return self.mem[-1][1] + 1 if self.mem else 1

    @rule(n=st.integers(1, 20), size=st.integers(0, 300))
    def add(self, n: int, size: int) -> None:
        for e in entries(n, start=self._next(), term=self.term, size=size):
            self.j.add(*e)
            self.mem.append(e)

    @rule()
    def sync(self) -> None:
        self.j.sync()
        self.file = list(self.mem)

    @rule()
    def new_term(self) -> None:
        self.term += 1

    @precondition(lambda self: self.mem)
    @rule(data=st.data())
    def delete_from(self, data: st.DataObject) -> None:
        pos = data.draw(st.integers(0, len(self.mem) - 1))
        self.j.deleteEntriesFrom(pos)
        self.mem = self.mem[:pos]
        self.file = self.file[:pos]

    @precondition(lambda self: len(self.mem) > 1)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        pos = data.draw(st.integers(0, len(self.mem) - 1))
        self.j.deleteEntriesTo(pos)
        self.mem = self.mem[pos:]
        self.file = list(self.mem)

    @rule()
    def crash(self) -> None:
        self.j = reopen(self.j)
        self.mem = list(self.file)

    @invariant()
    def matches(self) -> None:
        assert list(self.j[:]) == self.mem

    def teardown(self) -> None:
        import shutil

        os.close(self.j._fd)
        shutil.rmtree(self.dir, ignore_errors=True)


TestJournalMachine = JournalMachine.TestCase
TestJournalMachine.settings = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "60")),  # more for a longer run
    stateful_step_count=30,
    deadline=None,
)


def test_a_second_destroy_leaves_other_files_alone(path: str, tmp_path: os.PathLike[str]) -> None:
    """pysyncobj's destroy may run twice (destroy, then destroy_synchronous): the descriptor
    number the journal closed may belong to another file by then (LMDB's, a snapshot copy's)."""
    j = DurableJournal(path)
    j.add(*entries(1)[0])
    j._destroy()
    with open(os.path.join(str(tmp_path), "other"), "wb") as other:
        j._destroy()
        other.write(b"still open")
        other.flush()  # EBADF here if the second destroy closed it
