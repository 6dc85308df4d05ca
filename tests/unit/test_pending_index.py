"""The leader's in-memory index of PENDING runs (schedd.server.pending.PendingIndex), on a real
LMDB store driven by the leader's own planner with a fake clock.

After every entry the index must hold exactly what LMDB holds (every PENDING run with a
``pending_q`` key, as its record stands), in grant order, and the planner must plan the same
grants from it as from LMDB. It is built from a snapshot while entries keep applying, so the
build is raced against the feed on purpose.
"""

from __future__ import annotations

import copy
import random
import threading
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched.schedule import compile_schedule
from schedd.server import pending, planner, validate
from schedd.server.pending import PendingIndex
from schedd.state import keys
from schedd.state.apply import Result, encode
from schedd.state.store import Store

T0 = 1_700_000_040_000
QUEUES = ("default", "q2")
R = types_pb2


class Leader:
    """A store, its log index, a fake clock and the planner, as the leader runs them."""

    def __init__(self, path: str) -> None:
        self.store = Store(path)
        self.index = 0
        self.now = T0
        self.cursor: dict[str, int] = defaultdict(int)
        self.granted: list[command_pb2.GrantItem] = []

    def apply(self, cmd: command_pb2.Command) -> Result:
        cmd.now_ms = cmd.now_ms or self.now
        self.index += 1
        return self.store.apply_entry(encode(cmd), self.index)

    def create(self, name: str, **kw: Any) -> None:
        result = self.apply(
            validate.create_job(api_pb2.CreateJobRequest(name=name, **kw), self.now)
        )
        assert result.ok, result.message

    def plan(
        self, free: dict[str, int], pending: PendingIndex | None, cursor: dict[str, int]
    ) -> planner.TickPlan:
        return planner.plan_tick(
            self.store,
            self.now,
            planner.PlanSettings(catchup_spacing_ms=0, retry_backoff_ms=50),
            completions=[],
            expiries=[],
            workers=[planner.FreeWorker(f"w-{q}", (q,), {}, n) for q, n in free.items() if n > 0],
            cursor=cursor,
            schedule_of=compile_schedule,
            pending=pending,
        )

    def commit(self, plan: planner.TickPlan) -> None:
        if plan.commands:
            result = self.apply(plan.batch())
            out = planner.after_commit(plan, result)
            self.granted += [
                command_pb2.GrantItem(run_id=g.firing.run_id, attempt=g.firing.fence)
                for g in out.granted
            ]

    def complete(self, rnd: random.Random, share: float) -> None:
        """Finish a share of the held leases, some failing (a failure is retried later)."""
        leases = self.store.leases()
        items = [
            command_pb2.CompleteItem(
                run_id=rid, fence=fence, success=rnd.random() < 0.7, worker_id=worker
            )
            for rid, (fence, worker) in sorted(leases.items())
            if rnd.random() < share
        ]
        if items:
            self.apply(
                command_pb2.Command(
                    complete_runs=command_pb2.CompleteRunsCmd(items=items, retry_backoff_ms=50)
                )
            )


def stored(store: Store, queue: str, horizon: int) -> list[tuple[Any, ...]]:
    """What LMDB holds, as the index should give it: PENDING runs of ``queue`` ready by
    ``horizon``, in grant order."""
    runs = [
        r for r in store.pending_in_queue(queue, horizon, 10**6) if r.state == R.RUN_STATE_PENDING
    ]
    runs.sort(key=lambda r: (-r.priority, r.not_before_ms, r.run_id))
    return [(r.run_id, r.attempt, r.priority, r.not_before_ms, dict(r.tags), r.job) for r in runs]


def past_deadline(store: Store, now: int) -> list[tuple[str, int]]:
    """What LMDB holds: (run id, attempt) of the PENDING runs past their dispatch deadline,
    earliest deadline first."""
    runs = [
        r
        for q in QUEUES
        for r in store.pending_in_queue(q, 2**62, 10**6)
        if r.state == R.RUN_STATE_PENDING
        and r.dispatch_deadline_ms
        and r.dispatch_deadline_ms <= now
    ]
    runs.sort(key=lambda r: (r.dispatch_deadline_ms, r.run_id))
    return [(r.run_id, r.attempt) for r in runs]


def indexed(index: PendingIndex, queue: str, horizon: int) -> list[tuple[Any, ...]]:
    return [
        (c.run_id, c.attempt, c.priority, c.ready_ms, dict(c.tags), c.job)
        for c in index.candidates(queue, horizon, 10**6)
    ]


def wait_ready(index: PendingIndex, thread: Any) -> None:
    thread.join(10)
    assert index.ready


actions = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(1, 12), st.integers(0, 400)),
        st.tuples(st.just("tick"), st.integers(0, 120), st.integers(0, 6), st.integers(0, 6)),
        st.tuples(st.just("complete"), st.floats(0, 1)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(actions, st.integers(0, 2**32 - 1))
def test_the_index_holds_what_lmdb_holds_and_plans_the_same_grants(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[Any, ...]], seed: int
) -> None:
    rnd = random.Random(seed)
    leader = Leader(str(tmp_path_factory.mktemp("store")))
    index = PendingIndex(leader.store)
    made = 0
    try:
        # some runs are PENDING before the index starts: they come from the snapshot
        leader.create(
            "early", queue="default", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0)
        )
        leader.commit(leader.plan({}, None, leader.cursor))
        wait_ready(index, index.start())
        for step in steps:
            if step[0] == "create":
                for _ in range(step[1]):
                    made += 1
                    leader.create(
                        f"j{made}",
                        queue=rnd.choice(QUEUES),
                        priority=rnd.choice((0, 0, 1, 5)),
                        tags={"zone": "a"} if rnd.random() < 0.2 else {},
                        schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=leader.now + step[2]),
                        dispatch_timeout_ms=rnd.choice((0, 0, 1000, 2000)),
                    )
            elif step[0] == "tick":
                leader.now += step[1]
                free = {"default": step[2], "q2": step[3]}
                # Both ways of reading the backlog plan the same tick (the backlog here is
                # under the LMDB read's window of 200 runs per queue).
                from_index = leader.plan(free, index, copy.copy(leader.cursor))
                from_lmdb = leader.plan(free, None, leader.cursor)
                assert from_index.batch() == from_lmdb.batch()
                leader.commit(from_lmdb)
            else:
                leader.complete(rnd, step[1])
            ready = {r[3] for q in QUEUES for r in stored(leader.store, q, 2**62)}
            horizons = {leader.now, leader.now + 100, 2**62} | ready | {t - 1 for t in ready}
            for q in QUEUES:
                for horizon in sorted(horizons):  # every ready time and just before it
                    assert indexed(index, q, horizon) == stored(leader.store, q, horizon)
            for now in (leader.now, leader.now + 1000, leader.now + 2000, 2**62):
                assert index.dispatch_expired(now, 10**6) == past_deadline(leader.store, now)
        assert len(index) == sum(len(stored(leader.store, q, 2**62)) for q in QUEUES)
    finally:
        index.stop()
        leader.store.close()


def test_entries_applied_while_the_index_builds_are_not_lost(tmp_path: Any) -> None:
    """The build reads a snapshot while the tick thread keeps applying: what the snapshot holds
    is not applied twice, what it misses comes from the feed."""
    leader = Leader(str(tmp_path))
    for i in range(5):
        leader.create(f"a{i}", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
    leader.commit(leader.plan({}, None, leader.cursor))  # 5 PENDING
    index = PendingIndex(leader.store)
    real = leader.store.pending_snapshot

    def snapshot_then_more(limit: int) -> tuple[int, list[types_pb2.Run]]:
        got = real(limit)
        # after the snapshot, before the build ends: two grants and five new runs
        leader.commit(leader.plan({"default": 2}, None, leader.cursor))
        for i in range(5):
            leader.create(f"b{i}", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
        leader.commit(leader.plan({}, None, leader.cursor))
        return got

    leader.store.pending_snapshot = snapshot_then_more  # type: ignore[method-assign]
    try:
        wait_ready(index, index.start())
        assert indexed(index, "default", T0) == stored(leader.store, "default", T0)
        assert len(index) == 8
    finally:
        index.stop()
        leader.store.close()


def test_a_build_that_ends_after_stop_is_dropped(tmp_path: Any) -> None:
    leader = Leader(str(tmp_path))
    leader.create("a", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
    leader.commit(leader.plan({}, None, leader.cursor))
    index = PendingIndex(leader.store)
    real = leader.store.pending_snapshot

    def stopped_meanwhile(limit: int) -> tuple[int, list[types_pb2.Run]]:
        index.stop()
        return real(limit)

    leader.store.pending_snapshot = stopped_meanwhile  # type: ignore[method-assign]
    try:
        t = index.start()
        t.join(10)
        assert not index.ready and len(index) == 0
        leader.create("b", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
        leader.commit(leader.plan({}, None, leader.cursor))
        assert len(index) == 0  # not watching any more
    finally:
        leader.store.close()


def test_past_its_bound_the_index_switches_off_and_the_planner_reads_lmdb(tmp_path: Any) -> None:
    leader = Leader(str(tmp_path))
    index = PendingIndex(leader.store, max_runs=10)
    try:
        wait_ready(index, index.start())
        for i in range(11):
            leader.create(f"a{i:02d}", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
        leader.commit(leader.plan({}, None, leader.cursor))
        index.drain()  # (the dispatcher drains every tick)
        assert not index.ready and index.overflowed and len(index) == 0
        # the backlog shrinks; a rebuild works again
        leader.commit(leader.plan({"default": 5}, None, leader.cursor))
        wait_ready(index, index.start())
        assert not index.overflowed
        assert indexed(index, "default", T0) == stored(leader.store, "default", T0)
    finally:
        index.stop()
        leader.store.close()


def test_a_high_priority_run_behind_a_long_backlog_goes_first(tmp_path: Any) -> None:
    """LMDB's pending index is ordered by ready time, so the planner reading it saw only the
    oldest 200 runs of a queue: a high-priority run behind them waited for the backlog. The
    in-memory index is in grant order. Negative control: the LMDB read grants an old run."""
    leader = Leader(str(tmp_path))
    for i in range(300):
        leader.create(f"low{i:03d}", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0 + i))
    leader.create(
        "urgent", priority=9, schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0 + 500)
    )
    leader.now = T0 + 1000
    leader.commit(leader.plan({}, None, leader.cursor))  # all 301 fire; no worker yet
    index = PendingIndex(leader.store)
    try:
        wait_ready(index, index.start())
        with_index = leader.plan({"default": 1}, index, copy.copy(leader.cursor))
        grants = [c.grant_leases for c in with_index.commands if c.HasField("grant_leases")]
        assert [g.run_id for g in grants[0].items] == [
            keys.run_id("urgent", _uid(leader, "urgent"), T0 + 500)
        ]
        from_lmdb = leader.plan({"default": 1}, None, copy.copy(leader.cursor))
        grants = [c.grant_leases for c in from_lmdb.commands if c.HasField("grant_leases")]
        assert grants[0].items[0].run_id.startswith("low")
    finally:
        index.stop()
        leader.store.close()


def _uid(leader: Leader, name: str) -> int:
    job = leader.store.get_job(name)
    assert job is not None
    return job.uid


def test_a_run_that_becomes_pending_out_of_order_is_still_found(tmp_path: Any) -> None:
    """A failed run waits for its back-off (ready later); a run fired after it is ready sooner:
    the index must not stop at the waiting one."""
    leader = Leader(str(tmp_path))
    index = PendingIndex(leader.store)
    try:
        wait_ready(index, index.start())
        leader.create("a", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
        leader.create("b", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0 + 30))
        leader.commit(leader.plan({"default": 1}, index, leader.cursor))  # a is leased
        leader.now = T0 + 10
        (rid, (fence, worker)) = next(iter(leader.store.leases().items()))
        leader.apply(
            command_pb2.Command(
                complete_runs=command_pb2.CompleteRunsCmd(
                    items=[
                        command_pb2.CompleteItem(
                            run_id=rid, fence=fence, success=False, worker_id=worker
                        )
                    ],
                    retry_backoff_ms=50,
                )
            )
        )  # a: PENDING again, ready at T0 + 60
        leader.now = T0 + 30
        leader.commit(leader.plan({}, index, leader.cursor))  # b fires: ready at T0 + 30
        assert [c.job for c in index.candidates("default", T0 + 40, 10)] == ["b"]
        assert [c.job for c in index.candidates("default", T0 + 60, 10)] == ["b", "a"]
        assert indexed(index, "default", T0 + 60) == stored(leader.store, "default", T0 + 60)
    finally:
        index.stop()
        leader.store.close()


def test_the_raft_thread_never_waits_for_a_build(tmp_path: Any) -> None:
    """A new leader's build parses the whole backlog; the Raft thread feeding entries meanwhile
    only appends to a list. Fails when the build parses under the index's lock."""
    leader = Leader(str(tmp_path))
    leader.create("a", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
    leader.commit(leader.plan({}, None, leader.cursor))
    index = PendingIndex(leader.store)
    parsing, release = threading.Event(), threading.Event()
    real_change = pending._Tables.change

    def slow_change(self: Any, added: Any, removed: Any) -> None:
        if not parsing.is_set():  # the build's load of the snapshot
            parsing.set()
            release.wait(10)
        real_change(self, added, removed)

    fed = threading.Event()
    try:
        pending._Tables.change = slow_change  # type: ignore[method-assign]
        t = index.start()
        assert parsing.wait(10)
        feeder = threading.Thread(target=lambda: (index._feed(99, [], ["x"]), fed.set()))
        feeder.start()
        assert fed.wait(5), "the feed waited for the build"
        release.set()
        t.join(10)
        assert index.ready
    finally:
        release.set()
        pending._Tables.change = real_change  # type: ignore[method-assign]
        index.stop()
        leader.store.close()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),  # add (or remove)
            st.integers(0, 40),  # run
            st.sampled_from(QUEUES),
            st.sampled_from((0, 1, 5)),
            st.integers(0, 60),  # ready time
        ),
        max_size=120,
    ),
    st.integers(0, 70),
    st.integers(1, 30),
)
def test_the_tables_give_runs_in_grant_order_whatever_the_arrival_order(
    ops: list[tuple[bool, int, str, int, int]], horizon: int, limit: int
) -> None:
    """Runs added in any order and removed at random: a read gives the ready ones, highest
    priority first, then oldest, then run id, as a sort of the whole set would."""
    tables = pending._Tables()
    model: dict[str, planner.Candidate] = {}
    for add, n, queue, priority, ready in ops:
        rid = f"r{n:02d}"
        if add:
            run = R.Run(
                run_id=rid,
                attempt=1,
                queue=queue,
                priority=priority,
                not_before_ms=ready,
                job="j",
                state=R.RUN_STATE_PENDING,
            )
            tables.change([(rid, run.SerializeToString())], ())
            model[rid] = pending.candidate_of(run)
        else:
            tables.change((), [rid])
            model.pop(rid, None)
        for q in QUEUES:
            for h, n in ((horizon, limit), (10**6, 10**6)):  # the given window, and everything
                want = sorted(
                    (c for c in model.values() if c.queue == q and c.ready_ms <= h),
                    key=lambda c: (-c.priority, c.ready_ms, c.run_id),
                )[:n]
                assert tables.candidates(q, h, n) == want
    assert len(tables.runs) == len(model)


def test_a_dispatch_deadline_behind_a_long_backlog_is_found(tmp_path: Any) -> None:
    """The leader looked for expired dispatch deadlines among the 5,000 runs that became ready
    first: a run whose deadline passed behind a longer backlog of runs without one waited for
    that backlog. The index finds it. Negative control: the LMDB scan does not."""
    leader = Leader(str(tmp_path))
    for i in range(5001):
        leader.create(f"old{i:04d}", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0))
    leader.create(
        "strict",
        schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0 + 100),
        dispatch_timeout_ms=1000,
    )
    leader.now = T0 + 200
    for _ in range(12):  # 500 slots per tick: every job fires; no worker takes any
        leader.commit(leader.plan({}, None, leader.cursor))
    index = PendingIndex(leader.store)
    try:
        wait_ready(index, index.start())
        assert len(index) == 5002
        now = T0 + 100 + 1000
        strict = keys.run_id("strict", _uid(leader, "strict"), T0 + 100)
        assert index.dispatch_expired(now - 1, 1000) == []
        assert index.dispatch_expired(now, 1000) == [(strict, 1)]
        lmdb_scan = [
            r.run_id
            for r in leader.store.pending_until(now, limit=5000)
            if r.dispatch_deadline_ms and r.dispatch_deadline_ms <= now
        ]
        assert lmdb_scan == []  # (the dispatcher's read before the index)
    finally:
        index.stop()
        leader.store.close()
