"""When a node compacts its Raft log: a pure policy the Raft adapter asks every tick.

A compaction writes a snapshot (a compacted copy of the whole LMDB, in a background thread:
:mod:`schedd.raft.snapshots`) and drops the journal entries it covers. pysyncobj's own rule compacts when the journal holds more
than N entries *or* T seconds passed, but with its "split" option only inside each node's slot
of every T-second period: 600 s by default, so at a high write rate the journal (held in
memory) grew for up to ten minutes whatever N was. Without "split", all nodes would copy their
state at the same moment. This policy instead:

* follows the write rate: compact once the journal holds ``min_entries`` entries or
  ``min_bytes`` bytes (a bulk create writes few, large entries);
* still compacts a quiet node's journal every ``max_interval_s`` when it holds anything;
* bounds the cost: never more often than ``min_interval_s``, nor more often than keeps the
  time spent compacting under ``max_share`` of the node's time (a state that takes 2 s to copy
  is compacted at most every 40 s with the default 5 %);
* staggers the nodes: each node's thresholds are scaled by its rank (members in id order), and
  the leader's by the largest rank plus one (its CPU and disk are the busiest), so the nodes
  of a cluster under one write load take turns instead of copying at once.

Pure: the adapter passes the clock readings and the journal length.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CompactionPolicy:
    min_entries: int = 50_000
    min_bytes: int = 256 << 20
    max_interval_s: float = 600.0
    min_interval_s: float = 30.0
    max_share: float = 0.05

    def due(
        self,
        *,
        entries: int,
        since_s: float,
        journal_bytes: int = 0,
        last_took_s: float,
        rank: int,
        members: int,
        leader: bool,
    ) -> bool:
        """Whether to compact now. ``entries``: journal entries held (those since the last
        snapshot), ``journal_bytes`` their size; ``since_s``: seconds since the last compaction
        ended (or the node started); ``last_took_s``: how long the last one took (0: none yet);
        ``rank``: this node's place among the ``members`` in id order."""
        if not self.may_be_due(
            entries=entries, since_s=since_s, journal_bytes=journal_bytes, last_took_s=last_took_s
        ):
            return False
        members = max(1, members)
        turn = members if leader else min(rank, members - 1)
        scale = 1.0 + turn / (2.0 * members)
        return (
            entries >= self.min_entries * scale
            or journal_bytes >= self.min_bytes * scale
            or since_s >= self.max_interval_s * scale
        )

    def may_be_due(
        self, *, entries: int, since_s: float, journal_bytes: int, last_took_s: float
    ) -> bool:
        """False when :meth:`due` is False for every rank (the thresholds only grow with the
        rank): the answer of most ticks, without looking at the membership."""
        if entries <= 1:  # nothing applied since the last snapshot
            return False
        floor = self.min_interval_s
        if self.max_share > 0:
            floor = max(floor, last_took_s / self.max_share)
        if since_s < floor:
            return False
        return (
            entries >= self.min_entries
            or journal_bytes >= self.min_bytes
            or since_s >= self.max_interval_s
        )


@dataclass
class CompactionClock:
    """What the policy needs to remember between ticks (the Raft thread's only)."""

    last_end: float
    last_took_s: float = 0.0

    def finished(self, started: float, ended: float) -> None:
        self.last_took_s = max(0.0, ended - started)
        self.last_end = ended


@dataclass
class CompactionCounts:
    """Log compactions since the node started, for the metrics: how many by outcome (kept,
    failed, superseded), and the seconds their copies took and waited for their pace. Written
    by the Raft thread, read by a scrape (plain numbers: a torn read is one scrape off). Give
    ``by_outcome`` every key at the start: a scrape must never iterate it while it grows."""

    by_outcome: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    paused_seconds: float = 0.0

    def record(self, outcome: str, seconds: float, paused_s: float) -> None:
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1
        self.seconds += max(0.0, seconds)
        self.paused_seconds += max(0.0, paused_s)
