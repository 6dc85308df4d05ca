"""Namespaces, quotas and per-caller limits on a real 3-node cluster with TLS and tokens.

A token of namespace A can neither see nor touch B (and a refusal changes no state); the same
job name lives in both; a worker of A gets A's firings only, by the bare job name; quotas refuse
the job or run over the limit and record a scheduled slot over it as skipped; a caller that
writes too fast is refused with RESOURCE_EXHAUSTED while another caller is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from schedd import errors
from schedd.agent import Worker
from schedd.client import Client
from schedd.models import RunState, SkipReason
from schedd.pb import api_grpc, api_pb2, types_pb2
from schedd.sdk.credentials import Credentials
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for
from tests.integration.conftest import register

pytestmark = pytest.mark.integration

YEARLY = "0 0 1 1 *"  # no firing during a test: the state digest stays put
WRITE_RATE = "20/40"  # per caller and node: the rate-limit test's caller runs out quickly


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = register(
        LocalCluster(
            str(tmp_path_factory.mktemp("ns")),
            nodes=3,
            extra_args=[*FAST_ARGS, "--write-rate", WRITE_RATE],
        )
    )
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


def _token(c: LocalCluster, name: str, *grants: str) -> str:
    with c.client(retry_for=30) as admin:
        return admin.create_token(name, list(grants), ttl_s=3600).secret


def _client(c: LocalCluster, secret: str, namespace: str) -> Client:
    creds = Credentials(ca=c.ca_file, cert=c.admin_cert.cert, key=c.admin_cert.key, token=secret)
    return Client(c.endpoints, credentials=creds, namespace=namespace, retry_for=30)


def test_a_namespace_token_neither_sees_nor_touches_another_namespace(
    cluster: LocalCluster,
) -> None:
    secret_a = _token(cluster, "team-a-writer", "team-a:writer")
    a = _client(cluster, secret_a, "team-a")
    b = _client(cluster, _token(cluster, "team-b-writer", "team-b:writer"), "team-b")
    with a, b:
        ja = a.create_job("nightly", cron=YEARLY, queue="reports", payload='{"team": "a"}')
        jb = b.create_job("nightly", cron=YEARLY, queue="reports", payload='{"team": "b"}')
        # the same name in two namespaces: two jobs, each shown with its bare names
        assert (ja.name, ja.namespace, ja.queue) == ("nightly", "team-a", "reports")
        assert (jb.name, jb.namespace) == ("nightly", "team-b")
        assert json.loads(a.get_job("nightly").payload) == {"team": "a"}
        assert [j.name for j in a.list_jobs()] == ["nightly"]
        run_b = b.trigger_job("nightly")
        assert run_b.namespace == "team-b" and run_b.job == "nightly"
        assert [r.run_id for r in b.list_runs("nightly")] == [run_b.run_id]
        assert a.list_runs("nightly") == [] and a.list_runs() == []
        # the default namespace does not see them either
        with cluster.client(retry_for=30) as admin:
            assert "nightly" not in {j.name for j in admin.list_jobs()}
        with cluster.client(retry_for=30, namespace="team-a") as admin_a:
            assert admin_a.get_job("nightly").payload == ja.payload

        before = cluster.wait_converged(timeout=30)[1]
        # A's token in B: every read and write refused, nothing changed
        a_in_b = _client(cluster, secret_a, "team-b")
        with a_in_b:
            refused: list[Any] = [
                lambda: a_in_b.get_job("nightly"),
                lambda: a_in_b.list_jobs(),
                lambda: a_in_b.list_runs(),
                lambda: a_in_b.delete_job("nightly"),
                lambda: a_in_b.pause_job("nightly"),
                lambda: a_in_b.trigger_job("nightly"),
                lambda: a_in_b.update_job("nightly", cron="* * * * *"),
                lambda: a_in_b.create_job("intruder", cron=YEARLY),
                lambda: a_in_b.explain_job("nightly", int(time.time() * 1000)),
                # a run id names its namespace: GetRun/RetryRun of B's run are B's
                lambda: a.get_run(run_b.run_id),
                lambda: a.retry_run(run_b.run_id),
            ]
            for call in refused:
                with pytest.raises(errors.PermissionDenied) as exc:
                    call()
                assert "team-b" in exc.value.message
        assert cluster.wait_converged(timeout=30)[1] == before
        with pytest.raises(errors.InvalidArgument, match="namespace"):
            Client(cluster.endpoints, credentials=cluster.credentials, namespace="Bad NS")


def test_a_worker_of_a_namespace_gets_only_its_firings(cluster: LocalCluster) -> None:
    secret = _token(cluster, "team-c-worker", "team-c:worker")
    creds = Credentials(ca=cluster.ca_file, cert=cluster.worker_cert.cert,
                        key=cluster.worker_cert.key, token=secret)  # fmt: skip
    runs = {}
    for ns in ("team-d", "team-c"):
        with cluster.client(retry_for=30, namespace=ns) as admin:
            admin.create_job("etl", cron=YEARLY, queue="batch")
            runs[ns] = admin.trigger_job("etl")
    run_c, run_d = runs["team-c"], runs["team-d"]
    got: list[tuple[str, str, str]] = []
    worker = Worker(cluster.endpoints, queues=["batch"], worker_id="team-c-etl",
                    credentials=creds, namespace="team-c")  # fmt: skip

    @worker.handler("etl")
    def etl(ctx: Any) -> None:
        got.append((ctx.run_id, ctx.job, ctx.namespace))

    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: got, 30, "team-c's firing")
        time.sleep(1.5)  # time enough to be handed team-d's run too, if it could be
        assert got == [(run_c.run_id, "etl", "team-c")]
        with cluster.client(retry_for=30) as admin:  # a run id names its namespace
            wait_for(lambda: admin.get_run(run_c.run_id).state == RunState.SUCCEEDED, 30, "success")
            assert admin.get_run(run_d.run_id).state == RunState.PENDING
    finally:
        worker.stop(drain_timeout=1)
        t.join(timeout=10)
    # the same worker identity may not serve another namespace
    other = Worker(cluster.endpoints, queues=["batch"], worker_id="team-c-in-d",
                   credentials=creds, namespace="team-d")  # fmt: skip
    leader = cluster.wait_for_leader()
    ch = creds.channel(cluster.spec(leader).grpc)
    try:
        hello = api_pb2.WorkerMessage(
            hello=api_pb2.Hello(worker_id=other.worker_id, queues=["batch"], namespace="team-d")
        )
        call = api_grpc.WorkerServiceStub(ch).Connect(
            iter([hello]), metadata=creds.metadata, timeout=5
        )
        with pytest.raises(grpc.RpcError) as exc:
            next(call)
        assert exc.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "team-d" in (exc.value.details() or "")
    finally:
        ch.close()


def test_quotas_refuse_the_job_and_run_over_the_limit(cluster: LocalCluster) -> None:
    with cluster.client(retry_for=30, namespace="quota") as c:
        c.create_job("q1", cron=YEARLY)
        c.trigger_job("q1")
        # the first quota counts what is there already
        ns = c.set_namespace_quota("quota", max_jobs=2, max_runs=2)
        assert (ns.jobs, ns.runs, ns.max_jobs, ns.max_runs) == (1, 1, 2, 2)
        c.create_job("q2", cron=YEARLY)
        with pytest.raises(errors.ResourceExhausted, match="quota of 2 jobs"):
            c.create_job("q3", cron=YEARLY)
        c.delete_job("q2")
        c.create_job("q3", cron=YEARLY)  # a delete frees room
        c.trigger_job("q1")
        with pytest.raises(errors.ResourceExhausted, match="stored runs"):
            c.trigger_job("q1")
        with pytest.raises(errors.ResourceExhausted, match="stored runs"):
            list(c.backfill("q1", 1_577_836_800_000, 1_577_923_200_000))  # 2020-01-01: one slot
        got = c.get_namespace()
        assert (got.name, got.jobs, got.runs) == ("quota", 2, 2)
        # a scheduled slot over the quota is recorded, never dropped silently
        c.set_namespace_quota("quota", max_jobs=3, max_runs=2)
        c.create_job("every", every_ms=1000)
        wait_for(
            lambda: any(
                r.state == RunState.SKIPPED and r.skip_reason == SkipReason.QUOTA
                for r in c.list_runs("every")
            ),
            30,
            "a slot skipped for the quota",
        )
        assert all(r.state == RunState.SKIPPED for r in c.list_runs("every"))
        assert [n.name for n in c.list_namespaces()] == ["quota"]
        c.delete_job("every")
    cluster.wait_converged(timeout=30)


def test_a_caller_writing_too_fast_is_refused_and_others_are_not(cluster: LocalCluster) -> None:
    secret = _token(cluster, "hammer", "writer")
    leader = cluster.wait_for_leader()
    creds = Credentials(ca=cluster.ca_file, cert=cluster.admin_cert.cert,
                        key=cluster.admin_cert.key, token=secret)  # fmt: skip
    ch = creds.channel(cluster.spec(leader).grpc)
    stub = api_grpc.JobServiceStub(ch)
    codes: list[grpc.StatusCode] = []
    try:
        for _ in range(120):  # burst 40, 20/s: refused long before the end
            try:
                stub.DeleteJob(api_pb2.JobRequest(name="no-such-job"), metadata=creds.metadata,
                               timeout=5)  # fmt: skip
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
                if e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "--write-rate" in (e.details() or "")
    finally:
        ch.close()
    assert grpc.StatusCode.NOT_FOUND in codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    # another caller still writes
    with cluster.client(retry_for=30) as admin:
        admin.create_job("not-throttled", cron=YEARLY)
        admin.delete_job("not-throttled")


def test_schedctl_namespace_flag_and_quota_commands(cluster: LocalCluster) -> None:
    env = {**os.environ, **cluster.client_env}

    def schedctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "schedctl", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = schedctl("--namespace", "cli-ns", "job", "create", "hello", "--cron", YEARLY)
    assert r.returncode == 0, r.stderr
    r = schedctl("-n", "cli-ns", "--json", "job", "list")
    assert r.returncode == 0, r.stderr
    jobs = json.loads(r.stdout)
    assert [(j["name"], j["namespace"]) for j in jobs] == [("hello", "cli-ns")]
    r = schedctl("--json", "job", "list")
    assert "hello" not in {j["name"] for j in json.loads(r.stdout)}
    r = schedctl("namespace", "set-quota", "cli-ns", "--max-jobs", "1")
    assert r.returncode == 0, r.stderr
    r = schedctl("-n", "cli-ns", "job", "create", "second", "--cron", YEARLY)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "quota" in r.stderr, r.stderr
    r = schedctl("--namespace", "Bad NS", "job", "list")
    assert r.returncode == 2 and "--namespace" in r.stderr and "Traceback" not in r.stderr
    r = schedctl("-n", "cli-ns", "namespace", "get")
    assert r.returncode == 0 and "cli-ns" in r.stdout, r.stderr


def test_namespaced_requests_carry_their_namespace_in_the_proto() -> None:
    """Every request that names a job or a queue has a namespace field (a client built from
    the .proto files alone can use namespaces)."""
    for msg in (
        api_pb2.CreateJobRequest,
        api_pb2.JobRequest,
        api_pb2.ResumeJobRequest,
        api_pb2.BackfillRequest,
        api_pb2.ExplainRequest,
        api_pb2.ListJobsRequest,
        api_pb2.TriggerJobRequest,
        api_pb2.ListRunsRequest,
        api_pb2.Hello,
    ):
        assert "namespace" in msg.DESCRIPTOR.fields_by_name, msg.DESCRIPTOR.name
    for msg in (types_pb2.Job, types_pb2.Run, types_pb2.Firing):
        assert "namespace" in msg.DESCRIPTOR.fields_by_name, msg.DESCRIPTOR.name
