"""Shared fakes for the schedctl unit tests (no tests here).

``FakeServer`` stands in for ``schedd.client.Client``: it builds requests with the SDK's own
``job_request`` and stores jobs through the server's own ``validate.create_job`` (so schedules
and retry policies are normalised exactly as a real node does), writes the policy defaults out as
api.proto documents, and keeps versions for UpdateJob. Results are wrapped in ``Record``s with a
``to_pb()`` method, like the SDK's frozen result types, so the CLI is exercised on attribute
access, not on protobuf-only methods.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

try:
    import schedctl  # noqa: F401  (installed with the package)
except ImportError:  # a source checkout: the package lives in cli/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))

from schedctl import main as cli_main  # noqa: E402

from schedd import errors, models
from schedd.client import job_request  # noqa: E402
from schedd.pb import api_pb2, types_pb2  # noqa: E402
from schedd.sched import policies
from schedd.sdk import core
from schedd.server import validate  # noqa: E402

NOW = 1_893_456_000_000  # 2030-01-01T00:00:00Z


class Record:
    """An SDK-style result: attribute access to a message's fields, and ``to_pb()``."""

    def __init__(self, msg: Any) -> None:
        object.__setattr__(self, "_msg", msg)

    def __getattr__(self, name: str) -> Any:
        if name in ("HasField", "ListFields", "SerializeToString", "DESCRIPTOR"):
            raise AttributeError(f"{name}: results are records, not protobuf messages")
        return getattr(self._msg, name)

    def to_pb(self) -> Any:
        out = type(self._msg)()
        out.CopyFrom(self._msg)
        return out


def store_policies(job: types_pb2.Job, req: api_pb2.CreateJobRequest) -> None:
    """What the server writes for the policy fields (api.proto defaults written out)."""
    job.misfire = req.misfire or policies.DEFAULT_MISFIRE
    job.misfire_grace_ms = (
        req.misfire_grace_ms
        if req.HasField("misfire_grace_ms")
        else policies.DEFAULT_MISFIRE_GRACE_MS
    )
    job.catchup_window_ms = (
        req.catchup_window_ms
        if req.HasField("catchup_window_ms")
        else policies.DEFAULT_CATCHUP_WINDOW_MS
    )
    job.max_catchup = (
        req.max_catchup if req.HasField("max_catchup") else policies.DEFAULT_MAX_CATCHUP
    )
    job.overlap = req.overlap or policies.DEFAULT_OVERLAP
    if req.HasField("max_concurrent"):
        job.max_concurrent = req.max_concurrent
    else:
        job.max_concurrent = 0 if job.overlap == types_pb2.OVERLAP_POLICY_ALLOW else 1
    if job.max_concurrent == 0 and job.overlap != types_pb2.OVERLAP_POLICY_ALLOW:
        raise errors.InvalidArgument(
            "max_concurrent", "must be at least 1 with overlap policy forbid"
        )
    for f in (
        "dispatch_timeout_ms",
        "on_success",
        "on_failure",
        "priority",
        "keep_runs",
        "keep_for_ms",
        "max_runs",
    ):
        setattr(job, f, getattr(req, f))
    job.tags.clear()
    job.tags.update(req.tags)


class FakeServer:
    """A Client replacement holding jobs in memory; ``calls`` records the writes and reads."""

    jobs: dict[str, types_pb2.Job] = {}
    calls: list[tuple[str, str, dict[str, Any]]] = []
    fail: dict[str, BaseException] = {}
    backfill_chunks: list[api_pb2.BackfillResponse] = []
    explain: api_pb2.ExplainResponse = api_pb2.ExplainResponse()
    runs: list[types_pb2.Run] = []
    endpoints_seen: list[list[str]] = []

    @classmethod
    def reset(cls) -> None:
        cls.jobs, cls.calls, cls.fail, cls.backfill_chunks, cls.runs = {}, [], {}, [], []
        cls.bulk_calls = 0
        cls.explain = api_pb2.ExplainResponse()
        cls.endpoints_seen = []

    def __init__(self, endpoints: list[str], **kwargs: Any) -> None:
        FakeServer.endpoints_seen.append(list(endpoints))

    def close(self) -> None:
        pass

    def _call(self, method: str, name: str = "", **kw: Any) -> None:
        FakeServer.calls.append((method, name, kw))
        if method in self.fail:
            raise self.fail[method]

    def _store(self, req: api_pb2.CreateJobRequest) -> types_pb2.Job:
        cmd = validate.create_job(req, NOW)
        job = types_pb2.Job()
        job.CopyFrom(cmd.create_job.job)
        store_policies(job, req)
        return job

    def create_job(self, name: str, **kw: Any) -> Record:
        self._call("create_job", name, **kw)
        if name in self.jobs:
            raise errors.AlreadyExists(f"job {name!r} already exists")
        job = self._store(job_request(name, **kw))
        job.version, job.created_ms, job.state = 1, NOW, types_pb2.JOB_STATE_ACTIVE
        self.jobs[name] = job
        return Record(job)

    bulk_calls = 0

    def create_jobs(self, specs: Iterable[Any]) -> list[models.JobCreateResult]:
        """CreateJobs as the server answers it: all-or-nothing validation, then per job."""
        items = [core.job_item(i, sp) for i, sp in enumerate(specs)]
        FakeServer.bulk_calls += 1
        for item in items:
            self._call("create_jobs", item.name, call=FakeServer.bulk_calls)
        validate.create_jobs(api_pb2.CreateJobsRequest(jobs=items), NOW)
        out = []
        for i, item in enumerate(items):
            if item.name in self.jobs:
                msg = f"name: a job named {item.name!r} already exists"
                out.append(models.JobCreateResult(i, item.name, "ALREADY_EXISTS", msg))
                continue
            job = self._store(item)
            job.version, job.created_ms, job.state = 1, NOW, types_pb2.JOB_STATE_ACTIVE
            self.jobs[item.name] = job
            out.append(models.JobCreateResult(i, item.name, "OK", "", models.Job.from_pb(job)))
        return out

    def update_job(self, name: str, *, expect_version: int = 0, **kw: Any) -> Record:
        self._call("update_job", name, expect_version=expect_version, **kw)
        old = self.get_job(name).to_pb()
        if expect_version and expect_version != old.version:
            raise errors.FailedPrecondition(
                f"job {name!r} is at version {old.version}, not {expect_version}"
            )
        kw.pop("request_id", None)
        job = self._store(job_request(name, **kw))
        job.version, job.created_ms, job.state = old.version + 1, old.created_ms, old.state
        job.updated_ms = NOW
        self.jobs[name] = job
        return Record(job)

    def get_job(self, name: str) -> Record:
        if "get_job" in self.fail:
            raise self.fail["get_job"]
        if name not in self.jobs:
            raise errors.NotFound(f"name: job {name!r} not found")
        return Record(self.jobs[name])

    def list_jobs(self, limit: int | None = 1000, *, after: str = "") -> list[Record]:
        self._call("list_jobs", after, limit=limit)
        return [Record(self.jobs[n]) for n in sorted(self.jobs) if n > after][:limit]

    def delete_job(self, name: str, *, force: bool = False) -> list[str]:
        self._call("delete_job", name, **({"force": True} if force else {}))
        del self.jobs[name]
        return []

    def resume_job(self, name: str, *, skip_missed: bool = False) -> Record:
        self._call("resume_job", name, skip_missed=skip_missed)
        return self.get_job(name)

    def trigger_job(self, name: str, request_id: str | None = None, **kw: Any) -> Record:
        self._call("trigger_job", name, **kw)
        state = (
            types_pb2.RUN_STATE_SKIPPED
            if kw.get("overlap") == "forbid"
            else types_pb2.RUN_STATE_PENDING
        )
        return Record(
            types_pb2.Run(
                run_id=f"{name}:1:{NOW}",
                job=name,
                scheduled_ms=NOW,
                state=state,
                origin=types_pb2.RUN_ORIGIN_TRIGGER,
                skip_reason=types_pb2.SKIP_REASON_OVERLAP
                if state == types_pb2.RUN_STATE_SKIPPED
                else 0,
            )
        )

    def backfill(
        self,
        name: str,
        from_ms: int,
        to_ms: int,
        *,
        chunk: int = 1000,
        overlap: str | int = 0,
        with_downstream: bool = False,
    ) -> Iterator[Record]:
        more = {"with_downstream": True} if with_downstream else {}
        self._call(
            "backfill", name, from_ms=from_ms, to_ms=to_ms, chunk=chunk, overlap=overlap, **more
        )
        for resp in self.backfill_chunks:
            if isinstance(resp, BaseException):
                raise resp
            yield Record(resp)

    def explain_job(self, name: str, at_ms: int) -> Record:
        self._call("explain_job", name, at_ms=at_ms)
        return Record(self.explain)

    def list_runs(self, job: str = "", limit: int = 100, **kw: Any) -> list[Record]:
        self._call("list_runs", job, limit=limit, **kw)
        return [Record(r) for r in self.runs]

    def cluster_status(self) -> list[tuple[str, Any, str]]:
        st = api_pb2.NodeStatus(
            node_id="n1",
            role="leader",
            term=3,
            commit_index=9,
            applied_index=9,
            leader_id="n1",
            grpc_address="127.0.0.1:7101",
        )
        return [("127.0.0.1:7101", Record(st), ""), ("h:2", None, "refused")]


def writes() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        c
        for c in FakeServer.calls
        if c[0] in ("create_job", "create_jobs", "update_job", "delete_job")
    ]


def invoke(
    *args: str, env: dict[str, str | None] | None = None, input: str | None = None
) -> Result:
    """Run schedctl in-process with no endpoints or config from the environment."""
    base: dict[str, str | None] = {
        "SCHEDD_ENDPOINTS": None,
        "SCHEDCTL_RETRY_FOR": None,
        "SCHEDD_CONTEXT": None,
        "SCHEDD_CONFIG": str(Path(__file__).parent / "no-such-dir" / "config.toml"),
    }
    return CliRunner().invoke(cli_main.cli, list(args), env={**base, **(env or {})}, input=input)


EP = ("--endpoints", "127.0.0.1:7101")
