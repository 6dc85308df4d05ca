"""``python -m chaos.durable_node run ...``: ``schedd run`` with pysyncobj's journal made durable.

An experiment for ``docs/durability.md``, not a product mode: it patches pysyncobj 0.3.17 in this
process before schedd starts, the way a ``durable_journal`` option in ``schedd/raft.py`` would:

* ``FileJournal.add`` flushes the journal's mmap (``msync(MS_SYNC)``, which on Linux also
  persists a grown file size) after every append. pysyncobj appends on the leader before it
  counts itself towards the commit quorum and on a follower before it answers the leader, so
  every entry that a majority acknowledged is on a majority of disks.
* ``FileJournal.deleteEntriesFrom`` / ``clear`` flush too (a truncated tail must stay truncated).
* ``MetaStorer.storeMeta`` (term, vote, commit index) fsyncs the temporary file before the
  rename and the directory after it.

LMDB is left as schedd runs it (``sync=False`` plus ``env.sync()`` once a second): with a durable
journal, a replica whose LMDB lost its last second re-applies those entries from the journal on
restart (apply is idempotent by log index).
"""

from __future__ import annotations

import os
import shutil

from pysyncobj import journal


def _durable(fn):  # type: ignore[no-untyped-def]
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = fn(self, *args, **kwargs)
        self.flush()
        return out
    return wrapper


def _store_meta(self, meta):  # type: ignore[no-untyped-def]
    path = self.getPath()
    with open(path + ".tmp", "wb") as f:
        f.write(journal.dumps(meta))
        f.flush()
        os.fsync(f.fileno())
    shutil.move(path + ".tmp", path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_add, _clear = journal.FileJournal.add, journal.FileJournal.clear


def _delete_entries_to(self, entry_to):  # type: ignore[no-untyped-def]
    """Compaction rewrites the kept tail: one flush at the end, not one per entry."""
    kept = self._FileJournal__journal[entry_to:]
    _clear(self)
    for entry in kept:
        _add(self, *entry)
    self.flush()


journal.FileJournal.add = _durable(_add)
journal.FileJournal.clear = _durable(_clear)
journal.FileJournal.deleteEntriesFrom = _durable(journal.FileJournal.deleteEntriesFrom)
journal.FileJournal.deleteEntriesTo = _delete_entries_to
journal.MetaStorer.storeMeta = _store_meta

if __name__ == "__main__":
    from schedd.cmd import main

    main(prog_name="schedd")
