"""Finding the leader: where the next attempt goes after a failed one, and how long to wait first.

One state machine, :class:`Navigator`, shared by the two clients of a schedd cluster that must
find its Raft leader: the SDK's retry schedule of one call (:class:`schedd.sdk.core.Attempts`)
and the worker agent's stream loop (:class:`schedd.agent.stream.Stream`). It is fed with the
outcome of each attempt and the current time and answers with the next target and the delay;
its rules:

* **Follow a hint.** A follower names the leader (the ``schedd-leader`` trailing metadata, or
  the agent's probe); the next attempt goes there, even to an address outside ``endpoints``.
  The first hop is free (no delay), and so are the next ones up to ``max_free_hops`` in a row:
  two nodes naming each other (stale hints during an election) cannot make a client spin.
* **Rotate.** A node that cannot be reached, or knows no leader, sends the next attempt to the
  endpoint after it in ``endpoints`` order (the first endpoint, when it was a hinted address
  outside the list).
* **Retry.** A node that names itself as the leader while refusing us is changing hands (a new
  term); the next attempt goes to it again.
* **Back off.** Every other move waits first: 50 ms, doubling, at most 1 s. The schedule
  restarts only when an attempt succeeds (:meth:`Navigator.connected`). With ``fast`` (the
  agent's), the delays of an outage's first seconds are capped lower: a failover elects a new
  leader within about two seconds, and a worker that backed off to a full second found it up
  to a second late (``python bench/failover.py``).
* **Suspects.** A node that looked frozen (it accepted TCP but never answered; a probe went
  unanswered) is skipped for ``suspect_for`` seconds: not rotated to, and not followed when a
  stale hint names it, as long as some endpoint is not suspect (when all are, none is skipped).
  Its peers elect a new leader meanwhile. A stale hint sends the next attempt to the next
  endpoint after the initial 50 ms, without growing the back-off: the election is about to
  name a leader. The SDK never marks suspects (an RPC deadline says nothing about a freeze),
  so for it this rule is inert.

Pure: no I/O, no clock, no sleeping, no threads. Time comes in as ``now`` (monotonic seconds of
the caller's clock) and delays go out as numbers; the caller sleeps. Private module: nothing
here is part of the public API.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from schedd.sdk.endpoints import backoff_delays

__all__ = ["Move", "Navigator", "move_after"]

#: Seconds a node that looked frozen is skipped (an election takes 0.4-1 s; a frozen leader's
#: followers have elected a new one well within this).
SUSPECT_S = 5.0


class Move(enum.Enum):
    """Where the attempt after a failed one goes."""

    FOLLOW = "follow"  # to the leader a node named (the hint)
    ROTATE = "rotate"  # to the next endpoint
    RETRY = "retry"  # to the same node again


def move_after(hint: str, current: str) -> Move:
    """The move after ``current`` could not serve us and named ``hint`` as the leader (``""``:
    no leader known). A node naming itself is changing hands: ask it again."""
    if hint and hint != current:
        return Move.FOLLOW
    if hint:
        return Move.RETRY
    return Move.ROTATE


class Navigator:
    """The next target and the delay before it, fed with failed attempts and the time.

    ``endpoints``: the configured addresses, in the order they are tried (not empty).
    ``first``: the first target (default ``endpoints[0]``; may be outside the list, e.g. a
    leader remembered from an earlier call). ``max_free_hops``: hints followed without delay in
    a row (default ``len(endpoints) + 1``); the next hop backs off and starts a new run.
    ``backoff``: ``(initial, maximum)`` seconds. ``suspect_for``: seconds a node that looked
    frozen is skipped. ``fast``: ``(seconds, cap)``: for ``seconds`` from an outage's first
    back-off (since construction or :meth:`connected`), no back-off exceeds ``cap``.

    Contract, for any sequence of calls:

    * :meth:`failed` returns 0 at most ``max_free_hops`` times in a row, and only for a hop to
      a hint; after a hint naming a skipped suspect it returns ``initial``; every other delay
      is the next of ``initial``, doubling, capped at ``maximum`` (and at ``fast``'s cap
      during the fast phase), the schedule restarting only after :meth:`connected`.
    * After :meth:`failed`, ``target`` is not a suspect at ``now`` unless every listed
      endpoint is one (then suspicion says nothing and rotation goes round all of them).
    * A suspect is skipped until ``suspect_for`` seconds after it was last found frozen.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        first: str | None = None,
        max_free_hops: int | None = None,
        backoff: tuple[float, float] = (0.05, 1.0),
        suspect_for: float = SUSPECT_S,
        fast: tuple[float, float] | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("endpoints: at least one is required")
        self._endpoints = list(endpoints)
        self._target = first if first is not None else self._endpoints[0]
        self._max_free_hops = len(self._endpoints) + 1 if max_free_hops is None else max_free_hops
        if self._max_free_hops < 0:
            raise ValueError(f"max_free_hops: must be >= 0, got {max_free_hops}")
        self._backoff = backoff
        self._delays = backoff_delays(*backoff)
        self._suspect_for = suspect_for
        self._suspects: dict[str, float] = {}  # address -> until when it is skipped
        self._hops = 0  # free hops in a row so far
        self._fast = fast
        self._fast_until: float | None = None  # end of this outage's fast phase

    @property
    def target(self) -> str:
        """Where the next attempt goes."""
        return self._target

    @property
    def endpoints(self) -> list[str]:
        """The configured addresses (a copy)."""
        return list(self._endpoints)

    def is_suspect(self, address: str, now: float) -> bool:
        """Whether ``address`` is being skipped at ``now``."""
        until = self._suspects.get(address)
        return until is not None and now < until

    def suspects(self, now: float) -> list[str]:
        """The addresses skipped at ``now``, sorted."""
        return sorted(a for a, until in self._suspects.items() if now < until)

    def connected(self) -> None:
        """An attempt at ``target`` succeeded (the agent: a stream was welcomed). The back-off
        schedule and the run of free hops start over, and the target is no longer suspect: it
        answered. The SDK needs none of this: each call starts a fresh navigator."""
        self._delays = backoff_delays(*self._backoff)
        self._hops = 0
        self._fast_until = None
        self._suspects.pop(self._target, None)

    def failed(self, move: Move, *, hint: str = "", now: float, frozen: bool = False) -> float:
        """An attempt at ``target`` failed; ``move`` says where the next one should go (``hint``:
        the leader it named, required for :attr:`Move.FOLLOW`). ``frozen``: the node looked
        frozen, so it becomes a suspect. Moves ``target`` and returns the seconds to wait before
        the next attempt (0 for a free hop)."""
        if move is Move.FOLLOW and not hint:
            raise ValueError("Move.FOLLOW needs the hint to follow")
        for address in [a for a, until in self._suspects.items() if until <= now]:
            del self._suspects[address]
        if frozen:
            self._suspects[self._target] = now + self._suspect_for
        stale = move is Move.FOLLOW and self._skipped(hint, now)
        follow = move is Move.FOLLOW and not stale
        if follow and self._hops < self._max_free_hops:
            self._hops += 1
            delay = 0.0
        elif stale:
            # A stale hint naming a frozen node: its peers answer, so an election is under way
            # and will name a new leader within a couple of seconds. Ask the others after the
            # shortest pause, without growing the back-off, so the new leader is found as soon
            # as it exists; the pause keeps two followers that both name the frozen node from
            # being asked in a tight loop.
            self._hops = 0
            delay = self._backoff[0]
        else:
            self._hops = 0
            delay = next(self._delays)
            if self._fast is not None and now < self._fast_until_from(now):
                delay = min(delay, self._fast[1])
        if follow:
            self._target = hint
        elif move is not Move.RETRY or self._skipped(self._target, now):
            self._target = self._after(self._target, now)
        return delay

    def _fast_until_from(self, now: float) -> float:
        """The end of the fast phase of the outage under way (it starts with its first
        back-off)."""
        assert self._fast is not None
        if self._fast_until is None:
            self._fast_until = now + self._fast[0]
        return self._fast_until

    def _skipped(self, address: str, now: float) -> bool:
        """A suspect is skipped while some listed endpoint is not one; when every endpoint is,
        suspicion tells nothing apart and nothing is skipped."""
        return self.is_suspect(address, now) and not all(
            self.is_suspect(a, now) for a in self._endpoints
        )

    def _after(self, current: str, now: float) -> str:
        """The endpoint after ``current`` in list order that is not skipped; the first such one
        when ``current`` is not in the list."""
        n = len(self._endpoints)
        start = self._endpoints.index(current) + 1 if current in self._endpoints else 0
        for k in range(n):
            candidate = self._endpoints[(start + k) % n]
            if not self._skipped(candidate, now):
                return candidate
        raise AssertionError("unreachable: some endpoint is never skipped")
