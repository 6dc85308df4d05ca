"""Limits that keep one client from hurting everyone, and their pure checks.

Each limit answers RESOURCE_EXHAUSTED (or DEADLINE_EXCEEDED for a silent stream) with a message
naming the limit and the flag that raises it; none of them changes replicated state.
"""

from __future__ import annotations

from dataclasses import dataclass

from schedd.errors import ResourceExhausted


@dataclass(frozen=True)
class Limits:
    #: A Connect stream must send its Hello within this many seconds (--hello-timeout).
    hello_timeout_s: float = 10.0
    #: Worker streams one principal may hold on the leader at once (--max-worker-streams).
    #: Each stream holds one of the node's gRPC threads for as long as it lasts.
    max_worker_streams_per_principal: int = 32
    #: Worker streams of all principals together; the rest of the gRPC threads stay free for
    #: every other call. 0: the node's gRPC threads minus ``reserved_grpc_threads``.
    max_worker_streams: int = 0
    reserved_grpc_threads: int = 16
    #: At most one TransferLeadership per this many seconds on one node.
    transfer_min_interval_s: float = 3.0
    #: Client writes are refused once the LMDB map is this full (or has less than
    #: ``storage_reserve_bytes`` left: one Raft entry may be 3 MiB), instead of letting apply
    #: meet MapFullError, which stops the node (exit 70) on every replica alike.
    storage_full_fraction: float = 0.9
    storage_reserve_bytes: int = 6 << 20


def check_storage(used_bytes: int, map_bytes: int, limits: Limits) -> None:
    """Raise ResourceExhausted when a client write could fill the LMDB map."""
    free = map_bytes - used_bytes
    if (
        used_bytes < limits.storage_full_fraction * map_bytes
        and free >= limits.storage_reserve_bytes
    ):
        return
    raise ResourceExhausted(
        f"storage: the state database is {100 * used_bytes // max(1, map_bytes)}% full "
        f"({used_bytes >> 20} of {map_bytes >> 20} MiB, {free >> 20} MiB free); writes need it "
        f"under {int(limits.storage_full_fraction * 100)}% with at least "
        f"{limits.storage_reserve_bytes >> 20} MiB free (one Raft entry can be 3 MiB). Restart "
        "the nodes one by one with a larger --map-size, or delete jobs and let retention remove "
        "finished runs"
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
