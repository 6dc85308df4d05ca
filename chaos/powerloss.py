"""A power-loss model for one schedd node: a power cut drops exactly what was not synced.

After a cut, every file holds its content as of its last completed ``fsync``/``fdatasync``, and
every directory holds the entries it had at its last ``fsync``: a file created, renamed or
replaced after that fsync is back as it was (or gone), whatever reached the page cache.

How it works. :class:`Shadow` runs inside the node process (``chaos/powerloss_node.py``) and
replaces the functions of :mod:`schedd.state.disk` (the seam every durability-relevant file
operation of the Raft layer goes through) and :meth:`schedd.state.store.Store.sync` (LMDB's only
sync; ``Store.close`` calls it). After each real sync it copies what that sync made durable into
a shadow directory outside the data directory:

* ``fdatasync(fd, path)``: the file's content, keyed by inode. Writes observed through
  ``disk.pwrite`` / ``disk.truncate`` are copied incrementally (from the lowest offset written
  since the last sync to the end, then the copy is cut to the file's size); a file whose writes
  were not observed (a snapshot written by LMDB's ``copyfd``) is copied whole.
* ``fsync_path(path)`` and ``Store.sync``: the whole file (``state/data.mdb`` for LMDB).
* ``fsync_dir(path)``: the directory's listing, ``{name: inode}`` for regular files plus the
  names of subdirectories, for the data directory and ``state/``.

:func:`cut` runs in the harness once the node was SIGKILLed: it rebuilds the data directory
(``node.log`` aside) from the shadow and gives the modelled machine a new boot id, which
``chaos/powerloss_node.py`` hands to schedd in place of the kernel's (a power cut is a reboot:
schedd's own check for a machine crash must see one). Then the node restarts, and its new
process takes a new baseline: whatever exists at start is what survived.

Contracts:

* SIGKILL of the node at any instant leaves the shadow usable. The names map is replaced
  atomically (temporary file + rename); a whole copy goes to a temporary file renamed over the
  old copy; an incremental copy interrupted half-way leaves a torn tail, which is a sync cut
  short by the power cut (the journal repairs torn tails; nothing was acknowledged on it yet,
  since the copy runs inside the replaced sync, before it returns).
* A shadow whose baseline did not finish (no names map) means the node was killed before
  schedd opened anything: :func:`cut` leaves the data directory as it is.
* Inode numbers are reused once a file is freed. A content copy is keyed ``<inode>.<generation>``;
  an inode seen under a new name while a durable name that pointed to it now resolves to
  another inode is a new file (a new generation), so the durable name keeps the old content.

What it does not model: reordering or tearing *inside* one sync other than an interrupted
append (each sync is applied in one piece, LMDB's ``env.sync`` included), the durability of the
data directory's own entry in its parent, and directories other than the data dir and
``state/`` (their entries are kept as found; their contents are not tracked). It is stricter
than ext4 in ``data=ordered`` mode, which commits renames with its journal within seconds: here
an unsynced rename is simply lost.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable
from typing import Any

#: the node's log lives in its data directory; it is not data and survives every cut untouched
LOG_NAME = "node.log"
#: directories tracked, relative to the data directory ("" is the data directory itself)
TRACKED_DIRS = ("", "state")
NAMES_FILE = "names.json"
CONTENT_DIR = "content"
_CHUNK = 1 << 20


def _copy_range(src_fd: int, dst_fd: int, start: int, end: int) -> None:
    off = start
    while off < end:
        chunk = os.pread(src_fd, min(_CHUNK, end - off), off)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            n = os.pwrite(dst_fd, view, off)
            view = view[n:]
            off += n


def _open_fd_for_reading(fd: int) -> int:
    """A new read-only descriptor of the file behind ``fd`` (which may be write-only and
    whose name may have changed)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


class Shadow:
    """What the disk of one node process holds, as far as its syncs say. See the module
    docstring. Thread-safe (one lock); meant for one process and one data directory."""

    def __init__(self, data_dir: str, shadow_dir: str) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.shadow_dir = os.path.abspath(shadow_dir)
        self.content_dir = os.path.join(self.shadow_dir, CONTENT_DIR)
        self._lock = threading.RLock()
        #: durable listings: dir (relative) -> {"files": {name: key}, "dirs": [names]}
        self._durable: dict[str, dict[str, Any]] = {}
        self._gen: dict[int, int] = {}  # inode -> current generation
        #: inode -> (lowest offset changed since its last sync, the path it was written through)
        self._dirty: dict[int, tuple[int, str]] = {}
        self._observed: set[int] = set()  # inodes written through the seam (incremental copies)
        self._synced_stat: dict[
            str, tuple[int, int]
        ] = {}  # key -> (size, mtime_ns) at its last copy

    # ---- baseline ----------------------------------------------------------------------------

    def baseline(self) -> None:
        """Start a new shadow: everything in the data directory now counts as durable (the
        harness restored it after the last cut, or the node is new). Call before schedd opens
        anything. The names map is written last, so a shadow without one is unfinished."""
        with self._lock:
            try:  # first: a shadow killed while being wiped must read as unfinished, not as empty
                os.unlink(os.path.join(self.shadow_dir, NAMES_FILE))
            except FileNotFoundError:
                pass
            shutil.rmtree(self.shadow_dir, ignore_errors=True)
            os.makedirs(self.content_dir, exist_ok=True)
            self._durable.clear()
            for rel in TRACKED_DIRS:
                path = self._abs(rel)
                if rel and not os.path.isdir(path):
                    continue
                os.makedirs(path, exist_ok=True)
                listing = self._list(rel)
                for name, key in listing["files"].items():
                    self._copy_whole_path(os.path.join(path, name), key)
                self._durable[rel] = listing
            self._save_names()

    # ---- observers (called by the installed seam, around the real operation) -----------------

    def wrote(self, fd: int, path: str, offset: int) -> None:
        """A write at ``offset`` through the seam is about to happen (recorded before the
        write: recording a write that then fails only costs a larger copy)."""
        ino = os.fstat(fd).st_ino
        path = os.path.abspath(path)
        with self._lock:
            self._observed.add(ino)
            low, was = self._dirty.get(ino, (offset, path))
            self._dirty[ino] = (min(low, offset), path if was == path else "")

    def truncated(self, fd: int, path: str, size: int) -> None:
        self.wrote(fd, path, size)

    def synced_fd(self, fd: int, path: str) -> None:
        """``fdatasync(fd)`` returned: copy what it made durable."""
        with self._lock:
            src = _open_fd_for_reading(fd)
            try:
                self._copy_synced(src, path)
            finally:
                os.close(src)

    def synced_path(self, path: str) -> None:
        """``fsync`` of a file by name returned (or LMDB's ``env.sync``): copy it whole."""
        with self._lock:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._copy_synced(src, path, whole=True)
            finally:
                os.close(src)

    def synced_dir(self, path: str) -> None:
        """``fsync`` of a directory returned: its current entries are durable."""
        rel = self._rel(path)
        if rel not in TRACKED_DIRS:
            return
        with self._lock:
            self._durable[rel] = self._list(rel)
            self._save_names()

    # ---- install into this process -----------------------------------------------------------

    def install(self) -> Callable[[], None]:
        """Replace :mod:`schedd.state.disk`'s functions and ``Store.sync`` by observing versions;
        returns a function that puts the originals back (for in-process tests)."""
        from schedd.state import disk
        from schedd.state.store import Store

        real = {
            name: getattr(disk, name)
            for name in ("pwrite", "truncate", "fdatasync", "fsync_path", "fsync_dir")
        }
        real_sync = Store.sync
        shadow = self

        def pwrite(fd: int, path: str, data: bytes, offset: int) -> None:
            shadow.wrote(fd, path, offset)
            real["pwrite"](fd, path, data, offset)

        def truncate(fd: int, path: str, size: int) -> None:
            shadow.truncated(fd, path, size)
            real["truncate"](fd, path, size)

        def fdatasync(fd: int, path: str) -> None:
            real["fdatasync"](fd, path)
            shadow.synced_fd(fd, path)

        def fsync_path(path: str) -> None:
            real["fsync_path"](path)
            shadow.synced_path(path)

        def fsync_dir(path: str) -> None:
            real["fsync_dir"](path)
            shadow.synced_dir(path)

        def store_sync(store: Store) -> None:
            real_sync(store)
            shadow.synced_path(os.path.join(store.path, "data.mdb"))

        replaced = {
            "pwrite": pwrite,
            "truncate": truncate,
            "fdatasync": fdatasync,
            "fsync_path": fsync_path,
            "fsync_dir": fsync_dir,
        }
        for name, fn in replaced.items():
            setattr(disk, name, fn)
        Store.sync = store_sync  # type: ignore[method-assign,assignment]

        def uninstall() -> None:
            for name, fn in real.items():
                setattr(disk, name, fn)
            Store.sync = real_sync  # type: ignore[method-assign]

        return uninstall

    # ---- internals ---------------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        return os.path.join(self.data_dir, rel) if rel else self.data_dir

    def _rel(self, path: str) -> str | None:
        rel = os.path.relpath(os.path.abspath(path), self.data_dir)
        if rel == ".":
            return ""
        return None if rel.startswith("..") else rel

    def _key(self, ino: int, rel: str | None, name: str) -> str:
        """The content key of inode ``ino`` seen as ``rel/name`` now. A new generation when a
        durable name that pointed to this inode's current generation now resolves to another
        inode: the inode was freed and reused (a file replaced by a rename, then its inode
        given to a new file)."""
        gen = self._gen.get(ino, 0)
        key = f"{ino}.{gen}"
        for drel, listing in self._durable.items():
            for other, k in listing["files"].items():
                if k != key or (drel, other) == (rel, name):
                    continue
                try:
                    now = os.stat(os.path.join(self._abs(drel), other)).st_ino
                except FileNotFoundError:
                    continue  # renamed away (a temporary name): the same file under its new name
                if now != ino:
                    self._gen[ino] = gen + 1
                    return f"{ino}.{gen + 1}"
        return key

    def _list(self, rel: str) -> dict[str, Any]:
        path = self._abs(rel)
        files: dict[str, str] = {}
        dirs: list[str] = []
        with os.scandir(path) as it:
            for entry in it:
                if rel == "" and entry.name == LOG_NAME:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files[entry.name] = self._key(st.st_ino, rel, entry.name)
                elif stat.S_ISDIR(st.st_mode):
                    dirs.append(entry.name)
        return {"files": files, "dirs": sorted(dirs)}

    def _content(self, key: str) -> str:
        return os.path.join(self.content_dir, key)

    def _copy_synced(self, src: int, path: str, whole: bool = False) -> None:
        st = os.fstat(src)
        ino = st.st_ino
        rel = self._rel(os.path.dirname(os.path.abspath(path)))
        key = self._key(ino, rel, os.path.basename(path))
        dst = self._content(key)
        low, written_as = self._dirty.pop(ino, (None, ""))
        if whole or not os.path.exists(dst):
            self._copy_whole_fd(src, key)
        elif low is not None:
            # Incremental only when the writes were seen through the name being synced: a
            # record left by an earlier file on a reused inode (written through another name)
            # means a whole copy.
            if written_as == os.path.abspath(path):
                self._copy_incremental(src, dst, low, st.st_size)
            else:
                self._copy_whole_fd(src, key)
        elif ino not in self._observed or self._synced_stat.get(key) != (
            st.st_size,
            st.st_mtime_ns,
        ):
            # Unobserved writes (LMDB's copyfd into a snapshot): size and mtime at the last
            # copy tell whether anything changed. An observed file with no write since is as is.
            self._copy_whole_fd(src, key)
        self._synced_stat[key] = (st.st_size, st.st_mtime_ns)

    def _copy_incremental(self, src: int, dst: str, low: int, size: int) -> None:
        fd = os.open(dst, os.O_WRONLY | os.O_CLOEXEC)
        try:
            _copy_range(src, fd, min(low, size), size)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def _copy_whole_fd(self, src: int, key: str) -> None:
        size = os.fstat(src).st_size
        tmp = self._content(key) + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _copy_range(src, fd, 0, size)
        finally:
            os.close(fd)
        os.rename(tmp, self._content(key))  # a SIGKILL mid-copy leaves the previous copy

    def _copy_whole_path(self, path: str, key: str) -> None:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(src)
            self._copy_whole_fd(src, key)
            self._synced_stat[key] = (st.st_size, st.st_mtime_ns)
        finally:
            os.close(src)

    def _save_names(self) -> None:
        path = os.path.join(self.shadow_dir, NAMES_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump({"data_dir": self.data_dir, "dirs": self._durable}, f, sort_keys=True)
        os.rename(path + ".tmp", path)


def cut(data_dir: str, shadow_dir: str) -> dict[str, Any]:
    """Rebuild ``data_dir`` (its ``node.log`` aside) as a power cut leaves it, from the shadow
    a :class:`Shadow` kept, and give the modelled machine a new boot id (a power cut is a
    reboot). The node's process must be dead. Returns what was done (for the history):
    restored file sizes, names dropped, names that came back empty, whether a shadow existed."""
    data_dir = os.path.abspath(data_dir)
    _new_boot(shadow_dir)
    try:
        with open(os.path.join(shadow_dir, NAMES_FILE)) as f:
            durable: dict[str, dict[str, Any]] = json.load(f)["dirs"]
    except FileNotFoundError:
        # The process died before its baseline was complete, so before schedd opened anything.
        return {
            "restored": False,
            "why": "no finished shadow: the node died before opening its data",
        }
    summary: dict[str, Any] = {"restored": True, "files": {}, "dropped": [], "empty": []}
    content = os.path.join(shadow_dir, CONTENT_DIR)
    gone: set[str] = set()  # tracked directories whose own entry was not durable
    for rel in sorted(durable, key=lambda r: (r.count(os.sep), r)):
        if any(rel == g or rel.startswith(g + os.sep) for g in gone):
            continue
        path = os.path.join(data_dir, rel) if rel else data_dir
        listing = durable[rel]
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if rel == "" and name == LOG_NAME:
                continue
            if name in listing["files"]:
                continue
            p = os.path.join(path, name)
            if name in listing["dirs"] and os.path.isdir(p) and not os.path.islink(p):
                continue
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
            summary["dropped"].append(os.path.join(rel, name))
        for name in listing["dirs"]:
            os.makedirs(os.path.join(path, name), exist_ok=True)
        for sub in durable:
            parent, _, base = sub.rpartition(os.sep)
            if sub and parent == rel and base not in listing["dirs"]:
                gone.add(sub)
        for name, key in listing["files"].items():
            src = os.path.join(content, key)
            dst = os.path.join(path, name)
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            if os.path.exists(src):
                shutil.copyfile(src, dst)
            else:  # listed but never synced: the name survived, the data did not
                open(dst, "wb").close()
                summary["empty"].append(os.path.join(rel, name))
            summary["files"][os.path.join(rel, name)] = os.path.getsize(dst)
    return summary


def boot_id_path(shadow_dir: str) -> str:
    """The model's boot id of the machine a shadowed node runs on (next to its shadow: the
    shadow is wiped at every start, the boot id only by a cut)."""
    return os.path.abspath(shadow_dir) + ".boot_id"


def boot_id(shadow_dir: str) -> str:
    """The current boot id of the node's modelled machine (created on first use)."""
    path = boot_id_path(shadow_dir)
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return _new_boot(shadow_dir)


def _new_boot(shadow_dir: str) -> str:
    value = str(uuid.uuid4())
    path = boot_id_path(shadow_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(value + "\n")
    os.rename(path + ".tmp", path)
    return value


def shadow_dir_for(out: str, node_id: str) -> str:
    """Where the chaos harness keeps the shadow of one node (outside its data directory)."""
    return os.path.join(out, "shadow", node_id)


ENV_SHADOW_DIR = "SCHEDD_SHADOW_DIR"
