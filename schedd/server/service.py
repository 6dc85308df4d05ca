"""gRPC servicers: translate requests to commands, propose them, translate results back.

Every write and read goes to the leader; a follower aborts with UNAVAILABLE and the leader's
gRPC address in the trailing metadata key ``schedd-leader``. Domain errors map to status codes
through ``schedd.errors`` (one table); anything unexpected is logged and answered INTERNAL
without leaking a traceback.

Who may do what (docs/security.md, "Leases and request ids"): every caller's identity comes from
``identity.principal``. A worker id belongs to the principal that attached it; heartbeats,
releases and completions count only from the worker session holding the lease (on its stream,
or a unary CompleteRun carrying the stream's ``Welcome.session``). Client request ids are scoped
to the principal and bound to a hash of the request; both are stamped into the command here.
Every wait in this module has a deadline (``limits.Limits``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from schedd import namespaces, rules
from schedd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotLeader,
    PermissionDenied,
    ResourceExhausted,
    SchedError,
    StaleFence,
    Unavailable,
    from_code,
)
from schedd.pb import api_grpc, api_pb2, command_pb2, types_pb2
from schedd.raft import membership
from schedd.sched import policies
from schedd.sched.explain import explain, explain_unscheduled, with_pending_cause, with_upstreams
from schedd.sched.schedule import compile_schedule
from schedd.sdk.endpoints import LEADER_METADATA_KEY
from schedd.security.roles import Role
from schedd.server import commands, identity, limits, planner, snapshots, validate
from schedd.server.auth import current_principal, secret_hash
from schedd.server.dispatcher import run_verdict
from schedd.server.workers import WorkerSession
from schedd.state import keys
from schedd.state.apply import Result, encode, features

if TYPE_CHECKING:
    from schedd.server.node import Node

log = logging.getLogger("schedd.service")

#: Encoded bytes of jobs in one ListJobs page: well under gRPC's default 4 MiB message limit.
LIST_PAGE_BYTES = 2 << 20

F = TypeVar("F", bound=Callable[..., Any])


#: GetDependencies answers about at most this many jobs
MAX_GRAPH_NODES = 200

#: ListWorkers names at most this many run ids per worker (``WorkerInfo.leases`` counts all).
MAX_LISTED_RUN_IDS = 100


def abort(context: grpc.ServicerContext, err: SchedError) -> None:
    if isinstance(err, NotLeader):
        context.set_trailing_metadata(((LEADER_METADATA_KEY, err.leader),))
    context.abort(getattr(grpc.StatusCode, err.code), err.message)


def rpc(fn: F) -> F:
    """Map SchedError to its status code; never let a traceback reach the client."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except SchedError as e:
            abort(context, e)
        except Exception:
            if context.code() is not None:  # context.abort() already raised through here
                raise
            log.exception("event=rpc_failed method=%s", fn.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}; see the node's log"
            )

    return wrapper  # type: ignore[return-value]


def _result(result: Result) -> Result:
    if not result.ok:
        raise from_code(result.code, result.message)
    return result


#: Stored bytes of runs per ListRuns response: well under gRPC's default 4 MiB message limit
#: (presented runs differ from stored ones only by a few bytes each).
RUN_PAGE_BYTES = 3 * 1024 * 1024


class _Base:
    def __init__(self, node: Node) -> None:
        self.node = node

    def _leader(self) -> None:
        self.node.require_leader()

    def _propose(self, cmd: command_pb2.Command, *, grows: bool = True) -> Result:
        """Propose a client's command. ``grows``: it may add state, so it is refused while the
        LMDB map is nearly full (a delete, which frees space, is not)."""
        self._leader()
        # who: the audit trail (schedd.state.apply.audit) and request-id scoping read it
        cmd.principal = cmd.principal or identity.principal_of_call()
        self.node.write_rates.check(cmd.principal, self.node.clock.monotonic())
        if grows:
            # against the ceiling, not the current map: the same on every node, while the map
            # itself grows at different moments on different nodes
            used, _ = self.node.store.usage()
            limits.check_storage(used, self.node.store.max_map_size, self.node.config.limits)
        return _result(self.node.raft.propose(encode(cmd), self.node.propose_timeout_s))


def scope_request(
    cmd: command_pb2.Command,
    context: grpc.ServicerContext,
    method: str,
    req: Message,
    principal: str | None = None,
) -> command_pb2.Command:
    """Stamp the caller's principal and the request's hash into a command with a request id:
    apply keys the id by principal and refuses the same id with another request. The hash is
    over the method and the request without its id, so a retry of the same request matches
    whatever the leader computed into the command (times, next due). ``principal``: the
    caller's, when the caller has it already (else read from ``context``)."""
    if cmd.request_id:
        body = type(req)()
        body.CopyFrom(req)
        _clear_request_id(body)
        cmd.principal = principal if principal is not None else identity.principal(context)
        cmd.request_hash = hashlib.sha256(
            method.encode() + b"\x00" + body.SerializeToString(deterministic=True)
        ).digest()
    return cmd


def create_jobs_command(
    req: api_pb2.CreateJobsRequest, now_ms: int, context: grpc.ServicerContext
) -> command_pb2.Command:
    """The entry of a bulk create: a Batch of exactly the CreateJob commands its items would be
    alone, each stamped with the caller's principal and, with a request id, the hash of the item
    as a CreateJob request; so an item retried in another bulk call, or alone, gets its first
    outcome. Raises InvalidArgument (all or nothing, :func:`validate.create_jobs`)."""
    principal = identity.principal(context)
    out = command_pb2.Command(now_ms=now_ms, principal=principal)
    out.batch.SetInParent()  # (a Batch even of no command, as before)
    subs = out.batch.commands
    for item, cmd in validate.create_jobs(req, now_ms):
        scope_request(cmd, context, "CreateJob", item, principal)
        cmd.principal = principal  # also without a request id: the audit trail names it
        subs.append(cmd)
    return out


def _job_out(job: types_pb2.Job | None) -> types_pb2.Job | None:
    """A job from a command's result as its namespace's clients see it (a copy: results may be
    shared with other waiters)."""
    if job is None:
        return None
    out = types_pb2.Job()
    out.CopyFrom(job)
    return namespaces.present_job(out)


def _run_out(run: types_pb2.Run | None) -> types_pb2.Run | None:
    if run is None:
        return None
    out = types_pb2.Run()
    out.CopyFrom(run)
    return namespaces.present_run(out)


def _clear_request_id(req: Message) -> None:
    """Clear the request id and write the namespace one way (``default`` and empty are the same
    namespace), so that the hash stands for what the request does, not how it was spelled."""
    body: Any = req.job if isinstance(req, api_pb2.UpdateJobRequest) else req
    body.request_id = ""
    holder = namespaces.carrier(req)
    if holder is not None and holder.namespace == namespaces.DEFAULT:
        holder.namespace = ""


class JobService(_Base, api_grpc.JobServiceServicer):
    @rpc
    def CreateJob(
        self, req: api_pb2.CreateJobRequest, context: grpc.ServicerContext
    ) -> api_pb2.JobResponse:
        self._leader()
        cmd = validate.create_job(req, self.node.clock.now_ms())
        if req.depends_on:
            self.node.require_feature(features.DEPENDENCIES, "depends_on (job dependencies)")
        scope_request(cmd, context, "CreateJob", req)
        return api_pb2.JobResponse(job=_job_out(self._propose(cmd).job))

    @rpc
    def CreateJobs(
        self, req: api_pb2.CreateJobsRequest, context: grpc.ServicerContext
    ) -> api_pb2.CreateJobsResponse:
        """Many creates in one entry: a Batch of the CreateJob commands each item would have
        been alone (its own request id, principal and request hash, so a retried item, bulk
        or not, returns its first outcome). Validation is all or nothing; apply's outcome is
        per item."""
        self._leader()
        batch = create_jobs_command(req, self.node.clock.now_ms(), context)
        n = len(batch.batch.commands)
        if not n:
            return api_pb2.CreateJobsResponse()
        self.node.require_feature(features.BULK_CREATE, "CreateJobs calls (bulk job creation)")
        if any(item.depends_on for item in req.jobs):
            self.node.require_feature(features.DEPENDENCIES, "depends_on (job dependencies)")
        result = self._propose(batch)
        if len(result.sub) != n:  # pragma: no cover - apply answers every sub-command
            raise SchedError(f"CreateJobs: {len(result.sub)} results for {n} jobs")
        out = api_pb2.CreateJobsResponse()
        for r in result.sub:
            item = out.results.add(
                code=getattr(grpc.StatusCode, r.code).value[0], message=r.message
            )
            if r.job is not None:  # copied once, into the response, and shown from there
                item.job.CopyFrom(r.job)
                namespaces.present_job(item.job)
        return out

    @rpc
    def GetJob(self, req: api_pb2.JobRequest, context: grpc.ServicerContext) -> api_pb2.JobResponse:
        self._leader()
        return api_pb2.JobResponse(job=namespaces.present_job(self._job(req.name, req.namespace)))

    @rpc
    def ListJobs(
        self, req: api_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListJobsResponse:
        self._leader()
        limit = validate.page_limit(
            req.limit, "limit", default=1000, maximum=10_000, hint="page with after_name"
        )
        ns = namespaces.namespace(req.namespace)
        after = namespaces.qualify(ns, req.after_name)
        # A page may hold fewer than `limit` jobs (big payloads): clients page on from the last name.
        with limits.scan_slot(self.node.scans, "ListJobs"):
            jobs = self.node.store.list_jobs(after, limit, max_bytes=LIST_PAGE_BYTES, namespace=ns)
        return api_pb2.ListJobsResponse(jobs=[namespaces.present_job(j) for j in jobs])

    @rpc
    def DeleteJob(
        self, req: api_pb2.JobRequest, context: grpc.ServicerContext
    ) -> api_pb2.DeleteJobResponse:
        result = self._propose(
            command_pb2.Command(
                now_ms=self.node.clock.now_ms(),
                delete_job=command_pb2.DeleteJobCmd(
                    name=validate.job_key(req.name, req.namespace), force=req.force
                ),
            ),
            grows=False,
        )
        return api_pb2.DeleteJobResponse(
            unlinked=[namespaces.bare(j) for code, j in result.items if code == "UNLINKED"]
        )

    @rpc
    def PauseJob(
        self, req: api_pb2.JobRequest, context: grpc.ServicerContext
    ) -> api_pb2.JobResponse:
        cmd = command_pb2.Command(
            now_ms=self.node.clock.now_ms(),
            pause_job=command_pb2.PauseJobCmd(name=validate.job_key(req.name, req.namespace)),
        )
        return api_pb2.JobResponse(job=_job_out(self._propose(cmd).job))

    @rpc
    def UpdateJob(
        self, req: api_pb2.UpdateJobRequest, context: grpc.ServicerContext
    ) -> api_pb2.JobResponse:
        self._leader()
        cmd = validate.update_job(req, self.node.clock.now_ms())
        if req.job.depends_on:
            self.node.require_feature(features.DEPENDENCIES, "depends_on (job dependencies)")
        scope_request(cmd, context, "UpdateJob", req)
        return api_pb2.JobResponse(job=_job_out(self._propose(cmd).job))

    def _job(self, name: str, namespace: str) -> types_pb2.Job:
        """The stored job ``name`` of ``namespace`` (NOT_FOUND names the namespace when it is
        not the default one: the same name may exist elsewhere)."""
        job = self.node.store.get_job(validate.job_key(name, namespace))
        if job is None:
            where = f" in namespace {namespace!r}" if namespace not in ("", "default") else ""
            raise NotFound(f"name: no job named {name!r}{where}")
        return job

    @rpc
    def ResumeJob(
        self, req: api_pb2.ResumeJobRequest, context: grpc.ServicerContext
    ) -> api_pb2.JobResponse:
        self._leader()
        job = self._job(req.name, req.namespace)
        now = self.node.clock.now_ms()
        cmd = command_pb2.Command(
            now_ms=now, resume_job=commands.plan_resume(job, now, req.skip_missed)
        )
        return api_pb2.JobResponse(job=_job_out(self._propose(cmd).job))

    @rpc
    def TriggerJob(
        self, req: api_pb2.TriggerJobRequest, context: grpc.ServicerContext
    ) -> api_pb2.TriggerJobResponse:
        overlap = policies.overlap_from(req.overlap) if req.overlap else 0
        cmd = command_pb2.Command(
            now_ms=self.node.clock.now_ms(),
            request_id=validate.request_id(req.request_id),
            trigger_job=command_pb2.TriggerJobCmd(
                name=validate.job_key(req.name, req.namespace),
                overlap=overlap,  # type: ignore[arg-type]
            ),
        )
        scope_request(cmd, context, "TriggerJob", req)
        return api_pb2.TriggerJobResponse(run=_run_out(self._propose(cmd).run))

    @rpc
    def BackfillJob(
        self, req: api_pb2.BackfillRequest, context: grpc.ServicerContext
    ) -> api_pb2.BackfillResponse:
        """One chunk: the slots in [from, to] up to ``limit``, created in one committed entry.
        The SDK/CLI loop over chunks (next_from_ms) and show progress."""
        self._leader()
        start, end, limit = validate.backfill_range(req)
        job = self._job(req.name, req.namespace)
        if not job.schedule.kind:
            raise FailedPrecondition(
                f"name: job {req.name!r} has no schedule, so it has no slots to backfill; "
                "backfill its upstreams with with_downstream (schedctl: --with-downstream)"
            )
        chunk = commands.plan_backfill(job, start, end, limit)
        resp = api_pb2.BackfillResponse(
            next_from_ms=chunk.next_from_ms, total_slots=chunk.total_slots
        )
        if not chunk.slots:
            return resp
        now = self.node.clock.now_ms()
        spacing = self.node.dispatcher.settings.catchup_spacing_ms
        cmd = command_pb2.Command(now_ms=now, backfill=self._backfill_cmd(job, chunk.slots, req))
        cmd.backfill.spacing_ms = spacing
        cmd.backfill.isolate = not req.with_downstream and bool(job.dependents)
        if not (req.with_downstream and job.dependents):
            result = self._propose(cmd)
            resp.created, resp.existing = result.count, result.existing
            return resp
        # with_downstream: this chunk and the matching slots of every scheduled downstream job,
        # in one entry (a repeated chunk creates nothing twice)
        subs = [cmd]
        for down, slots in commands.plan_downstream(self.node.store.get_job, job, chunk.slots):
            if slots:
                sub = command_pb2.Command(now_ms=now, backfill=self._backfill_cmd(down, slots, req))
                sub.backfill.spacing_ms = spacing
                subs.append(sub)
        principal = identity.principal(context)
        for sub in subs:
            sub.principal = principal
        result = self._propose(
            command_pb2.Command(now_ms=now, batch=command_pb2.Batch(commands=subs))
        )
        first = result.sub[0] if result.sub else result
        _result(first)
        resp.created, resp.existing = first.count, first.existing
        resp.downstream_created = sum(r.count for r in result.sub[1:])
        return resp

    def _backfill_cmd(
        self, job: types_pb2.Job, slots: list[int], req: api_pb2.BackfillRequest
    ) -> command_pb2.BackfillCmd:
        body = command_pb2.BackfillCmd(name=job.name, uid=job.uid, slots_ms=slots)
        body.overlap = req.overlap
        if job.depends_on:
            body.upstream.extend(
                planner.match_upstreams(self.node.store, job, slots, compile_schedule)
            )
        return body

    @rpc
    def ExplainJob(
        self, req: api_pb2.ExplainRequest, context: grpc.ServicerContext
    ) -> api_pb2.ExplainResponse:
        self._leader()
        job = self._job(req.name, req.namespace)
        at_ms = validate.instant(req.at_ms, "at_ms")
        store = self.node.store
        now_ms = self.node.clock.now_ms()
        records = lambda at, n: store.runs_at_or_before(job.name, job.uid, at, n)  # noqa: E731
        if job.schedule.kind:
            answer = explain(job, compile_schedule(job.schedule), at_ms, now_ms, records)
        else:
            answer = explain_unscheduled(job, at_ms, records)
        if answer.verdict == "waiting" and answer.runs and answer.runs[0].waiting_for:
            workers = self.node.dispatcher.worker_views()
            with_upstreams(answer, answer.runs[0], store.get_run, store.get_job, workers, now_ms)
        if answer.verdict == "pending" and answer.runs:
            # Why it has not started: from the leader's workers, as the grant planner sees them.
            with_pending_cause(
                answer,
                answer.runs[0],
                self.node.dispatcher.worker_views(),
                now_ms,
                paused=job.state == types_pb2.JOB_STATE_PAUSED,
            )
        for run in (*answer.runs, *answer.upstream):
            namespaces.present_run(run)
        return answer

    @rpc
    def GetDependencies(
        self, req: api_pb2.JobRequest, context: grpc.ServicerContext
    ) -> api_pb2.DependenciesResponse:
        """The job, its upstreams and its downstreams, transitively, each with its newest
        record and its runs waiting for upstreams (a read; at most MAX_GRAPH_NODES jobs)."""
        self._leader()
        root = self._job(req.name, req.namespace)
        store = self.node.store
        resp = api_pb2.DependenciesResponse()
        seen = {root.name}
        todo = [root]
        while todo:
            job = todo.pop(0)
            node = resp.nodes.add()
            node.job.CopyFrom(job)
            last = store.runs_at_or_before(job.name, job.uid, 2**62, 1)
            if last:
                node.last.CopyFrom(namespaces.present_run(last[0]))
            node.waiting.extend(namespaces.present_run(r) for r in store.waiting_runs(job.name, 10))
            namespaces.present_job(node.job)
            for nxt in (*job.depends_on, *job.dependents, job.on_success, job.on_failure):
                if not nxt or nxt in seen:
                    continue
                if len(seen) >= MAX_GRAPH_NODES:
                    resp.truncated = True
                    continue
                found = store.get_job(nxt)
                if found is not None:
                    seen.add(nxt)
                    todo.append(found)
        return resp


class RunService(_Base, api_grpc.RunServiceServicer):
    @rpc
    def ListRuns(
        self, req: api_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListRunsResponse:
        self._leader()
        limit = validate.page_limit(req.limit, "limit", default=100, maximum=100_000)
        ns = namespaces.namespace(req.namespace)
        job = validate.job_key(req.job, ns, "job") if req.job else ""
        state = validate.run_state(req.state)
        before = _run_page_key(req.page_token, job, ns)
        store = self.node.store
        if job:
            runs, nxt = store.list_runs_page(job, limit, state, None, before, RUN_PAGE_BYTES)
        else:  # every run of the namespace: a scan, so it takes one of the scan slots
            with limits.scan_slot(self.node.scans, "ListRuns"):
                runs, nxt = store.list_runs_page("", limit, state, ns, before, RUN_PAGE_BYTES)
        for run in runs:
            namespaces.present_run(self._with_progress(run))
        return api_pb2.ListRunsResponse(
            runs=runs, next_page_token=RUN_PAGE_TOKEN_VERSION + nxt if nxt else b""
        )

    def _with_progress(self, run: Any) -> Any:
        """Fill ``Run.progress`` of a leased run from the leader's memory (never stored)."""
        if run.state == types_pb2.RUN_STATE_LEASED:
            run.progress = self.node.dispatcher.progress_of(run.run_id)
        return run

    @rpc
    def GetRun(
        self, req: api_pb2.GetRunRequest, context: grpc.ServicerContext
    ) -> api_pb2.RunResponse:
        self._leader()
        if not req.run_id:
            raise InvalidArgument("run_id", "is required")
        run = self.node.store.get_run(req.run_id)
        if run is None:
            raise NotFound(f"run_id: no run {req.run_id!r}")
        return api_pb2.RunResponse(run=namespaces.present_run(self._with_progress(run)))

    @rpc
    def RetryRun(
        self, req: api_pb2.RetryRunRequest, context: grpc.ServicerContext
    ) -> api_pb2.RunResponse:
        cmd = command_pb2.Command(
            now_ms=self.node.clock.now_ms(),
            request_id=validate.request_id(req.request_id),
            retry_run=command_pb2.RetryRunCmd(run_id=validate.run_id(req.run_id)),
        )
        scope_request(cmd, context, "RetryRun", req)
        return api_pb2.RunResponse(run=_run_out(self._propose(cmd).run))

    @rpc
    def CancelRun(
        self, req: api_pb2.CancelRunRequest, context: grpc.ServicerContext
    ) -> api_pb2.RunResponse:
        """End an active run as CANCELLED (see CancelRunCmd); a leased run's worker is told
        through the committed result's ``revoked`` (Dispatcher.applied)."""
        cmd = command_pb2.Command(
            now_ms=self.node.clock.now_ms(),
            request_id=validate.request_id(req.request_id),
            cancel_run=command_pb2.CancelRunCmd(
                run_id=validate.run_id(req.run_id),
                reason=validate.clip_text(req.reason, validate.MAX_RELEASE_REASON_BYTES),
            ),
        )
        scope_request(cmd, context, "CancelRun", req)
        return api_pb2.RunResponse(run=_run_out(self._propose(cmd, grows=False).run))

    @rpc
    def CompleteRun(
        self, req: api_pb2.Completion, context: grpc.ServicerContext
    ) -> api_pb2.CompleteRunResponse:
        """A completion outside the worker stream. Answered from the committed run before
        anything is proposed (unknown run: NOT_FOUND; stale fence: ABORTED); otherwise it must
        prove that it comes from the worker session holding the lease: ``Completion.session``
        is that stream's ``Welcome.session`` (PERMISSION_DENIED if not)."""
        self._leader()
        c = validate.completion(req)
        run = self.node.store.get_run(c.run_id)
        if run is None:
            raise NotFound(f"run_id: no run {c.run_id!r}")
        verdict = run_verdict(run, c, run.worker_id)  # (the holder: the session proves it)
        if verdict is not None:
            raise from_code(*verdict)
        holder = self.node.registry.get(run.worker_id)
        if (
            holder is None
            or not c.session
            or not hmac.compare_digest(holder.secret.encode(), c.session.encode())
        ):
            raise PermissionDenied(
                f"session: run {c.run_id!r} is leased to a worker session and only that session "
                "can complete it: send the completion on the worker's Connect stream, or set "
                "Completion.session to that stream's Welcome.session"
            )
        done = threading.Event()
        answer: list[tuple[str, str]] = []

        def callback(_: api_pb2.Completion, code: str, message: str) -> None:
            answer.append((code, message))
            done.set()

        self.node.dispatcher.submit_completions([c], callback, holder.worker_id)
        if not done.wait(self.node.propose_timeout_s + 1):
            raise Unavailable(
                "the completion was not confirmed in time; resend it (it is idempotent)"
            )
        code, message = answer[0]
        if code == "ABORTED":
            raise StaleFence(message)
        if code != "OK":
            raise from_code(code, message)
        return api_pb2.CompleteRunResponse()


#: The longest a worker's Connect waits for an election to name a leader (pysyncobj's
#: elections take 0.4-1 s each with the default timeouts; a split vote takes another).
LEADER_WAIT_S = 2.0


class WorkerService(_Base, api_grpc.WorkerServiceServicer):
    def Connect(
        self, request_iterator: Iterator[api_pb2.WorkerMessage], context: grpc.ServicerContext
    ) -> Iterator[api_pb2.ServerMessage]:
        """A worker's stream. It holds one of the node's worker-stream slots from the moment it
        opens (before its Hello, so connections that never say Hello cannot take the threads
        the rest of the API needs) until it ends; with none free it is refused at once."""
        slots = self.node.worker_streams
        if not slots.try_acquire():
            abort(
                context,
                ResourceExhausted(
                    f"worker streams: this node already serves {slots.slots} worker streams "
                    "(opened or attached); stop some workers, or raise --worker-streams on the "
                    "nodes"
                ),
            )
            return
        try:
            yield from self._connect(request_iterator, context)
        finally:
            slots.release()

    def _connect(
        self, request_iterator: Iterator[api_pb2.WorkerMessage], context: grpc.ServicerContext
    ) -> Iterator[api_pb2.ServerMessage]:
        node = self.node
        lim = node.config.limits
        try:
            # During an election (or while this node takes over), answer once the new leader
            # is known instead of at once with a stale or no hint. Well under the agent's
            # 5 s Welcome timeout, after which it would skip this node as frozen.
            node.await_leader(LEADER_WAIT_S, context.is_active)
            node.require_leader()
            if not node.dispatcher.active:
                raise NotLeader(
                    "this node is becoming leader; retry in a moment", node.leader_grpc()
                )
            first = _first_message(request_iterator, lim.hello_timeout_s)
        except SchedError as e:
            abort(context, e)
            return
        except _NoHello:
            context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"hello: no Hello within {lim.hello_timeout_s:g}s of opening the stream; "
                "a worker sends Hello first",
            )
            return
        if first is None:
            return
        try:
            if first.WhichOneof("body") != "hello":
                raise InvalidArgument("hello", "the first message on the stream must be hello")
            hello = first.hello
            if not hello.worker_id or len(hello.worker_id) > rules.MAX_WORKER_ID_CHARS:
                raise InvalidArgument("hello.worker_id", "is required (at most 128 characters)")
            if hello.concurrency > 10_000:
                raise InvalidArgument(
                    "hello.concurrency", f"{hello.concurrency} is over the maximum of 10000"
                )
            ns = namespaces.namespace(hello.namespace, "hello.namespace")
            bare_queues = frozenset(
                validate.queue(q, "hello.queues") for q in hello.queues
            ) or frozenset({"default"})
            principal = current_principal()
            if not principal.holds(Role.WORKER, ns):
                raise PermissionDenied(
                    f"{principal.name} may not serve namespace {ns!r}: it needs the worker role "
                    f"there (it holds {', '.join(str(g) for g in principal.grants) or 'no roles'});"
                    " connect with hello.namespace set to a namespace it serves, or ask a "
                    "cluster admin for a grant"
                )
            refused = sorted(q for q in bare_queues if not principal.may_serve(q))
            if refused:
                raise PermissionDenied(
                    f"{principal.name} may not take firings from queue(s) {', '.join(refused)}: "
                    f"its grant covers {', '.join(principal.queues)}; connect with those queues "
                    "or ask a cluster admin for a token covering these"
                )
            queues = frozenset(namespaces.qualify(ns, q) for q in bare_queues)
            now_ms = node.clock.now_ms()
            session = WorkerSession(
                hello.worker_id,
                queues,
                hello.concurrency or 1,
                last_seen=node.clock.monotonic(),
                tags=_worker_tags(hello.tags),
                principal=identity.principal(context),
                secret=secrets.token_urlsafe(32),
                jobs=validate.worker_jobs(list(hello.jobs), ns),
                namespace=ns,
                connected_ms=now_ms,
                last_seen_ms=now_ms,
                waits_for_start=hello.waits_for_start,
            )
            reattached, lost = node.dispatcher.attach(
                session,
                list(hello.running),
                per_principal=lim.max_worker_streams_per_principal,
                total=lim.max_worker_streams,
            )
        except SchedError as e:
            abort(context, e)
            return
        log.info(
            "event=worker_attached worker=%s principal=%s queues=%s jobs=%s concurrency=%d "
            "reattached=%d lost=%d peer=%s",
            session.worker_id,
            session.principal,
            ",".join(sorted(queues)),
            ",".join(sorted(session.jobs)) if session.jobs is not None else "*",
            session.concurrency,
            len(reattached),
            len(lost),
            context.peer(),
        )
        context.add_callback(lambda: session.close("rpc terminated"))
        reader = threading.Thread(
            target=self._read,
            args=(session, request_iterator),
            name=f"worker-{session.worker_id}",
            daemon=True,
        )
        reader.start()
        # A worker heartbeats every interval, leases or not: a stream silent for this long is
        # dead (a half-open connection) and gives its gRPC thread back.
        silent_s = max(30.0, 3 * node.dispatcher.settings.lease_ttl_s)
        try:
            yield api_pb2.ServerMessage(
                welcome=api_pb2.Welcome(
                    node_id=node.config.node_id,
                    lease_ttl_ms=int(node.dispatcher.settings.lease_ttl_s * 1000),
                    heartbeat_interval_ms=int(node.dispatcher.settings.heartbeat_interval_s * 1000),
                    reattached=reattached,
                    lost=lost,
                    session=session.secret,
                )
            )
            while True:
                try:
                    # Closing the session (the RPC ended, replaced, leadership lost) puts None
                    # here; the timeout only catches a peer gone without a word. Not 1 s: with
                    # a thousand streams, a thousand wake-ups a second cost the leader CPU.
                    msg = session.outbound.get(timeout=5.0)
                except queue.Empty:
                    if not context.is_active():
                        session.close("rpc terminated")
                    elif node.clock.monotonic() - session.last_seen > silent_s:
                        session.close(f"no message from the worker in {silent_s:g}s")
                    continue
                if msg is None:
                    break
                yield msg
        finally:
            node.dispatcher.detach(session)
            session.close("stream ended")
            log.info(
                "event=worker_detached worker=%s reason=%r", session.worker_id, session.close_reason
            )
        if session.leader_hint is not None:
            context.set_trailing_metadata(((LEADER_METADATA_KEY, session.leader_hint),))
            context.abort(grpc.StatusCode.UNAVAILABLE, session.close_reason)

    @rpc
    def ListWorkers(
        self, req: api_pb2.ListWorkersRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListWorkersResponse:
        """The worker streams attached to the leader that serve ``req.namespace``, from its
        in-memory registry (draining ones too), by worker id."""
        self._leader()
        ns = namespaces.namespace(req.namespace)
        held = self.node.dispatcher.held_by_worker()
        out = api_pb2.ListWorkersResponse()
        for w in self.node.registry.attached():
            if w.namespace != ns:
                continue
            runs = held.get(w.worker_id, [])
            out.workers.append(
                api_pb2.WorkerInfo(
                    worker_id=w.worker_id,
                    principal=w.principal,
                    namespace=w.namespace,
                    queues=sorted(namespaces.bare(q) for q in w.queues),
                    tags=w.tags,
                    concurrency=w.concurrency,
                    leases=len(runs),
                    run_ids=runs[:MAX_LISTED_RUN_IDS],
                    jobs=sorted(namespaces.bare(j) for j in w.jobs) if w.jobs is not None else [],
                    connected_ms=w.connected_ms,
                    last_seen_ms=w.last_seen_ms,
                    draining=w.draining,
                )
            )
        return out

    def _read(
        self, session: WorkerSession, request_iterator: Iterator[api_pb2.WorkerMessage]
    ) -> None:
        dispatcher = self.node.dispatcher
        registry = self.node.registry

        try:
            for msg in request_iterator:
                if not registry.current(session):
                    break  # replaced by a newer stream of the same worker: it speaks for it now
                session.seen(self.node.clock.monotonic(), self.node.clock.now_ms())
                kind = msg.WhichOneof("body")
                if kind == "heartbeat":
                    lost = dispatcher.heartbeat(session, list(msg.heartbeat.leases))
                    if lost:
                        session.send(
                            api_pb2.ServerMessage(
                                lost=api_pb2.LeasesLost(
                                    leases=lost,
                                    reason="lease not held: it expired, was re-granted or the run finished",
                                )
                            )
                        )
                elif kind == "completions":
                    items = list(msg.completions.completions)
                    ack = _AckBatch(session, len(items))
                    valid = []
                    for i, c in enumerate(items):
                        try:
                            valid.append(validate.completion(c, f"completions[{i}]."))
                        except InvalidArgument as e:
                            ack(c, "INVALID_ARGUMENT", e.message)
                    dispatcher.submit_completions(valid, ack, session.worker_id)
                elif kind == "release":
                    n = dispatcher.release(
                        session,
                        list(msg.release.leases),
                        msg.release.reason,
                        drain=msg.release.drain,
                    )
                    log.info(
                        "event=worker_released worker=%s leases=%d released=%d drain=%s reason=%r",
                        session.worker_id,
                        len(msg.release.leases),
                        n,
                        msg.release.drain,
                        validate.clip_text(msg.release.reason, validate.MAX_RELEASE_REASON_BYTES),
                    )
        except grpc.RpcError:
            pass
        except Exception:
            log.exception("event=worker_stream_failed worker=%s", session.worker_id)
        finally:
            session.close("worker closed the stream")


class _NoHello(Exception):
    """The stream sent nothing within the Hello deadline."""


def _first_message(
    request_iterator: Iterator[api_pb2.WorkerMessage], timeout_s: float
) -> api_pb2.WorkerMessage | None:
    """The stream's first message (None if it ended first), waiting at most ``timeout_s``:
    a stream that never says Hello must not hold a gRPC thread. Raises _NoHello on timeout; the
    helper thread ends when the RPC does (aborting it ends the request iterator)."""
    box: queue.SimpleQueue[tuple[api_pb2.WorkerMessage | None, BaseException | None]] = (
        queue.SimpleQueue()
    )

    def read() -> None:
        try:
            box.put((next(request_iterator), None))
        except StopIteration:
            box.put((None, None))
        except BaseException as e:  # the RPC ended (grpc.RpcError) or the iterator failed
            box.put((None, e))

    threading.Thread(target=read, name="worker-hello", daemon=True).start()
    try:
        first, error = box.get(timeout=timeout_s)
    except queue.Empty:
        raise _NoHello() from None
    if error is not None:
        return None
    return first


def _worker_tags(tags: Any) -> dict[str, str]:
    """``Hello.tags`` checked by the one rule the agent also applies (``schedd.rules``)."""
    return rules.worker_tags(dict(tags), "hello.tags")


class _AckBatch:
    """Answers one Completions message with one CompletionAcks message (a stream message costs
    far more than an item in it), sent once every item's outcome is known."""

    def __init__(self, session: WorkerSession, expected: int) -> None:
        self._session = session
        self._expected = expected
        self._acks: list[api_pb2.CompletionAck] = []
        self._lock = threading.Lock()

    def __call__(self, c: api_pb2.Completion, code: str, message: str) -> None:
        ack = api_pb2.CompletionAck(
            run_id=c.run_id,
            fence=c.fence,
            code=getattr(grpc.StatusCode, code).value[0],
            message=message,
        )
        with self._lock:
            self._acks.append(ack)
            if len(self._acks) < self._expected:
                return
            acks, self._acks = self._acks, []
        self._session.send(api_pb2.ServerMessage(acks=api_pb2.CompletionAcks(acks=acks)))


class ClusterService(_Base, api_grpc.ClusterServiceServicer):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._transfers = limits.RateGate(node.config.limits.transfer_min_interval_s)
        self._transfers_lock = threading.Lock()

    @rpc
    def GetNodeStatus(
        self, req: api_pb2.NodeStatusRequest, context: grpc.ServicerContext
    ) -> api_pb2.NodeStatus:
        return self.node.status(with_digest=req.with_digest)

    def SaveSnapshot(
        self, req: api_pb2.SaveSnapshotRequest, context: grpc.ServicerContext
    ) -> Iterator[api_pb2.SnapshotChunk]:
        """A consistent copy of the leader's state: the info first, then the image in chunks.
        The image is first copied to a private file in the data directory (one read
        transaction; applies go on), so the stream never holds a transaction open while a slow
        client reads."""
        try:
            self._leader()
            image = self.node.snapshots.take(leader_id=self.node.config.node_id)
        except SchedError as e:
            abort(context, e)
            return
        try:
            yield api_pb2.SnapshotChunk(info=image.info)
            with open(image.path, "rb") as f:
                while chunk := f.read(snapshots.CHUNK_BYTES):
                    if not context.is_active():
                        return
                    yield api_pb2.SnapshotChunk(data=chunk)
        finally:
            image.discard()

    @rpc
    def ListAudit(
        self, req: api_pb2.ListAuditRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListAuditResponse:
        self._leader()
        limit = validate.page_limit(req.limit, "limit", default=100, maximum=10_000)
        with limits.scan_slot(self.node.scans, "ListAudit"):
            records, next_before = self.node.store.list_audit(
                limit, req.before_index, req.principal, req.target
            )
        return api_pb2.ListAuditResponse(records=records, next_before_index=next_before)

    @rpc
    def SetNamespaceQuota(
        self, req: api_pb2.SetNamespaceQuotaRequest, context: grpc.ServicerContext
    ) -> types_pb2.Namespace:
        self._leader()
        ns = namespaces.namespace(req.namespace)
        if not req.namespace:
            raise InvalidArgument("namespace", "is required (default is a namespace too)")
        cmd = command_pb2.Command(now_ms=self.node.clock.now_ms())
        cmd.set_namespace.namespace.CopyFrom(
            types_pb2.Namespace(
                name=ns,
                max_jobs=req.max_jobs,
                max_runs=req.max_runs,
                updated_by=current_principal().name,
            )
        )
        self._propose(cmd, grows=False)
        rec = self.node.store.get_namespace(ns)
        return rec if rec is not None else types_pb2.Namespace(name=ns)

    @rpc
    def GetNamespace(
        self, req: api_pb2.GetNamespaceRequest, context: grpc.ServicerContext
    ) -> types_pb2.Namespace:
        """A namespace's quotas and usage; without a quota record, no limits and usage counted
        now (a walk, so it takes a scan slot)."""
        self._leader()
        ns = namespaces.namespace(req.namespace)
        rec = self.node.store.get_namespace(ns)
        if rec is not None:
            return rec
        with limits.scan_slot(self.node.scans, "GetNamespace"):
            jobs, runs = self.node.store.count_namespace(ns)
        return types_pb2.Namespace(name=ns, jobs=jobs, runs=runs)

    @rpc
    def ListNamespaces(
        self, req: api_pb2.ListNamespacesRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListNamespacesResponse:
        """The namespaces that have a quota record (namespaces without one are not tracked:
        they exist as soon as a job names them)."""
        self._leader()
        return api_pb2.ListNamespacesResponse(namespaces=self.node.store.list_namespaces())

    def _member_list(self) -> api_pb2.ListMembersResponse:
        members, voters, peers, commit = self.node.member_view()
        me = self.node.config.raft
        out = []
        for m in members:
            peer = peers.get(m.raft)
            out.append(
                api_pb2.Member(
                    node_id=m.node_id,
                    raft_address=m.raft,
                    grpc_address=m.grpc,
                    leader=m.raft == me,
                    voter=m.raft in voters,
                    connected=m.raft == me or (peer is not None and peer.connected),
                    match_index=commit if m.raft == me else (peer.match_index if peer else 0),
                )
            )
        return api_pb2.ListMembersResponse(members=out, commit_index=commit)

    @rpc
    def ListMembers(
        self, req: api_pb2.ListMembersRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListMembersResponse:
        """The members as the leader sees them (whether each is connected and caught up)."""
        self._leader()
        return self._member_list()

    @rpc
    def AddMember(
        self, req: api_pb2.AddMemberRequest, context: grpc.ServicerContext
    ) -> api_pb2.AddMemberResponse:
        new = membership.Member(
            validate.node_id(req.node_id),
            validate.host_port(req.raft_address, "raft_address"),
            validate.host_port(req.grpc_address, "grpc_address"),
        )
        added = self.node.add_member(new, supported=req.features_supported)
        return api_pb2.AddMemberResponse(added=added, members=self._member_list().members)

    @rpc
    def RemoveMember(
        self, req: api_pb2.RemoveMemberRequest, context: grpc.ServicerContext
    ) -> api_pb2.RemoveMemberResponse:
        self.node.remove_member(validate.node_id(req.node_id))
        return api_pb2.RemoveMemberResponse(members=self._member_list().members)

    @rpc
    def TransferLeadership(
        self, req: api_pb2.TransferLeadershipRequest, context: grpc.ServicerContext
    ) -> api_pb2.TransferLeadershipResponse:
        self._leader()
        self.node.transfer_target(req.to_node_id)  # an unknown node id: INVALID_ARGUMENT first
        # Each transfer is an election: back to back (to whichever node leads now) they keep the
        # cluster without a leader. So a node hands over at most once per interval, and only
        # after it has led for an interval: cluster-wide at most one transfer per interval. A
        # call that comes early waits for its turn (at most an interval); more are refused.
        interval = self._transfers.interval_s
        now = self.node.clock.monotonic()
        dispatcher = self.node.dispatcher
        led_since = dispatcher.active_since if dispatcher.active else now
        with self._transfers_lock:
            ok, wait = self._transfers.reserve(now, led_since + interval, interval)
        if not ok:
            raise ResourceExhausted(
                f"TransferLeadership: a leader hands over at most once per {interval:g}s, and "
                f"only after leading for {interval:g}s; another transfer is already waiting on "
                f"this node, retry in {wait:.1f}s"
            )
        if wait > 0:
            threading.Event().wait(wait)
            if not context.is_active():  # the caller gave up: do nothing, free the turn
                with self._transfers_lock:
                    self._transfers.cancel(now + wait)
                return api_pb2.TransferLeadershipResponse()
        self.node.transfer_leadership(req.to_node_id)
        return api_pb2.TransferLeadershipResponse()


class TokenService(_Base, api_grpc.TokenServiceServicer):
    """Bearer tokens. The secret is generated here, on the leader, and only its hash is
    proposed: the log, the snapshots and every replica hold no usable secret."""

    @rpc
    def CreateToken(
        self, req: api_pb2.CreateTokenRequest, context: grpc.ServicerContext
    ) -> api_pb2.CreateTokenResponse:
        self._leader()
        now = self.node.clock.now_ms()
        tok = validate.create_token(req, now)
        tok.created_by = current_principal().name
        secret = "sdt_" + secrets.token_urlsafe(32)
        tok.secret_sha256 = secret_hash(secret)
        cmd = command_pb2.Command(now_ms=now)
        cmd.create_token.token.CopyFrom(tok)
        self._propose(cmd)
        shown = types_pb2.Token()
        shown.CopyFrom(tok)
        shown.ClearField("secret_sha256")
        shown.created_ms = now
        return api_pb2.CreateTokenResponse(token=shown, secret=secret)

    @rpc
    def ListTokens(
        self, req: api_pb2.ListTokensRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListTokensResponse:
        self._leader()
        out = []
        for tok in self.node.store.list_tokens():
            if tok.revoked_ms and not req.include_revoked:
                continue
            tok.ClearField("secret_sha256")
            out.append(tok)
        return api_pb2.ListTokensResponse(tokens=out)

    @rpc
    def RevokeToken(
        self, req: api_pb2.RevokeTokenRequest, context: grpc.ServicerContext
    ) -> api_pb2.RevokeTokenResponse:
        self._leader()
        name = validate.token_name(req.name)
        cmd = command_pb2.Command(now_ms=self.node.clock.now_ms())
        cmd.revoke_token.name = name
        cmd.revoke_token.revoked_by = current_principal().name
        self._propose(cmd)
        tok = next((t for t in self.node.store.list_tokens() if t.name == name), None)
        if tok is not None:
            tok.ClearField("secret_sha256")
        return api_pb2.RevokeTokenResponse(token=tok)


def add_services(server: grpc.Server, node: Node) -> list[str]:
    api_grpc.add_JobServiceServicer_to_server(JobService(node), server)
    api_grpc.add_RunServiceServicer_to_server(RunService(node), server)
    api_grpc.add_WorkerServiceServicer_to_server(WorkerService(node), server)
    api_grpc.add_ClusterServiceServicer_to_server(ClusterService(node), server)
    api_grpc.add_TokenServiceServicer_to_server(TokenService(node), server)
    return [
        api_pb2.DESCRIPTOR.services_by_name[n].full_name
        for n in ("JobService", "RunService", "WorkerService", "ClusterService", "TokenService")
    ]


#: The first byte of a ListRuns page token (its format may change; an old token is refused).
RUN_PAGE_TOKEN_VERSION = b"\x01"


def _run_page_key(token: bytes, job: str, namespace: str) -> bytes | None:
    """The store key a ListRuns ``page_token`` continues from (None without a token).
    InvalidArgument when it is not a token of this listing (another job or namespace, or not
    one this server wrote): a token never reaches past the listing it came from."""
    if not token:
        return None
    key = token[1:]
    if token[:1] != RUN_PAGE_TOKEN_VERSION or not key or not _in_listing(key, job, namespace):
        raise InvalidArgument(
            "page_token",
            "is not a token from a previous response of this listing (same job, state and "
            "namespace); start again without one",
        )
    return key


def _in_listing(key: bytes, job: str, namespace: str) -> bool:
    """Whether a page key (a ``runs_by_job`` key for a job's runs, a run id for all runs) lies
    in the listing of ``job``'s runs, or else of ``namespace``'s."""
    if job:
        return key.startswith(keys.by_job_prefix(job))
    pre = namespaces.prefix(namespace)
    if pre:
        return key.startswith(pre)
    try:
        return namespaces.in_namespace(key, namespace)
    except UnicodeDecodeError:
        return False
