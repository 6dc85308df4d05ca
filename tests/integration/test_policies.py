"""Scheduling policies on a real 3-node cluster with real shell workers: overlap with a slow
worker, misfire after the whole cluster was stopped, pause/resume, backfill, explain, and bad
input answered INVALID_ARGUMENT naming the field with nothing changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schedd import errors
from schedd.pb import types_pb2 as S
from schedd.testing import LocalCluster
from tests._util import wait_for
from tests.integration.conftest import client_env

pytestmark = pytest.mark.integration


def shell_worker(
    endpoints: str, script: str, log_path: Path, *extra: str
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "schedctl",
        "--endpoints",
        endpoints,
        "worker",
        "run",
        *extra,
        "--",
        "sh",
        "-c",
        script,
    ]
    return subprocess.Popen(
        cmd,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, **client_env(endpoints)),
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def covering(runs: list, slot: int) -> list:
    return [
        r
        for r in runs
        if r.scheduled_ms == slot
        or (r.state == S.RUN_STATE_SKIPPED and r.scheduled_ms <= slot <= r.skipped_until_ms)
    ]


@pytest.mark.parametrize("policy", ["forbid", "replace"])
def test_overlap_policy_with_a_slow_worker(
    cluster: LocalCluster, tmp_path: Path, policy: str
) -> None:
    """Every second a slot comes due while the last run still sleeps: forbid skips the new one,
    replace cancels the old one (its lease is revoked and its late result is discarded). Never
    two runs at once, and every slot has exactly one record."""
    name = f"slow-{policy}"
    effects = tmp_path / "effects"
    effects.touch()
    worker = shell_worker(
        cluster.endpoints_env,
        f'sleep 2.5; echo "$SCHEDD_RUN_ID" >> {effects}',
        tmp_path / "worker.log",
        "--concurrency",
        "4",
    )
    try:
        with cluster.client(timeout=5, retry_for=30) as client:
            job = client.create_job(name, every_ms=1000, overlap=policy)
            first = job.next_due_ms

            def seven_slots_and_the_policy_at_work() -> bool:
                if client.get_job(name).next_due_ms < first + 7000:
                    return False
                runs = client.list_runs(job=name, limit=1000)
                if policy == "forbid":
                    return any(r.state == S.RUN_STATE_SKIPPED for r in runs)
                return sum(r.state == S.RUN_STATE_CANCELLED for r in runs) >= 3

            wait_for(
                seven_slots_and_the_policy_at_work, 60, f"7 slots decided with {policy} at work"
            )
            client.pause_job(name)
            runs = client.list_runs(job=name, limit=1000)
            last_slot = max(
                r.scheduled_ms if r.state != S.RUN_STATE_SKIPPED else r.skipped_until_ms
                for r in runs
            )
            for slot in range(first, last_slot + 1, 1000):
                assert len(covering(runs, slot)) == 1, f"slot {slot}: {covering(runs, slot)}"
            skipped = [r for r in runs if r.state == S.RUN_STATE_SKIPPED]
            cancelled = [r for r in runs if r.state == S.RUN_STATE_CANCELLED]
            if policy == "forbid":
                assert skipped and all(r.skip_reason == S.SKIP_REASON_OVERLAP for r in skipped)
                assert not cancelled
            else:
                assert len(cancelled) >= 3 and not skipped
                assert all("replaced by run" in r.note for r in cancelled)
            leased = [r for r in runs if r.state in (S.RUN_STATE_LEASED, S.RUN_STATE_SUCCEEDED)]
            spans = sorted((r.started_ms, r.finished_ms or 1 << 62) for r in leased)
            for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
                assert start >= end - 50, (
                    f"two runs overlapped: {spans}"
                )  # 50 ms: stamps of one entry
            if cancelled:
                # Part of the test, a window in which nothing may happen: a replaced run's
                # command (sleep 2.5) would have written its effect by now had it not been stopped.
                time.sleep(3)
            done = set(effects.read_text().split())
            assert not done & {r.run_id for r in cancelled}, "a replaced run's effect was counted"
    finally:
        stop(worker)


def test_misfire_after_the_whole_cluster_was_stopped(make_cluster, tmp_path: Path) -> None:
    """Slots that came due while every node was down: fire_once runs one catch-up for them and
    records the rest as coalesced; skip records them all; nothing is lost or doubled."""
    cluster: LocalCluster = make_cluster()
    with cluster.client(timeout=5, retry_for=30) as client:
        once = client.create_job("once", every_ms=1000, misfire="fire_once", misfire_grace_ms=1000)
        skip = client.create_job("skip", every_ms=1000, misfire="skip", misfire_grace_ms=1000)
        first = once.next_due_ms
        wait_for(
            lambda: (
                client.get_job("once").next_due_ms > first
                and client.get_job("skip").next_due_ms > skip.next_due_ms
            ),
            20,
            "both jobs to fire once",
        )
    for spec in cluster.specs:
        cluster.kill_node(spec.node_id, signal.SIGKILL)
    time.sleep(6)  # the outage under test: about 6 slots come due while every node is down
    restarted = int(time.time() * 1000)
    cluster.start()
    cluster.wait_for_leader(timeout=30)
    with cluster.client(timeout=5, retry_for=30) as client:
        wait_for(
            lambda: client.get_job("once").next_due_ms > restarted + 1000, 20, "firing to resume"
        )
        for name in ("once", "skip"):
            client.pause_job(name)
        for name in ("once", "skip"):
            runs = client.list_runs(job=name, limit=1000)
            end = client.get_job(name).next_due_ms
            for slot in range(first, end, 1000):
                assert len(covering(runs, slot)) == 1, (
                    f"{name}: slot {slot} has {covering(runs, slot)}"
                )
            catchup = [r for r in runs if r.origin == S.RUN_ORIGIN_CATCHUP]
            skipped = [r for r in runs if r.state == S.RUN_STATE_SKIPPED]
            if name == "once":
                assert len(catchup) == 1
                assert {r.skip_reason for r in skipped} == {S.SKIP_REASON_COALESCED}
            else:
                assert not catchup
                assert {r.skip_reason for r in skipped} == {S.SKIP_REASON_MISFIRE}
            assert sum(r.skipped_count for r in skipped) >= 4  # about 6 s down, 1 s grace
        e = client.explain_job("skip", skipped[0].scheduled_ms)
        assert e.verdict == "skipped" and "misfire" in e.explanation


def test_pause_resume_does_not_fire_a_burst(cluster: LocalCluster) -> None:
    with cluster.client(timeout=5, retry_for=30) as client:
        client.create_job("pausable", every_ms=1000, misfire="skip")
        wait_for(lambda: client.list_runs(job="pausable"), 20, "the job's first firing")
        paused = client.pause_job("pausable")
        time.sleep(3.2)  # the pause under test: 3 slots come due while the job is paused
        resumed = client.resume_job("pausable")
        # A burst would fire the paused slots before any later one: once a slot after the resume
        # has fired, the dispatcher has had its chance to burst.
        wait_for(
            lambda: [
                r
                for r in client.list_runs(job="pausable", limit=100)
                if r.state != S.RUN_STATE_SKIPPED and r.scheduled_ms >= resumed.resumed_ms
            ],
            20,
            "a firing after the resume",
        )
        client.pause_job("pausable")
        runs = client.list_runs(job="pausable", limit=100)
        paused_slots = [r for r in runs if r.state == S.RUN_STATE_SKIPPED]
        assert paused_slots and {r.skip_reason for r in paused_slots} == {S.SKIP_REASON_PAUSED}
        fired_in_pause = [
            r
            for r in runs
            if r.state != S.RUN_STATE_SKIPPED
            and paused.paused_ms <= r.scheduled_ms < paused.paused_ms + 3000
        ]
        assert not fired_in_pause
        e = client.explain_job("pausable", paused_slots[0].scheduled_ms)
        assert e.verdict == "skipped" and "paused" in e.explanation


def test_backfill_creates_each_slot_once(cluster: LocalCluster) -> None:
    with cluster.client(timeout=5, retry_for=30) as client:
        client.create_job("hourly-report", cron="0 * * * *")
        now = int(time.time() * 1000)
        start = now - now % 3_600_000 - 10 * 3_600_000
        chunks = list(client.backfill("hourly-report", start, start + 9 * 3_600_000, chunk=4))
        assert [c.created for c in chunks] == [4, 4, 2]
        assert chunks[0].total_slots == 10
        again = list(client.backfill("hourly-report", start, start + 9 * 3_600_000, chunk=100))
        assert [(c.created, c.existing) for c in again] == [(0, 10)]
        runs = client.list_runs(job="hourly-report", limit=100)
        assert sorted(r.scheduled_ms for r in runs) == [start + k * 3_600_000 for k in range(10)]
        assert {r.origin for r in runs} == {S.RUN_ORIGIN_BACKFILL}


def test_update_and_chaining_and_bad_input(cluster: LocalCluster) -> None:
    with cluster.client(timeout=5, retry_for=30) as client:
        a = client.create_job("chain-a", cron="@daily")
        client.create_job("chain-b", cron="@daily", on_success="chain-a")
        before = client.list_jobs()
        bad = [
            (dict(cron="@daily", on_failure="chain-b"), "on_failure"),  # a -> b -> a
            (dict(cron="@daily", on_success="nope"), "on_success"),  # no such job
            (dict(cron="61 * * * *"), "schedule.cron"),
            (dict(cron="@daily", tz="Mars/Olympus"), "schedule.timezone"),
            (dict(cron="@daily", retry={"max_attempts": 1000}), "retry.max_attempts"),
            (
                dict(cron="@daily", retry={"initial_backoff_ms": 5000, "max_backoff_ms": 10}),
                "retry.max_backoff_ms",
            ),
            (dict(cron="@daily", payload='"' + "x" * 70_000 + '"'), "payload"),
            (dict(at_ms=int(time.time() * 1000) - 3_600_000), "schedule.at_ms"),
            (dict(cron="@daily", overlap="forbid", max_concurrent=0), "max_concurrent"),
        ]
        for kwargs, field in bad:
            with pytest.raises(errors.InvalidArgument) as info:
                client.update_job("chain-a", expect_version=a.version, **kwargs)
            assert info.value.field == field, (kwargs, info.value)
        assert client.list_jobs() == before
        with pytest.raises(errors.FailedPrecondition):
            client.update_job("chain-a", expect_version=a.version + 5, cron="@hourly")
        updated = client.update_job("chain-a", expect_version=a.version, cron="@hourly", priority=7)
        assert updated.version == a.version + 1 and updated.priority == 7
        past = client.create_job(
            "past-once", at_ms=int(time.time() * 1000) - 3_600_000, allow_past=True
        )
        assert past.state == S.JOB_STATE_ACTIVE
        wait_for(lambda: client.list_runs(job="past-once"), 10, "the past one-shot to fire at once")


def test_a_tagged_job_goes_only_to_a_worker_carrying_its_tags(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    effects.touch()
    script = f'echo "$SCHEDD_RUN_ID $SCHEDD_WORKER_ID" >> {effects}'
    plain = shell_worker(
        cluster.endpoints_env,
        script,
        tmp_path / "plain.log",
        "--queue",
        "tagged",
        "--worker-id",
        "plain",
    )
    try:
        with cluster.client(timeout=5, retry_for=30) as client:
            client.create_job("needs-gpu", every_ms=1000, queue="tagged", tags={"gpu": "a100"})
            wait_for(lambda: client.list_runs(job="needs-gpu"), 20, "a firing of the tagged job")
            # Part of the test, a window in which nothing may happen: the untagged worker serves
            # the queue and must not get the pending firing.
            time.sleep(2.5)
            assert effects.read_text() == "", "a worker without the tag got a firing"
            gpu = shell_worker(
                cluster.endpoints_env,
                script,
                tmp_path / "gpu.log",
                "--queue",
                "tagged",
                "--worker-id",
                "gpu",
                "--tag",
                "gpu=a100",
                "--tag",
                "zone=eu",
            )
            try:
                wait_for(
                    lambda: effects.read_text().count(" gpu") >= 3, 20, "the tagged worker's runs"
                )
            finally:
                client.pause_job("needs-gpu")
                stop(gpu)
            assert {line.split()[1] for line in effects.read_text().splitlines()} == {"gpu"}
    finally:
        stop(plain)
