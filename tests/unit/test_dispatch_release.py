"""The leader side of a worker's Release, without Raft or LMDB: the dispatcher drops the lease
from its table, queues a released ExpireItem for the next tick, and the session gets no grants."""

from __future__ import annotations

from typing import Any, cast

from schedd.clock import FakeClock
from schedd.pb import api_pb2
from schedd.server.dispatcher import Dispatcher
from schedd.server.validate import MAX_PROGRESS_BYTES
from schedd.server.workers import Registry, WorkerSession


def dispatcher(registry: Registry) -> Dispatcher:
    d = Dispatcher(
        node_id="n1",
        store=cast(Any, None),
        raft=cast(Any, None),
        clock=FakeClock(),
        registry=registry,
        leader_hint=lambda: "",
    )
    d._active = True  # as after _activate on the leader
    return d


def test_release_queues_released_items_and_marks_the_session_draining() -> None:
    registry = Registry()
    w1 = WorkerSession("w1", frozenset({"default"}), 2, tags={"region": "eu"})
    w2 = WorkerSession("w2", frozenset({"default"}), 2)
    registry.attach(w1)
    registry.attach(w2)
    d = dispatcher(registry)
    d.leases.add("r1", 5, "w1", 0.0)
    d.leases.add("r2", 6, "w1", 0.0)
    n = d.release(
        w1,
        [
            api_pb2.Lease(run_id="r1", fence=5),  # held: released
            api_pb2.Lease(run_id="r2", fence=99),  # other fence: ignored
            api_pb2.Lease(run_id="r3", fence=1),
        ],  # not held: ignored
        "worker stopping (drain timeout)",
        drain=True,
    )
    assert n == 1
    assert d.leases.get("r1") is None and d.leases.get("r2") is not None
    assert [(i.run_id, i.fence, i.released) for i in d._released] == [("r1", 5, True)]
    assert d._released[0].reason == "released by worker w1: worker stopping (drain timeout)"
    assert w1.draining and [s.worker_id for s in registry.all()] == ["w2"]
    registry.close_all("stopped leading", "n2:1")  # a draining session is still closed with a hint
    assert w1.closed.is_set() and w1.leader_hint == "n2:1"


def test_empty_release_only_stops_new_grants() -> None:
    registry = Registry()
    w1 = WorkerSession("w1", frozenset({"default"}), 1)
    registry.attach(w1)
    d = dispatcher(registry)
    assert d.release(w1, [], "", drain=True) == 0 and d._released == []
    assert registry.all() == []


def test_a_release_without_drain_keeps_the_session_taking_work() -> None:
    """A worker gives back a firing it has no handler for: the run is PENDING again and the
    worker still gets new firings (before the drain flag, any Release stopped new work)."""
    registry = Registry()
    w1 = WorkerSession("w1", frozenset({"default"}), 2)
    registry.attach(w1)
    d = dispatcher(registry)
    d.leases.add("r1", 5, "w1", 0.0)
    assert d.release(w1, [api_pb2.Lease(run_id="r1", fence=5)], "no handler", drain=False) == 1
    assert not w1.draining and registry.all() == [w1]
    assert [(i.run_id, i.released) for i in d._released] == [("r1", True)]


def test_heartbeat_keeps_the_last_progress_per_lease() -> None:
    registry = Registry()
    w1 = WorkerSession("w1", frozenset({"default"}), 1)
    d = dispatcher(registry)
    d.leases.add("r1", 5, "w1", 0.0)
    assert d.heartbeat(w1, [api_pb2.Lease(run_id="r1", fence=5, progress="1/3")]) == []
    assert d.progress_of("r1") == "1/3"
    d.heartbeat(w1, [api_pb2.Lease(run_id="r1", fence=5)])  # no text: the last one stays
    assert d.progress_of("r1") == "1/3"
    d.heartbeat(w1, [api_pb2.Lease(run_id="r1", fence=5, progress="x" * 5000)])
    cut = d.progress_of("r1")
    assert len(cut.encode()) <= MAX_PROGRESS_BYTES and cut.endswith("more bytes cut]")
    lost = d.heartbeat(w1, [api_pb2.Lease(run_id="r1", fence=4, progress="stale")])
    assert [le.fence for le in lost] == [4] and d.progress_of("r1") == cut
    assert d.progress_of("nope") == ""


def test_a_heartbeat_from_another_worker_neither_renews_nor_takes_the_lease() -> None:
    registry = Registry()
    w1 = WorkerSession("w1", frozenset({"default"}), 1)
    intruder = WorkerSession("intruder", frozenset({"default"}), 1)
    d = dispatcher(registry)
    d.leases.add("r1", 5, "w1", 0.0)
    expires = d.leases.get("r1").expires_at  # type: ignore[union-attr]
    cast(Any, d.clock).advance(1.0)
    lost = d.heartbeat(intruder, [api_pb2.Lease(run_id="r1", fence=5, progress="mine now")])
    lease = d.leases.get("r1")
    assert [le.run_id for le in lost] == ["r1"]
    assert lease is not None and lease.worker_id == "w1" and lease.expires_at == expires
    assert lease.progress == ""
    assert d.heartbeat(w1, [api_pb2.Lease(run_id="r1", fence=5)]) == []
    assert d.leases.get("r1").expires_at > expires  # type: ignore[union-attr]


def test_a_release_from_another_worker_gives_nothing_back() -> None:
    registry = Registry()
    w1 = WorkerSession("w1", frozenset({"default"}), 1)
    intruder = WorkerSession("intruder", frozenset({"default"}), 1)
    d = dispatcher(registry)
    d.leases.add("r1", 5, "w1", 0.0)
    assert d.release(intruder, [api_pb2.Lease(run_id="r1", fence=5)], "", drain=False) == 0
    assert d.leases.get("r1") is not None and d._released == []
    assert d.release(w1, [api_pb2.Lease(run_id="r1", fence=5)], "", drain=False) == 1
    assert d._released[0].worker_id == "w1"


def test_a_hello_cannot_reattach_another_workers_lease() -> None:
    """Hello.running re-attaches a lease only if the committed lease is this worker's."""

    class Committed:
        def leases(self) -> dict[str, tuple[int, str]]:
            return {"r1": (5, "w1")}

    registry = Registry()
    d = dispatcher(registry)
    d.store = cast(Any, Committed())
    intruder = WorkerSession("intruder", frozenset({"default"}), 1)
    reattached, lost = d.attach(intruder, [api_pb2.Lease(run_id="r1", fence=5)])
    assert reattached == [] and [le.run_id for le in lost] == ["r1"]
    assert d.leases.get("r1") is None
    w1 = WorkerSession("w1", frozenset({"default"}), 1)
    reattached, lost = d.attach(w1, [api_pb2.Lease(run_id="r1", fence=5)])
    assert [le.run_id for le in reattached] == ["r1"] and lost == []
    assert d.leases.get("r1").worker_id == "w1"  # type: ignore[union-attr]


def test_hello_jobs_are_qualified_with_the_namespace_and_star_means_any() -> None:
    from schedd.errors import InvalidArgument
    from schedd.server.validate import worker_jobs

    assert worker_jobs([], "team") is None
    assert worker_jobs(["a", "*"], "team") is None
    assert worker_jobs(["a", "b"], "team") == frozenset({"team/a", "team/b"})
    assert worker_jobs(["a"], "default") == frozenset({"a"})
    try:
        worker_jobs(["ok", "no/slash"], "team")
    except InvalidArgument as e:
        assert e.field == "hello.jobs"
    else:
        raise AssertionError("a bad job name in Hello.jobs was accepted")


class _Leading:
    """A Raft stand-in that always leads, in term 1."""

    raftCurrentTerm = 1  # noqa: N815 (pysyncobj's name)

    def is_leader(self) -> bool:
        return True


def _ticks_in(d: Dispatcher, seconds: float) -> int:
    import threading
    import time

    calls: list[int] = []
    d._tick = lambda: (calls.append(1), d._stop.wait(0.001))  # type: ignore[method-assign]
    d.raft = cast(Any, _Leading())
    d._term = 1
    t = threading.Thread(target=d._loop, daemon=True)
    t.start()
    time.sleep(seconds)  # the loop runs on its own for this long
    d._stop.set()
    t.join(timeout=5)
    return len(calls)


def test_a_held_dispatcher_proposes_nothing() -> None:
    """Node.stop holds the dispatcher before handing leadership over: a log that keeps growing
    keeps every peer behind, and pysyncobj refuses a transfer to a peer that is behind."""
    held = dispatcher(Registry())
    held.hold()
    assert _ticks_in(held, 0.1) == 0
    assert _ticks_in(dispatcher(Registry()), 0.1) > 0  # negative control: it ticks unless held
