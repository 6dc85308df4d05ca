"""The daemon's garbage collector: fewer collections, none over start-up's objects, pauses seen.

CPython frees almost everything by reference counting; its cyclic collector runs on top,
whenever the tracked objects allocated minus those freed since the last collection pass a
threshold (700 by default). A dispatcher tick or an applied entry of a few thousand firings
keeps that many tuples, lists and dataclasses alive for a moment, so on a busy node the
collector ran every few milliseconds, found nothing to free, and promoted the tick's objects
into older generations, which it then traversed again. Measured on 3-node clusters at 3,000
firings/s (``bench/README.md``, "The garbage collector"): about 2,900 collections in 20 s on
the leader, 6-7 % of its CPU. Every collection holds the GIL, so it also pauses the Raft
thread's heartbeats and the dispatcher.

What the daemon (``schedd run``, which owns its process) does instead:

* **A higher first threshold** (:data:`DEFAULT_GEN0`, ``--gc-threshold``): objects that live
  for one tick or one entry are freed by reference counting before any collection sees them.
  The bound on garbage that only the collector can free (reference cycles) rises with it: at
  most that many objects wait for the next collection.
* **Start-up's objects frozen** (:func:`freeze_startup`, once the node serves): modules,
  descriptors, gRPC and Raft objects (about 44,000) are moved out of every later collection,
  so a full collection traverses only what the node built since. Frozen objects are still
  freed by reference counting; only a cycle among them would outlive its use (start-up builds
  none that it drops).
* **Pauses watched** (:class:`PauseWatch`): every collection's duration by generation, as the
  ``schedd_gc_pause_seconds`` histogram (:mod:`schedd.server.metrics`), and a warning log line
  for one of :data:`SLOW_PAUSE_S` or more: a full collection traverses every tracked object the
  node holds (the leader's PENDING index holds about one per run: 95-130 ms at 500,000 runs on the
  2-core box), and a pause near the election timeout costs a leader change.

Process-wide, so only the daemon's entry point calls :func:`configure`; tests that start nodes
in their own process keep Python's defaults.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from schedd.server.histogram import Series

log = logging.getLogger("schedd.gc")

#: the first generation's threshold of ``schedd run`` (Python's default: 700)
DEFAULT_GEN0 = 50_000
#: a collection at least this long is logged (the election timeout's floor is 0.4 s)
SLOW_PAUSE_S = 0.1
#: ``schedd_gc_pause_seconds`` buckets: a young collection takes well under a millisecond
PAUSE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def configure(gen0: int = DEFAULT_GEN0) -> tuple[int, int, int]:
    """Set the first generation's threshold (the older two keep theirs); returns the thresholds
    now in force. ``gen0`` below Python's default is refused by the CLI, not here."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
    return gc.get_threshold()


def freeze_startup() -> int:
    """Collect once, then move every object tracked so far out of all later collections (call
    once start-up is done); returns how many objects are frozen. The process's pause watch
    counts that collection but does not log it as slow (it is asked for, once), and logs slow
    pauses from then on."""
    watch = WATCH
    if watch is not None:
        watch.quiet = True
    try:
        gc.collect()
    finally:
        if watch is not None:
            watch.quiet = False
    gc.freeze()
    return gc.get_freeze_count()


class PauseWatch:
    """Times every collection of this process (a ``gc.callbacks`` hook) and keeps, per
    generation, the bucket counts and sum for a Prometheus histogram; logs slow ones.

    The hook runs in whatever thread triggered the collection, while it holds the GIL, so it
    does the least it can: two clock reads and a bucket increment under the series' lock."""

    def __init__(self, buckets: tuple[float, ...] = PAUSE_BUCKETS, slow_s: float = SLOW_PAUSE_S):
        self.slow_s = slow_s
        self._series = [Series(buckets) for _ in range(3)]  # by generation
        self._started = 0.0
        self._installed = False
        self.quiet = False  # (freeze_startup's own collection: counted, not logged)

    def install(self) -> PauseWatch:
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        gen = info.get("generation", 2)
        self.observe(gen, took)
        if took >= self.slow_s and not self.quiet:
            log.warning(
                "event=gc_pause generation=%d ms=%d collected=%d note=%s",
                gen,
                int(took * 1000),
                info.get("collected", 0),
                "every thread waited (Raft heartbeats included); if this repeats near the "
                "election timeout, raise --election-timeout or give the node more CPU",
            )

    def observe(self, generation: int, seconds: float) -> None:
        self._series[generation].observe(seconds)

    def snapshot(self) -> dict[int, tuple[list[tuple[str, float]], float]]:
        """Per generation: cumulative ``(le, count)`` pairs ending with ``+Inf`` (a Prometheus
        histogram's buckets) and the sum of the collections' seconds."""
        return {g: series.snapshot() for g, series in enumerate(self._series)}


#: the process's watch once :func:`watch_pauses` ran (the daemon); None in other processes
WATCH: PauseWatch | None = None


def watch_pauses() -> PauseWatch:
    """Install the process's pause watch (idempotent) and return it. It counts from now but
    logs no slow pause until :func:`freeze_startup` (start-up is done): before the node
    serves, a slow collection holds back no heartbeat, and a node refusing its configuration
    must say so in one line."""
    global WATCH
    if WATCH is None:
        WATCH = PauseWatch().install()
        WATCH.quiet = True
    return WATCH
