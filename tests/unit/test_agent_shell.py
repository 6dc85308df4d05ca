"""The worker agent's shell in-process: the stream (schedd.agent.stream), the handler runner
(schedd.agent.runner) and the Worker wiring them (schedd.agent.worker), against fake channels.

No cluster and no network: a fake channel stands in for grpc's (connectivity, the probe's
unary call, the Connect stream), and a fake Connect call pulls the agent's request iterator on
its own thread, as gRPC's consumer does. Message handling, the request generator and the
ticker are driven step by step with a fake clock; the Worker end to end (start, firings,
completions, failover, drain, signals) runs its real threads against the fake call. Real
clusters are the integration tests' business (tests/integration/test_agent.py).
"""

from __future__ import annotations

import itertools
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

import grpc
import pytest

from schedd.agent import Context, HandlerFailure, Worker
from schedd.agent import runner as runner_mod
from schedd.agent import stream as stream_mod
from schedd.agent.core import CODE_ABORTED, CODE_OK, CODE_UNAVAILABLE, OutageLog, Outcome
from schedd.agent.runner import Runner, in_handler
from schedd.agent.shared import Intent, Session, Shared
from schedd.agent.stream import SessionEnd, Stream
from schedd.clock import FakeClock
from schedd.errors import StaleFence
from schedd.pb import api_pb2, types_pb2
from tests._util import wait_for
from tests.unit.test_client_pure import FakeRpcError

TTL_MS = 10_000


# ---- fakes ------------------------------------------------------------------------------------


class Logs(logging.Handler):
    """Collects the agent's ``key=value`` lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)

    def lines(self, event: str = "", level: int | None = None) -> list[str]:
        with self.guard:
            recs = list(self.records)
        return [
            r.getMessage()
            for r in recs
            if r.getMessage().startswith(f"event={event}") and (level is None or r.levelno == level)
        ]

    def events(self) -> list[str]:
        with self.guard:
            recs = list(self.records)
        return [r.getMessage().split()[0].removeprefix("event=") for r in recs]


_loggers = itertools.count()


def make_logger() -> tuple[logging.Logger, Logs]:
    """A fresh logger per test, its lines collected (and not propagated to pytest's)."""
    log = logging.getLogger(f"tests.agent_shell.{next(_loggers)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    logs = Logs()
    log.addHandler(logs)
    return log, logs


class ManualExecutor(Executor):
    """A pool that runs nothing until told: ``run_all`` runs the queued handlers in the test's
    thread, in order."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.shut:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self.queued.append((fn, args))
        return Future()

    def run_all(self) -> None:
        while self.queued:
            fn, args = self.queued.pop(0)
            fn(*args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shut = True


class FakeFuture:
    """A probe's future: done with ``value`` (a NodeStatus or an exception), or never."""

    def __init__(self, value: Any = None, done: bool = True) -> None:
        self.value, self.done = value, done

    def result(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        if self.done:
            fn(self)


_HALF_CLOSED = object()


class FakeCall:
    """One Connect call. A consumer thread pulls the request iterator as gRPC's does (the next
    message only after the last was "written"); the test sends server messages with ``send``
    and ends the response stream with ``fail``; when the worker half-closes, the stream ends."""

    def __init__(self, target: str, requests: Iterator[Any]) -> None:
        self.target = target
        self.sent: list[Any] = []
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled = False
        self._consumer = threading.Thread(target=self._consume, args=(requests,), daemon=True)
        self._consumer.start()

    def _consume(self, requests: Iterator[Any]) -> None:
        try:
            for msg in requests:
                self.sent.append(msg)
        finally:
            self.inbox.put(_HALF_CLOSED)

    def send(self, **body: Any) -> None:
        self.inbox.put(api_pb2.ServerMessage(**body))

    def fail(self, code: grpc.StatusCode, details: str = "", leader: str | None = None) -> None:
        self.inbox.put(FakeRpcError(code, details, leader))

    def bodies(self, kind: str) -> list[Any]:
        return [getattr(m, kind) for m in list(self.sent) if m.WhichOneof("body") == kind]

    def __iter__(self) -> FakeCall:
        return self

    def __next__(self) -> Any:
        item = self.inbox.get()
        if item is _HALF_CLOSED:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled = True
        self.inbox.put(FakeRpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!"))


class FakeChannel:
    """Stands in for ``grpc.insecure_channel(target)``: reports ``state`` to subscribers (None:
    never settles, a frozen node), answers the probe with ``probe()``, and makes FakeCalls."""

    def __init__(self, net: FakeNet, target: str) -> None:
        self.net, self.target = net, target
        self.closed = False

    def subscribe(self, callback: Callable[[Any], None], try_to_connect: bool = False) -> None:
        state = self.net.states.get(self.target, grpc.ChannelConnectivity.READY)
        if state is not None:
            callback(grpc.ChannelConnectivity.CONNECTING)
            callback(state)

    def unsubscribe(self, callback: Callable[[Any], None]) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def unary_unary(self, path: str, **_: Any) -> Any:
        net = self.net
        target = self.target

        class Unary:
            def future(self, request: Any, timeout: float | None = None) -> FakeFuture:
                net.probes.append((target, timeout))
                return net.probe(target)

        return Unary()

    def unary_stream(self, path: str, **_: Any) -> Any:
        return None  # ClusterService.SaveSnapshot: made with the stubs, never called by workers

    def stream_stream(self, path: str, **_: Any) -> Callable[[Iterator[Any]], FakeCall]:
        def connect(requests: Iterator[Any]) -> FakeCall:
            call = FakeCall(self.target, requests)
            self.net.calls.append(call)
            return call

        return connect


class FakeNet:
    """The channel factory given to Stream: records every channel and call."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}
        self.channels: list[FakeChannel] = []
        self.calls: list[FakeCall] = []
        self.probes: list[tuple[str, float | None]] = []
        self.probe: Callable[[str], FakeFuture] = lambda target: FakeFuture(done=False)

    def channel(self, target: str) -> FakeChannel:
        ch = FakeChannel(self, target)
        self.channels.append(ch)
        return ch

    def call(self, n: int) -> FakeCall:
        """The n-th Connect call (0-based), once it exists and has sent its Hello."""
        call: FakeCall = wait_for(lambda: len(self.calls) > n and self.calls[n], 5, f"call {n}")
        wait_for(lambda: call.sent, 5, f"the Hello of call {n}")
        return call


def firing(run_id: str = "r1", fence: int = 7, job: str = "j", ttl_ms: int = 0) -> types_pb2.Firing:
    return types_pb2.Firing(
        run_id=run_id,
        job=job,
        scheduled_ms=1_700_000_000_000,
        attempt=1,
        fence=fence,
        payload='{"x": 1}',
        queue="q",
        lease_ttl_ms=ttl_ms,
    )


def welcome(
    hb_ms: int = 2000,
    ttl_ms: int = TTL_MS,
    node: str = "n1",
    reattached: tuple[tuple[str, int], ...] = (),
    lost: tuple[tuple[str, int], ...] = (),
) -> api_pb2.Welcome:
    return api_pb2.Welcome(
        node_id=node,
        lease_ttl_ms=ttl_ms,
        heartbeat_interval_ms=hb_ms,
        reattached=[api_pb2.Lease(run_id=r, fence=f) for r, f in reattached],
        lost=[api_pb2.Lease(run_id=r, fence=f) for r, f in lost],
    )


class Rig:
    """A Stream and a Runner over one Shared, with a fake clock, a manual pool and a fake net."""

    def __init__(self, endpoints: tuple[str, ...] = ("a:1", "b:2", "c:3")) -> None:
        self.clock = FakeClock()
        self.log, self.logs = make_logger()
        self.shared = Shared(self.clock.monotonic, self.log)
        self.pool = ManualExecutor()
        self.runner = Runner(self.shared, worker_id="w1", concurrency=2, executor=self.pool)
        self.runner.start()
        self.net = FakeNet()
        self.stream = Stream(
            self.shared,
            self.runner,
            endpoints=endpoints,
            worker_id="w1",
            queues=["q"],
            concurrency=2,
            tags={"region": "eu"},
            channel=self.net.channel,
        )

    def session(self, welcomed: bool = True, target: str = "a:1") -> Session:
        """A current session, welcomed through on_welcome (heartbeats every 2 s)."""
        sess = Session(target)
        sess.started_at = self.clock.monotonic()
        with self.shared.lock:
            self.shared.book.start_session()
            self.shared.session = sess
        if welcomed:
            self.stream.on_welcome(sess, welcome())
            queued(sess)
        return sess


def queued(sess: Session) -> list[Intent]:
    """The intents queued on ``sess`` so far."""
    out = []
    while not sess.q.empty():
        out.append(sess.q.get_nowait())
    return out


# ---- the runner -------------------------------------------------------------------------------


def ctx_for(rig: Rig, run_id: str = "r1", fence: int = 7, job: str = "j") -> Context:
    """Acquire a lease and enter its handler as active, as on_firing does."""
    rig.stream.on_firing(firing(run_id, fence, job))
    fn, args = rig.pool.queued.pop()
    assert fn == rig.runner.run
    ctx: Context = args[0]
    return ctx


def test_a_returning_handler_succeeds_and_its_completion_is_flushed() -> None:
    rig = Rig()
    sess = rig.session()
    seen: list[bool] = []

    def handle(ctx: Context) -> None:
        seen.append(in_handler())

    rig.runner.add_default(handle)
    ctx = ctx_for(rig)
    rig.runner.run(ctx)
    assert seen == [True] and not in_handler()
    [rec] = rig.shared.book.pending()
    assert (rec.run_id, rec.fence, rec.outcome, rec.error) == ("r1", 7, Outcome.SUCCEEDED, "")
    assert queued(sess) == [Intent.FLUSH]
    assert rig.shared.active == {}
    [line] = rig.logs.lines("handler_finished")
    assert "outcome=SUCCEEDED" in line and "run_id=r1" in line


@pytest.mark.parametrize(
    ("raised", "error", "exit_code", "event"),
    [
        (HandlerFailure("disk full", exit_code=3), "disk full", 3, None),
        (HandlerFailure(), "HandlerFailure()", None, None),
        (StaleFence("fence 7 < 9"), "fence 7 < 9", None, "stale_fence"),
        (KeyError("k"), "KeyError('k')", None, "handler_failed"),
    ],
)
def test_a_raising_handler_fails_with_its_text(
    raised: BaseException, error: str, exit_code: int | None, event: str | None
) -> None:
    rig = Rig()

    def handle(ctx: Context) -> None:
        raise raised

    rig.runner.add("j", handle)
    rig.runner.run(ctx_for(rig))
    [rec] = rig.shared.book.pending()
    assert (rec.outcome, rec.error, rec.exit_code) == (Outcome.FAILED, error, exit_code)
    if event:
        assert rig.logs.lines(event)
    assert not rig.logs.lines("handler_failed") or event == "handler_failed"
    if event == "handler_failed":
        assert rig.logs.records[-2].exc_info is not None  # the traceback, before handler_finished


def test_a_firing_without_a_handler_is_released_not_failed() -> None:
    """The leader grants by Hello.jobs; a firing the worker still cannot run (a leader from
    before Hello.jobs) goes back with a Release that keeps the stream taking work (no drain):
    no attempt used, no dead letter."""
    rig = Rig()
    rig.runner.add("other", lambda ctx: None)
    sess = rig.session()
    gen = rig.stream.requests(sess)
    assert list(next(gen).hello.jobs) == ["other"]
    rig.stream.on_firing(firing("r1", 7, job="j"))
    assert rig.pool.queued == [] and rig.shared.book.pending() == []
    assert queued(sess) == [Intent.RELEASE]
    sess.kick(Intent.RELEASE)
    rel = next(gen).release
    assert [(le.run_id, le.fence) for le in rel.leases] == [("r1", 7)]
    assert not rel.drain and "no handler" in rel.reason
    [line] = rig.logs.lines("firing_refused")
    assert "no handler for job 'j'" in line
    sess.close()


def test_no_handler_fails_the_attempt_naming_the_job_and_worker() -> None:
    """The runner's own fallback, should a firing reach it without a handler."""
    rig = Rig()
    rig.runner.add_default(lambda ctx: None)
    ctx = ctx_for(rig, job="j")
    rig.runner._default = None
    rig.runner.add("other", lambda ctx: None)
    rig.runner.run(ctx)
    [rec] = rig.shared.book.pending()
    assert rec.error == "no handler registered for job 'j' on worker w1"
    assert rig.logs.lines("no_handler", logging.ERROR)


def test_handler_registry() -> None:
    rig = Rig()
    a, b = (lambda ctx: None), (lambda ctx: None)
    rig.runner.add("j", a)
    with pytest.raises(ValueError, match="already has a handler"):
        rig.runner.add("j", b)
    assert rig.runner.lookup("j") is a and rig.runner.lookup("k") is None
    rig.runner.add_default(b)
    with pytest.raises(ValueError, match="default"):
        rig.runner.add_default(a)
    assert rig.runner.lookup("k") is b and rig.runner.lookup("j") is a


def test_a_lost_lease_cancels_its_handler_and_a_normal_return_still_fails() -> None:
    """The agent cannot tell a handler that finished from one that gave up early: a retry
    never loses a firing."""
    rig = Rig()
    rig.session()
    got: list[str] = []

    def handle(ctx: Context) -> None:
        lost = rig.shared.book.server_lost([("r1", 7)], "run timeout")
        rig.runner.cancel(lost)
        got.append(f"cancelled={ctx.cancelled.is_set()}")

    rig.runner.add("j", handle)
    rig.runner.run(ctx_for(rig))
    assert got == ["cancelled=True"]
    [rec] = rig.shared.book.pending()
    assert (rec.outcome, rec.error) == (Outcome.FAILED, "cancelled: lease lost: run timeout")
    [line] = rig.logs.lines("lease_lost")
    assert 'action="handler cancelled"' in line
    rig.runner.cancel(rig.shared.book.server_lost([("r9", 1)], "x"))  # nothing held: nothing to do


def test_a_handler_cancelled_before_it_started_is_not_run() -> None:
    rig = Rig()
    ran: list[int] = []
    rig.runner.add("j", lambda ctx: ran.append(1))
    ctx = ctx_for(rig)
    with rig.shared.lock:
        rig.runner.cancel_all_locked("worker stopping (forced)")
    rig.runner.run(ctx)
    assert ran == []
    [rec] = rig.shared.book.pending()
    assert (rec.outcome, rec.error) == (Outcome.FAILED, "cancelled before start")


def test_a_firing_committed_ahead_starts_no_earlier_than_its_start_time() -> None:
    """--fire-ahead: the leader leases a run before it is due and the agent waits for
    ``start_at_ms`` on its own clock (without the wait the handler would start 150 ms early)."""
    rig = Rig()
    started: list[float] = []
    rig.runner.add("j", lambda ctx: started.append(time.time()))
    f = firing()
    f.start_at_ms = int(time.time() * 1000) + 150
    rig.stream.on_firing(f)
    _, (ctx,) = rig.pool.queued.pop()
    assert ctx.start_at_ms == f.start_at_ms
    rig.runner.run(ctx)
    assert started and started[0] >= f.start_at_ms / 1000
    [rec] = rig.shared.book.pending()
    assert rec.outcome == Outcome.SUCCEEDED


def test_a_lease_revoked_while_waiting_for_its_start_time_never_runs() -> None:
    """A pause, delete or update before the due time revokes the early lease: the wait ends at
    once and the handler does not run."""
    rig = Rig()
    ran: list[int] = []
    rig.runner.add("j", lambda ctx: ran.append(1))
    f = firing()
    f.start_at_ms = int(time.time() * 1000) + 60_000
    rig.stream.on_firing(f)
    _, (ctx,) = rig.pool.queued.pop()

    def revoke() -> None:
        time.sleep(0.05)  # the revoke arrives while the handler waits for its start time
        rig.runner.cancel(
            rig.shared.book.server_lost([("r1", 7)], "job paused before the slot was due")
        )

    t = threading.Thread(target=revoke)
    t.start()
    t0 = time.monotonic()
    rig.runner.run(ctx)
    t.join()
    assert ran == [] and time.monotonic() - t0 < 30
    [line] = rig.logs.lines("lease_lost")
    assert "job paused before the slot was due" in line


def test_a_released_lease_is_not_reported() -> None:
    rig = Rig()
    rig.runner.add("j", lambda ctx: None)
    ctx = ctx_for(rig)
    with rig.shared.lock:
        rig.shared.book.release([("r1", 7)], "worker stopping (drain timeout)")
    rig.runner.run(ctx)
    assert rig.shared.book.pending() == []
    [line] = rig.logs.lines("handler_finished")
    assert 'result="not sent: lease released"' in line


def test_a_closed_pool_drops_the_lease() -> None:
    rig = Rig()
    rig.runner.add("j", lambda ctx: None)
    rig.runner.shutdown()
    rig.stream.on_firing(firing())
    assert rig.shared.active == {}
    assert rig.shared.book.is_lost("r1", 7)


def test_async_handlers_run_on_the_agents_loop_and_are_cancelled_through_their_task() -> None:
    import asyncio

    rig = Rig()
    threads: list[str] = []
    started = threading.Event()

    async def ok(ctx: Context) -> None:
        threads.append(threading.current_thread().name)

    async def boom(ctx: Context) -> None:
        raise ValueError("bad payload")

    async def slow(ctx: Context) -> None:
        started.set()
        await asyncio.sleep(60)  # runs until cancelled: the cancellation is what is tested

    rig.runner.add("ok", ok)
    rig.runner.add("boom", boom)
    rig.runner.add("slow", slow)
    try:
        rig.runner.run(ctx_for(rig, "r1", 1, "ok"))
        rig.runner.run(ctx_for(rig, "r2", 2, "boom"))
        ctx = ctx_for(rig, "r3", 3, "slow")
        t = threading.Thread(target=rig.runner.run, args=(ctx,))
        t.start()
        wait_for(started.is_set, 5, "the slow handler to start")
        rig.runner.cancel(rig.shared.book.server_lost([("r3", 3)], "revoked"))
        t.join(5)
        assert not t.is_alive()
    finally:
        rig.runner.shutdown()
    assert threads == ["schedd-agent-asyncio"]
    recs = {r.run_id: r for r in rig.shared.book.pending()}
    assert recs["r1"].outcome is Outcome.SUCCEEDED
    assert recs["r2"].error == "ValueError('bad payload')"
    assert recs["r3"].error == "cancelled: lease lost: revoked"


def test_an_async_handler_still_running_when_the_loop_stops_ends_cancelled() -> None:
    import asyncio

    rig = Rig()
    started = threading.Event()

    async def slow(ctx: Context) -> None:
        started.set()
        await asyncio.sleep(60)  # runs until cancelled: the cancellation is what is tested

    rig.runner.add("slow", slow)
    ctx = ctx_for(rig, "r2", 2, "slow")
    t = threading.Thread(target=rig.runner.run, args=(ctx,))
    t.start()
    wait_for(started.is_set, 5, "the handler to start")
    rig.runner.shutdown()  # the worker stopped: its loop with it
    t.join(5)
    assert not t.is_alive()
    [rec] = rig.shared.book.pending()
    assert (rec.outcome, rec.error) == (Outcome.FAILED, "cancelled")


# ---- the drain --------------------------------------------------------------------------------


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Releases are never written without a stream: do not wait the real 6 s for them."""
    monkeypatch.setattr(runner_mod, "FLUSH_GRACE_S", 0.2)
    monkeypatch.setattr(runner_mod, "FORCED_FLUSH_GRACE_S", 0.2)


def real_rig() -> Rig:
    rig = Rig()
    rig.shared.clock = time.monotonic  # drain waits on a condition: real time
    return rig


def test_a_drain_with_nothing_running_returns_at_once() -> None:
    rig = real_rig()
    t0 = time.monotonic()
    left = rig.runner.drain(5.0)
    assert time.monotonic() - t0 < 1.0
    assert left == runner_mod.DrainResult([], [], False, 0)


def test_a_drain_waits_for_running_handlers(short_grace: None) -> None:
    rig = real_rig()
    rig.session()
    release = threading.Event()
    rig.runner.add("j", lambda ctx: release.wait(5))
    ctx = ctx_for(rig)
    t = threading.Thread(target=rig.runner.run, args=(ctx,))
    t.start()
    threading.Timer(0.1, release.set).start()
    left = rig.runner.drain(5.0)
    t.join(5)
    assert left.released == [] and left.still_running == 0
    assert [r.run_id for r in left.unacked] == ["r1"]  # no stream acknowledged it here
    assert not ctx.cancelled.is_set()


def test_a_drain_that_times_out_releases_and_cancels(short_grace: None) -> None:
    rig = real_rig()
    sess = rig.session()
    stop = threading.Event()
    rig.runner.add("j", lambda ctx: stop.wait(5))
    ctx = ctx_for(rig)
    t = threading.Thread(target=rig.runner.run, args=(ctx,))
    t.start()
    try:
        left = rig.runner.drain(0.1)
    finally:
        stop.set()
        t.join(5)
    assert [le.key for le in left.released] == [("r1", 7)]
    assert left.unreleased  # no stream took the release
    assert ctx.cancelled.is_set()
    assert Intent.RELEASE in queued(sess)
    assert rig.logs.lines("drain_timeout", logging.WARNING)
    assert rig.shared.book.pending() == []  # a released lease's result is not sent


def test_a_forced_stop_cancels_without_waiting(short_grace: None) -> None:
    rig = real_rig()
    stop = threading.Event()
    rig.runner.add("j", lambda ctx: stop.wait(5))
    ctx = ctx_for(rig)
    t = threading.Thread(target=rig.runner.run, args=(ctx,))
    t.start()
    rig.shared.force.set()
    rig.runner.force_cancel()
    t0 = time.monotonic()
    left = rig.runner.drain(30.0)
    stop.set()
    t.join(5)
    assert time.monotonic() - t0 < 5.0
    assert ctx.cancelled.is_set() and len(left.released) == 1


# ---- what the stream reads --------------------------------------------------------------------


def test_welcome_adopts_the_leaders_settings_and_resends_completions() -> None:
    rig = Rig()
    sess = Session("a:1")
    with rig.shared.lock:
        rig.shared.session = sess
        rig.shared.book.acquire("r0", 1)
        rig.shared.book.start_session()
    rig.stream.on_welcome(sess, welcome(hb_ms=500, ttl_ms=6000, node="n2", lost=(("r0", 1),)))
    assert sess.welcomed and sess.node_id == "n2"
    assert rig.shared.hb_ms == 500 and sess.hb_interval_s == 0.5
    assert sess.next_hb == sess.next_probe == rig.clock.monotonic() + 0.5
    assert rig.shared.book.ttl_ms == 6000
    assert queued(sess) == [Intent.FLUSH]
    [line] = rig.logs.lines("connected")
    assert "node_id=n2" in line and "lost=1" in line
    assert "queues=" in line and "handlers=" in line  # what the worker serves, at a glance
    assert rig.logs.lines("lease_lost")  # r0 was not re-attached
    assert rig.shared.wake.is_set()


def test_welcome_while_draining_tells_the_new_leader_again() -> None:
    rig = Rig()
    sess = Session("a:1")
    rig.shared.draining.set()
    rig.stream.on_welcome(sess, welcome(hb_ms=0))
    assert rig.shared.hb_ms == 2000  # 0: keep the default
    assert queued(sess) == [Intent.FLUSH, Intent.RELEASE]


def test_a_firing_starts_its_handler_once() -> None:
    rig = Rig()
    rig.runner.add_default(lambda ctx: None)
    rig.session()
    rig.stream.on_firing(firing())
    rig.stream.on_firing(firing())  # delivered twice (a resend after a reconnect)
    assert len(rig.pool.queued) == 1
    ctx = rig.pool.queued[0][1][0]
    assert (ctx.run_id, ctx.fence, ctx.job, ctx.queue, ctx.worker_id) == ("r1", 7, "j", "q", "w1")
    assert rig.logs.lines("firing_received") and rig.logs.lines("firing_duplicate")


def test_a_firing_read_after_a_freeze_is_not_started() -> None:
    rig = Rig()
    rig.runner.add_default(lambda ctx: None)
    rig.session()
    rig.stream.on_firing(firing("old", 1))
    rig.pool.queued.clear()
    rig.clock.advance(TTL_MS / 1000 * 2)  # frozen: no heartbeat written meanwhile
    rig.stream.on_firing(firing("r1", 7))
    assert rig.pool.queued == []
    [rec] = rig.shared.book.pending()
    assert rec.error == "not started: the lease expired before the firing was read"
    assert rig.logs.lines("firing_expired")
    assert any("run_id=old" in line for line in rig.logs.lines("lease_lost"))


def test_a_firing_that_arrives_while_draining_is_released() -> None:
    rig = Rig()
    sess = rig.session()
    rig.shared.draining.set()
    rig.stream.on_firing(firing())
    assert rig.pool.queued == []
    assert queued(sess) == [Intent.RELEASE]
    with rig.shared.lock:
        assert rig.shared.book.take_releases() == [("r1", 7)]
    assert rig.logs.lines("firing_refused")


def test_a_messages_firings_refused_while_draining_are_one_line() -> None:
    """A worker stopping under load is sent hundreds of firings before the leader reads its
    drain: every one goes back, and the log says so once per message and reason."""
    rig = Rig()
    rig.runner.add("j", lambda ctx: None)
    sess = rig.session()
    rig.shared.draining.set()
    batch = [firing(f"r{i}", i) for i in range(1, 4)] + [firing("r9", 9, job="nobody")]
    rig.stream.on_message(sess, api_pb2.ServerMessage(firings=api_pb2.Firings(firings=batch)))
    assert rig.pool.queued == []
    with rig.shared.lock:
        assert rig.shared.book.take_releases() == [("r1", 1), ("r2", 2), ("r3", 3), ("r9", 9)]
    [line] = rig.logs.lines("firing_refused")  # (draining: "nobody" is refused for that too)
    assert "run_id=r1 " in line and "count=4 last_run_id=r9 " in line, line
    assert 'reason="worker stopping"' in line
    rig.shared.draining.clear()
    rig.stream.on_message(
        sess, api_pb2.ServerMessage(firings=api_pb2.Firings(firings=[firing("r10", 10, job="x")]))
    )
    [_, alone] = rig.logs.lines("firing_refused")
    assert "run_id=r10 " in alone and "count=" not in alone and "no handler for job 'x'" in alone


def test_acks_are_applied_and_logged_by_kind() -> None:
    rig = Rig()
    for run in ("ok", "stale", "retry", "bad"):
        rig.shared.book.finish(run, 1, Outcome.SUCCEEDED)
    acks = [
        api_pb2.CompletionAck(run_id="ok", fence=1, code=CODE_OK),
        api_pb2.CompletionAck(run_id="stale", fence=1, code=CODE_ABORTED),
        api_pb2.CompletionAck(run_id="retry", fence=1, code=CODE_UNAVAILABLE, message="commit"),
        api_pb2.CompletionAck(run_id="bad", fence=1, code=3, message="no"),
        api_pb2.CompletionAck(run_id="unknown", fence=1, code=CODE_OK),
    ]
    rig.stream.on_message(
        Session("a:1"), api_pb2.ServerMessage(acks=api_pb2.CompletionAcks(acks=acks))
    )
    assert [r.run_id for r in rig.shared.book.pending()] == ["retry"]
    assert len(rig.logs.lines("completion_acked")) == 1
    assert len(rig.logs.lines("completion_rejected", logging.WARNING)) == 1
    assert len(rig.logs.lines("completion_rejected", logging.ERROR)) == 1
    [line] = rig.logs.lines("completion_retry")
    assert "code=UNAVAILABLE" in line
    assert rig.shared.wake.is_set()


def test_messages_are_dispatched_by_body() -> None:
    rig = Rig()
    rig.runner.add_default(lambda ctx: None)
    sess = Session("a:1")
    rig.stream.on_message(sess, api_pb2.ServerMessage(welcome=welcome()))
    assert sess.welcomed
    rig.stream.on_message(
        sess,
        api_pb2.ServerMessage(firings=api_pb2.Firings(firings=[firing("r1", 1), firing("r2", 2)])),
    )
    assert len(rig.pool.queued) == 2
    rig.stream.on_message(
        sess,
        api_pb2.ServerMessage(
            lost=api_pb2.LeasesLost(
                leases=[api_pb2.Lease(run_id="r1", fence=1)], reason="run timeout"
            )
        ),
    )
    assert rig.shared.active[("r1", 1)].ctx.cancelled.is_set()
    assert not rig.shared.active[("r2", 2)].ctx.cancelled.is_set()
    rig.stream.on_message(sess, api_pb2.ServerMessage())  # a body this agent does not know
    assert rig.logs.lines("unknown_server_message", logging.DEBUG)


# ---- what the stream writes -------------------------------------------------------------------


def test_the_request_stream_says_hello_then_writes_what_is_asked() -> None:
    rig = Rig()
    rig.runner.add_default(lambda ctx: None)
    with rig.shared.lock:
        rig.shared.book.acquire("held", 3)
    sess = Session("a:1")
    gen = rig.stream.requests(sess)
    hello = next(gen).hello
    assert (hello.worker_id, list(hello.queues), hello.concurrency, dict(hello.tags)) == (
        "w1",
        ["q"],
        2,
        {"region": "eu"},
    )
    assert list(hello.jobs) == ["*"]  # a default handler: any job
    assert [(le.run_id, le.fence) for le in hello.running] == [("held", 3)]
    rig.stream.on_welcome(sess, welcome(reattached=(("held", 3),)))
    queued(sess)

    # a heartbeat carries every live lease with its handler's progress ...
    ctx = ctx_for(rig, "r1", 7)
    ctx.heartbeat("3/10")
    rig.clock.advance(TTL_MS / 1000 - 1)
    sess.kick(Intent.FLUSH)  # nothing to send: skipped
    sess.kick(Intent.HEARTBEAT)
    hb = next(gen).heartbeat
    assert [(le.run_id, le.fence, le.progress) for le in hb.leases] == [
        ("held", 3, ""),
        ("r1", 7, "3/10"),
    ]
    rig.shared.book.finish("done", 1, Outcome.FAILED, "x", 2)
    sess.kick(Intent.FLUSH)
    # ... and renews them once gRPC asks for the next message (the heartbeat was written)
    completions = next(gen).completions.completions
    assert [(c.run_id, c.outcome, c.error, c.exit_code) for c in completions] == [
        ("done", 2, "x", 2)
    ]
    rig.clock.advance(2)  # a TTL after the Hello, 2 s after the heartbeat
    assert rig.shared.book.expire() == []

    # a Release is written only with leases to give back, or once to announce a drain
    sess.kick(Intent.RELEASE)
    sess.kick(Intent.HEARTBEAT)
    assert next(gen).WhichOneof("body") == "heartbeat"
    rig.shared.draining.set()
    sess.kick(Intent.RELEASE)
    rel = next(gen).release
    assert list(rel.leases) == [] and rel.reason == "worker stopping" and rel.drain
    sess.kick(Intent.RELEASE)  # the announcement is not repeated
    sess.kick(Intent.HEARTBEAT)
    assert next(gen).WhichOneof("body") == "heartbeat"
    with rig.shared.lock:
        rig.shared.book.release([("r1", 7)], "drain timeout")
    sess.kick(Intent.RELEASE)
    rel = next(gen).release
    assert [(le.run_id, le.fence) for le in rel.leases] == [("r1", 7)]
    assert rel.reason == "worker stopping (drain timeout)"
    assert len(rig.logs.lines("release_sent")) == 2

    sess.close()
    assert list(gen) == []


# ---- the ticker and the probe -----------------------------------------------------------------


def test_the_ticker_heartbeats_flushes_and_probes_on_a_welcomed_stream() -> None:
    rig = Rig()
    sess = rig.session()
    sess.probe = lambda: FakeFuture(done=False)
    now = rig.clock.monotonic()
    assert rig.stream.tick(now) == pytest.approx(0.25)  # nothing due before the heartbeat
    assert queued(sess) == []
    rig.clock.advance(2.0)
    rig.shared.book.finish("r0", 1, Outcome.SUCCEEDED)
    wait = rig.stream.tick(rig.clock.monotonic())
    assert queued(sess) == [Intent.HEARTBEAT, Intent.FLUSH]
    assert sess.probe_inflight and sess.next_probe == rig.clock.monotonic() + 2.0
    assert wait == pytest.approx(0.25)
    rig.clock.advance(2.0)
    rig.stream.tick(rig.clock.monotonic())  # a probe still in flight is not doubled
    assert sess.next_probe == rig.clock.monotonic()


def test_the_ticker_wakes_for_the_next_lease_expiry_and_expires_leases_while_disconnected() -> None:
    rig = Rig()
    rig.runner.add_default(lambda ctx: None)
    rig.session()
    rig.stream.on_firing(firing(ttl_ms=1000))
    with rig.shared.lock:
        rig.shared.session = None  # disconnected
    assert rig.stream.tick(rig.clock.monotonic()) == pytest.approx(0.25)
    rig.clock.advance(0.9)
    assert rig.stream.tick(rig.clock.monotonic()) == pytest.approx(0.101)
    rig.clock.advance(0.2)
    rig.stream.tick(rig.clock.monotonic())
    assert rig.shared.active[("r1", 7)].ctx.cancelled.is_set()
    [line] = rig.logs.lines("lease_lost")
    assert "no contact with a leader for more than 1000 ms" in line


def test_the_ticker_aborts_a_stream_without_welcome() -> None:
    rig = Rig()
    sess = rig.session(welcomed=False)
    cancelled: list[bool] = []
    sess.call = type("Call", (), {"cancel": lambda self: cancelled.append(True)})()
    rig.stream.tick(rig.clock.monotonic())
    assert cancelled == []
    rig.clock.advance(stream_mod.WELCOME_TIMEOUT_S + 0.1)
    rig.stream.tick(rig.clock.monotonic())
    assert cancelled == [True] and rig.logs.lines("no_welcome")


def test_the_ticker_ends_once_closing_with_no_stream() -> None:
    rig = Rig()
    sess = rig.session()
    rig.shared.closing.set()
    assert rig.stream.tick(rig.clock.monotonic()) is not None  # the stream still ends
    with rig.shared.lock:
        rig.shared.session = None
    sess.close()
    assert rig.stream.tick(rig.clock.monotonic()) is None
    rig.stream.run_ticker()  # returns at once


def probe_once(rig: Rig, result: Any) -> Session:
    sess = rig.session()
    sess.node_id = "n1"
    sess.call = type("Call", (), {"cancel": lambda self: setattr(sess, "aborted", True)})()
    sess.probe = lambda: FakeFuture(result)
    sess.probe_inflight = True
    rig.stream.start_probe(sess)
    return sess


def test_a_probe_answered_by_the_leader_changes_nothing() -> None:
    rig = Rig()
    sess = probe_once(rig, api_pb2.NodeStatus(node_id="n1", role="leader"))
    assert not sess.probe_inflight and not getattr(sess, "aborted", False)


def test_a_probe_answered_by_a_follower_reconnects_to_the_leader_it_names() -> None:
    rig = Rig()
    sess = probe_once(rig, api_pb2.NodeStatus(node_id="n1", role="follower", leader_grpc="b:2"))
    assert sess.hint == "b:2" and getattr(sess, "aborted", False)
    assert rig.logs.lines("leader_stepped_down", logging.WARNING)


def test_an_unanswered_probe_marks_the_node_unresponsive() -> None:
    rig = Rig()
    sess = probe_once(rig, FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert sess.unresponsive and getattr(sess, "aborted", False)
    [line] = rig.logs.lines("leader_unresponsive")
    assert "error=DEADLINE_EXCEEDED" in line


def test_an_older_server_without_the_probe_is_not_probed_again() -> None:
    rig = Rig()
    sess = probe_once(rig, FakeRpcError(grpc.StatusCode.UNIMPLEMENTED))
    assert sess.probe is None and not sess.unresponsive


def test_a_probe_that_ends_with_the_session_or_cannot_be_sent_is_ignored() -> None:
    rig = Rig()
    sess = probe_once(rig, RuntimeError("cancelled"))
    assert not sess.unresponsive and rig.logs.lines("probe_failed")
    sess = rig.session()
    sess.close()
    sess.probe = lambda: FakeFuture(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED))
    rig.stream.start_probe(sess)
    assert not sess.unresponsive  # the session had ended: no verdict

    def broken() -> Any:
        raise ValueError("Cannot invoke RPC on closed channel!")

    sess = rig.session()
    sess.probe, sess.probe_inflight = broken, True
    rig.stream.start_probe(sess)
    assert not sess.probe_inflight and rig.logs.lines("probe_not_sent")


def test_the_probe_timeout_is_two_heartbeats_within_a_third_of_the_ttl() -> None:
    rig = Rig()
    rig.shared.hb_ms = 2000
    rig.shared.book.set_ttl(30_000)
    assert rig.stream.probe_timeout_s() == 4.0
    rig.shared.book.set_ttl(6_000)
    assert rig.stream.probe_timeout_s() == 2.0
    rig.shared.hb_ms = 100
    assert rig.stream.probe_timeout_s() == 1.0


# ---- one stream ------------------------------------------------------------------------------


def test_one_stream_says_hello_dispatches_and_returns_the_hint_it_ended_with() -> None:
    rig = Rig()
    result: list[SessionEnd] = []
    t = threading.Thread(target=lambda: result.append(rig.stream.session_to("a:1")))
    t.start()
    call = rig.net.call(0)
    assert call.sent[0].hello.worker_id == "w1"
    call.send(welcome=welcome(node="n1"))
    wait_for(lambda: (s := rig.shared.session) is not None and s.welcomed, 5, "Welcome")
    assert rig.shared.session is not None and rig.shared.session.probe is not None
    rig.shared.session.probe()
    assert rig.net.probes == [("a:1", rig.stream.probe_timeout_s())]
    call.fail(grpc.StatusCode.UNAVAILABLE, "not the leader", leader="b:2")
    t.join(5)
    assert result == [SessionEnd(True, "b:2", "UNAVAILABLE: not the leader", False)]
    assert rig.shared.session is None and rig.net.channels[0].closed
    assert rig.shared.wake.is_set()


def test_a_stream_refused_or_frozen_ends_before_hello() -> None:
    rig = Rig()
    rig.net.states["a:1"] = grpc.ChannelConnectivity.TRANSIENT_FAILURE
    assert rig.stream.session_to("a:1") == SessionEnd(
        False, "", "connection failed (TRANSIENT_FAILURE)", False
    )
    rig.net.states["b:2"] = None  # accepts TCP, never answers

    ticks = iter(range(100))
    rig.shared.clock = lambda: float(next(ticks))  # each look at the clock: one more second
    end = rig.stream.session_to("b:2")
    assert end == SessionEnd(False, "", "no connection within 3 s", True)
    assert rig.net.calls == [] and all(ch.closed for ch in rig.net.channels)


def test_a_stop_ends_the_wait_for_a_connection() -> None:
    rig = Rig()
    rig.net.states["a:1"] = None
    rig.shared.closing.set()
    assert rig.stream.session_to("a:1").why == "worker closing"


def test_the_default_channel_is_a_real_grpc_channel() -> None:
    channel = stream_mod.insecure_channel("127.0.0.1:1")
    try:
        assert hasattr(channel, "subscribe")
    finally:
        channel.close()


# ---- the stream loop -------------------------------------------------------------------------


class FakeClosing:
    """Stands in for ``Shared.closing`` in the stream loop: a wait advances the fake clock
    instead of sleeping, and is recorded."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.clock.advance(timeout)
        return self._set


def loop_transcript(rig: Rig, ends: list[SessionEnd], seconds: float = 0.0) -> list[str]:
    """Run the stream loop over scripted stream ends (each stream lasting ``seconds``); one line
    per stream: where it went, how it ended, and how long the loop waited after it."""
    closing = FakeClosing(rig.clock)
    rig.shared.closing = closing  # type: ignore[assignment]
    script = iter(ends)
    attempts: list[tuple[str, SessionEnd, int]] = []  # target, end, waits before it

    def session_to(target: str) -> SessionEnd:
        end = next(script, None)
        if end is None:
            closing.set()
            return SessionEnd(False, "", "worker closing", False)
        attempts.append((target, end, len(closing.waits)))
        rig.clock.advance(seconds)
        return end

    rig.stream.session_to = session_to  # type: ignore[method-assign]
    rig.stream.run()
    lines = []
    for i, (target, end, before) in enumerate(attempts):
        after = attempts[i + 1][2] if i + 1 < len(attempts) else len(closing.waits)
        wait = closing.waits[before] if after > before else 0.0
        lines.append(
            f"{target}: welcomed={end.welcomed} hint={end.hint or '-'} "
            f"frozen={end.frozen} wait={wait:g}"
        )
    return lines


def refused(hint: str = "") -> SessionEnd:
    return SessionEnd(False, hint, "connection failed (TRANSIENT_FAILURE)", False)


def test_the_stream_loop_follows_the_leader_across_a_failover() -> None:
    rig = Rig()
    lines = loop_transcript(
        rig,
        [
            refused("b:2"),  # a:1, a follower, names the leader
            SessionEnd(
                True, "", "UNAVAILABLE: Socket closed", False
            ),  # b:2's stream; then b:2 dies
            refused(),  # c:3 knows no leader yet
            refused("a:1"),  # a:1 names itself: it is being elected
            SessionEnd(True, "", "stream ended", False),  # a:1 leads
        ],
    )
    assert lines == [
        "a:1: welcomed=False hint=b:2 frozen=False wait=0",
        "b:2: welcomed=True hint=- frozen=False wait=0.05",
        "c:3: welcomed=False hint=- frozen=False wait=0.1",
        "a:1: welcomed=False hint=a:1 frozen=False wait=0.2",
        "a:1: welcomed=True hint=- frozen=False wait=0.05",
    ]
    assert len(rig.logs.lines("disconnected", logging.WARNING)) == 2
    assert len(rig.logs.lines("connect_failed", logging.DEBUG)) == 3
    assert rig.logs.lines("no_leader") == []


def test_the_stream_loop_skips_a_frozen_leader_its_followers_still_name() -> None:
    rig = Rig()
    lines = loop_transcript(
        rig,
        [
            SessionEnd(True, "", "CANCELLED: probe", True),  # the probe found a:1 frozen
            refused("a:1"),
            refused("a:1"),
            refused("a:1"),  # followers still name it
            refused(),  # their election has started
            refused("c:3"),  # c:3 won it
            SessionEnd(True, "", "stream ended", False),
        ],
    )
    assert lines == [
        "a:1: welcomed=True hint=- frozen=True wait=0.05",
        "b:2: welcomed=False hint=a:1 frozen=False wait=0.05",
        "c:3: welcomed=False hint=a:1 frozen=False wait=0.05",
        "b:2: welcomed=False hint=a:1 frozen=False wait=0.05",
        "c:3: welcomed=False hint=- frozen=False wait=0.1",
        "b:2: welcomed=False hint=c:3 frozen=False wait=0",
        "c:3: welcomed=True hint=- frozen=False wait=0.05",
    ]


def test_the_stream_loop_reports_a_long_outage_every_10_s() -> None:
    """Attempts of 2 s each, then 0.05, 0.1, ... 1 s apart: they end at 2, 4.05, 6.15, 8.35,
    10.75, 13.55, then every 3 s; the outage started with the first."""
    rig = Rig()
    loop_transcript(rig, [refused()] * 10, seconds=2.0)
    no_leader = rig.logs.lines("no_leader", logging.WARNING)
    assert len(no_leader) == 2
    assert "seconds=11" in no_leader[0] and "seconds=23" in no_leader[1]
    assert "last_target=" in no_leader[0] and "last_error=" in no_leader[0]
    assert len(rig.logs.lines("connect_failed")) == 8


def test_the_outage_log_counts_from_the_last_welcomed_stream() -> None:
    out = OutageLog(10.0)
    assert out.failed(100.0) is None
    assert out.failed(109.9) is None
    assert out.failed(110.0) == 10
    assert out.failed(115.0) is None
    assert out.failed(120.5) == 20
    out.lost(200.0)
    assert out.failed(205.0) is None
    assert out.failed(210.0) == 10


# ---- the Worker end to end against a fake call -----------------------------------------------


@pytest.fixture
def net() -> FakeNet:
    return FakeNet()


def make_worker(net: FakeNet, **kwargs: Any) -> tuple[Worker, Logs]:
    log, logs = make_logger()
    w = Worker("a:1,b:2,c:3", worker_id="w1", logger=log, **kwargs)
    w._stream._channel = net.channel
    return w, logs


def completed(call: FakeCall) -> list[tuple[str, int, int]]:
    return [
        (c.run_id, c.fence, c.outcome) for m in call.bodies("completions") for c in m.completions
    ]


def test_a_worker_runs_firings_reports_them_and_drains(net: FakeNet) -> None:
    w, logs = make_worker(net, concurrency=2)
    progress: list[str] = []

    @w.handler("j")
    def handle(ctx: Context) -> None:
        ctx.heartbeat(f"working on {ctx.run_id}")
        progress.append(threading.current_thread().name)

    w.start()
    try:
        with pytest.raises(RuntimeError, match="runs once"):
            w.start()
        call = net.call(0)
        call.send(welcome=welcome(hb_ms=50))
        call.send(firings=api_pb2.Firings(firings=[firing("r1", 7), firing("r2", 8)]))
        wait_for(lambda: len(completed(call)) == 2, 5, "both completions")
        assert sorted(completed(call)) == [("r1", 7, 1), ("r2", 8, 1)]
        assert all(name.startswith("schedd-handler") for name in progress)
        call.send(
            acks=api_pb2.CompletionAcks(
                acks=[
                    api_pb2.CompletionAck(run_id="r1", fence=7, code=CODE_OK),
                    api_pb2.CompletionAck(run_id="r2", fence=8, code=CODE_OK),
                ]
            )
        )
        wait_for(lambda: len(logs.lines("completion_acked")) == 2, 5, "the acks")
        wait_for(lambda: call.bodies("heartbeat"), 5, "a heartbeat")
    finally:
        w.stop(drain_timeout=1.0)
    assert w.stopped
    events = logs.events()
    for event in (
        "worker_starting",
        "connected",
        "firing_received",
        "handler_finished",
        "completion_acked",
        "worker_stopping",
        "worker_stopped",
    ):
        assert event in events
    w.stop()  # idempotent


def test_a_worker_follows_the_leader_and_keeps_its_running_lease(net: FakeNet) -> None:
    w, logs = make_worker(net)
    go = threading.Event()
    fences: list[int] = []

    @w.handler("j")
    def handle(ctx: Context) -> None:
        fences.append(ctx.fence)
        go.wait(10)

    w.start()
    try:
        first = net.call(0)
        first.send(welcome=welcome(hb_ms=50))
        first.send(firings=api_pb2.Firings(firings=[firing("r1", 7)]))
        wait_for(lambda: fences, 5, "the handler to start")
        first.fail(grpc.StatusCode.UNAVAILABLE, "leader stepped down", leader="c:3")
        second = net.call(1)
        assert second.target == "c:3"  # the hint, at once
        assert [(le.run_id, le.fence) for le in second.sent[0].hello.running] == [("r1", 7)]
        second.send(welcome=welcome(hb_ms=50, node="n3", reattached=(("r1", 7),)))
        wait_for(lambda: (s := w._shared.session) is not None and s.node_id == "n3", 5, "Welcome")
        go.set()
        wait_for(lambda: completed(second), 5, "the completion on the new stream")
        assert completed(second) == [("r1", 7, 1)] and fences == [7]
        second.send(acks=api_pb2.CompletionAcks(acks=[api_pb2.CompletionAck(run_id="r1", fence=7)]))
    finally:
        go.set()
        w.stop(drain_timeout=1.0)
    [line] = logs.lines("disconnected")
    assert "leader_hint=c:3" in line


def test_a_drain_timeout_releases_the_lease_instead_of_reporting(net: FakeNet) -> None:
    w, logs = make_worker(net)
    started = threading.Event()
    stop_now = threading.Event()
    seen: list[bool] = []

    @w.handler("j")
    def handle(ctx: Context) -> None:
        started.set()
        stop_now.wait(10)
        seen.append(ctx.cancelled.is_set())

    w.start()
    call = net.call(0)
    call.send(welcome=welcome(hb_ms=50))
    call.send(firings=api_pb2.Firings(firings=[firing("r1", 7)]))
    wait_for(started.is_set, 5, "the handler to start")
    threading.Timer(0.5, stop_now.set).start()  # the handler ignores its cancellation a while
    w.stop(drain_timeout=0.1)
    releases = [(le.run_id, le.fence) for r in call.bodies("release") for le in r.leases]
    assert releases == [("r1", 7)]
    assert logs.lines("drain_timeout") and logs.lines("lease_released")
    wait_for(lambda: seen, 5, "the handler to return")
    assert seen == [True] and completed(call) == []
    [line] = logs.lines("handler_finished")
    assert 'result="not sent: lease released"' in line


def test_stop_from_inside_a_handler_does_not_wait_for_itself(net: FakeNet) -> None:
    w, logs = make_worker(net)
    returned = threading.Event()

    @w.handler("j")
    def handle(ctx: Context) -> None:
        w.stop(drain_timeout=2.0)
        returned.set()

    w.start()
    call = net.call(0)
    call.send(welcome=welcome(hb_ms=50))
    call.send(firings=api_pb2.Firings(firings=[firing("r1", 7)]))
    wait_for(returned.is_set, 5, "stop() to return inside the handler")
    wait_for(lambda: completed(call), 5, "the completion, sent during the drain")
    # the drain's announcement (an empty Release) was queued before the completion
    assert [list(r.leases) for r in call.bodies("release")] == [[]]
    call.send(acks=api_pb2.CompletionAcks(acks=[api_pb2.CompletionAck(run_id="r1", fence=7)]))
    wait_for(lambda: w.stopped, 10, "the worker to stop")
    w.stop()  # waits for nothing: stopped already


def test_run_blocks_until_stopped_and_signals_drain_then_force(net: FakeNet) -> None:
    w, logs = make_worker(net)
    started = threading.Event()

    @w.handler("j")
    def handle(ctx: Context) -> None:
        started.set()
        ctx.cancelled.wait(10)

    before = signal.getsignal(signal.SIGTERM)

    def operator() -> None:
        call = net.call(0)
        call.send(welcome=welcome(hb_ms=50))
        call.send(firings=api_pb2.Firings(firings=[firing("r1", 7)]))
        wait_for(started.is_set, 5, "the handler to start")
        w._on_signal(signal.SIGTERM, None)  # as the first SIGTERM would: drain
        wait_for(lambda: logs.lines("worker_stopping"), 5, "the drain to start")
        w._on_signal(signal.SIGINT, None)  # a second signal: cancel now

    t = threading.Thread(target=operator)
    t.start()
    w.run()  # the main thread: installs SIGINT/SIGTERM handlers and restores them after
    t.join(5)
    assert w.stopped
    assert signal.getsignal(signal.SIGTERM) == before
    [drain_line, force_line] = logs.lines("signal")
    assert "action=drain" in drain_line and "action=cancel_running_handlers" in force_line


def test_a_crashed_agent_thread_stops_the_worker(net: FakeNet) -> None:
    w, logs = make_worker(net)

    def crash() -> None:
        raise RuntimeError("bug")

    w._guard(crash)()
    wait_for(lambda: w.stopped, 5, "the worker to stop")
    assert logs.lines("agent_thread_crashed", logging.ERROR)


def test_a_worker_stopped_before_it_started_stops_at_once() -> None:
    w, _ = make_worker(FakeNet())
    w.stop()
    assert w.stopped
    with pytest.raises(RuntimeError, match="stopped"):
        w.start()


def test_handler_registration_through_the_worker() -> None:
    w, _ = make_worker(FakeNet())

    @w.handler("*")
    def anything(ctx: Context) -> None:
        pass

    with pytest.raises(ValueError, match="default"):
        w.default_handler(anything)
    with pytest.raises(ValueError, match="non-empty"):
        w.handler("")
    w.handler("j")(anything)
    with pytest.raises(ValueError, match="already has a handler"):
        w.handler("j")(anything)
    assert w._runner.lookup("j") is anything and w._runner.lookup("k") is anything
