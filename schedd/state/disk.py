"""Every file operation the Raft layer needs to be durable, in one seam.

The journal, its metadata file and the snapshot files write and sync through these functions
only (LMDB syncs itself: :meth:`schedd.state.store.Store.sync`). That gives one place to read the
durability protocol, and one place for the chaos suite's power-loss model
(``chaos/powerloss.py``) to observe which bytes reached the disk: it replaces these functions in
a test node's process and keeps, per file, the content as of its last completed sync.

Failure contract: every function raises ``OSError`` on failure and never retries. A failed
``fsync``/``fdatasync`` in particular must stop the node (exit 70): after one, Linux may have
dropped the dirty pages, so a retry that "succeeds" would hide lost data.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

FILE_MODE = 0o600


def open_file(path: str) -> int:
    """Open (creating if needed, mode 0600) for reading and writing; returns the descriptor."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


def pwrite(fd: int, path: str, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``path`` names the file for observers and errors)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def truncate(fd: int, path: str, size: int) -> None:
    os.ftruncate(fd, size)


def fdatasync(fd: int, path: str) -> None:
    """Make the file's data (and its size) durable."""
    os.fdatasync(fd)


def fsync_path(path: str) -> None:
    """fsync a file written by someone else (LMDB's copy, pysyncobj's received snapshot)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make the directory's entries (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename(src: str, dst: str) -> None:
    """Atomically replace ``dst`` by ``src`` (durable only after :func:`fsync_dir`)."""
    os.rename(src, dst)


def write_file(path: str, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` by ``data`` atomically: write a temporary file, fsync it, rename it over
    ``path``, fsync the directory. After a crash the file holds either the old or the new
    content, never a mix or nothing. ``sync=False`` skips both fsyncs (a throw-away cluster)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        pwrite(fd, tmp, data, 0)
        if sync:
            fdatasync(fd, tmp)
    finally:
        os.close(fd)
    rename(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


_SFR: list[Callable[[int, int, int, int], int] | None] = []  # looked up on first use
# SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER: start writing out, and wait for it
_SFR_WRITE_AND_WAIT = 1 | 2 | 4


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not _SFR:
        try:  # the process's own symbols: libc's, without searching for the library
            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        except (AttributeError, OSError, TypeError):  # not Linux
            fn = None
        _SFR.append(fn)
    return _SFR[0]


def write_out(fd: int, path: str) -> None:
    """Write the file's dirty pages to the disk and wait for them, without a durability
    promise (no metadata, no disk cache flush: that is :func:`fdatasync`'s job). Bounds how
    much a long copy leaves dirty, so that other files' syncs do not queue behind it. A no-op
    where Linux's ``sync_file_range`` is missing."""
    sfr = _sync_file_range()
    if sfr is not None and sfr(fd, 0, 0, _SFR_WRITE_AND_WAIT) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
