"""The asyncio Python SDK: ``AsyncClient`` is :class:`schedd.client.Client` for ``async`` code.

    from schedd.aio import AsyncClient

    async with AsyncClient("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103") as client:
        job = await client.create_job("nightly", cron="0 3 * * *", tz="Europe/Berlin")
        runs = await client.list_runs(job="nightly")

Same methods, arguments, results (:mod:`schedd.models`) and failure contract as the synchronous
client (see :mod:`schedd.client`): calls go to the leader, follow ``schedd-leader`` hints, back off
between retries, give up after ``retry_for`` seconds with :class:`schedd.errors.Unavailable`
(at once with :class:`schedd.errors.Unreachable` when no endpoint can be reached, unless
``wait_for`` says how long to wait for one);
every attempt has a ``timeout`` deadline; writes that carry a request id are resent safely, other
timed-out writes raise :class:`schedd.errors.OutcomeUnknown`; no ``grpc`` exception leaves the
module. The decisions are shared with the synchronous client (one implementation).

An ``AsyncClient`` uses ``grpc.aio`` channels, which belong to the event loop that first used
them: use one client per loop. Cancelling a call (``asyncio.CancelledError``) cancels the RPC in
flight; like a timeout, the outcome of a cancelled write is unknown unless it carries a request id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from schedd import errors
from schedd.clock import Clock, SystemClock
from schedd.models import (
    AuditRecord,
    BackfillResult,
    DependencyNode,
    Explanation,
    Job,
    JobCreateResult,
    Member,
    Namespace,
    NewToken,
    NodeReport,
    NodeStatus,
    Run,
    Token,
    WorkerInfo,
)
from schedd.pb import api_grpc
from schedd.sdk import core
from schedd.sdk.core import JobSpec, RetrySpec
from schedd.sdk.credentials import Credentials
from schedd.sdk.endpoints import parse_endpoint, parse_endpoints

__all__ = ["AsyncClient"]

_T = TypeVar("_T")


class _AioStubs:
    """One ``grpc.aio`` channel to one node, its stubs, and a task counting READY transitions
    (``connections``), for the same "was it maybe sent?" test as the synchronous client."""

    def __init__(self, target: str, credentials: Credentials | None = None) -> None:
        self.channel = Credentials.resolve(credentials).aio_channel(target, core.CHANNEL_OPTIONS)
        self.jobs = api_grpc.JobServiceStub(self.channel)
        self.runs = api_grpc.RunServiceStub(self.channel)
        self.cluster = api_grpc.ClusterServiceStub(self.channel)
        self.tokens = api_grpc.TokenServiceStub(self.channel)
        self.workers = api_grpc.WorkerServiceStub(self.channel)
        self.connections = 0
        self.ready = False
        self._watch = asyncio.get_running_loop().create_task(self._watch_state())

    async def _watch_state(self) -> None:
        state = self.channel.get_state(try_to_connect=False)
        while True:
            self.ready = state is grpc.ChannelConnectivity.READY
            if self.ready:
                self.connections += 1
            await self.channel.wait_for_state_change(state)
            state = self.channel.get_state(try_to_connect=False)

    def maybe_sent_since(self, connections_before: int) -> bool:
        """Whether a call started when ``connections`` was ``connections_before`` may have been sent."""
        return self.ready or self.connections != connections_before

    async def close(self) -> None:
        """Stop the watcher and close the channel (cancelling its calls in flight)."""
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._watch
        await self.channel.close()


class AsyncClient:
    """An asyncio client for a schedd cluster that follows the Raft leader by itself.

    ``endpoints``: ``"host:port"`` strings, or one comma-separated string, of the nodes' gRPC
    addresses (any subset of the cluster works; the leader is found through hints).
    ``timeout``: deadline of each attempt, in seconds. ``retry_for``: how long to keep retrying
    when no leader answers before raising :class:`schedd.errors.Unavailable`. ``wait_for``: how
    long to keep trying when no endpoint can be reached at all (default 0: raise
    :class:`schedd.errors.Unreachable` after one round). ``clock`` and
    ``sleep`` are injectable for tests. ``credentials``: as for :class:`schedd.client.Client`
    (default: from the ``SCHEDD_*`` variables).

    Use it as ``async with AsyncClient(...) as client:``, or ``await client.close()`` when done.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = 5.0,
        retry_for: float = 20.0,
        wait_for: float = 0.0,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        credentials: Credentials | None = None,
        namespace: str | None = None,
    ) -> None:
        self._endpoints = parse_endpoints(endpoints)
        self._namespace = core.resolve_namespace(namespace)
        self._credentials = Credentials.resolve(credentials)
        self._md = {"metadata": self._credentials.metadata} if self._credentials.token else {}
        if timeout <= 0:
            raise errors.InvalidArgument("timeout", f"{timeout!r} must be positive")
        if retry_for < 0:
            raise errors.InvalidArgument("retry_for", f"{retry_for!r} must not be negative")
        if wait_for < 0:
            raise errors.InvalidArgument("wait_for", f"{wait_for!r} must not be negative")
        self._timeout = float(timeout)
        self._retry_for = float(retry_for)
        self._wait_for = float(wait_for)
        self._clock: Clock = clock or SystemClock()
        self._sleep = sleep
        self._stubs: dict[str, _AioStubs] = {}
        self._leader = self._endpoints[0]
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # set by the first call

    # -- lifecycle --

    @property
    def endpoints(self) -> list[str]:
        """The configured endpoints, in the order they are tried."""
        return list(self._endpoints)

    @property
    def namespace(self) -> str:
        """The namespace this client's jobs and runs live in (``namespace=``, else
        ``SCHEDD_NAMESPACE``, else ``default``)."""
        return self._namespace

    @property
    def leader(self) -> str:
        """The address the next leader-bound call is sent to (the last known leader)."""
        return self._leader

    async def close(self) -> None:
        """Close every channel (calls in flight are cancelled). Idempotent; the client cannot be
        used afterwards."""
        self._closed = True
        stubs, self._stubs = list(self._stubs.values()), {}
        for s in stubs:
            await s.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- jobs --

    async def create_job(
        self,
        name: str,
        *,
        cron: str | None = None,
        tz: str = "UTC",
        at_ms: int | None = None,
        every_ms: int | None = None,
        jitter_ms: int = 0,
        queue: str = "default",
        payload: str = "",
        max_attempts: int = 0,
        request_id: str | None = None,
        retry: RetrySpec | None = None,
        run_timeout_ms: int = 0,
        **policies: Any,
    ) -> Job:
        """Create job ``name`` and return it; see :meth:`schedd.client.Client.create_job`.
        Safe to retry with the same ``request_id`` (one is generated when omitted)."""
        definition = dict(
            cron=cron,
            tz=tz,
            at_ms=at_ms,
            every_ms=every_ms,
            jitter_ms=jitter_ms,
            queue=queue,
            payload=payload,
            max_attempts=max_attempts,
            retry=retry,
            run_timeout_ms=run_timeout_ms,
            **policies,
        )
        return await self._invoke(core.create_job(name, request_id, definition))

    async def create_jobs(self, specs: Iterable[JobSpec]) -> list[JobCreateResult]:
        """Create many jobs in one call and one replicated entry; see
        :meth:`schedd.client.Client.create_jobs`."""
        return await self._invoke(core.create_jobs(specs))

    async def update_job(
        self,
        name: str,
        *,
        expect_version: int = 0,
        request_id: str | None = None,
        **definition: Any,
    ) -> Job:
        """Replace the definition of job ``name`` and return the job; see
        :meth:`schedd.client.Client.update_job`."""
        return await self._invoke(core.update_job(name, expect_version, request_id, definition))

    async def backfill_job(
        self,
        name: str,
        from_ms: int,
        to_ms: int,
        *,
        limit: int = 1000,
        overlap: str | int = 0,
        with_downstream: bool = False,
    ) -> BackfillResult:
        """Create runs for the slots of ``name`` in ``from_ms .. to_ms``, at most ``limit``; see
        :meth:`schedd.client.Client.backfill_job`."""
        return await self._invoke(
            core.backfill_job(name, from_ms, to_ms, limit, overlap, with_downstream)
        )

    async def backfill(
        self,
        name: str,
        from_ms: int,
        to_ms: int,
        *,
        chunk: int = 1000,
        overlap: str | int = 0,
        with_downstream: bool = False,
    ) -> AsyncIterator[BackfillResult]:
        """Backfill ``from_ms .. to_ms`` chunk by chunk (``async for``), yielding each chunk's
        result. Interrupting it leaves the chunks done so far in place."""
        start = from_ms
        while True:
            result = await self.backfill_job(
                name, start, to_ms, limit=chunk, overlap=overlap, with_downstream=with_downstream
            )
            yield result
            if result.done:
                return
            start = result.next_from_ms

    async def explain_job(self, name: str, at_ms: int) -> Explanation:
        """Why did (or will) job ``name`` run or not at ``at_ms``; see
        :meth:`schedd.client.Client.explain_job`."""
        return await self._invoke(core.explain_job(name, at_ms))

    async def get_job(self, name: str) -> Job:
        """The job called ``name``. Raises NotFound."""
        return await self._invoke(core.get_job(name))

    async def list_jobs(self, limit: int | None = 1000, *, after: str = "") -> list[Job]:
        """Jobs in name order, at most ``limit`` of them (``None``: all), fetched page by page;
        ``after``: only names after this one (the last name of the previous page)."""
        pager = core.JobPager(limit, after)
        while (call := pager.next_call()) is not None:
            pager.add(await self._invoke(call))
        return pager.jobs

    async def delete_job(self, name: str, *, force: bool = False) -> list[str]:
        """Delete job ``name``; see :meth:`schedd.client.Client.delete_job`."""
        return await self._invoke(core.delete_job(name, force))

    async def dependencies(self, name: str) -> list[DependencyNode]:
        """The dependency graph around job ``name``; see
        :meth:`schedd.client.Client.dependencies`."""
        return await self._invoke(core.get_dependencies(name))

    async def pause_job(self, name: str) -> Job:
        """Stop scheduling new firings of ``name``; return the job."""
        return await self._invoke(core.pause_job(name))

    async def resume_job(self, name: str, *, skip_missed: bool = False) -> Job:
        """Schedule ``name`` again; see :meth:`schedd.client.Client.resume_job`."""
        return await self._invoke(core.resume_job(name, skip_missed))

    async def trigger_job(
        self, name: str, request_id: str | None = None, *, overlap: str | int = 0
    ) -> Run:
        """Create a manual run of ``name`` now and return it; safe to retry with
        ``request_id``. See :meth:`schedd.client.Client.trigger_job`."""
        return await self._invoke(core.trigger_job(name, request_id, overlap))

    # -- runs --

    async def list_runs(
        self, job: str = "", limit: int = 100, state: int | str | None = None
    ) -> list[Run]:
        """The newest ``limit`` runs (of ``job``, or all), oldest first, optionally only those in
        ``state``; see :meth:`schedd.client.Client.list_runs`."""
        pager = core.RunPager(job, limit, state)
        while (call := pager.next_call()) is not None:
            pager.add(await self._invoke(call))
        return pager.runs

    async def retry_run(self, run_id: str, request_id: str | None = None) -> Run:
        """Replay a DEAD (or FAILED) run; see :meth:`schedd.client.Client.retry_run`."""
        return await self._invoke(core.retry_run(run_id, request_id))

    async def cancel_run(self, run_id: str, reason: str = "", request_id: str | None = None) -> Run:
        """End an active run as CANCELLED; see :meth:`schedd.client.Client.cancel_run`."""
        return await self._invoke(core.cancel_run(run_id, reason, request_id))

    async def list_workers(self, namespace: str = "") -> list[WorkerInfo]:
        """The workers attached to the leader; see :meth:`schedd.client.Client.list_workers`."""
        return await self._invoke(core.list_workers(namespace))

    async def get_run(self, run_id: str) -> Run:
        """The run ``run_id``. Raises NotFound."""
        return await self._invoke(core.get_run(run_id))

    async def complete_run(
        self,
        run_id: str,
        fence: int,
        success: bool,
        error: str = "",
        exit_code: int | None = None,
        *,
        session: str = "",
    ) -> None:
        """Report the outcome of the attempt holding ``fence``; raises StaleFence when another
        attempt owns the run now. See :meth:`schedd.client.Client.complete_run`."""
        await self._invoke(core.complete_run(run_id, fence, success, error, exit_code, session))

    # -- cluster --

    # -- tokens (cluster-admin) --

    async def create_token(
        self,
        name: str,
        grants: Sequence[str],
        *,
        queues: Sequence[str] = (),
        ttl_s: int = 0,
    ) -> NewToken:
        """Create an API token; its secret is in the result, shown this once. ``grants``:
        ``"cluster-admin"``, ``"ROLE"`` or ``"NAMESPACE:ROLE"`` (roles: reader, writer, admin,
        worker); ``queues`` restricts worker grants; ``ttl_s``: lifetime (0 = no expiry)."""
        return await self._invoke(core.create_token(name, grants, queues, ttl_s))

    async def list_tokens(self, include_revoked: bool = False) -> list[Token]:
        """The tokens (never their secrets), by name."""
        return await self._invoke(core.list_tokens(include_revoked))

    async def list_audit(
        self, limit: int = 100, *, principal: str = "", target: str = "", before_index: int = 0
    ) -> tuple[list[AuditRecord], int]:
        """The audit trail, newest first (cluster-admin): at most ``limit`` records (up to
        10,000) below log index ``before_index`` (0: from the newest), only ``principal``'s or
        only those naming ``target`` when given; and the ``before_index`` of the next page (0:
        no more)."""
        return await self._invoke(core.list_audit(limit, before_index, principal, target))

    async def set_namespace_quota(
        self, namespace: str, *, max_jobs: int = 0, max_runs: int = 0
    ) -> Namespace:
        """Set ``namespace``'s quotas (cluster-admin): at most ``max_jobs`` jobs and
        ``max_runs`` stored runs (0 = no limit). The first call counts the namespace's jobs and
        runs; from then on every node keeps them counted. Returns the namespace with its usage."""
        return await self._invoke(core.set_namespace_quota(namespace, max_jobs, max_runs))

    async def get_namespace(self, namespace: str = "") -> Namespace:
        """Quotas and usage of ``namespace`` (empty: this client's); needs the reader role
        there."""
        return await self._invoke(core.get_namespace(namespace))

    async def list_namespaces(self) -> list[Namespace]:
        """The namespaces that have quotas (cluster-admin)."""
        return await self._invoke(core.list_namespaces())

    async def revoke_token(self, name: str) -> Token:
        """Revoke a token on every node (each refuses it once it has applied the revocation)."""
        return await self._invoke(core.revoke_token(name))

    async def list_members(self) -> list[Member]:
        """The cluster's members as the leader sees them (a reader may ask)."""
        return await self._invoke(core.list_members())

    async def add_member(self, node_id: str, raft_address: str, grpc_address: str) -> list[Member]:
        """Add a voting member (cluster-admin); returns the members after the change. Start
        the new node with ``schedd run --join`` (which makes this call itself).

        Raises FailedPrecondition when the cluster could not commit without the new node (a
        member is down or behind) or another change is in progress, InvalidArgument when the
        id or Raft address belongs to another member."""
        return await self._invoke(core.add_member(node_id, raft_address, grpc_address))

    async def remove_member(self, node_id: str) -> list[Member]:
        """Remove a member (cluster-admin); returns the members left. Removing the leader
        moves leadership first. Raises NotFound for a node that is not a member and
        FailedPrecondition when the members left could not commit. Stop the removed node's
        process afterwards."""
        return await self._invoke(core.remove_member(node_id))

    async def transfer_leadership(self, to_node_id: str = "") -> None:
        """Ask the leader to hand leadership to ``to_node_id`` (empty: any caught-up follower);
        see :meth:`schedd.client.Client.transfer_leadership`."""
        await self._invoke(core.transfer_leadership(to_node_id))

    async def node_status(
        self, endpoint: str, with_digest: bool = False, timeout: float = 2.0
    ) -> NodeStatus:
        """Ask the node at ``endpoint`` (and only it) for its Raft status; no retries. Raises
        Unavailable when it cannot be reached or does not answer within ``timeout``."""
        target = parse_endpoint(endpoint, "endpoint")
        req = core.node_status_request(with_digest)
        try:
            resp = await self._stub(target).cluster.GetNodeStatus(req, timeout=timeout, **self._md)
        except grpc.RpcError as exc:
            raise core.node_failure(target, *core.status_of(exc), timeout) from None
        except grpc.aio.UsageError as exc:  # the channel was closed under us
            raise errors.FailedPrecondition(f"client is closed ({exc})") from None
        return NodeStatus.from_pb(resp)

    async def cluster_status(
        self, with_digest: bool = False, timeout: float | None = None
    ) -> list[NodeReport]:
        """Ask every configured endpoint, concurrently, for its status; never raises for a node.
        One :class:`schedd.models.NodeReport` per endpoint, in the configured order."""
        t = self._timeout if timeout is None else timeout

        async def ask(ep: str) -> NodeReport:
            try:
                return core.report_of(ep, await self.node_status(ep, with_digest, t), None)
            except errors.SchedError as exc:
                return core.report_of(ep, None, exc)

        return list(await asyncio.gather(*(ask(ep) for ep in self._endpoints)))

    # -- machinery --

    def _stub(self, target: str) -> _AioStubs:
        if self._closed:
            raise errors.FailedPrecondition("client is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:  # grpc.aio channels cannot move between loops
            raise errors.FailedPrecondition(
                "this AsyncClient belongs to another event loop; make one client per loop"
            )
        stubs = self._stubs.get(target)
        if stubs is None:
            stubs = self._stubs[target] = _AioStubs(target, self._credentials)
        return stubs

    async def _invoke(self, call: core.Call[_T]) -> _T:
        call = core.in_namespace(call, self._namespace)
        return call.result(
            await self._call(call.service, call.method, call.request, idempotent=call.idempotent)
        )

    async def _call(self, service: str, method: str, request: Any, *, idempotent: bool) -> Any:
        """Send ``request`` to the leader, following hints and retrying as :mod:`schedd.client`
        describes (the same :class:`schedd.sdk.core.Attempts` schedule)."""
        attempts = core.Attempts(
            self._endpoints,
            self._leader,
            method=method,
            idempotent=idempotent,
            timeout=self._timeout,
            retry_for=self._retry_for,
            wait_for=self._wait_for,
            now=self._clock.monotonic(),
        )
        while True:
            target = attempts.target
            stubs = self._stub(target)
            connections = getattr(stubs, "connections", 0)
            try:
                result = await getattr(getattr(stubs, service), method)(
                    request, timeout=self._timeout, **self._md
                )
            except grpc.RpcError as exc:
                code, details, hint = core.status_of(exc)
                if code == "CANCELLED" and self._closed:
                    raise errors.FailedPrecondition("client is closed") from None
                maybe_sent = (
                    stubs.maybe_sent_since(connections) if isinstance(stubs, _AioStubs) else True
                )
                try:
                    delay = attempts.failed(
                        code, details, hint, maybe_sent=maybe_sent, now=self._clock.monotonic()
                    )
                except errors.SchedError as final:
                    raise final from None  # as in schedd.client: grpc's exception is noise here
            except grpc.aio.UsageError as exc:  # the channel was closed by a concurrent close()
                raise errors.FailedPrecondition(f"client is closed ({exc})") from None
            else:
                self._leader = target
                return result
            self._leader = attempts.target
            if delay:
                await self._sleep(delay)
