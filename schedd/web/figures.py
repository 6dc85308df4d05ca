"""The cluster view's firing rate and lag: rates of the node's own Prometheus counters.

The node hands the dashboard a callable returning the current totals of the series its
``/metrics`` exposes (``schedd_runs_created_total``, ``schedd_runs_finished_total`` by outcome,
``schedd_fire_commit_lag_seconds`` sum and count); :class:`Rates` keeps recent samples and turns
them into per-second rates and a mean lag over a window, as ``rate()`` would in Prometheus.
Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Rates"]


class Rates:
    """Samples of counter totals, at most ``window_s`` old (the newest is always kept)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def add(self, t: float, totals: dict[str, float]) -> None:
        self._samples.append((t, dict(totals)))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def _span(self) -> tuple[float, dict[str, float], dict[str, float]] | None:
        if len(self._samples) < 2:
            return None
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return t1 - t0, first, last

    def per_second(self, key: str) -> float | None:
        """The rate of counter ``key`` over the window; None before two samples. A counter that
        went down (the node restarted) counts from zero, as Prometheus does."""
        span = self._span()
        if span is None:
            return None
        dt, first, last = span
        a, b = first.get(key, 0.0), last.get(key, 0.0)
        return (b - a if b >= a else b) / dt

    def mean(self, sum_key: str, count_key: str) -> float | None:
        """The mean of a histogram over the window (its sum's increase / its count's); None
        when nothing was observed in it."""
        span = self._span()
        if span is None:
            return None
        _, first, last = span
        n = last.get(count_key, 0.0) - first.get(count_key, 0.0)
        if n <= 0:
            return None
        return (last.get(sum_key, 0.0) - first.get(sum_key, 0.0)) / n

    @property
    def seconds(self) -> float:
        """How long the window spans now (0 before two samples)."""
        span = self._span()
        return span[0] if span else 0.0
