"""The SDK (sync Client and asyncio AsyncClient) against real 3-node clusters started with the
shipped testing helpers (schedd.testing.local_cluster and the schedd_cluster pytest fixture):
typed results for every RPC, typed errors, leader transfer, and a leader SIGKILL in the middle of
traffic (every call succeeds on the new leader or raises a typed error; request ids prevent
duplicates)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from schedd import errors, models
from schedd.agent import Worker
from schedd.aio import AsyncClient
from schedd.client import Client
from schedd.pb import api_pb2, types_pb2
from schedd.pytest_plugin import schedd_cluster  # noqa: F401  (the fixture, as users get it)
from schedd.sdk import core
from schedd.testing import RunningCluster, local_cluster
from tests._util import wait_for, wait_for_async

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningCluster]:
    with local_cluster() as cluster:
        yield cluster


# ---- typed results and errors, sync ---------------------------------------------------------


def test_sync_client_returns_typed_records_and_errors(shared: RunningCluster) -> None:
    client = shared.client
    job = client.create_job(
        "sdk-nightly",
        cron="0 3 * * *",
        tz="Europe/Berlin",
        queue="sdk",
        payload='{"k": 1}',
        request_id="sdk-create-1",
    )
    assert isinstance(job, models.Job) and job.name == "sdk-nightly"
    assert job.state is models.JobState.ACTIVE and job.state == types_pb2.JOB_STATE_ACTIVE
    assert (
        job.schedule.kind is models.ScheduleKind.CRON and job.schedule.timezone == "Europe/Berlin"
    )
    assert job.next_due_at is not None and job.next_due_at.tzinfo is not None
    assert job.to_dict()["state"] == "JOB_STATE_ACTIVE"
    # the same request id is the same create: the first answer, not AlreadyExists
    again = client.create_job(
        "sdk-nightly",
        cron="0 3 * * *",
        tz="Europe/Berlin",
        queue="sdk",
        payload='{"k": 1}',
        request_id="sdk-create-1",
    )
    assert again.uid == job.uid
    # ... but the id names that request only: another request under it is refused
    with pytest.raises(errors.FailedPrecondition) as reused:
        client.create_job("sdk-nightly", cron="0 3 * * *", request_id="sdk-create-1")
    assert "request_id" in reused.value.message
    with pytest.raises(errors.AlreadyExists):
        client.create_job("sdk-nightly", cron="0 3 * * *")
    with pytest.raises(errors.InvalidArgument) as info:
        client.create_job("sdk-bad", cron="61 * * * *")
    assert info.value.field.startswith("schedule")

    assert client.get_job("sdk-nightly") == job
    assert "sdk-nightly" in [j.name for j in client.list_jobs(limit=None)]
    assert client.pause_job("sdk-nightly").state is models.JobState.PAUSED
    assert client.resume_job("sdk-nightly", skip_missed=True).state is models.JobState.ACTIVE

    run = client.trigger_job("sdk-nightly", request_id="sdk-trigger-1")
    assert isinstance(run, models.Run) and run.manual and run.state is models.RunState.PENDING
    assert run.scheduled_at is not None
    assert client.trigger_job("sdk-nightly", request_id="sdk-trigger-1").run_id == run.run_id
    assert [r.run_id for r in client.list_runs(job="sdk-nightly")] == [run.run_id]
    assert [r.run_id for r in client.list_runs(job="sdk-nightly", state="pending")] == [run.run_id]
    assert client.get_run(run.run_id).run_id == run.run_id
    with pytest.raises(errors.StaleFence):
        client.complete_run(run.run_id, fence=999, success=True)
    with pytest.raises(errors.NotFound):
        client.get_run("no-such-run")
    with pytest.raises(errors.FailedPrecondition):
        client.retry_run(run.run_id)  # PENDING, not DEAD

    client.delete_job("sdk-nightly")
    with pytest.raises(errors.NotFound):
        client.get_job("sdk-nightly")


def wait_for_quietly(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_cluster_status_and_leader_transfer(shared: RunningCluster) -> None:
    client = shared.client
    reports = client.cluster_status(with_digest=True)
    assert [r.endpoint for r in reports] == shared.endpoints and all(r.ok for r in reports)
    statuses = [r.status for r in reports if r.status is not None]
    leaders = [s for s in statuses if s.is_leader]
    assert len(leaders) == 1 and all(s.state_digest for s in statuses)
    target = next(s.node_id for s in statuses if not s.is_leader)

    def moved() -> bool:
        # A handover is a request: on a loaded machine the target's election can lose to the
        # third node's, or the target can be behind when asked; ask again, as an operator would.
        if shared.cluster.leader() != target:
            client.transfer_leadership(target)
        return wait_for_quietly(lambda: shared.cluster.leader() == target, 5)

    wait_for(moved, 30, f"{target} to lead")
    assert client.create_job("sdk-after-transfer", every_ms=HOUR_MS).name == "sdk-after-transfer"
    with pytest.raises(errors.InvalidArgument):
        client.transfer_leadership("no-such-node")


@pytest.mark.schedd_cluster(nodes=1, client_timeout=3)
def test_a_run_completed_by_a_worker_reads_as_succeeded(schedd_cluster: RunningCluster) -> None:  # noqa: F811
    # Its own (one-node) cluster: runs left PENDING by other tests in queues nobody serves would
    # hold up the dispatch here (the dispatcher takes the oldest pending runs first).
    c = schedd_cluster
    assert len(c.endpoints) == 1
    c.client.create_job("sdk-worked", every_ms=HOUR_MS, queue="sdk-worked")
    done = threading.Event()
    worker = Worker(c.endpoints, queues=["sdk-worked"], credentials=c.credentials)

    @worker.handler("sdk-worked")
    def handle(ctx: Any) -> None:
        done.set()

    worker.start()
    try:
        run = c.client.trigger_job("sdk-worked")
        final = wait_for(
            lambda: (r := c.client.get_run(run.run_id)).done and r, 20, "the run to finish"
        )
    finally:
        worker.stop(drain_timeout=2)
    assert done.is_set()
    assert final.state == types_pb2.RUN_STATE_SUCCEEDED and final.state is models.RunState.SUCCEEDED
    assert final.finished_at is not None and final.fence > 0 and final.worker_id == worker.worker_id
    with pytest.raises(errors.StaleFence):  # the attempt is over: its fence no longer counts
        c.client.complete_run(run.run_id, final.fence, success=False)


# ---- the same through asyncio ----------------------------------------------------------------


def test_async_client_end_to_end(shared: RunningCluster) -> None:
    async def scenario() -> None:
        async with shared.async_client(timeout=5, retry_for=30) as client:
            job = await client.create_job("sdk-async", every_ms=HOUR_MS, request_id="sdk-async-1")
            assert isinstance(job, models.Job) and job.schedule.every_ms == HOUR_MS
            again = await client.create_job("sdk-async", every_ms=HOUR_MS, request_id="sdk-async-1")
            assert again.uid == job.uid
            runs = await asyncio.gather(
                *(client.trigger_job("sdk-async", request_id=f"sdk-at{i}") for i in range(5))
            )
            assert len({r.run_id for r in runs}) == 5
            listed = await client.list_runs(job="sdk-async")
            assert sorted(r.run_id for r in listed) == sorted(r.run_id for r in runs)
            assert (await client.get_job("sdk-async")).name == "sdk-async"
            assert "sdk-async" in [j.name for j in await client.list_jobs()]
            reports = await client.cluster_status()
            assert sum(1 for r in reports if r.status is not None and r.status.is_leader) == 1
            with pytest.raises(errors.NotFound):
                await client.get_job("sdk-async-missing")
            with pytest.raises(errors.StaleFence):
                await client.complete_run(runs[0].run_id, fence=999, success=False)
            await client.delete_job("sdk-async")

    asyncio.run(scenario())


# ---- update, backfill, explain (api.proto's JobService) ---------------------------------------


def test_update_backfill_and_explain(shared: RunningCluster) -> None:
    client = shared.client
    job = client.create_job("sdk-policies", every_ms=60_000, queue="sdk-policies")
    updated = client.update_job(
        "sdk-policies", every_ms=120_000, queue="sdk-policies", expect_version=job.version
    )
    assert updated.version == job.version + 1 and updated.schedule.every_ms == 120_000
    with pytest.raises(errors.FailedPrecondition):
        client.update_job("sdk-policies", every_ms=60_000, expect_version=job.version)
    with pytest.raises(errors.NotFound):
        client.update_job("sdk-missing", every_ms=60_000)

    # slots are anchor + k * every_ms (anchor: the epoch); take 5 whole past slots
    now_ms = int(time.time() * 1000)
    first = (now_ms - 24 * HOUR_MS) // 120_000 * 120_000
    last = first + 4 * 120_000
    chunks = list(client.backfill("sdk-policies", first, last, chunk=2))
    assert chunks[-1].done and all(not c.done for c in chunks[:-1])
    assert sum(c.created for c in chunks) == 5 and chunks[0].total_slots == 5
    again = client.backfill_job("sdk-policies", first, last)
    assert (again.created, again.existing) == (0, 5)
    backfilled = [
        r
        for r in client.list_runs(job="sdk-policies", limit=100)
        if r.origin is models.RunOrigin.BACKFILL
    ]
    assert sorted(r.scheduled_ms for r in backfilled) == [first + k * 120_000 for k in range(5)]

    ex = client.explain_job("sdk-policies", first)
    assert isinstance(ex, models.Explanation)
    assert ex.verdict and " " not in ex.verdict and ex.explanation
    assert ex.slot_ms == first
    assert all(r.job == "sdk-policies" for r in ex.runs)
    assert first in [r.scheduled_ms for r in ex.runs]


# ---- a leader SIGKILL in the middle of traffic ------------------------------------------------


def test_sync_client_through_a_leader_sigkill(schedd_cluster: RunningCluster) -> None:  # noqa: F811
    c = schedd_cluster
    c.client.create_job("kill-sync", every_ms=HOUR_MS)
    before = c.client.create_job("kill-created", every_ms=HOUR_MS, request_id="kill-create")
    results: dict[str, object] = {}  # request id -> run id, or the exception raised
    spans: list[tuple[float, float]] = []  # (start, end) of each call, monotonic
    stop = threading.Event()
    killed: list[str] = []

    def traffic() -> None:
        with c.cluster.client(timeout=2, retry_for=30) as client:
            i = 0
            while not stop.is_set():
                rid = f"kill-t{i}"
                i += 1
                start = time.monotonic()
                try:
                    results[rid] = client.trigger_job("kill-sync", request_id=rid).run_id
                except BaseException as exc:  # recorded and judged below: it must be typed
                    results[rid] = exc
                spans.append((start, time.monotonic()))

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(results) >= 5, 20, "traffic before the kill")
        killed.append(c.kill_leader())
        killed_at = time.monotonic()
        n_at_kill = len(results)
        # issued right after the kill: answered by the new leader
        assert c.client.get_job("kill-sync").name == "kill-sync"
        # a create retried with its request id after the kill returns the first answer
        assert (
            c.client.create_job("kill-created", every_ms=HOUR_MS, request_id="kill-create").uid
            == before.uid
        )
        wait_for(lambda: len(results) >= n_at_kill + 5, 30, "traffic after the kill")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()

    new_leader = c.wait_for_leader(exclude=killed[0])
    assert new_leader != killed[0]
    # some call was in flight at the kill or started right after it, and it got an answer
    assert any(start <= killed_at + 0.2 and end > killed_at for start, end in spans)
    failures = {rid: r for rid, r in results.items() if not isinstance(r, str)}
    assert all(isinstance(e, errors.SchedError) for e in failures.values()), failures
    # every request id, resent now, names exactly one run: the first answer where there was one
    for rid, first in results.items():
        run_id = c.client.trigger_job("kill-sync", request_id=rid).run_id
        if isinstance(first, str):
            assert run_id == first, rid
    # Only the triggered runs: an hourly job also fires when the test straddles a whole hour.
    runs = [r for r in c.client.list_runs(job="kill-sync", limit=10_000) if r.manual]
    assert len(runs) == len(results) == len({r.run_id for r in runs})
    assert len([j for j in c.client.list_jobs() if j.name == "kill-created"]) == 1
    c.wait_converged()


def test_async_client_through_a_leader_sigkill(schedd_cluster: RunningCluster) -> None:  # noqa: F811
    c = schedd_cluster

    async def scenario() -> None:
        async with AsyncClient(
            c.endpoints, timeout=2, retry_for=30, credentials=c.credentials
        ) as client:
            await client.create_job("kill-async", every_ms=HOUR_MS)
            results: dict[str, object] = {}
            spans: list[tuple[float, float]] = []
            stop = asyncio.Event()

            async def traffic(lane: int) -> None:
                i = 0
                while not stop.is_set():
                    rid = f"kill-a{lane}-{i}"
                    i += 1
                    start = time.monotonic()
                    try:
                        results[rid] = (
                            await client.trigger_job("kill-async", request_id=rid)
                        ).run_id
                    except Exception as exc:  # judged below: it must be typed
                        results[rid] = exc
                    spans.append((start, time.monotonic()))

            lanes = [asyncio.create_task(traffic(n)) for n in range(3)]
            try:
                await wait_for_async(
                    lambda: len(results) >= 6, 30, "traffic before the kill", every=0.02
                )
                killed = await asyncio.to_thread(c.kill_leader)  # the loop keeps calling meanwhile
                killed_at = time.monotonic()
                n_at_kill = len(results)
                # issued right after the kill
                created = await client.create_job(
                    "kill-async-2", every_ms=HOUR_MS, request_id="ka2"
                )
                assert (
                    await client.create_job("kill-async-2", every_ms=HOUR_MS, request_id="ka2")
                ).uid == created.uid
                await wait_for_async(
                    lambda: len(results) >= n_at_kill + 6, 30, "traffic after the kill"
                )
            finally:
                stop.set()
                await asyncio.gather(*lanes)

            assert any(start <= killed_at and end > killed_at for start, end in spans)  # in flight
            failures = {rid: r for rid, r in results.items() if not isinstance(r, str)}
            assert all(isinstance(e, errors.SchedError) for e in failures.values()), failures
            for rid, first in results.items():
                run = await client.trigger_job("kill-async", request_id=rid)
                if isinstance(first, str):
                    assert run.run_id == first, rid
            runs = [r for r in await client.list_runs(job="kill-async", limit=10_000) if r.manual]
            assert len(runs) == len(results) == len({r.run_id for r in runs})
            assert killed not in {
                r.status.node_id for r in await client.cluster_status() if r.status is not None
            }

    asyncio.run(scenario())
    c.wait_converged()


def test_local_cluster_cleans_up_its_temp_dir() -> None:
    with local_cluster(nodes=1) as cluster:
        root = cluster.root
        assert isinstance(cluster.client, Client)
        assert cluster.client.cluster_status()[0].ok
        assert os.path.exists(os.path.join(root, "n1", "node.log"))
    assert not os.path.exists(root)


# ---- listings larger than one gRPC message ---------------------------------------------------


def test_list_runs_pages_past_grpcs_message_limit(shared: RunningCluster) -> None:
    """3,000 runs of a job with 16 long tags (copied into every run) are ~6 MiB: one response
    would exceed gRPC's 4 MiB limit (RESOURCE_EXHAUSTED before page tokens). Both clients
    page under the hood and return exactly the newest ``limit`` runs, oldest first."""
    client = shared.client
    tags = {f"t{i:02d}": "v" * 120 for i in range(16)}
    # Every second of every 29 February: its next slot is years away, so no run of its own
    # joins the backfilled ones (an every-second job, paused right after its creation, could
    # still fire its first slot in between: it is due within a second, and may fire ahead).
    client.create_job("sdk-wide", cron="* * * 29 2 *", queue="sdk-nobody", tags=tags)
    start = 1_709_164_800_000  # 2024-02-29T00:00:00Z
    for _ in client.backfill("sdk-wide", start, start + 2_999_000, chunk=1000):
        pass
    runs = client.list_runs("sdk-wide", limit=100_000)
    assert [r.scheduled_ms for r in runs] == [start + i * 1000 for i in range(3000)]
    newest = client.list_runs("sdk-wide", limit=2500, state="pending")
    assert [r.run_id for r in newest] == [r.run_id for r in runs[500:]]
    everything = client.list_runs(limit=100_000)
    assert [r.run_id for r in everything if r.job == "sdk-wide"] == sorted(r.run_id for r in runs)

    async def listed() -> list[models.Run]:
        async with AsyncClient(shared.endpoints, credentials=shared.credentials) as aio:
            return await aio.list_runs("sdk-wide", limit=2999)

    assert [r.run_id for r in asyncio.run(listed())] == [r.run_id for r in runs[1:]]
    # A token of another listing (here: forged) is refused, naming the field.
    forged = api_pb2.ListRunsRequest(job="sdk-wide", page_token=b"\x01other\x00")
    with pytest.raises(errors.InvalidArgument, match="page_token"):
        client._invoke(core.Call("runs", "ListRuns", forged, True, lambda resp: resp))
