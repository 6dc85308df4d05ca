"""The agent's ``Worker``: checks its arguments, wires the stream and the handler runner, and owns
the lifecycle (start, run with signals, drain and stop).

The delivery contract is written in :mod:`schedd.agent`; the pieces are
:mod:`schedd.agent.stream` (finding the leader, the Connect stream, the ticker),
:mod:`schedd.agent.runner` (the handler pool, cancellation, the drain),
:mod:`schedd.agent.shared` (the state they share under one lock) and the pure
:mod:`schedd.agent.core` (the lease book). Private module: import ``Worker`` from
:mod:`schedd.agent`.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from schedd import rules
from schedd.agent.core import Handler, kv
from schedd.agent.runner import Runner, in_handler
from schedd.agent.shared import Intent, Shared
from schedd.agent.stream import CHANNEL_OPTIONS, Stream
from schedd.sdk.core import resolve_namespace
from schedd.sdk.credentials import Credentials
from schedd.sdk.endpoints import parse_endpoints

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["Worker", "default_worker_id"]


def default_worker_id() -> str:
    """``hostname-pid-xxxx``: unique per process, readable in ``schedctl run list``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Worker:
    """An embedded worker: connects to the cluster leader and runs handlers for its firings.

    ``endpoints``: ``"host:port,host:port"`` or a sequence; any node will do (followers redirect
    to the leader). ``queues``: which queues to take firings from. ``tags``: what this worker
    offers (``Hello.tags``; a job with tags goes only to workers carrying all of them).
    ``concurrency``: handlers run at once, sync and async alike (the leader never has more
    firings in flight to this worker). ``worker_id``: shown in run records; default
    ``hostname-pid-xxxx``. ``drain_timeout``: seconds running handlers get on SIGTERM /
    ``stop()`` before their leases are released. ``clock``: monotonic seconds (tests).
    ``credentials``: TLS roots, client certificate and token, as for
    :class:`schedd.client.Client` (default: from the ``SCHEDD_*`` variables).
    ``metrics_registry``: a ``prometheus_client.CollectorRegistry`` to record handler figures
    in (:mod:`schedd.agent.metrics`; None: no metrics, prometheus_client not imported).
    Bad arguments raise ``ValueError``; a malformed or empty ``endpoints`` raises
    :class:`schedd.errors.InvalidArgument`, which is one. Guide: docs/agent.md.

    Threads (all named ``schedd-*``; all daemon threads except the handler pool's, which
    Python joins at exit):

    * **stream** (:mod:`schedd.agent.stream`) — connects (following the ``schedd-leader`` hint
      of a follower, else rotating endpoints with 50 ms → 1 s backoff, skipping for 5 s a node
      that looked frozen), sends Hello, then reads server messages: Welcome, Firings (submitted
      to the pool), CompletionAcks, LeasesLost.
    * gRPC's **request consumer** — pulls the stream's request generator, which turns queued
      intents into Heartbeat / Completions / Release messages. gRPC pulls the next message only
      after the last write completed; that is how a heartbeat write is confirmed before its
      leases are renewed.
    * **ticker** (:mod:`schedd.agent.stream`) — every heartbeat interval queues a heartbeat,
      queues resends of unacked completions and starts a liveness probe (``GetNodeStatus`` on
      the stream's connection; no answer within ~2 heartbeat intervals, or "not leader", tears
      the stream down); it aborts a stream that got no Welcome within 5 s, and cancels leases
      that have had no confirmed renewal for a TTL, even while disconnected.
    * **handler pool** (:mod:`schedd.agent.runner`) — up to ``concurrency`` threads running
      your sync handlers.
    * **asyncio** — the event loop async handlers run on as tasks (no pool thread each),
      started on first use; a lost lease cancels the task.

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
        credentials: Credentials | None = None,
        namespace: str | None = None,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        # the namespace whose queues it serves (namespace=, else SCHEDD_NAMESPACE, else default)
        self.namespace = resolve_namespace(namespace)
        creds = Credentials.resolve(credentials)
        creds.check()  # a missing certificate file fails here, not on every reconnect
        if isinstance(queues, str):
            queues = [q.strip() for q in queues.split(",")]
        self.queues = [q for q in dict.fromkeys(queues) if q]
        if not self.queues:
            raise ValueError("queues: at least one queue name is required")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency: must be an integer >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        # Checked before connecting by the rule the server applies (an InvalidArgument is a
        # ValueError).
        self.tags = rules.worker_tags(tags)
        if (
            isinstance(drain_timeout, bool)
            or not isinstance(drain_timeout, (int, float))
            or drain_timeout < 0
        ):
            raise ValueError(
                f"drain_timeout: must be a number of seconds >= 0, got {drain_timeout!r}"
            )
        self.drain_timeout = float(drain_timeout)
        self.worker_id = worker_id or default_worker_id()
        self.log = logger or logging.getLogger("schedd.agent")
        self._clock = clock

        self._shared = Shared(clock, self.log)
        metrics = None
        if metrics_registry is not None:  # prometheus_client only when asked for
            from schedd.agent.metrics import AgentMetrics

            metrics = AgentMetrics(metrics_registry)
        self._runner = Runner(
            self._shared, worker_id=self.worker_id, concurrency=concurrency, metrics=metrics
        )
        self._stream = Stream(
            self._shared,
            self._runner,
            endpoints=self.endpoints,
            worker_id=self.worker_id,
            queues=self.queues,
            concurrency=concurrency,
            tags=self.tags,
            namespace=self.namespace,
            channel=lambda target: creds.channel(target, CHANNEL_OPTIONS),
            metadata=creds.metadata,
        )

        self._state = _State.NEW
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- registration ----------------------------------------------------------------------

    def handler(self, job: str) -> Callable[[Handler], Handler]:
        """Decorator: run ``fn(ctx)`` for firings of ``job`` (``"*"``: any job without its own
        handler). ValueError when ``job`` already has a handler or is not a valid job name
        (the name is announced to the leader in Hello.jobs, which refuses a bad one)."""
        if not isinstance(job, str) or not job:
            raise ValueError("handler: job name must be a non-empty string")
        if job != "*":
            rules.name(job, "handler")

        def register(fn: Handler) -> Handler:
            if job == "*":
                self._runner.add_default(fn)
            else:
                self._runner.add(job, fn)
            return fn

        return register

    def default_handler(self, fn: Handler) -> Handler:
        """Run ``fn(ctx)`` for any job without its own handler. ValueError if one is set."""
        self._runner.add_default(fn)
        return fn

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and take firings in background threads; returns at once.
        RuntimeError if the worker was already started or stopped."""
        with self._state_lock:
            if self._state is not _State.NEW:
                raise RuntimeError(f"worker is {self._state.value}; a Worker runs once")
            self._state = _State.RUNNING
        self._runner.start()
        self.log.info(
            kv(
                "worker_starting",
                worker_id=self.worker_id,
                queues=",".join(self.queues),
                concurrency=self.concurrency,
                endpoints=",".join(self.endpoints),
            )
        )
        for name, target in (
            ("schedd-agent-stream", self._stream.run),
            ("schedd-agent-ticker", self._stream.run_ticker),
        ):
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
        if in_handler():
            if state is _State.RUNNING:
                threading.Thread(
                    target=self._drain_and_close,
                    args=(drain_timeout,),
                    name="schedd-agent-stop",
                    daemon=True,
                ).start()
            return
        if state is _State.RUNNING:
            self._drain_and_close(drain_timeout)
        else:
            self._stopped.wait()

    @property
    def stopped(self) -> bool:
        """True once the worker has stopped (after ``stop()`` returned, or a signal's drain)."""
        return self._stopped.is_set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._state is _State.RUNNING:
            self.log.info(kv("signal", signal=name, action="drain"))
            threading.Thread(target=self.stop, name="schedd-agent-stop", daemon=True).start()
        else:
            self.log.warning(kv("signal", signal=name, action="cancel_running_handlers"))
            self._shared.force.set()
            self._runner.force_cancel()

    def _drain_and_close(self, drain_timeout: float) -> None:
        shared = self._shared
        shared.draining.set()
        with shared.lock:
            n = len(shared.active)
            shared.kick_locked(
                Intent.RELEASE
            )  # an empty Release: the leader sends this stream no new firings
        self.log.info(kv("worker_stopping", running=n, drain_timeout_s=drain_timeout))
        left = self._runner.drain(drain_timeout)
        for le in left.released:
            self.log.warning(
                kv(
                    "lease_released",
                    run_id=le.run_id,
                    fence=le.fence,
                    note="the leader makes the run pending again at once"
                    if not left.unreleased
                    else "not written (no leader reachable): the lease expires at the leader",
                )
            )
        for rec in left.unacked:
            self.log.warning(
                kv(
                    "completion_unacked",
                    run_id=rec.run_id,
                    fence=rec.fence,
                    outcome=rec.outcome.name,
                    note="the leader will retry the run after its lease expires",
                )
            )
        shared.closing.set()
        shared.wake.set()
        with shared.lock:
            sess = shared.session
        if sess is not None:
            sess.close()  # half-close: the server ends the stream
        for t in self._threads:
            t.join(timeout=2.0)
            if t.is_alive() and sess is not None and sess.call is not None:
                sess.call.cancel()
                t.join(timeout=1.0)
        self._runner.shutdown()
        with self._state_lock:
            self._state = _State.STOPPED
        self.log.info(
            kv(
                "worker_stopped",
                worker_id=self.worker_id,
                unacked=len(left.unacked),
                handlers_still_running=left.still_running,
            )
        )
        self._stopped.set()

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` for a thread: a crash (a bug) is logged and stops the worker rather than
        leaving ``run()`` hanging."""

        def run() -> None:
            try:
                fn()
            except Exception:  # a bug: do not leave run() hanging
                self.log.exception(
                    kv("agent_thread_crashed", thread=threading.current_thread().name)
                )
                if not self._shared.closing.is_set():
                    threading.Thread(target=self.stop, args=(0.0,), daemon=True).start()

        return run
