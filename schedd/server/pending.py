"""The leader's in-memory index of PENDING runs, per queue, in the order they are granted.

The grant planner wants, every tick, the first PENDING runs of each queue its workers serve in
grant order: highest priority first, then oldest (ready time), then run id. LMDB's ``pending_q``
index is ordered by ready time only, so the planner read and parsed ``max(4 × free slots, 200)``
run records per queue on every tick and sorted them. Under a burst most ticks grant a few dozen
runs, so that read was the largest part of the leader's planning, and a high-priority run
behind that many older runs of its queue was not seen at all. This index answers the same
question from memory, in exact grant order, for any backlog.

Where it comes from: the store hands it, after each committed entry, the runs that entry made
PENDING and the ids of the runs it took out of ``pending_q`` (:meth:`Store.watch_pending`,
computed from the entry's own writes). It is built from one LMDB snapshot when the node starts
leading, in a thread of its own; entries applied meanwhile are buffered with their log index and
replayed if the snapshot does not contain them. Until it is built, the planner reads LMDB as
before (:attr:`ready` is False).

Invariant (once ready): the index holds exactly the PENDING runs that have a ``pending_q`` key in
LMDB as of the last entry applied on this node, each as its record stood then. It is derived
state of the leader only: nothing replicated reads it, so a lost or stale index can make a
grant plan worse, never a state diverge (apply re-checks every grant). Past ``max_runs`` runs it
switches itself off (memory is bounded; the planner falls back to LMDB) until restarted.

Threads: the Raft tick thread feeds it, the dispatcher thread builds and reads it; one lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from schedd.pb import types_pb2
from schedd.server.planner import NO_TAGS, Candidate

if TYPE_CHECKING:
    from schedd.state.store import Store

log = logging.getLogger("schedd.dispatcher")

#: runs held before the index switches itself off (about 400 bytes each: 200 MB)
MAX_RUNS = 500_000


def candidate_of(run: types_pb2.Run) -> Candidate:
    """The planner's view of a PENDING run record."""
    return Candidate(
        run.run_id,
        run.attempt,
        run.queue,
        run.priority,
        dict(run.tags) if run.tags else NO_TAGS,
        run.job,
        run.not_before_ms,
    )


class _Bucket:
    """The runs of one queue and one priority, in (ready time, run id) order.

    A dict keeps insertion order, and runs mostly become PENDING in that order (fired slot by
    slot, retried after a back-off), so adding is an append and removing a delete. A run that
    arrives out of order marks the bucket unsorted; the next read sorts it once."""

    __slots__ = ("runs", "last", "ordered")

    def __init__(self) -> None:
        self.runs: dict[str, Candidate] = {}
        self.last: tuple[int, str] = (-1, "")
        self.ordered = True

    def add(self, c: Candidate) -> None:
        key = (c.ready_ms, c.run_id)
        if key < self.last:
            self.ordered = False
        else:
            self.last = key
        self.runs[c.run_id] = c

    def in_order(self) -> Iterable[Candidate]:
        if not self.ordered:
            self.runs = {
                c.run_id: c
                for c in sorted(self.runs.values(), key=lambda c: (c.ready_ms, c.run_id))
            }
            self.ordered = True
        return self.runs.values()


class PendingIndex:
    """See the module docstring. ``start`` begins a build; ``stop`` drops everything."""

    def __init__(self, store: Store, max_runs: int = MAX_RUNS) -> None:
        self._store = store
        self._max_runs = max_runs
        self._lock = threading.Lock()
        # queue -> priority -> its runs; the priorities of a queue, highest first
        self._queues: dict[str, dict[int, _Bucket]] = {}
        self._priorities: dict[str, list[int]] = {}
        self._runs: dict[str, Candidate] = {}  # run id -> its candidate
        self._generation = 0  # bumped by start and stop: a build of an older one is dropped
        self._building = False
        self._buffer: list[tuple[int, Sequence[types_pb2.Run], Sequence[str]]] = []
        self.ready = False
        self.overflowed = False

    # ---- lifecycle (dispatcher thread) -------------------------------------------------------

    def start(self) -> threading.Thread:
        """Watch the store and build the index from a snapshot in a new thread (returned)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._clear()
            self._building = True
            self.overflowed = False
        # Set under the store's apply lock: every entry committed after this point reaches
        # _feed, and the snapshot below (taken after it) holds every entry before it.
        self._store.watch_pending(self._feed)
        t = threading.Thread(
            target=self._build, args=(generation,), name="pending-index", daemon=True
        )
        t.start()
        return t

    def stop(self) -> None:
        """Stop watching and forget every run (lost leadership)."""
        self._store.watch_pending(None)
        with self._lock:
            self._generation += 1
            self._building = False
            self._clear()

    def _clear(self) -> None:
        self.ready = False
        self._queues.clear()
        self._priorities.clear()
        self._runs.clear()
        self._buffer.clear()

    def _build(self, generation: int) -> None:
        try:
            applied, runs = self._store.pending_snapshot(limit=self._max_runs + 1)
        except Exception:  # the planner keeps reading LMDB; the next leadership retries
            log.exception("event=pending_index_build_failed")
            with self._lock:
                if generation == self._generation:
                    self._building = False
            return
        with self._lock:
            if generation != self._generation:
                return  # stopped or restarted meanwhile
            self._building = False
            for run in runs:
                self._add(candidate_of(run))
            for index, added, removed in self._buffer:
                if index > applied:
                    self._change(added, removed)
            self._buffer.clear()
            if not self._check_size():
                return
            self.ready = True
            count = len(self._runs)
        log.info("event=pending_index_ready runs=%d applied_index=%d", count, applied)

    # ---- feed (Raft tick thread) -------------------------------------------------------------

    def _feed(self, index: int, added: Sequence[types_pb2.Run], removed: Sequence[str]) -> None:
        with self._lock:
            if self._building:
                self._buffer.append((index, added, removed))
            elif self.ready:
                self._change(added, removed)
                self._check_size()

    def _change(self, added: Sequence[types_pb2.Run], removed: Sequence[str]) -> None:
        for rid in removed:  # first: an entry may take a run out and make it PENDING again
            self._remove(rid)
        for run in added:
            self._remove(run.run_id)
            self._add(candidate_of(run))

    def _check_size(self) -> bool:
        """Switch off past max_runs (caller holds the lock); False when it did."""
        if len(self._runs) <= self._max_runs:
            return True
        count = len(self._runs)
        self._generation += 1
        self._clear()
        self.overflowed = True
        # (the store keeps calling _feed until stop(); it finds the index neither ready nor
        # building and does nothing)
        log.warning(
            "event=pending_index_off runs=%d limit=%d note=%s",
            count,
            self._max_runs,
            "grant planning reads LMDB until the backlog shrinks and the index is rebuilt",
        )
        return False

    def _add(self, c: Candidate) -> None:
        buckets = self._queues.get(c.queue)
        if buckets is None:
            buckets = self._queues[c.queue] = {}
        bucket = buckets.get(c.priority)
        if bucket is None:
            bucket = buckets[c.priority] = _Bucket()
            self._priorities[c.queue] = sorted(buckets, reverse=True)
        bucket.add(c)
        self._runs[c.run_id] = c

    def _remove(self, rid: str) -> None:
        c = self._runs.pop(rid, None)
        if c is None:
            return
        buckets = self._queues[c.queue]
        bucket = buckets[c.priority]
        del bucket.runs[rid]
        if not bucket.runs:
            del buckets[c.priority]
            if buckets:
                self._priorities[c.queue].remove(c.priority)
            else:
                del self._queues[c.queue], self._priorities[c.queue]

    # ---- reads (dispatcher thread) -----------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)

    def candidates(self, queue: str, horizon_ms: int, limit: int) -> list[Candidate]:
        """Up to ``limit`` PENDING runs of ``queue`` ready at or before ``horizon_ms``, in grant
        order (highest priority, then oldest ready time, then run id)."""
        out: list[Candidate] = []
        with self._lock:
            buckets = self._queues.get(queue)
            if buckets is None:
                return out
            for priority in self._priorities[queue]:
                for c in buckets[priority].in_order():
                    if c.ready_ms > horizon_ms:
                        break  # the rest of this priority is not ready either
                    out.append(c)
                    if len(out) >= limit:
                        return out
        return out
