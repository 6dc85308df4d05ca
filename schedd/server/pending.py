"""The leader's in-memory index of PENDING runs, per queue, in the order they are granted.

The grant planner wants, every tick, the first PENDING runs of each queue its workers serve in
grant order: highest priority first, then oldest (ready time), then run id. LMDB's ``pending_q``
index is ordered by ready time only, so the planner read and parsed ``max(4 × free slots, 200)``
run records per queue on every tick and sorted them. Under a burst most ticks grant a few dozen
runs, so that read was the largest part of the leader's planning, and a high-priority run
behind that many older runs of its queue was not seen at all. This index answers the same
question from memory, in exact grant order, for any backlog.

Where it comes from: the store hands it, after each committed entry, the records of the runs
that entry put into ``pending_q`` and the ids of the runs it took out (:meth:`Store.watch_pending`,
from the entry's own writes). The Raft thread only queues them (an inbox): the records are parsed
when the dispatcher thread next reads (:meth:`drain`, also done by :meth:`candidates`), so the
index costs the Raft thread, which also sends heartbeats, next to nothing. It is built from one
LMDB snapshot when the node starts leading, in a thread of its own; entries applied meanwhile
are buffered with their log index and replayed if the snapshot does not contain them. Until it
is built, the planner reads LMDB as before (:attr:`ready` is False).

Invariant (once ready, after a drain): the index holds exactly the PENDING runs that have a
``pending_q`` key in LMDB as of the last entry applied on this node, each as its record stood
then. It is derived state of the leader only: nothing replicated reads it, so a lost or stale
index can make a grant plan worse, never a state diverge (apply re-checks every grant). Past
``max_runs`` runs it switches itself off (memory is bounded; the planner falls back to LMDB)
until restarted.

Threads: the Raft tick thread feeds it (a list append under a lock); a thread of its own builds
it; the dispatcher thread drains and reads it. Nothing is parsed under the lock.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from schedd.pb import types_pb2
from schedd.server.planner import Candidate, candidate_of

if TYPE_CHECKING:
    from schedd.state.store import Store

log = logging.getLogger("schedd.dispatcher")

#: runs held before the index switches itself off (about 400 bytes each: 200 MB)
MAX_RUNS = 500_000


class _Bucket:
    """The runs of one queue and one priority, in (ready time, run id) order.

    Runs mostly become PENDING in that order (fired slot by slot, retried after a back-off), so
    ``main``, a dict in insertion order, holds them sorted: adding is an append, removing a
    delete. A run that arrives out of order (a slot fired after a retry that waits for its
    back-off) goes to ``late``, kept sorted by insertion; reads merge the two. When ``late``
    grows past a share of the bucket, the two are folded into one sorted ``main`` again, so no
    read ever sorts the whole backlog."""

    __slots__ = ("main", "late", "late_keys", "last")

    def __init__(self) -> None:
        self.main: dict[str, Candidate] = {}
        self.late: dict[str, Candidate] = {}
        self.late_keys: list[tuple[int, str]] = []  # the keys of ``late``, sorted
        self.last: tuple[int, str] = (-1, "")  # the largest key ever appended to ``main``

    def __len__(self) -> int:
        return len(self.main) + len(self.late)

    def add(self, c: Candidate) -> None:
        key = (c.ready_ms, c.run_id)
        if key > self.last:
            self.main[c.run_id] = c
            self.last = key
            return
        self.late[c.run_id] = c
        bisect.insort(self.late_keys, key)
        if len(self.late_keys) > 64 + len(self.main) // 4:
            self._fold()

    def remove(self, c: Candidate) -> None:
        if self.main.pop(c.run_id, None) is not None:
            return
        del self.late[c.run_id]
        keys = self.late_keys
        del keys[bisect.bisect_left(keys, (c.ready_ms, c.run_id))]

    def _fold(self) -> None:
        runs = sorted((*self.main.values(), *self.late.values()), key=_key)
        self.main = {c.run_id: c for c in runs}
        self.late, self.late_keys = {}, []
        self.last = _key(runs[-1])

    def in_order(self) -> Iterator[Candidate]:
        """Every run, in (ready time, run id) order."""
        if not self.late:
            yield from self.main.values()
            return
        late, keys, i = self.late, self.late_keys, 0
        for c in self.main.values():
            while i < len(keys) and keys[i] < (c.ready_ms, c.run_id):
                yield late[keys[i][1]]
                i += 1
            yield c
        for key in keys[i:]:
            yield late[key[1]]


def _key(c: Candidate) -> tuple[int, str]:
    return (c.ready_ms, c.run_id)


class _Tables:
    """The runs themselves: per queue and priority a bucket, and an index by run id. Touched by
    one thread at a time: the build thread before it hands them over, the dispatcher after."""

    def __init__(self) -> None:
        # queue -> priority -> its runs; the priorities of a queue, highest first
        self.queues: dict[str, dict[int, _Bucket]] = {}
        self.priorities: dict[str, list[int]] = {}
        self.runs: dict[str, Candidate] = {}  # run id -> its candidate
        # run id -> (dispatch deadline ms, attempt) of the runs that have one
        self.deadlines: dict[str, tuple[int, int]] = {}

    def change(self, added: Sequence[tuple[str, bytes]], removed: Sequence[str]) -> None:
        for rid in removed:  # first: an entry may take a run out and make it PENDING again
            self.remove(rid)
        for rid, record in added:
            self.remove(rid)
            run = types_pb2.Run.FromString(record)
            if run.state == types_pb2.RUN_STATE_PENDING:
                self.add(candidate_of(run))
                if run.dispatch_deadline_ms:
                    self.deadlines[rid] = (run.dispatch_deadline_ms, run.attempt)

    def expired(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """(run id, attempt) of up to ``limit`` runs past their dispatch deadline, earliest
        first. A scan of the runs that have a deadline (few, and read every few seconds)."""
        late = sorted((d, rid, a) for rid, (d, a) in self.deadlines.items() if d <= now_ms)
        return [(rid, a) for _, rid, a in late[:limit]]

    def add(self, c: Candidate) -> None:
        buckets = self.queues.get(c.queue)
        if buckets is None:
            buckets = self.queues[c.queue] = {}
        bucket = buckets.get(c.priority)
        if bucket is None:
            bucket = buckets[c.priority] = _Bucket()
            self.priorities[c.queue] = sorted(buckets, reverse=True)
        bucket.add(c)
        self.runs[c.run_id] = c

    def remove(self, rid: str) -> None:
        c = self.runs.pop(rid, None)
        if c is None:
            return
        self.deadlines.pop(rid, None)
        buckets = self.queues[c.queue]
        bucket = buckets[c.priority]
        bucket.remove(c)
        if not bucket:
            del buckets[c.priority]
            if buckets:
                self.priorities[c.queue].remove(c.priority)
            else:
                del self.queues[c.queue], self.priorities[c.queue]

    def candidates(self, queue: str, horizon_ms: int, limit: int) -> list[Candidate]:
        out: list[Candidate] = []
        buckets = self.queues.get(queue)
        if buckets is None:
            return out
        for priority in self.priorities[queue]:
            for c in buckets[priority].in_order():
                if c.ready_ms > horizon_ms:
                    break  # the rest of this priority is not ready either
                out.append(c)
                if len(out) >= limit:
                    return out
        return out


class PendingIndex:
    """See the module docstring. ``start`` begins a build; ``stop`` drops everything.

    The lock guards only what the Raft thread touches (the buffer, the inbox, the state
    flags) and the swap of the tables: nothing is parsed under it, so the Raft thread never
    waits for more than a list append."""

    def __init__(self, store: Store, max_runs: int = MAX_RUNS) -> None:
        self._store = store
        self._max_runs = max_runs
        self._lock = threading.Lock()
        self._tables = _Tables()
        self._generation = 0  # bumped by start, stop and a switch-off: older work is dropped
        self._building = False
        # (log index, [(run id, record)] put in, ids taken out) of the entries applied during
        # a build (replayed after it), and of those since the last drain
        self._buffer: list[tuple[int, Sequence[tuple[str, bytes]], Sequence[str]]] = []
        self._inbox: list[tuple[Sequence[tuple[str, bytes]], Sequence[str]]] = []
        self.ready = False
        self.overflowed = False

    # ---- lifecycle (dispatcher thread) -------------------------------------------------------

    def start(self) -> threading.Thread:
        """Watch the store and build the index from a snapshot in a new thread (returned)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._reset()
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
            self._reset()

    def _reset(self) -> None:
        """Forget everything (caller holds the lock). The tables are replaced, not cleared: a
        reader still holding the old ones finishes on them."""
        self.ready = False
        self._tables = _Tables()
        self._buffer = []
        self._inbox = []

    def _build(self, generation: int) -> None:
        try:
            applied, records = self._store.pending_snapshot(limit=self._max_runs + 1)
            tables = _Tables()
            tables.change(records, ())
        except Exception:  # the planner keeps reading LMDB; the next leadership retries
            log.exception("event=pending_index_build_failed")
            with self._lock:
                if generation == self._generation:
                    self._building = False
            return
        del records
        while True:  # replay what was applied meanwhile, outside the lock, until nothing is left
            with self._lock:
                if generation != self._generation:
                    return  # stopped or restarted meanwhile
                if len(tables.runs) > self._max_runs:
                    self._switch_off(len(tables.runs))
                    return
                meanwhile, self._buffer = self._buffer, []
                if not meanwhile:
                    self._building = False
                    self._tables = tables
                    self.ready = True
                    break
            for index, added, removed in meanwhile:
                if index > applied:
                    tables.change(added, removed)
        log.info("event=pending_index_ready runs=%d applied_index=%d", len(tables.runs), applied)

    # ---- feed (Raft tick thread) -------------------------------------------------------------

    def _feed(self, index: int, added: Sequence[tuple[str, bytes]], removed: Sequence[str]) -> None:
        with self._lock:
            if self._building:
                self._buffer.append((index, added, removed))
            elif self.ready:
                self._inbox.append((added, removed))

    # ---- upkeep and reads (dispatcher thread) ------------------------------------------------

    def drain(self) -> None:
        """Take in the entries applied since the last drain (the dispatcher calls it every
        tick, so the inbox stays small even when no worker asks for candidates)."""
        with self._lock:
            if not self._inbox:
                return
            inbox, self._inbox = self._inbox, []
            tables, generation = self._tables, self._generation
        for added, removed in inbox:
            tables.change(added, removed)
        if len(tables.runs) > self._max_runs:
            with self._lock:
                if generation == self._generation:
                    self._switch_off(len(tables.runs))

    def _switch_off(self, count: int) -> None:
        """Past max_runs (caller holds the lock): forget everything until restarted."""
        self._generation += 1
        self._building = False
        self._reset()
        self.overflowed = True
        # (the store keeps calling _feed until stop(); it finds the index neither ready nor
        # building and queues nothing)
        log.warning(
            "event=pending_index_off runs=%d limit=%d note=%s",
            count,
            self._max_runs,
            "grant planning reads LMDB until the backlog shrinks and the index is rebuilt",
        )

    def __len__(self) -> int:
        self.drain()
        return len(self._tables.runs)

    def candidates(self, queue: str, horizon_ms: int, limit: int) -> list[Candidate]:
        """Up to ``limit`` PENDING runs of ``queue`` ready at or before ``horizon_ms``, in grant
        order (highest priority, then oldest ready time, then run id)."""
        self.drain()
        return self._tables.candidates(queue, horizon_ms, limit)

    def dispatch_expired(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """(run id, attempt) of up to ``limit`` PENDING runs whose dispatch deadline is at or
        before ``now_ms``, earliest deadline first, however many runs wait ahead of them."""
        self.drain()
        return self._tables.expired(now_ms, limit)
