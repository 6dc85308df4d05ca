"""The leader's side of ``SaveSnapshot``: a consistent image of the state, on local disk first.

The image is written at the Raft snapshot copy's pace (``--snapshot-copy-rate``): the leader's
journal syncs must not queue behind gigabytes of it either.

Failure contract: :meth:`Snapshots.take` raises ResourceExhausted when another snapshot is being
taken on this node or the disk has no room for the image above ``--min-free`` (a copy must not
stop the node), and never leaves a file behind once :meth:`Image.discard` ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from schedd.backup import FORMAT_VERSION
from schedd.errors import ResourceExhausted
from schedd.pb import api_pb2
from schedd.state import disk
from schedd.state.store import Store

log = logging.getLogger("schedd.snapshots")

#: bytes of image per streamed message (well under gRPC's 4 MiB message limit)
CHUNK_BYTES = 1 << 20


@dataclass
class Image:
    """A compacted copy of the state in a private file, and its description."""

    path: str
    info: api_pb2.SnapshotInfo
    release: Callable[[], None]

    def discard(self) -> None:
        """Delete the file and let the next snapshot be taken. Idempotent."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        release, self.release = self.release, _nothing
        release()


def _nothing() -> None:
    pass


class Snapshots:
    """Takes images of ``store`` into ``data_dir``, one at a time: the next one only after the
    previous image was discarded (streamed or abandoned). Images a crash left behind are
    deleted when the node starts."""

    def __init__(
        self,
        store: Store,
        data_dir: str,
        min_free_bytes: int,
        node_ids: Callable[[], list[str]],
        rate_bytes_s: float = 0.0,
    ) -> None:
        self._store = store
        self._rate = rate_bytes_s  # the image's pace, as the Raft snapshot copy's (0: none)
        self._dir = data_dir
        self._min_free = min_free_bytes
        self._node_ids = node_ids  # the members now
        self._busy = threading.Lock()
        for name in os.listdir(data_dir):
            if name.startswith(".snapshot-") and name.endswith(".mdb"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(data_dir, name))

    def take(self, leader_id: str = "") -> Image:
        if not self._busy.acquire(blocking=False):
            raise ResourceExhausted(
                "a snapshot is already being saved on this node; retry when it has finished"
            )
        handed_over = False
        try:
            used, _ = self._store.usage()
            free = shutil.disk_usage(self._dir).free
            if free - used < self._min_free:
                raise ResourceExhausted(
                    f"storage: the snapshot needs up to {used >> 20} MiB on the leader's disk and "
                    f"only {free >> 20} MiB are free (the node keeps {self._min_free >> 20} MiB "
                    "free, --min-free); free some space on the leader, then save again"
                )
            t0 = time.monotonic()
            fd, path = tempfile.mkstemp(prefix=".snapshot-", suffix=".mdb", dir=self._dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    applied, next_fence, jobs, runs = self._store.save_image(f.fileno(), self._rate)
                    disk.fdatasync(f.fileno(), path)
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(CHUNK_BYTES):
                        digest.update(chunk)
                size = os.path.getsize(path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                raise
            info = api_pb2.SnapshotInfo(
                format_version=FORMAT_VERSION,
                node_ids=sorted(self._node_ids()),
                applied_index=applied,
                created_ms=int(time.time() * 1000),
                size_bytes=size,
                sha256=digest.hexdigest(),
                leader_id=leader_id,
                next_fence=next_fence,
                jobs=jobs,
                runs=runs,
            )
            log.info(
                "event=snapshot_taken applied_index=%d size_bytes=%d jobs=%d runs=%d seconds=%.2f",
                applied,
                size,
                jobs,
                runs,
                time.monotonic() - t0,
            )
            handed_over = True
            return Image(path, info, self._busy.release)
        finally:
            if not handed_over:
                self._busy.release()
