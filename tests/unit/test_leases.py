"""The leader's in-memory lease table, with a fake monotonic time."""

from __future__ import annotations

from schedd.server.leases import LeaseTable


def test_renew_extends_and_expiry_takes_once() -> None:
    t = LeaseTable(ttl_s=10)
    t.add("r1", 5, "w1", now=0)
    assert t.renew("r1", 5, "w1", now=8)
    assert t.take_expired(now=15) == []
    expired = t.take_expired(now=18)
    assert [(e.run_id, e.fence) for e in expired] == [("r1", 5)]
    assert t.take_expired(now=100) == []


def test_renew_with_stale_fence_fails() -> None:
    t = LeaseTable(ttl_s=10)
    t.add("r1", 7, "w1", now=0)
    assert not t.renew("r1", 6, "w1", now=1)
    assert not t.renew("r2", 7, "w1", now=1)
    assert not t.release("r1", 6)
    assert t.release("r1", 7)
    assert len(t) == 0


def test_reconcile_matches_committed_leases() -> None:
    t = LeaseTable(ttl_s=10)
    t.add("gone", 1, "w1", now=0)  # completed elsewhere: dropped
    t.add("regranted", 2, "w1", now=0)  # re-granted under a new fence: replaced
    t.add("kept", 3, "w2", now=0)
    t.reconcile({"regranted": (9, "w3"), "kept": (3, "w2"), "new": (4, "w1")}, now=5)
    assert t.get("gone") is None
    assert t.get("regranted").fence == 9 and t.get("regranted").expires_at == 15
    assert t.get("kept").expires_at == 10  # untouched
    assert t.get("new").expires_at == 15  # unknown to this leader: one fresh lease period
    assert t.count_for("w1") == 1 and t.next_expiry() == 10
