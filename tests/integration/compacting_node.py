"""``python -m tests.integration.compacting_node run ...``: ``schedd run`` with a Raft log
compacted every ``COMPACT_EVERY`` entries (schedd's default is 50,000 entries or 10 minutes), so
a test sees a new node catch up by a snapshot install instead of by entries. Test tooling."""

from __future__ import annotations

import dataclasses
import os

import schedd.raft.settings as settings

COMPACT_EVERY = int(os.environ.get("SCHEDD_TEST_COMPACT_EVERY", "50"))


@dataclasses.dataclass(frozen=True)
class _Compacting(settings.RaftSettings):
    compaction_min_entries: int = COMPACT_EVERY
    compaction_min_time_s: float = 2.0
    compaction_min_interval_s: float = 0.0
    compaction_max_share: float = 0.0


settings.RaftSettings = _Compacting  # type: ignore[misc]

if __name__ == "__main__":
    from schedd.server.cmd import main

    main(prog_name="schedd")
