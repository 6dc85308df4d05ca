"""The agent's start gate: handlers whose start instant has come go before the bookkeeping of
handlers that just finished (``schedd.agent.runner.StartGate``), with a fake clock."""

from __future__ import annotations

import threading
import time

from schedd.agent.runner import StartGate


class FakeClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return float(self.ms)


def finisher(gate: StartGate) -> tuple[threading.Thread, threading.Event]:
    """A thread that yields to starts, and an event set once it is through."""
    through = threading.Event()

    def run() -> None:
        gate.yield_to_starts()
        through.set()

    t = threading.Thread(target=run)
    t.start()
    return t, through


def test_a_finish_with_no_start_pending_goes_through_at_once() -> None:
    gate = StartGate(FakeClock(1000), max_wait_s=30)
    t0 = time.monotonic()
    gate.yield_to_starts()
    assert time.monotonic() - t0 < 5


def test_a_finish_waits_until_every_start_due_now_has_begun() -> None:
    gate = StartGate(FakeClock(1000), max_wait_s=30)
    gate.expect(1000)
    gate.expect(1000)
    t, through = finisher(gate)
    assert not through.wait(0.2)  # two starts due now are pending
    gate.started(1000)
    assert not through.wait(0.2)  # one still is
    gate.started(1000)
    assert through.wait(10)
    t.join()


def test_a_start_not_due_yet_does_not_hold_a_finish() -> None:
    clock = FakeClock(1000)
    gate = StartGate(clock, max_wait_s=30)
    gate.expect(1500)  # due in 500 ms: the finish must not wait for it
    t, through = finisher(gate)
    assert through.wait(10)
    t.join()
    clock.ms = 1500  # now it is due: a later finish waits for it
    t, through = finisher(gate)
    assert not through.wait(0.2)
    gate.started(1500)
    assert through.wait(10)
    t.join()


def test_a_start_that_never_comes_holds_a_finish_at_most_the_bound() -> None:
    gate = StartGate(FakeClock(1000), max_wait_s=0.2)
    gate.expect(900)
    t0 = time.monotonic()
    gate.yield_to_starts()
    waited = time.monotonic() - t0
    assert 0.15 <= waited < 10


def test_every_expect_is_matched_by_a_start_even_when_the_wait_is_cancelled() -> None:
    """The runner calls ``started`` in a ``finally``: a lease revoked during the wait leaves no
    pending start behind to hold later finishes."""
    from tests.unit.test_agent_shell import Rig, firing

    rig = Rig()
    rig.runner.add("j", lambda ctx: None)
    f = firing()
    f.start_at_ms = int(time.time() * 1000) + 60_000
    rig.stream.on_firing(f)
    _, (ctx,) = rig.pool.queued.pop()
    ctx.cancelled.set()  # revoked before the start instant
    rig.runner.run(ctx)
    assert rig.runner._gate._pending == {}


def test_handlers_sharing_a_start_instant_all_start_before_any_outcome_is_recorded() -> None:
    """On real pool threads: 40 handlers with one ``start_at_ms`` that return at once. With the
    gate (bound raised so a slow machine cannot hide it), every handler has started before the
    first outcome reaches the lease book."""
    from tests.unit.test_agent_shell import Rig, firing

    rig = Rig()
    rig.runner._gate.max_wait_s = 10
    events: list[str] = []
    lock = threading.Lock()

    def handler(ctx: object) -> None:
        with lock:
            events.append("start")

    rig.runner.add("j", handler)
    book = rig.shared.book
    finish = book.finish

    def recording_finish(*args: object, **kwargs: object) -> None:
        with lock:
            events.append("finish")
        finish(*args, **kwargs)  # type: ignore[arg-type]

    book.finish = recording_finish  # type: ignore[method-assign]
    at = int(time.time() * 1000) + 300
    threads = []
    for i in range(40):
        f = firing()
        f.run_id, f.fence, f.start_at_ms = f"r{i}", 100 + i, at
        rig.stream.on_firing(f)
        _, (ctx,) = rig.pool.queued.pop()
        t = threading.Thread(target=rig.runner.run, args=(ctx,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(30)
    assert events.count("start") == 40 and events.count("finish") == 40
    assert events[:40] == ["start"] * 40
