"""The Raft journal: pysyncobj's log and its term/vote record, durable, with group commit.

pysyncobj 0.3.17's own ``FileJournal`` is an mmap that is never synced, compacts by rewriting
itself in place and has no checksums. This class implements the same ``Journal`` interface
(pysyncobj calls ``add``, ``deleteEntriesFrom``, ``deleteEntriesTo``, ``clear``, indexing, the
term/vote/commit accessors) and the adapter (:mod:`schedd.raft.adapter`) plugs it in.

File ``raft.journal``::

    header   b"SCHEDDRJ" | u32 format (1) | u32 crc32 of the 12 bytes before   16 bytes
    record   u32 command length | u32 crc | u64 index | u64 term | command

Each record's crc covers its length, index, term and command, seeded with the crc of the record
before it (the first record's seed is the header's crc). The chain makes a record that survived
from an older version of the file (a write the disk reordered) fail its check.

Invariants and failure contract:

* Records hold consecutive indexes with non-decreasing terms.
* :meth:`add` only buffers. :meth:`sync` writes everything buffered with one ``pwrite`` at the
  end of the file, then ``fdatasync``s once: group commit. ``dirty`` is true from any change
  until the next :meth:`sync`; the adapter never counts an entry towards a commit, nor
  acknowledges it to a leader, while the journal is dirty.
* Truncating written records (a conflict with a new leader, a snapshot install) is made durable
  at once, before anything is written over the truncated region, so a crash never leaves new
  records followed by stale ones.
* Compaction (:meth:`deleteEntriesTo`) writes the kept records to a new file, fsyncs it, renames
  it over the journal and fsyncs the directory: a crash leaves the old or the new journal. It
  first fsyncs the directory, making durable the snapshot pysyncobj has just renamed into place
  (the snapshot must be on disk before the entries it replaces leave the journal).
* Term and vote (``raft.meta``) are replaced atomically and fsynced before :meth:`setCurrentTerm`
  returns; pysyncobj sends its vote right after that call.
* On open, a torn tail (a record cut short, or garbage or zeros after the last good record and
  nothing valid beyond) is truncated and logged. Anything else that fails its check raises
  :class:`JournalCorrupt` naming the file and offset: the node stops with exit 70.
* ``fsync=False`` (``--unsafe-no-fsync``) keeps every write and rename but skips the syncs except
  in :meth:`sync` with ``force=True`` (the node's once-a-second checkpoint): acknowledged writes
  then survive a process crash but not a power cut.
* Any ``OSError`` propagates; the caller stops the node. A failed sync is never retried.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import struct
import time
import zlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, overload

from pysyncobj.journal import Journal

from schedd.state import disk

log = logging.getLogger("schedd.raft.journal")

MAGIC = b"SCHEDDRJ"
FORMAT = 1
_HEADER = struct.Struct("<8sI")
HEADER_SIZE = _HEADER.size + 4
_REC = struct.Struct("<IIQQ")  # length, crc, index, term
_LEN = struct.Struct("<I")
_IDX_TERM = struct.Struct("<QQ")
MAX_COMMAND_BYTES = 1 << 30  # a length field above this is garbage, not a record
_OLD_MAGIC = b"PYSYNCOBJ"  # pysyncobj's FileJournal, migrated on first open
META_SUFFIX = ".meta.json"
COMMIT_SAVE_EVERY = 10  # seconds between saves of the commit index (term and vote: at once)

Entry = tuple[bytes, int, int]  # pysyncobj's (command, index, term)
F = TypeVar("F", bound=Callable[..., Any])


def _io(method: F) -> F:
    """An I/O failure here goes to the journal's ``on_io_error`` (the node stops: a failed
    write or sync is never retried); pysyncobj, which calls most of these, would log and go on."""

    @wraps(method)
    def wrapper(self: DurableJournal, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            self.on_io_error(
                f"Raft journal I/O failed in {method.__name__} at {self.path}: {e}; free disk "
                "space or fix the disk, then restart the node (it catches up from its peers)"
            )
            raise

    return wrapper  # type: ignore[return-value]


def _reraise(message: str) -> None:
    """Default ``on_io_error``: nothing; the ``OSError`` propagates."""


class JournalCorrupt(Exception):
    """The journal or its term/vote file failed a check where no torn write can explain it."""

    def __init__(self, path: str, offset: int, detail: str) -> None:
        super().__init__(f"{path}: {detail} at offset {offset}")
        self.path = path
        self.offset = offset
        self.detail = detail


def _header() -> bytes:
    head = _HEADER.pack(MAGIC, FORMAT)
    return head + _LEN.pack(zlib.crc32(head))


_HEADER_BYTES = _header()
_SEED = _LEN.unpack(_HEADER_BYTES[-4:])[0]


def encode_record(command: bytes, index: int, term: int, prev_crc: int) -> tuple[bytes, int]:
    """The record bytes and its crc (the next record's seed)."""
    it = _IDX_TERM.pack(index, term)
    crc = zlib.crc32(command, zlib.crc32(it, zlib.crc32(_LEN.pack(len(command)), prev_crc)))
    return _LEN.pack(len(command)) + _LEN.pack(crc) + it + command, crc


class DurableJournal(Journal):
    """See the module docstring. Used from pysyncobj's tick thread only (reads of ``len`` from
    other threads are harmless)."""

    def __init__(
        self, path: str, fsync: bool = True, on_io_error: Callable[[str], Any] = _reraise
    ) -> None:
        self.path = path
        self.on_io_error = on_io_error
        self.dir = os.path.dirname(os.path.abspath(path))
        self.meta_path = path + META_SUFFIX
        self.fsync = fsync
        self._entries: list[Entry] = []
        self._offsets: list[int] = []  # file offset of each record
        self._crcs: list[int] = []  # chain value after each record
        self._written = 0  # records [0, _written) are in the file; the rest are in _pending
        self._pending: list[bytes] = []
        self._tail = HEADER_SIZE  # where the next record goes
        self.dirty = False
        self.sync_count = 0
        self.sync_seconds = 0.0
        #: called with the seconds of each group-commit sync (write + fdatasync), for metrics
        self.on_sync: Callable[[float], None] | None = None
        self._meta: dict[str, Any] = {"term": 0, "voted_for": None, "commit_index": 1}
        self._meta_saved = True
        self._timer_calls = 0
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self._migrate_pysyncobj_journal()
        self._load_meta()
        self._fd = disk.open_file(path)
        try:
            self._load()
        except BaseException:
            os.close(self._fd)
            raise

    # ---- opening -----------------------------------------------------------------------------

    def _load(self) -> None:
        size = os.fstat(self._fd).st_size
        if 0 < size < HEADER_SIZE:  # a crash while the file was being created: it held nothing
            log.warning("event=journal_header_rewritten path=%s size=%d", self.path, size)
            disk.truncate(self._fd, self.path, 0)
            size = 0
        if size == 0:
            disk.pwrite(self._fd, self.path, _HEADER_BYTES, 0)
            disk.fdatasync(self._fd, self.path)
            disk.fsync_dir(self.dir)  # the new file's name must survive too
            return
        with mmap.mmap(self._fd, size, prot=mmap.PROT_READ) as mm:
            if mm[:HEADER_SIZE] != _HEADER_BYTES:
                raise JournalCorrupt(self.path, 0, "not a schedd Raft journal (bad header)")
            off, prev = HEADER_SIZE, _SEED
            last_idx = last_term = None
            while off < size:
                problem = ""
                if off + _REC.size > size:
                    problem = "record header cut short"
                else:
                    n, crc, idx, term = _REC.unpack_from(mm, off)
                    if n > MAX_COMMAND_BYTES or off + _REC.size + n > size:
                        problem = "record cut short"
                    else:
                        cmd = mm[off + _REC.size : off + _REC.size + n]
                        rec, want = encode_record(cmd, idx, term, prev)
                        if want != crc:
                            problem = "checksum mismatch"
                if problem:
                    self._torn_or_corrupt(mm, off, size, problem, last_idx)
                    break
                if last_idx is not None and (idx != last_idx + 1 or term < (last_term or 0)):
                    raise JournalCorrupt(
                        self.path,
                        off,
                        f"record index {idx} term {term} does not follow "
                        f"index {last_idx} term {last_term}",
                    )
                self._entries.append((cmd, idx, term))
                self._offsets.append(off)
                self._crcs.append(want)
                prev, last_idx, last_term = want, idx, term
                off += len(rec)
        self._tail = off
        self._written = len(self._entries)
        if off < size:  # cut the torn tail, durably, before anything is appended after it
            disk.truncate(self._fd, self.path, off)
            disk.fdatasync(self._fd, self.path)

    def _torn_or_corrupt(
        self, mm: mmap.mmap, off: int, size: int, problem: str, last_idx: int | None
    ) -> None:
        """Return if the bad bytes at ``off`` are a torn tail (cut short, the very last record,
        or nothing but zeros to the end); else raise :class:`JournalCorrupt`."""
        torn = problem.endswith("cut short") or not any(mm[off:size])
        if not torn and problem == "checksum mismatch":
            n = _LEN.unpack_from(mm, off)[0]
            torn = off + _REC.size + n == size
        if not torn:
            raise JournalCorrupt(
                self.path,
                off,
                f"{problem} with {size - off} more bytes after it (not a torn final write)",
            )
        log.warning(
            "event=journal_torn_tail path=%s offset=%d dropped_bytes=%d last_index=%s problem=%r "
            "(a write cut short by a crash; it was never acknowledged)",
            self.path,
            off,
            size - off,
            last_idx if last_idx is not None else "-",
            problem,
        )

    def _migrate_pysyncobj_journal(self) -> None:
        """Convert a journal written by pysyncobj's own FileJournal (schedd before the durable
        journal) once: entries, term, vote and commit index carry over."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_OLD_MAGIC))
        except FileNotFoundError:
            return
        if head != _OLD_MAGIC:
            return
        from pysyncobj.journal import FileJournal

        old = FileJournal(self.path)
        try:
            entries = [old[i] for i in range(len(old))]
            meta = {
                "term": old.getCurrentTerm(),
                "voted_for": old.getVotedForNodeId(),
                "commit_index": old.getRaftCommitIndex(),
            }
        finally:
            old._destroy()
        self._meta = meta
        self._save_meta(sync=True)
        tmp = self.path + ".migrate"
        self._write_file(tmp, entries)
        disk.rename(tmp, self.path)
        disk.fsync_dir(self.dir)
        for leftover in (self.path + ".meta", self.path + ".meta.tmp"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        log.warning(
            "event=journal_migrated path=%s entries=%d term=%d (from pysyncobj's journal format)",
            self.path,
            len(entries),
            meta["term"],
        )

    def _write_file(self, path: str, entries: list[Entry]) -> tuple[list[int], list[int], int]:
        """Write a complete journal holding ``entries`` to ``path`` (synced unless unsafe);
        returns the records' offsets, their crcs and the end offset."""
        parts, offsets, crcs = [_HEADER_BYTES], [], []
        off, prev = HEADER_SIZE, _SEED
        for cmd, idx, term in entries:
            rec, prev = encode_record(bytes(cmd), idx, term, prev)
            parts.append(rec)
            offsets.append(off)
            crcs.append(prev)
            off += len(rec)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, disk.FILE_MODE)
        try:
            disk.pwrite(fd, path, b"".join(parts), 0)
            if self.fsync:
                disk.fdatasync(fd, path)
        finally:
            os.close(fd)
        return offsets, crcs, off

    # ---- group commit ------------------------------------------------------------------------

    @_io
    def sync(self, force: bool = False) -> None:
        """Write every buffered record and make the journal durable: one write and one
        ``fdatasync`` however many entries were added since the last call. ``force`` syncs even
        when the journal runs without fsync (the node's periodic checkpoint)."""
        if not self.dirty and not force:
            return
        t0 = time.perf_counter()
        if self._pending:
            disk.pwrite(self._fd, self.path, b"".join(self._pending), self._offsets[self._written])
            self._pending.clear()
            self._written = len(self._entries)
        if self.fsync or force:
            disk.fdatasync(self._fd, self.path)
            took = time.perf_counter() - t0
            self.sync_count += 1
            self.sync_seconds += took
            if self.on_sync is not None:
                self.on_sync(took)
        self.dirty = False

    def flush(self) -> None:
        """pysyncobj's FileJournal name for a full flush."""
        self.sync(force=True)

    @property
    def last_index(self) -> int:
        return self._entries[-1][1] if self._entries else 0

    @property
    def size_bytes(self) -> int:
        return self._tail

    # ---- pysyncobj's Journal interface -------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        prev = self._crcs[-1] if self._crcs else _SEED
        rec, crc = encode_record(command, idx, term, prev)
        self._entries.append((command, idx, term))
        self._offsets.append(self._tail)
        self._crcs.append(crc)
        self._pending.append(rec)
        self._tail += len(rec)
        self.dirty = True

    @_io
    def clear(self) -> None:
        self._truncate_to(0)

    @_io
    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 (pysyncobj's name)
        """Drop the records from list position ``entryFrom`` on (a conflict with the leader)."""
        if entryFrom < len(self._entries):
            self._truncate_to(max(0, entryFrom))

    def _truncate_to(self, pos: int) -> None:
        cut = self._offsets[pos] if pos < len(self._offsets) else self._tail
        if pos >= self._written:
            del self._pending[pos - self._written :]
        else:
            self._pending.clear()
            self._written = pos
            disk.truncate(self._fd, self.path, cut)
            # Durable before anything is written over the cut region (see the module docstring).
            disk.fdatasync(self._fd, self.path)
        del self._entries[pos:], self._offsets[pos:], self._crcs[pos:]
        self._tail = cut
        self.dirty = bool(self._pending)

    @_io
    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802 (pysyncobj's name)
        """Compaction after a snapshot: keep the records from list position ``entryTo`` on, by
        writing them to a new file that replaces the journal atomically."""
        kept = self._entries[entryTo:]
        if self.fsync:
            disk.fsync_dir(self.dir)  # the snapshot's rename first
        tmp = self.path + ".compact"
        offsets, crcs, end = self._write_file(tmp, kept)
        disk.rename(tmp, self.path)
        if self.fsync:
            disk.fsync_dir(self.dir)
        os.close(self._fd)
        self._fd = disk.open_file(self.path)
        self._entries, self._offsets, self._crcs = list(kept), offsets, crcs
        self._pending, self._written, self._tail = [], len(kept), end
        self.dirty = False

    @overload
    def __getitem__(self, item: int) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> list[Entry]: ...

    def __getitem__(self, item: int | slice) -> Entry | list[Entry]:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    @_io
    def _destroy(self) -> None:
        """Sync and close. Idempotent: a second call must not close the descriptor number
        again, which by then may be another file's (LMDB's)."""
        if self._fd < 0:
            return
        try:
            self.sync(force=True)
            if not self._meta_saved:
                self._save_meta(sync=self.fsync)
        finally:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802,N803
        if raftCommitIndex != self._meta["commit_index"]:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_saved = False

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return int(self._meta["commit_index"])

    @_io
    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:  # noqa: N802,N803
        """Durable before return: pysyncobj sends the vote this records right after."""
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._save_meta(sync=self.fsync)

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta["term"])

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return self._meta["voted_for"]

    @_io
    def onOneSecondTimer(self) -> None:  # noqa: N802
        """The commit index is saved lazily, every ``COMMIT_SAVE_EVERY`` calls (seconds): it only
        lets a restarted node apply sooner, and each save is a rename plus a directory fsync,
        which on ext4 is a filesystem journal commit that delays every concurrent fdatasync."""
        self._timer_calls += 1
        if not self._meta_saved and self._timer_calls % COMMIT_SAVE_EVERY == 0:
            self._save_meta(sync=self.fsync)

    # ---- term / vote / commit index ----------------------------------------------------------

    def _save_meta(self, sync: bool) -> None:
        body = json.dumps({"format": FORMAT, **self._meta}, sort_keys=True).encode()
        disk.write_file(self.meta_path, body + b"\n" + b"%08x\n" % zlib.crc32(body), sync=sync)
        self._meta_saved = True

    def _load_meta(self) -> None:
        try:
            with open(self.meta_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        body, _, crc = raw.rstrip(b"\n").rpartition(b"\n")
        try:
            ok = int(crc, 16) == zlib.crc32(body)
            meta = json.loads(body) if ok else None
        except ValueError:
            ok, meta = False, None
        if not ok or not isinstance(meta, dict):
            raise JournalCorrupt(self.meta_path, 0, "term/vote record fails its checksum")
        self._meta = {
            "term": int(meta.get("term", 0)),
            "voted_for": meta.get("voted_for"),
            "commit_index": int(meta.get("commit_index", 1)),
        }
