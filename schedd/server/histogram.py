"""One histogram series: bucket counts and a sum, taken under a lock once per batch. Used by
the node's metrics (:mod:`schedd.server.metrics`) and by the garbage collector's pause watch
(:mod:`schedd.server.gc_tuning`), which the metrics read (so it cannot import them)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence


class Series:
    """The buckets of one histogram series. ``observe_many`` takes the lock once for a batch
    (the leader observes hundreds of lags per tick in a burst). Bucket ``i`` counts values
    ``<= bounds[i]``; the last one, values above every bound (``+Inf``)."""

    __slots__ = ("_counts", "_lock", "_sum", "bounds")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect_left(self.bounds, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def observe_many(self, values: Iterable[float]) -> None:
        bounds = self.bounds
        values = list(values)
        at = [bisect_left(bounds, v) for v in values]
        total = sum(values)
        with self._lock:
            counts = self._counts
            for i in at:
                counts[i] += 1
            self._sum += total

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(le_label, self.bounds), "+Inf"), counts, strict=True):
            running += n
            out.append((bound, running))
        return out, total


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus' ``le`` label."""
    return repr(float(bound))
