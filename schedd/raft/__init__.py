"""Raft: pysyncobj, made durable and fixed, behind one adapter.

* :mod:`schedd.raft.settings` -- timing, durability and size limits; the pysyncobj configuration.
* :mod:`schedd.raft.adapter` -- :class:`RaftNode`, the only code that touches pysyncobj.
* :mod:`schedd.raft.journal` -- the durable, checksummed journal with group commit.
* :mod:`schedd.raft.replication` -- the follower's AppendEntries rule, as a pure plan.

The file operations durability rests on are in :mod:`schedd.state.disk` (one seam, shared with
the LMDB store).
"""

from schedd.raft.adapter import RaftNode, StateAheadOfJournal
from schedd.raft.journal import JournalCorrupt
from schedd.raft.settings import RaftSettings, sync_obj_conf

__all__ = ["JournalCorrupt", "RaftNode", "RaftSettings", "StateAheadOfJournal", "sync_obj_conf"]
