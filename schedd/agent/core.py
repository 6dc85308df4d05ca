"""The worker agent's pure core: lease bookkeeping, completion records, handler context, when to
report an outage.

Nothing here does I/O, starts a thread or reads the clock: time comes from a clock function the
caller injects (monotonic seconds), and the caller holds the lock. The shell around it
(:mod:`schedd.agent.stream`, :mod:`schedd.agent.runner`) translates wire messages into calls
on :class:`LeaseBook` and executes what the book decides.

Private module: users import ``Context``, ``Handler`` and ``HandlerFailure`` from
:mod:`schedd.agent`, which re-exports them; the rest is the agent's internals. The delivery contract they implement is written in :mod:`schedd.agent`'s docstring; the
bookkeeping invariants are written on :class:`LeaseBook`.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CODE_ABORTED",
    "CODE_DEADLINE_EXCEEDED",
    "CODE_OK",
    "CODE_RESOURCE_EXHAUSTED",
    "CODE_UNAVAILABLE",
    "MAX_ERROR_CHARS",
    "MAX_PROGRESS_CHARS",
    "AckKind",
    "AckResult",
    "CompletionRecord",
    "Context",
    "Handler",
    "HandlerFailure",
    "LeaseBook",
    "LeaseKey",
    "LostLease",
    "Outcome",
    "OutageLog",
    "code_name",
    "context_from_firing",
    "kv",
    "ms_to_datetime",
]

#: A lease is identified by the run it is for and the fence it was granted under.
LeaseKey = tuple[str, int]

#: gRPC status-code numbers the core needs (kept here so the core never imports grpc).
CODE_OK = 0
CODE_DEADLINE_EXCEEDED = 4
CODE_RESOURCE_EXHAUSTED = 8
CODE_ABORTED = 10
CODE_UNAVAILABLE = 14
_RETRYABLE_CODES = frozenset({CODE_DEADLINE_EXCEEDED, CODE_RESOURCE_EXHAUSTED, CODE_UNAVAILABLE})
_CODE_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}

#: Longest error text sent with a failed completion (the rest is cut, with a marker).
MAX_ERROR_CHARS = 2000
#: Longest progress text a handler can report (the leader keeps at most as much).
MAX_PROGRESS_CHARS = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def code_name(code: int) -> str:
    """The gRPC status-code name for a number (``CODE_<n>`` when unknown)."""
    return _CODE_NAMES.get(code, f"CODE_{code}")


# ---- leases and completions ----------------------------------------------------------------


class Outcome(enum.IntEnum):
    """How an attempt ended; values equal the wire enum ``schedd.v1.Outcome``."""

    SUCCEEDED = 1
    FAILED = 2


@dataclass(frozen=True)
class CompletionRecord:
    """A finished attempt waiting for the leader's acknowledgement."""

    run_id: str
    fence: int
    outcome: Outcome
    error: str = ""
    exit_code: int | None = None  # the process's, when the handler ran one

    @property
    def key(self) -> LeaseKey:
        return (self.run_id, self.fence)


@dataclass(frozen=True)
class LostLease:
    """A lease the agent must stop working under; ``reason`` is for the log."""

    run_id: str
    fence: int
    reason: str

    @property
    def key(self) -> LeaseKey:
        return (self.run_id, self.fence)


class AckKind(enum.Enum):
    """What an acknowledgement did to a pending completion."""

    OK = "ok"  # committed; forgotten
    STALE = "stale"  # ABORTED: the lease had been lost, the result was discarded; forgotten
    RETRY = "retry"  # transient (UNAVAILABLE, DEADLINE_EXCEEDED, ...): kept, sent again later
    REJECTED = "rejected"  # any other code: the leader will never accept it; forgotten
    UNKNOWN = "unknown"  # no such pending completion (a duplicate ack); ignored


@dataclass(frozen=True)
class AckResult:
    kind: AckKind
    record: CompletionRecord | None
    code: int
    message: str = ""


@dataclass
class _Held:
    run_id: str
    fence: int
    ttl_s: float
    renewed_at: float  # monotonic seconds of the last confirmed renewal
    lost_reason: str | None = None  # set once: the lease is lost (the handler may still run)


@dataclass
class _Pending:
    record: CompletionRecord
    not_before: float = 0.0  # monotonic: do not resend before this (after a RETRY ack)


class LeaseBook:
    """Bookkeeping of one worker's leases and unacknowledged completions. Pure and single-threaded
    (the caller holds a lock); time comes only from the injected ``clock`` (monotonic seconds).

    Invariants:

    * A lease is *held* from ``acquire`` until ``finish``; a held lease is *live* until it is
      lost. Only live leases are heartbeated or offered in ``Hello.running``.
    * A lease is lost at most once, and loss is final: the leader told us (``Welcome.lost``,
      ``LeasesLost``, or a Hello lease it did not re-attach), or no renewal was confirmed for
      longer than its TTL. ``expire`` reports each such lease exactly once.
    * A renewal counts from the moment the renewing message (Hello or Heartbeat) was handed to the
      stream, and only once its write is known to have completed (or, for Hello, once Welcome
      re-attached it). The local deadline therefore never lies after the leader's, except by
      the time the transport takes to notice a silently dead peer.
    * Every finished attempt stays *pending* until an ack with a final code arrives, whether or
      not its lease was lost (the leader's fence check, not our guess, decides). ``start_session``
      marks every pending completion unsent, so a reconnect resends all of them.
    """

    def __init__(self, clock: Callable[[], float], default_ttl_ms: int = 30_000) -> None:
        if default_ttl_ms <= 0:
            raise ValueError("default_ttl_ms must be positive")
        self._clock = clock
        self._ttl_s = default_ttl_ms / 1000.0
        self._held: dict[LeaseKey, _Held] = {}
        self._pending: dict[LeaseKey, _Pending] = {}
        # The pending completions not written on the current stream (some may wait for a retry
        # delay), in the order they became unsent; every other pending completion was written.
        # ``take_unsent`` visits these, not every pending completion: under a burst thousands
        # wait for the leader's ack, and scanning them all for each message made the agent
        # quadratic.
        self._unsent: dict[LeaseKey, None] = {}
        self._hello: tuple[frozenset[LeaseKey], float] | None = None
        self._releases: dict[LeaseKey, bool] = {}  # given back -> written on the current stream
        self._contact: float | None = None  # last heartbeat written / welcome received
        # No live lease expires before this instant (a lower bound: renewals and finishes only
        # move deadlines later), so ``expire`` scans the leases only once it has passed instead
        # of on every firing.
        self._expiry_floor = float("inf")
        self.retry_delay_s = 0.5

    # ---- leases ----------------------------------------------------------------------------

    @property
    def ttl_ms(self) -> int:
        return int(round(self._ttl_s * 1000))

    def set_ttl(self, ttl_ms: int) -> None:
        """Adopt the leader's lease TTL for leases acquired without one (ignored when <= 0)."""
        if ttl_ms > 0:
            self._ttl_s = ttl_ms / 1000.0

    def acquire(self, run_id: str, fence: int, ttl_ms: int = 0) -> bool:
        """Start holding a lease received in a firing. False (and no change) for a duplicate:
        the same lease is already held, its completion is still pending, or it was released."""
        key = (run_id, fence)
        if key in self._held or key in self._pending or key in self._releases:
            return False
        ttl_s = ttl_ms / 1000.0 if ttl_ms > 0 else self._ttl_s
        # A firing read now may have waited in the socket while this process was frozen: its
        # lease is no younger than our last confirmed contact with the leader.
        start = self._clock()
        if self._contact is not None:
            start = min(start, self._contact)
        self._held[key] = _Held(run_id, fence, ttl_s, start)
        if start + ttl_s < self._expiry_floor:
            self._expiry_floor = start + ttl_s
        return True

    def contact(self, at: float) -> None:
        """The leader heard from us at ``at`` (a heartbeat was written, a Welcome arrived)."""
        if self._contact is None or at > self._contact:
            self._contact = at

    def is_held(self, run_id: str, fence: int) -> bool:
        return (run_id, fence) in self._held

    def is_lost(self, run_id: str, fence: int) -> bool:
        h = self._held.get((run_id, fence))
        return h is not None and h.lost_reason is not None

    def live(self) -> list[LeaseKey]:
        """Held leases not lost, in a stable order: what Heartbeat and Hello carry."""
        return sorted(k for k, h in self._held.items() if h.lost_reason is None)

    def held_count(self) -> int:
        return len(self._held)

    def heartbeat_written(self, leases: Iterable[LeaseKey], sent_at: float) -> None:
        """A heartbeat handed to the stream at ``sent_at`` was written: renew its leases."""
        for key in leases:
            h = self._held.get(key)
            if h is not None and h.lost_reason is None and sent_at > h.renewed_at:
                h.renewed_at = sent_at

    def _lose(self, h: _Held, reason: str) -> LostLease | None:
        if h.lost_reason is not None:
            return None
        h.lost_reason = reason
        return LostLease(h.run_id, h.fence, reason)

    def server_lost(self, leases: Iterable[LeaseKey], reason: str) -> list[LostLease]:
        """The leader revoked these leases (``LeasesLost``). Returns the newly lost held ones."""
        out = []
        for key in leases:
            h = self._held.get(key)
            if h is not None and (lost := self._lose(h, reason or "revoked by the leader")):
                out.append(lost)
        return out

    def expire(self) -> list[LostLease]:
        """Leases whose last confirmed renewal is more than their TTL ago: newly lost."""
        now = self._clock()
        if now <= self._expiry_floor:
            return []
        out = []
        floor = float("inf")
        for h in self._held.values():
            if h.lost_reason is not None:
                continue
            if now - h.renewed_at > h.ttl_s:
                reason = f"no contact with a leader for more than {int(h.ttl_s * 1000)} ms"
                lost = self._lose(h, reason)
                assert lost is not None
                out.append(lost)
            elif h.renewed_at + h.ttl_s < floor:
                floor = h.renewed_at + h.ttl_s
        self._expiry_floor = floor
        return out

    def next_expiry(self) -> float | None:
        """The earliest monotonic instant at which ``expire`` may report a lease. A full scan
        (the ticker asks a few times a second, not per firing); it also sharpens the floor."""
        times = [h.renewed_at + h.ttl_s for h in self._held.values() if h.lost_reason is None]
        self._expiry_floor = min(times) if times else float("inf")
        return self._expiry_floor if times else None

    # ---- releases (drain) ------------------------------------------------------------------

    def release(self, leases: Iterable[LeaseKey], reason: str) -> list[LostLease]:
        """Give these leases back to the leader (a drain ran out of time): each held one is lost
        now (its handler must stop), queued for a ``Release`` message, and its completion will
        not be sent (the leader makes the run PENDING again; a result from this attempt would
        only be rejected). A key that is not held (a firing refused while stopping) is queued
        too. Returns the newly lost held leases."""
        out = []
        for key in leases:
            h = self._held.get(key)
            if h is not None and (lost := self._lose(h, reason)):
                out.append(lost)
            if key not in self._pending:
                self._releases.setdefault(key, False)
        return out

    def is_released(self, run_id: str, fence: int) -> bool:
        return (run_id, fence) in self._releases

    def take_releases(self) -> list[LeaseKey]:
        """Released leases not yet written on the current stream; marks them written."""
        out = sorted(k for k, sent in self._releases.items() if not sent)
        for k in out:
            self._releases[k] = True
        return out

    def has_unsent_releases(self) -> bool:
        return not all(self._releases.values())

    # ---- sessions --------------------------------------------------------------------------

    def start_session(self) -> list[LeaseKey]:
        """A new stream is opening: returns the leases for ``Hello.running`` (taken now, at the
        moment Hello is handed to the stream) and marks every pending completion unsent."""
        leases = self.live()
        self._hello = (frozenset(leases), self._clock())
        for p in self._pending.values():
            p.not_before = 0.0
        self._unsent = dict.fromkeys(self._pending)
        for k in self._releases:  # the old stream may have died before the leader read them
            self._releases[k] = False
        return leases

    def on_welcome(
        self, lease_ttl_ms: int, reattached: Iterable[LeaseKey], lost: Iterable[LeaseKey]
    ) -> list[LostLease]:
        """Apply the leader's Welcome. Re-attached leases are renewed as of the Hello; leases in
        ``lost``, and Hello leases the leader did not re-attach, are lost. Returns the newly lost."""
        self.set_ttl(lease_ttl_ms)
        offered, hello_at = self._hello if self._hello else (frozenset(), self._clock())
        self._hello = None
        reattached_set = set(reattached)
        out = []
        for key in lost:
            h = self._held.get(key)
            if h is not None and (gone := self._lose(h, "not re-attached by the new leader")):
                out.append(gone)
        for key in sorted(offered):
            h = self._held.get(key)
            if h is None:
                continue  # finished meanwhile; its completion is pending and will be resent
            if key in reattached_set:
                if h.lost_reason is None and hello_at > h.renewed_at:
                    h.renewed_at = hello_at
            elif gone := self._lose(h, "not re-attached by the leader"):
                out.append(gone)
        return out

    # ---- completions -----------------------------------------------------------------------

    def finish(
        self,
        run_id: str,
        fence: int,
        outcome: Outcome,
        error: str = "",
        exit_code: int | None = None,
    ) -> CompletionRecord:
        """The handler for a lease returned: the lease is released and its completion pending.
        Finishing a lease that is not held still records the completion (the caller knows it ran),
        except for a released lease: its run is the leader's again, so nothing is sent."""
        key = (run_id, fence)
        self._held.pop(key, None)
        if len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 14] + "...[truncated]"
        record = CompletionRecord(run_id, fence, Outcome(outcome), error, exit_code)
        if key not in self._releases:
            self._pending[key] = _Pending(record)
            self._unsent[key] = None
        return record

    def take_unsent(self) -> list[CompletionRecord]:
        """Completions to write now (unsent, and past any retry delay); marks them sent."""
        now = self._clock()
        out = []
        for key in list(self._unsent):
            p = self._pending[key]
            if p.not_before <= now:
                del self._unsent[key]
                out.append(p.record)
        return out

    def has_unsent(self) -> bool:
        now = self._clock()
        return any(self._pending[key].not_before <= now for key in self._unsent)

    def pending_count(self) -> int:
        return len(self._pending)

    def pending(self) -> list[CompletionRecord]:
        """Every completion not yet finally acknowledged."""
        return [p.record for p in self._pending.values()]

    def on_ack(self, run_id: str, fence: int, code: int, message: str = "") -> AckResult:
        """Apply one ``CompletionAck``; see ``AckKind`` for what each code does."""
        key = (run_id, fence)
        p = self._pending.get(key)
        if p is None:
            return AckResult(AckKind.UNKNOWN, None, code, message)
        if code in _RETRYABLE_CODES:
            p.not_before = self._clock() + self.retry_delay_s
            self._unsent[key] = None
            return AckResult(AckKind.RETRY, p.record, code, message)
        del self._pending[key]
        self._unsent.pop(key, None)
        kind = (
            AckKind.OK
            if code == CODE_OK
            else AckKind.STALE
            if code == CODE_ABORTED
            else AckKind.REJECTED
        )
        return AckResult(kind, p.record, code, message)

    def idle(self) -> bool:
        """Nothing held, nothing pending, every release written: a drain is complete."""
        return not self._held and not self._pending and not self.has_unsent_releases()


# ---- outages --------------------------------------------------------------------------------


class OutageLog:
    """When the stream loop says that it has no leader. A welcomed stream that ends starts an
    outage (the caller logs ``disconnected``); so does the first failed attempt when none was
    welcomed yet. Every failed attempt is then a debug ``connect_failed`` line, except one
    ``no_leader`` warning per ``every_s`` seconds of the outage, carrying its length: an
    operator sees a long outage without a line per connection attempt."""

    def __init__(self, every_s: float = 10.0) -> None:
        self._every_s = every_s
        self._since: float | None = None  # when the current outage started
        self._last = 0.0  # when it was last reported (or started)

    def lost(self, now: float) -> None:
        """A welcomed stream ended at ``now``: an outage starts."""
        self._since = self._last = now

    def failed(self, now: float) -> int | None:
        """An attempt that got no Welcome ended at ``now``. Returns the outage's length in whole
        seconds when a ``no_leader`` warning is due, else None (log ``connect_failed``)."""
        if self._since is None:
            self._since = self._last = now
        if now - self._last >= self._every_s:
            self._last = now
            return int(now - self._since)
        return None


# ---- handler context -----------------------------------------------------------------------


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds → an aware UTC datetime (exact, no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


class HandlerFailure(Exception):
    """Raise from a handler to fail the attempt with ``str(exc)`` as the error text, logged as
    one line without a traceback (an expected failure, not a bug). ``exit_code``, when the work
    was a process, is reported with the completion: a job's retry policy may list exit codes
    that are not retried."""

    def __init__(self, *args: object, exit_code: int | None = None) -> None:
        super().__init__(*args)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Context:
    """What a handler gets for one attempt of one run. Immutable, except that ``cancelled`` is an
    event the agent sets when the handler should stop (lease lost or revoked, worker stopping).

    ``fence`` strictly increases across attempts of a run cluster-wide: pass it to the systems
    you write to so they can refuse a stale (lower) fence.
    """

    run_id: str
    job: str
    scheduled_at: datetime  # aware, UTC
    scheduled_ms: int  # the same instant in epoch milliseconds
    attempt: int  # 1 for the first delivery
    fence: int
    payload: str  # the job's payload (JSON text, may be empty)
    queue: str
    worker_id: str
    lease_ttl_ms: int = 0
    namespace: str = "default"  # the namespace of the job (job and queue are names within it)
    # When the handler may start (epoch ms; 0: at once). The leader commits some firings a
    # little ahead of their due time (--fire-ahead); the agent waits for this instant first.
    start_at_ms: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    _progress: list[str] = field(default_factory=lambda: [""], repr=False, compare=False)

    def heartbeat(self, progress: str = "") -> None:
        """Report progress (free text, e.g. ``"42/100 files"``): sent with the agent's next
        heartbeat and shown as ``Run.progress`` by ``GetRun``/``ListRuns`` while the run is
        leased (the leader keeps only the last text, in memory). Thread-safe and cheap: call it
        as often as you like. Texts over ``MAX_PROGRESS_CHARS`` are cut. The lease itself is
        renewed by the agent's own heartbeats, whether or not the handler calls this."""
        if not isinstance(progress, str):
            raise TypeError(f"progress: must be a str, got {type(progress).__name__}")
        self._progress[0] = progress[:MAX_PROGRESS_CHARS]

    @property
    def progress(self) -> str:
        """The last text given to :meth:`heartbeat` ('' before the first)."""
        return self._progress[0]

    async def wait_cancelled(self, poll_s: float = 0.05) -> None:
        """For async handlers: return once ``cancelled`` is set (polls every ``poll_s``; never
        blocks the event loop). Async handlers are also cancelled directly: the agent cancels
        their task, so ``asyncio.CancelledError`` is raised at the current ``await``."""
        import asyncio

        while not self.cancelled.is_set():
            await asyncio.sleep(poll_s)


class CancelEvent(threading.Event):
    """A :class:`threading.Event` whose condition variable is made on first ``set``/``wait``.
    Most handlers never wait on ``ctx.cancelled`` and most runs are never cancelled; the
    condition and its lock were a large share of the agent's per-firing cost."""

    _making = threading.Lock()

    def __init__(self) -> None:  # not Event.__init__: no condition yet
        self._flag = False

    @property  # type: ignore[override]
    def _cond(self) -> threading.Condition:
        cond: threading.Condition | None = self.__dict__.get("_lazy_cond")
        if cond is None:
            with CancelEvent._making:
                cond = self.__dict__.get("_lazy_cond")
                if cond is None:
                    cond = self.__dict__["_lazy_cond"] = threading.Condition(threading.Lock())
        return cond


def context_from_firing(
    firing: Any, worker_id: str, cancelled: threading.Event | None = None
) -> Context:
    """Build the handler context for a ``schedd.v1.Firing`` (any object with its fields)."""
    return Context(
        run_id=firing.run_id,
        job=firing.job,
        scheduled_at=ms_to_datetime(firing.scheduled_ms),
        scheduled_ms=firing.scheduled_ms,
        attempt=firing.attempt,
        fence=firing.fence,
        payload=firing.payload,
        queue=firing.queue,
        worker_id=worker_id,
        lease_ttl_ms=firing.lease_ttl_ms,
        namespace=getattr(firing, "namespace", "") or "default",
        start_at_ms=getattr(firing, "start_at_ms", 0),
        cancelled=cancelled if cancelled is not None else CancelEvent(),
    )


#: A job handler, ``fn(ctx)`` or ``async fn(ctx)``: returning means success, raising means failure.
Handler = Callable[[Context], Any]


# ---- logging -------------------------------------------------------------------------------


def kv(event: str, **fields: Any) -> str:
    """A ``key=value`` log message: ``event=...`` first, values with spaces or quotes quoted."""
    parts = [f"event={event}"]
    for k, v in fields.items():
        if v is None:
            continue
        s = v if isinstance(v, str) else str(v)
        if s == "" or any(c in s for c in ' "=\n\t'):
            s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{k}={s}")
    return " ".join(parts)
