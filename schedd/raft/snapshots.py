"""Log compaction's snapshot copy, in a background thread instead of pysyncobj's tick thread.

pysyncobj writes a snapshot by calling the custom serializer in its tick thread and renaming
the file into place right after. schedd's serializer copies the whole LMDB: 1.4-3.1 s at a
million jobs (``bench/compaction.py``), longer than the election timeout, so every compaction
of the leader cost a leader change and every compaction of a follower a missed heartbeat round.

:class:`BackgroundSnapshots` replaces pysyncobj's ``Serializer`` object (same file, same
transmission code) and changes only when the work happens:

* ``serialize`` (tick thread, between applies) opens the read transaction that fixes the
  state at the last applied entry, the one the Raft metadata names, then starts a thread that
  writes it to ``<snapshot>.tmp`` and syncs it. The tick thread returns at once.
* ``checkSerializing`` (tick thread, every tick) answers SERIALIZING while the thread runs.
  Once it is done, it renames the file into place *in the tick thread* and answers SUCCESS;
  pysyncobj then compacts the journal up to the snapshot (whose first step syncs the directory,
  so the rename is durable before any entry is dropped: the order of the synchronous path).
* While a copy runs, no snapshot is sent to a follower (pysyncobj's rule for its own forked
  serializer); transmissions in progress restart from the new file after it.
* A snapshot received from the leader while a copy runs supersedes it: the copy is discarded
  when it ends, never renamed over the newer file.
* A failed copy leaves the previous snapshot and the whole journal: the next compaction tries
  again.
* Shutdown cancels a running copy and waits for it to end (:meth:`wait`); a copy cut short by
  a crash leaves only ``<snapshot>.tmp``, removed at the next start.
* A file renamed over the previous snapshot (a copy, or one received from the leader) would
  free the old file's blocks inside the rename, in the tick thread: 0.59-0.60 s for 3 GB on
  ext4 (``python bench/snapshot_replace.py``). So the old file first gets a second name
  (``<snapshot>.old.N``, a hard link) and a thread frees it in steps after the rename
  (:func:`release`); one left by a crash is freed the same way at the next start.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.monotonic import monotonic
from pysyncobj.serializer import Serializer

from schedd.state import disk

log = logging.getLogger("schedd.raft")


class Source(Protocol):
    """A state held for a snapshot (:class:`schedd.state.store.SnapshotSource`)."""

    paused_s: float  # how long the last write waited for its pace

    def write(self, filename: str, rate_bytes_s: float = 0.0) -> int: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Copy:
    id: int
    source: Source
    generation: int
    started: float
    error: BaseException | None = None
    paused_s: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


#: how a compaction's copy ended (``on_done``'s outcome, and the metric's label)
KEPT, FAILED, SUPERSEDED = "kept", "failed", "superseded"
OUTCOMES = (KEPT, FAILED, SUPERSEDED)


def temporary_path(file_name: str) -> str:
    return file_name + ".tmp"


_aside_numbers = itertools.count(1)

#: the step :func:`release` frees a file by, and its pause between steps: a 3 GB snapshot freed
#: by the rename held a journal's fdatasync beside it up to 48-61 ms on the 2-core box, freed in
#: 64 MiB steps by a thread 13-14 ms (python bench/snapshot_replace.py --mib 3072)
RELEASE_STEP_BYTES = 64 << 20
RELEASE_PAUSE_S = 0.01


def set_aside(file_name: str) -> str | None:
    """Give ``file_name`` a second name, so that renaming another file over it frees nothing;
    the name to :func:`release` afterwards (None: there was no file)."""
    aside = f"{file_name}.old.{os.getpid()}.{next(_aside_numbers)}"
    try:
        os.link(file_name, aside)
    except FileNotFoundError:
        return None
    return aside


def release(path: str) -> None:
    """Free the file ``path`` off the caller's thread: unlink its name, then truncate it in
    steps of :data:`RELEASE_STEP_BYTES` before closing it. Errors are logged, never raised (the
    file is garbage; what fails here is retried at the next start)."""
    threading.Thread(target=_free, args=(path,), name="snapshot-release", daemon=True).start()


def release_leftovers(file_name: str) -> None:
    """At start: release the set-aside files a crash left beside ``file_name``."""
    d = os.path.dirname(os.path.abspath(file_name))
    prefix = os.path.basename(file_name) + ".old."
    for name in os.listdir(d):
        if name.startswith(prefix):
            release(os.path.join(d, name))


def _free(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        log.warning("event=snapshot_release_failed path=%s error=%r", path, e)
        return
    try:
        os.unlink(path)
        size = os.fstat(fd).st_size
        while size > 0:
            size = max(0, size - RELEASE_STEP_BYTES)
            os.ftruncate(fd, size)
            time.sleep(RELEASE_PAUSE_S)  # lets other syncs through between steps
    except OSError as e:
        log.warning("event=snapshot_release_failed path=%s error=%r", path, e)
    finally:
        os.close(fd)


class BackgroundSnapshots(Serializer):  # type: ignore[misc]  # (pysyncobj is untyped)
    """pysyncobj's snapshot file handling with the copy in a thread.

    ``open_source(raft_meta)`` runs in the tick thread and holds the state to copy;
    ``on_done(started, ended, outcome, paused_s)`` runs in the tick thread when a copy ends:
    ``outcome`` is ``KEPT`` (renamed into place, the journal is compacted next), ``FAILED`` or
    ``SUPERSEDED`` (a snapshot from the leader came meanwhile); ``paused_s`` of its time the
    copy waited for its pace, ``rate_bytes_s`` (0: none)."""

    def __init__(
        self,
        file_name: str,
        transmission_batch_size: int,
        deserializer: Callable[[str], Any],
        open_source: Callable[[tuple[Any, Any, Any]], Source],
        on_done: Callable[[float, float, str, float], None],
        rate_bytes_s: float = 0.0,
    ) -> None:
        super().__init__(
            file_name, transmission_batch_size, False, _never_called, deserializer, None
        )
        self._file = file_name
        self._open_source = open_source
        self._on_done = on_done
        self._rate = rate_bytes_s
        self._copy: _Copy | None = None
        self._generation = 0  # snapshots received from the leader
        try:
            os.unlink(temporary_path(file_name))  # a copy a crash cut short
        except FileNotFoundError:
            pass
        release_leftovers(file_name)

    @property
    def copying(self) -> bool:
        return self._copy is not None

    # ---- pysyncobj's calls (tick thread) -----------------------------------------------------

    def serialize(self, data: Any, id: int) -> None:  # noqa: A002 (pysyncobj's signature)
        pid: int = getattr(self, "_Serializer__pid")  # noqa: B009 (pysyncobj's private name)
        if self._copy is not None or pid != 0:
            return
        started = monotonic()
        try:
            source = self._open_source(data[1:])  # (last applied entry, the one before, members)
        except Exception:
            log.exception("event=log_compaction_failed step=open")
            self._on_done(started, monotonic(), FAILED, 0.0)
            return
        copy = _Copy(id=id, source=source, generation=self._generation, started=started)
        self._copy = copy
        self._Serializer__pid = -3  # not 0: pysyncobj sends no snapshot meanwhile
        threading.Thread(
            target=self._write, args=(copy,), name="snapshot-copy", daemon=True
        ).start()

    def checkSerializing(self) -> tuple[Any, int | None]:  # noqa: N802 (pysyncobj's name)
        copy = self._copy
        if copy is None:
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        if not copy.done.is_set():
            return SERIALIZER_STATE.SERIALIZING, copy.id
        self._copy = None
        self._Serializer__pid = 0
        tmp = temporary_path(self._file)
        ended = monotonic()
        if copy.error is not None:
            _remove(tmp)
            log.error(
                "event=log_compaction_failed step=copy error=%r: the previous snapshot and the "
                "whole journal are kept; check the disk of %s (space, permissions)",
                copy.error,
                os.path.dirname(os.path.abspath(self._file)),
            )
            self._on_done(copy.started, ended, FAILED, copy.paused_s)
            return SERIALIZER_STATE.FAILED, copy.id
        if copy.generation != self._generation:
            _remove(tmp)
            log.info("event=log_compaction_superseded index=%d: a newer snapshot came", copy.id)
            self._on_done(copy.started, ended, SUPERSEDED, copy.paused_s)
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        aside = set_aside(self._file)
        try:
            disk.rename(tmp, self._file)
        except OSError as e:
            _remove(tmp)
            if aside is not None:
                _remove(aside)  # the snapshot still has its own name: this frees nothing
            log.error("event=log_compaction_failed step=rename error=%r", e)
            self._on_done(copy.started, ended, FAILED, copy.paused_s)
            return SERIALIZER_STATE.FAILED, copy.id
        # (first: a transmission's open file of the old snapshot must not be its last holder)
        self._restart_transmissions()
        if aside is not None:
            release(aside)
        self._on_done(copy.started, ended, KEPT, copy.paused_s)
        return SERIALIZER_STATE.SUCCESS, copy.id

    def setTransmissionData(self, data: Any) -> bool:  # noqa: N802 (pysyncobj's name)
        # pysyncobj renames the received file over the snapshot on the last chunk
        last = data is not None and bool(data[2])
        aside = set_aside(self._file) if last else None
        try:
            complete: bool = super().setTransmissionData(data)
        except BaseException:
            if aside is not None:
                _remove(aside)
            raise
        if aside is not None:
            if complete:
                release(aside)
            else:
                _remove(aside)  # not replaced: the snapshot still has its own name
        if complete:  # a snapshot from the leader is in place: a running copy is older
            self._generation += 1
        return complete

    # ---- shutdown ----------------------------------------------------------------------------

    def wait(self, timeout_s: float) -> bool:
        """At shutdown (the tick thread stopped): cancel a running copy, wait for it to end and
        drop it; True when none is left running."""
        copy = self._copy
        if copy is None:
            return True
        copy.source.cancel()  # a paced copy stops within a moment; an unpaced one runs on
        if not copy.done.wait(timeout_s):
            return False
        # abandoned, never renamed: the journal still holds everything it covers
        self._copy = None
        self._Serializer__pid = 0
        _remove(temporary_path(self._file))
        return True

    # ---- the copy's thread -------------------------------------------------------------------

    def _write(self, copy: _Copy) -> None:
        try:
            copy.source.write(temporary_path(self._file), rate_bytes_s=self._rate)
        except BaseException as e:  # reported by the tick thread
            copy.error = e
        finally:
            copy.paused_s = copy.source.paused_s
            copy.source.close()
            copy.done.set()

    def _restart_transmissions(self) -> None:
        transmissions: dict[Any, dict[str, Any]] = self._Serializer__transmissions
        for t in transmissions.values():
            f = t.get("file")
            if f is not None:
                f.close()
        transmissions.clear()


def _never_called(filename: str, raft_meta: Any) -> None:
    raise AssertionError("BackgroundSnapshots.serialize replaces pysyncobj's serializer call")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
