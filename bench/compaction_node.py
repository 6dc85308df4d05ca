"""``python bench/compaction_node.py run ...``: ``schedd run`` with other Raft log compaction
thresholds, for benchmarks (schedd's are 50,000 entries or 10 minutes).

``SCHEDD_BENCH_COMPACT_ENTRIES`` and ``SCHEDD_BENCH_COMPACT_SECONDS`` replace
``RaftSettings.compaction_min_entries`` and ``compaction_min_time_s``: a node compacts when
its journal holds more entries than the first *or* the last compaction is older than the
second. ``SCHEDD_BENCH_SYNC_SNAPSHOTS=1`` copies in the Raft thread (``background_snapshots``
off), the baseline of ``bench/compaction.py --sync-snapshots``.
:class:`CompactionCluster` starts every node of a ``LocalCluster`` through this file.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import schedd.raft.settings as settings
from schedd.testing import LocalCluster, NodeSpec

ENTRIES_ENV = "SCHEDD_BENCH_COMPACT_ENTRIES"
SECONDS_ENV = "SCHEDD_BENCH_COMPACT_SECONDS"
SYNC_ENV = "SCHEDD_BENCH_SYNC_SNAPSHOTS"  # "1": copy in the Raft thread (the old way)


class CompactionCluster(LocalCluster):
    """A ``LocalCluster`` whose nodes compact their Raft log after ``entries`` entries or
    ``seconds`` seconds (set in every node's environment)."""

    def __init__(
        self,
        root: str,
        *,
        entries: int,
        seconds: float,
        sync_snapshots: bool = False,
        **options: object,
    ) -> None:
        super().__init__(root, **options)  # type: ignore[arg-type]
        self.env[ENTRIES_ENV] = str(entries)
        self.env[SECONDS_ENV] = repr(float(seconds))
        if sync_snapshots:
            self.env[SYNC_ENV] = "1"

    def command(self, spec: NodeSpec) -> list[str]:
        cmd = super().command(spec)  # [python, -m, schedd, run, ...]
        return [sys.executable, os.path.abspath(__file__), *cmd[3:]]


def _patch() -> None:
    base = settings.RaftSettings()
    entries = int(os.environ.get(ENTRIES_ENV, base.compaction_min_entries))
    seconds = float(os.environ.get(SECONDS_ENV, base.compaction_min_time_s))

    @dataclasses.dataclass(frozen=True)
    class Compaction(settings.RaftSettings):
        compaction_min_entries: int = entries
        compaction_min_time_s: float = seconds
        compaction_min_interval_s: float = min(seconds, base.compaction_min_interval_s)
        background_snapshots: bool = os.environ.get(SYNC_ENV) != "1"

    settings.RaftSettings = Compaction  # type: ignore[misc]


if __name__ == "__main__":
    _patch()  # before schedd.server imports RaftSettings
    from schedd.server.cmd import main

    main(prog_name="schedd")
