"""Firings committed ahead of their start instant wait in the waiting room, not on a handler
thread (``schedd.agent.waiting``), and the pool takes a start instant's firings at once
(``HandlerPool.submit_many``). Real threads and the real pool; instants a few hundred ms ahead.
"""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from schedd.agent.core import Context, Outcome
from schedd.agent.metrics import AgentMetrics
from schedd.agent.pool import HandlerPool
from schedd.agent.waiting import WaitingRoom
from tests.unit._live_agent import Agent, ctx, handler_threads, now_ms


def test_firings_waiting_for_their_start_instant_hold_no_handler_thread() -> None:
    """50 firings committed 2 s ahead: none holds a pool thread while it waits (a thread each,
    before: 50 threads started, then woken at one instant), and each handler starts no
    earlier than its instant."""
    agent = Agent(concurrency=100)
    before = len(handler_threads())
    at = now_ms() + 2000
    for i in range(50):
        agent.fire(f"r{i}", i + 1, at)
    assert len(handler_threads()) - before <= 0  # (an earlier test's idle threads may end)
    assert len(agent.runner._waiting) == 50
    outcomes = agent.finished(50)
    assert len(outcomes) == 50 and all(o.outcome == Outcome.SUCCEEDED for o in outcomes)
    assert all(t >= at for _, t in agent.starts)
    agent.runner.shutdown()


def test_the_waiting_firings_are_a_gauge() -> None:
    registry = CollectorRegistry()
    agent = Agent(metrics=AgentMetrics(registry))
    assert registry.get_sample_value("schedd_agent_firings_waiting") == 0
    for i in range(3):
        agent.fire(f"r{i}", i + 1, now_ms() + 60_000)
    assert registry.get_sample_value("schedd_agent_firings_waiting") == 3
    agent.runner.shutdown()
    assert registry.get_sample_value("schedd_agent_firings_waiting") == 0


def test_firings_start_in_the_order_of_their_instants() -> None:
    agent = Agent(concurrency=1)  # one thread: the start order is the hand-over order
    base = now_ms() + 1000  # (all four are in the room before the first instant)
    for i, offset in enumerate([200, 0, 100, 0]):
        agent.fire(f"r{i}-{offset}", i + 1, base + offset)
    agent.finished(4)
    assert [r for r, _ in agent.starts] == ["r1-0", "r3-0", "r2-100", "r0-200"]
    agent.runner.shutdown()


def test_a_lease_revoked_while_waiting_ends_at_once_and_never_runs() -> None:
    """The revoke wakes the room (``poke``): the firing is recorded as cancelled before start
    right away, not when its instant a minute from now comes."""
    agent = Agent()
    agent.fire("r1", 7, now_ms() + 60_000)
    agent.fire("r2", 8, now_ms() + 60_000)
    t0 = time.monotonic()
    agent.runner.cancel(agent.shared.book.server_lost([("r1", 7)], "job paused"))
    [rec] = agent.finished(1)
    assert time.monotonic() - t0 < 10
    assert (rec.run_id, rec.outcome) == ("r1", Outcome.FAILED)
    assert rec.error.startswith("cancelled")
    assert agent.starts == [] and len(agent.runner._waiting) == 1  # r2 still waits
    assert agent.runner._gate._pending == {}  # the gate expects no start it will not see
    agent.runner.shutdown()


def test_a_forced_stop_cancels_waiting_firings_at_once() -> None:
    agent = Agent()
    for i in range(3):
        agent.fire(f"r{i}", i + 1, now_ms() + 60_000)
    with agent.shared.lock:
        agent.runner.cancel_all_locked("worker stopping (forced)")
    recs = agent.finished(3)
    assert sorted(r.run_id for r in recs) == ["r0", "r1", "r2"]
    assert all(r.outcome == Outcome.FAILED for r in recs) and agent.starts == []
    agent.runner.shutdown()


def test_shutdown_drops_waiting_firings_and_their_leases() -> None:
    agent = Agent()
    agent.fire("r1", 7, now_ms() + 1000)
    agent.runner.shutdown()
    assert len(agent.runner._waiting) == 0
    with agent.shared.lock:
        assert ("r1", 7) not in agent.shared.active
    time.sleep(1.2)  # past the instant: the room is closed, nothing is handed over
    assert agent.starts == []
    assert not agent.runner._waiting.add(ctx("x", now_ms() + 100))  # closed: nothing held


def test_the_room_hands_over_in_start_order_and_never_early() -> None:
    got: list[tuple[str, float]] = []
    done = threading.Event()

    def submit(ctxs: list[Context]) -> None:
        got.extend((c.run_id, time.time() * 1000) for c in ctxs)
        if len(got) == 4:
            done.set()

    room = WaitingRoom(submit)
    base = now_ms() + 1000
    for name, at in [("c", base + 150), ("a", base), ("b", base + 50), ("a2", base)]:
        assert room.add(ctx(name, at))
    assert done.wait(10)
    assert [n for n, _ in got] == ["a", "a2", "b", "c"]
    ats = {"a": base, "a2": base, "b": base + 50, "c": base + 150}
    assert all(t >= ats[n] for n, t in got)
    assert room.close() == []


def test_a_poke_hands_over_each_cancelled_firing_once_and_keeps_the_others() -> None:
    handed: list[str] = []
    got = threading.Event()

    def submit(ctxs: list[Context]) -> None:
        handed.extend(c.run_id for c in ctxs)
        got.set()

    room = WaitingRoom(submit)
    far = now_ms() + 60_000
    contexts = [ctx(f"r{i}", far + i, fence=i + 1) for i in range(5)]
    for c in contexts:
        room.add(c)
    contexts[1].cancelled.set()
    contexts[3].cancelled.set()
    room.poke()
    assert got.wait(10)
    room.poke()  # nothing more was cancelled: nothing more is handed over
    time.sleep(0.2)  # (time for a wrong second hand-over to show)
    assert handed == ["r1", "r3"]
    assert [c.run_id for c in room.close()] == ["r0", "r2", "r4"]


def test_an_earlier_instant_added_later_is_not_held_behind_a_later_one() -> None:
    """The room's thread sleeps until the earliest instant it knows; a sooner one wakes it."""
    got: list[str] = []
    done = threading.Event()

    def submit(ctxs: list[Context]) -> None:
        got.extend(c.run_id for c in ctxs)
        done.set()

    room = WaitingRoom(submit)
    far = now_ms() + 60_000
    room.add(ctx("far", far))
    soon = now_ms() + 100
    room.add(ctx("soon", soon, fence=2))
    assert done.wait(10) and got == ["soon"]
    assert [c.run_id for c in room.close()] == ["far"]


@pytest.mark.parametrize("idle_first", [False, True])
def test_submit_many_runs_every_item_in_order_on_as_many_threads_as_needed(
    idle_first: bool,
) -> None:
    ran: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def run(i: int) -> None:
        if i >= 0:
            release.wait(10)
        with lock:
            ran.append(i)

    pool: HandlerPool[int] = HandlerPool(4, run, f"test-pool-{idle_first}")
    if idle_first:  # one thread started and back to idle: it is reused, not doubled
        pool.submit(-1)
        deadline = time.monotonic() + 5
        while pool._idle == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread goes idle once its item is done
    pool.submit_many(list(range(6)))
    assert pool._threads == 4  # six items: the size bounds the threads
    release.set()
    deadline = time.monotonic() + 10
    while len(ran) < 6 + idle_first and time.monotonic() < deadline:
        time.sleep(0.01)  # the items run on the pool's threads
    assert sorted(i for i in ran if i >= 0) == list(range(6))
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit_many([1])
