"""Raft: pysyncobj, made durable and fixed, behind one adapter.

* :mod:`schedd.raft.settings` -- timing, durability and size limits; the pysyncobj configuration.
* :mod:`schedd.raft.adapter` -- :class:`RaftNode`, the only code that touches pysyncobj.
* :mod:`schedd.raft.journal` -- the durable, checksummed journal with group commit.
* :mod:`schedd.raft.replication` -- the follower's AppendEntries rule, as a pure plan.
* :mod:`schedd.raft.disk` -- the file operations durability rests on (one seam).

Names are imported lazily: the store uses :mod:`schedd.raft.disk` and the adapter uses the store.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"RaftNode": "adapter", "StateAheadOfJournal": "adapter", "JournalCorrupt": "journal",
            "RaftSettings": "settings", "sync_obj_conf": "settings"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'schedd.raft' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"schedd.raft.{_EXPORTS[name]}"), name)
