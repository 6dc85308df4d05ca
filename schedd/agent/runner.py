"""The agent's handler runner: the pool that runs your handlers, their cancellation, the drain.

Sync handlers run on ``concurrency`` pool threads (``schedd-handler_*``, see
:mod:`schedd.agent.pool`); a firing committed ahead of its start instant waits for it in the
waiting room (:mod:`schedd.agent.waiting`), holding no pool thread. Async handlers run as
tasks on an event loop the runner owns (``schedd-agent-asyncio``, started on first use) and
hold no pool thread either: a start instant's firings become tasks in one loop callback, a
task's done callback records its outcome, and a lost lease cancels its task at once.
``concurrency`` bounds them through the leader, which leases a worker no more runs than its
slots. (With an ``executor`` in place of the pool, tests only, a thread of it waits for each
task.) What a handler's return or exception means for the attempt is the delivery contract of
:mod:`schedd.agent`; the outcome goes to the lease book (``LeaseBook.finish``) and the stream
is asked to flush it.

Threads and locking: :meth:`Runner.run` executes on a pool thread; everything else may be
called from any thread. Shared state is touched only under ``Shared.lock`` (see
:mod:`schedd.agent.shared`), and never while a handler runs. The waiting room's lock may be
taken while ``Shared.lock`` is held, never the other way round: its thread hands firings to the
pool without holding it.

Private module: :class:`schedd.agent.Worker` is the API.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schedd.agent.core import (
    CompletionRecord,
    Context,
    Handler,
    HandlerFailure,
    LeaseKey,
    LostLease,
    Outcome,
    kv,
)
from schedd.agent.pool import HandlerPool
from schedd.agent.shared import Intent, Shared
from schedd.agent.waiting import WaitingRoom
from schedd.errors import StaleFence

if TYPE_CHECKING:
    from schedd.agent.metrics import AgentMetrics

__all__ = ["FLUSH_GRACE_S", "AsyncCancelled", "DrainResult", "Runner", "in_handler"]

#: After a drain: time for cancelled handlers to end and for the last acks to come.
FLUSH_GRACE_S = 6.0
#: The same after a forced stop (second signal): the operator wants out.
FORCED_FLUSH_GRACE_S = 1.0
#: How often a pool thread waiting for an async handler looks at ``ctx.cancelled``.
_ASYNC_POLL_S = 0.05

_in_handler = threading.local()


def in_handler() -> bool:
    """Whether the calling thread is running a handler (a ``stop()`` from inside a handler must
    not wait for the drain: the drain would wait for the handler calling it)."""
    return bool(getattr(_in_handler, "active", False))


class AsyncCancelled(Exception):
    """An async handler's task ended cancelled (the runner cancelled it)."""


@dataclass(frozen=True)
class DrainResult:
    """What :meth:`Runner.drain` left behind, for the Worker's closing log lines."""

    released: list[LostLease]  # leases given back because their handlers ran too long
    unacked: list[CompletionRecord]  # completions the leader never acknowledged
    unreleased: bool  # some Release was never written (no leader reachable)
    still_running: int  # handlers still running (released, or ignoring cancellation)


class StartGate:
    """Handlers due to start go before the bookkeeping of handlers that just finished.

    Firings committed ahead of their due time (``start_at_ms``) often share one start instant
    (a hundred jobs due on the same second). Their pool threads wake together and each needs
    the GIL to call its handler; a handler that finished meanwhile would hold it for its
    outcome's bookkeeping and log line, and every start after it would be that much late.
    So a finished handler's thread waits (releasing the GIL) while some start whose instant
    has come is still pending, at most ``max_wait_s``: starts are not held up by finishes, and
    a finish (its completion, and the slot it frees) is delayed by at most that bound, and only
    while starts are due.

    Every :meth:`expect` is matched by one :meth:`started` (whether the handler runs or not).
    """

    def __init__(
        self, clock_ms: Callable[[], float] | None = None, max_wait_s: float = 0.02
    ) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._pending: dict[int, int] = {}  # start instant (ms) -> handlers not started yet
        self._clock_ms = clock_ms or (lambda: time.time() * 1000)
        self.max_wait_s = max_wait_s

    def expect(self, at_ms: int) -> None:
        with self._cv:
            self._pending[at_ms] = self._pending.get(at_ms, 0) + 1

    def started(self, at_ms: int) -> None:
        with self._cv:
            left = self._pending.get(at_ms, 0) - 1
            if left > 0:
                self._pending[at_ms] = left
                return
            self._pending.pop(at_ms, None)
            self._cv.notify_all()

    def _due_locked(self) -> bool:
        now = self._clock_ms()
        return any(at <= now for at in self._pending)

    def yield_to_starts(self) -> None:
        """Return once no start whose instant has come is pending, or after ``max_wait_s``."""
        if not self._pending:
            return  # the common case (a dict's truth is read atomically under the GIL)
        with self._cv:
            if not self._due_locked():
                return
            deadline = time.monotonic() + self.max_wait_s
            while self._due_locked():
                left = deadline - time.monotonic()
                if left <= 0 or not self._cv.wait(left):
                    return


class Runner:
    """Runs a handler per firing and reports its outcome; see the module docstring.

    ``worker_id`` names the worker in the "no handler" error; ``concurrency`` is the pool size;
    ``executor`` replaces the pool (tests: run handlers inline); ``metrics``: where handler
    figures go (None: nowhere)."""

    def __init__(
        self,
        shared: Shared,
        *,
        worker_id: str,
        concurrency: int,
        executor: Executor | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self._shared = shared
        self._metrics = metrics
        self._worker_id = worker_id
        self._concurrency = concurrency
        self._handlers: dict[str, Handler] = {}
        self._default: Handler | None = None
        self._pool = executor  # tests: run handlers inline
        self._threads: HandlerPool[Context] | None = None
        self._async: dict[Handler, bool] = {}  # handler -> is a coroutine function
        self._aloop: asyncio.AbstractEventLoop | None = None  # runs async handlers (lazily started)
        self._aloop_lock = threading.Lock()
        # Tasks of async handlers started by the runner's own pool path, by lease (loop only)
        self._tasks: dict[LeaseKey, asyncio.Task[Any]] = {}
        self._closed = False
        self._any_async = False  # some handler is a coroutine function
        self._gate = StartGate()
        # Firings committed ahead wait for their start instant here, not on pool threads
        # (only with the runner's own pool: an executor given in its place runs them as before).
        self._waiting = WaitingRoom(self._submit_now)
        if metrics is not None:
            metrics.watch_waiting(self._waiting.__len__)

    # ---- registration ----------------------------------------------------------------------

    def add(self, job: str, fn: Handler) -> None:
        """Run ``fn`` for firings of ``job``. ValueError when ``job`` has a handler already."""
        if job in self._handlers:
            raise ValueError(f"handler: job {job!r} already has a handler")
        self._handlers[job] = fn
        self._any_async = self._any_async or self._is_async(fn)

    def add_default(self, fn: Handler) -> None:
        """Run ``fn`` for any job without its own handler. ValueError if one is set."""
        if self._default is not None:
            raise ValueError("handler: a default ('*') handler is already registered")
        self._default = fn
        self._any_async = self._any_async or self._is_async(fn)

    def _handler_name(self, job: str) -> str:
        """The name ``job``'s handler was registered under: the metrics label."""
        if job in self._handlers:
            return job
        return "*" if self._default is not None else "none"

    def handler_names(self) -> list[str]:
        """The jobs with a handler, sorted; ``*`` when a default handler is set."""
        return sorted(self._handlers) + (["*"] if self._default is not None else [])

    def lookup(self, job: str) -> Handler | None:
        """The handler for ``job``: its own, else the default, else None."""
        return self._handlers.get(job) or self._default

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the pool (unless an executor was given)."""
        if self._pool is None and self._threads is None:
            self._threads = HandlerPool(self._concurrency, self.run, "schedd-handler")

    def submit(self, ctx: Context) -> None:
        """Run the handler for ``ctx``, whose lease the caller has acquired and entered in
        ``Shared.active``. A firing committed ahead of its time waits in the waiting room until
        its ``start_at_ms`` (no thread is held meanwhile). When the pool is shut down (the
        worker is closing), the handler never starts and the lease is dropped; the leader
        expires it."""
        if self._threads is None:
            assert self._pool is not None, "start() first"
            try:
                self._pool.submit(self.run, ctx)
            except RuntimeError:  # shut down: we are closing; the lease will expire
                self._dropped(ctx)
            return
        at = ctx.start_at_ms
        if at and at > time.time() * 1000 and self._waiting.add(ctx):
            return
        if self._any_async and self._on_loop(ctx):
            self._start_tasks([ctx])
            return
        try:
            self._threads.submit(ctx)
        except RuntimeError:  # pool shut down: we are closing; the lease will expire
            self._dropped(ctx)

    def _submit_now(self, ctxs: list[Context]) -> None:
        """Hand ``ctxs`` to the pool, in order, at once (a whole start instant's worth: one at
        a time, the waiting room's thread would queue behind the pool threads for the GIL);
        those of async handlers to the event loop, at once too."""
        assert self._threads is not None
        if self._any_async:
            tasks: list[Context] = []
            threads: list[Context] = []
            for c in ctxs:
                (tasks if self._on_loop(c) else threads).append(c)
            if tasks:
                self._start_tasks(tasks)
            if not threads:
                return
            ctxs = threads
        try:
            self._threads.submit_many(ctxs)
        except RuntimeError:  # pool shut down: we are closing; the leases will expire
            for ctx in ctxs:
                self._dropped(ctx)

    def _on_loop(self, ctx: Context) -> bool:
        """Whether ``ctx``'s handler is a coroutine function: it runs as a task on the event
        loop, holding no pool thread."""
        fn = self.lookup(ctx.job)
        return fn is not None and self._is_async(fn)

    def _dropped(self, ctx: Context) -> None:
        key = (ctx.run_id, ctx.fence)
        with self._shared.lock:
            self._shared.active.pop(key, None)
            self._shared.book.server_lost([key], "worker closed")

    def shutdown(self) -> None:
        """Stop taking work and stop the event loop of async handlers. Does not wait: a sync
        handler that ignores its cancellation keeps its thread (Python joins it at exit); async
        handlers still running are cancelled when the loop stops."""
        self._closed = True
        for ctx in self._waiting.close():
            self._dropped(ctx)
        if self._threads is not None:
            self._threads.shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._aloop_lock:
            aloop, self._aloop = self._aloop, None
        if aloop is not None:
            aloop.call_soon_threadsafe(aloop.stop)

    # ---- cancellation ----------------------------------------------------------------------

    def cancel(self, lost: Sequence[LostLease]) -> None:
        """These leases are lost: set their handlers' ``ctx.cancelled`` (the first reason is
        kept for the completion's error text) and log ``lease_lost``."""
        if self._metrics is not None and lost:
            self._metrics.lease_lost(len(lost))
        cancelled: list[LeaseKey] = []
        for le in lost:
            with self._shared.lock:
                act = self._shared.active.get(le.key)
                if act is not None:
                    if not act.reason:
                        act.reason.append(f"lease lost: {le.reason}")
                    act.ctx.cancelled.set()
                    cancelled.append(le.key)
            self._shared.log.warning(
                kv(
                    "lease_lost",
                    run_id=le.run_id,
                    fence=le.fence,
                    reason=le.reason,
                    action="handler cancelled" if act else "none running",
                )
            )
        if cancelled:
            self._waiting.poke()  # those still waiting for their start end now
            self._cancel_tasks(cancelled)

    def cancel_all_locked(self, reason: str) -> None:
        """Cancel every running handler with ``reason``. The caller holds ``Shared.lock``."""
        for act in self._shared.active.values():
            if not act.reason:
                act.reason.append(reason)
            act.ctx.cancelled.set()
        self._waiting.poke()
        self._cancel_tasks(list(self._shared.active))

    def _cancel_tasks(self, keys: list[LeaseKey]) -> None:
        """Cancel the tasks of async handlers holding ``keys`` (``ctx.cancelled`` is set
        already: one not started yet ends "cancelled before start"). Never blocks: the loop
        does it."""
        loop = self._aloop
        if loop is None or not keys:
            return
        try:
            loop.call_soon_threadsafe(self._cancel_on_loop, keys)
        except RuntimeError:  # the loop is closed: its tasks were cancelled when it stopped
            pass

    def _cancel_on_loop(self, keys: list[LeaseKey]) -> None:
        tasks = self._tasks
        for key in keys:
            task = tasks.get(key)
            if task is not None:
                task.cancel()

    def progress_locked(self, key: LeaseKey) -> str:
        """The progress text of the handler holding ``key`` ('' when none runs). The caller
        holds ``Shared.lock``."""
        act = self._shared.active.get(key)
        return act.ctx.progress if act is not None else ""

    # ---- running one handler ---------------------------------------------------------------

    def run(self, ctx: Context) -> None:
        """Run the handler for ``ctx`` to its end (on a pool thread) and record the outcome:
        returning is success; raising is failure (``HandlerFailure``: its text and exit code;
        ``StaleFence``: one warning line; anything else: ``repr`` and a traceback); a handler
        whose ``ctx.cancelled`` was set by then failed ("cancelled: <why>"), even if it returned
        normally. The completion is then flushed to the current stream."""
        gate = self._gate
        if ctx.start_at_ms:
            # Committed ahead of its due time: start on time by this machine's clock, not
            # before (a lease revoked meanwhile sets ``cancelled`` and ends the wait).
            gate.expect(ctx.start_at_ms)
            try:
                delay = ctx.start_at_ms / 1000 - time.time()
                while delay > 0 and not ctx.cancelled.wait(delay):
                    delay = ctx.start_at_ms / 1000 - time.time()
            finally:
                gate.started(ctx.start_at_ms)
        _in_handler.active = True
        started = self._shared.clock()
        fn = self.lookup(ctx.job)
        if self._metrics is not None:
            self._metrics.started(ctx.scheduled_ms, ctx.attempt)
        outcome, error = Outcome.SUCCEEDED, ""
        exit_code: int | None = None
        try:
            refused = self._refused(ctx, fn)
            if refused is not None:
                outcome, error = refused
            elif self._is_async(fn):  # type: ignore[arg-type]  # (not None: _refused)
                self._run_async(fn, ctx)  # type: ignore[arg-type]
            else:
                fn(ctx)  # type: ignore[misc]
        except BaseException as e:  # a handler's failure is a result, not a crash
            outcome, error, exit_code = self._failure(ctx, e)
        finally:
            _in_handler.active = False
        gate.yield_to_starts()
        self._finish(ctx, started, outcome, error, exit_code)

    def _refused(self, ctx: Context, fn: Handler | None) -> tuple[Outcome, str] | None:
        """Why the handler does not start (cancelled, or none registered), else None; logs
        ``handler_started`` at debug level when it does."""
        log = self._shared.log
        if ctx.cancelled.is_set():
            return Outcome.FAILED, "cancelled before start"
        if fn is None:
            log.error(kv("no_handler", run_id=ctx.run_id, job=ctx.job))
            return (
                Outcome.FAILED,
                f"no handler registered for job {ctx.job!r} on worker {self._worker_id}",
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(kv("handler_started", run_id=ctx.run_id, job=ctx.job, fence=ctx.fence))
        return None

    def _failure(self, ctx: Context, e: BaseException) -> tuple[Outcome, str, int | None]:
        """What a handler's exception means for the attempt (see :meth:`run`), logged."""
        if isinstance(e, HandlerFailure):  # expected: handler_finished carries the text
            return Outcome.FAILED, str(e) or repr(e), e.exit_code
        if isinstance(e, AsyncCancelled):
            return Outcome.FAILED, "cancelled", None  # the reason is added by _finish
        log = self._shared.log
        if isinstance(e, StaleFence):  # a fenced write refused: expected after a lost lease
            log.warning(
                kv(
                    "stale_fence",
                    run_id=ctx.run_id,
                    job=ctx.job,
                    fence=ctx.fence,
                    error=str(e),
                    note="a newer attempt owns this run; the effect was not applied",
                )
            )
            return Outcome.FAILED, str(e), None
        log.error(
            kv("handler_failed", run_id=ctx.run_id, job=ctx.job, fence=ctx.fence, error=repr(e)),
            exc_info=e,
        )
        return Outcome.FAILED, repr(e), None

    def _finish(
        self,
        ctx: Context,
        started: float,
        outcome: Outcome,
        error: str,
        exit_code: int | None,
    ) -> None:
        """Record the attempt's outcome in the lease book (a handler cancelled meanwhile
        failed, with the first reason), free its slot and flush; metrics and the
        ``handler_finished`` line."""
        shared = self._shared
        key = (ctx.run_id, ctx.fence)
        with shared.changed:
            act = shared.active.pop(key, None)
            if ctx.cancelled.is_set() and (outcome is Outcome.SUCCEEDED or error == "cancelled"):
                why = act.reason[0] if act and act.reason else "cancelled"
                outcome, error = Outcome.FAILED, f"cancelled: {why}"
            released = shared.book.is_released(ctx.run_id, ctx.fence)
            shared.book.finish(ctx.run_id, ctx.fence, outcome, error, exit_code)
            shared.kick_locked(Intent.FLUSH)
            shared.changed.notify_all()
        if self._metrics is not None:
            self._metrics.finished(
                self._handler_name(ctx.job), outcome.name.lower(), shared.clock() - started
            )
        log = shared.log
        if log.isEnabledFor(logging.INFO):
            log.info(
                kv(
                    "handler_finished",
                    run_id=ctx.run_id,
                    job=ctx.job,
                    fence=ctx.fence,
                    outcome=outcome.name,
                    ms=int((shared.clock() - started) * 1000),
                    error=error or None,
                    result="not sent: lease released" if released else None,
                )
            )

    def _is_async(self, fn: Handler) -> bool:
        try:
            is_async = self._async.get(fn)
            if is_async is None:
                is_async = self._async[fn] = inspect.iscoroutinefunction(fn)
        except TypeError:  # an unhashable callable object
            return inspect.iscoroutinefunction(fn)
        return is_async

    # ---- async handlers --------------------------------------------------------------------

    def _async_loop(self, refuse_closed: bool = False) -> asyncio.AbstractEventLoop | None:
        """The event loop for async handlers, started on first use in its own thread
        (``schedd-agent-asyncio``) and stopped by :meth:`shutdown`. With ``refuse_closed``,
        None once shut down (no new loop is started for a closing worker)."""
        with self._aloop_lock:
            if refuse_closed and self._closed:
                return None
            if self._aloop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    # Only handlers run here: a Worker.stop() from one must not wait for a
                    # drain that waits for it.
                    _in_handler.active = True
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        # Callbacks queued behind the stop (tasks to begin, cancels) run once
                        # more: a firing handed over as the worker closed is dropped, not lost.
                        loop.run_until_complete(asyncio.sleep(0))
                        # Stopped with handlers still running (released, or ignoring their
                        # cancellation): cancel them; their outcomes are recorded as they end.
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

    def _start_tasks(self, ctxs: list[Context]) -> None:
        """Start the async handlers of ``ctxs`` as tasks on the loop, in order, in one
        callback; none holds a pool thread. Dropped like queued work once shut down."""
        loop = self._async_loop(refuse_closed=True)
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._begin_tasks, ctxs)
                return
            except RuntimeError:  # closed meanwhile: the worker stops
                pass
        for ctx in ctxs:
            self._dropped(ctx)

    def _begin_tasks(self, ctxs: list[Context]) -> None:
        """On the loop: one task per context, its outcome recorded by :meth:`_task_done`
        (the contract of :meth:`run`; ``concurrency`` bounds them through the leader, which
        leases no more than the worker's slots)."""
        loop = asyncio.get_running_loop()
        clock = self._shared.clock
        metrics = self._metrics
        for ctx in ctxs:
            if self._closed:
                self._dropped(ctx)
                continue
            started = clock()
            if metrics is not None:
                metrics.started(ctx.scheduled_ms, ctx.attempt)
            fn = self.lookup(ctx.job)
            refused = self._refused(ctx, fn)
            if refused is not None:
                self._finish(ctx, started, refused[0], refused[1], None)
                continue
            try:
                task = loop.create_task(fn(ctx))  # type: ignore[arg-type,misc]
            except BaseException as e:  # a callable that fails before its coroutine exists
                self._finish(ctx, started, *self._failure(ctx, e))
                continue
            self._tasks[(ctx.run_id, ctx.fence)] = task
            task.add_done_callback(functools.partial(self._task_done, ctx, started))

    def _task_done(self, ctx: Context, started: float, task: asyncio.Task[Any]) -> None:
        self._tasks.pop((ctx.run_id, ctx.fence), None)
        if task.cancelled():
            self._finish(ctx, started, Outcome.FAILED, "cancelled", None)
            return
        exc = task.exception()
        if exc is None:
            self._finish(ctx, started, Outcome.SUCCEEDED, "", None)
        else:
            self._finish(ctx, started, *self._failure(ctx, exc))

    def _run_async(self, fn: Handler, ctx: Context) -> None:
        """Run ``await fn(ctx)`` on the runner's loop; the calling thread waits for it (the
        path of :meth:`run`: an ``executor`` in place of the pool). When ``ctx.cancelled`` is
        set, the task is cancelled: ``asyncio.CancelledError`` is raised at its current
        ``await``. Raises what the coroutine raised, or ``AsyncCancelled`` when it ended
        cancelled."""
        loop = self._async_loop()
        assert loop is not None
        done = threading.Event()
        box: list[asyncio.Task[Any]] = []

        def begin() -> None:
            task = loop.create_task(fn(ctx))
            task.add_done_callback(lambda _t: done.set())
            box.append(task)

        loop.call_soon_threadsafe(begin)
        cancel_sent = False
        while not done.wait(_ASYNC_POLL_S):
            if loop.is_closed():  # the worker stopped and its loop with it
                raise AsyncCancelled()
            if ctx.cancelled.is_set() and not cancel_sent:
                cancel_sent = True
                loop.call_soon_threadsafe(lambda: box[0].cancel())
        task = box[0]
        if task.cancelled():
            raise AsyncCancelled()
        exc = task.exception()
        if exc is not None:
            raise exc

    # ---- drain -----------------------------------------------------------------------------

    def drain(self, timeout: float) -> DrainResult:
        """Wait up to ``timeout`` seconds for the running handlers to return (heartbeats go on
        meanwhile: the ticker is untouched, so the leases stay ours), or less after a forced
        stop. Handlers still running then have their leases released (queued for a ``Release``
        message: the leader makes those runs pending again at once) and are cancelled. Then
        wait up to ``FLUSH_GRACE_S`` more for the releases to be written and the completions
        acknowledged; a released handler is not waited for (its run is the leader's again).
        The caller has set ``Shared.draining`` first, so no new handler starts."""
        shared = self._shared
        deadline = shared.clock() + max(0.0, timeout)
        released: list[LostLease] = []
        with shared.changed:
            while shared.active and not shared.force.is_set():
                left = deadline - shared.clock()
                if left <= 0:
                    break
                shared.changed.wait(min(left, 0.1))
            if shared.active:
                why = (
                    "worker stopping (forced)"
                    if shared.force.is_set()
                    else "worker stopping (drain timeout)"
                )
                shared.log.warning(
                    kv(
                        "drain_timeout",
                        still_running=len(shared.active),
                        action="releasing leases and cancelling handlers",
                    )
                )
                released = shared.book.release(list(shared.active), why)
                self.cancel_all_locked(f"{why}: lease released")
                shared.kick_locked(Intent.RELEASE)
            shared.wake.set()
            grace = shared.clock() + (
                FORCED_FLUSH_GRACE_S if shared.force.is_set() else FLUSH_GRACE_S
            )
            while (
                shared.book.pending() or shared.book.has_unsent_releases()
            ) and shared.clock() < grace:
                shared.changed.wait(0.05)
            return DrainResult(
                released,
                shared.book.pending(),
                shared.book.has_unsent_releases(),
                len(shared.active),
            )

    def force_cancel(self) -> None:
        """A second signal: cancel every running handler now and end a drain's wait."""
        with self._shared.changed:
            self.cancel_all_locked("worker stopping (forced)")
            self._shared.changed.notify_all()
