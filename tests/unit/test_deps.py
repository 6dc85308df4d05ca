"""Job dependencies (depends_on) in apply, by example: the rules of docs/dependencies.md on a
``MemoryState`` replica, driven through the leader's own planner with a fake clock. The
property test against a brute-force reference is tests/unit/test_deps_model.py."""

from __future__ import annotations

from typing import Any

import pytest

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched.schedule import compile_schedule
from schedd.server import planner, validate
from schedd.state import keys
from schedd.state.apply import Result, features
from tests.unit._replica import Replica

T0 = 1_700_000_040_000  # a whole minute (UTC)
R = types_pb2


class Cluster(Replica):
    """One replica and its log, a fake clock, and the leader's planner."""

    def __init__(self) -> None:
        super().__init__(T0)
        self.cursor: dict[str, int] = {}

    def create(self, name: str, every_s: int = 0, **kw: Any) -> Result:
        req = api_pb2.CreateJobRequest(name=name, max_attempts=kw.pop("max_attempts", 1), **kw)
        if every_s:
            req.schedule.kind = R.SCHEDULE_KIND_INTERVAL
            req.schedule.every_ms = every_s * 1000
        return self.apply(validate.create_job(req, self.now))

    def tick(self, to_ms: int | None = None) -> None:
        """Advance the clock and fire what is due (no workers: grants are explicit)."""
        if to_ms is not None:
            self.now = to_ms
        plan = planner.plan_tick(
            self.state,
            self.now,
            planner.PlanSettings(catchup_spacing_ms=0),
            completions=[],
            expiries=[],
            workers=[],
            cursor=self.cursor,  # type: ignore[arg-type]
            schedule_of=compile_schedule,
            chores=planner.plan_dependency_timeouts(self.state, self.now, 100),
        )
        if plan.commands:
            assert self.apply(plan.batch()).ok

    def finish(self, rid: str, success: bool) -> None:
        """Lease ``rid`` and complete it (a failure is final with max_attempts 1)."""
        run = self.state.get("runs", rid.encode())
        assert run is not None, rid
        r = types_pb2.Run.FromString(run)
        assert r.state == R.RUN_STATE_PENDING, (rid, r)
        g = self.apply(
            command_pb2.Command(
                grant_leases=command_pb2.GrantLeasesCmd(
                    items=[command_pb2.GrantItem(run_id=rid, attempt=r.attempt, worker_id="w")]
                )
            )
        )
        fence = g.granted[0].run.fence
        done = self.apply(
            command_pb2.Command(
                complete_runs=command_pb2.CompleteRunsCmd(
                    items=[
                        command_pb2.CompleteItem(
                            run_id=rid, fence=fence, success=success, worker_id="w"
                        )
                    ],
                    dead_letter=True,
                )
            )
        )
        assert done.items[0][0] == "OK", done

    def retry(self, rid: str) -> Result:
        return self.apply(command_pb2.Command(retry_run=command_pb2.RetryRunCmd(run_id=rid)))


def slot_run(c: Cluster, job: str, slot: int) -> types_pb2.Run:
    j = c.job(job)
    raw = c.state.get("runs", keys.run_id(job, j.uid, slot).encode())
    assert raw is not None, (job, slot)
    return types_pb2.Run.FromString(raw)


def test_a_scheduled_job_waits_for_both_upstreams_of_its_slot_then_runs_once() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10)
    assert c.create("c", 10, depends_on=["a", "b"]).ok
    s = T0 + 10_000
    c.tick(s)
    w = slot_run(c, "c", s)
    assert w.state == R.RUN_STATE_WAITING
    assert sorted(w.waiting_for) == ["a", "b"]
    assert sorted(w.upstream_runs) == sorted(
        [keys.run_id("a", c.job("a").uid, s), keys.run_id("b", c.job("b").uid, s)]
    )
    c.finish(slot_run(c, "a", s).run_id, True)
    assert list(slot_run(c, "c", s).waiting_for) == ["b"]
    c.finish(slot_run(c, "b", s).run_id, True)
    assert slot_run(c, "c", s).state == R.RUN_STATE_PENDING
    assert not c.state.data["dep_wait"] and not c.state.data["dep_waiting"]


def test_a_dead_upstream_skips_all_succeeded_and_its_replay_reopens_it() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("c", 10, depends_on=["a"])
    c.create("d", 10, depends_on=["c"])
    s = T0 + 10_000
    c.tick(s)
    a = slot_run(c, "a", s)
    c.finish(a.run_id, False)
    cr = slot_run(c, "c", s)
    assert cr.state == R.RUN_STATE_SKIPPED
    assert cr.skip_reason == R.SKIP_REASON_UPSTREAM_FAILED and cr.caused_by == a.run_id
    assert a.run_id in cr.note
    dr = slot_run(c, "d", s)  # the cascade: d's upstream record (c's) was skipped
    assert dr.state == R.RUN_STATE_SKIPPED and dr.caused_by == cr.run_id
    assert c.retry(a.run_id).ok
    assert slot_run(c, "c", s).state == R.RUN_STATE_WAITING
    assert slot_run(c, "d", s).state == R.RUN_STATE_WAITING
    c.finish(a.run_id, True)
    assert slot_run(c, "c", s).state == R.RUN_STATE_PENDING
    c.finish(slot_run(c, "c", s).run_id, True)
    assert slot_run(c, "d", s).state == R.RUN_STATE_PENDING


def two_upstreams(level: int) -> tuple[Cluster, int, types_pb2.Run, types_pb2.Run]:
    """At feature ``level``: c depends on a and b (all_succeeded), all three fired at slot s;
    returns the cluster, s, and a's and b's runs for it."""
    c = Cluster()
    c.apply(command_pb2.Command(set_feature_level=command_pb2.SetFeatureLevelCmd(level=level)))
    c.create("a", 10)
    c.create("b", 10)
    c.create("c", 10, depends_on=["a", "b"])
    s = T0 + 10_000
    c.tick(s)
    return c, s, slot_run(c, "a", s), slot_run(c, "b", s)


@pytest.mark.parametrize("level", [features.FIRE_AND_LEASE, features.REOPEN_EVERY_FAILED])
def test_a_run_two_dead_upstreams_skipped_reopens_once_both_are_replayed(level: int) -> None:
    """c (all_succeeded on a and b) is skipped when a's run dies; b's run dies after that. The
    replay of a does not re-open c (b still fails it); the replay of b must. Before feature
    level 7 the first replay left no trace of b, and c stayed skipped with both upstreams
    running again (found by the dependency model)."""
    c, s, a, b = two_upstreams(level)
    c.finish(a.run_id, False)
    assert slot_run(c, "c", s).state == R.RUN_STATE_SKIPPED
    c.finish(b.run_id, False)
    assert c.retry(a.run_id).ok
    cr = slot_run(c, "c", s)
    assert cr.state == R.RUN_STATE_SKIPPED  # b's run is still dead
    assert c.retry(b.run_id).ok
    cr = slot_run(c, "c", s)
    if level < features.REOPEN_EVERY_FAILED:  # the gate: as a replica of the older version
        assert cr.state == R.RUN_STATE_SKIPPED and cr.caused_by == a.run_id
        return
    assert cr.state == R.RUN_STATE_WAITING and sorted(cr.waiting_for) == ["a", "b"]
    c.finish(a.run_id, True)
    c.finish(b.run_id, True)
    assert slot_run(c, "c", s).state == R.RUN_STATE_PENDING


def test_a_run_still_skipped_after_a_replay_names_the_upstream_that_still_fails_it() -> None:
    c, s, a, b = two_upstreams(features.REOPEN_EVERY_FAILED)
    c.finish(a.run_id, False)
    c.finish(b.run_id, False)
    assert slot_run(c, "c", s).caused_by == a.run_id
    assert c.retry(a.run_id).ok
    cr = slot_run(c, "c", s)
    assert cr.state == R.RUN_STATE_SKIPPED and cr.caused_by == b.run_id and b.run_id in cr.note


def test_all_done_runs_after_a_dead_upstream_and_any_succeeded_after_one_success() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10)
    c.create("done", 10, depends_on=["a", "b"], trigger_rule=R.TRIGGER_RULE_ALL_DONE)
    c.create("any", 10, depends_on=["a", "b"], trigger_rule=R.TRIGGER_RULE_ANY_SUCCEEDED)
    s = T0 + 10_000
    c.tick(s)
    c.finish(slot_run(c, "a", s).run_id, False)
    assert slot_run(c, "done", s).state == R.RUN_STATE_WAITING
    assert slot_run(c, "any", s).state == R.RUN_STATE_WAITING
    c.finish(slot_run(c, "b", s).run_id, True)
    assert slot_run(c, "done", s).state == R.RUN_STATE_PENDING
    assert slot_run(c, "any", s).state == R.RUN_STATE_PENDING


def test_the_latest_upstream_slot_at_or_before_the_downstream_slot_is_matched() -> None:
    c = Cluster()
    c.create("hourly", 60)  # every minute here: slots :00
    c.create("fast", 20, depends_on=["hourly"])  # slots :00 :20 :40
    c.tick(T0 + 60_000)  # hourly's slot and fast's slot T0+60s
    c.tick(T0 + 80_000)
    w = slot_run(c, "fast", T0 + 80_000)
    assert list(w.upstream_runs) == [keys.run_id("hourly", c.job("hourly").uid, T0 + 60_000)]


def test_an_unscheduled_job_runs_each_time_every_upstream_has_a_new_success() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10)
    assert c.create("c", depends_on=["a", "b"]).ok
    assert c.job("c").state == R.JOB_STATE_ACTIVE and not c.job("c").next_due_ms
    s = T0 + 10_000
    c.tick(s)
    c.finish(slot_run(c, "a", s).run_id, True)
    (g,) = c.runs("c")
    assert g.state == R.RUN_STATE_WAITING and list(g.waiting_for) == ["b"]
    assert g.origin == R.RUN_ORIGIN_DEPENDENCY
    c.tick(s + 10_000)
    c.finish(slot_run(c, "a", s + 10_000).run_id, True)  # a newer success of a replaces the old
    assert list(c.runs("c")[0].upstream_runs) == [slot_run(c, "a", s + 10_000).run_id]
    c.finish(slot_run(c, "b", s).run_id, True)
    (g,) = c.runs("c")
    assert g.state == R.RUN_STATE_PENDING
    c.finish(slot_run(c, "b", s + 10_000).run_id, True)  # b again, but no new a yet
    assert [r.state for r in c.runs("c")] == [R.RUN_STATE_PENDING, R.RUN_STATE_WAITING]


def test_a_waiting_run_times_out_into_a_skip_record() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("c", 10, depends_on=["a"], dependency_timeout_ms=5000)
    s = T0 + 10_000
    c.tick(s)
    c.tick(s + 4000)
    assert slot_run(c, "c", s).state == R.RUN_STATE_WAITING
    c.tick(s + 5000)
    r = slot_run(c, "c", s)
    assert r.state == R.RUN_STATE_SKIPPED and r.skip_reason == R.SKIP_REASON_DEPENDENCY_TIMEOUT
    assert not c.state.data["dep_deadline"]


def test_cycles_through_dependencies_and_chains_are_refused_with_the_path() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10, depends_on=["a"])
    c.create("c", 10, on_success="a")
    r = c.apply(
        validate.update_job(
            api_pb2.UpdateJobRequest(
                job=api_pb2.CreateJobRequest(
                    name="a",
                    schedule=types_pb2.Schedule(kind=R.SCHEDULE_KIND_INTERVAL, every_ms=10_000),
                    depends_on=["b"],
                )
            ),
            c.now,
        )
    )
    assert r.code == "INVALID_ARGUMENT" and r.message == (
        "depends_on: depending on 'b' makes a cycle: b -> a -> b"
    ), r
    r = c.apply(
        validate.update_job(
            api_pb2.UpdateJobRequest(
                job=api_pb2.CreateJobRequest(
                    name="b",
                    schedule=types_pb2.Schedule(kind=R.SCHEDULE_KIND_INTERVAL, every_ms=10_000),
                    depends_on=["a"],
                    on_failure="c",
                )
            ),
            c.now,
        )
    )
    assert r.code == "INVALID_ARGUMENT" and "b -> c -> a -> b" in r.message, r


def test_deleting_an_upstream_is_refused_unless_forced() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10)
    c.create("c", 10, depends_on=["a", "b"])
    s = T0 + 10_000
    c.tick(s)
    r = c.apply(command_pb2.Command(delete_job=command_pb2.DeleteJobCmd(name="a")))
    assert r.code == "FAILED_PRECONDITION" and "c" in r.message
    r = c.apply(command_pb2.Command(delete_job=command_pb2.DeleteJobCmd(name="a", force=True)))
    assert r.ok and r.items == (("UNLINKED", "c"),), r
    assert list(c.job("c").depends_on) == ["b"]
    w = slot_run(c, "c", s)
    assert w.state == R.RUN_STATE_WAITING and list(w.waiting_for) == ["b"]
    c.finish(slot_run(c, "b", s).run_id, True)
    assert slot_run(c, "c", s).state == R.RUN_STATE_PENDING
    r = c.apply(command_pb2.Command(delete_job=command_pb2.DeleteJobCmd(name="c")))
    assert r.ok
    assert c.job("b").dependents == []


def test_requests_are_checked_field_by_field() -> None:
    import pytest

    from schedd.errors import InvalidArgument

    def create(**kw: Any) -> None:
        validate.create_job(api_pb2.CreateJobRequest(name="d", **kw), T0)

    every = types_pb2.Schedule(kind=R.SCHEDULE_KIND_INTERVAL, every_ms=10_000)
    for kw, field in (
        ({"depends_on": ["d"]}, "depends_on[0]"),
        ({"depends_on": ["a", "a"]}, "depends_on[1]"),
        ({"depends_on": ["bad name"]}, "depends_on[0]"),
        ({"schedule": every, "trigger_rule": R.TRIGGER_RULE_ALL_DONE}, "trigger_rule"),
        ({"schedule": every, "dependency_timeout_ms": 5000}, "dependency_timeout_ms"),
        ({"depends_on": ["a"], "dependency_timeout_ms": 10}, "dependency_timeout_ms"),
        ({"depends_on": ["a"], "trigger_rule": 9}, "trigger_rule"),  # type: ignore[dict-item]
        ({}, "schedule.kind"),  # no schedule without depends_on
    ):
        with pytest.raises(InvalidArgument) as e:
            create(**kw)
        assert e.value.field == field, (kw, e.value)
    c = Cluster()
    assert c.create("a", 10).ok
    assert c.create("d", 10, depends_on=["nope"]).message == "depends_on: no job named 'nope'"
    assert c.create("u2", depends_on=["a"]).ok
    r = c.create("d", 10, depends_on=["u2"])
    assert r.code == "INVALID_ARGUMENT" and "has no schedule" in r.message, r


def test_a_job_without_a_schedule_pauses_resumes_and_records_paused_gatherings() -> None:
    from schedd.server import commands

    c = Cluster()
    c.create("a", 10)
    c.create("g", depends_on=["a"])
    assert c.apply(command_pb2.Command(pause_job=command_pb2.PauseJobCmd(name="g"))).ok
    s = T0 + 10_000
    c.tick(s)
    c.finish(slot_run(c, "a", s).run_id, True)
    (g,) = c.runs("g")
    assert g.state == R.RUN_STATE_SKIPPED and g.skip_reason == R.SKIP_REASON_PAUSED
    body = commands.plan_resume(c.job("g"), c.now, skip_missed=True)
    r = c.apply(command_pb2.Command(resume_job=body))
    assert r.ok and r.job is not None and r.job.state == R.JOB_STATE_ACTIVE, r


def test_a_trigger_runs_at_once_without_waiting_for_upstreams() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("d", 10, depends_on=["a"])
    r = c.apply(command_pb2.Command(trigger_job=command_pb2.TriggerJobCmd(name="d")))
    assert r.ok and r.run is not None and r.run.state == R.RUN_STATE_PENDING


def test_a_skip_range_of_the_upstream_decides_a_waiting_run() -> None:
    """a paused upstream: its missed slots become one paused skip record on resume (skip
    missed), which decides the downstream slot waiting for one of them."""
    from schedd.server import commands

    c = Cluster()
    c.create("a", 10)
    c.create("d", 10, depends_on=["a"], trigger_rule=R.TRIGGER_RULE_ALL_DONE)
    assert c.apply(command_pb2.Command(pause_job=command_pb2.PauseJobCmd(name="a"))).ok
    s = T0 + 10_000
    c.tick(s)
    c.tick(s + 10_000)
    assert slot_run(c, "d", s + 10_000).state == R.RUN_STATE_WAITING
    c.now = s + 15_000
    body = commands.plan_resume(c.job("a"), c.now, skip_missed=True)
    assert c.apply(command_pb2.Command(resume_job=body)).ok
    for slot in (s, s + 10_000):
        w = slot_run(c, "d", slot)
        assert w.state == R.RUN_STATE_PENDING, w  # all_done: the skip record is an outcome
        (rid,) = w.upstream_runs
        assert c.state.get("runs", rid.encode()) is not None


def test_job_files_carry_dependencies_and_round_trip() -> None:
    from schedctl import spec

    name, sp = spec.from_entry(
        {"name": "r", "after": ["a", "b"], "trigger_rule": "all_done", "dependency_timeout": "2h"},
        "jobs.toml: job 1",
    )
    assert sp == {
        "depends_on": ["a", "b"],
        "trigger_rule": "all_done",
        "dependency_timeout_ms": 7_200_000,
    }
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10)
    r = c.create(
        "r",
        depends_on=["a", "b"],
        trigger_rule=R.TRIGGER_RULE_ALL_DONE,
        dependency_timeout_ms=7_200_000,
    )
    assert r.job is not None
    stored = spec.job_to_spec(r.job)
    assert spec.diff(sp, stored) == []
    entry = spec.to_entry(name, stored)
    assert entry["depends_on"] == ["a", "b"] and entry["dependency_timeout"] == "2h"
    again = spec.from_entry(entry, "x")[1]
    assert {k: again[k] for k in sp} == sp


def test_retention_keeps_an_upstream_run_a_downstream_run_still_waits_for() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10)
    c.create("d", 10, depends_on=["a", "b"])
    s = T0 + 10_000
    c.tick(s)
    a = slot_run(c, "a", s)
    c.finish(a.run_id, True)
    prune = command_pb2.Command(prune_runs=command_pb2.PruneRunsCmd(run_ids=[a.run_id]))
    assert c.apply(prune).count == 0  # d's run still needs a's outcome
    c.finish(slot_run(c, "b", s).run_id, True)
    assert slot_run(c, "d", s).state == R.RUN_STATE_PENDING
    assert c.apply(prune).count == 1


def test_time_zones_match_as_utc_instants() -> None:
    """An upstream at 02:00 Europe/Berlin and a downstream at 21:00 America/New_York (03:00 in
    Berlin, winter): each downstream slot matches the upstream slot of the same Berlin night,
    and in summer too (both zones shift by an hour); the planner computes it."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    c = Cluster()
    c.now = int(datetime(2026, 1, 10, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    c.create(
        "extract",
        schedule=types_pb2.Schedule(
            kind=R.SCHEDULE_KIND_CRON, cron="0 2 * * *", timezone="Europe/Berlin"
        ),
    )
    c.create(
        "report",
        depends_on=["extract"],
        schedule=types_pb2.Schedule(
            kind=R.SCHEDULE_KIND_CRON, cron="0 21 * * *", timezone="America/New_York"
        ),
    )
    job = c.job("report")
    for day in (datetime(2026, 1, 12), datetime(2026, 7, 12)):
        ny = int(day.replace(hour=21, tzinfo=ZoneInfo("America/New_York")).timestamp() * 1000)
        (m,) = planner.match_upstreams(c.state, job, [ny], compile_schedule)
        berlin = datetime.fromtimestamp(m.slots_ms[0] / 1000, ZoneInfo("Europe/Berlin"))
        assert (berlin.hour, berlin.minute) == (2, 0)
        assert berlin.date() == datetime.fromtimestamp(ny / 1000, ZoneInfo("Europe/Berlin")).date()


def test_explain_says_what_a_run_waits_for() -> None:
    from schedd.sched.explain import (
        WorkerView,
        explain,
        explain_unscheduled,
        with_upstreams,
    )

    c = Cluster()
    c.create("a", 10, queue="etl")
    c.create("b", 10, queue="etl")
    c.create("d", 10, depends_on=["a", "b"])
    c.create("g", depends_on=["a", "b"])
    s = T0 + 10_000
    c.tick(s)
    c.finish(slot_run(c, "a", s).run_id, True)

    def records(job: types_pb2.Job) -> Any:
        return lambda at, n: c.state.runs_at_or_before(job.name, job.uid, at, n)

    d = c.job("d")
    ans = explain(d, compile_schedule(d.schedule), s, c.now, records(d))
    assert ans.verdict == "waiting" and "waiting for its upstreams" in ans.explanation
    workers = [WorkerView("w1", frozenset({"other"}), 1)]

    def get_run(rid: str) -> types_pb2.Run | None:
        raw = c.state.get("runs", rid.encode())
        return None if raw is None else types_pb2.Run.FromString(raw)

    with_upstreams(ans, ans.runs[0], get_run, c.state.get_job, workers, c.now)
    assert "waiting for b's run of" in ans.explanation, ans.explanation
    assert "(pending, no worker on queue etl)" in ans.explanation, ans.explanation
    assert [r.job for r in ans.upstream] == ["b"]

    g = c.job("g")
    ans = explain_unscheduled(g, c.now, records(g))
    assert ans.verdict == "waiting" and "has no schedule" in ans.explanation, ans
    with_upstreams(ans, ans.runs[0], get_run, c.state.get_job, workers, c.now)
    assert "a new outcome of b (not fired yet)" in ans.explanation, ans.explanation
    assert explain_unscheduled(g, T0, records(g)).verdict == "no_record"


def test_apply_prune_deletes_downstream_jobs_before_their_upstreams() -> None:
    from schedctl.apply_cmd import chain_order, downstream_first

    jobs = [
        types_pb2.Job(name="a", dependents=["c"]),
        types_pb2.Job(name="b", dependents=["c"]),
        types_pb2.Job(name="c", depends_on=["a", "b"], dependents=["d"]),
        types_pb2.Job(name="d", depends_on=["c"]),
    ]
    assert [j.name for j in downstream_first(jobs)] == ["d", "c", "a", "b"]
    ordered = chain_order([("d", {"depends_on": ["c"]}), ("c", {"depends_on": ["a"]}), ("a", {})])
    assert [n for n, _ in ordered] == ["a", "c", "d"]  # creates: upstreams first


def test_a_firedue_planned_before_an_update_of_the_upstreams_is_replanned() -> None:
    c = Cluster()
    c.create("a", 10)
    c.create("b", 10)
    c.create("d", 10, depends_on=["a"])
    c.now = s = T0 + 10_000
    plan = planner.plan_tick(
        c.state,
        s,
        planner.PlanSettings(catchup_spacing_ms=0),
        completions=[],
        expiries=[],
        workers=[],
        cursor={},  # type: ignore[arg-type]
        schedule_of=compile_schedule,
    )
    req = api_pb2.UpdateJobRequest(
        job=api_pb2.CreateJobRequest(
            name="d",
            max_attempts=1,
            schedule=types_pb2.Schedule(kind=R.SCHEDULE_KIND_INTERVAL, every_ms=10_000),
            depends_on=["a", "b"],
        )
    )
    assert c.apply(validate.update_job(req, s)).ok
    assert c.apply(plan.batch()).ok  # d's item is stale now; a's and b's fire
    assert c.state.get("runs", keys.run_id("d", c.job("d").uid, s).encode()) is None
    c.tick(s + 1)
    w = slot_run(c, "d", s)
    assert sorted(w.waiting_for) == ["a", "b"] and len(w.upstream_runs) == 2
