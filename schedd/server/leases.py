"""The leader's in-memory lease table. Pure: times are monotonic seconds passed in.

Heartbeats renew leases here, without a Raft write. Only an *expiry* is replicated (an
ExpireLeases command, which makes the old fence stale), so a worker that stops heartbeating
loses its lease through a committed decision that every replica shares.

Invariant: the table never holds a lease LMDB does not (``reconcile`` drops them) and holds
every lease LMDB does after ``reconcile`` (unknown ones get one fresh lease period, as after a
leader change).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lease:
    run_id: str
    fence: int
    worker_id: str
    expires_at: float
    progress: str = ""  # the handler's last progress text (from heartbeats; memory only)


class LeaseTable:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._leases: dict[str, Lease] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def get(self, run_id: str) -> Lease | None:
        return self._leases.get(run_id)

    def add(self, run_id: str, fence: int, worker_id: str, now: float) -> None:
        self._leases[run_id] = Lease(run_id, fence, worker_id, now + self.ttl_s)

    def renew(
        self, run_id: str, fence: int, worker_id: str, now: float, progress: str = ""
    ) -> bool:
        """Extend a lease held under exactly this fence by ``worker_id``; False if it is not (or
        no longer) held by that worker. A heartbeat from anyone else never keeps a lease alive.
        A non-empty ``progress`` replaces the lease's last progress text (empty keeps it)."""
        lease = self._leases.get(run_id)
        if lease is None or lease.fence != fence or lease.worker_id != worker_id:
            return False
        lease.expires_at = now + self.ttl_s
        if progress:
            lease.progress = progress
        return True

    def release(self, run_id: str, fence: int, worker_id: str | None = None) -> bool:
        """Drop the lease held under this fence (and by ``worker_id``, when given)."""
        lease = self._leases.get(run_id)
        if lease is None or lease.fence != fence:
            return False
        if worker_id is not None and lease.worker_id != worker_id:
            return False
        del self._leases[run_id]
        return True

    def take_expired(self, now: float, limit: int = 1000) -> list[Lease]:
        """Remove and return leases past their expiry, oldest first."""
        out = sorted(
            (lease for lease in self._leases.values() if lease.expires_at <= now),
            key=lambda lease: lease.expires_at,
        )[:limit]
        for lease in out:
            del self._leases[lease.run_id]
        return out

    def by_worker(self) -> dict[str, list[str]]:
        """Run ids of the leases held, per worker id (sorted)."""
        out: dict[str, list[str]] = {}
        for lease in self._leases.values():
            out.setdefault(lease.worker_id, []).append(lease.run_id)
        return {w: sorted(r) for w, r in out.items()}

    def count_for(self, worker_id: str) -> int:
        return sum(1 for lease in self._leases.values() if lease.worker_id == worker_id)

    def next_expiry(self) -> float | None:
        return min((lease.expires_at for lease in self._leases.values()), default=None)

    def reconcile(self, committed: dict[str, tuple[int, str]], now: float) -> None:
        """Make the table match the committed leases (run id -> (fence, worker id))."""
        for run_id in [
            r for r, lease in self._leases.items() if committed.get(r, (None,))[0] != lease.fence
        ]:
            del self._leases[run_id]
        for run_id, (fence, worker_id) in committed.items():
            if run_id not in self._leases:
                self.add(run_id, fence, worker_id, now)

    def clear(self) -> None:
        self._leases.clear()


def completion_verdict(
    state_leased: bool,
    already_succeeded: bool,
    run_fence: int,
    holder: str,
    fence: int,
    success: bool,
    worker_id: str,
) -> tuple[str, str] | None:
    """Answer a completion at once from the committed run, before anything is proposed:
    ``("ABORTED", ...)`` for a fence that is not the run's current lease, ``("PERMISSION_DENIED",
    ...)`` when ``worker_id`` does not hold it; None when it may be proposed (apply checks again).
    A resent success for a run already SUCCEEDED under this fence is proposed (apply says
    "already recorded") if the holder sends it."""
    stale = run_fence != fence or not (state_leased or (success and already_succeeded))
    if stale:
        return (
            "ABORTED",
            f"fence: {fence} is stale (current fence {run_fence}); the result was discarded",
        )
    if holder != worker_id:
        return (
            "PERMISSION_DENIED",
            f"worker_id: fence {fence} is leased to another worker session; only the worker "
            "holding the lease can complete it",
        )
    return None
