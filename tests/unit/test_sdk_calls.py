"""Both SDK clients (sync Client and asyncio AsyncClient) against the same scripted fake cluster
and fake clock: the requests each method sends (per api.proto), the typed results, and the shared
leader-following / retry / request-id contract. No network."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from schedd import errors, models
from schedd.aio import AsyncClient
from schedd.client import Client
from schedd.clock import FakeClock
from schedd.pb import api_pb2, types_pb2
from tests.unit.test_client_pure import REFUSED, FakeCluster, FakeRpcError, Handler

KINDS = ["sync", "async"]


class AsyncFakeCluster(FakeCluster):
    """FakeCluster whose RPCs are coroutines, as on a grpc.aio channel."""

    def stub(self, target: str) -> Any:
        sync_node = super().stub(target)

        class Service:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def __getattr__(self, method: str) -> Callable[..., Any]:
                fn = getattr(self.inner, method)

                async def call(request: Any, timeout: float | None = None) -> Any:
                    await asyncio.sleep(0)  # a real await point, like a network call
                    return fn(request, timeout=timeout)

                return call

        class Node:
            jobs = runs = cluster = Service(sync_node.jobs)

        return Node()


class Harness:
    """One client of either kind wired to a fake cluster; ``call`` runs a method to completion."""

    def __init__(
        self,
        kind: str,
        handler: Handler,
        endpoints: str = "a:1,b:2,c:3",
        retry_for: float = 20.0,
        wait_for: float = 0.0,
    ) -> None:
        self.kind = kind
        self.clock = FakeClock()
        self.sleeps: list[float] = []
        self.client: Any
        if kind == "sync":
            self.fake = FakeCluster(handler)

            def sleep(s: float) -> None:
                self.sleeps.append(s)
                self.clock.advance(s)

            self.client = Client(
                endpoints,
                timeout=1.0,
                retry_for=retry_for,
                wait_for=wait_for,
                clock=self.clock,
                sleep=sleep,
            )
        else:
            self.fake = AsyncFakeCluster(handler)

            async def asleep(s: float) -> None:
                self.sleeps.append(s)
                self.clock.advance(s)

            self.client = AsyncClient(
                endpoints,
                timeout=1.0,
                retry_for=retry_for,
                wait_for=wait_for,
                clock=self.clock,
                sleep=asleep,
            )
        self.client._stub = self.fake.stub

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.client, method)
        if self.kind == "sync":
            return fn(*args, **kwargs)
        return asyncio.run(fn(*args, **kwargs))

    def collect(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """All items of a generator method (``backfill``)."""
        if self.kind == "sync":
            return list(getattr(self.client, method)(*args, **kwargs))

        async def gather() -> list[Any]:
            return [x async for x in getattr(self.client, method)(*args, **kwargs)]

        return asyncio.run(gather())

    @property
    def targets(self) -> list[str]:
        return [t for t, _, _ in self.fake.calls]


def job_resp(name: str = "j", **fields: Any) -> api_pb2.JobResponse:
    return api_pb2.JobResponse(job=types_pb2.Job(name=name, **fields))


# ---- requests and typed results, per RPC ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_update_job_sends_the_whole_definition_and_expected_version(kind: str) -> None:
    seen: list[api_pb2.UpdateJobRequest] = []

    def handler(target: str, method: str, req: Any) -> Any:
        assert method == "UpdateJob"
        seen.append(req)
        if len(seen) == 1:
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return job_resp(req.job.name, version=4, state=types_pb2.JOB_STATE_ACTIVE)

    h = Harness(kind, handler)
    job = h.call(
        "update_job",
        "nightly",
        every_ms=60_000,
        queue="q",
        expect_version=3,
        overlap="forbid",
        tags={"zone": "eu"},
    )
    assert isinstance(job, models.Job) and job.version == 4 and job.state is models.JobState.ACTIVE
    req = seen[0]
    assert req.expect_version == 3 and req.job.name == "nightly" and req.job.queue == "q"
    assert (
        req.job.schedule.kind == types_pb2.SCHEDULE_KIND_INTERVAL
        and req.job.schedule.every_ms == 60_000
    )
    assert req.job.overlap == types_pb2.OVERLAP_POLICY_FORBID and dict(req.job.tags) == {
        "zone": "eu"
    }
    assert len(seen) == 2 and seen[0].job.request_id == seen[1].job.request_id != ""  # safe resend


@pytest.mark.parametrize("kind", KINDS)
def test_update_job_rejects_bad_input_locally(kind: str) -> None:
    h = Harness(kind, lambda *a: job_resp())
    with pytest.raises(errors.InvalidArgument) as info:
        h.call("update_job", "j", cron="* * * * *", expect_version=-1)
    assert info.value.field == "expect_version"
    with pytest.raises(errors.InvalidArgument) as info:
        h.call("update_job", "j")  # no schedule
    assert info.value.field == "schedule"
    assert h.fake.calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_version_conflict_is_failed_precondition_at_once(kind: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "job 'j' is at version 5, not 3")

    h = Harness(kind, handler)
    with pytest.raises(errors.FailedPrecondition, match="version 5"):
        h.call("update_job", "j", cron="* * * * *", expect_version=3)
    assert len(h.fake.calls) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_backfill_walks_the_range_chunk_by_chunk(kind: str) -> None:
    seen: list[tuple[int, int, int, int]] = []

    def handler(target: str, method: str, req: api_pb2.BackfillRequest) -> Any:
        assert method == "BackfillJob" and req.name == "j"
        seen.append((req.from_ms, req.to_ms, req.limit, req.overlap))
        nxt = req.from_ms + 10_000 if req.from_ms + 10_000 <= req.to_ms else 0
        return api_pb2.BackfillResponse(created=2, existing=1, next_from_ms=nxt, total_slots=6)

    h = Harness(kind, handler)
    results = h.collect("backfill", "j", 0, 25_000, chunk=3, overlap="allow")
    assert [r.next_from_ms for r in results] == [10_000, 20_000, 0]
    assert all(isinstance(r, models.BackfillResult) for r in results) and results[-1].done
    assert seen == [(0, 25_000, 3, 1), (10_000, 25_000, 3, 1), (20_000, 25_000, 3, 1)]
    one = h.call("backfill_job", "j", 0, 5_000)
    assert one.created == 2 and one.done and seen[-1] == (0, 5_000, 1000, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_backfill_rejects_an_inverted_range_locally(kind: str) -> None:
    h = Harness(kind, lambda *a: api_pb2.BackfillResponse())
    with pytest.raises(errors.InvalidArgument) as info:
        h.call("backfill_job", "j", 10, 5)
    assert info.value.field == "to_ms" and h.fake.calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_explain_job_returns_an_explanation_with_its_runs(kind: str) -> None:
    def handler(target: str, method: str, req: api_pb2.ExplainRequest) -> Any:
        assert (method, req.name, req.at_ms) == ("ExplainJob", "j", 120_000)
        return api_pb2.ExplainResponse(
            verdict="skipped",
            explanation="the job was paused",
            slot_ms=120_000,
            runs=[
                types_pb2.Run(
                    run_id="j@120000",
                    state=types_pb2.RUN_STATE_SKIPPED,
                    skip_reason=types_pb2.SKIP_REASON_PAUSED,
                )
            ],
            previous_slot_ms=60_000,
            next_slot_ms=180_000,
        )

    ex = Harness(kind, handler).call("explain_job", "j", 120_000)
    assert isinstance(ex, models.Explanation) and ex.verdict == "skipped"
    assert (
        ex.runs[0].skip_reason is models.SkipReason.PAUSED
        and ex.runs[0].state == types_pb2.RUN_STATE_SKIPPED
    )
    assert ex.slot_at is not None and ex.next_slot_ms == 180_000


@pytest.mark.parametrize("kind", KINDS)
def test_every_result_is_a_typed_record(kind: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        run = types_pb2.Run(run_id="r", job="j", state=types_pb2.RUN_STATE_PENDING)
        if method == "ListJobs":
            return api_pb2.ListJobsResponse(
                jobs=[] if req.after_name else [types_pb2.Job(name="j")]
            )
        return {
            "CreateJob": job_resp(),
            "GetJob": job_resp(),
            "PauseJob": job_resp(),
            "ResumeJob": job_resp(),
            "DeleteJob": api_pb2.DeleteJobResponse(),
            "TriggerJob": api_pb2.TriggerJobResponse(run=run),
            "GetRun": api_pb2.RunResponse(run=run),
            "RetryRun": api_pb2.RunResponse(run=run),
            "ListRuns": api_pb2.ListRunsResponse(runs=[run]),
            "CompleteRun": api_pb2.CompleteRunResponse(),
            "TransferLeadership": api_pb2.TransferLeadershipResponse(),
            "GetNodeStatus": api_pb2.NodeStatus(node_id="n1", role="leader"),
        }[method]

    h = Harness(kind, handler)
    assert isinstance(h.call("create_job", "j", cron="* * * * *"), models.Job)
    assert isinstance(h.call("get_job", "j"), models.Job)
    assert isinstance(h.call("pause_job", "j"), models.Job)
    assert isinstance(h.call("resume_job", "j", skip_missed=True), models.Job)
    assert h.call("delete_job", "j") == []  # the jobs that lost it as an upstream (force)
    assert [j.name for j in h.call("list_jobs")] == ["j"]
    run = h.call("trigger_job", "j")
    assert isinstance(run, models.Run) and run.state is models.RunState.PENDING
    assert isinstance(h.call("get_run", "r"), models.Run)
    assert isinstance(h.call("retry_run", "r"), models.Run)
    assert [r.run_id for r in h.call("list_runs", job="j", state="pending")] == ["r"]
    assert h.call("complete_run", "r", 7, success=True) is None
    assert h.call("transfer_leadership", "n2") is None
    status = h.call("node_status", "a:1")
    assert isinstance(status, models.NodeStatus) and status.is_leader
    reports = h.call("cluster_status")
    assert [r.endpoint for r in reports] == ["a:1", "b:2", "c:3"] and all(r.ok for r in reports)
    sent = {m: r for _, m, r in h.fake.calls}
    assert sent["ResumeJob"].skip_missed is True
    assert sent["ListRuns"].state == types_pb2.RUN_STATE_PENDING
    assert sent["TransferLeadership"].to_node_id == "n2"
    assert (
        sent["CompleteRun"].outcome == api_pb2.OUTCOME_SUCCEEDED and sent["CompleteRun"].fence == 7
    )


@pytest.mark.parametrize("kind", KINDS)
def test_create_accepts_a_retry_policy_record(kind: str) -> None:
    seen: list[api_pb2.CreateJobRequest] = []

    def handler(target: str, method: str, req: Any) -> Any:
        seen.append(req)
        return job_resp()

    h = Harness(kind, handler)
    policy = models.RetryPolicy(max_attempts=3, initial_backoff_ms=0, non_retryable_exit_codes=(3,))
    h.call("create_job", "j", cron="* * * * *", retry=policy)
    assert seen[0].retry.max_attempts == 3 and seen[0].retry.HasField("initial_backoff_ms")
    assert list(seen[0].retry.non_retryable_exit_codes) == [3]


# ---- the shared failure contract, for the asyncio client too -------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_hint_is_followed_at_once_and_remembered(kind: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        if target != "leader:9":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "not the leader", leader="leader:9")
        return job_resp(req.name)

    h = Harness(kind, handler)
    assert h.call("get_job", "j").name == "j"
    assert h.targets == ["a:1", "leader:9"] and h.sleeps == [] and h.client.leader == "leader:9"
    h.call("get_job", "j")
    assert h.targets[-1] == "leader:9" and len(h.targets) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_dead_nodes_are_rotated_with_backoff_then_unavailable(kind: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)

    h = Harness(kind, handler, retry_for=3.0, wait_for=3.0)
    with pytest.raises(errors.Unreachable) as info:
        h.call("get_job", "j")
    assert not isinstance(info.value, grpc.RpcError)
    assert "no node could be reached (a:1, b:2, c:3: connection refused)" in info.value.message
    assert h.sleeps[:3] == [0.05, 0.1, 0.2] and sum(h.sleeps) <= 3.0
    assert set(h.targets) == {"a:1", "b:2", "c:3"}


@pytest.mark.parametrize("kind", KINDS)
def test_no_reachable_node_fails_after_one_round(kind: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)

    h = Harness(kind, handler)
    with pytest.raises(errors.Unreachable):
        h.call("get_job", "j")
    assert h.targets == ["a:1", "b:2", "c:3"] and sum(h.sleeps) < 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_timed_out_writes_without_request_id_are_outcome_unknown(kind: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    h = Harness(kind, handler)
    for method, args in (
        ("delete_job", ("j",)),
        ("pause_job", ("j",)),
        ("transfer_leadership", ("n2",)),
    ):
        with pytest.raises(errors.OutcomeUnknown):
            h.call(method, *args)
    assert len(h.fake.calls) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_trigger_is_resent_with_one_request_id_across_failover(kind: str) -> None:
    seen: list[tuple[str, str]] = []

    def handler(target: str, method: str, req: Any) -> Any:
        seen.append((target, req.request_id))
        if len(seen) == 1:
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if target == "b:2":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "not the leader", leader="c:3")
        return api_pb2.TriggerJobResponse(run=types_pb2.Run(run_id="j@1"))

    h = Harness(kind, handler)
    assert h.call("trigger_job", "j").run_id == "j@1"
    assert [t for t, _ in seen] == ["a:1", "b:2", "c:3"]
    assert len({rid for _, rid in seen}) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.ABORTED, errors.StaleFence),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Internal),
    ],
)
def test_final_answers_are_typed_errors_after_one_attempt(
    kind: str, code: grpc.StatusCode, cls: type[errors.SchedError]
) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        raise FakeRpcError(code, "nope")

    h = Harness(kind, handler)
    with pytest.raises(cls):
        h.call("complete_run", "r", 3, success=True)
    assert len(h.fake.calls) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_status_never_raises_for_a_node(kind: str) -> None:
    def handler(target: str, method: str, req: Any) -> Any:
        if target == "b:2":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)
        if target == "c:3":
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return api_pb2.NodeStatus(node_id="n1", role="leader")

    reports = Harness(kind, handler).call("cluster_status", timeout=0.5)
    assert [(r.endpoint, r.ok, r.error) for r in reports] == [
        ("a:1", True, ""),
        ("b:2", False, "connection refused"),
        ("c:3", False, "no answer within 0.5s"),
    ]


def test_async_client_is_an_async_context_manager_and_refuses_calls_when_closed() -> None:
    async def scenario() -> None:
        async with AsyncClient("127.0.0.1:1", timeout=0.2, retry_for=0.0) as client:
            with pytest.raises(errors.Unavailable):
                await client.get_job("j")  # nothing listens there: a typed error, no grpc error
        with pytest.raises(errors.FailedPrecondition):
            await client.get_job("j")
        await client.close()  # idempotent

    asyncio.run(scenario())


def test_async_client_rejects_bad_settings_before_any_network() -> None:
    with pytest.raises(errors.InvalidArgument):
        AsyncClient("")
    with pytest.raises(errors.InvalidArgument):
        AsyncClient("a:1", timeout=0)
    with pytest.raises(errors.InvalidArgument):
        AsyncClient("a:1", retry_for=-1)


def test_async_client_refuses_a_second_event_loop() -> None:
    client = AsyncClient("127.0.0.1:1", timeout=0.2, retry_for=0.0)
    with pytest.raises(errors.Unavailable):
        asyncio.run(client.get_job("j"))  # binds the client to this loop; nothing listens there
    with pytest.raises(errors.FailedPrecondition, match="another event loop"):
        asyncio.run(client.get_job("j"))  # asyncio.run makes a new loop
