"""Baseline (d): APScheduler 3.x in memory (MemoryJobStore, BackgroundScheduler with a
ThreadPoolExecutor), in this process: no replication, no network, no durability.

* ``throughput``: ``jobs`` jobs with a ``DateTrigger`` at one instant; due → the last job ran.
* ``lag``: ``jobs`` jobs with a 1 s ``IntervalTrigger`` (``jobs`` firings/s) for ``duration_s``;
  lag = ``time.time()`` at job start minus its scheduled time. APScheduler 3 does not hand the
  scheduled time to the job, so every job starts on a whole second and counts its own calls:
  call k (0-based) was scheduled at start + k s. ``max_instances=1`` keeps a job's calls in
  order, and any skipped run is reported as ``missed`` (it would shift the count).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

from common import latency_summary_ms, load_average, progress


def _scheduler(threads: int) -> Any:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=threads)},
        job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
        timezone=UTC,
    )


def _missed_counter(scheduler: Any) -> list[int]:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

    missed = [0]

    def listener(_event: Any) -> None:
        missed[0] += 1

    scheduler.add_listener(listener, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
    return missed


def throughput(
    jobs: int, threads: int = 10, lead_s: float = 2.0, timeout_s: float = 120.0
) -> dict[str, Any]:
    from apscheduler.triggers.date import DateTrigger

    result: dict[str, Any] = {
        "jobs": jobs,
        "executor_threads": threads,
        "jobstore": "MemoryJobStore",
    }
    done: list[float] = []  # when each job ran (its body only records the time)
    finished = threading.Event()

    def job() -> None:
        done.append(time.time())
        if len(done) >= jobs:
            finished.set()

    scheduler = _scheduler(threads)
    missed = _missed_counter(scheduler)
    due = math.ceil(time.time() + lead_s)
    trigger_at = datetime.fromtimestamp(due, UTC)
    t0 = time.monotonic()
    for i in range(jobs):
        scheduler.add_job(job, DateTrigger(run_date=trigger_at), id=f"aps-{i}")
    result["add_s"] = round(time.monotonic() - t0, 3)
    progress(f"APScheduler: {jobs} jobs due at once ({threads} threads)")
    scheduler.start()
    try:
        if due - time.time() < 0.5:
            result["warning"] = "jobs were added too late: the due instant had nearly passed"
        finished.wait(max(0.0, due - time.time()) + timeout_s)
        result["load_average"] = load_average()
    finally:
        scheduler.shutdown(wait=True)
    result["completed"] = len(done)
    result["missed_or_errors"] = missed[0]
    if done:
        last = max(done)
        result["due_to_last_job_s"] = round(last - due, 3)
        result["due_to_first_job_ms"] = round((min(done) - due) * 1000, 2)
        result["firings_per_s"] = round(len(done) / (last - due), 1) if last > due else None
        result["job_start_lag"] = latency_summary_ms(t - due for t in done)
    result["valid"] = len(done) == jobs and missed[0] == 0
    return result


def lag(
    jobs: int = 100,
    duration_s: float = 20.0,
    threads: int = 10,
    warmup_s: float = 2.0,
    grace_s: float = 2.0,
) -> dict[str, Any]:
    from apscheduler.triggers.interval import IntervalTrigger

    result: dict[str, Any] = {
        "jobs": jobs,
        "interval_s": 1,
        "duration_s": duration_s,
        "rate_per_s": jobs,
        "executor_threads": threads,
        "jobstore": "MemoryJobStore",
    }
    first_run = math.ceil(time.time()) + 1
    calls = [0] * jobs
    samples: list[tuple[float, float]] = []  # (scheduled, started)

    def make(i: int) -> Any:
        def job() -> None:
            now = time.time()
            scheduled = first_run + calls[i]
            calls[i] += 1
            samples.append((scheduled, now))

        return job

    scheduler = _scheduler(threads)
    missed = _missed_counter(scheduler)
    for i in range(jobs):
        scheduler.add_job(
            make(i),
            IntervalTrigger(seconds=1, start_date=datetime.fromtimestamp(first_run, UTC)),
            id=f"aps-lag-{i}",
        )
    start = first_run + warmup_s
    end = start + duration_s
    progress(f"APScheduler: {jobs} jobs every second; measuring {duration_s:g} s")
    scheduler.start()
    try:
        time.sleep(max(0.0, end - time.time()))
        result["load_average"] = load_average()
        time.sleep(grace_s)
    finally:
        scheduler.shutdown(wait=True)
    lags = [t - s for s, t in samples if start <= s < end]
    expected = int(round(jobs * duration_s))
    result["expected_firings"] = expected
    result["firings"] = len(lags)
    result["missed_or_errors"] = missed[0]
    result["lag"] = latency_summary_ms(lags)
    result["valid"] = len(lags) == expected and missed[0] == 0
    return result
