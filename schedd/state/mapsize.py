"""How far the LMDB map may grow, and when. Pure.

The map size is local to a node (not replicated state): nodes may grow at different moments
and end with different map sizes without any effect on what they apply. What must agree
across the cluster is only when *client writes are refused*, and that is decided against the
ceiling (``--max-map-size``), which every node is configured with, not against the current
map, which differs from node to node.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class MapGrowth:
    """Grow by doubling (``factor``) once more than ``threshold`` of the map is in use, never
    past ``ceiling`` bytes. Sizes stay whole MiB (LMDB wants multiples of the page size)."""

    ceiling: int
    threshold: float = 0.8
    factor: int = 2

    def next_size(
        self, used: int, current: int, *, full: bool = False, threshold: float | None = None
    ) -> int | None:
        """The map size to grow to, or None to stay. ``full``: apply just met MapFullError,
        so grow whatever the usage says (LMDB needs room for the transaction's new pages).
        ``threshold`` replaces :attr:`threshold` (more room ahead of a long read)."""
        limit = self.threshold if threshold is None else threshold
        if current >= self.ceiling:
            return None
        if not full and used <= limit * current:
            return None
        target = current * self.factor
        # big enough that the data sits under the threshold again, if the ceiling allows
        while target < self.ceiling and used > limit * target:
            target *= self.factor
        target = min(self.ceiling, target)
        return (target // MIB) * MIB if target > current + MIB else self.ceiling
