"""Async handlers run as tasks on the agent's event loop and hold no handler thread
(``schedd.agent.runner``): started at once, their outcomes recorded by the task's end, a lost
lease, a forced stop or a shutdown cancelling their task. Real threads, the real pool and loop.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import schedd.agent.runner as runner_mod
from schedd.agent.core import Context, HandlerFailure, Outcome
from schedd.agent.runner import in_handler
from schedd.errors import StaleFence
from tests.unit._live_agent import Agent, handler_threads, now_ms


class Gate:
    """Async handlers that count their starts and wait for :meth:`open` (or their cancel)."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.cancelled: list[str] = []
        self.threads: set[str] = set()
        self._open = threading.Event()
        self._lock = threading.Lock()

    async def handler(self, ctx: Context) -> None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            while not self._open.is_set():
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.cancelled.append(ctx.run_id)
            raise
        finally:
            with self._lock:
                self.running -= 1

    def open(self) -> None:
        self._open.set()

    def wait_running(self, n: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.running < n and time.monotonic() < deadline:
            time.sleep(0.01)  # the loop starts the tasks
        return self.running >= n


def test_async_handlers_hold_no_handler_thread_and_all_run_at_once() -> None:
    """50 async firings run together on the loop; not one handler thread is started for them
    (before, each held a pool thread that waited for its task: 50 threads)."""
    gate = Gate()
    agent = Agent(concurrency=100, handler=gate.handler)
    before = len(handler_threads())
    try:
        for i in range(50):
            agent.fire(f"r{i}", i + 1)
        assert gate.wait_running(50), f"{gate.running} of 50 started"
        assert len(handler_threads()) - before <= 0  # (an earlier test's idle threads may end)
        assert gate.threads == {"schedd-agent-asyncio"}
        gate.open()
        outcomes = agent.finished(50)
        assert len(outcomes) == 50 and all(o.outcome == Outcome.SUCCEEDED for o in outcomes)
        with agent.shared.lock:
            assert agent.shared.active == {}
    finally:
        gate.open()
        agent.runner.shutdown()


def test_async_firings_committed_ahead_start_at_their_instant() -> None:
    starts: list[float] = []

    async def handle(ctx: Context) -> None:
        starts.append(time.time() * 1000)

    agent = Agent(handler=handle)
    at = now_ms() + 1500
    try:
        for i in range(10):
            agent.fire(f"r{i}", i + 1, start_at_ms=at)
        assert len(agent.runner._waiting) == 10
        outcomes = agent.finished(10)
        assert all(o.outcome == Outcome.SUCCEEDED for o in outcomes)
        assert len(starts) == 10 and min(starts) >= at
    finally:
        agent.runner.shutdown()


def test_the_outcome_of_an_async_handler_is_that_of_a_sync_one() -> None:
    async def handle(ctx: Context) -> None:
        await asyncio.sleep(0)  # ends after a suspension, as real work does
        if ctx.run_id == "fail":
            raise HandlerFailure("disk full", exit_code=3)
        if ctx.run_id == "boom":
            raise ValueError("bad payload")
        if ctx.run_id == "stale":
            raise StaleFence("fence 1 is stale")
        assert in_handler()  # a Worker.stop() from here must not wait for the drain

    agent = Agent(handler=handle)
    try:
        for i, rid in enumerate(["ok", "fail", "boom", "stale"]):
            agent.fire(rid, i + 1)
        recs = {r.run_id: r for r in agent.finished(4)}
    finally:
        agent.runner.shutdown()
    assert recs["ok"].outcome is Outcome.SUCCEEDED
    assert (recs["fail"].outcome, recs["fail"].error, recs["fail"].exit_code) == (
        Outcome.FAILED,
        "disk full",
        3,
    )
    assert recs["boom"].error == "ValueError('bad payload')"
    assert recs["stale"].error == "fence 1 is stale"


def test_a_lost_lease_cancels_its_task() -> None:
    gate = Gate()
    agent = Agent(handler=gate.handler)
    try:
        agent.fire("r1", 7)
        agent.fire("r2", 8)
        assert gate.wait_running(2)
        agent.runner.cancel(agent.shared.book.server_lost([("r1", 7)], "revoked"))
        [rec] = agent.finished(1)
        assert (rec.run_id, rec.error) == ("r1", "cancelled: lease lost: revoked")
        assert gate.cancelled == ["r1"] and gate.running == 1  # r2 runs on
        assert agent.runner._tasks.keys() == {("r2", 8)}
    finally:
        gate.open()
        agent.runner.shutdown()


def test_a_lease_lost_before_its_task_starts_never_runs_it() -> None:
    gate = Gate()
    agent = Agent(handler=gate.handler)
    try:
        agent.fire("r1", 7, start_at_ms=now_ms() + 60_000)
        agent.runner.cancel(agent.shared.book.server_lost([("r1", 7)], "job paused"))
        [rec] = agent.finished(1)
        assert (rec.outcome, rec.error) == (Outcome.FAILED, "cancelled before start")  # as sync
        assert gate.most == 0
    finally:
        agent.runner.shutdown()


def test_a_forced_stop_cancels_every_task() -> None:
    gate = Gate()
    agent = Agent(handler=gate.handler)
    try:
        for i in range(3):
            agent.fire(f"r{i}", i + 1)
        assert gate.wait_running(3)
        agent.runner.force_cancel()
        recs = agent.finished(3)
        assert {r.error for r in recs} == {"cancelled: worker stopping (forced)"}
        assert sorted(gate.cancelled) == ["r0", "r1", "r2"]
    finally:
        agent.runner.shutdown()


def test_a_drain_waits_for_async_handlers_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    # no leader acknowledges the completions here: do not wait the real grace for them
    monkeypatch.setattr(runner_mod, "FLUSH_GRACE_S", 0.2)

    async def handle(ctx: Context) -> None:
        await asyncio.sleep(0.3)  # the work the drain waits for

    agent = Agent(handler=handle)
    try:
        agent.fire("r1", 7)
        agent.fire("r2", 8)
        agent.shared.draining.set()
        left = agent.runner.drain(10.0)
        assert left.still_running == 0 and left.released == []
        assert {r.outcome for r in agent.shared.book.pending()} == {Outcome.SUCCEEDED}
    finally:
        agent.runner.shutdown()


def test_shutdown_cancels_running_tasks_and_drops_later_firings() -> None:
    gate = Gate()
    agent = Agent(handler=gate.handler)
    agent.fire("r1", 7)
    assert gate.wait_running(1)
    agent.runner.shutdown()
    [rec] = agent.finished(1)
    assert (rec.run_id, rec.outcome, rec.error) == ("r1", Outcome.FAILED, "cancelled")
    agent.fire("r2", 8)  # the worker is closing: the lease is let go, nothing starts
    assert agent.shared.book.is_lost("r2", 8)
    with agent.shared.lock:
        assert ("r2", 8) not in agent.shared.active
    assert gate.most == 1


def test_sync_and_async_handlers_of_one_instant_each_run_their_way() -> None:
    seen: dict[str, str] = {}

    async def handle_async(ctx: Context) -> None:
        seen[ctx.run_id] = threading.current_thread().name

    def handle_sync(ctx: Context) -> None:
        seen[ctx.run_id] = threading.current_thread().name

    agent = Agent(handler=handle_async)
    agent.runner.add("s", handle_sync)
    at = now_ms() + 1000
    try:
        for i in range(4):
            agent.fire(f"r{i}", i + 1, start_at_ms=at, job="s" if i % 2 else "j")
        agent.finished(4)
    finally:
        agent.runner.shutdown()
    assert seen["r0"] == seen["r2"] == "schedd-agent-asyncio"
    assert seen["r1"].startswith("schedd-handler") and seen["r3"].startswith("schedd-handler")
