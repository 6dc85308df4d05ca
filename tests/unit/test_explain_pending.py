"""Why a run is stuck PENDING (schedd.sched.explain.pending_cause), in process: each cause, and
the property that it agrees with the grant planner: no cause exactly when the planner would
grant the run to one of these workers now."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from schedd.pb import types_pb2
from schedd.sched.explain import WorkerView, pending_cause
from schedd.server.planner import FreeWorker, PlanSettings, plan_grants

NOW = 1_700_000_000_000


def run(**kw: object) -> types_pb2.Run:
    base: dict[str, object] = dict(
        run_id="team/a:1:1", job="team/a", queue="team/q", attempt=1, not_before_ms=NOW - 1
    )
    base.update(kw)
    return types_pb2.Run(**base)  # type: ignore[arg-type]


def w(wid: str = "w1", queues: tuple[str, ...] = ("team/q",), **kw: object) -> WorkerView:
    return WorkerView(wid, frozenset(queues), **{"concurrency": 1, **kw})  # type: ignore[arg-type]


def test_each_cause() -> None:
    cause, text = pending_cause(run(), [], NOW)
    assert cause == "no_worker" and "queue 'q' of namespace 'team'" in text
    assert "schedctl worker run --queue q" in text
    cause, text = pending_cause(run(), [w(queues=("q",))], NOW)  # default's q is not team/q
    assert cause == "no_worker"
    cause, text = pending_cause(run(), [w(draining=True)], NOW)
    assert cause == "no_worker" and "stopping" in text
    cause, text = pending_cause(run(tags={"gpu": "a100"}), [w(tags={"gpu": "t4"})], NOW)
    assert cause == "tags" and "gpu=a100" in text and "w1" in text
    cause, text = pending_cause(run(), [w(jobs=frozenset({"team/b"}))], NOW)
    assert cause == "no_handler" and "job 'a'" in text
    cause, text = pending_cause(run(), [w(leases=1), w("w2", concurrency=2, leases=2)], NOW)
    assert cause == "busy" and "w1, w2" in text
    cause, text = pending_cause(run(attempt=3, not_before_ms=NOW + 5000), [w()], NOW)
    assert cause == "backoff" and "retry backoff (attempt 3)" in text
    cause, text = pending_cause(run(), [w(jobs=frozenset({"team/a"}))], NOW)
    assert cause == "" and "should start" in text


QUEUES = ("team/q", "team/r")
TAGS = ({}, {"gpu": "a100"}, {"zone": "a"})
JOBS = (None, frozenset({"team/a"}), frozenset({"team/b"}))

views = st.lists(
    st.builds(
        lambda i, qs, t, js, conc, held: WorkerView(
            f"w{i}", frozenset(qs), conc, min(held, conc), t, js
        ),
        st.integers(0, 50),
        st.sets(st.sampled_from(QUEUES), min_size=1),
        st.sampled_from(TAGS),
        st.sampled_from(JOBS),
        st.integers(1, 3),
        st.integers(0, 3),
    ),
    max_size=4,
    unique_by=lambda v: v.worker_id,
)


class OneRun:
    def __init__(self, r: types_pb2.Run) -> None:
        self.r = r

    def due_until(self, now_ms: int, limit: int) -> list[tuple[int, str]]:
        return []

    def get_job(self, name: str) -> types_pb2.Job | None:
        return None

    def get_jobs(self, names: list[str]) -> list[types_pb2.Job | None]:
        return [None for _ in names]

    def pending_in_queue(self, queue: str, now_ms: int, limit: int) -> list[types_pb2.Run]:
        ok = self.r.queue == queue and self.r.not_before_ms <= now_ms
        return [self.r] if ok else []


@settings(max_examples=300, deadline=None)
@given(views, st.sampled_from(TAGS), st.sampled_from(QUEUES))
def test_no_cause_exactly_when_the_planner_grants_it(
    workers: list[WorkerView], tags: dict[str, str], queue: str
) -> None:
    r = run(tags=tags, queue=queue)
    free = [
        FreeWorker(v.worker_id, tuple(sorted(v.queues)), v.tags, v.concurrency - v.leases, v.jobs)
        for v in workers
    ]
    granted = plan_grants(OneRun(r), NOW, [], free, defaultdict(int), PlanSettings())
    cause, _ = pending_cause(r, workers, NOW)
    assert (cause == "") == bool(granted), (cause, granted)
