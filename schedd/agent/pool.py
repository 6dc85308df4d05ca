"""The handler threads: a fixed-size pool fed by one queue.

What :class:`concurrent.futures.ThreadPoolExecutor` does for the agent, without what the agent
never uses: a ``Future``, a work item and a semaphore round trip per firing. The outcome of a
handler goes to the lease book, not to a future, so a queue of items and ``size`` threads that
take them is all it needs (measured with ``python bench/agent_hotpath.py``).

Contract:

* At most ``size`` items run at once; threads start as work arrives, up to ``size``, and are
  reused.
* :meth:`submit` after :meth:`shutdown` raises ``RuntimeError`` (as an executor does).
* :meth:`shutdown` does not wait. Items not yet started are dropped (the caller's leases for
  them expire at the leader, as with ``cancel_futures=True``); running items finish on their
  threads. Like the executor's, the threads are not daemons: an interpreter that exits joins a
  handler still running, and idle threads are woken at exit so they never hold it up.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["HandlerPool"]

T = TypeVar("T")

_STOP = object()
_pools: weakref.WeakSet[HandlerPool[object]] = weakref.WeakSet()


def _wake_all_at_exit() -> None:
    for pool in list(_pools):
        pool.shutdown()


# The executor's own hook: runs before the interpreter joins non-daemon threads, so idle pool
# threads end instead of blocking exit. (Older Pythons lack it: threads are daemons there.)
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_wake_all_at_exit)


class HandlerPool(Generic[T]):
    """``size`` threads named ``{name}_{n}`` calling ``run(item)`` for each submitted item."""

    def __init__(self, size: int, run: Callable[[T], None], name: str) -> None:
        if size < 1:
            raise ValueError("size: must be >= 1")
        self._size = size
        self._run = run
        self._name = name
        self._q: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for an item and not yet promised one
        self._closed = False
        _pools.add(self)  # type: ignore[arg-type]

    def submit(self, item: T) -> None:
        """Queue ``item``; start a thread when none is idle and the pool is not full."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            if self._idle:
                self._idle -= 1
                start = 0
            elif self._threads < self._size:
                self._threads += 1
                start = self._threads
            else:
                start = 0
        self._q.put(item)
        if start:
            self._start_threads(start - 1, 1)

    def submit_many(self, items: list[T]) -> None:
        """Queue ``items`` in order, taking the lock once, and start a thread for each item no
        idle thread is promised to, within the size. (A whole start instant's worth at once:
        one at a time, the caller would queue behind the pool's threads for the GIL.)"""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            taken = min(self._idle, len(items))
            self._idle -= taken
            new = min(len(items) - taken, self._size - self._threads)
            first = self._threads
            self._threads += new
        put = self._q.put
        for item in items:
            put(item)
        self._start_threads(first, new)

    def _start_threads(self, first: int, count: int) -> None:
        """Start ``count`` threads numbered from ``first`` (counted in ``_threads`` already)."""
        for n in range(first, first + count):
            threading.Thread(
                target=self._serve, name=f"{self._name}_{n}", daemon=_register is None
            ).start()

    def shutdown(self) -> None:
        """Stop taking items, drop the queued ones and end the threads once idle."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        for _ in range(threads):
            self._q.put(_STOP)

    def _serve(self) -> None:
        q = self._q
        while True:
            item = q.get()
            if item is _STOP:
                return
            self._run(item)  # type: ignore[arg-type]
            del item
            with self._lock:
                if self._closed:
                    return
                self._idle += 1
