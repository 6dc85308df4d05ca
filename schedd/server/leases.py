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
        """Extend a lease held under exactly this fence; False if it is not (or no longer) held.
        A non-empty ``progress`` replaces the lease's last progress text (empty keeps it)."""
        lease = self._leases.get(run_id)
        if lease is None or lease.fence != fence:
            return False
        lease.worker_id = worker_id
        lease.expires_at = now + self.ttl_s
        if progress:
            lease.progress = progress
        return True

    def release(self, run_id: str, fence: int) -> bool:
        lease = self._leases.get(run_id)
        if lease is None or lease.fence != fence:
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
