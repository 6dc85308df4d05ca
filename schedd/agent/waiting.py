"""The waiting room: firings committed ahead of their start instant wait here, not on a thread.

With ``--fire-ahead`` the leader leases a run before it is due and the agent starts its handler
at ``Firing.start_at_ms`` by this machine's clock. A firing that waited on a pool thread of its
own held that thread (and made the pool start one) for the whole wait: a second's worth of
aligned firings was thousands of threads, all woken at the same instant, and with fewer
threads than waiting firings one due later could hold up one due sooner. Here they wait in a
heap watched by one thread, which hands each instant's firings to the pool at once; the pool's
threads then only run handlers. (``python bench/agent_ahead.py``, 3,000 firings a second 1 s
ahead to 5,000 slots: 0.48-0.78 ms of the agent's CPU per firing before, 0.12-0.19 ms now.)

Contract:

* A firing is handed over (``submit(ready)``, every firing whose instant came, at once) no
  earlier than its ``start_at_ms`` by this machine's wall clock (``time.time``, the clock
  ``Runner.run`` checks it by), in start order, firings of one instant in arrival order.
* A firing whose ``ctx.cancelled`` is set while it waits is handed over at once after a
  :meth:`poke` (its lease was revoked or the worker stops: the runner records it as cancelled
  before start and frees its slot without waiting for the instant).
* :meth:`close` hands nothing over any more and returns what was waiting.
* ``submit`` is called on the room's thread without the room's lock held, so it may take any
  other lock; callers may :meth:`add` and :meth:`poke` while holding theirs.

Private module: :class:`schedd.agent.Worker` is the API.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from schedd.agent.core import Context

__all__ = ["WaitingRoom"]


class WaitingRoom:
    """Holds contexts until their ``start_at_ms``, then calls ``submit(ready)`` with those whose
    instant came (in start order)."""

    def __init__(self, submit: Callable[[list[Context]], None]) -> None:
        self._submit = submit
        self._cv = threading.Condition(threading.Lock())
        self._heap: list[tuple[int, int, Context]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._poked = False

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, ctx: Context) -> bool:
        """Hold ``ctx`` until its ``start_at_ms``; False when the room is closed (nothing held)."""
        with self._cv:
            if self._closed:
                return False
            entry = (ctx.start_at_ms, next(self._seq), ctx)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                # A daemon: firings still waiting must not hold up the interpreter's exit
                # (their leases expire at the leader, as for a pool's queued work).
                self._thread = threading.Thread(
                    target=self._serve, name="schedd-start-timer", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is entry:
                self._cv.notify()  # sooner than the instant the thread sleeps until
        return True

    def poke(self) -> None:
        """Some waiting context may have been cancelled: hand the cancelled ones over now."""
        with self._cv:
            if self._heap:
                self._poked = True
                self._cv.notify()

    def close(self) -> list[Context]:
        """Stop: hand nothing over any more; returns the contexts that were waiting."""
        with self._cv:
            self._closed = True
            left = [ctx for _, _, ctx in sorted(self._heap)]
            self._heap.clear()
            self._cv.notify()
        return left

    def _take(self) -> list[Context] | None:
        """Wait for work: the contexts to hand over now, or None once closed."""
        heap = self._heap
        with self._cv:
            while not self._closed:
                now = time.time() * 1000
                ready: list[Context] = []
                while heap and heap[0][0] <= now:
                    ready.append(heapq.heappop(heap)[2])
                if self._poked:
                    self._poked = False
                    # One look at each flag: a firing cancelled meanwhile must not end up both
                    # handed over and kept (it would then run twice).
                    kept: list[tuple[int, int, Context]] = []
                    cancelled: list[tuple[int, int, Context]] = []
                    for entry in heap:
                        (cancelled if entry[2].cancelled.is_set() else kept).append(entry)
                    if cancelled:
                        ready += [ctx for _, _, ctx in sorted(cancelled)]
                        heap[:] = kept
                        heapq.heapify(heap)
                if ready:
                    return ready
                self._cv.wait((heap[0][0] - now) / 1000 if heap else None)
            return None

    def _serve(self) -> None:
        while True:
            ready = self._take()
            if ready is None:
                return
            self._submit(ready)
