"""Firing ahead (``schedd run --fire-ahead``) on a real 3-node cluster with a real agent.

The window is 3 s here (100 ms by default) so that the test can see a run leased before its due
time, and pause the job inside the window. Checked: the handler starts at the due time, not at
the grant (the agent waits for ``Firing.start_at_ms``); a pause inside the window takes the
early run back, its worker never runs it, and the resumed job treats the slot as missed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.pb import types_pb2
from schedd.state.apply import features
from schedd.testing import LocalCluster
from tests._util import wait_for
from tests.integration.conftest import FAST, register

pytestmark = pytest.mark.integration

AHEAD_S = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(
        str(tmp_path_factory.mktemp("fire-ahead")),
        nodes=3,
        # a longer lease than FAST's 3 s: the window may be at most half of it
        extra_args=[*FAST, "--lease-ttl", "10s", "--fire-ahead", f"{AHEAD_S:g}s"],
    )
    register(c)
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        with c.client() as client:
            wait_for(
                lambda: all(
                    client.node_status(ep).feature_level >= features.FIRE_AHEAD
                    for ep in c.endpoints_env.split(",")
                ),
                timeout=30,
                what="the cluster reaching feature level 5",
            )
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with cluster.client() as c:
        yield c


@pytest.fixture(scope="module")
def worker(cluster: LocalCluster) -> Iterator[tuple[Worker, dict[str, list[float]]]]:
    starts: dict[str, list[float]] = {}
    w = Worker(
        cluster.endpoints_env,
        queues=["ahead"],
        worker_id="ahead-worker",
        credentials=cluster.credentials,
        concurrency=8,
    )

    @w.default_handler
    def handle(ctx: Context) -> None:
        starts.setdefault(ctx.run_id, []).append(time.time())

    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        yield w, starts
    finally:
        w.stop()
        thread.join(timeout=30)


def one_shot(client: Client, due_in_s: float) -> tuple[str, int]:
    name = f"ahead-{uuid.uuid4().hex[:8]}"
    at_ms = int((time.time() + due_in_s) * 1000)
    client.create_job(name, at_ms=at_ms, queue="ahead")
    return name, at_ms


def leased_before_due(client: Client, name: str, at_ms: int) -> types_pb2.Run:
    """Wait for the job's run to be LEASED, and check that this happened before it was due."""
    run = wait_for(
        lambda: next(
            (r for r in client.list_runs(job=name) if r.state == types_pb2.RUN_STATE_LEASED), None
        ),
        timeout=30,
        what=f"{name} leased",
    )
    assert time.time() * 1000 < at_ms, "expected the run leased inside the fire-ahead window"
    return run


def test_a_run_leased_ahead_starts_at_its_due_time(
    client: Client, worker: tuple[Worker, dict[str, list[float]]]
) -> None:
    _, starts = worker
    name, at_ms = one_shot(client, AHEAD_S + 3)
    run = leased_before_due(client, name, at_ms)
    assert run.started_ms == at_ms  # started, as recorded, at its due time
    wait_for(lambda: run.run_id in starts, timeout=30, what="the handler")
    assert starts[run.run_id][0] >= at_ms / 1000  # the agent waited for the due time
    done = wait_for(
        lambda: (r := client.get_run(run.run_id)).state == types_pb2.RUN_STATE_SUCCEEDED and r,
        timeout=30,
        what="the run succeeded",
    )
    assert done.attempt == 1


def test_a_pause_inside_the_window_takes_the_run_back_and_the_worker_never_runs_it(
    client: Client, worker: tuple[Worker, dict[str, list[float]]]
) -> None:
    _, starts = worker
    name, at_ms = one_shot(client, AHEAD_S + 3)
    run = leased_before_due(client, name, at_ms)
    client.pause_job(name)
    assert time.time() * 1000 < at_ms, "the pause must land before the due time"
    assert client.list_runs(job=name) == []  # as if it had never fired
    job = client.get_job(name)
    assert job.state == types_pb2.JOB_STATE_PAUSED and job.next_due_ms == at_ms
    # past the due time by a second: the time at which a run that was not revoked would start
    time.sleep(max(0.0, at_ms / 1000 - time.time()) + 1.0)
    assert run.run_id not in starts  # revoked before its start time: never ran
    # Resumed after the slot: the slot was missed while paused; the default misfire policy
    # (fire_once) runs it once, as a catch-up, on a new attempt with a new fence.
    client.resume_job(name)
    wait_for(lambda: run.run_id in starts, timeout=30, what="the catch-up run")
    (again,) = client.list_runs(job=name)
    assert again.origin == types_pb2.RUN_ORIGIN_CATCHUP
    assert again.fence > run.fence
