"""The synchronous Python SDK: ``Client`` talks to a schedd cluster over gRPC.

    from schedd.client import Client

    with Client("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103") as client:
        client.create_job("nightly", cron="0 3 * * *", tz="Europe/Berlin")
        for run in client.list_runs(job="nightly"):
            print(run.run_id, run.state.word, run.scheduled_at)

Results are the frozen dataclasses of :mod:`schedd.models` (``Job``, ``Run``, ``NodeStatus``,
...), whose attributes carry the protobuf field names; :mod:`schedd.aio` has the same API for
asyncio.

Failure contract
----------------
* Every call except :meth:`Client.node_status` and :meth:`Client.cluster_status` goes to the
  current Raft leader. A follower answers ``UNAVAILABLE`` with the leader's address in the trailing
  metadata key ``schedd-leader``; the client switches to that address (even one that is not in
  ``endpoints``). A node that cannot be reached, or that knows no leader, makes the client try the
  next endpoint. Between attempts it backs off (50 ms, doubling, at most 1 s) and it gives up after
  ``retry_for`` seconds with :class:`schedd.errors.Unavailable`.
* When no endpoint can be reached at all (every one refuses the connection, fails the TLS
  handshake or does not connect within ``timeout``), retrying does not find a leader: the call
  raises :class:`schedd.errors.Unreachable` (an ``Unavailable``) after one round, naming each
  endpoint and what failed; the request was never sent. ``wait_for`` seconds keeps trying for a
  cluster that is starting.
* Every attempt has a deadline of ``timeout`` seconds. A timed-out *read* is retried elsewhere. A
  timed-out *write* has an unknown outcome: ``create_job``, ``update_job``, ``trigger_job``,
  ``retry_run``, ``cancel_run`` and ``backfill_job`` carry a request id or are idempotent by nature (generated
  when none is given, reused by every retry), so the client retries them safely; the other
  writes raise :class:`schedd.errors.OutcomeUnknown` instead of guessing.
* ``INVALID_ARGUMENT``, ``NOT_FOUND``, ``ALREADY_EXISTS``, ``ABORTED`` (stale fence) and
  ``FAILED_PRECONDITION`` are final answers and raise the matching :mod:`schedd.errors` type at
  once. No ``grpc`` exception ever leaves this module: every failure is a
  :class:`schedd.errors.SchedError`.

The small pure helpers (:func:`parse_endpoints`, :func:`leader_hint`, :func:`classify`,
:func:`error_from_status`, :func:`summarize_failure`, :func:`backoff_delays`) hold the decisions
and are unit-tested without a network. They live in private modules shared with the asyncio
client and the worker agent, and are re-exported here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from schedd import errors
from schedd.backup import BackupHeader, write_backup
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
from schedd.sdk.core import (
    Action as Action,
)
from schedd.sdk.core import (
    JobSpec,
    RetrySpec,
    new_request_id,
    retry_policy,
)
from schedd.sdk.core import (
    classify as classify,
)
from schedd.sdk.core import (
    error_from_status as error_from_status,
)
from schedd.sdk.core import (
    job_request as job_request,
)
from schedd.sdk.core import (
    run_state as run_state,
)
from schedd.sdk.core import (
    summarize_failure as summarize_failure,
)
from schedd.sdk.credentials import Credentials
from schedd.sdk.endpoints import (
    LEADER_METADATA_KEY as LEADER_METADATA_KEY,
)
from schedd.sdk.endpoints import (
    backoff_delays as backoff_delays,
)
from schedd.sdk.endpoints import (
    leader_hint as leader_hint,
)
from schedd.sdk.endpoints import (
    parse_endpoint,
    parse_endpoints,
)

# What users call. The helpers imported above stay importable (the CLI and the tests use some)
# but are the SDK's internals: schedd.sdk.
__all__ = ["Client", "NodeReport", "new_request_id", "parse_endpoints", "retry_policy"]

#: Status codes that are the server's final word: retrying cannot change them.
FINAL_CODES = core.FINAL_CODES

_T = TypeVar("_T")

# Old private spellings, kept for code and tests that reached into this module.
_as_policy = core.as_policy
_build = core.build


class _Stubs:
    """One channel to one node, the stubs on it, and whether it has been connected.

    ``connections`` counts transitions to READY. A call can only be sent on a READY connection, so
    an attempt that times out while the count did not move and the channel is not READY never
    reached the node (a stopped or black-holed host), and resending it is safe.
    """

    def __init__(self, target: str, credentials: Credentials | None = None) -> None:
        self.channel = Credentials.resolve(credentials).channel(target, core.CHANNEL_OPTIONS)
        self.jobs = api_grpc.JobServiceStub(self.channel)
        self.runs = api_grpc.RunServiceStub(self.channel)
        self.cluster = api_grpc.ClusterServiceStub(self.channel)
        self.tokens = api_grpc.TokenServiceStub(self.channel)
        self.workers = api_grpc.WorkerServiceStub(self.channel)
        self.connections = 0
        self.ready = False
        self.channel.subscribe(self._on_state, try_to_connect=False)

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        self.ready = state is grpc.ChannelConnectivity.READY
        if self.ready:
            self.connections += 1

    def maybe_sent_since(self, connections_before: int) -> bool:
        """Whether a call started when ``connections`` was ``connections_before`` may have been sent."""
        return self.ready or self.connections != connections_before


class Client:
    """A synchronous client for a schedd cluster that follows the Raft leader by itself.

    ``endpoints``: ``"host:port"`` strings, or one comma-separated string, of the nodes' gRPC
    addresses (any subset of the cluster works; the leader is found through hints).
    ``timeout``: deadline of each attempt, in seconds. ``retry_for``: how long to keep retrying
    when no leader answers before raising :class:`schedd.errors.Unavailable`. ``wait_for``: how
    long to keep trying when no endpoint can be reached at all (default 0: raise
    :class:`schedd.errors.Unreachable` after one round, about a second).
    ``credentials``: TLS roots, client certificate and token
    (:class:`schedd.sdk.credentials.Credentials`); default: read from the ``SCHEDD_CA``,
    ``SCHEDD_CERT``, ``SCHEDD_KEY``, ``SCHEDD_TOKEN``/``SCHEDD_TOKEN_FILE`` and
    ``SCHEDD_INSECURE`` variables (``source .schedd-dev/env`` after ``schedd dev`` sets them).

    Thread-safe. Use it as a context manager, or call :meth:`close` when done.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = 5.0,
        retry_for: float = 20.0,
        wait_for: float = 0.0,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
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
        self._lock = threading.Lock()
        self._stubs: dict[str, _Stubs] = {}
        self._leader = self._endpoints[0]  # where the next leader-bound call goes first
        self._closed = False

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
        with self._lock:
            return self._leader

    def close(self) -> None:
        """Close every channel. Idempotent; the client cannot be used afterwards."""
        with self._lock:
            self._closed = True
            stubs, self._stubs = list(self._stubs.values()), {}
        for s in stubs:
            s.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- jobs --

    def create_job(
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
        """Create job ``name`` firing on a ``cron`` expression in zone ``tz``, every ``every_ms``
        (anchored at the Unix epoch), or once at ``at_ms``; return it.

        Give exactly one of ``cron`` / ``every_ms`` / ``at_ms``. ``jitter_ms`` spreads each firing
        by a deterministic hash of the job name and slot. ``payload`` is JSON text handed to every
        firing; ``max_attempts`` 0 means the server's default. ``retry``: a retry policy, as a
        :class:`schedd.models.RetryPolicy`, a protobuf ``RetryPolicy`` or a dict of
        :func:`retry_policy`'s keyword arguments, e.g. ``{"max_attempts": 3,
        "initial_backoff_ms": 1000, "multiplier": 2, "max_backoff_ms": 60_000,
        "non_retryable_exit_codes": [3]}``; without one, a failed attempt is retried after the
        cluster's fixed backoff. ``run_timeout_ms``: an attempt running longer fails (0 = no
        limit). A run out of attempts becomes DEAD (see :meth:`retry_run`).

        Policies (keyword arguments, see docs/policies.md): ``misfire`` (``"skip"``,
        ``"fire_once"``, ``"fire_all"``), ``misfire_grace_ms``, ``catchup_window_ms``,
        ``max_catchup``, ``overlap`` (``"allow"``, ``"forbid"``, ``"buffer_one"``,
        ``"replace"``), ``max_concurrent``, ``dispatch_timeout_ms``, ``on_success``,
        ``on_failure``, ``priority``, ``tags`` (dict), ``keep_runs``, ``keep_for_ms``,
        ``max_runs``, ``start_ms``, ``end_ms``, ``dst_gap`` (``"shift"``/``"skip"``),
        ``dst_repeat`` (``"once"``/``"twice"``), ``anchor_ms``, ``allow_past``.

        Dependencies (docs/dependencies.md): ``depends_on`` (a list of job names: run each slot
        only once their matching runs satisfy the trigger rule; with no schedule given, run each
        time they are satisfied), ``trigger_rule`` (``"all_succeeded"``, the default,
        ``"all_done"``, ``"any_succeeded"``), ``dependency_timeout_ms`` (waiting longer skips
        the run; default 1 day, 0 = never).

        Safe to retry with the same ``request_id`` (one is generated when omitted): a resent
        create returns the first answer. Raises InvalidArgument, AlreadyExists, Unavailable.
        """
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
        return self._invoke(core.create_job(name, request_id, definition))

    def create_jobs(self, specs: Iterable[JobSpec]) -> list[JobCreateResult]:
        """Create many jobs in one call and one replicated entry; return one
        :class:`~schedd.models.JobCreateResult` per job, in order.

        ``specs``: at most 1,000 jobs (and 2 MiB), each a dict of :meth:`create_job`'s keyword
        arguments with its ``name`` (``{"name": "a", "cron": "0 * * * *", "queue": "q"}``),
        optionally its own ``request_id``, or a ``CreateJobRequest``. All of them are in this
        client's namespace.

        All or nothing at validation: if any job is invalid (or two share a name or a request
        id), InvalidArgument names each bad one by index and field (``jobs[3].schedule.cron:
        ...``) and nothing is created. Otherwise the jobs are created in order (a job may chain
        to one before it) and what happened to each is its result: ``"OK"`` with the job, or
        e.g. ``"ALREADY_EXISTS"`` for a name that exists, while the others are created.

        Safe to retry: every job carries a request id (generated when it has none), so a
        resent call creates nothing twice and returns each job's first outcome. Raises
        InvalidArgument, FailedPrecondition (a cluster not yet fully upgraded), Unavailable.
        """
        return self._invoke(core.create_jobs(specs))

    def update_job(
        self,
        name: str,
        *,
        expect_version: int = 0,
        request_id: str | None = None,
        **definition: Any,
    ) -> Job:
        """Replace the definition of job ``name`` (same keyword arguments as :meth:`create_job`;
        what is not given takes its default, as in a create) and return the updated job. Its runs
        stay. When the schedule is unchanged the slot sequence continues; a new schedule starts
        after now.

        ``expect_version``: fail with FailedPrecondition unless the job is at that version
        (optimistic concurrency: read, modify, update with the ``version`` you read; 0 = any).
        Safe to retry with ``request_id``. Raises NotFound, InvalidArgument, FailedPrecondition.
        """
        return self._invoke(core.update_job(name, expect_version, request_id, definition))

    def backfill_job(
        self,
        name: str,
        from_ms: int,
        to_ms: int,
        *,
        limit: int = 1000,
        overlap: str | int = 0,
        with_downstream: bool = False,
    ) -> BackfillResult:
        """Create runs for the slots of ``name`` in ``from_ms .. to_ms`` (inclusive), at most
        ``limit`` per call; call again from ``next_from_ms`` until it is 0 (:meth:`backfill`
        does the loop). ``overlap`` overrides the job's overlap policy for these runs. Slots that
        already have a run are left alone, so a repeated call is safe. Raises NotFound,
        InvalidArgument."""
        return self._invoke(
            core.backfill_job(name, from_ms, to_ms, limit, overlap, with_downstream)
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
    ) -> Iterator[BackfillResult]:
        """Backfill ``from_ms .. to_ms`` chunk by chunk, yielding each chunk's result (for a
        progress display). Interrupting it leaves the chunks done so far in place."""
        start = from_ms
        while True:
            result = self.backfill_job(
                name, start, to_ms, limit=chunk, overlap=overlap, with_downstream=with_downstream
            )
            yield result
            if result.done:
                return
            start = result.next_from_ms

    def explain_job(self, name: str, at_ms: int) -> Explanation:
        """Why did (or will) job ``name`` run or not at ``at_ms``? Returns a verdict word, a
        sentence, the slot concerned and the run or skip records that decided it. ``at_ms``
        need not be a slot: the slot at or before it is explained (``slot_ms``; the sentence
        names it). Raises NotFound, InvalidArgument."""
        return self._invoke(core.explain_job(name, at_ms))

    def get_job(self, name: str) -> Job:
        """The job called ``name``. Raises NotFound."""
        return self._invoke(core.get_job(name))

    def list_jobs(self, limit: int | None = 1000, *, after: str = "") -> list[Job]:
        """Jobs in name order, at most ``limit`` of them (``None``: all), fetched page by page;
        ``after``: only names after this one (the last name of the previous page)."""
        pager = core.JobPager(limit, after)
        while (call := pager.next_call()) is not None:
            pager.add(self._invoke(call))
        return pager.jobs

    def delete_job(self, name: str, *, force: bool = False) -> list[str]:
        """Delete job ``name``; its pending runs are cancelled. Raises NotFound.

        A job that other jobs depend on (their ``depends_on`` names it) is not deleted:
        FailedPrecondition names them. With ``force`` it is, and its name is removed from
        their ``depends_on``; the return value lists those jobs (empty otherwise).

        Not retried after a timeout (raises OutcomeUnknown). After a lost connection it is retried,
        so a delete that did commit before the connection broke may then report NotFound.
        """
        return self._invoke(core.delete_job(name, force))

    def dependencies(self, name: str) -> list[DependencyNode]:
        """The dependency graph around job ``name`` (docs/dependencies.md): the job first, then
        every job upstream and downstream of it (``depends_on`` and chain edges, transitively,
        at most 200), each with its newest run record and its runs waiting for upstreams.
        Raises NotFound."""
        return self._invoke(core.get_dependencies(name))

    def pause_job(self, name: str) -> Job:
        """Stop scheduling new firings of ``name`` (runs already created still run); return the
        job. Raises NotFound; a timeout raises OutcomeUnknown."""
        return self._invoke(core.pause_job(name))

    def resume_job(self, name: str, *, skip_missed: bool = False) -> Job:
        """Schedule ``name`` again and return it. The slots missed while it was paused are
        handled by its misfire policy (skip: none run; fire_once: one run; fire_all: each one in
        the catch-up window), or all recorded as skipped with ``skip_missed``. Raises NotFound;
        a timeout raises OutcomeUnknown."""
        return self._invoke(core.resume_job(name, skip_missed))

    def trigger_job(
        self, name: str, request_id: str | None = None, *, overlap: str | int = 0
    ) -> Run:
        """Create a manual run of ``name`` now and return it. ``overlap`` overrides the job's
        overlap policy for this run (e.g. ``"allow"`` to run even while another is active); when
        the policy skips it, the returned run is the SKIPPED record. Safe to retry with
        ``request_id`` (one is generated when omitted): a resent trigger returns the same run.
        Raises NotFound."""
        return self._invoke(core.trigger_job(name, request_id, overlap))

    # -- runs --

    def list_runs(
        self, job: str = "", limit: int = 100, state: int | str | None = None
    ) -> list[Run]:
        """The newest ``limit`` runs (of ``job``, or of all jobs when empty), oldest first.

        ``state`` keeps only runs in that state, given as a ``RunState`` value or its short name
        (``"dead"`` lists the dead letters). The server scans the runs for it: O(runs).
        Fetched in pages of at most ~3 MiB each, so any ``limit`` fits gRPC's message limit.
        """
        pager = core.RunPager(job, limit, state)
        while (call := pager.next_call()) is not None:
            pager.add(self._invoke(call))
        return pager.runs

    def retry_run(self, run_id: str, request_id: str | None = None) -> Run:
        """Replay a DEAD (or FAILED) run: it is PENDING again, due now, at the next attempt number,
        with a fresh set of attempts under its job's retry policy. Returns the run. Raises
        NotFound, FailedPrecondition (the run is in another state, or its job was deleted).
        Safe to retry with the same ``request_id`` (one is generated when omitted)."""
        return self._invoke(core.retry_run(run_id, request_id))

    def cancel_run(self, run_id: str, reason: str = "", request_id: str | None = None) -> Run:
        """End a PENDING, LEASED or WAITING run as CANCELLED. A leased run's lease is revoked:
        its worker's handler sees ``ctx.cancelled`` at once, and a late completion with the old
        fence is refused. ``reason`` (free text) is kept in the run's note. Returns the run.
        Raises NotFound, FailedPrecondition (the run has finished). Safe to retry with the same
        ``request_id`` (one is generated when omitted)."""
        return self._invoke(core.cancel_run(run_id, reason, request_id))

    def list_workers(self, namespace: str = "") -> list[WorkerInfo]:
        """The worker streams attached to the leader that serve ``namespace`` (empty: this
        client's): queues, tags, concurrency, the jobs they run, the leases they hold, when they
        connected and were last heard from. Needs the reader role there."""
        return self._invoke(core.list_workers(namespace))

    def get_run(self, run_id: str) -> Run:
        """The run ``run_id``. Raises NotFound."""
        return self._invoke(core.get_run(run_id))

    def complete_run(
        self,
        run_id: str,
        fence: int,
        success: bool,
        error: str = "",
        exit_code: int | None = None,
        *,
        session: str = "",
    ) -> None:
        """Report the outcome of the attempt holding ``fence`` (``exit_code``: the process's, if
        the work was one; a job's retry policy may list exit codes that are not retried).

        Only the worker session holding the lease may complete it: ``session`` is the
        ``Welcome.session`` of that worker's Connect stream (the worker agent completes on its
        stream and needs none of this). Raises NotFound for an unknown run, StaleFence when
        ``fence`` is no longer the run's current lease (another attempt owns it now: do not
        apply the effect), PermissionDenied without the holder's session. A success is retried
        after a timeout (the server accepts a resent success for the same fence); a timed-out
        failure raises OutcomeUnknown.
        """
        self._invoke(core.complete_run(run_id, fence, success, error, exit_code, session))

    # -- cluster --

    # -- tokens (cluster-admin) --

    def create_token(
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
        return self._invoke(core.create_token(name, grants, queues, ttl_s))

    def list_tokens(self, include_revoked: bool = False) -> list[Token]:
        """The tokens (never their secrets), by name."""
        return self._invoke(core.list_tokens(include_revoked))

    def list_audit(
        self, limit: int = 100, *, principal: str = "", target: str = "", before_index: int = 0
    ) -> tuple[list[AuditRecord], int]:
        """The audit trail, newest first (cluster-admin): at most ``limit`` records (up to
        10,000) below log index ``before_index`` (0: from the newest), only ``principal``'s or
        only those naming ``target`` when given; and the ``before_index`` of the next page (0:
        no more)."""
        return self._invoke(core.list_audit(limit, before_index, principal, target))

    def set_namespace_quota(
        self, namespace: str, *, max_jobs: int = 0, max_runs: int = 0
    ) -> Namespace:
        """Set ``namespace``'s quotas (cluster-admin): at most ``max_jobs`` jobs and
        ``max_runs`` stored runs (0 = no limit). The first call counts the namespace's jobs and
        runs; from then on every node keeps them counted. Returns the namespace with its usage."""
        return self._invoke(core.set_namespace_quota(namespace, max_jobs, max_runs))

    def get_namespace(self, namespace: str = "") -> Namespace:
        """Quotas and usage of ``namespace`` (empty: this client's); needs the reader role
        there."""
        return self._invoke(core.get_namespace(namespace))

    def list_namespaces(self) -> list[Namespace]:
        """The namespaces that have quotas (cluster-admin)."""
        return self._invoke(core.list_namespaces())

    def revoke_token(self, name: str) -> Token:
        """Revoke a token on every node (each refuses it once it has applied the revocation)."""
        return self._invoke(core.revoke_token(name))

    def list_members(self) -> list[Member]:
        """The cluster's members as the leader sees them (a reader may ask)."""
        return self._invoke(core.list_members())

    def add_member(self, node_id: str, raft_address: str, grpc_address: str) -> list[Member]:
        """Add a voting member (cluster-admin); returns the members after the change. Start
        the new node with ``schedd run --join`` (which makes this call itself).

        Raises FailedPrecondition when the cluster could not commit without the new node (a
        member is down or behind) or another change is in progress, InvalidArgument when the
        id or Raft address belongs to another member."""
        return self._invoke(core.add_member(node_id, raft_address, grpc_address))

    def remove_member(self, node_id: str) -> list[Member]:
        """Remove a member (cluster-admin); returns the members left. Removing the leader
        moves leadership first. Raises NotFound for a node that is not a member and
        FailedPrecondition when the members left could not commit. Stop the removed node's
        process afterwards."""
        return self._invoke(core.remove_member(node_id))

    def transfer_leadership(self, to_node_id: str = "") -> None:
        """Ask the leader to hand leadership to node ``to_node_id`` (empty: any caught-up
        follower). Returns once the leader accepted the request; the handover itself follows
        within an election timeout (watch :meth:`cluster_status`). Raises InvalidArgument for an
        unknown node id; a timeout raises OutcomeUnknown."""
        self._invoke(core.transfer_leadership(to_node_id))

    def node_status(
        self, endpoint: str, with_digest: bool = False, timeout: float = 2.0
    ) -> NodeStatus:
        """Ask the node at ``endpoint`` (and only it) for its Raft status; no retries.

        Raises Unavailable when it cannot be reached or does not answer within ``timeout``.
        """
        target = parse_endpoint(endpoint, "endpoint")
        req = core.node_status_request(with_digest)
        try:
            return NodeStatus.from_pb(
                self._stub(target).cluster.GetNodeStatus(req, timeout=timeout, **self._md)
            )
        except grpc.RpcError as exc:
            raise core.node_failure(target, *core.status_of(exc), timeout) from None
        except ValueError as exc:  # grpc: channel closed under us
            raise errors.FailedPrecondition(f"client is closed ({exc})") from None

    def cluster_status(
        self, with_digest: bool = False, timeout: float | None = None
    ) -> list[NodeReport]:
        """Ask every configured endpoint, in parallel, for its status; never raises for a node.

        Returns a :class:`schedd.models.NodeReport` ``(endpoint, status, "")`` for each node that
        answered and ``(endpoint, None, reason)`` for each that did not, in the configured order.
        """
        t = self._timeout if timeout is None else timeout

        def ask(ep: str) -> NodeReport:
            try:
                return core.report_of(
                    ep, self.node_status(ep, with_digest=with_digest, timeout=t), None
                )
            except errors.SchedError as exc:
                return core.report_of(ep, None, exc)

        with ThreadPoolExecutor(max_workers=len(self._endpoints)) as pool:
            return list(pool.map(ask, self._endpoints))

    def save_snapshot(
        self,
        path: str,
        *,
        progress: Callable[[int, int], None] | None = None,
        timeout: float = 3600.0,
    ) -> BackupHeader:
        """Save a consistent snapshot of the leader's replicated state to the file ``path``
        (cluster-admin): every job, run, token and namespace, as of one log index. The file is
        written atomically (a temporary file renamed into place once complete, synced and its
        SHA-256 checked); ``progress(bytes done, bytes total)`` is called as it arrives.
        Restore it into a new cluster with ``schedd restore`` (docs/operations.md).

        Raises Unavailable when no leader answers, PermissionDenied without the cluster-admin
        role, ResourceExhausted when the leader is already saving one or lacks disk space, and
        :class:`schedd.backup.BackupError` when the file cannot be written or arrived damaged."""
        from schedd.pb import api_pb2

        deadline = self._clock.monotonic() + self._retry_for
        while True:
            target = self._leader_endpoint()
            try:
                stream = self._stub(target).cluster.SaveSnapshot(
                    api_pb2.SaveSnapshotRequest(), timeout=timeout, **self._md
                )
                first = next(stream)
                info = first.info
                header = BackupHeader(
                    format_version=info.format_version,
                    applied_index=info.applied_index,
                    created_ms=info.created_ms,
                    size_bytes=info.size_bytes,
                    sha256=info.sha256,
                    cluster_id=info.cluster_id,
                    node_ids=tuple(info.node_ids),
                    leader_id=info.leader_id,
                    next_fence=info.next_fence,
                    jobs=info.jobs,
                    runs=info.runs,
                    schedd_version=_version(),
                )
                return write_backup(path, header, (c.data for c in stream), progress)
            except grpc.RpcError as exc:
                code, details, hint = core.status_of(exc)
                err = core.node_failure(target, code, details, hint, timeout)
            except StopIteration:
                err = errors.Unavailable(f"{target} ended the snapshot stream without data")
            except ValueError as exc:  # grpc: channel closed under us
                raise errors.FailedPrecondition(f"client is closed ({exc})") from None
            if not isinstance(err, errors.Unavailable) or self._clock.monotonic() > deadline:
                raise err
            self._sleep(0.5)  # a leader change: find the new leader and start again

    def _leader_endpoint(self) -> str:
        """The gRPC address of the node that says it leads (or that the others name)."""
        hints = []
        failures = []
        for rep in self.cluster_status():
            st = rep.status
            if st is None:
                failures.append(f"{rep.endpoint}: {rep.error}")
            elif st.role == "leader":
                with self._lock:
                    self._leader = rep.endpoint
                return rep.endpoint
            elif st.leader_grpc:
                hints.append(st.leader_grpc)
        if hints:
            return hints[0]
        if len(failures) == len(self._endpoints):
            raise errors.Unavailable(
                f"no node answered ({'; '.join(failures)}); is the cluster running?"
            )
        raise errors.Unavailable(
            f"no leader among {', '.join(self._endpoints)} (an election may be in progress); "
            "retry in a few seconds"
        )

    # -- machinery --

    def _stub(self, target: str) -> _Stubs:
        with self._lock:
            if self._closed:
                raise errors.FailedPrecondition("client is closed")
            stubs = self._stubs.get(target)
            if stubs is None:
                stubs = self._stubs[target] = _Stubs(target, self._credentials)
            return stubs

    def _invoke(self, call: core.Call[_T]) -> _T:
        call = core.in_namespace(call, self._namespace)
        return call.result(
            self._call(call.service, call.method, call.request, idempotent=call.idempotent)
        )

    def _call(self, service: str, method: str, request: Any, *, idempotent: bool) -> Any:
        """Send ``request`` to the leader, following hints and retrying as the module doc says."""
        attempts = core.Attempts(
            self._endpoints,
            self.leader,
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
                result = getattr(getattr(stubs, service), method)(
                    request, timeout=self._timeout, **self._md
                )
            except grpc.RpcError as exc:
                maybe_sent = (
                    stubs.maybe_sent_since(connections) if isinstance(stubs, _Stubs) else True
                )
                try:
                    delay = attempts.failed(
                        *core.status_of(exc), maybe_sent=maybe_sent, now=self._clock.monotonic()
                    )
                except errors.SchedError as final:
                    # The message says what failed; grpc's exception would only add noise to
                    # the caller's traceback ("During handling of the above exception...").
                    raise final from None
            except ValueError as exc:  # grpc: channel closed by a concurrent close()
                raise errors.FailedPrecondition(f"client is closed ({exc})") from None
            else:
                with self._lock:
                    self._leader = target
                return result
            with self._lock:
                self._leader = attempts.target
            if delay:
                self._sleep(delay)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("schedd")
    except PackageNotFoundError:
        return ""
