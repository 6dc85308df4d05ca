"""The worker agent against a real 3-node cluster: async handlers, progress, cancellation on
lease loss, graceful drain (SIGTERM) with and without a drain timeout, reconnect after failover.
Runtime: about 25 s (the failover test starts its own cluster).

Workers run in this process (``Worker.start``) except where a signal is needed: the SIGTERM
tests run a worker script in a subprocess, as a user would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import LocalCluster
from tests._util import wait_for
from tests.integration.conftest import client_env

pytestmark = pytest.mark.integration

HOUR_MS = 3600_000


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with cluster.client(retry_for=30) as c:
        yield c


def new_job(client: Client, queue: str, **kw: object) -> str:
    """A job that never fires by itself (hourly, far from now is irrelevant: we trigger it)."""
    name = f"agent-{uuid.uuid4().hex[:8]}"
    client.create_job(name, every_ms=HOUR_MS, queue=queue, **kw)  # type: ignore[arg-type]
    return name


def run_of(client: Client, run_id: str) -> types_pb2.Run:
    return client.get_run(run_id)


def started_worker(cluster: LocalCluster, queue: str, **kw: object) -> Worker:
    return Worker(
        cluster.endpoints_env,
        queues=[queue],
        worker_id=f"w-{queue}",
        credentials=cluster.credentials,
        **kw,
    )  # type: ignore[arg-type]


def test_async_handler_reports_progress_visible_in_get_run(
    cluster: LocalCluster, client: Client
) -> None:
    queue = f"q{uuid.uuid4().hex[:6]}"
    name = new_job(client, queue)
    go = threading.Event()
    seen: list[tuple[str, int, int]] = []
    worker = started_worker(cluster, queue)

    @worker.handler(name)
    async def handle(ctx: Context) -> None:
        assert threading.current_thread().name == "schedd-agent-asyncio"
        seen.append((ctx.run_id, ctx.fence, ctx.attempt))
        ctx.heartbeat("step 1/2: extracting")
        while not go.is_set():
            await asyncio.sleep(0.02)

    worker.start()
    try:
        run = client.trigger_job(name)
        wait_for(
            lambda: run_of(client, run.run_id).progress == "step 1/2: extracting",
            15,
            "the handler's progress in GetRun",
        )
        listed = [r for r in client.list_runs(name) if r.run_id == run.run_id]
        assert listed and listed[0].progress == "step 1/2: extracting"
        go.set()
        wait_for(
            lambda: run_of(client, run.run_id).state == types_pb2.RUN_STATE_SUCCEEDED,
            15,
            "the async handler's success",
        )
        done = run_of(client, run.run_id)
        assert done.progress == ""  # only leased runs have progress
        assert seen == [(run.run_id, done.fence, 1)]
    finally:
        go.set()
        worker.stop(drain_timeout=5)


def test_lost_lease_cancels_sync_and_async_handlers(cluster: LocalCluster, client: Client) -> None:
    """A run timeout makes the leader expire the lease and send LeasesLost: the agent sets
    ``ctx.cancelled`` (sync handler) and cancels the task (async handler)."""
    queue = f"q{uuid.uuid4().hex[:6]}"
    sync_job = new_job(client, queue, run_timeout_ms=1000, max_attempts=1)
    async_job = new_job(client, queue, run_timeout_ms=1000, max_attempts=1)
    sync_cancelled = threading.Event()
    async_cancelled = threading.Event()
    worker = started_worker(cluster, queue, concurrency=2)

    @worker.handler(sync_job)
    def slow(ctx: Context) -> None:
        if ctx.cancelled.wait(30):
            sync_cancelled.set()

    @worker.handler(async_job)
    async def slow_async(ctx: Context) -> None:
        try:
            await asyncio.sleep(30)  # the handler's work: it runs until the agent cancels it
        except asyncio.CancelledError:
            async_cancelled.set()
            raise

    worker.start()
    try:
        runs = [client.trigger_job(sync_job), client.trigger_job(async_job)]
        assert sync_cancelled.wait(15), "the sync handler was not cancelled"
        assert async_cancelled.wait(15), "the async handler's task was not cancelled"
        for run in runs:
            final = wait_for(
                lambda r=run: (
                    (x := run_of(client, r.run_id)).state == types_pb2.RUN_STATE_DEAD and x
                ),
                15,
                "the timed-out run to be dead",
            )
            assert "run timeout" in final.error  # type: ignore[attr-defined]
    finally:
        worker.stop(drain_timeout=5)


WORKER_SCRIPT = textwrap.dedent("""
    import sys, time, logging
    from schedd.agent import Worker

    endpoints, queue, job, mode, marker = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    worker = Worker(endpoints, queues=[queue], worker_id="drain-" + queue, drain_timeout=float(sys.argv[6]))

    @worker.handler(job)
    def handle(ctx):
        open(marker, "a").write(f"started {ctx.run_id} {ctx.fence}\\n")
        if mode == "finishes":
            deadline = time.monotonic() + 3.0   # longer than the gap to SIGTERM, inside the drain
            while time.monotonic() < deadline:
                ctx.heartbeat("working")
                time.sleep(0.05)
            open(marker, "a").write("finished\\n")
        else:                                    # stuck until cancelled
            ctx.cancelled.wait(60)
            open(marker, "a").write("cancelled\\n")

    worker.run()
    print("worker exited", flush=True)
""")


def start_worker_proc(
    tmp_path: Path, cluster: LocalCluster, queue: str, job: str, mode: str, drain_timeout: float
) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            cluster.endpoints_env,
            queue,
            job,
            mode,
            str(marker),
            str(drain_timeout),
        ],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "worker.log", "w"),
        text=True,
        env=dict(os.environ, **client_env(cluster.endpoints_env)),
    )
    return proc, marker


def test_sigterm_drain_lets_a_running_handler_finish(
    tmp_path: Path, cluster: LocalCluster, client: Client
) -> None:
    queue = f"q{uuid.uuid4().hex[:6]}"
    name = new_job(client, queue)
    proc, marker = start_worker_proc(tmp_path, cluster, queue, name, "finishes", drain_timeout=20)
    try:
        run = client.trigger_job(name)
        wait_for(
            lambda: marker.exists() and "started" in marker.read_text(), 20, "the handler to start"
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "worker exited" in out
        assert marker.read_text().endswith("finished\n")
        final = run_of(client, run.run_id)
        assert final.state == types_pb2.RUN_STATE_SUCCEEDED and final.attempt == 1
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_drain_timeout_releases_the_lease_without_waiting_for_expiry(
    tmp_path: Path, cluster: LocalCluster, client: Client
) -> None:
    queue = f"q{uuid.uuid4().hex[:6]}"
    name = new_job(client, queue)
    proc, marker = start_worker_proc(tmp_path, cluster, queue, name, "stuck", drain_timeout=0.5)
    try:
        run = client.trigger_job(name)
        wait_for(
            lambda: marker.exists() and "started" in marker.read_text(), 20, "the handler to start"
        )
        leased = run_of(client, run.run_id)
        assert leased.state == types_pb2.RUN_STATE_LEASED
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # The lease TTL is 3 s and heartbeats go on during the 0.5 s drain: an expiry would take
        # at least 3.5 s; a release brings the run back long before.
        pending = wait_for(
            lambda: (r := run_of(client, run.run_id)).state == types_pb2.RUN_STATE_PENDING and r,
            10,
            "the released run to be pending",
            every=0.05,
        )
        took = time.monotonic() - t0
        assert took < 3.0, (
            f"the run came back after {took:.2f}s: that is a lease expiry, not a release"
        )
        assert "released by worker drain-" in pending.error  # type: ignore[attr-defined]
        assert (pending.attempt, pending.attempt_base) == (2, 1)  # type: ignore[attr-defined]
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "worker exited" in out
        assert marker.read_text().endswith("cancelled\n")
    finally:
        if proc.poll() is None:
            proc.kill()

    # Another worker then runs it as a normal attempt, with a newer fence.
    worker = started_worker(cluster, queue)
    fences: list[int] = []
    worker.handler(name)(lambda ctx: fences.append(ctx.fence))
    worker.start()
    try:
        wait_for(
            lambda: run_of(client, run.run_id).state == types_pb2.RUN_STATE_SUCCEEDED,
            15,
            "the rerun",
        )
        assert fences and fences[0] > leased.fence
    finally:
        worker.stop(drain_timeout=5)


def test_reconnects_to_the_new_leader_and_reattaches_its_running_firing(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    """Kill the leader while a handler runs: the agent finds the new leader, re-attaches the
    lease under the same fence, and its completion is accepted: no second attempt. (Own cluster
    with a 10 s lease TTL: election plus reconnect must fit in one lease period.)"""
    cluster = make_cluster(extra_args=["--lease-ttl", "10s", "--heartbeat-interval", "500ms"])
    queue = "failover"
    go = threading.Event()
    fences: list[int] = []
    worker = started_worker(cluster, queue)
    with cluster.client(retry_for=30) as client:
        name = new_job(client, queue)

        @worker.handler(name)
        def handle(ctx: Context) -> None:
            fences.append(ctx.fence)
            go.wait(60)
            if ctx.cancelled.is_set():
                raise RuntimeError("cancelled")

        worker.start()
        old = cluster.leader()
        assert old is not None
        try:
            run = client.trigger_job(name)
            wait_for(lambda: fences, 15, "the handler to start")
            t0 = time.monotonic()
            cluster.kill_node(old)
            new = cluster.wait_for_leader(timeout=30, exclude=old)
            wait_for(
                lambda: (
                    (s := worker._shared.session) is not None and s.welcomed and s.node_id == new
                ),
                15,
                "the worker to reconnect to the new leader",
            )
            took = time.monotonic() - t0
            go.set()
            final = wait_for(
                lambda: (
                    (r := run_of(client, run.run_id)).state == types_pb2.RUN_STATE_SUCCEEDED and r
                ),
                20,
                "the completion through the new leader",
            )
            assert fences == [fences[0]], (
                f"ran again after the failover (reconnect took {took:.1f}s)"
            )
            assert final.fence == fences[0] and final.attempt == 1  # type: ignore[attr-defined]
        finally:
            go.set()
            worker.stop(drain_timeout=5)
