"""The embedded worker agent: ``Worker`` runs your handlers for the firings the leader sends.

Usage::

    from schedd.agent import Worker

    worker = Worker("127.0.0.1:7001,127.0.0.1:7002", queues=["default"], concurrency=4)

    @worker.handler("nightly-report")
    def report(ctx):                      # ctx: Context
        ctx.heartbeat("rendering")        # progress text, shown by GetRun while it runs
        write_report(ctx.scheduled_at, fence=ctx.fence)

    @worker.handler("ping")
    async def ping(ctx):                  # async handlers run on the worker's own event loop
        await notify(ctx.payload)

    worker.run()                          # until stop(), SIGINT or SIGTERM (drains)
    # or, embedded in a service: worker.start() ... worker.stop()

Delivery contract (what a handler can rely on):

* **At least once.** A firing may be delivered again (with a higher ``fence``) when a lease is
  lost: the worker was cut off from the leader, paused, or its completion never arrived. Make
  effects idempotent, or fence them: a sink that remembers the highest fence it accepted for a
  run and refuses lower ones gives exactly-once effect.
* **Outcome.** Returning means success. Raising means failure (error text = ``repr`` of the
  exception, traceback logged); raise ``HandlerFailure("text")`` to fail with exactly that text
  and no traceback. If ``ctx.cancelled`` was set by the time the handler returns,
  the attempt is reported **failed** even if it returned normally: the agent cannot tell a
  handler that finished from one that gave up early, and reporting a retry is the choice that
  never loses a firing.
* **Cancellation.** ``ctx.cancelled`` is set when the lease is lost (the leader said so, or the
  agent had no contact with a leader for longer than the lease TTL), when a drain times out, or
  on a forced stop; an async handler's task is also cancelled. Python cannot kill a thread: a
  sync handler that ignores it keeps its pool slot.
* **Drain.** ``stop()`` / SIGTERM: no new firings, running handlers finish (heartbeats go on)
  for up to ``drain_timeout``; the leases still held then are *released* (``Release``): the
  leader makes those runs PENDING again at once without using an attempt.
* **Fenced effects.** :func:`schedd.fencing.fenced_sqlite` refuses a stale attempt's write in
  your SQLite database; raising its ``StaleFence`` fails the attempt with one log line.
* **Completions** are kept until the leader acknowledges them (committed through Raft) and are
  resent after a reconnect; the fence makes a duplicate harmless. A result whose lease had
  already been lost is rejected with ``ABORTED`` and logged as discarded.

Structure: a pure core in :mod:`schedd.agent.core` (``LeaseBook``, ``context_from_firing``,
``kv``) that does no I/O and takes an injected monotonic clock, and this thin shell (``Worker``)
that owns the gRPC stream, the heartbeat ticker and the handler thread pool. The core's public
names are re-exported here; the address helpers (endpoint parsing, the ``schedd-leader`` hint,
back-off) are shared with the SDK in :mod:`schedd.sdk.endpoints`. See ``Worker`` for the threads and
their locking.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import os
import queue
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from schedd import rules
from schedd.agent import core as _agentcore
from schedd.agent.core import (
    AckKind,
    Context,
    Handler,
    HandlerFailure,
    LeaseBook,
    LeaseKey,
    LostLease,
    Outcome,
    code_name,
    context_from_firing,
    kv,
)
from schedd.agent.core import (
    AckResult as AckResult,
)
from schedd.agent.core import (
    CompletionRecord as CompletionRecord,
)
from schedd.errors import StaleFence
from schedd.sdk.endpoints import backoff_delays, leader_hint, parse_endpoints

# What users call; the lease book, completion records and the rest are the agent's internals
# (schedd.agent.core), importable but not part of the API.
__all__ = ["Context", "Handler", "HandlerFailure", "Worker"]

# Importable from here before the pure core moved to schedd.agent.core; not part of __all__.
CODE_OK = _agentcore.CODE_OK
CODE_DEADLINE_EXCEEDED = _agentcore.CODE_DEADLINE_EXCEEDED
CODE_RESOURCE_EXHAUSTED = _agentcore.CODE_RESOURCE_EXHAUSTED
CODE_ABORTED = _agentcore.CODE_ABORTED
CODE_UNAVAILABLE = _agentcore.CODE_UNAVAILABLE
MAX_ERROR_CHARS = _agentcore.MAX_ERROR_CHARS
ms_to_datetime = _agentcore.ms_to_datetime


def _check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Worker tags, checked before connecting by the rule the server applies (``schedd.rules``);
    an InvalidArgument is a ValueError."""
    return rules.worker_tags(tags)


def default_worker_id() -> str:
    """``hostname-pid-xxxx``: unique per process, readable in ``schedctl run list``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


# ================================================================================================
# Shell: the gRPC stream, the ticker, the handler pool.
# ================================================================================================

_HB = "heartbeat"
_FLUSH = "flush"
_RELEASE = "release"
_CLOSE = "close"
_DEFAULT_HB_MS = 2000           # assumed until the first Welcome says otherwise
_FLUSH_GRACE_S = 6.0            # after a drain: time for cancelled handlers to end and acks to come
_TICK_MAX_S = 0.25
_CONNECT_TIMEOUT_S = 3.0        # TCP + HTTP/2 handshake; a frozen node accepts TCP but never answers
_WELCOME_TIMEOUT_S = 5.0        # Hello sent, no Welcome: give up on this node
_NO_LEADER_LOG_EVERY_S = 10.0
# A node found frozen (no answer to the probe or to a connect) is skipped for this long, even
# when a follower's stale hint still names it: its peers elect a new leader meanwhile.
_SUSPECT_S = 5.0


class _Session:
    """One Connect stream. The outgoing queue holds *intents* (heartbeat, flush, close); the
    request generator turns them into messages when gRPC asks for the next one, so every
    message carries the state of that moment."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.q: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.welcomed = False
        self.closed = False
        self.hb_interval_s = _DEFAULT_HB_MS / 1000.0
        self.next_hb = 0.0
        self.call: Any = None
        self.probe: Callable[[], Any] | None = None  # starts a liveness probe; None = unsupported
        self.probe_inflight = False
        self.next_probe = 0.0
        self.started_at = 0.0
        self.node_id = ""
        self.hint: str | None = None  # a leader address learnt outside the stream (probe)
        self.unresponsive = False     # the probe found the node frozen or cut off
        self.drain_announced = False  # a Release (maybe empty) was written on this stream

    def abort(self) -> None:
        """Tear the stream down from outside the stream thread (dead peer, no Welcome)."""
        call = self.call
        if call is not None:
            call.cancel()

    def kick(self, intent: str) -> None:
        if not self.closed:
            self.q.put(intent)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.q.put(_CLOSE)


@dataclass
class _Active:
    ctx: Context
    reason: list[str] = field(default_factory=list)  # why ctx.cancelled was set (first wins)


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


_in_handler = threading.local()


class _AsyncCancelled(Exception):
    """An async handler's task ended cancelled (the agent cancelled it)."""


class Worker:
    """An embedded worker: connects to the cluster leader and runs handlers for its firings.

    ``endpoints``: ``"host:port,host:port"`` or a sequence; any node will do (followers redirect
    to the leader). ``queues``: which queues to take firings from. ``tags``: what this worker
    offers (``Hello.tags``; a job with tags goes only to workers carrying all of them).
    ``concurrency``: handlers run at once, sync and async alike (the leader never has more
    firings in flight to this worker). ``worker_id``: shown in run records; default
    ``hostname-pid-xxxx``. ``drain_timeout``: seconds running handlers get on SIGTERM /
    ``stop()`` before their leases are released. ``clock``: monotonic seconds (tests).
    Bad arguments raise ``ValueError``; a malformed or empty ``endpoints`` raises
    :class:`schedd.errors.InvalidArgument`, which is one. Guide: docs/agent.md.

    Threads (all named ``schedd-*``; all daemon threads except the handler pool's, which
    Python joins at exit):

    * **stream** — connects (following the ``schedd-leader`` hint of a follower, else rotating
      endpoints with 50 ms → 1 s backoff), sends Hello, then reads server messages: Welcome,
      Firings (submitted to the pool), CompletionAcks, LeasesLost.
    * gRPC's **request consumer** — pulls our request generator, which turns queued intents
      into Heartbeat / Completions messages. gRPC pulls the next message only after the last
      write completed; that is how a heartbeat write is confirmed before its leases are renewed.
    * **ticker** — every heartbeat interval queues a heartbeat, queues resends of unacked
      completions and starts a liveness probe (``GetNodeStatus`` on the stream's connection;
      no answer within ~2 heartbeat intervals, or "not leader", tears the stream down); it
      aborts a stream that got no Welcome within 5 s, and cancels leases that have had no
      confirmed renewal for a TTL, even while disconnected.
    * **handler pool** — ``concurrency`` threads running your handlers (for an async handler,
      the thread waits for its task and cancels it when ``ctx.cancelled`` is set).
    * **asyncio** — the event loop async handlers run on, started on first use.

    One lock guards the ``LeaseBook``, the active handlers and the current session; no I/O or
    user code runs under it. Reconnect: a new stream starts with ``LeaseBook.start_session``
    (Hello carries live leases; every unacked completion becomes unsent) and, once Welcome
    arrives, flushes all unsent completions. Failure contract: the worker never raises out of
    ``run`` for network trouble; it logs and keeps trying until stopped.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        queues: Sequence[str] = ("default",),
        tags: Mapping[str, str] | None = None,
        concurrency: int = 1,
        worker_id: str | None = None,
        drain_timeout: float = 10.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        if isinstance(queues, str):
            queues = [q.strip() for q in queues.split(",")]
        self.queues = [q for q in dict.fromkeys(queues) if q]
        if not self.queues:
            raise ValueError("queues: at least one queue name is required")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency: must be an integer >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        self.tags = _check_tags(tags)
        if isinstance(drain_timeout, bool) or not isinstance(drain_timeout, (int, float)) or drain_timeout < 0:
            raise ValueError(f"drain_timeout: must be a number of seconds >= 0, got {drain_timeout!r}")
        self.drain_timeout = float(drain_timeout)
        self.worker_id = worker_id or default_worker_id()
        self.log = logger or logging.getLogger("schedd.agent")
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._default: Handler | None = None

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when handlers end / acks come
        self._book = LeaseBook(clock)
        self._active: dict[LeaseKey, _Active] = {}
        self._session: _Session | None = None
        self._hb_ms = _DEFAULT_HB_MS

        self._state = _State.NEW
        self._state_lock = threading.Lock()
        self._draining = threading.Event()  # no new firings are started
        self._closing = threading.Event()   # the stream loop must end
        self._force = threading.Event()     # second signal: cancel everything now
        self._stopped = threading.Event()
        self._wake = threading.Event()      # wakes the ticker early
        self._pool: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._aloop: asyncio.AbstractEventLoop | None = None  # runs async handlers (lazily started)
        self._aloop_lock = threading.Lock()

    # ---- registration ----------------------------------------------------------------------

    def handler(self, job: str) -> Callable[[Handler], Handler]:
        """Decorator: run ``fn(ctx)`` for firings of ``job`` (``"*"``: any job without its own
        handler). ValueError when ``job`` already has a handler."""
        if not isinstance(job, str) or not job:
            raise ValueError("handler: job name must be a non-empty string")

        def register(fn: Handler) -> Handler:
            if job == "*":
                self.default_handler(fn)
                return fn
            if job in self._handlers:
                raise ValueError(f"handler: job {job!r} already has a handler")
            self._handlers[job] = fn
            return fn

        return register

    def default_handler(self, fn: Handler) -> Handler:
        """Run ``fn(ctx)`` for any job without its own handler. ValueError if one is set."""
        if self._default is not None:
            raise ValueError("handler: a default ('*') handler is already registered")
        self._default = fn
        return fn

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and take firings in background threads; returns at once.
        RuntimeError if the worker was already started or stopped."""
        with self._state_lock:
            if self._state is not _State.NEW:
                raise RuntimeError(f"worker is {self._state.value}; a Worker runs once")
            self._state = _State.RUNNING
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="schedd-handler")
        self.log.info(kv("worker_starting", worker_id=self.worker_id, queues=",".join(self.queues),
                         concurrency=self.concurrency, endpoints=",".join(self.endpoints)))
        for name, target in (("schedd-agent-stream", self._stream_loop),
                             ("schedd-agent-ticker", self._ticker_loop)):
            t = threading.Thread(target=self._guard(target), name=name, daemon=True)
            self._threads.append(t)
            t.start()

    def run(self) -> None:
        """Start and block until the worker has stopped (``stop()`` from another thread, or
        SIGINT/SIGTERM when called from the main thread: the first signal drains, a second one
        cancels running handlers)."""
        if self._state is _State.NEW:
            self.start()
        restore: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[sig] = signal.signal(sig, self._on_signal)
        try:
            while not self._stopped.wait(0.2):
                pass
        finally:
            for sig, old in restore.items():
                signal.signal(sig, old)

    def stop(self, drain_timeout: float | None = None) -> None:
        """Drain and stop. At once the leader is told (an empty ``Release``) to send no new
        firings; running handlers get up to ``drain_timeout`` seconds to finish, heartbeats
        going on meanwhile, and their completions are sent as usual. Handlers still running
        then have their leases **released** (a ``Release`` message: the leader makes those runs
        PENDING again at once, without using an attempt, and their fences stale) and
        ``ctx.cancelled`` set; their results are not sent. A firing that arrives during the
        drain is not started and is released the same way. Then up to 6 s more are spent
        until every release is written and every completion acknowledged; what is left is
        logged (the leader expires those leases after the TTL).
        ``drain_timeout`` defaults to the worker's (10 s unless given to the constructor).
        Idempotent and thread-safe: a second call waits for the first to finish. Called from
        inside a handler it only starts the stop (waiting would wait for itself)."""
        with self._state_lock:
            state = self._state
            if state is _State.NEW:
                self._state = _State.STOPPED
                self._stopped.set()
                return
            if state is _State.RUNNING:
                self._state = _State.STOPPING
        if drain_timeout is None:
            drain_timeout = self.drain_timeout
        if getattr(_in_handler, "active", False):
            if state is _State.RUNNING:
                threading.Thread(target=self._drain_and_close, args=(drain_timeout,),
                                 name="schedd-agent-stop", daemon=True).start()
            return
        if state is _State.RUNNING:
            self._drain_and_close(drain_timeout)
        else:
            self._stopped.wait()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._state is _State.RUNNING:
            self.log.info(kv("signal", signal=name, action="drain"))
            threading.Thread(target=self.stop, name="schedd-agent-stop", daemon=True).start()
        else:
            self.log.warning(kv("signal", signal=name, action="cancel_running_handlers"))
            self._force.set()
            with self._lock:
                self._cancel_all_locked("worker stopping (forced)")
            with self._changed:
                self._changed.notify_all()

    def _drain_and_close(self, drain_timeout: float) -> None:
        self._draining.set()
        with self._lock:
            n = len(self._active)
            sess = self._session
            if sess is not None and sess.welcomed:
                sess.kick(_RELEASE)  # an empty Release: the leader sends this stream no new firings
        self.log.info(kv("worker_stopping", running=n, drain_timeout_s=drain_timeout))
        deadline = self._clock() + max(0.0, drain_timeout)
        released: list[LostLease] = []
        with self._changed:
            # Heartbeats go on meanwhile (the ticker is untouched), so the leases stay ours.
            while self._active and not self._force.is_set():
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.1))
            if self._active:
                why = "worker stopping (forced)" if self._force.is_set() else "worker stopping (drain timeout)"
                self.log.warning(kv("drain_timeout", still_running=len(self._active),
                                    action="releasing leases and cancelling handlers"))
                released = self._book.release(list(self._active), why)
                self._cancel_all_locked(f"{why}: lease released")
                sess = self._session
                if sess is not None and sess.welcomed:
                    sess.kick(_RELEASE)
            self._wake.set()
            # Wait for the releases to be written and the completions to be acknowledged; a
            # released handler is not waited for (its run is the leader's again).
            grace = self._clock() + (1.0 if self._force.is_set() else _FLUSH_GRACE_S)
            while (self._book.pending() or self._book.has_unsent_releases()) and self._clock() < grace:
                self._changed.wait(0.05)
            unacked = self._book.pending()
            unreleased = self._book.has_unsent_releases()
            still = len(self._active)
        for le in released:
            self.log.warning(kv("lease_released", run_id=le.run_id, fence=le.fence,
                                note="the leader makes the run pending again at once" if not unreleased
                                else "not written (no leader reachable): the lease expires at the leader"))
        for rec in unacked:
            self.log.warning(kv("completion_unacked", run_id=rec.run_id, fence=rec.fence,
                                outcome=rec.outcome.name,
                                note="the leader will retry the run after its lease expires"))
        self._closing.set()
        self._wake.set()
        with self._lock:
            sess = self._session
        if sess is not None:
            sess.close()  # half-close: the server ends the stream
        for t in self._threads:
            t.join(timeout=2.0)
            if t.is_alive() and sess is not None and sess.call is not None:
                sess.call.cancel()
                t.join(timeout=1.0)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._aloop_lock:
            aloop, self._aloop = self._aloop, None
        if aloop is not None:
            aloop.call_soon_threadsafe(aloop.stop)
        with self._state_lock:
            self._state = _State.STOPPED
        self.log.info(kv("worker_stopped", worker_id=self.worker_id, unacked=len(unacked),
                         handlers_still_running=still))
        self._stopped.set()

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:  # a bug: do not leave run() hanging
                self.log.exception(kv("agent_thread_crashed", thread=threading.current_thread().name))
                if not self._closing.is_set():
                    threading.Thread(target=self.stop, args=(0.0,), daemon=True).start()

        return run

    # ---- stream ----------------------------------------------------------------------------

    def _stream_loop(self) -> None:
        delays = backoff_delays()
        idx = 0
        hint: str | None = None
        down_since: float | None = None
        last_down_log = 0.0
        suspects: dict[str, float] = {}  # endpoint -> until when it is skipped
        while not self._closing.is_set():
            now = self._clock()
            for ep in [ep for ep, until in suspects.items() if until <= now]:
                del suspects[ep]
            if hint is not None and hint in suspects:
                hint = None  # a stale hint naming the frozen node: ask the others instead
            from_hint = hint is not None
            if hint is not None:
                target, hint = hint, None
            else:
                healthy = [ep for ep in self.endpoints if ep not in suspects] or self.endpoints
                target = healthy[idx % len(healthy)]
                idx += 1
            welcomed, new_hint, why, unresponsive = self._one_session(target)
            if self._closing.is_set():
                break
            now = self._clock()
            if unresponsive:
                suspects[target] = now + _SUSPECT_S
            if welcomed:
                delays = backoff_delays()
                down_since, last_down_log = now, now
                self.log.warning(kv("disconnected", target=target, reason=why,
                                    leader_hint=new_hint, action="reconnecting"))
            else:
                if down_since is None:
                    down_since, last_down_log = now, now
                if now - last_down_log >= _NO_LEADER_LOG_EVERY_S:
                    last_down_log = now
                    self.log.warning(kv("no_leader", seconds=int(now - down_since),
                                        last_target=target, last_error=why))
                else:
                    self.log.debug(kv("connect_failed", target=target, reason=why,
                                      leader_hint=new_hint))
            if new_hint:
                hint = new_hint  # even our own target: a node re-elected in a new term
                if new_hint != target and (welcomed or not from_hint):
                    continue  # the first hop to a named leader is free; later ones back off
            self._closing.wait(next(delays))

    def _one_session(self, target: str) -> tuple[bool, str | None, str, bool]:
        """Run one stream to ``target`` until it breaks. Returns (welcomed, leader hint, reason,
        whether the node looked frozen: no connection in time, or no answer to the probe)."""
        import grpc

        from schedd.pb import api_grpc, api_pb2

        session = _Session(target)
        # No keepalive pings: gRPC resets the keepalive timer on every write, so with heartbeats
        # flowing it never pings, and pings between sparse heartbeats earn a too_many_pings
        # GOAWAY from a default server. Liveness comes from the probe (see _start_probe).
        channel = grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)])
        hint: str | None = None
        why = "stream ended"
        try:
            why = self._await_connection(channel)
            if why:
                return False, None, why, why.startswith("no connection within")
            status = api_grpc.ClusterServiceStub(channel).GetNodeStatus
            session.probe = lambda: status.future(
                api_pb2.NodeStatusRequest(), timeout=self._probe_timeout_s())
            session.started_at = self._clock()
            call = api_grpc.WorkerServiceStub(channel).Connect(self._requests(session))
            session.call = call
            with self._lock:
                self._session = session
            for msg in call:
                self._on_message(session, msg)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            why = f"{getattr(code, 'name', code)}: {e.details() if hasattr(e, 'details') else e}"
            md = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
            hint = leader_hint(md) or None  # "" (no usable hint) -> None, as the loop expects
        finally:
            with self._lock:
                if self._session is session:
                    self._session = None
                session.close()
            channel.close()
            self._wake.set()  # the ticker re-plans (and exits when closing)
        return session.welcomed, hint or session.hint, why, session.unresponsive

    def _await_connection(self, channel: Any) -> str:
        """Wait until ``channel`` is connected: '' when ready, else why not. A refused connection
        fails at once; a node that accepts TCP but never answers (frozen) fails after
        ``_CONNECT_TIMEOUT_S``; a stop in progress ends the wait."""
        import grpc

        settled = threading.Event()
        seen: list[Any] = [None]
        final = (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                 grpc.ChannelConnectivity.SHUTDOWN)

        def on_change(state: Any) -> None:
            seen[0] = state
            if state in final:
                settled.set()

        channel.subscribe(on_change, try_to_connect=True)
        try:
            give_up = self._clock() + _CONNECT_TIMEOUT_S
            while not settled.wait(0.05):
                if self._closing.is_set():
                    return "worker closing"
                if self._clock() >= give_up:
                    return f"no connection within {_CONNECT_TIMEOUT_S:g} s"
        finally:
            channel.unsubscribe(on_change)
        if seen[0] is grpc.ChannelConnectivity.READY:
            return ""
        return f"connection failed ({getattr(seen[0], 'name', seen[0])})"

    def _requests(self, session: _Session) -> Iterator[Any]:
        """The request stream (pulled by gRPC's consumer thread). Code after a ``yield`` runs only
        once gRPC asks for the next message, i.e. after the yielded one was written."""
        from schedd.pb import api_pb2

        with self._lock:
            running = self._book.start_session()
        yield api_pb2.WorkerMessage(hello=api_pb2.Hello(
            worker_id=self.worker_id, queues=self.queues, concurrency=self.concurrency,
            running=[api_pb2.Lease(run_id=r, fence=f) for r, f in running], tags=self.tags))
        while True:
            intent = session.q.get()
            if intent == _CLOSE or session.closed:
                return
            with self._lock:
                if intent == _HB:
                    leases, sent_at = self._book.live(), self._clock()
                    msg = api_pb2.WorkerMessage(heartbeat=api_pb2.Heartbeat(
                        leases=[api_pb2.Lease(run_id=r, fence=f, progress=self._progress_locked((r, f)))
                                for r, f in leases]))
                elif intent == _RELEASE:
                    leases, sent_at = [], 0.0
                    keys = self._book.take_releases()
                    if not keys and (session.drain_announced or not self._draining.is_set()):
                        continue
                    session.drain_announced = True
                    msg = api_pb2.WorkerMessage(release=api_pb2.Release(
                        leases=[api_pb2.Lease(run_id=r, fence=f) for r, f in keys],
                        reason="worker stopping" + (" (drain timeout)" if keys else "")))
                    self.log.info(kv("release_sent", leases=len(keys), target=session.target,
                                     note="the leader makes these runs pending again" if keys
                                     else "the leader sends no new firings"))
                else:
                    leases, sent_at = [], 0.0
                    recs = self._book.take_unsent()
                    if not recs:
                        continue
                    msg = api_pb2.WorkerMessage(completions=api_pb2.Completions(completions=[
                        api_pb2.Completion(run_id=c.run_id, fence=c.fence, outcome=cast(Any, int(c.outcome)),
                                           error=c.error, exit_code=c.exit_code) for c in recs]))
            if intent == _FLUSH:
                self.log.debug(kv("completions_sent", count=len(msg.completions.completions)))
            yield msg
            if intent == _HB:
                with self._lock:
                    self._book.contact(sent_at)
                    if leases:
                        self._book.heartbeat_written(leases, sent_at)
            elif intent == _RELEASE:
                with self._changed:  # a drain waits for its releases to be written
                    self._changed.notify_all()

    def _on_message(self, session: _Session, msg: Any) -> None:
        body = msg.WhichOneof("body")
        if body == "welcome":
            self._on_welcome(session, msg.welcome)
        elif body == "firings":
            for firing in msg.firings.firings:
                self._on_firing(firing)
        elif body == "acks":
            self._on_acks(msg.acks.acks)
        elif body == "lost":
            keys = [(le.run_id, le.fence) for le in msg.lost.leases]
            with self._lock:
                lost = self._book.server_lost(keys, msg.lost.reason)
            self._cancel(lost)
        else:
            self.log.debug(kv("unknown_server_message", body=body))

    def _on_welcome(self, session: _Session, w: Any) -> None:
        with self._lock:
            self._book.contact(self._clock())
            lost = self._book.on_welcome(
                w.lease_ttl_ms,
                [(le.run_id, le.fence) for le in w.reattached],
                [(le.run_id, le.fence) for le in w.lost])
            if w.heartbeat_interval_ms > 0:
                self._hb_ms = int(w.heartbeat_interval_ms)
            session.hb_interval_s = self._hb_ms / 1000.0
            session.next_hb = self._clock() + session.hb_interval_s
            session.next_probe = session.next_hb
            session.node_id = w.node_id
            session.welcomed = True
            session.kick(_FLUSH)  # resend every unacked completion
            if self._draining.is_set() or self._book.has_unsent_releases():
                session.kick(_RELEASE)  # stopping: no new firings, and give back what we must
        self.log.info(kv("connected", node_id=w.node_id, target=session.target,
                         lease_ttl_ms=w.lease_ttl_ms, heartbeat_ms=w.heartbeat_interval_ms,
                         reattached=len(w.reattached), lost=len(lost)))
        self._cancel(lost)
        self._wake.set()

    def _on_firing(self, firing: Any) -> None:
        key = (firing.run_id, firing.fence)
        if self._draining.is_set():
            with self._lock:
                self._book.release([key], "worker stopping")
                sess = self._session
                if sess is not None and sess.welcomed:
                    sess.kick(_RELEASE)
            self.log.warning(kv("firing_refused", run_id=firing.run_id, fence=firing.fence,
                                job=firing.job, reason="worker stopping",
                                note="not started; released back to the leader"))
            return
        with self._lock:
            expired: list[LostLease] = []
            if not self._book.acquire(firing.run_id, firing.fence, firing.lease_ttl_ms):
                dup = True
            else:
                dup = False
                expired = self._book.expire()
                if any((x.run_id, x.fence) == key for x in expired):
                    # Frozen since before it arrived: the leader has expired this lease already.
                    self._book.finish(firing.run_id, firing.fence, Outcome.FAILED,
                                      "not started: the lease expired before the firing was read")
                else:
                    ctx = context_from_firing(firing, self.worker_id)
                    self._active[key] = _Active(ctx)
        if dup:
            self.log.info(kv("firing_duplicate", run_id=firing.run_id, fence=firing.fence))
            return
        if any((x.run_id, x.fence) == key for x in expired):
            self.log.warning(kv("firing_expired", run_id=firing.run_id, fence=firing.fence, job=firing.job,
                                note="not started: no contact with a leader for longer than its lease"))
            self._cancel([x for x in expired if (x.run_id, x.fence) != key])
            return
        self._cancel(expired)
        self.log.info(kv("firing_received", run_id=firing.run_id, job=firing.job,
                         fence=firing.fence, attempt=firing.attempt,
                         scheduled_ms=firing.scheduled_ms))
        assert self._pool is not None
        try:
            self._pool.submit(self._run_handler, ctx)
        except RuntimeError:  # pool shut down: we are closing; the lease will expire
            with self._lock:
                self._active.pop(key, None)
                self._book.server_lost([key], "worker closed")

    def _on_acks(self, acks: Iterable[Any]) -> None:
        results = []
        with self._changed:
            for a in acks:
                results.append(self._book.on_ack(a.run_id, a.fence, a.code, a.message))
            self._changed.notify_all()
        for r in results:
            rec = r.record
            if r.kind is AckKind.OK and rec is not None:
                self.log.info(kv("completion_acked", run_id=rec.run_id, fence=rec.fence,
                                 outcome=rec.outcome.name))
            elif r.kind is AckKind.STALE and rec is not None:
                self.log.warning(kv("completion_rejected", run_id=rec.run_id, fence=rec.fence,
                                    code="ABORTED", outcome=rec.outcome.name,
                                    note="the lease had been lost; the result was discarded"))
            elif r.kind is AckKind.RETRY and rec is not None:
                self.log.info(kv("completion_retry", run_id=rec.run_id, fence=rec.fence,
                                 code=code_name(r.code), message=r.message))
            elif r.kind is AckKind.REJECTED and rec is not None:
                self.log.error(kv("completion_rejected", run_id=rec.run_id, fence=rec.fence,
                                  code=code_name(r.code), message=r.message,
                                  note="the result was discarded"))
        if any(r.kind is AckKind.RETRY for r in results):
            self._wake.set()

    # ---- handlers and cancellation ---------------------------------------------------------

    def _cancel(self, lost: Sequence[LostLease]) -> None:
        for le in lost:
            with self._lock:
                act = self._active.get(le.key)
                if act is not None:
                    if not act.reason:
                        act.reason.append(f"lease lost: {le.reason}")
                    act.ctx.cancelled.set()
            self.log.warning(kv("lease_lost", run_id=le.run_id, fence=le.fence, reason=le.reason,
                                action="handler cancelled" if act else "none running"))

    def _progress_locked(self, key: LeaseKey) -> str:
        act = self._active.get(key)
        return act.ctx.progress if act is not None else ""

    def _cancel_all_locked(self, reason: str) -> None:
        for act in self._active.values():
            if not act.reason:
                act.reason.append(reason)
            act.ctx.cancelled.set()

    def _run_handler(self, ctx: Context) -> None:
        _in_handler.active = True
        key = (ctx.run_id, ctx.fence)
        started = self._clock()
        fn = self._handlers.get(ctx.job) or self._default
        outcome, error = Outcome.SUCCEEDED, ""
        exit_code: int | None = None
        try:
            if ctx.cancelled.is_set():
                outcome, error = Outcome.FAILED, "cancelled before start"
            elif fn is None:
                outcome, error = Outcome.FAILED, f"no handler registered for job {ctx.job!r} on worker {self.worker_id}"
                self.log.error(kv("no_handler", run_id=ctx.run_id, job=ctx.job))
            else:
                self.log.debug(kv("handler_started", run_id=ctx.run_id, job=ctx.job, fence=ctx.fence))
                if inspect.iscoroutinefunction(fn):
                    self._run_async(fn, ctx)
                else:
                    fn(ctx)
        except HandlerFailure as e:  # expected: handler_finished below carries the text
            outcome, error, exit_code = Outcome.FAILED, str(e) or repr(e), e.exit_code
        except _AsyncCancelled:
            outcome, error = Outcome.FAILED, "cancelled"  # the reason is added below
        except StaleFence as e:  # a fenced write refused: expected after a lost lease, one line
            outcome, error = Outcome.FAILED, str(e)
            self.log.warning(kv("stale_fence", run_id=ctx.run_id, job=ctx.job, fence=ctx.fence, error=str(e),
                                note="a newer attempt owns this run; the effect was not applied"))
        except BaseException as e:  # a handler's failure is a result, not a crash
            outcome, error = Outcome.FAILED, repr(e)
            self.log.error(kv("handler_failed", run_id=ctx.run_id, job=ctx.job, fence=ctx.fence,
                              error=repr(e)), exc_info=True)
        finally:
            _in_handler.active = False
        with self._changed:
            act = self._active.pop(key, None)
            if ctx.cancelled.is_set() and (outcome is Outcome.SUCCEEDED or error == "cancelled"):
                why = act.reason[0] if act and act.reason else "cancelled"
                outcome, error = Outcome.FAILED, f"cancelled: {why}"
            released = self._book.is_released(ctx.run_id, ctx.fence)
            self._book.finish(ctx.run_id, ctx.fence, outcome, error, exit_code)
            sess = self._session
            if sess is not None and sess.welcomed:
                sess.kick(_FLUSH)
            self._changed.notify_all()
        self.log.info(kv("handler_finished", run_id=ctx.run_id, job=ctx.job, fence=ctx.fence,
                         outcome=outcome.name, ms=int((self._clock() - started) * 1000),
                         error=error or None, result="not sent: lease released" if released else None))

    # ---- async handlers --------------------------------------------------------------------

    def _async_loop(self) -> asyncio.AbstractEventLoop:
        """The worker's event loop for async handlers, started on first use in its own thread
        (``schedd-agent-asyncio``) and stopped with the worker."""
        with self._aloop_lock:
            if self._aloop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        # Stopped with handlers still running (released, or ignoring their
                        # cancellation): cancel them so the pool threads waiting for them end.
                        tasks = asyncio.all_tasks(loop)
                        for t in tasks:
                            t.cancel()
                        if tasks:
                            loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
                        loop.close()

                threading.Thread(target=serve, name="schedd-agent-asyncio", daemon=True).start()
                ready.wait()
                self._aloop = loop
            return self._aloop

    def _run_async(self, fn: Handler, ctx: Context) -> None:
        """Run ``await fn(ctx)`` on the worker's loop; this pool thread waits for it (so
        ``concurrency`` bounds async handlers too). When ``ctx.cancelled`` is set, the task is
        cancelled: ``asyncio.CancelledError`` is raised at its current ``await``. Raises what
        the coroutine raised, or ``_AsyncCancelled`` when it ended cancelled."""
        loop = self._async_loop()
        done = threading.Event()
        box: list[asyncio.Task[Any]] = []

        def begin() -> None:
            task = loop.create_task(fn(ctx))
            task.add_done_callback(lambda _t: done.set())
            box.append(task)

        loop.call_soon_threadsafe(begin)
        cancel_sent = False
        while not done.wait(0.05):
            if loop.is_closed():  # the worker stopped and its loop with it
                raise _AsyncCancelled()
            if ctx.cancelled.is_set() and not cancel_sent:
                cancel_sent = True
                loop.call_soon_threadsafe(lambda: box[0].cancel())
        task = box[0]
        if task.cancelled():
            raise _AsyncCancelled()
        exc = task.exception()
        if exc is not None:
            raise exc

    # ---- liveness probe --------------------------------------------------------------------

    def _probe_timeout_s(self) -> float:
        hb_s = self._hb_ms / 1000.0
        return max(1.0, min(2 * hb_s, self._book.ttl_ms / 3000.0))

    def _start_probe(self, sess: _Session) -> None:
        """Ask the node we stream to for its status over the same connection, once per
        heartbeat interval. Heartbeat writes succeed into the kernel buffer even when the leader
        is frozen (SIGSTOP, GC pause) or silently cut off, and gRPC keepalive never pings while
        we write; a round trip is the only proof of life. No answer within the probe timeout, or
        an answer saying the node no longer leads, tears the stream down so the stream loop
        finds the current leader while our leases are still valid there."""
        import grpc

        assert sess.probe is not None
        sent_at = self._clock()
        try:
            fut = sess.probe()
        except Exception as e:  # channel closed under us: the session is ending anyway
            sess.probe_inflight = False
            self.log.debug(kv("probe_not_sent", target=sess.target, error=repr(e)))
            return

        def done(f: Any) -> None:
            sess.probe_inflight = False
            if sess.closed:
                return
            try:
                status = f.result()
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    sess.probe = None  # an older server: rely on the stream alone
                    return
                self.log.warning(kv("leader_unresponsive", target=sess.target, node_id=sess.node_id,
                                    error=getattr(code, "name", str(code)),
                                    waited_ms=int((self._clock() - sent_at) * 1000),
                                    action="reconnecting"))
                sess.unresponsive = True
                sess.abort()
                return
            except Exception as e:  # CancelledError when the session ended first
                self.log.debug(kv("probe_failed", target=sess.target, error=repr(e)))
                return
            if status.role and status.role != "leader":
                self.log.warning(kv("leader_stepped_down", target=sess.target, node_id=status.node_id,
                                    role=status.role, leader_hint=status.leader_grpc or None,
                                    action="reconnecting"))
                sess.hint = status.leader_grpc or None
                sess.abort()

        fut.add_done_callback(done)

    # ---- ticker ----------------------------------------------------------------------------

    def _ticker_loop(self) -> None:
        while True:
            now = self._clock()
            with self._lock:
                if self._closing.is_set() and self._session is None:
                    return
                lost = self._book.expire()
                sess = self._session
                wake_at = now + _TICK_MAX_S
                probe = stale = False
                if sess is not None and sess.welcomed and not sess.closed:
                    if now >= sess.next_hb:
                        sess.kick(_HB)
                        sess.next_hb = now + sess.hb_interval_s
                    if self._book.has_unsent():
                        sess.kick(_FLUSH)
                    if sess.probe is not None and not sess.probe_inflight and now >= sess.next_probe:
                        probe = sess.probe_inflight = True
                        sess.next_probe = now + sess.hb_interval_s
                    wake_at = min(wake_at, sess.next_hb, sess.next_probe)
                elif sess is not None and not sess.closed:
                    stale = now - sess.started_at > _WELCOME_TIMEOUT_S
                nxt = self._book.next_expiry()
                if nxt is not None:
                    wake_at = min(wake_at, nxt + 0.001)
            if lost:
                self._cancel(lost)
            if probe and sess is not None:
                self._start_probe(sess)
            if stale and sess is not None:
                self.log.warning(kv("no_welcome", target=sess.target, seconds=_WELCOME_TIMEOUT_S,
                                    action="trying another node"))
                sess.abort()
            if self._closing.is_set() and sess is None:
                return
            self._wake.wait(max(0.005, wake_at - now))
            self._wake.clear()
