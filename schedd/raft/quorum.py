"""Whether a node can serve: the decision behind its gRPC health status. Pure.

A node serves (SERVING) while it is part of a working majority:

* a leader that hears from a majority (pysyncobj's ``has_quorum``; a leader that loses its
  majority steps down after ``leader_fallback_s`` and is then a follower without a leader);
* a follower (or candidate) that is connected to a majority, knows a leader and heard from it
  within its election timeout.

Anything else is tolerated for ``grace_s`` (one maximal election timeout: an election in
progress, a leader change) and then reported as NOT_SERVING, until the condition holds again.
The grace also covers a node's start, before its first election completes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuorumView:
    """What the Raft layer says right now (read without a lock: each field is one read)."""

    is_leader: bool
    #: connected to (leader: hears from) a majority of the cluster, itself included
    has_quorum: bool
    #: a leader is known and, for a follower, has been heard from within the election timeout
    leader_heard: bool


class QuorumHealth:
    """Serving or not, from successive :class:`QuorumView` observations (monotonic seconds).

    Invariant: ``serving`` is False only after the node has been without a working majority
    for longer than ``grace_s`` without interruption; one good observation makes it True."""

    def __init__(self, grace_s: float, now_s: float) -> None:
        self.grace_s = grace_s
        self._last_ok = now_s
        self.serving = True
        self.reason = ""

    def observe(self, view: QuorumView, now_s: float) -> bool:
        """Record ``view`` at ``now_s``; True when ``serving`` changed."""
        ok, reason = _judge(view)
        if ok:
            self._last_ok = now_s
        serving = ok or now_s - self._last_ok <= self.grace_s
        changed = serving != self.serving
        self.serving = serving
        self.reason = "" if serving else reason
        return changed


def _judge(view: QuorumView) -> tuple[bool, str]:
    if view.is_leader:
        return (True, "") if view.has_quorum else (False, "leader_without_majority")
    if not view.has_quorum:
        return False, "no_majority_connected"
    if not view.leader_heard:
        return False, "no_leader"
    return True, ""
