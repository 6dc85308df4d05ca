"""The dashboard's pure helpers: how a schedule, a duration, an instant, a job's status and an
API error read on a page, and the rates of the cluster view (no browser, no cluster)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schedd import errors
from schedd.models import Job, JobState, Run, RunState, Schedule, ScheduleKind, SkipReason
from schedd.web.figures import Rates
from schedd.web.sessions import Sessions
from schedd.web.viewmodel import (
    JobFilter,
    duration_text,
    error_text,
    instant_text,
    job_row,
    job_status,
    parse_instant,
    relative_text,
    run_row,
    schedule_text,
    skip_reason_text,
)

NOW = 1_796_000_000_000  # 2026-12-01


def run(state: RunState, scheduled: int = NOW, finished: int = 0, **kw: object) -> Run:
    return Run(
        run_id=f"j:1:{scheduled}",
        job="j",
        scheduled_ms=scheduled,
        state=state,
        finished_ms=finished,
        **kw,
    )  # type: ignore[arg-type]


def test_schedule_text_names_cron_zone_interval_and_one_shot() -> None:
    cron = Schedule(kind=ScheduleKind.CRON, cron="0 2 * * *", timezone="Europe/Berlin")
    assert schedule_text(cron) == "cron 0 2 * * * (Europe/Berlin)"
    every = Schedule(kind=ScheduleKind.INTERVAL, every_ms=90_000, jitter_ms=10_000)
    assert schedule_text(every) == "every 1m30s, jitter 10s"
    once = Schedule(kind=ScheduleKind.AT, at_ms=1_767_225_600_000)
    assert schedule_text(once) == "once at 2026-01-01 00:00:00 UTC"
    assert schedule_text(Schedule()) == "none"


def test_instant_text_shows_the_zone_and_its_dst_abbreviation() -> None:
    assert instant_text(0) == ""
    winter, summer = 1_767_225_600_000, 1_782_864_000_000  # 2026-01-01, 2026-07-01 00:00Z
    assert instant_text(winter, "Europe/Berlin") == "2026-01-01 01:00:00 CET"
    assert instant_text(summer, "Europe/Berlin") == "2026-07-01 02:00:00 CEST"
    assert instant_text(winter + 5) == "2026-01-01 00:00:00.005 UTC"
    assert instant_text(winter, "No/Such_Zone").endswith("UTC")


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_duration_text_is_short_and_ignores_the_sign(ms: int) -> None:
    text = duration_text(ms)
    assert text == duration_text(-ms)
    assert len(text.split()) <= 2 and text[0].isdigit()


def test_duration_text_examples() -> None:
    assert [duration_text(x) for x in (0, 350, 4_200, 185_000, 7_800_000, 273_600_000)] == [
        "0ms",
        "350ms",
        "4.2s",
        "3m 5s",
        "2h 10m",
        "3d 4h",
    ]
    assert relative_text(NOW + 4_000, NOW) == "in 4.0s"
    assert relative_text(NOW - 185_000, NOW) == "3m 5s ago"
    assert relative_text(NOW + 100, NOW) == "now" and relative_text(0, NOW) == ""


def test_job_status_most_urgent_first() -> None:
    active = Job(name="j", state=JobState.ACTIVE)
    paused = Job(name="j", state=JobState.PAUSED)
    ok, dead = run(RunState.SUCCEEDED, NOW - 2, NOW - 1), run(RunState.DEAD, NOW - 1, NOW)
    assert job_status(active, []) == "active"
    assert job_status(active, [ok, dead]) == "failing"
    assert job_status(active, [dead, run(RunState.SUCCEEDED, NOW, NOW + 5)]) == "active"
    assert job_status(paused, [dead]) == "paused"
    assert job_status(paused, [run(RunState.LEASED)]) == "running"
    assert job_status(Job(state=JobState.FINISHED), [ok]) == "finished"
    # a skip record or a pending run is not an outcome
    assert job_status(active, [dead, run(RunState.SKIPPED, NOW + 9)]) == "failing"


@given(
    st.lists(st.sampled_from(list(RunState)[1:]), max_size=6), st.sampled_from(list(JobState)[1:])
)
def test_job_row_counts_running_runs_and_names_a_status(
    states: list[RunState], js: JobState
) -> None:
    runs = [run(s, NOW + i, NOW + i + 1) for i, s in enumerate(states)]
    row = job_row(Job(name="j", state=js, next_due_ms=NOW + 60_000), runs, NOW)
    assert row.running == states.count(RunState.LEASED)
    assert row.status in ("running", "paused", "failing", "finished", "active")
    assert (row.status == "running") == (row.running > 0)
    assert row.next_fire_in == "in 1m"


def test_run_row_explains_skips_and_offers_retry_for_dead_letters() -> None:
    r = run_row(
        run(
            RunState.DEAD,
            NOW,
            NOW + 1500,
            started_ms=NOW,
            exit_code=3,
            error="boom",
            attempt=1,
            fence=7,
            worker_id="w",
        ),
        NOW,
    )
    assert (r.retryable, r.cancellable, r.took, r.exit_code, r.state) == (
        True,
        False,
        "1.5s",
        "3",
        "dead",
    )
    s = run_row(
        run(
            RunState.SKIPPED,
            NOW,
            skip_reason=SkipReason.PAUSED,
            skipped_until_ms=NOW + 120_000,
            skipped_count=3,
        ),
        NOW,
    )
    assert s.skip_reason.startswith("the job was paused (3 slots up to")
    assert skip_reason_text(SkipReason.UNSPECIFIED) == ""
    leased = run_row(run(RunState.LEASED, NOW, started_ms=NOW - 5000), NOW)
    assert leased.took == "5.0s so far" and leased.cancellable


def test_job_filter() -> None:
    f = JobFilter.parse("PAUSED", " batch ", "Rep")
    assert (f.status, f.queue, f.search) == ("paused", "batch", "Rep")
    assert f.matches_definition(Job(name="nightly-report", queue="batch", state=JobState.PAUSED))
    assert not f.matches_definition(Job(name="nightly-report", queue="batch"))
    assert not f.matches_definition(Job(name="other", queue="batch", state=JobState.PAUSED))
    assert JobFilter.parse("dead").needs_runs and not f.needs_runs and JobFilter().empty
    try:
        JobFilter.parse("bogus")
    except errors.InvalidArgument as e:
        assert e.field == "status"
    else:
        raise AssertionError("an unknown status is refused")


def test_parse_instant_reads_local_times_in_the_job_zone() -> None:
    assert parse_instant("now", "UTC", NOW) == NOW
    assert parse_instant("-5m", "UTC", NOW) == NOW - 300_000
    assert parse_instant("+1h", "UTC", NOW) == NOW + 3_600_000
    assert parse_instant("2026-01-01 01:00", "Europe/Berlin", NOW) == 1_767_225_600_000
    assert parse_instant("2026-01-01T00:00:00Z", "Europe/Berlin", NOW) == 1_767_225_600_000
    for bad in ("yesterday", "-5x"):
        try:
            parse_instant(bad, "UTC", NOW)
        except errors.InvalidArgument as e:
            assert e.field == "at"
        else:
            raise AssertionError(bad)


def test_error_text_names_the_code_and_keeps_the_server_message() -> None:
    e = errors.PermissionDenied("PauseJob needs the writer role in namespace 'default'")
    assert error_text(e) == (
        "Permission denied (PERMISSION_DENIED): PauseJob needs the writer role in namespace "
        "'default'"
    )
    assert error_text(errors.InvalidArgument("at", "bad")).startswith(
        "Invalid input (INVALID_ARGUMENT)"
    )


def test_rates_over_a_window_and_a_counter_reset() -> None:
    r = Rates(window_s=60)
    assert r.per_second("runs_created") is None
    r.add(0, {"runs_created": 10, "lag_sum": 1.0, "lag_count": 10})
    r.add(10, {"runs_created": 30, "lag_sum": 3.0, "lag_count": 20})
    assert r.per_second("runs_created") == 2.0
    assert r.mean("lag_sum", "lag_count") == 0.2
    r.add(100, {"runs_created": 5, "lag_sum": 3.0, "lag_count": 20})  # restarted: from zero
    assert r.seconds == 90 and r.per_second("runs_created") == 5 / 90
    assert r.mean("lag_sum", "lag_count") is None


def test_sessions_expire_and_check_csrf() -> None:
    t = [0.0]
    sessions = Sessions(ttl_s=10, clock=lambda: t[0])
    s = sessions.create("tok")
    assert (
        sessions.get(s.sid) is s and s.csrf_ok(s.csrf) and not s.csrf_ok("") and not s.csrf_ok("x")
    )
    t[0] = 11
    assert sessions.get(s.sid) is None and sessions.get(None) is None
