"""Firing ahead (``--fire-ahead``, feature level 5), on a ``MemoryState`` replica driven by the
leader's own planner with a fake clock: which jobs fire ahead, which workers may take a run
before it is due, what the worker is told, and how a pause, delete or update inside the window
takes the early run back (schedd.state.apply.ahead)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched.schedule import compile_schedule
from schedd.server import planner, validate
from schedd.state.apply import Result, features
from tests.unit._replica import Replica

T0 = 1_700_000_040_000  # a whole minute (UTC)
AHEAD = 100
R = types_pb2


class Cluster(Replica):
    """One replica and its log, a fake clock, the leader's planner and one worker."""

    def __init__(self, level: int = features.FIRE_AHEAD, early: bool = True) -> None:
        super().__init__(T0)
        self.cursor: dict[str, int] = defaultdict(int)
        self.early = early
        self.sent: list[types_pb2.Firing] = []
        self.revoked: list[str] = []
        self.apply(
            command_pb2.Command(set_feature_level=command_pb2.SetFeatureLevelCmd(level=level))
        )

    def apply(self, cmd: command_pb2.Command) -> Result:
        result = super().apply(cmd)
        self.revoked += [r.run_id for r in result.revoked]
        return result

    def create(self, name: str, **kw: Any) -> types_pb2.Job:
        req = api_pb2.CreateJobRequest(name=name, **kw)
        if not req.HasField("schedule"):
            req.schedule.kind = R.SCHEDULE_KIND_INTERVAL
            req.schedule.every_ms = 1000
        result = self.apply(validate.create_job(req, self.now))
        assert result.ok, result.message
        return self.job(name)

    def tick(self, to_ms: int, ahead: int = AHEAD) -> planner.TickPlan:
        self.now = to_ms
        plan = planner.plan_tick(
            self.state,
            self.now,
            planner.PlanSettings(catchup_spacing_ms=0, fire_ahead_ms=ahead),
            completions=[],
            expiries=[],
            workers=[planner.FreeWorker("w", ("default",), {}, 10, early=self.early)],
            cursor=self.cursor,
            schedule_of=compile_schedule,
        )
        if plan.commands:
            result = self.apply(plan.batch())
            assert result.ok, result.message
            self.sent += [g.firing for g in planner.after_commit(plan, result).granted]
        return plan

    def job_cmd(self, verb: str, name: str, **kw: Any) -> Result:
        body = {
            "pause": lambda: command_pb2.Command(pause_job=command_pb2.PauseJobCmd(name=name)),
            "delete": lambda: command_pb2.Command(delete_job=command_pb2.DeleteJobCmd(name=name)),
        }
        return self.apply(body[verb]())


def due_of(c: Cluster, name: str) -> int:
    return c.job(name).next_due_ms


def test_a_slot_inside_the_window_is_fired_and_leased_ahead_and_the_worker_told_when_to_start() -> (
    None
):
    c = Cluster()
    c.create("a")
    slot = due_of(c, "a")
    c.tick(slot - AHEAD - 1)
    assert c.runs("a") == []  # not yet inside the window
    c.tick(slot - 40)
    (run,) = c.runs("a")
    assert run.scheduled_ms == slot and run.state == R.RUN_STATE_LEASED
    assert run.started_ms == slot  # it starts at its due time, not at the grant
    (firing,) = c.sent
    assert firing.start_at_ms == slot
    assert due_of(c, "a") == slot + 1000


def test_a_run_already_due_carries_no_start_time() -> None:
    c = Cluster()
    c.create("a")
    slot = due_of(c, "a")
    c.tick(slot + 5)
    (firing,) = c.sent
    assert firing.start_at_ms == 0


def test_a_worker_that_does_not_wait_gets_the_run_only_once_it_is_due() -> None:
    c = Cluster(early=False)
    c.create("a")
    slot = due_of(c, "a")
    c.tick(slot - 40)
    (run,) = c.runs("a")
    assert run.state == R.RUN_STATE_PENDING and c.sent == []  # fired ahead, not leased
    c.tick(slot)
    assert c.runs("a")[0].state == R.RUN_STATE_LEASED
    assert c.sent[0].start_at_ms == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"overlap": R.OVERLAP_POLICY_FORBID},
        {"overlap": R.OVERLAP_POLICY_BUFFER_ONE},
        {"overlap": R.OVERLAP_POLICY_REPLACE},
        {"max_concurrent": 2},
    ],
)
def test_jobs_whose_firing_depends_on_the_last_moment_fire_only_once_due(
    kw: dict[str, Any],
) -> None:
    c = Cluster()
    c.create("a", **kw)
    slot = due_of(c, "a")
    c.tick(slot - 40)
    assert c.runs("a") == []
    c.tick(slot)
    assert [r.scheduled_ms for r in c.runs("a")] == [slot]


def test_without_fire_ahead_nothing_fires_early() -> None:
    c = Cluster()
    c.create("a")
    slot = due_of(c, "a")
    c.tick(slot - 1, ahead=0)
    assert c.runs("a") == []


def test_lateness_is_still_judged_at_now() -> None:
    """Slots missed long ago are still misfires when the tick also fires ahead."""
    c = Cluster()
    c.create("a", misfire=R.MISFIRE_POLICY_SKIP, misfire_grace_ms=500)
    slot = due_of(c, "a")
    c.tick(slot + 2_950)  # slots slot, +1 s and +2 s are late; +3 s is 50 ms ahead
    skipped, early = c.runs("a")
    assert skipped.state == R.RUN_STATE_SKIPPED and skipped.skip_reason == R.SKIP_REASON_MISFIRE
    assert (skipped.scheduled_ms, skipped.skipped_until_ms) == (slot, slot + 2000)
    assert early.scheduled_ms == slot + 3000 and early.state == R.RUN_STATE_LEASED


def pause_resume(ahead: int, misfire: int) -> tuple[list[tuple[int, int, int, int]], list[str]]:
    """Pause 10 ms before a slot (after the tick that may fire it ahead), resume 500 ms after
    it, tick: the job's records as (slot offset, state, origin, skip reason), and the leases
    revoked."""
    c = Cluster()
    c.create("a", misfire=misfire)
    slot = due_of(c, "a")
    c.tick(slot - 40, ahead=ahead)
    c.now = slot - 10
    assert c.job_cmd("pause", "a").ok
    job = c.job("a")
    assert job.state == R.JOB_STATE_PAUSED and job.next_due_ms == slot
    assert c.runs("a") == []  # as if it had never fired
    c.now = slot + 500
    assert c.apply(
        command_pb2.Command(
            resume_job=command_pb2.ResumeJobCmd(name="a", mode=command_pb2.RESUME_MISFIRE)
        )
    ).ok
    c.tick(slot + 600, ahead=ahead)
    recs = [(r.scheduled_ms - slot, r.state, r.origin, r.skip_reason) for r in c.runs("a")]
    return recs, c.revoked


@pytest.mark.parametrize(
    "misfire", [R.MISFIRE_POLICY_SKIP, R.MISFIRE_POLICY_FIRE_ONCE, R.MISFIRE_POLICY_FIRE_ALL]
)
def test_a_pause_inside_the_window_ends_as_if_the_slot_had_not_fired(misfire: int) -> None:
    """The early run is taken back (its worker told), and after a resume the job's records are
    the ones a leader that fires only once due would have made."""
    early, revoked = pause_resume(AHEAD, misfire)
    on_time, none = pause_resume(0, misfire)
    assert len(revoked) == 1 and none == []
    assert early == on_time
    assert early  # the slot has a record: a paused skip or a catch-up run, by the policy


def test_a_pause_after_the_due_time_keeps_the_run() -> None:
    c = Cluster()
    c.create("a")
    slot = due_of(c, "a")
    c.tick(slot - 40)
    c.now = slot + 1
    assert c.job_cmd("pause", "a").ok
    assert [r.state for r in c.runs("a")] == [R.RUN_STATE_LEASED] and c.revoked == []


def test_a_one_shot_finished_by_its_early_firing_is_paused_not_finished() -> None:
    c = Cluster()
    c.create("once", schedule=R.Schedule(kind=R.SCHEDULE_KIND_AT, at_ms=T0 + 5_000))
    c.tick(T0 + 5_000 - 30)
    assert c.job("once").state == R.JOB_STATE_FINISHED
    c.now = T0 + 5_000 - 10
    assert c.job_cmd("pause", "once").ok
    job = c.job("once")
    assert job.state == R.JOB_STATE_PAUSED and job.next_due_ms == T0 + 5_000
    assert c.runs("once") == []


def test_a_delete_inside_the_window_revokes_the_lease() -> None:
    c = Cluster()
    c.create("a")
    slot = due_of(c, "a")
    c.tick(slot - 40)
    rid = c.runs("a")[0].run_id
    c.now = slot - 10
    assert c.job_cmd("delete", "a").ok
    assert c.revoked == [rid] and c.state.get("runs", rid.encode()) is None
    assert c.state.get_job("a") is None
    assert list(c.state.data["due"]) == []


def test_an_update_inside_the_window_refires_the_slot_with_the_new_definition() -> None:
    c = Cluster()
    c.create("a", payload='{"v": 1}')
    slot = due_of(c, "a")
    c.tick(slot - 40)
    assert c.sent[-1].payload == '{"v": 1}'
    c.now = slot - 10
    job = c.job("a")
    req = api_pb2.CreateJobRequest(name="a", payload='{"v": 2}', schedule=job.schedule)
    new = validate.create_job(req, c.now).create_job.job
    assert c.apply(command_pb2.Command(update_job=command_pb2.UpdateJobCmd(job=new))).ok
    assert c.runs("a") == [] and len(c.revoked) == 1
    assert due_of(c, "a") == slot
    c.tick(slot - 5)
    (run,) = c.runs("a")
    assert run.scheduled_ms == slot and c.sent[-1].payload == '{"v": 2}'
    assert c.sent[-1].fence > c.sent[0].fence  # the revoked fence is stale


def test_max_runs_counts_a_revoked_run_once() -> None:
    c = Cluster()
    c.create("a", max_runs=1)
    slot = due_of(c, "a")
    c.tick(slot - 40)
    assert c.job("a").fired_runs == 1
    c.now = slot - 10
    assert c.job_cmd("pause", "a").ok
    assert c.job("a").fired_runs == 0
    c.now = slot - 5
    assert c.apply(
        command_pb2.Command(
            resume_job=command_pb2.ResumeJobCmd(name="a", mode=command_pb2.RESUME_MISFIRE)
        )
    ).ok
    c.tick(slot)
    assert [r.scheduled_ms for r in c.runs("a")] == [slot]
    assert c.job("a").fired_runs == 1


def test_below_level_5_a_pause_takes_nothing_back() -> None:
    """Negative control: the revocation is what the feature level gates (an older replica
    would keep the run), so at level 4 the early run stays."""
    c = Cluster(level=features.DEPENDENCIES)
    c.create("a")
    slot = due_of(c, "a")
    c.tick(slot - 40)  # (a leader never fires ahead below level 5; the planner is told to)
    c.now = slot - 10
    assert c.job_cmd("pause", "a").ok
    assert [r.state for r in c.runs("a")] == [R.RUN_STATE_LEASED] and c.revoked == []
