"""``schedd restore``: seed one node of a NEW cluster from a backup (``schedctl snapshot save``).

What a restored node holds:

* the state of the backup exactly (jobs, runs, tokens, namespaces, audit trail, request ids and
  the counters in ``meta``, ``next_fence`` included, so fences never go backwards);
* a Raft snapshot (``raft.snapshot``) at the backup's applied index ``A`` whose two entries are
  no-ops of term 0, and an empty journal. pysyncobj loads it on start as it loads any snapshot:
  ``lastApplied = A``, the log continues at ``A + 1``. Every node of the new cluster restored
  from the same file starts from the same log, so none skips or re-applies an entry (apply is
  keyed by log index, and the state's applied index is ``A`` too).

Leases in flight in the backup are kept: their workers belonged to the old cluster, so after
one lease period without a heartbeat the new leader expires them and the runs are retried like
any lost lease (an attempt is charged, as for a crashed worker).

Failure contract: :class:`~schedd.backup.BackupError` with one line naming the problem and what
to do; a data directory that already holds a node's data is refused, never overwritten.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from pysyncobj.syncobj import _COMMAND_TYPE, _bchr

from schedd.backup import BackupError, BackupHeader, extract_image, read_header
from schedd.state import disk
from schedd.state.mapsize import MIB
from schedd.state.store import Store

#: what a node's data directory holds once it has run (refused as a restore target)
NODE_FILES = ("state", "raft.journal", "raft.journal.meta.json", "raft.snapshot")


def restore(backup_path: str, data_dir: str, map_size: int, max_map_size: int = 0) -> BackupHeader:
    """Seed ``data_dir`` (absent or empty of node files) from the backup; its header."""
    header, _ = read_header(backup_path)  # a wrong file is refused before anything is created
    if header.applied_index < 2:
        raise BackupError(
            f"{backup_path} holds an empty state (applied index {header.applied_index}); "
            "nothing to restore"
        )
    present = [n for n in NODE_FILES if os.path.exists(os.path.join(data_dir, n))]
    if present:
        raise BackupError(
            f"{data_dir} already holds a node's data ({', '.join(present)}); restore into an "
            "empty directory, one per node of a new cluster"
        )
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    tmp = tempfile.mkdtemp(prefix=".restore-", dir=data_dir)
    state_dir = os.path.join(data_dir, "state")
    try:
        extract_image(backup_path, os.path.join(tmp, "data.mdb"))
        # room for the image, whatever --map-size says; the node grows it from there
        need = ((2 * header.size_bytes) // MIB + 64) * MIB
        size = max(map_size, need)
        store = Store(state_dir, map_size=size, max_map_size=max(size, max_map_size))
        try:
            store.restore_image(tmp)
            applied = store.applied_index()
            if applied != header.applied_index:
                raise BackupError(
                    f"{backup_path}: the image is at log index {applied}, the header says "
                    f"{header.applied_index}; use another backup"
                )
            noop = _bchr(_COMMAND_TYPE.NO_OP)
            store.write_snapshot(
                os.path.join(data_dir, "raft.snapshot"),
                ((noop, applied, 0), (noop, applied - 1, 0), set()),
            )
            store.sync()
        finally:
            store.close()
        disk.fsync_dir(data_dir)
    except BaseException:
        # leave nothing half-restored: the node would start from it
        shutil.rmtree(state_dir, ignore_errors=True)
        for name in NODE_FILES[1:]:
            path = os.path.join(data_dir, name)
            if os.path.exists(path):
                os.unlink(path)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return header
