"""Commands the leader builds from a request and the committed job (schedd.server.commands)."""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.server import commands

T0 = 1_700_000_000_000


def interval_job(next_due: int, every_ms: int = 1000) -> types_pb2.Job:
    return types_pb2.Job(
        name="j",
        uid=7,
        next_due_ms=next_due,
        state=types_pb2.JOB_STATE_PAUSED,
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_INTERVAL, every_ms=every_ms),
    )


def test_resume_by_default_leaves_missed_slots_to_the_misfire_policy() -> None:
    body = commands.plan_resume(interval_job(T0), T0 + 10_500, skip_missed=False)
    assert body.mode == command_pb2.RESUME_MISFIRE and not body.next_due_ms


def test_resume_skip_missed_records_from_the_old_due_and_jumps_past_now() -> None:
    body = commands.plan_resume(interval_job(T0), T0 + 10_500, skip_missed=True)
    assert body.mode == command_pb2.RESUME_SKIP_MISSED
    assert body.from_due_ms == T0 and body.missed_first_ms == T0
    assert body.next_due_ms == T0 + 11_000  # the first slot after now


def test_resume_skip_missed_of_a_one_shot_has_nothing_to_skip() -> None:
    job = types_pb2.Job(
        name="j",
        next_due_ms=T0,
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0),
    )
    assert commands.plan_resume(job, T0 + 5000, skip_missed=True).mode == command_pb2.RESUME_MISFIRE


def test_resume_skip_missed_of_a_job_with_nothing_due_has_nothing_to_skip() -> None:
    """A paused job with no next slot (it reached max_runs, or its schedule ended) stays
    finished: skipping would jump to the first slot after now and revive it."""
    body = commands.plan_resume(interval_job(0), T0 + 5000, skip_missed=True)
    assert body.mode == command_pb2.RESUME_MISFIRE and not body.next_due_ms


def test_backfill_chunks_and_counts() -> None:
    job = interval_job(T0)
    first = commands.plan_backfill(job, T0, T0 + 9_999, limit=4)
    assert first.slots == [T0, T0 + 1000, T0 + 2000, T0 + 3000]
    assert first.next_from_ms == T0 + 4000 and first.total_slots == 10
    last = commands.plan_backfill(job, T0 + 8000, T0 + 9_999, limit=4)
    assert last.slots == [T0 + 8000, T0 + 9000] and last.next_from_ms == 0


def test_a_cron_range_too_long_to_count_reports_zero() -> None:
    job = types_pb2.Job(
        name="j",
        schedule=types_pb2.Schedule(
            kind=types_pb2.SCHEDULE_KIND_CRON, cron="* * * * * *", timezone="UTC"
        ),
    )
    chunk = commands.plan_backfill(job, T0, T0 + 2 * 86_400_000, limit=10)
    assert (
        len(chunk.slots) == 10 and chunk.total_slots == 0
    )  # over 20,000 slots: "too many to count"
    small = commands.plan_backfill(job, T0, T0 + 59_999, limit=10)
    assert small.total_slots == 60
