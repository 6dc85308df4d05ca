"""The synchronous Python SDK: ``Client`` talks to a schedd cluster over gRPC.

    from schedd.client import Client

    with Client("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103") as client:
        client.create_job("nightly", cron="0 3 * * *", tz="Europe/Berlin")
        for run in client.list_runs(job="nightly"):
            print(run.run_id, run.state)

Failure contract
----------------
* Every call except :meth:`Client.node_status` and :meth:`Client.cluster_status` goes to the
  current Raft leader. A follower answers ``UNAVAILABLE`` with the leader's address in the trailing
  metadata key ``schedd-leader``; the client switches to that address (even one that is not in
  ``endpoints``). A node that cannot be reached, or that knows no leader, makes the client try the
  next endpoint. Between attempts it backs off (50 ms, doubling, at most 1 s) and it gives up after
  ``retry_for`` seconds with :class:`schedd.errors.Unavailable`.
* Every attempt has a deadline of ``timeout`` seconds. A timed-out *read* is retried elsewhere. A
  timed-out *write* has an unknown outcome: ``create_job``, ``trigger_job`` and ``retry_run`` carry a request id
  (generated when none is given, reused by every retry), so the client retries them safely; the
  other writes raise :class:`schedd.errors.OutcomeUnknown` instead of guessing.
* ``INVALID_ARGUMENT``, ``NOT_FOUND``, ``ALREADY_EXISTS``, ``ABORTED`` (stale fence) and
  ``FAILED_PRECONDITION`` are final answers and raise the matching :mod:`schedd.errors` type at
  once. No ``grpc`` exception ever leaves this module: every failure is a
  :class:`schedd.errors.SchedError`.

The small pure helpers (:func:`parse_endpoints`, :func:`leader_hint`, :func:`classify`,
:func:`error_from_status`, :func:`summarize_failure`, :func:`backoff_delays`) hold the decisions
and are unit-tested without a network. The address helpers (:func:`parse_endpoint`,
:func:`parse_endpoints`, :func:`leader_hint`, :func:`backoff_delays`, ``LEADER_METADATA_KEY``)
live in :mod:`schedd.endpoints`, shared with the worker agent, and are re-exported here.
"""

from __future__ import annotations

import enum
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import grpc

from schedd import errors, policies
from schedd.clock import Clock, SystemClock
from schedd.endpoints import (
    LEADER_METADATA_KEY,
    backoff_delays,
    leader_hint,
    parse_endpoint,
    parse_endpoints,
)
from schedd.pb import api_grpc, api_pb2, types_pb2

__all__ = [
    "LEADER_METADATA_KEY",
    "Action",
    "Client",
    "NodeReport",
    "backoff_delays",
    "classify",
    "error_from_status",
    "leader_hint",
    "new_request_id",
    "parse_endpoint",
    "parse_endpoints",
    "retry_policy",
    "run_state",
    "summarize_failure",
]

#: Status codes that are the server's final word: retrying cannot change them.
FINAL_CODES = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "ABORTED", "FAILED_PRECONDITION"}
)


_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Reconnect quickly to a node that comes back (failover, restart): the defaults wait up to
    # 2 min. grpc also uses min_reconnect_backoff as the connect (handshake) timeout: 1 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

_T = TypeVar("_T")

#: (endpoint, status or None when unreachable, reason or "") as returned by cluster_status().
NodeReport = tuple[str, api_pb2.NodeStatus | None, str]


# ---- pure helpers --------------------------------------------------------------------------


class Action(enum.Enum):
    """What the client does after a failed attempt."""

    FAIL = "fail"  # raise now: the answer is final (or retrying could apply a write twice)
    FOLLOW = "follow"  # go to the leader named in the hint
    ROTATE = "rotate"  # try the next endpoint after a back-off
    RETRY = "retry"  # try the same endpoint again after a back-off


def classify(
    code: str, *, hint: str, current: str, idempotent: bool, maybe_sent: bool = True
) -> Action:
    """Decide what to do about an attempt at ``current`` that failed with status ``code``.

    ``idempotent`` says whether sending the same request again is safe even if the first one was
    applied (reads, and writes carrying a request id). ``maybe_sent`` is False when the channel
    never had a connection during the attempt, so the request cannot have reached the node.
    """
    if code in FINAL_CODES:
        return Action.FAIL
    if code == "UNAVAILABLE":
        if hint and hint != current:
            return Action.FOLLOW
        if hint:  # the node names itself: leadership is changing hands, ask it again shortly
            return Action.RETRY
        return Action.ROTATE
    if code == "DEADLINE_EXCEEDED":
        return Action.ROTATE if idempotent or not maybe_sent else Action.FAIL
    return Action.FAIL


def _one_line(text: str) -> str:
    return " ".join(text.split())


def summarize_failure(code: str, details: str, timeout: float | None = None) -> str:
    """A short, one-line reason for a failed attempt, for messages shown to operators."""
    details = _one_line(details or "")
    low = details.lower()
    if code == "DEADLINE_EXCEEDED":
        return f"no answer within {timeout:g}s" if timeout is not None else "timed out"
    if code == "UNAVAILABLE":
        for needle, reason in (
            ("connection refused", "connection refused"),
            ("failed to connect", "cannot connect"),
            ("name resolution", "unknown host"),
            ("dns resolution failed", "unknown host"),
            ("connection reset", "connection reset"),
            ("socket closed", "connection closed"),
        ):
            if needle in low:
                return reason
    return details or code.lower().replace("_", " ")


def error_from_status(code: str, details: str, hint: str = "") -> errors.SchedError:
    """Turn a gRPC status (code *name* and details) into the matching typed error.

    ``UNAVAILABLE`` with a leader hint becomes :class:`schedd.errors.NotLeader` carrying it; codes
    outside the schedd table become :class:`schedd.errors.Internal` with the code in the message.
    """
    details = _one_line(details or "")
    if code == "UNAVAILABLE" and hint:
        return errors.NotLeader(details or f"not the leader; the leader is {hint}", hint)
    if code in errors.BY_CODE:
        return errors.from_code(code, details or code.lower().replace("_", " "))
    return errors.Internal(f"{code}: {details}" if details else code)


def retry_policy(
    *,
    max_attempts: int = 0,
    initial_backoff_ms: int | None = None,
    multiplier: float = 0.0,
    max_backoff_ms: int = 0,
    non_retryable_exit_codes: Iterable[int] = (),
    non_retryable_errors: Iterable[str] = (),
) -> types_pb2.RetryPolicy:
    """A ``RetryPolicy`` for :meth:`Client.create_job`. Zero / ``None`` means the server's
    default: ``max_attempts`` 5 (or the job's ``max_attempts``), ``initial_backoff_ms`` 1000,
    ``multiplier`` 2, ``max_backoff_ms`` 100 x initial (at most a day). The wait after the n-th
    failed attempt is ``min(max_backoff_ms, initial_backoff_ms * multiplier ** (n - 1))``. A
    failure reporting one of ``non_retryable_exit_codes``, or whose error text contains one of
    ``non_retryable_errors``, is not retried. The server checks the ranges (InvalidArgument
    naming ``retry.<field>``)."""
    policy = _build(lambda: types_pb2.RetryPolicy(
        max_attempts=max_attempts, multiplier=multiplier, max_backoff_ms=max_backoff_ms,
        non_retryable_exit_codes=list(non_retryable_exit_codes),
        non_retryable_errors=list(non_retryable_errors)))
    if initial_backoff_ms is not None:
        policy.initial_backoff_ms = _build(lambda: int(initial_backoff_ms))
    return policy


def _as_policy(retry: types_pb2.RetryPolicy | Mapping[str, Any]) -> types_pb2.RetryPolicy:
    if isinstance(retry, types_pb2.RetryPolicy):
        return retry
    known = {f.name for f in types_pb2.RetryPolicy.DESCRIPTOR.fields}
    for key in retry:
        if key not in known:
            raise errors.InvalidArgument(f"retry.{key}", f"unknown field; known: {', '.join(sorted(known))}")
    return retry_policy(**retry)


def run_state(state: int | str) -> int:
    """A ``RunState`` value from itself or its short name (``"dead"``, ``"RUN_STATE_DEAD"``)."""
    if isinstance(state, str):
        name = state.strip().upper()
        name = name if name.startswith("RUN_STATE_") else f"RUN_STATE_{name}"
        if name in types_pb2.RunState.keys() and name != "RUN_STATE_UNSPECIFIED":
            return types_pb2.RunState.Value(name)
        words = [n.removeprefix("RUN_STATE_").lower() for n in types_pb2.RunState.keys()][1:]
        raise errors.InvalidArgument("state", f"{state!r} is not a run state ({', '.join(words)})")
    if state not in types_pb2.RunState.values():
        raise errors.InvalidArgument("state", f"{state} is not a run state")
    return int(state)


def new_request_id() -> str:
    """A fresh client request id (uuid4, hex) for a create or trigger."""
    return uuid.uuid4().hex


def _status_of(exc: grpc.RpcError) -> tuple[str, str, str]:
    """(code name, details, leader hint) of a failed call; robust to odd RpcError objects."""
    try:
        code_obj = exc.code()  # type: ignore[attr-defined]
        code = code_obj.name if code_obj is not None else "UNKNOWN"
    except Exception:
        code = "UNKNOWN"
    try:
        details = exc.details() or ""  # type: ignore[attr-defined]
    except Exception:
        details = str(exc)
    try:
        hint = leader_hint(exc.trailing_metadata())  # type: ignore[attr-defined]
    except Exception:
        hint = ""
    return code, details, hint


# ---- the client ----------------------------------------------------------------------------


class _Stubs:
    """One channel to one node, the stubs on it, and whether it has been connected.

    ``connections`` counts transitions to READY. A call can only be sent on a READY connection, so
    an attempt that times out while the count did not move and the channel is not READY never
    reached the node (a stopped or black-holed host), and resending it is safe.
    """

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self.jobs = api_grpc.JobServiceStub(self.channel)
        self.runs = api_grpc.RunServiceStub(self.channel)
        self.cluster = api_grpc.ClusterServiceStub(self.channel)
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


_POLICY_INT_FIELDS = ("misfire_grace_ms", "catchup_window_ms", "max_catchup", "max_concurrent",
                      "dispatch_timeout_ms", "priority", "keep_runs", "keep_for_ms", "max_runs")
_SCHEDULE_FIELDS = ("start_ms", "end_ms", "anchor_ms", "dst_gap", "dst_repeat")


def job_request(
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
    request_id: str = "",
    retry: types_pb2.RetryPolicy | Mapping[str, Any] | None = None,
    run_timeout_ms: int = 0,
    **options: Any,
) -> api_pb2.CreateJobRequest:
    """Build the CreateJobRequest for :meth:`Client.create_job`'s arguments (also the job
    definition of an update). Raises InvalidArgument for an unknown option or a bad value the
    client can tell locally; the server validates everything again."""
    if sum(x is not None for x in (cron, at_ms, every_ms)) != 1:
        raise errors.InvalidArgument("schedule", "give exactly one of cron, every_ms or at_ms")
    if max_attempts < 0:
        raise errors.InvalidArgument("max_attempts", f"{max_attempts} must not be negative")
    if cron is not None:
        schedule = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron, timezone=tz or "UTC")
    elif every_ms is not None:
        schedule = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_INTERVAL, every_ms=every_ms)
    else:
        schedule = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=cast(int, at_ms))
    schedule.jitter_ms = jitter_ms
    req = api_pb2.CreateJobRequest(name=name, schedule=schedule, queue=queue, payload=payload,
                                   max_attempts=max_attempts, request_id=request_id,
                                   run_timeout_ms=run_timeout_ms)
    if retry is not None:
        req.retry.CopyFrom(_as_policy(retry))
    for key, value in options.items():
        if value is None:
            continue
        if key == "misfire":
            req.misfire = cast(Any, policies.misfire_from(value))
        elif key == "overlap":
            req.overlap = cast(Any, policies.overlap_from(value))
        elif key in _POLICY_INT_FIELDS:
            setattr(req, key, int(value))
        elif key in ("on_success", "on_failure"):
            setattr(req, key, str(value))
        elif key == "tags":
            req.tags.update({str(k): str(v) for k, v in dict(value).items()})
        elif key == "allow_past":
            req.allow_past = bool(value)
        elif key in ("start_ms", "end_ms", "anchor_ms"):
            setattr(req.schedule, key, int(value))
        elif key == "dst_gap":
            req.schedule.dst_gap = cast(Any, {"shift": types_pb2.DST_GAP_SHIFT, "skip": types_pb2.DST_GAP_SKIP}.get(
                str(value).lower(), value if isinstance(value, int) else -1))
        elif key == "dst_repeat":
            req.schedule.dst_repeat = cast(Any, {"once": types_pb2.DST_REPEAT_ONCE, "twice": types_pb2.DST_REPEAT_TWICE}.get(
                str(value).lower(), value if isinstance(value, int) else -1))
        else:
            raise errors.InvalidArgument(key, "is not a job option")
    return req


class Client:
    """A synchronous client for a schedd cluster that follows the Raft leader by itself.

    ``endpoints``: ``"host:port"`` strings, or one comma-separated string, of the nodes' gRPC
    addresses (any subset of the cluster works; the leader is found through hints).
    ``timeout``: deadline of each attempt, in seconds. ``retry_for``: how long to keep retrying
    when no leader answers before raising :class:`schedd.errors.Unavailable`.

    Thread-safe. Use it as a context manager, or call :meth:`close` when done.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = 5.0,
        retry_for: float = 20.0,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoints = parse_endpoints(endpoints)
        if timeout <= 0:
            raise errors.InvalidArgument("timeout", f"{timeout!r} must be positive")
        if retry_for < 0:
            raise errors.InvalidArgument("retry_for", f"{retry_for!r} must not be negative")
        self._timeout = float(timeout)
        self._retry_for = float(retry_for)
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
        retry: types_pb2.RetryPolicy | Mapping[str, Any] | None = None,
        run_timeout_ms: int = 0,
        **policies: Any,
    ) -> types_pb2.Job:
        """Create job ``name`` firing on a ``cron`` expression in zone ``tz``, every ``every_ms``
        (anchored at the Unix epoch), or once at ``at_ms``.

        Give exactly one of ``cron`` / ``every_ms`` / ``at_ms``. ``jitter_ms`` spreads each firing
        by a deterministic hash of the job name and slot. ``payload`` is JSON text handed to every
        firing; ``max_attempts`` 0 means the server's default. ``retry``: a retry policy, as a
        ``RetryPolicy`` or a dict of :func:`retry_policy`'s keyword arguments, e.g.
        ``{"max_attempts": 3, "initial_backoff_ms": 1000, "multiplier": 2, "max_backoff_ms":
        60_000, "non_retryable_exit_codes": [3]}``; without one, a failed attempt is retried
        after the cluster's fixed backoff. ``run_timeout_ms``: an attempt running longer fails
        (0 = no limit). A run out of attempts becomes DEAD (see :meth:`retry_run`).

        Policies (keyword arguments, see docs/policies.md): ``misfire`` (``"skip"``,
        ``"fire_once"``, ``"fire_all"``), ``misfire_grace_ms``, ``catchup_window_ms``,
        ``max_catchup``, ``overlap`` (``"allow"``, ``"forbid"``, ``"buffer_one"``,
        ``"replace"``), ``max_concurrent``, ``dispatch_timeout_ms``, ``on_success``,
        ``on_failure``, ``priority``, ``tags`` (dict), ``keep_runs``, ``keep_for_ms``,
        ``max_runs``, ``start_ms``, ``end_ms``, ``dst_gap`` (``"shift"``/``"skip"``),
        ``dst_repeat`` (``"once"``/``"twice"``), ``anchor_ms``, ``allow_past``.

        Safe to retry with the same ``request_id`` (one is generated when omitted). Raises
        InvalidArgument, AlreadyExists, Unavailable.
        """
        rid = request_id or new_request_id()
        req = _build(lambda: job_request(
            name, cron=cron, tz=tz, at_ms=at_ms, every_ms=every_ms, jitter_ms=jitter_ms, queue=queue,
            payload=payload, max_attempts=max_attempts, request_id=rid, retry=retry,
            run_timeout_ms=run_timeout_ms, **policies))
        resp = self._call("jobs", "CreateJob", req, idempotent=True)
        return resp.job

    def update_job(
        self,
        name: str,
        *,
        expect_version: int = 0,
        request_id: str | None = None,
        **definition: Any,
    ) -> types_pb2.Job:
        """Replace the definition of job ``name`` (same keyword arguments as :meth:`create_job`;
        what is not given takes its default, as in a create). Its runs stay. When the schedule
        is unchanged the slot sequence continues; a new schedule starts after now.

        ``expect_version``: fail with FailedPrecondition unless the job is at that version
        (optimistic concurrency: read, modify, update with the version you read). Raises
        NotFound, InvalidArgument, FailedPrecondition.
        """
        rid = request_id or new_request_id()
        req = _build(lambda: api_pb2.UpdateJobRequest(
            job=job_request(name, request_id=rid, **definition), expect_version=expect_version))
        return self._call("jobs", "UpdateJob", req, idempotent=True).job

    def backfill_job(
        self, name: str, from_ms: int, to_ms: int, *, limit: int = 1000, overlap: str | int = 0
    ) -> api_pb2.BackfillResponse:
        """Create runs for the slots of ``name`` in ``from_ms .. to_ms`` (inclusive), at most
        ``limit`` per call; call again from ``next_from_ms`` until it is 0 (:meth:`backfill`
        does the loop). Slots that already have a run are left alone, so a repeated call is
        safe. Raises NotFound, InvalidArgument."""
        ov = policies.overlap_from(overlap) if overlap else 0
        req = _build(lambda: api_pb2.BackfillRequest(name=name, from_ms=from_ms, to_ms=to_ms,
                                                     limit=limit, overlap=cast(Any, ov)))
        return self._call("jobs", "BackfillJob", req, idempotent=True)

    def backfill(
        self, name: str, from_ms: int, to_ms: int, *, chunk: int = 1000, overlap: str | int = 0
    ) -> Iterator[api_pb2.BackfillResponse]:
        """Backfill ``from_ms .. to_ms`` chunk by chunk, yielding each chunk's response (for a
        progress display). Interrupting it leaves the chunks done so far in place."""
        start = from_ms
        while True:
            resp = self.backfill_job(name, start, to_ms, limit=chunk, overlap=overlap)
            yield resp
            if not resp.next_from_ms:
                return
            start = resp.next_from_ms

    def explain_job(self, name: str, at_ms: int) -> api_pb2.ExplainResponse:
        """Why did (or will) job ``name`` run or not at ``at_ms``? Returns a verdict word, a
        sentence, the slot concerned and the run or skip records that decided it."""
        req = _build(lambda: api_pb2.ExplainRequest(name=name, at_ms=at_ms))
        return self._call("jobs", "ExplainJob", req, idempotent=True)

    def get_job(self, name: str) -> types_pb2.Job:
        """The job called ``name``. Raises NotFound."""
        req = _build(lambda: api_pb2.JobRequest(name=name))
        return self._call("jobs", "GetJob", req, idempotent=True).job

    def list_jobs(self, limit: int | None = 1000) -> list[types_pb2.Job]:
        """Jobs in name order, at most ``limit`` of them (``None``: all), fetched page by page."""
        if limit is not None and limit < 0:
            raise errors.InvalidArgument("limit", f"{limit} must not be negative")
        jobs: list[types_pb2.Job] = []
        after = ""
        while limit is None or len(jobs) < limit:
            page = 1000 if limit is None else min(1000, limit - len(jobs))
            req = _build(lambda: api_pb2.ListJobsRequest(limit=page, after_name=after))  # noqa: B023
            got = list(self._call("jobs", "ListJobs", req, idempotent=True).jobs)
            if not got or (after and got[-1].name <= after):
                break  # the end, or a server that ignores after_name: stop instead of looping
            jobs.extend(got)
            after = got[-1].name
        return jobs if limit is None else jobs[:limit]

    def delete_job(self, name: str) -> None:
        """Delete job ``name``; its pending runs are cancelled. Raises NotFound.

        Not retried after a timeout (raises OutcomeUnknown). After a lost connection it is retried,
        so a delete that did commit before the connection broke may then report NotFound.
        """
        req = _build(lambda: api_pb2.JobRequest(name=name))
        self._call("jobs", "DeleteJob", req, idempotent=False)

    def pause_job(self, name: str) -> types_pb2.Job:
        """Stop scheduling new firings of ``name`` (runs already created still run)."""
        req = _build(lambda: api_pb2.JobRequest(name=name))
        return self._call("jobs", "PauseJob", req, idempotent=False).job

    def resume_job(self, name: str, *, skip_missed: bool = False) -> types_pb2.Job:
        """Schedule ``name`` again. The slots missed while it was paused are handled by its
        misfire policy (skip: none run; fire_once: one run; fire_all: each one in the catch-up
        window), or all recorded as skipped with ``skip_missed``."""
        req = _build(lambda: api_pb2.ResumeJobRequest(name=name, skip_missed=skip_missed))
        return self._call("jobs", "ResumeJob", req, idempotent=False).job

    def trigger_job(
        self, name: str, request_id: str | None = None, *, overlap: str | int = 0
    ) -> types_pb2.Run:
        """Create a manual run of ``name`` now and return it. ``overlap`` overrides the job's
        overlap policy for this run (e.g. ``"allow"`` to run even while another is active); when
        the policy skips it, the returned run is the SKIPPED record. Safe to retry with
        ``request_id``."""
        rid = request_id or new_request_id()
        ov = policies.overlap_from(overlap) if overlap else 0
        req = _build(lambda: api_pb2.TriggerJobRequest(name=name, request_id=rid, overlap=cast(Any, ov)))
        return self._call("jobs", "TriggerJob", req, idempotent=True).run

    # -- runs --

    def list_runs(
        self, job: str = "", limit: int = 100, state: int | str | None = None
    ) -> list[types_pb2.Run]:
        """The newest ``limit`` runs (of ``job``, or of all jobs when empty), oldest first.

        ``state`` keeps only runs in that state, given as a ``RunState`` value or its short name
        (``"dead"`` lists the dead letters). The server scans the runs for it: O(runs).
        """
        if limit < 0:
            raise errors.InvalidArgument("limit", f"{limit} must not be negative")
        st = run_state(state) if state is not None else 0
        req = _build(lambda: api_pb2.ListRunsRequest(job=job, limit=limit, state=cast(Any, st)))
        return list(self._call("runs", "ListRuns", req, idempotent=True).runs)

    def retry_run(self, run_id: str, request_id: str | None = None) -> types_pb2.Run:
        """Replay a DEAD (or FAILED) run: it is PENDING again, due now, at the next attempt number,
        with a fresh set of attempts under its job's retry policy. Returns the run. Raises
        NotFound, FailedPrecondition (the run is in another state, or its job was deleted).
        Safe to retry with the same ``request_id`` (one is generated when omitted)."""
        rid = request_id or new_request_id()
        req = _build(lambda: api_pb2.RetryRunRequest(run_id=run_id, request_id=rid))
        return self._call("runs", "RetryRun", req, idempotent=True).run

    def get_run(self, run_id: str) -> types_pb2.Run:
        """The run ``run_id``. Raises NotFound."""
        req = _build(lambda: api_pb2.GetRunRequest(run_id=run_id))
        return self._call("runs", "GetRun", req, idempotent=True).run

    def complete_run(
        self, run_id: str, fence: int, success: bool, error: str = "", exit_code: int | None = None
    ) -> None:
        """Report the outcome of the attempt holding ``fence`` (``exit_code``: the process's, if
        the work was one; a job's retry policy may list exit codes that are not retried).

        Raises StaleFence when ``fence`` is no longer the run's current lease (another attempt owns
        it now: do not apply the effect). A success is retried after a timeout (the server accepts
        a resent success for the same fence); a timed-out failure raises OutcomeUnknown.
        """
        outcome = api_pb2.OUTCOME_SUCCEEDED if success else api_pb2.OUTCOME_FAILED
        req = _build(
            lambda: api_pb2.Completion(
                run_id=run_id, fence=fence, outcome=outcome, error=error, exit_code=exit_code
            )
        )
        self._call("runs", "CompleteRun", req, idempotent=success)

    # -- cluster --

    def node_status(
        self, endpoint: str, with_digest: bool = False, timeout: float = 2.0
    ) -> api_pb2.NodeStatus:
        """Ask the node at ``endpoint`` (and only it) for its Raft status; no retries.

        Raises Unavailable when it cannot be reached or does not answer within ``timeout``.
        """
        target = parse_endpoint(endpoint, "endpoint")
        req = api_pb2.NodeStatusRequest(with_digest=with_digest)
        try:
            return self._stub(target).cluster.GetNodeStatus(req, timeout=timeout)
        except grpc.RpcError as exc:
            code, details, hint = _status_of(exc)
            if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise errors.Unavailable(
                    f"{target}: {summarize_failure(code, details, timeout)}"
                ) from None
            raise error_from_status(code, details, hint) from None
        except ValueError as exc:  # grpc: channel closed under us
            raise errors.FailedPrecondition(f"client is closed ({exc})") from None

    def cluster_status(
        self, with_digest: bool = False, timeout: float | None = None
    ) -> list[NodeReport]:
        """Ask every configured endpoint, in parallel, for its status.

        Returns ``(endpoint, status, "")`` for each node that answered and
        ``(endpoint, None, reason)`` for each that did not, in the configured order.
        """
        t = self._timeout if timeout is None else timeout

        def ask(ep: str) -> NodeReport:
            try:
                return ep, self.node_status(ep, with_digest=with_digest, timeout=t), ""
            except errors.SchedError as exc:
                reason = exc.message
                if reason.startswith(f"{ep}: "):
                    reason = reason[len(ep) + 2 :]
                return ep, None, reason

        with ThreadPoolExecutor(max_workers=len(self._endpoints)) as pool:
            return list(pool.map(ask, self._endpoints))

    # -- machinery --

    def _stub(self, target: str) -> _Stubs:
        with self._lock:
            if self._closed:
                raise errors.FailedPrecondition("client is closed")
            stubs = self._stubs.get(target)
            if stubs is None:
                stubs = self._stubs[target] = _Stubs(target)
            return stubs

    def _next_endpoint(self, current: str) -> str:
        if current in self._endpoints:
            i = self._endpoints.index(current)
            return self._endpoints[(i + 1) % len(self._endpoints)]
        return self._endpoints[0]  # a hinted leader outside the list failed: start over

    def _call(self, service: str, method: str, request: Any, *, idempotent: bool) -> Any:
        """Send ``request`` to the leader, following hints and retrying as the module doc says."""
        give_up_at = self._clock.monotonic() + self._retry_for
        delays = backoff_delays()
        target = self.leader
        follows = 0  # hint-follows since the last back-off; bounded so two nodes cannot ping-pong
        last = ""
        while True:
            stubs = self._stub(target)
            connections = getattr(stubs, "connections", 0)
            try:
                rpc = getattr(getattr(stubs, service), method)
                result = rpc(request, timeout=self._timeout)
            except grpc.RpcError as exc:
                code, details, hint = _status_of(exc)
                maybe_sent = (
                    stubs.maybe_sent_since(connections) if isinstance(stubs, _Stubs) else True
                )
            except ValueError as exc:  # grpc: channel closed by a concurrent close()
                raise errors.FailedPrecondition(f"client is closed ({exc})") from None
            else:
                with self._lock:
                    self._leader = target
                return result

            action = classify(
                code, hint=hint, current=target, idempotent=idempotent, maybe_sent=maybe_sent
            )
            if action is Action.FAIL:
                if code == "DEADLINE_EXCEEDED":
                    reason = (
                        summarize_failure(code, details, self._timeout)
                        if details.strip().lower() in ("", "deadline exceeded")
                        else _one_line(details)
                    )
                    raise errors.OutcomeUnknown(
                        f"{method} at {target}: {reason}; it may or may not have been applied: "
                        "check the current state before retrying"
                    )
                raise error_from_status(code, details, hint)

            if code == "DEADLINE_EXCEEDED" and not maybe_sent:
                last = f"{target}: no connection within {self._timeout:g}s"
            else:
                last = f"{target}: {summarize_failure(code, details, self._timeout)}"
            if action is Action.FOLLOW and follows <= len(self._endpoints):
                follows += 1
                delay = 0.0
                target = hint
            else:
                follows = 0
                delay = next(delays)
                if action is Action.FOLLOW:
                    target = hint
                elif action is Action.ROTATE:
                    target = self._next_endpoint(target)
            if self._clock.monotonic() + delay > give_up_at:
                raise errors.Unavailable(
                    f"no leader reachable at {','.join(self._endpoints)} (last error: {last}): "
                    "is the cluster running? check `schedctl cluster status`"
                )
            with self._lock:
                self._leader = target
            if delay:
                self._sleep(delay)


def _build(make: Callable[[], _T]) -> _T:
    """Build a request message, turning protobuf's type/range errors into InvalidArgument."""
    try:
        return make()
    except errors.SchedError:
        raise
    except (TypeError, ValueError) as exc:
        raise errors.InvalidArgument("request", _one_line(str(exc))) from None
