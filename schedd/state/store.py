"""LMDB storage of the replicated state: executes what ``apply`` decides, serves reads, and
writes/restores snapshots for pysyncobj.

Failure contract: any LMDB error while applying an entry (disk full, I/O, a map full at its
ceiling) stops the process at once with a log line saying what to do. The entry is never
skipped; the node re-applies it from the Raft journal after the operator fixes the disk.

The LMDB map grows online (:meth:`Store.maybe_grow`, :class:`~schedd.state.mapsize.MapGrowth`)
up to ``max_map_size``. ``env.set_mapsize`` must not run while any transaction of this process
is open, so every read goes through :class:`_ReadGate` and every write holds the apply lock.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import lmdb

from schedd import namespaces
from schedd.pb import types_pb2
from schedd.state import disk, keys
from schedd.state.apply import (
    FINISHED_STATES,
    UNSUPPORTED,
    Result,
    apply_writes,
    request_recorded_at,
    state_digest,
)
from schedd.state.mapsize import MIB, MapGrowth

log = logging.getLogger("schedd.store")

SNAPSHOT_MAGIC = b"SCHEDDSNAP1\n"
_TRAILER = struct.Struct("<Q12s")  # metadata length, magic


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    """py-lmdb returns bytes for transactions opened without ``buffers=True`` (all of ours)."""
    return value if value is None or isinstance(value, bytes) else bytes(value)


def _key(cursor: lmdb.Cursor) -> bytes:
    return bytes(cursor.key())


def fatal(message: str) -> None:
    """Stop the process without unwinding: the Raft journal redoes the entry on restart."""
    log.critical(message)
    logging.shutdown()
    os._exit(70)


class _TxnReader:
    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, db: str, key: bytes) -> bytes | None:
        value = self._txn.get(key, db=self._dbs[db])
        # (_bytes inlined: one call fewer on every read of apply, ~10 per firing)
        return value if value is None or type(value) is bytes else bytes(value)

    def scan(self, db: str, prefix: bytes, limit: int, start: bytes = b"") -> list[bytes]:
        cur = self._txn.cursor(db=self._dbs[db])
        out: list[bytes] = []
        ok = cur.set_range(max(prefix, start))
        while ok and len(out) < limit:
            k = _key(cur)
            if not k.startswith(prefix):
                break
            out.append(k)
            ok = cur.next()
        return out


class _ReadGate:
    """Read transactions versus map resizes: many readers, or one resize and no reader.

    A resize waiting for the gate stops new readers from entering, so the short read
    transactions in flight drain quickly. Re-entrant per thread (a reader that opens a second
    read inside its first one does not wait for a resize that waits for it)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False
        self._local = threading.local()

    @contextmanager
    def reading(self) -> Iterator[None]:
        depth: int = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._resizing:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._readers -= 1
                    if self._readers == 0:
                        self._cond.notify_all()

    def hold(self) -> Callable[[], None]:
        """Enter as a reader that another thread will leave (a snapshot copy opened in the tick
        thread, written in a background one); returns the release, which is idempotent."""
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        left = threading.Event()

        def release() -> None:
            if left.is_set():
                return
            left.set()
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

        return release

    @property
    def readers(self) -> int:
        return self._readers

    @contextmanager
    def exclusive(self, timeout_s: float) -> Iterator[bool]:
        """Yields True with no reader inside (and none let in until the block ends), or False
        when readers did not drain within ``timeout_s`` (then nothing is held)."""
        with self._cond:
            while self._resizing:  # one resize at a time
                self._cond.wait()
            self._resizing = True
            drained = self._cond.wait_for(lambda: self._readers == 0, timeout_s)
            if not drained:
                self._resizing = False
                self._cond.notify_all()
        try:
            yield drained
        finally:
            if drained:
                with self._cond:
                    self._resizing = False
                    self._cond.notify_all()


class SnapshotSource:
    """One read transaction held for a snapshot (:meth:`Store.snapshot_source`). Written once,
    by any one thread; :meth:`close` (idempotent) gives the transaction and the read gate back,
    and :meth:`write` closes it whatever happens."""

    def __init__(
        self,
        env: lmdb.Environment,
        txn: lmdb.Transaction[bytes],
        release: Callable[[], None],
        raft_meta: tuple[Any, Any, Any],
    ) -> None:
        self._env = env
        self._txn: lmdb.Transaction[bytes] | None = txn
        self._release = release
        self._meta = json.dumps(_encode_raft_meta(raft_meta)).encode()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.paused_s = 0.0

    def cancel(self) -> None:
        """Make a paced :meth:`write` (in another thread) stop soon with :class:`CopyCancelled`
        (the node is stopping); an unpaced one runs to its end."""
        self._cancel.set()

    def write(self, filename: str, rate_bytes_s: float = 0.0) -> int:
        """One regular file: a compacted LMDB image, pysyncobj's metadata as JSON, then a
        trailer (metadata length + magic); its data synced before this returns. Returns its
        size in bytes. ``rate_bytes_s`` > 0 paces the image's writing (:func:`copy_paced`);
        :attr:`paused_s` then says how long the pacing waited."""
        try:
            txn = self._txn
            if txn is None:
                raise RuntimeError("this snapshot source was already written or closed")
            fd = os.open(
                filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, disk.FILE_MODE
            )
            with os.fdopen(fd, "wb") as f:
                if rate_bytes_s > 0:
                    self.paused_s = copy_paced(
                        self._env, txn, f.fileno(), filename, rate_bytes_s, self._cancel
                    )
                else:
                    # LMDB's copy runs without the GIL: the tick thread goes on while it copies.
                    self._env.copyfd(f.fileno(), compact=True, txn=txn)
                f.seek(0, os.SEEK_END)
                f.write(self._meta)
                f.write(_TRAILER.pack(len(self._meta), SNAPSHOT_MAGIC))
                f.flush()
                disk.fdatasync(f.fileno(), filename)
                return f.tell()
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()
            self._release()


#: how much a paced copy writes between two write-outs (:func:`schedd.state.disk.write_out`)
PACED_WRITE_OUT_BYTES = 8 << 20


class CopyCancelled(Exception):
    """A paced snapshot copy was cancelled before its end (the node is stopping)."""


def copy_paced(
    env: lmdb.Environment,
    txn: lmdb.Transaction[bytes],
    fd: int,
    path: str,
    rate_bytes_s: float,
    cancel: threading.Event | None = None,
) -> float:
    """LMDB's compacted copy of ``txn`` written to ``fd`` at most ``rate_bytes_s`` bytes a
    second, and written out every :data:`PACED_WRITE_OUT_BYTES`, so that the copy never leaves
    much dirty for the Raft journal's syncs to queue behind. Returns the seconds it paused.

    LMDB copies into a pipe in a thread of its own (without the GIL); this thread moves the
    pipe's bytes into ``fd`` (``os.splice``: no copy through Python) at the rate. The bytes are
    the same as :meth:`lmdb.Environment.copyfd`'s into the file. Raises what either side
    raised, or :class:`CopyCancelled` soon after ``cancel`` is set; the copying thread has ended
    when this returns."""
    cancel = cancel or threading.Event()
    r, w = os.pipe()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            env.copyfd(w, compact=True, txn=txn)
        except BaseException as e:  # raised by the caller below
            failed.append(e)
        finally:
            os.close(w)

    producer = threading.Thread(target=produce, name="snapshot-copy-lmdb", daemon=True)
    producer.start()
    paused = 0.0
    try:
        start = time.monotonic()
        written = unflushed = 0
        while True:
            if cancel.is_set():
                raise CopyCancelled(f"the snapshot copy to {path} was cancelled")
            n = _move(r, fd, 1 << 20)
            if n == 0:
                break
            written += n
            unflushed += n
            if unflushed >= PACED_WRITE_OUT_BYTES:
                disk.write_out(fd, path)
                unflushed = 0
            ahead = start + written / rate_bytes_s - time.monotonic()
            if ahead > 0:
                cancel.wait(ahead)  # the pace
                paused += ahead
    finally:
        os.close(r)  # a producer still writing gets EPIPE and ends
        producer.join()
    if failed:
        raise failed[0]
    return paused


def _move(src: int, dst: int, limit: int) -> int:
    """Up to ``limit`` bytes from the pipe ``src`` to the end of ``dst``; 0 at the pipe's end."""
    if hasattr(os, "splice"):  # Linux: kernel to kernel
        return os.splice(src, dst, limit)
    data = os.read(src, limit)
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view) :]
    return len(data)


#: (log index, [(run id, its record as stored)] of the runs the entry put into pending_q, ids
#: of the runs it took out). The records are not parsed here: that is the reader's work, off the
#: Raft thread.
PendingFeed = Callable[[int, list[tuple[str, bytes]], list[str]], None]


def _pending_changes(
    puts: list[bytes], deletes: list[bytes], runs: dict[bytes, bytes], txn: Any, runs_db: Any
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """What an entry did to pending_q (the keys it put and deleted, already written in
    ``txn``; ``runs``: the run records it wrote): the runs it put in, each with its record as
    it now stands, and the ids of the runs it took out."""
    added: list[tuple[str, bytes]] = []
    for key in puts:
        rid = keys.rid_of_queue_pending_key(key)
        raw = runs.get(rid)
        if raw is None:  # indexed without its record being written (not expected)
            raw = txn.get(rid, db=runs_db)
        if raw is not None:
            added.append((rid.decode(), bytes(raw)))
    return added, [keys.rid_of_queue_pending_key(key).decode() for key in deletes]


class Store:
    """The node's LMDB environment. Apply runs in pysyncobj's tick thread only; reads may come
    from any thread (each uses its own short read transaction, inside the read gate).

    ``map_size`` is the initial LMDB map; it grows online up to ``max_map_size`` (None: the
    initial size, no growth)."""

    def __init__(self, path: str, map_size: int = 4 << 30, max_map_size: int | None = None) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = path
        self._env = lmdb.open(
            path,
            mode=disk.FILE_MODE,  # data.mdb and lock.mdb
            map_size=map_size,
            max_dbs=len(keys.DBS) + 2,
            sync=False,
            metasync=False,
            subdir=True,
        )
        self._dbs = {name: self._env.open_db(name.encode()) for name in keys.DBS}
        # The names of the new directory and files must survive a power cut too.
        disk.fsync_dir(path)
        disk.fsync_dir(os.path.dirname(os.path.abspath(path)))
        self._apply_lock = threading.Lock()
        self._gate = _ReadGate()
        self.growth = MapGrowth(ceiling=max(map_size, max_map_size or map_size))
        #: called after the map grew, with (old size, new size) in bytes
        self.on_grown: Callable[[int, int], None] | None = None
        self.on_applied: Callable[[int, Result], None] | None = None
        # The leader's index of PENDING runs (schedd.server.pending), fed after each commit
        # (see PendingFeed); None: off (every follower).
        self._pending_feed: PendingFeed | None = None
        with self._env.begin(write=True) as txn:
            if txn.get(keys.SCHEMA, db=self._dbs["meta"]) is None:
                txn.put(keys.SCHEMA, keys.SCHEMA_VERSION, db=self._dbs["meta"])
        # A node restarted with a smaller --map-size opens at the size of its data: grow now,
        # before replay meets a full map.
        self.maybe_grow()

    def close(self) -> None:
        """Sync, then close LMDB, unless a snapshot copy still reads it in another thread: then
        the environment is left open for the process's exit (closing it would free the pages
        under the copy; everything committed is synced either way)."""
        self.sync()
        if self._gate.readers:
            log.warning(
                "event=store_left_open path=%s readers=%d: reads (a snapshot copy) are still "
                "open; LMDB is synced and closes with the process, a partial snapshot copy is "
                "removed at the next start",
                self.path,
                self._gate.readers,
            )
            return
        self._env.close()

    def sync(self) -> None:
        """Make every committed LMDB transaction durable (the node calls this once a second,
        right after syncing the Raft journal)."""
        with self._gate.reading():
            self._env.sync(True)

    # ---- map size ----------------------------------------------------------------------------

    @property
    def max_map_size(self) -> int:
        return self.growth.ceiling

    def map_size(self) -> int:
        with self._gate.reading():
            return int(self._env.info()["map_size"])

    def maybe_grow(
        self,
        *,
        full: bool = False,
        wait_s: float = 0.2,
        threshold: float | None = None,
        high_water: bool = False,
    ) -> bool:
        """Grow the map when :attr:`growth` says so (``full``: apply met MapFullError). True
        when it grew. Waits up to ``wait_s`` for the apply lock and for open reads to finish;
        gives up (False) rather than stall longer, the next call tries again.

        Why the short default: while it waits it holds the apply lock and keeps new reads out,
        so the Raft tick thread may wait too; 0.2 s stays well below an election timeout. Reads
        take milliseconds; a long one (a snapshot copy, a full-table scan) only defers the
        growth to the next second.

        ``threshold`` overrides the growth policy's; ``high_water`` counts the file's high-water
        mark as in use too (pages freed but not yet reusable: see :meth:`make_room_for_copy`)."""
        used, current = self.usage()
        if high_water:
            used = max(used, self.high_water())
        target = self.growth.next_size(used, current, full=full, threshold=threshold)
        if target is None:
            return False
        if not self._apply_lock.acquire(timeout=wait_s):
            return False
        try:
            with self._gate.exclusive(wait_s) as alone:
                if not alone:
                    log.info(
                        "event=map_grow_deferred path=%s: reads did not finish within %gs",
                        self.path,
                        wait_s,
                    )
                    return False
                current = int(self._env.info()["map_size"])  # another caller may have grown it
                if current >= target:
                    return False
                self._env.set_mapsize(target)
        finally:
            self._apply_lock.release()
        log.info(
            "event=map_grown from_mib=%d to_mib=%d used_mib=%d max_mib=%d path=%s",
            current // MIB,
            target // MIB,
            used // MIB,
            self.growth.ceiling // MIB,
            self.path,
        )
        if self.on_grown is not None:
            self.on_grown(current, target)
        return True

    # ---- apply -------------------------------------------------------------------------------

    def apply_entry(self, data: bytes, index: int) -> Result:
        """Apply one committed log entry (tick thread). Never raises.

        A full map is grown (up to the ceiling) and the entry applied again: the failed
        transaction was aborted, so the second attempt starts from the same state."""
        try:
            return self._apply_once(data, index)
        except lmdb.MapFullError:
            pass
        if self.maybe_grow(full=True, wait_s=30.0):
            try:
                return self._apply_once(data, index)
            except lmdb.MapFullError:
                pass
        used, current = self.usage()
        fatal(
            f"LMDB map is full at {self.path} applying log index {index} ({used // MIB} MiB in "
            f"use, map {current // MIB} MiB, ceiling {self.growth.ceiling // MIB} MiB): restart "
            "the node with a larger --max-map-size (every node the same), then delete jobs or set "
            "retention so the state shrinks"
        )
        raise AssertionError("unreachable")

    def _apply_once(self, data: bytes, index: int) -> Result:
        """One attempt at :meth:`apply_entry`; raises MapFullError, stops on anything else."""
        feed: PendingFeed | None = None
        added: list[tuple[str, bytes]] = []
        removed: list[str] = []
        try:
            with self._apply_lock, self._env.begin(write=True) as txn:
                writes, result = apply_writes(_TxnReader(txn, self._dbs), data, index)
                if result.code == UNSUPPORTED:
                    fatal(
                        f"log index {index} holds a command this version does not understand "
                        f"({result.message}): it was written by a newer schedd. Upgrade this "
                        "node to that version and restart it; the entry is not skipped"
                    )
                dbs, put, delete = self._dbs, txn.put, txn.delete
                feed = self._pending_feed
                if feed is None:
                    for (db, key), value in writes:
                        if value is None:
                            delete(key, db=dbs[db])
                        else:
                            put(key, value, db=dbs[db])
                else:  # the same, noting what changes pending_q on the way
                    puts: list[bytes] = []
                    deletes: list[bytes] = []
                    runs: dict[bytes, bytes] = {}
                    for (db, key), value in writes:
                        if value is None:
                            delete(key, db=dbs[db])
                            if db == "pending_q":
                                deletes.append(key)
                        else:
                            put(key, value, db=dbs[db])
                            if db == "runs":
                                runs[key] = value
                            elif db == "pending_q":
                                puts.append(key)
                    if puts or deletes:
                        added, removed = _pending_changes(puts, deletes, runs, txn, dbs["runs"])
        except lmdb.MapFullError:
            raise
        except lmdb.Error as e:
            fatal(
                f"LMDB failed at {self.path} applying log index {index}: {e}; "
                "check the disk (space, permissions) and restart the node"
            )
            raise
        except Exception:  # a bug in apply: stopping beats diverging from the other replicas
            log.exception("apply raised at log index %d", index)
            fatal(
                f"apply raised at log index {index}; this is a bug, please report it with the log"
            )
            raise
        if feed is not None and (added or removed):
            feed(index, added, removed)
        if self.on_applied is not None:
            try:
                self.on_applied(index, result)
            except Exception:
                log.exception("on_applied hook failed")
        return result

    def apply_members(self, members_json: bytes, index: int) -> bool:
        """Apply a membership entry (tick thread): record the member list it carries and its
        index, unless that index is already applied (a replay after a restart: False). Stops
        the node on an LMDB error, like :meth:`apply_entry`."""
        try:
            with self._apply_lock, self._env.begin(write=True) as txn:
                meta = self._dbs["meta"]
                raw = txn.get(keys.APPLIED_INDEX, db=meta)
                if raw is not None and index <= keys.from_be64(bytes(raw)):
                    return False
                txn.put(keys.MEMBERS, members_json, db=meta)
                txn.put(keys.APPLIED_INDEX, keys.be64(index), db=meta)
        except lmdb.Error as e:
            fatal(
                f"LMDB failed at {self.path} applying log index {index} (a membership change): "
                f"{e}; check the disk (space, permissions) and restart the node"
            )
            raise
        return True

    def feature_level(self) -> int:
        """The cluster's feature level as applied here (schedd.state.apply.features)."""
        with self.read() as txn:
            raw = txn.get(keys.FEATURE_LEVEL, db=self._dbs["meta"])
        return 0 if raw is None else keys.from_be64(bytes(raw))

    def node_features(self) -> bytes | None:
        """The highest feature level each node reported (JSON), None before any report."""
        with self.read() as txn:
            raw = txn.get(keys.NODE_FEATURES, db=self._dbs["meta"])
        return None if raw is None else bytes(raw)

    @staticmethod
    def recorded_members(path: str) -> bytes | None:
        """:meth:`members` of the state in ``path`` without opening it for writing (None when
        there is no state yet). For a node deciding, before it starts, whether to join."""
        if not os.path.exists(os.path.join(path, "data.mdb")):
            return None
        env = lmdb.open(path, readonly=True, lock=False, max_dbs=len(keys.DBS) + 2, subdir=True)
        try:
            with env.begin() as txn:
                try:
                    meta = env.open_db(b"meta", txn=txn, create=False)
                except lmdb.NotFoundError:
                    return None
                raw = txn.get(keys.MEMBERS, db=meta)
                return None if raw is None else bytes(raw)
        finally:
            env.close()

    def members(self) -> bytes | None:
        """The member list of the last applied membership change (JSON), None before any."""
        with self.read() as txn:
            raw = txn.get(keys.MEMBERS, db=self._dbs["meta"])
        return None if raw is None else bytes(raw)

    # ---- reads -------------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction[bytes]]:
        with self._gate.reading(), self._env.begin(buffers=False) as txn:
            yield txn

    def db(self, name: str) -> Any:
        return self._dbs[name]

    def applied_index(self) -> int:
        with self.read() as txn:
            raw = txn.get(keys.APPLIED_INDEX, db=self._dbs["meta"])
        return 0 if raw is None else keys.from_be64(bytes(raw))

    def get_job(self, name: str) -> types_pb2.Job | None:
        with self.read() as txn:
            raw = txn.get(name.encode(), db=self._dbs["jobs"])
        return None if raw is None else types_pb2.Job.FromString(raw)

    def get_jobs(self, names: Sequence[str]) -> list[types_pb2.Job | None]:
        """The jobs named, in order (None: no such job), from one read transaction: a read
        transaction per job cost the leader's tick 4-5 µs per due job."""
        db = self._dbs["jobs"]
        with self.read() as txn:
            raws = [txn.get(name.encode(), db=db) for name in names]
        return [None if raw is None else types_pb2.Job.FromString(raw) for raw in raws]

    def tokens_version(self) -> int:
        """``meta.tokens_version``: grows with every token change (0: none yet)."""
        with self.read() as txn:
            raw = txn.get(keys.TOKENS_VERSION, db=self._dbs["meta"])
        return 0 if raw is None else keys.from_be64(bytes(raw))

    def get_namespace(self, ns: str) -> types_pb2.Namespace | None:
        with self.read() as txn:
            raw = txn.get(ns.encode(), db=self._dbs["namespaces"])
        return None if raw is None else types_pb2.Namespace.FromString(raw)

    def list_namespaces(self) -> list[types_pb2.Namespace]:
        with self.read() as txn:
            return [
                types_pb2.Namespace.FromString(bytes(v))
                for _k, v in txn.cursor(db=self._dbs["namespaces"])
            ]

    def count_namespace(self, ns: str) -> tuple[int, int]:
        """(jobs, stored runs) of a namespace without a quota record: a walk of both tables
        (of the namespace's key range, or for ``default`` of all keys)."""
        pre = namespaces.prefix(ns)
        counts = []
        with self.read() as txn:
            for db in ("jobs", "runs"):
                cur = txn.cursor(db=self._dbs[db])
                n = 0
                ok = cur.set_range(pre) if pre else cur.first()
                while ok:
                    key = bytes(cur.key())
                    if pre and not key.startswith(pre):
                        break
                    n += pre != b"" or namespaces.in_namespace(key, ns)
                    ok = cur.next()
                counts.append(n)
        return counts[0], counts[1]

    def list_tokens(self) -> list[types_pb2.Token]:
        """Every token record (revoked ones too), by name."""
        with self.read() as txn:
            return [
                types_pb2.Token.FromString(bytes(v)) for _k, v in txn.cursor(db=self._dbs["tokens"])
            ]

    def list_audit(
        self, limit: int, before_index: int = 0, principal: str = "", target: str = ""
    ) -> tuple[list[types_pb2.AuditRecord], int]:
        """Audit records, newest first, below ``before_index`` (0: from the newest), filtered;
        and the index to pass next (0: no more). Reads at most ``limit`` matches and scans at
        most 100 x ``limit`` records, so a rare filter answers in pages rather than all at once.
        A page ends between entries, never inside one: an entry of a bulk create holds one
        record per job (up to 1,000), so such a page may hold more than ``limit``."""
        out: list[types_pb2.AuditRecord] = []
        budget = max(1, limit) * 100
        next_before = 0
        last = -1  # the index of the record read before
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs["audit"])
            ok = cur.set_range(keys.be64(before_index)) if before_index else cur.last()
            if ok and before_index:
                ok = cur.prev()  # set_range lands at or after before_index
            elif not ok and before_index:
                ok = cur.last()
            while ok:
                idx = keys.from_be64(bytes(cur.key()))
                if before_index and idx >= before_index:
                    ok = cur.prev()
                    continue
                if (len(out) >= limit or budget <= 0) and idx != last:
                    next_before = idx + 1
                    break
                budget -= 1
                last = idx
                rec = types_pb2.AuditRecord.FromString(bytes(cur.value()))
                if (not principal or rec.principal == principal) and (
                    not target or rec.target == target
                ):
                    out.append(rec)
                ok = cur.prev()
        return out, next_before

    def usage(self) -> tuple[int, int]:
        """(bytes in use, map size) of the LMDB environment. In use: the pages of every
        database (free pages LMDB will reuse do not count) plus LMDB's own two meta pages."""
        with self._gate.reading():
            psize = self._env.stat()["psize"]
            with self._env.begin() as txn:
                pages = 2
                for db in [None, *self._dbs.values()]:
                    st = txn.stat(db) if db is not None else self._env.stat()
                    pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            return pages * psize, self._env.info()["map_size"]

    def high_water(self) -> int:
        """Bytes up to the LMDB file's highest page in use: where the next new page goes when
        no freed page may be reused."""
        with self._gate.reading():
            return int((self._env.info()["last_pgno"] + 1) * self._env.stat()["psize"])

    def make_room_for_copy(self) -> bool:
        """Before a snapshot copy (tick thread): while its read transaction is open, LMDB reuses
        no page freed after it began, so every write takes new pages past the high-water mark,
        and the map cannot grow (a growth waits for readers). A copy of a large state lasts
        seconds: grow now when the high-water mark is past half the map, rather than meet a
        full map during the copy and stall apply until it ends. True when it grew."""
        return self.maybe_grow(wait_s=0.05, threshold=0.5, high_water=True)

    def get_run(self, rid: str) -> types_pb2.Run | None:
        with self.read() as txn:
            raw = txn.get(rid.encode(), db=self._dbs["runs"])
        return None if raw is None else types_pb2.Run.FromString(raw)

    def list_jobs(
        self,
        after: str = "",
        limit: int = 1000,
        max_bytes: int | None = None,
        namespace: str | None = None,
    ) -> list[types_pb2.Job]:
        """Jobs after ``after`` (a stored name) in name order: at most ``limit``, and with
        ``max_bytes`` no more than fit in that many encoded bytes (at least one), so a page of
        big payloads stays under the gRPC message limit; the caller pages on from the last name.
        With ``namespace``, only that namespace's jobs (schedd.namespaces): a key range for a
        named one; ``default`` skips the keys of the others."""
        out: list[types_pb2.Job] = []
        budget = max_bytes
        pre = namespaces.prefix(namespace) if namespace is not None else b""
        sep = namespaces.SEP.encode()
        skip_qualified = namespace == namespaces.DEFAULT
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs["jobs"])
            if after:
                ok = cur.set_range(after.encode() + b"\x00")
            else:
                ok = cur.set_range(pre) if pre else cur.first()
            while ok and len(out) < limit:
                key = bytes(cur.key())
                if pre and not key.startswith(pre):
                    break
                if skip_qualified and sep in key:
                    ok = cur.next()
                    continue
                raw = cur.value()
                if budget is not None:
                    budget -= len(raw) + 8
                    if budget < 0 and out:
                        break
                out.append(types_pb2.Job.FromString(raw))
                ok = cur.next()
        return out

    def list_runs(
        self, job: str = "", limit: int = 100, state: int = 0, namespace: str | None = None
    ) -> list[types_pb2.Run]:
        """The newest ``limit`` runs (of one job, by scheduled time; or all, by run id), oldest
        first. With ``state``, only runs in that state: there is no index by state, so this
        walks the runs (of the job, or all of them) until it has ``limit``: O(runs) at worst.
        With ``namespace`` (and no job), only that namespace's runs."""
        return self.list_runs_page(job, limit, state, namespace)[0]

    def list_runs_page(
        self,
        job: str = "",
        limit: int = 100,
        state: int = 0,
        namespace: str | None = None,
        before: bytes | None = None,
        budget_bytes: int | None = None,
    ) -> tuple[list[types_pb2.Run], bytes | None]:
        """One page of :meth:`list_runs`, walking from the newest run (or from just before the
        key ``before``) towards older ones. Stops at ``limit`` runs, or once the stored runs
        taken exceed ``budget_bytes`` (at least one is always taken). Returns the runs, oldest
        first, and, when it stopped before the oldest run, the key to pass as ``before`` to
        continue (None: nothing older is left). Keys are ``runs_by_job`` keys for a job's
        runs, run ids for all runs (the service checks a token's key belongs to its listing)."""
        out: list[types_pb2.Run] = []
        spent = 0
        last: bytes | None = None  # key of the last run taken
        more = False  # stopped before the end of the walk

        def keep(raw: bytes | memoryview) -> bool:
            """Take the run if it matches; True when it was taken."""
            nonlocal spent
            run = types_pb2.Run.FromString(bytes(raw))
            if state and run.state != state:
                return False
            out.append(run)
            spent += len(raw)
            return True

        def full() -> bool:
            return len(out) >= limit or (budget_bytes is not None and spent > budget_bytes)

        with self.read() as txn:
            if job:
                for rid, raw in self._job_runs_backwards(txn, job, before):
                    if full():
                        more = True
                        break
                    if keep(raw):
                        last = keys.by_job_key(job, out[-1].scheduled_ms, rid)
            else:
                pre = namespaces.prefix(namespace) if namespace is not None else b""
                cur = txn.cursor(db=self._dbs["runs"])
                # from just past the namespace's last id ("ns0" sorts right after "ns/")
                end = before
                if end is None and pre:
                    end = pre[:-1] + bytes([pre[-1] + 1])
                if end is not None:
                    ok = cur.prev() if cur.set_range(end) else cur.last()
                else:
                    ok = cur.last()
                only = namespace if namespace == namespaces.DEFAULT else None
                while ok:
                    key = bytes(cur.key())
                    if pre and not key.startswith(pre):
                        break
                    if full():
                        more = True
                        break
                    if (only is None or namespaces.in_namespace(key, only)) and keep(cur.value()):
                        last = key
                    ok = cur.prev()
        out.reverse()
        return out, (last if more else None)

    def finished_runs_newest_first(self, job: str) -> Generator[types_pb2.Run, None, None]:
        """The job's finished runs (any incarnation), newest scheduled first; lazily, in one
        read transaction held until the iterator is exhausted or closed."""
        with self.read() as txn:
            for _, raw in self._job_runs_backwards(txn, job):
                run = types_pb2.Run.FromString(raw)
                if run.state in FINISHED_STATES:
                    yield run

    def requests_after(self, after: str, limit: int) -> list[tuple[str, int]]:
        """(request id, recorded at ms; 0 if unknown) of up to ``limit`` request records after
        ``after`` in key order (retention walks them in slices)."""
        out: list[tuple[str, int]] = []
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs["requests"])
            ok = cur.set_range(after.encode() + b"\x00") if after else cur.first()
            while ok and len(out) < limit:
                out.append(
                    (_key(cur).decode(errors="replace"), request_recorded_at(bytes(cur.value())))
                )
                ok = cur.next()
        return out

    def runs_at_or_before(self, job: str, uid: int, at_ms: int, limit: int) -> list[types_pb2.Run]:
        """Records of one job incarnation scheduled at or before ``at_ms``, newest first."""
        out: list[types_pb2.Run] = []
        with self.read() as txn:
            for rid, raw in self._job_runs_backwards(
                txn, job, keys.by_job_prefix(job) + keys.be64(at_ms + 1)
            ):
                if len(out) >= limit:
                    break
                if keys.uid_of_run_id(rid) == uid:
                    out.append(types_pb2.Run.FromString(raw))
        return out

    def _job_runs_backwards(
        self, txn: lmdb.Transaction, job: str, before: bytes | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """(run id, stored run) of ``job``'s runs keyed before ``before`` in ``runs_by_job``
        (default: all of them), newest scheduled first."""
        prefix = keys.by_job_prefix(job)
        if before is None:
            before = prefix[:-1] + b"\x01"  # just past the last key of this job
        runs = self._dbs["runs"]
        cur = txn.cursor(db=self._dbs["runs_by_job"])
        ok = cur.prev() if cur.set_range(before) else cur.last()
        while ok and _key(cur).startswith(prefix):
            rid = _key(cur)[len(prefix) + 8 :]
            raw = txn.get(rid, db=runs)
            if raw is not None:
                yield rid.decode(), bytes(raw)
            ok = cur.prev()

    def _until(self, db: str, now_ms: int, limit: int) -> list[tuple[int, str]]:
        """Entries of a time-ordered index with time <= now_ms, earliest first: O(result)."""
        out: list[tuple[int, str]] = []
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs[db])
            ok = cur.first()
            while ok and len(out) < limit:
                t, ident = keys.split_time_key(_key(cur))
                if t > now_ms:
                    break
                out.append((t, ident))
                ok = cur.next()
        return out

    def _first_time(self, db: str) -> int | None:
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs[db])
            return keys.split_time_key(_key(cur))[0] if cur.first() else None

    def due_until(self, now_ms: int, limit: int) -> list[tuple[int, str]]:
        """(due_ms, job name) with due_ms <= now_ms, earliest first. O(due), not O(jobs)."""
        return self._until("due", now_ms, limit)

    def next_due_ms(self) -> int | None:
        return self._first_time("due")

    def dependency_deadlines_until(self, now_ms: int, limit: int) -> list[str]:
        """Run ids of runs waiting for upstreams past their dependency deadline, earliest first."""
        return [rid for _, rid in self._until("dep_deadline", now_ms, limit)]

    def waiting_runs(self, job: str, limit: int) -> list[types_pb2.Run]:
        """The runs of ``job`` waiting for upstreams (at most ``limit``)."""
        prefix = keys.dep_waiting_prefix(job)
        out: list[types_pb2.Run] = []
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs["dep_waiting"])
            ok = cur.set_range(prefix)
            while ok and len(out) < limit:
                k = _key(cur)
                if not k.startswith(prefix):
                    break
                raw = txn.get(k[len(prefix) :], db=self._dbs["runs"])
                if raw is not None:
                    out.append(types_pb2.Run.FromString(raw))
                ok = cur.next()
        return out

    def pending_until(self, now_ms: int, limit: int) -> list[types_pb2.Run]:
        """PENDING runs whose not-before time has come, earliest first."""
        rids = [rid for _, rid in self._until("pending", now_ms, limit)]
        db = self._dbs["runs"]
        with self.read() as txn:  # one transaction, not one per run
            raws = [txn.get(rid.encode(), db=db) for rid in rids]
        return [types_pb2.Run.FromString(raw) for raw in raws if raw is not None]

    def watch_pending(self, feed: PendingFeed | None) -> None:
        """Call ``feed(index, [(run id, record)] put into pending_q, ids taken out)`` after every
        entry committed from now on that changes ``pending_q`` (None: stop). Set under the apply lock:
        an entry either committed before this returns (a snapshot taken afterwards holds it) or
        reaches ``feed``."""
        with self._apply_lock:
            self._pending_feed = feed

    def pending_snapshot(self, limit: int) -> tuple[int, list[tuple[str, bytes]]]:
        """(applied index, [(run id, record)] of every run with a ``pending_q`` key) from one
        read transaction; at most ``limit`` runs."""
        out: list[tuple[str, bytes]] = []
        with self.read() as txn:
            raw = txn.get(keys.APPLIED_INDEX, db=self._dbs["meta"])
            applied = 0 if raw is None else keys.from_be64(bytes(raw))
            runs = self._dbs["runs"]
            for k in txn.cursor(db=self._dbs["pending_q"]).iternext(values=False):
                rid = keys.rid_of_queue_pending_key(bytes(k))
                record = txn.get(rid, db=runs)
                if record is not None:
                    out.append((rid.decode(), bytes(record)))
                    if len(out) >= limit:
                        break
        return applied, out

    def pending_in_queue(self, queue: str, now_ms: int, limit: int) -> list[types_pb2.Run]:
        """PENDING runs of one queue whose not-before time has come, earliest first."""
        prefix = keys.queue_pending_prefix(queue)
        out: list[types_pb2.Run] = []
        with self.read() as txn:
            cur = txn.cursor(db=self._dbs["pending_q"])
            ok = cur.set_range(prefix)
            while ok and len(out) < limit:
                k = _key(cur)
                if not k.startswith(prefix) or keys.from_be64(k[len(prefix) :]) > now_ms:
                    break
                raw = txn.get(k[len(prefix) + 8 :], db=self._dbs["runs"])
                if raw is not None:
                    out.append(types_pb2.Run.FromString(raw))
                ok = cur.next()
        return out

    def next_pending_ms(self) -> int | None:
        return self._first_time("pending")

    def leases(self) -> dict[str, tuple[int, str]]:
        """Every outstanding lease: run id -> (fence, worker id)."""
        with self.read() as txn:
            return {
                bytes(k).decode(): keys.split_lease_value(bytes(v))
                for k, v in txn.cursor(db=self._dbs["leases"])
            }

    def lease_deadlines(self) -> dict[str, tuple[int, int, int]]:
        """Run timeouts of the outstanding leases: run id -> (fence, deadline ms, timeout ms), for
        runs whose job has a ``run_timeout_ms`` (deadline = the grant's ``started_ms`` + it).
        O(leases)."""
        out: dict[str, tuple[int, int, int]] = {}
        timeouts: dict[str, int] = {}
        with self.read() as txn:
            for k, v in txn.cursor(db=self._dbs["leases"]):
                raw = txn.get(bytes(k), db=self._dbs["runs"])
                if raw is None:
                    continue
                run = types_pb2.Run.FromString(raw)
                if run.job not in timeouts:
                    jraw = txn.get(run.job.encode(), db=self._dbs["jobs"])
                    timeouts[run.job] = types_pb2.Job.FromString(jraw).run_timeout_ms if jraw else 0
                if timeouts[run.job] > 0:
                    fence, _ = keys.split_lease_value(bytes(v))
                    out[run.run_id] = (fence, run.started_ms + timeouts[run.job], timeouts[run.job])
        return out

    def digest(self) -> str:
        with self.read() as txn:
            return state_digest((db, iter(txn.cursor(db=self._dbs[db]))) for db in keys.DBS)

    def counts(self) -> dict[str, int]:
        with self.read() as txn:
            return {db: txn.stat(self._dbs[db])["entries"] for db in keys.DBS}

    # ---- snapshots (pysyncobj serializer hooks; tick thread) --------------------------------

    def write_snapshot(self, filename: str, raft_meta: tuple[Any, Any, Any]) -> None:
        """Write a snapshot of the state now (see :meth:`snapshot_source`) to ``filename``."""
        self.snapshot_source(raft_meta).write(filename)

    def snapshot_source(self, raft_meta: tuple[Any, Any, Any]) -> SnapshotSource:
        """Hold the state as it is now for a snapshot that another thread may write later.

        Called in the tick thread between applies, so the state is exactly at the last applied
        entry, whatever is applied while the copy runs (LMDB's MVCC). Until the source is
        written or closed, LMDB cannot reuse the pages it pins and the map cannot grow (a
        growth waits, see :meth:`maybe_grow`)."""
        release = self._gate.hold()
        try:
            txn = self._env.begin(buffers=False)
        except BaseException:
            release()
            raise
        return SnapshotSource(self._env, txn, release, raft_meta)

    @staticmethod
    def snapshot_last_index(filename: str) -> int:
        """The last log index a snapshot file covers (0 when there is none)."""
        try:
            size = os.path.getsize(filename)
            with open(filename, "rb") as f:
                f.seek(size - _TRAILER.size)
                mlen, magic = _TRAILER.unpack(f.read(_TRAILER.size))
                if magic != SNAPSHOT_MAGIC:
                    return 0
                f.seek(size - _TRAILER.size - mlen)
                return int(json.loads(f.read(mlen))["last"][1])
        except (OSError, ValueError, KeyError, IndexError, struct.error):
            return 0

    def read_snapshot(self, filename: str) -> tuple[Any, Any, Any]:
        """Return pysyncobj's metadata; bring the local state up to the snapshot if it is behind.

        The local LMDB is kept when its applied index is at or past the snapshot's (only
        committed entries are ever applied, so it cannot have diverged). Otherwise its contents
        are replaced, in one write transaction, by the image's.
        """
        size = os.path.getsize(filename)
        with open(filename, "rb") as f:
            f.seek(size - _TRAILER.size)
            mlen, magic = _TRAILER.unpack(f.read(_TRAILER.size))
            if magic != SNAPSHOT_MAGIC:
                raise ValueError(f"{filename} is not a schedd snapshot")
            f.seek(size - _TRAILER.size - mlen)
            raft_meta = _decode_raft_meta(json.loads(f.read(mlen)))
            snap_index = raft_meta[0][1]  # (last applied entry, the one before, cluster)
            if self.applied_index() >= snap_index:
                log.info(
                    "snapshot at index %d: local state is at %d, kept",
                    snap_index,
                    self.applied_index(),
                )
                return raft_meta
            tmp = tempfile.mkdtemp(
                prefix="snapshot-", dir=os.path.dirname(self.path.rstrip("/")) or "."
            )
            try:
                f.seek(0)
                left = size - _TRAILER.size - mlen
                with open(os.path.join(tmp, "data.mdb"), "wb") as out:
                    while left:
                        chunk = f.read(min(left, 1 << 20))
                        out.write(chunk)
                        left -= len(chunk)
                self._restore_from(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("restored state from snapshot at index %d", snap_index)
        return raft_meta

    # ---- backups (schedctl snapshot save, schedd restore) ------------------------------------

    def save_image(self, fd: int, rate_bytes_s: float = 0.0) -> tuple[int, int, int, int]:
        """Write a compacted copy of the state to ``fd``, consistent as of one read transaction;
        (applied index, next fence, jobs, runs) of that same transaction. Any thread: applies go
        on meanwhile (LMDB's MVCC), only a map growth waits for the copy. ``rate_bytes_s`` > 0
        paces it (:func:`copy_paced`)."""
        with self.read() as txn:
            meta = self._dbs["meta"]
            raw = txn.get(keys.APPLIED_INDEX, db=meta)
            applied = 0 if raw is None else keys.from_be64(bytes(raw))
            raw = txn.get(keys.NEXT_FENCE, db=meta)
            next_fence = 1 if raw is None else keys.from_be64(bytes(raw))
            jobs = txn.stat(self._dbs["jobs"])["entries"]
            runs = txn.stat(self._dbs["runs"])["entries"]
            if rate_bytes_s > 0:
                copy_paced(self._env, txn, fd, "the backup image", rate_bytes_s)
            else:
                self._env.copyfd(fd, compact=True, txn=txn)
        return applied, next_fence, jobs, runs

    def restore_image(self, path: str) -> None:
        """Replace the whole state by the LMDB image in directory ``path`` (its ``data.mdb``),
        in one write transaction. For ``schedd restore`` into a new, empty node: the old
        cluster's member list is left out (the new cluster's members are its nodes' flags)."""
        self._restore_from(path)
        with self._apply_lock, self._env.begin(write=True) as txn:
            txn.delete(keys.MEMBERS, db=self._dbs["meta"])

    def _restore_from(self, path: str) -> None:
        src = lmdb.open(path, readonly=True, lock=False, max_dbs=len(keys.DBS) + 2, subdir=True)
        try:
            with self._apply_lock, src.begin() as stx, self._env.begin(write=True) as dtx:
                for name in keys.DBS:
                    dst = self._dbs[name]
                    dtx.drop(dst, delete=False)
                    try:
                        sdb = src.open_db(name.encode(), txn=stx, create=False)
                    except lmdb.NotFoundError:
                        continue
                    for k, v in stx.cursor(db=sdb):
                        dtx.put(k, v, db=dst)
        finally:
            src.close()


def _encode_entry(entry: Any) -> list[Any]:
    command, idx, term = entry
    return [base64.b64encode(bytes(command)).decode(), idx, term]


def _encode_raft_meta(meta: tuple[Any, Any, Any]) -> dict[str, Any]:
    last, prev, cluster = meta
    return {
        "last": _encode_entry(last),
        "prev": _encode_entry(prev),
        "cluster": sorted(str(getattr(n, "id", n)) for n in cluster),
    }


def _decode_raft_meta(d: dict[str, Any]) -> tuple[Any, Any, Any]:
    from pysyncobj.node import TCPNode

    def entry(e: list[Any]) -> tuple[bytes, int, int]:
        return (base64.b64decode(e[0]), int(e[1]), int(e[2]))

    return (entry(d["last"]), entry(d["prev"]), {TCPNode(a) for a in d["cluster"]})
