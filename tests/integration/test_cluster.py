"""End to end on a real 3-node cluster: a job firing every second, a real shell worker, the
leader SIGKILLed mid-run, then a full-cluster restart."""

from __future__ import annotations

import signal
import time

import pytest

from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import LocalCluster
from tests._util import wait_for

from .conftest import start_shell_worker

pytestmark = pytest.mark.integration

SUCCEEDED = types_pb2.RUN_STATE_SUCCEEDED


def succeeded_after(client: Client, job: str, after_ms: int) -> list[types_pb2.Run]:
    return [
        r
        for r in client.list_runs(job=job, limit=10_000)
        if r.state == SUCCEEDED and r.scheduled_ms > after_ms
    ]


def test_leader_kill_loses_no_firing_and_runs_none_twice(make_cluster, tmp_path) -> None:
    cluster: LocalCluster = make_cluster()
    effects = tmp_path / "effects.log"
    effects.touch()
    worker = start_shell_worker(
        cluster.endpoints_env, str(effects), str(tmp_path / "worker.log"), "--concurrency", "4"
    )
    try:
        with cluster.client(timeout=5, retry_for=30) as client:
            job = client.create_job("tick", cron="* * * * * *", request_id="create-tick")
            first_due = job.next_due_ms
            wait_for(
                lambda: len(succeeded_after(client, "tick", 0)) >= 3, 30, "3 runs before the fault"
            )

            old_leader = cluster.wait_for_leader()
            killed_at_ms = int(time.time() * 1000)
            t_kill = time.monotonic()
            cluster.kill_node(old_leader, signal.SIGKILL)
            new_leader = cluster.wait_for_leader(timeout=30, exclude=old_leader)
            wait_for(
                lambda: succeeded_after(client, "tick", killed_at_ms),
                30,
                "a firing scheduled after the kill to succeed under the new leader",
            )
            failover_s = time.monotonic() - t_kill
            assert failover_s < 15, f"firings resumed {failover_s:.1f}s after the leader was killed"

            wait_for(
                lambda: len(succeeded_after(client, "tick", killed_at_ms)) >= 3,
                30,
                "3 firings scheduled after the kill to succeed",
            )
            paused = client.pause_job("tick")
            last_due = paused.next_due_ms - 1000  # slots before next_due were all claimed

            def all_done() -> list[types_pb2.Run] | None:
                runs = [
                    r
                    for r in client.list_runs(job="tick", limit=10_000)
                    if r.scheduled_ms <= last_due
                ]
                return runs if runs and all(r.state == SUCCEEDED for r in runs) else None

            runs = wait_for(all_done, 40, "every claimed run to succeed")
            scheduled = [r.scheduled_ms for r in runs]
            expected = list(range(first_due, last_due + 1, 1000))
            missing = sorted(set(expected) - set(scheduled))
            assert not missing, f"lost firings (P1): {missing}"
            assert scheduled == expected, "each scheduled second has exactly one run"
            assert len({r.run_id for r in runs}) == len(runs)

            # Every succeeded run's winning fence produced an effect; fences are unique.
            lines = [line.split() for line in effects.read_text().splitlines() if line.strip()]
            effect_fences = {(rid, int(f)) for rid, f, _ in lines}
            for r in runs:
                assert (r.run_id, r.fence) in effect_fences, (
                    f"no effect recorded for {r.run_id} fence {r.fence}"
                )
            fences = [r.fence for r in runs]
            assert len(set(fences)) == len(fences)
            print(
                f"failover: new leader {new_leader}, firings resumed after {failover_s:.2f}s; "
                f"{len(runs)} runs, {len(lines)} effects"
            )

        cluster.start_node(old_leader)
        cluster.wait_converged(timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_full_restart_keeps_every_job_and_run(make_cluster) -> None:
    cluster: LocalCluster = make_cluster()
    with cluster.client(timeout=5, retry_for=30) as client:
        client.create_job("hourly", cron="0 * * * *", tz="Europe/Berlin", payload='{"k": 1}')
        client.create_job("once", at_ms=int(time.time() * 1000) + 3600_000)
        for i in range(5):
            client.trigger_job("hourly", request_id=f"t{i}")
        client.trigger_job("hourly", request_id="t0")  # a retried trigger creates nothing new
        jobs_before = client.list_jobs()
        runs_before = client.list_runs(limit=1000)
        assert len(runs_before) == 5
    index, digest = cluster.wait_converged()
    for spec in cluster.specs:
        cluster.kill_node(spec.node_id, signal.SIGKILL)
    cluster.start()
    cluster.wait_for_leader(timeout=30)
    with cluster.client(timeout=5, retry_for=30) as client:
        assert client.list_jobs() == jobs_before
        assert client.list_runs(limit=1000) == runs_before
    new_index, new_digest = cluster.wait_converged()
    assert new_digest == digest and new_index >= index


def test_interval_job_with_jitter_fires_every_slot_once(make_cluster, tmp_path) -> None:
    cluster: LocalCluster = make_cluster()
    effects = tmp_path / "effects.log"
    effects.touch()
    worker = start_shell_worker(
        cluster.endpoints_env, str(effects), str(tmp_path / "worker.log"), "--concurrency", "2"
    )
    try:
        with cluster.client(timeout=5, retry_for=30) as client:
            job = client.create_job("every-1s", every_ms=1000, jitter_ms=400)
            assert job.schedule.kind == types_pb2.SCHEDULE_KIND_INTERVAL
            wait_for(
                lambda: len(succeeded_after(client, "every-1s", 0)) >= 5, 30, "5 interval runs"
            )
            last = client.pause_job("every-1s")
            runs = wait_for(
                lambda: (lambda rs: rs if rs and all(r.state == SUCCEEDED for r in rs) else None)(
                    client.list_runs(job="every-1s", limit=1000)
                ),
                20,
                "the claimed runs to finish",
            )
            slots = [r.scheduled_ms for r in runs]
            # The run's identity is the un-jittered slot: consecutive whole seconds, none skipped.
            assert all(s % 1000 == 0 for s in slots)
            assert slots == list(range(slots[0], slots[-1] + 1000, 1000))
            assert last.state == types_pb2.JOB_STATE_PAUSED
    finally:
        worker.terminate()
        worker.wait(timeout=20)
