"""Limits that keep one client from hurting everyone, and their pure checks.

Each limit answers RESOURCE_EXHAUSTED (or DEADLINE_EXCEEDED for a silent stream) with a message
naming the limit and the flag that raises it; none of them changes replicated state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from schedd.errors import ResourceExhausted


@dataclass(frozen=True)
class Limits:
    #: A Connect stream must send its Hello within this many seconds (--hello-timeout).
    hello_timeout_s: float = 10.0
    #: Worker streams one principal may hold on the leader at once (--max-worker-streams). A
    #: fleet of workers often shares one identity, so by default one identity may use every
    #: stream; lower it when several teams share a cluster.
    max_worker_streams_per_principal: int = 1024
    #: Worker streams of all principals together, from the moment a stream opens (before its
    #: Hello) to its end (--worker-streams). Each holds one of the node's gRPC threads while it
    #: lasts, so the node has this many threads for streams plus ``reserved_grpc_threads`` for
    #: every other call: streams can never starve the API (health checks included).
    max_worker_streams: int = 1024
    reserved_grpc_threads: int = 64
    #: At most one TransferLeadership per this many seconds on one node.
    transfer_min_interval_s: float = 3.0
    #: Client writes are refused once the LMDB state fills this much of the map's ceiling
    #: (--max-map-size; or has less than ``storage_reserve_bytes`` left below it: one Raft entry
    #: may be 3 MiB), instead of letting apply meet MapFullError at the ceiling, which stops
    #: the node (exit 70) on every replica alike.
    storage_full_fraction: float = 0.9
    storage_reserve_bytes: int = 6 << 20
    #: Reads that walk a whole table (ListJobs, ListRuns without a job, ListAudit) at once on
    #: one node (--max-scans): each holds a read transaction and a gRPC thread while it walks.
    max_concurrent_scans: int = 4
    #: Mutating calls one principal may make per second on one node, and the burst it may
    #: spend at once (--write-rate RATE[/BURST]); 0 = no limit.
    write_rate_per_s: float = 500.0
    write_burst: int = 5000


def check_storage(used_bytes: int, map_bytes: int, limits: Limits) -> None:
    """Raise ResourceExhausted when a client write could fill the LMDB map up to its ceiling
    ``map_bytes`` (the map below it grows on its own)."""
    free = map_bytes - used_bytes
    if (
        used_bytes < limits.storage_full_fraction * map_bytes
        and free >= limits.storage_reserve_bytes
    ):
        return
    raise ResourceExhausted(
        f"storage: the state database is {100 * used_bytes // max(1, map_bytes)}% of its ceiling "
        f"({used_bytes >> 20} of {map_bytes >> 20} MiB, {free >> 20} MiB free); writes need it "
        f"under {int(limits.storage_full_fraction * 100)}% with at least "
        f"{limits.storage_reserve_bytes >> 20} MiB free (one Raft entry can be 3 MiB). Restart "
        "the nodes one by one with a larger --max-map-size, or delete jobs and let retention "
        "remove finished runs"
    )


class RateGate:
    """At most one event per ``interval_s``, none before ``not_before``, and nobody waits longer
    than ``max_wait_s`` for a turn (monotonic seconds passed in). Pure."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None
        self._prev: float | None = None

    def reserve(self, now: float, not_before: float, max_wait_s: float) -> tuple[bool, float]:
        """(True, seconds to wait before acting) with the turn booked, or (False, seconds until
        a turn could be had) when that is more than ``max_wait_s`` away."""
        start = max(now, not_before)
        if self._last is not None:
            start = max(start, self._last + self.interval_s)
        if start - now > max_wait_s:
            return False, start - now - max_wait_s
        self._prev, self._last = self._last, start
        return True, start - now

    def cancel(self, start: float) -> None:
        """Give back the turn booked for ``start`` (its caller gave up waiting), if it is still
        the latest one."""
        if self._last == start:
            self._last = self._prev


class ScanSlots:
    """A fixed number of concurrent full-scan reads (or worker streams); one that finds none
    free is refused at once (never queued: a queue would hold gRPC threads just the same)."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._sem = threading.BoundedSemaphore(self.slots)

    def try_acquire(self) -> bool:
        return self._sem.acquire(blocking=False)

    def release(self) -> None:
        self._sem.release()


@contextmanager
def scan_slot(slots: ScanSlots, method: str) -> Iterator[None]:
    """Hold one scan slot for the block, or raise ResourceExhausted naming the limit."""
    if not slots.try_acquire():
        raise ResourceExhausted(
            f"{method}: {slots.slots} full-table reads are already running on this node; retry "
            "in a moment, narrow the read (ListRuns with a job), or raise --max-scans"
        )
    try:
        yield
    finally:
        slots.release()


class TokenBucket:
    """``rate`` tokens per second up to ``burst`` (monotonic seconds passed in). Pure."""

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._at = now

    def take(self, now: float) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class WriteRates:
    """A token bucket per principal for mutating calls on one node. Buckets of principals idle
    long enough to be full again are forgotten, so the table stays as small as the set of
    active writers (at most ``max_principals``; beyond that the fullest are dropped)."""

    def __init__(self, rate: float, burst: int, max_principals: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_principals
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, principal: str, now: float) -> None:
        """Raise ResourceExhausted when ``principal`` has no write left this instant."""
        if self.rate <= 0:
            return
        with self._lock:
            bucket = self._buckets.get(principal)
            if bucket is None:
                if len(self._buckets) >= self._max:
                    self._forget_full(now)
                bucket = self._buckets[principal] = TokenBucket(self.rate, self.burst, now)
            wait = bucket.take(now)
        if wait > 0:
            raise ResourceExhausted(
                f"rate: {principal} made more than {self.burst} writes at once or "
                f"{self.rate:g} per second on this node; retry in {wait:.2f}s, or ask the "
                "operator to raise --write-rate"
            )

    def _forget_full(self, now: float) -> None:
        refill = self.burst / self.rate
        for name in [n for n, b in self._buckets.items() if now - b._at >= refill]:
            del self._buckets[name]
        while len(self._buckets) >= self._max:
            self._buckets.pop(next(iter(self._buckets)))
