"""Workers as the leader sees them, against a real 3-node cluster with real workers: firings go
only to workers with a handler for the job (Hello.jobs), ``worker list``, why a run is stuck
pending (``job explain``), and cancelling a run (``run cancel``).

Every test here failed before the change it pins (see CHANGELOG, "First hour").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import LocalCluster
from tests._util import wait_for

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
