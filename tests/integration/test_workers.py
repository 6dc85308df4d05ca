"""Workers as the leader sees them, against a real 3-node cluster with real workers: firings go
only to workers with a handler for the job (Hello.jobs), ``worker list``, why a run is stuck
pending (``job explain``), and cancelling a run (``run cancel``).

Every test here failed before the change it pins (see CHANGELOG, "First hour").
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schedd import errors
from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import LocalCluster
from tests._util import wait_for
from tests.integration.conftest import schedctl

pytestmark = pytest.mark.integration

HOUR_MS = 3600_000


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with cluster.client(retry_for=30) as c:
        yield c


def uid() -> str:
    return uuid.uuid4().hex[:6]


def worker(cluster: LocalCluster, queue: str, worker_id: str, **kw: object) -> Worker:
    return Worker(
        cluster.endpoints_env,
        queues=[queue],
        worker_id=worker_id,
        credentials=cluster.credentials,
        **kw,
    )  # type: ignore[arg-type]


def test_two_workers_of_one_queue_each_get_only_their_jobs(
    cluster: LocalCluster, client: Client
) -> None:
    """The README tour's ``nightly-report`` worker and examples/daily_report.py share the queue
    ``reports``: before Hello.jobs, a firing could go to the worker without its handler and fail
    with "no handler registered", burning attempts into a dead letter."""
    queue = f"reports-{uid()}"
    nightly, daily = f"nightly-{uid()}", f"daily-{uid()}"
    for name in (nightly, daily):
        client.create_job(name, every_ms=HOUR_MS, queue=queue, max_attempts=1)
    ran: dict[str, list[str]] = {nightly: [], daily: []}
    w1 = worker(cluster, queue, f"w-nightly-{uid()}", concurrency=2)
    w2 = worker(cluster, queue, f"w-daily-{uid()}", concurrency=2)

    @w1.handler(nightly)
    def run_nightly(ctx: Context) -> None:
        ran[nightly].append(ctx.worker_id)

    @w2.handler(daily)
    def run_daily(ctx: Context) -> None:
        ran[daily].append(ctx.worker_id)

    w1.start()
    w2.start()
    try:
        runs = [client.trigger_job(n).run_id for _ in range(4) for n in (nightly, daily)]

        def done() -> bool:
            states = [client.get_run(r).state for r in runs]
            return all(s == types_pb2.RUN_STATE_SUCCEEDED for s in states)

        wait_for(done, 30, "every run succeeded on the worker with its handler")
        for r in runs:
            run = client.get_run(r)
            assert run.attempt == 1 and run.error == "", run
            want = w1.worker_id if run.job == nightly else w2.worker_id
            assert run.worker_id == want, run
        assert set(ran[nightly]) == {w1.worker_id} and set(ran[daily]) == {w2.worker_id}
        assert not client.list_runs(nightly, state=types_pb2.RUN_STATE_DEAD)
        assert not client.list_runs(daily, state=types_pb2.RUN_STATE_DEAD)
    finally:
        w1.stop(drain_timeout=5)
        w2.stop(drain_timeout=5)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a failed schedctl; fails on a traceback or more lines."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_worker_list_shows_attached_workers_with_their_leases(
    cluster: LocalCluster, client: Client
) -> None:
    queue = f"list-{uid()}"
    name = f"slow-{uid()}"
    client.create_job(name, every_ms=HOUR_MS, queue=queue)
    go = threading.Event()
    w = worker(cluster, queue, f"w-list-{uid()}", concurrency=3, tags={"zone": "a"})

    @w.handler(name)
    def slow(ctx: Context) -> None:
        go.wait(20)

    w.start()
    try:
        run = client.trigger_job(name)
        wait_for(
            lambda: client.get_run(run.run_id).state == types_pb2.RUN_STATE_LEASED,
            20,
            "the run leased",
        )
        [info] = [x for x in client.list_workers() if x.worker_id == w.worker_id]
        assert info.queues == (queue,) and info.tags == {"zone": "a"}
        assert info.concurrency == 3 and info.jobs == (name,) and info.namespace == "default"
        assert (info.leases, info.run_ids) == (1, (run.run_id,))
        assert info.principal and not info.draining
        now_ms = int(time.time() * 1000)
        assert now_ms - 60_000 < info.connected_ms <= info.last_seen_ms <= now_ms + 5_000
        # the real CLI: a table, and the same as JSON
        proc = schedctl(cluster.endpoints_env, "worker", "list")
        assert proc.returncode == 0, proc.stderr
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith(w.worker_id)]
        assert queue in line and "zone=a" in line and "1/3" in line and name in line
        proc = schedctl(cluster.endpoints_env, "worker", "list", "--json")
        assert proc.returncode == 0, proc.stderr
        [doc] = [d for d in json.loads(proc.stdout) if d["worker_id"] == w.worker_id]
        assert doc["run_ids"] == [run.run_id] and doc["leases"] == 1
        # another namespace sees none of them
        assert all(x.worker_id != w.worker_id for x in client.list_workers("team-x"))
    finally:
        go.set()
        w.stop(drain_timeout=5)


def test_cancel_a_running_run_cancels_its_handler_and_refuses_the_late_result(
    cluster: LocalCluster, client: Client
) -> None:
    queue = f"cancel-{uid()}"
    name = f"long-{uid()}"
    client.create_job(name, every_ms=HOUR_MS, queue=queue)
    seen: list[str] = []
    w = worker(cluster, queue, f"w-cancel-{uid()}")

    @w.handler(name)
    def long(ctx: Context) -> None:
        if ctx.cancelled.wait(30):
            seen.append("cancelled")

    w.start()
    try:
        run = client.trigger_job(name)
        wait_for(
            lambda: client.get_run(run.run_id).state == types_pb2.RUN_STATE_LEASED,
            20,
            "the run leased",
        )
        leased = client.get_run(run.run_id)
        proc = schedctl(
            cluster.endpoints_env, "run", "cancel", run.run_id, "--reason", "wrong input"
        )
        assert proc.returncode == 0, proc.stderr
        assert f"cancelled run {run.run_id}" in proc.stdout and "wrong input" in proc.stdout
        wait_for(lambda: seen == ["cancelled"], 10, "the handler saw ctx.cancelled")
        done = client.get_run(run.run_id)
        assert done.state == types_pb2.RUN_STATE_CANCELLED and "wrong input" in done.note
        with pytest.raises(errors.StaleFence):
            client.complete_run(run.run_id, leased.fence, success=True)
        time.sleep(1)  # the worker's own (late) completion is refused too: the run stays
        assert client.get_run(run.run_id).state == types_pb2.RUN_STATE_CANCELLED
        # a finished run: one line, exit 1, the state named
        proc = schedctl(cluster.endpoints_env, "run", "cancel", run.run_id)
        assert proc.returncode == 1
        assert "only a pending, leased or waiting run" in one_line_error(proc)
        with pytest.raises(errors.FailedPrecondition):
            client.cancel_run(run.run_id)
        proc = schedctl(cluster.endpoints_env, "run", "cancel", "no-such:1:1")
        assert proc.returncode != 0 and "no run" in one_line_error(proc)
        records = [
            r for r in client.list_audit(20, target=run.run_id)[0] if r.action == "cancel_run"
        ]
        # newest first: the refused second cancel, then the one that cancelled it
        assert [r.code for r in records] == ["FAILED_PRECONDITION", "FAILED_PRECONDITION", "OK"]
    finally:
        w.stop(drain_timeout=5)


def test_cancel_a_pending_run_and_list_workers_with_the_async_client(
    cluster: LocalCluster, client: Client
) -> None:
    name = f"nobody-{uid()}"
    client.create_job(name, every_ms=HOUR_MS, queue=f"nobody-{uid()}")
    run = client.trigger_job(name)

    async def go() -> tuple[Any, list[Any]]:
        async with cluster.async_client(retry_for=30) as ac:
            return await ac.cancel_run(run.run_id, "not needed"), await ac.list_workers()

    out, workers = asyncio.run(go())
    assert out.state == types_pb2.RUN_STATE_CANCELLED and out.namespace == "default"
    assert "not needed" in out.note and isinstance(workers, list)
    assert client.get_run(run.run_id).state == types_pb2.RUN_STATE_CANCELLED


def test_explain_names_why_a_run_is_stuck_pending(cluster: LocalCluster, client: Client) -> None:
    queue = f"nobody-{uid()}"
    name = f"stuck-{uid()}"
    client.create_job(name, every_ms=2000, queue=queue, tags={"gpu": "a100"})
    try:
        wait_for(
            lambda: client.list_runs(name, state=types_pb2.RUN_STATE_PENDING),
            20,
            "a pending run",
        )
        slot = client.list_runs(name, state=types_pb2.RUN_STATE_PENDING)[0].scheduled_ms
        ans = client.explain_job(name, slot)
        assert (ans.verdict, ans.pending_cause) == ("pending", "no_worker"), ans
        assert f"No worker serves queue {queue!r}" in ans.explanation
        # a worker of the queue, with other tags: the tags are named
        w = worker(cluster, queue, f"w-t4-{uid()}", tags={"gpu": "t4"})
        w.handler(name)(lambda ctx: None)
        w.start()
        try:
            wait_for(
                lambda: client.explain_job(name, slot).pending_cause == "tags",
                20,
                "explain names the tag mismatch",
            )
            assert "gpu=a100" in client.explain_job(name, slot).explanation
            proc = schedctl(cluster.endpoints_env, "job", "explain", name)
            assert proc.returncode == 0, proc.stderr
            assert "pending (tags)" in proc.stdout and w.worker_id in proc.stdout
        finally:
            w.stop(drain_timeout=5)
        # the right tags, but no handler for the job
        w2 = worker(cluster, queue, f"w-a100-{uid()}", tags={"gpu": "a100"})
        w2.handler("some-other-job")(lambda ctx: None)
        w2.start()
        try:
            wait_for(
                lambda: client.explain_job(name, slot).pending_cause == "no_handler",
                20,
                "explain names the missing handler",
            )
        finally:
            w2.stop(drain_timeout=5)
    finally:
        client.delete_job(name)


def test_the_shell_worker_runs_only_the_jobs_it_is_given(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """`schedctl worker run --job A`: a shell worker sharing a queue runs A only; B waits for a
    worker that runs it instead of being run by the wrong command."""
    queue = f"shell-{uid()}"
    a, b = f"a-{uid()}", f"b-{uid()}"
    for name in (a, b):
        client.create_job(name, every_ms=HOUR_MS, queue=queue)
    env = dict(os.environ, **cluster.worker_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "schedctl", "worker", "run", "--queue", queue, "--job", a]
        + ["--worker-id", f"shell-{uid()}", "--", "true"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "worker.log", "w"),
    )
    try:
        ra, rb = client.trigger_job(a).run_id, client.trigger_job(b).run_id
        wait_for(
            lambda: client.get_run(ra).state == types_pb2.RUN_STATE_SUCCEEDED,
            30,
            "job A run by the shell worker",
        )
        run_b = client.get_run(rb)
        assert run_b.state == types_pb2.RUN_STATE_PENDING and run_b.attempt == 1
        [info] = [w for w in client.list_workers() if w.queues == (queue,)]
        assert info.jobs == (a,)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_high_priority_run_goes_first_however_long_the_backlog(
    cluster: LocalCluster, client: Client
) -> None:
    """300 low-priority runs wait in a queue nobody serves; an urgent one becomes PENDING after
    them. The first run a worker of that queue gets is the urgent one. Before the leader kept
    its PENDING runs in memory in grant order, it read only the oldest 200 of a queue per tick,
    so the urgent run waited behind the backlog."""
    queue = f"backlog-{uid()}"
    prefix = f"low-{uid()}-"
    due = int(time.time() * 1000) + 3000
    results = client.create_jobs(
        [{"name": f"{prefix}{i:03d}", "at_ms": due, "queue": queue} for i in range(300)]
    )
    assert all(r.ok for r in results), results[:3]
    urgent = f"urgent-{uid()}"
    client.create_job(urgent, at_ms=due + 500, queue=queue, priority=9)

    def pending() -> int:
        runs = client.list_runs(state=types_pb2.RUN_STATE_PENDING, limit=10_000)
        return sum(1 for r in runs if r.job.startswith(prefix) or r.job == urgent)

    wait_for(lambda: pending() == 301, 60, "every run pending (no worker serves the queue)")
    order: list[str] = []
    w = worker(cluster, queue, f"w-backlog-{uid()}", concurrency=1)

    @w.handler("*")
    def handle(ctx: Context) -> None:
        order.append(ctx.job)

    w.start()
    try:
        wait_for(lambda: len(order) >= 3, 30, "the worker ran its first runs")
        assert order[0] == urgent, order[:5]
    finally:
        w.stop(drain_timeout=5)


def test_a_run_nobody_takes_ends_dead_at_its_dispatch_deadline(
    cluster: LocalCluster, client: Client
) -> None:
    """A run of a queue no worker serves, with a dispatch timeout: the leader's housekeeping
    finds it past its deadline (the pending index keeps the deadlines) and it ends DEAD with a
    message saying why, instead of waiting for a worker forever."""
    name = f"strict-{uid()}"
    client.create_job(
        name, every_ms=HOUR_MS, queue=f"nobody-{uid()}", dispatch_timeout_ms=1000, max_attempts=1
    )
    run = client.trigger_job(name)
    wait_for(
        lambda: client.get_run(run.run_id).state == types_pb2.RUN_STATE_DEAD,
        30,
        "the run ended DEAD at its dispatch deadline",
    )
    ended = client.get_run(run.run_id)
    assert "dispatch timeout" in ended.error and ended.attempt == 1, ended
