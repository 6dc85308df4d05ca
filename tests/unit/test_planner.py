"""The leader's grant placement (schedd.server.planner.plan_grants): properties against a
brute-force reference of the documented rule, in process.

The rule: due PENDING runs, highest priority first, then oldest not-before (ties: run id); each goes to the
next worker, round-robin per queue, that serves its queue, carries all of its tags, runs its
job (announced no job list, or one naming it) and has a free slot; at most ``min(max_grants_per_tick, free slots)`` grants.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schedd.pb import types_pb2
from schedd.server.planner import (
    Candidate,
    FreeWorker,
    PlanSettings,
    carries,
    plan_grants,
    plan_tick,
    runs_job,
)

QUEUES = ("q1", "q2", "q3")
TAGS = ({}, {"gpu": "yes"}, {"zone": "a"}, {"gpu": "yes", "zone": "a"})
JOBS = ("ns/a", "ns/b", "c")


@dataclass
class View:
    """Pending runs by queue; nothing due to fire."""

    runs: list[types_pb2.Run]

    def due_until(self, now_ms: int, limit: int) -> list[tuple[int, str]]:
        return []

    def get_job(self, name: str) -> types_pb2.Job | None:
        return None

    def get_jobs(self, names: list[str]) -> list[types_pb2.Job | None]:
        return [None for _ in names]

    def pending_in_queue(self, queue: str, now_ms: int, limit: int) -> list[types_pb2.Run]:
        mine = sorted(
            (r for r in self.runs if r.queue == queue and r.not_before_ms <= now_ms),
            key=lambda r: (r.not_before_ms, r.run_id),
        )
        return mine[:limit]


workers_st = st.lists(
    st.builds(
        lambda i, qs, t, f, js: FreeWorker(f"w{i}", tuple(sorted(qs)), t, f, js),
        st.integers(0, 99),
        st.sets(st.sampled_from(QUEUES), min_size=1),
        st.sampled_from(TAGS),
        st.integers(0, 4),
        st.none() | st.frozensets(st.sampled_from(JOBS)),
    ),
    min_size=0,
    max_size=5,
    unique_by=lambda w: w.worker_id,
)
runs_st = st.lists(
    st.builds(
        lambda i, q, p, t, nb, j: types_pb2.Run(
            run_id=f"r{i}", attempt=1, queue=q, priority=p, tags=t, not_before_ms=nb, job=j
        ),
        st.integers(0, 999),
        st.sampled_from(QUEUES),
        st.integers(0, 3),
        st.sampled_from(TAGS),
        st.integers(0, 100),
        st.sampled_from(JOBS),
    ),
    max_size=30,
    unique_by=lambda r: r.run_id,
)


def reference(
    runs: list[types_pb2.Run],
    workers: list[FreeWorker],
    now: int,
    max_grants: int,
    cursor: dict[str, int],
) -> list[tuple[str, str]]:
    """The rule, spelled out one run at a time."""
    free = {w.worker_id: w.free for w in workers}
    want = min(max_grants, sum(max(0, f) for f in free.values()))
    served = {q for w in workers for q in w.queues}
    due = sorted(
        (r for r in runs if r.queue in served and r.not_before_ms <= now),
        key=lambda r: (r.not_before_ms, r.run_id),
    )
    due.sort(key=lambda r: -r.priority)
    pools = {q: [w for w in workers if q in w.queues] for q in served}
    out: list[tuple[str, str]] = []
    for r in due:
        if len(out) >= want:
            break
        pool = pools[r.queue]
        for _ in range(len(pool)):
            w = pool[cursor[r.queue] % len(pool)]
            cursor[r.queue] += 1
            if (
                free[w.worker_id] > 0
                and all(w.tags.get(k) == v for k, v in r.tags.items())
                and (w.jobs is None or r.job in w.jobs)
            ):
                free[w.worker_id] -= 1
                out.append((r.run_id, w.worker_id))
                break
    return out


@settings(max_examples=300, deadline=None)
@example(
    [FreeWorker("w0", ("q1", "q2"), {}, 1)],  # a tie across queues: the run id decides
    [
        types_pb2.Run(run_id="r0", attempt=1, queue="q2"),
        types_pb2.Run(run_id="r1", attempt=1, queue="q1"),
    ],
    0,
    1,
    random.Random(0),
)
@given(workers_st, runs_st, st.integers(0, 100), st.integers(1, 10), st.randoms())
def test_grants_follow_the_rule_exactly(
    workers: list[FreeWorker],
    runs: list[types_pb2.Run],
    now: int,
    max_grants: int,
    rnd: random.Random,
) -> None:
    """Some due runs are stored, others are fired by this very tick (handed in as candidates,
    not yet in the view): the rule is the same for both."""
    s = PlanSettings(max_grants_per_tick=max_grants)
    fired = [r for r in runs if r.not_before_ms <= now and rnd.random() < 0.4]
    stored = [r for r in runs if r not in fired]
    new_runs = [
        Candidate(r.run_id, r.attempt, r.queue, r.priority, dict(r.tags), r.job, r.not_before_ms)
        for r in fired
    ]
    got = plan_grants(View(stored), now, new_runs, workers, defaultdict(int), s)
    assert [(g.run_id, g.worker_id) for g in got] == reference(
        runs, workers, now, max_grants, defaultdict(int)
    )


@settings(max_examples=300, deadline=None)
@given(workers_st, runs_st, st.integers(0, 100), st.integers(1, 10))
def test_grants_are_valid_and_leave_no_placeable_run_behind(
    workers: list[FreeWorker], runs: list[types_pb2.Run], now: int, max_grants: int
) -> None:
    got = plan_grants(
        View(runs), now, [], workers, defaultdict(int), PlanSettings(max_grants_per_tick=max_grants)
    )
    by_id = {w.worker_id: w for w in workers}
    run_of = {r.run_id: r for r in runs}
    used = Counter(g.worker_id for g in got)
    assert len({g.run_id for g in got}) == len(got)  # a run once at most
    assert len(got) <= max_grants
    for g in got:
        w, r = by_id[g.worker_id], run_of[g.run_id]
        assert r.queue in w.queues and carries(w.tags, r.tags) and r.not_before_ms <= now
        assert runs_job(w.jobs, r.job)
    for wid, n in used.items():
        assert n <= by_id[wid].free
    if len(got) < max_grants:  # greedy: a run left behind has no eligible worker with room
        granted = {g.run_id for g in got}
        for r in runs:
            if r.run_id in granted or r.not_before_ms > now:
                continue
            for w in workers:
                if r.queue in w.queues and carries(w.tags, r.tags) and runs_job(w.jobs, r.job):
                    assert used[w.worker_id] >= w.free, (r, w)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.integers(0, 60))
def test_round_robin_spreads_a_queue_evenly(n_workers: int, n_runs: int) -> None:
    workers = [FreeWorker(f"w{i}", ("q1",), {}, 100) for i in range(n_workers)]
    runs = [
        types_pb2.Run(run_id=f"r{i:03d}", attempt=1, queue="q1", not_before_ms=i)
        for i in range(n_runs)
    ]
    got = plan_grants(View(runs), 1000, [], workers, defaultdict(int), PlanSettings())
    counts = Counter(g.worker_id for g in got)
    assert len(got) == n_runs
    assert (
        not counts or max(counts.values()) - min(counts.get(w.worker_id, 0) for w in workers) <= 1
    )


def test_the_cursor_carries_over_ticks_so_a_retry_goes_elsewhere() -> None:
    workers = [FreeWorker("w0", ("q1",), {}, 1), FreeWorker("w1", ("q1",), {}, 1)]
    cursor: dict[str, int] = defaultdict(int)
    run = types_pb2.Run(run_id="r", attempt=1, queue="q1")
    first = plan_grants(View([run]), 0, [], workers, cursor, PlanSettings())
    run.attempt = 2
    second = plan_grants(View([run]), 0, [], workers, cursor, PlanSettings())
    assert first[0].worker_id != second[0].worker_id


def test_the_reference_can_tell_a_wrong_order() -> None:
    """Negative control: the reference is sensitive to priority."""
    workers = [FreeWorker("w0", ("q1",), {}, 1)]
    runs = [
        types_pb2.Run(run_id="old", attempt=1, queue="q1", not_before_ms=0, priority=0),
        types_pb2.Run(run_id="urgent", attempt=1, queue="q1", not_before_ms=5, priority=3),
    ]
    assert reference(runs, workers, 10, 10, defaultdict(int)) == [("urgent", "w0")]
    assert reference([runs[0]], workers, 10, 10, defaultdict(int)) != [("urgent", "w0")]


def test_plan_tick_orders_the_batch_for_apply() -> None:
    """Completions and expiries first (they free slots), then FireDue, then grants, then chores."""
    from schedd.pb import command_pb2

    workers = [FreeWorker("w0", ("q1",), {}, 5)]
    plan = plan_tick(
        View([types_pb2.Run(run_id="r", attempt=1, queue="q1")]),
        10,
        PlanSettings(),
        completions=[command_pb2.CompleteItem(run_id="x", fence=1, success=True)],
        expiries=[command_pb2.ExpireItem(run_id="y", fence=2, reason="lease expired")],
        workers=workers,
        cursor=defaultdict(int),
        schedule_of=lambda s: None,  # type: ignore[arg-type,return-value]
        chores=[command_pb2.Command(prune_runs=command_pb2.PruneRunsCmd(run_ids=["z"]))],
    )
    assert [c.WhichOneof("body") for c in plan.commands] == [
        "complete_runs",
        "expire_leases",
        "grant_leases",
        "prune_runs",
    ]
    assert (plan.completions, plan.grants) == (1, 1)


def test_a_run_goes_only_to_the_worker_that_runs_its_job() -> None:
    """Two workers of one queue, each with a handler for a different job: each job's runs go to
    its own worker, whatever the round-robin cursor says, and a job nobody runs stays pending."""
    workers = [
        FreeWorker("w-report", ("reports",), {}, 5, frozenset({"nightly-report"})),
        FreeWorker("w-daily", ("reports",), {}, 5, frozenset({"daily-report"})),
    ]
    runs = [
        types_pb2.Run(run_id=f"{j}:{i}", attempt=1, queue="reports", job=j, not_before_ms=i)
        for i in range(3)
        for j in ("nightly-report", "daily-report", "orphan")
    ]
    got = plan_grants(View(runs), 10, [], workers, defaultdict(int), PlanSettings())
    assert sorted((g.run_id.split(":")[0], g.worker_id) for g in got) == sorted(
        [("nightly-report", "w-report")] * 3 + [("daily-report", "w-daily")] * 3
    )


def test_an_older_pending_run_goes_before_a_run_fired_this_tick() -> None:
    """Under overload the backlog must drain oldest first: a run fired in this tick waits
    behind an older PENDING run of the same priority (it once went first, so at a sustained
    rate above capacity the backlog never got a slot)."""
    workers = [FreeWorker("w0", ("q1",), {}, 1)]
    backlog = types_pb2.Run(run_id="old", attempt=1, queue="q1", not_before_ms=1_000, job="c")
    fired_now = Candidate("new", 1, "q1", 0, {}, "c", ready_ms=5_000)
    got = plan_grants(
        View([backlog]), 5_000, [fired_now], workers, defaultdict(int), PlanSettings()
    )
    assert [g.run_id for g in got] == ["old"]
