"""Misfire, overlap, chaining, update, backfill, dispatch timeout and retention, decided in apply
from leader-built commands (schedd.sched.firing plans them as the dispatcher does). In-process, fake
clock: no Raft, no LMDB, no network."""

from __future__ import annotations

from typing import Any

import pytest

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched import retention
from schedd.sched.explain import explain
from schedd.sched.firing import plan_fire
from schedd.sched.schedule import compile_schedule
from schedd.server.validate import create_job, update_job
from schedd.state import keys
from schedd.state.apply import MemoryState, Result, encode

T0 = 1_700_000_000_000  # a whole second
S = types_pb2


class Cluster:
    """One replica plus the leader's planning, driven by a fake clock."""

    def __init__(self) -> None:
        self.state = MemoryState()
        self.index = 0
        self.now = T0

    def apply(self, **body: Any) -> Result:
        self.index += 1
        return self.state.apply(encode(command_pb2.Command(now_ms=self.now, **body)), self.index)

    def create(self, name: str, every_ms: int = 1000, **fields: Any) -> S.Job:
        req = api_pb2.CreateJobRequest(
            name=name,
            schedule=S.Schedule(kind=S.SCHEDULE_KIND_INTERVAL, every_ms=every_ms),
            **fields,
        )
        self.index += 1
        r = self.state.apply(encode(create_job(req, self.now)), self.index)
        assert r.ok, r.message
        return r.job

    def job(self, name: str) -> S.Job:
        return S.Job.FromString(self.state.get("jobs", name.encode()))

    def runs(self, name: str) -> list[S.Run]:
        out = [S.Run.FromString(v) for v in self.state.data["runs"].values()]
        return sorted((r for r in out if r.job == name), key=lambda r: r.scheduled_ms)

    def tick(self, spacing_ms: int = 0) -> Result:
        items = []
        for key in sorted(self.state.data["due"]):
            due, name = keys.split_due_key(key)
            if due > self.now:
                break
            job = self.job(name)
            items.append(
                plan_fire(compile_schedule(job.schedule), job, due, self.now, max_slots=100)
            )
        return self.apply(
            fire_due=command_pb2.FireDueCmd(items=items, catchup_spacing_ms=spacing_ms)
        )

    def grant(self, run: S.Run, worker: str = "w1") -> S.Run:
        r = self.apply(
            grant_leases=command_pb2.GrantLeasesCmd(
                items=[
                    command_pb2.GrantItem(run_id=run.run_id, attempt=run.attempt, worker_id=worker)
                ]
            )
        )
        assert r.granted, f"{run.run_id} not granted"
        return r.granted[0].run

    def complete(self, run: S.Run, success: bool = True) -> Result:
        return self.apply(
            complete_runs=command_pb2.CompleteRunsCmd(
                items=[
                    command_pb2.CompleteItem(run_id=run.run_id, fence=run.fence, success=success)
                ],
                dead_letter=True,
            )
        )


def states(runs: list[S.Run]) -> list[str]:
    return [S.RunState.Name(r.state).removeprefix("RUN_STATE_").lower() for r in runs]


def covered(runs: list[S.Run], slot: int) -> list[S.Run]:
    return [
        r
        for r in runs
        if r.scheduled_ms == slot
        or (r.state == S.RUN_STATE_SKIPPED and r.scheduled_ms <= slot <= r.skipped_until_ms)
    ]


# ---- misfire ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy", [S.MISFIRE_POLICY_SKIP, S.MISFIRE_POLICY_FIRE_ONCE, S.MISFIRE_POLICY_FIRE_ALL]
)
def test_missed_slots_follow_the_misfire_policy_and_each_has_a_record(policy: int) -> None:
    c = Cluster()
    c.create("j", every_ms=1000, misfire=policy, misfire_grace_ms=2000, max_catchup=3)
    c.now = T0 + 10_000  # the scheduler was down for 10 s: slots T0+1s .. T0+10s are due
    c.tick()
    runs = c.runs("j")
    fired = [r for r in runs if r.state == S.RUN_STATE_PENDING]
    catchup = [r for r in fired if r.origin == S.RUN_ORIGIN_CATCHUP]
    on_time = [r for r in fired if r.origin == S.RUN_ORIGIN_SCHEDULE]
    # grace 2 s: slots due at now-2s .. now are on time, older ones are missed
    assert [r.scheduled_ms for r in on_time] == [T0 + 8000, T0 + 9000, T0 + 10_000]
    expect_catchup = {
        S.MISFIRE_POLICY_SKIP: [],
        S.MISFIRE_POLICY_FIRE_ONCE: [T0 + 7000],
        S.MISFIRE_POLICY_FIRE_ALL: [T0 + 5000, T0 + 6000, T0 + 7000],
    }[policy]
    assert [r.scheduled_ms for r in catchup] == expect_catchup
    for k in range(1, 11):
        assert len(covered(runs, T0 + k * 1000)) == 1, f"slot {k} has no single record"
    skipped = [r for r in runs if r.state == S.RUN_STATE_SKIPPED]
    reason = {
        S.MISFIRE_POLICY_SKIP: S.SKIP_REASON_MISFIRE,
        S.MISFIRE_POLICY_FIRE_ONCE: S.SKIP_REASON_COALESCED,
        S.MISFIRE_POLICY_FIRE_ALL: S.SKIP_REASON_CATCHUP_LIMIT,
    }[policy]
    assert {r.skip_reason for r in skipped} == {reason}
    assert sum(r.skipped_count for r in skipped) == 7 - len(expect_catchup)
    assert c.job("j").next_due_ms == T0 + 11_000


def test_slots_older_than_the_catchup_window_are_dropped_as_one_counted_range() -> None:
    c = Cluster()
    c.create(
        "j",
        every_ms=1000,
        misfire=S.MISFIRE_POLICY_FIRE_ALL,
        misfire_grace_ms=0,
        catchup_window_ms=5000,
        max_catchup=100,
    )
    c.now = T0 + 3_600_000  # an hour down
    c.tick()
    runs = c.runs("j")
    dropped = [r for r in runs if r.skip_reason == S.SKIP_REASON_CATCHUP_WINDOW]
    assert len(dropped) == 1
    assert dropped[0].scheduled_ms == T0 + 1000 and dropped[0].skipped_count == 3594
    catchup = [r.scheduled_ms for r in runs if r.origin == S.RUN_ORIGIN_CATCHUP]
    assert catchup == [T0 + 3_595_000 + k * 1000 for k in range(5)]
    assert (
        len(
            [
                r
                for r in runs
                if r.origin == S.RUN_ORIGIN_SCHEDULE and r.state != S.RUN_STATE_SKIPPED
            ]
        )
        == 1
    )


def test_catchup_runs_are_paced_cluster_wide() -> None:
    c = Cluster()
    for name in ("a", "b"):
        c.create(
            name,
            every_ms=1000,
            misfire=S.MISFIRE_POLICY_FIRE_ALL,
            misfire_grace_ms=0,
            max_catchup=3,
        )
    c.now = T0 + 10_500
    c.tick(spacing_ms=100)
    nb = sorted(
        r.not_before_ms for n in ("a", "b") for r in c.runs(n) if r.origin == S.RUN_ORIGIN_CATCHUP
    )
    assert nb == [c.now + 100 * k for k in range(6)]


def test_on_time_firing_ignores_the_policy() -> None:
    c = Cluster()
    c.create("j", every_ms=1000, misfire=S.MISFIRE_POLICY_SKIP, misfire_grace_ms=0)
    for k in range(1, 4):
        c.now = T0 + k * 1000
        c.tick()
    assert states(c.runs("j")) == ["pending"] * 3


def test_resume_applies_the_misfire_policy_or_skips_with_a_paused_record() -> None:
    for mode, expect in (
        (command_pb2.RESUME_MISFIRE, "one catch-up"),
        (command_pb2.RESUME_SKIP_MISSED, "none"),
    ):
        c = Cluster()
        c.create("j", every_ms=1000, misfire=S.MISFIRE_POLICY_FIRE_ONCE, misfire_grace_ms=0)
        c.now = T0 + 500
        c.apply(pause_job=command_pb2.PauseJobCmd(name="j"))
        c.now = T0 + 5500
        job = c.job("j")
        body = command_pb2.ResumeJobCmd(name="j", mode=mode)
        if mode == command_pb2.RESUME_SKIP_MISSED:
            body.from_due_ms = job.next_due_ms
            body.missed_first_ms = job.next_due_ms
            body.next_due_ms = T0 + 6000
        assert c.apply(resume_job=body).ok
        c.tick()
        runs = c.runs("j")
        catchup = [r for r in runs if r.origin == S.RUN_ORIGIN_CATCHUP]
        assert len(catchup) == (1 if expect == "one catch-up" else 0)
        for k in range(1, 6):
            assert len(covered(runs, T0 + k * 1000)) == 1
        if mode == command_pb2.RESUME_SKIP_MISSED:
            assert [r.skip_reason for r in runs] == [S.SKIP_REASON_PAUSED]


def test_max_runs_finishes_the_job() -> None:
    c = Cluster()
    c.create("j", every_ms=1000, max_runs=2)
    c.now = T0 + 5000
    c.tick()
    assert len(c.runs("j")) == 2
    assert c.job("j").state == S.JOB_STATE_FINISHED and not c.state.data["due"]


# ---- overlap ---------------------------------------------------------------------------------


def fire_three_while_first_runs(policy: int, **fields: Any) -> Cluster:
    c = Cluster()
    c.create("j", every_ms=1000, overlap=policy, **fields)
    c.now = T0 + 1000
    c.tick()
    c.grant(c.runs("j")[0])
    for k in (2, 3, 4):
        c.now = T0 + k * 1000
        c.tick()
    return c


def test_forbid_skips_while_a_run_is_active_in_one_merged_record() -> None:
    c = fire_three_while_first_runs(S.OVERLAP_POLICY_FORBID)
    runs = c.runs("j")
    assert states(runs) == ["leased", "skipped"]
    assert runs[1].skip_reason == S.SKIP_REASON_OVERLAP
    assert (runs[1].scheduled_ms, runs[1].skipped_until_ms, runs[1].skipped_count) == (
        T0 + 2000,
        T0 + 4000,
        3,
    )


def test_buffer_one_holds_one_and_starts_it_when_the_active_run_ends() -> None:
    c = fire_three_while_first_runs(S.OVERLAP_POLICY_BUFFER_ONE)
    runs = c.runs("j")
    assert states(runs) == ["leased", "waiting", "skipped"]
    assert runs[2].skip_reason == S.SKIP_REASON_BUFFER_FULL
    c.complete(c.runs("j")[0])
    runs = c.runs("j")
    assert states(runs) == ["succeeded", "pending", "skipped"]
    assert c.job("j").buffered_run == ""


def test_replace_cancels_the_running_one_and_revokes_its_lease() -> None:
    c = Cluster()
    c.create("j", every_ms=1000, overlap=S.OVERLAP_POLICY_REPLACE)
    c.now = T0 + 1000
    c.tick()
    first = c.grant(c.runs("j")[0])
    c.now = T0 + 2000
    r = c.tick()
    assert [(x.run_id, x.fence) for x in r.revoked] == [(first.run_id, first.fence)]
    assert states(c.runs("j")) == ["cancelled", "pending"]
    late = c.complete(first)  # the replaced worker's result is stale
    assert late.sub == () and late.items[0][0] == "ABORTED"


def test_max_concurrent_allows_n_then_skips() -> None:
    c = Cluster()
    c.create("j", every_ms=1000, overlap=S.OVERLAP_POLICY_ALLOW, max_concurrent=2)
    c.now = T0 + 3000
    c.tick()
    assert states(c.runs("j")) == ["pending", "pending", "skipped"]


def test_trigger_overlap_override() -> None:
    c = fire_three_while_first_runs(S.OVERLAP_POLICY_FORBID)
    skipped = c.apply(trigger_job=command_pb2.TriggerJobCmd(name="j"))
    assert skipped.run.state == S.RUN_STATE_SKIPPED
    c.now += 1
    forced = c.apply(
        trigger_job=command_pb2.TriggerJobCmd(name="j", overlap=S.OVERLAP_POLICY_ALLOW)
    )
    assert forced.run.state == S.RUN_STATE_PENDING and forced.run.origin == S.RUN_ORIGIN_TRIGGER


# ---- chaining, update, backfill, timeouts, retention -----------------------------------------


def test_on_success_and_on_failure_chain_to_other_jobs() -> None:
    c = Cluster()
    c.create("ok", every_ms=3_600_000)
    c.create("bad", every_ms=3_600_000)
    c.create(
        "main",
        every_ms=1000,
        on_success="ok",
        on_failure="bad",
        retry=S.RetryPolicy(max_attempts=1),
    )
    c.now = T0 + 2000
    c.tick()
    r1, r2 = c.runs("main")
    c.complete(c.grant(r1))
    c.complete(c.grant(r2), success=False)
    (ok,) = c.runs("ok")
    (bad,) = c.runs("bad")
    assert ok.origin == bad.origin == S.RUN_ORIGIN_CHAIN
    assert (ok.caused_by, bad.caused_by) == (r1.run_id, r2.run_id)


def test_a_chain_cycle_is_rejected_and_changes_nothing() -> None:
    c = Cluster()
    c.create("a", every_ms=1000)
    c.create("b", every_ms=1000, on_success="a")
    before = c.state.digest()
    req = api_pb2.UpdateJobRequest(
        job=api_pb2.CreateJobRequest(
            name="a",
            schedule=S.Schedule(kind=S.SCHEDULE_KIND_INTERVAL, every_ms=1000),
            on_failure="b",
        )
    )
    c.index += 1
    r = c.state.apply(encode(update_job(req, c.now)), c.index)
    assert (
        r.code == "INVALID_ARGUMENT"
        and r.message.startswith("on_failure:")
        and "a -> b -> a" in r.message
    )
    assert c.state.digest() == before


def test_update_with_expect_version_is_optimistic() -> None:
    c = Cluster()
    c.create("j", every_ms=1000)

    def update(version: int, every: int) -> Result:
        req = api_pb2.UpdateJobRequest(
            expect_version=version,
            job=api_pb2.CreateJobRequest(
                name="j",
                schedule=S.Schedule(kind=S.SCHEDULE_KIND_INTERVAL, every_ms=every),
                payload='{"v": 2}',
            ),
        )
        c.index += 1
        return c.state.apply(encode(update_job(req, c.now)), c.index)

    r = update(1, 1000)
    assert r.ok and r.job.version == 2 and r.job.payload == '{"v": 2}'
    assert r.job.next_due_ms == T0 + 1000  # same schedule: the slot sequence continues
    stale = update(1, 5000)
    assert stale.code == "FAILED_PRECONDITION" and "version 2" in stale.message
    r = update(2, 5000)
    assert r.ok and r.job.next_due_ms == T0 + 5000 and r.job.uid == 1


def test_backfill_creates_missing_slots_once() -> None:
    c = Cluster()
    job = c.create("j", every_ms=1000)
    slots = [T0 - 3000, T0 - 2000, T0 - 1000]
    r = c.apply(backfill=command_pb2.BackfillCmd(name="j", uid=job.uid, slots_ms=slots))
    assert (r.count, r.existing) == (3, 0)
    r = c.apply(backfill=command_pb2.BackfillCmd(name="j", uid=job.uid, slots_ms=slots))
    assert (r.count, r.existing) == (0, 3)
    assert {x.origin for x in c.runs("j")} == {S.RUN_ORIGIN_BACKFILL}


def test_dispatch_timeout_makes_an_unstarted_run_dead() -> None:
    c = Cluster()
    c.create("j", every_ms=1000, dispatch_timeout_ms=5000)
    c.now = T0 + 1000
    c.tick()
    (run,) = c.runs("j")
    assert run.dispatch_deadline_ms == T0 + 6000
    c.now = T0 + 5999
    assert (
        c.apply(
            dispatch_timeout=command_pb2.DispatchTimeoutCmd(
                items=[command_pb2.DispatchTimeoutItem(run_id=run.run_id, attempt=1)]
            )
        ).count
        == 0
    )  # not yet
    c.now = T0 + 6000
    assert (
        c.apply(
            dispatch_timeout=command_pb2.DispatchTimeoutCmd(
                items=[command_pb2.DispatchTimeoutItem(run_id=run.run_id, attempt=1)]
            )
        ).count
        == 1
    )
    (run,) = c.runs("j")
    assert run.state == S.RUN_STATE_DEAD and "dispatch timeout" in run.error
    assert not c.state.data["pending"] and not c.state.data["active"]


def test_retention_prunes_only_finished_runs() -> None:
    c = Cluster()
    c.create("j", every_ms=1000, keep_runs=2)
    c.now = T0 + 4000
    c.tick()
    runs = c.runs("j")
    for r in runs[:3]:
        c.complete(c.grant(r))
    job = c.job("j")
    finished = sorted(
        (r for r in c.runs("j") if r.state == S.RUN_STATE_SUCCEEDED), key=lambda r: -r.scheduled_ms
    )
    doomed = retention.expired(job, finished, c.now, 100)
    assert doomed == [runs[0].run_id]
    assert (
        c.apply(prune_runs=command_pb2.PruneRunsCmd(run_ids=[*doomed, runs[3].run_id])).count == 1
    )
    assert states(c.runs("j")) == ["succeeded", "succeeded", "pending"]


def test_explain_answers_from_the_records() -> None:
    c = Cluster()
    c.create("j", every_ms=1000, overlap=S.OVERLAP_POLICY_FORBID)
    c.now = T0 + 1000
    c.tick()
    c.grant(c.runs("j")[0])
    c.now = T0 + 3000
    c.tick()
    job = c.job("j")
    sched = compile_schedule(job.schedule)

    def records(at: int, n: int) -> list[S.Run]:
        return sorted(
            (r for r in c.runs("j") if r.scheduled_ms <= at), key=lambda r: -r.scheduled_ms
        )[:n]

    assert explain(job, sched, T0 + 1000, c.now, records).verdict == "running"
    e = explain(job, sched, T0 + 3000, c.now, records)
    assert e.verdict == "skipped" and "still active" in e.explanation
    # Between slots: the slot before it is explained, and the sentence says which one.
    between = explain(job, sched, T0 + 2500, c.now, records)
    assert between.slot_ms == T0 + 2000 and between.verdict != "not_a_slot"
    assert "is not a slot; the last slot before it is" in between.explanation
    assert between.previous_slot_ms == T0 + 2000 and between.next_slot_ms == T0 + 3000
    assert explain(job, sched, T0 + 9000, c.now, records).verdict == "not_due_yet"
    assert explain(job, sched, T0 - 5000, c.now, records).verdict == "before_created"


def test_a_dst_gap_slot_skipped_by_policy_gets_a_record() -> None:
    """Europe/Berlin springs forward at 2026-03-29 01:00 UTC (02:00 -> 03:00 local): a job at
    02:30 local has no slot that day; with dst_gap skip the day gets a DST_GAP record."""
    c = Cluster()
    c.now = 1774656000000  # 2026-03-28T00:00:00Z
    req = api_pb2.CreateJobRequest(
        name="berlin",
        schedule=S.Schedule(
            kind=S.SCHEDULE_KIND_CRON,
            cron="30 2 * * *",
            timezone="Europe/Berlin",
            dst_gap=S.DST_GAP_SKIP,
        ),
    )
    c.index += 1
    assert c.state.apply(encode(create_job(req, c.now)), c.index).ok
    for hours in range(1, 24 * 3, 1):
        c.now = 1774656000000 + hours * 3_600_000
        c.tick()
    runs = c.runs("berlin")
    assert [(r.scheduled_ms, r.state, r.skip_reason) for r in runs] == [
        (1774661400000, S.RUN_STATE_PENDING, 0),  # 03-28 02:30 CET
        (
            1774746000000,
            S.RUN_STATE_SKIPPED,
            S.SKIP_REASON_DST_GAP,
        ),  # 03-29: 03:00 CEST, the shift instant
        (1774830600000, S.RUN_STATE_PENDING, 0),  # 03-30 02:30 CEST
    ]


def test_request_ids_are_pruned_after_their_ttl_only() -> None:
    c = Cluster()
    req = api_pb2.CreateJobRequest(
        name="r",
        request_id="req-1",
        schedule=S.Schedule(kind=S.SCHEDULE_KIND_INTERVAL, every_ms=1000),
    )
    c.index += 1
    c.state.apply(encode(create_job(req, c.now)), c.index)
    c.now += 1000
    assert (
        c.apply(
            prune_runs=command_pb2.PruneRunsCmd(request_ids=["req-1"], request_ttl_ms=5000)
        ).count
        == 0
    )
    c.now += 10_000
    assert (
        c.apply(
            prune_runs=command_pb2.PruneRunsCmd(request_ids=["req-1"], request_ttl_ms=5000)
        ).count
        == 1
    )
    assert b"req-1" not in c.state.data["requests"]
