"""The decisions shared by the synchronous and the asyncio SDK, with no I/O of their own.

Both :class:`schedd.client.Client` and :class:`schedd.aio.AsyncClient` are thin shells over this
module: every public method builds a :class:`Call` here (request validation, request ids,
idempotence, how to turn the response into a :mod:`schedd.models` record), hands it to its own
transport, and drives the same :class:`Attempts` state machine for leader following, back-off,
deadlines and giving up. Nothing here sleeps, reads the clock or opens a channel: the shells pass
``now`` in, so the retry schedule is unit-tested with a fake clock.

Private: the public names are re-exported by :mod:`schedd.client`.
"""

from __future__ import annotations

import enum
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from schedd import errors, models, namespaces, rules
from schedd.pb import api_pb2, types_pb2
from schedd.sched import policies
from schedd.sdk.endpoints import leader_hint
from schedd.sdk.navigation import Move, Navigator, move_after

#: Status codes that are the server's final word: retrying cannot change them.
FINAL_CODES = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "ABORTED", "FAILED_PRECONDITION"}
)

#: gRPC channel options of both clients.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Reconnect quickly to a node that comes back (failover, restart): the defaults wait up to
    # 2 min. grpc also uses min_reconnect_backoff as the connect (handshake) timeout: 1 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

#: The largest page ListJobs is asked for.
JOB_PAGE = 1000

_T = TypeVar("_T")


# ---- failure classification ----------------------------------------------------------------


class Action(enum.Enum):
    """What the client does after a failed attempt: fail, or one of the
    :class:`schedd.sdk.navigation.Move` values (same names and values)."""

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
        # Follow a hint naming another node, ask a node naming itself again (leadership is
        # changing hands), else rotate: the rule shared with the agent.
        return Action(move_after(hint, current).value)
    if code == "DEADLINE_EXCEEDED":
        return Action.ROTATE if idempotent or not maybe_sent else Action.FAIL
    return Action.FAIL


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())


def summarize_failure(code: str, details: str, timeout: float | None = None) -> str:
    """A short, one-line reason for a failed attempt, for messages shown to operators."""
    details = one_line(details or "")
    low = details.lower()
    if code == "DEADLINE_EXCEEDED":
        return f"no answer within {timeout:g}s" if timeout is not None else "timed out"
    if code == "UNAVAILABLE":
        for needle, reason in (
            # TLS first: grpc reports a failed handshake as a failed connection.
            ("certificate_verify_failed", f"TLS handshake failed: {TLS_UNTRUSTED}"),
            ("wrong_version_number", f"TLS handshake failed: {TLS_PLAINTEXT_SERVER}"),
            ("handshake failed", f"TLS handshake failed: {TLS_OTHER}"),
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


#: What a failed TLS handshake most likely means, for the messages of summarize_failure.
TLS_UNTRUSTED = (
    "the node's certificate is not signed by the CA this client trusts (check SCHEDD_CA / --ca)"
)
TLS_PLAINTEXT_SERVER = (
    "the node does not speak TLS (started with --insecure? then set SCHEDD_INSECURE=1 / "
    "pass --insecure)"
)
TLS_OTHER = "check SCHEDD_CA / --ca, SCHEDD_CERT / --cert and SCHEDD_KEY / --key"
#: A plaintext client at a TLS port sees the node close the connection during set-up.
PLAINTEXT_AT_TLS = (
    "connection closed during set-up (a plaintext client at a TLS port? unset SCHEDD_INSECURE "
    "/ drop --insecure)"
)


def unreached_reason(code: str, details: str, timeout: float, *, maybe_sent: bool) -> str:
    """Why an attempt never reached its node, or ``""`` when it did (or may have).

    gRPC says "failed to connect to all addresses" when the channel never got a connection
    for the call (refused, unknown host, a failed TLS handshake): the request was not sent.
    A deadline that passed while the channel never connected (``maybe_sent`` False) is the
    same for a host that does not answer TCP.
    """
    low = one_line(details or "").lower()
    if code == "UNAVAILABLE" and "failed to connect to all addresses" in low:
        if "socket closed" in low:
            return PLAINTEXT_AT_TLS
        return summarize_failure(code, details, timeout)
    if code == "DEADLINE_EXCEEDED" and not maybe_sent:
        return f"no connection within {timeout:g}s"
    return ""


#: Method-name prefixes of the calls that change nothing.
READ_PREFIXES = ("Get", "List", "Explain", "Preview")


def unreachable_error(unreached: Mapping[str, str], method: str = "") -> errors.Unreachable:
    """The error of a call ``method`` none of whose endpoints could be reached (endpoint ->
    reason): endpoints grouped by reason, what to check, and for a write that it was not
    applied (it was never sent)."""
    by_reason: dict[str, list[str]] = {}
    for endpoint, reason in unreached.items():
        by_reason.setdefault(reason, []).append(endpoint)
    parts = "; ".join(f"{', '.join(eps)}: {reason}" for reason, eps in by_reason.items())
    if all("TLS" in r or "plaintext" in r for r in by_reason):
        hint = "the client's TLS settings do not match the cluster's"
    else:
        hint = (
            "is the cluster running? (`schedd dev` starts a local one; check SCHEDD_ENDPOINTS "
            "or --endpoints)"
        )
    if method and not method.startswith(READ_PREFIXES):
        return errors.Unreachable(
            f"{method} not applied: no node could be reached ({parts}): {hint}"
        )
    return errors.Unreachable(f"no node could be reached ({parts}): {hint}")


def error_from_status(code: str, details: str, hint: str = "") -> errors.SchedError:
    """Turn a gRPC status (code *name* and details) into the matching typed error.

    ``UNAVAILABLE`` with a leader hint becomes :class:`schedd.errors.NotLeader` carrying it; codes
    outside the schedd table become :class:`schedd.errors.Internal` with the code in the message.
    """
    details = one_line(details or "")
    if code == "UNAVAILABLE" and hint:
        return errors.NotLeader(details or f"not the leader; the leader is {hint}", hint)
    if code in errors.BY_CODE:
        return errors.from_code(code, details or code.lower().replace("_", " "))
    return errors.Internal(f"{code}: {details}" if details else code)


def status_of(exc: BaseException) -> tuple[str, str, str]:
    """(code name, details, leader hint) of a failed gRPC call (sync or asyncio); robust to odd
    ``RpcError`` objects."""
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


def node_failure(
    target: str, code: str, details: str, hint: str, timeout: float
) -> errors.SchedError:
    """The error of a failed single-node status call: Unavailable naming the node when it could
    not be reached or did not answer in time, else the typed error of the status."""
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return errors.Unavailable(f"{target}: {summarize_failure(code, details, timeout)}")
    return error_from_status(code, details, hint)


def report_of(
    endpoint: str, status: models.NodeStatus | None, error: errors.SchedError | None
) -> models.NodeReport:
    """A :class:`schedd.models.NodeReport`; the reason drops the endpoint prefix it repeats."""
    if error is None:
        return models.NodeReport(endpoint, status, "")
    reason = error.message
    if reason.startswith(f"{endpoint}: "):
        reason = reason[len(endpoint) + 2 :]
    return models.NodeReport(endpoint, None, reason)


# ---- the retry schedule of one call --------------------------------------------------------


class Attempts:
    """The leader-following retry schedule of one call (the failure contract of
    :mod:`schedd.client`), as a state machine fed with failures and the current time.

    ``target`` is where the next attempt goes. :meth:`failed` either raises the call's final
    :class:`schedd.errors.SchedError` or moves ``target`` and returns the delay to wait first.
    Hints are followed at once, at most ``len(endpoints) + 1`` times in a row (so two nodes
    naming each other cannot ping-pong without back-off); every other retry backs off 50 ms,
    doubling, at most 1 s; no retry starts after ``retry_for`` seconds. When every configured
    endpoint failed to connect and no attempt reached a node, the call raises
    :class:`schedd.errors.Unreachable` at once, or keeps trying up to ``wait_for`` seconds (a
    cluster that is starting). Where to go and how
    long to wait is the :class:`schedd.sdk.navigation.Navigator` shared with the worker agent;
    this class adds what is the SDK's own: which failures are final, and giving up.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        first: str,
        *,
        method: str,
        idempotent: bool,
        timeout: float,
        retry_for: float,
        now: float,
        wait_for: float = 0.0,
    ) -> None:
        self._endpoints = list(endpoints)
        self._nav = Navigator(self._endpoints, first=first, max_free_hops=len(self._endpoints) + 1)
        self._method = method
        self._idempotent = idempotent
        self._timeout = timeout
        self._give_up_at = now + max(retry_for, wait_for)
        self._wait_until = now + wait_for
        # Configured endpoints this call could not reach, with why; while no attempt reached a
        # node and every endpoint is here, the call gives up at wait_until, not give_up_at:
        # retrying helps through an election, not against a cluster that is not there.
        self._unreached: dict[str, str] = {}
        self._reached = False

    @property
    def target(self) -> str:
        """Where the next attempt goes."""
        return self._nav.target

    def failed(self, code: str, details: str, hint: str, *, maybe_sent: bool, now: float) -> float:
        """Account for an attempt at ``target`` that failed; see the class docstring."""
        target = self.target
        action = classify(
            code, hint=hint, current=target, idempotent=self._idempotent, maybe_sent=maybe_sent
        )
        if action is Action.FAIL:
            if code == "DEADLINE_EXCEEDED":
                reason = (
                    summarize_failure(code, details, self._timeout)
                    if details.strip().lower() in ("", "deadline exceeded")
                    else one_line(details)
                )
                raise errors.OutcomeUnknown(
                    f"{self._method} at {target}: {reason}; it may or may not have been applied: "
                    "check the current state before retrying"
                )
            raise error_from_status(code, details, hint)

        unreached = unreached_reason(code, details, self._timeout, maybe_sent=maybe_sent)
        if not unreached:
            self._reached = True
        elif target in self._endpoints:
            self._unreached[target] = unreached
        if code == "DEADLINE_EXCEEDED" and not maybe_sent:
            last = f"{target}: no connection within {self._timeout:g}s"
        else:
            last = f"{target}: {summarize_failure(code, details, self._timeout)}"
        # No suspects: an RPC deadline does not tell a frozen node from a slow answer.
        delay = self._nav.failed(Move(action.value), hint=hint, now=now)
        nowhere = not self._reached and set(self._unreached) == set(self._endpoints)
        if nowhere and (now + delay > self._wait_until or now + delay > self._give_up_at):
            raise unreachable_error(
                {e: self._unreached[e] for e in self._endpoints if e in self._unreached},
                self._method,
            )
        if now + delay > self._give_up_at:
            raise errors.Unavailable(
                f"no leader reachable at {','.join(self._endpoints)} (last error: {last}): "
                "is the cluster running? check `schedctl cluster status`"
            )
        return delay


# ---- requests ------------------------------------------------------------------------------


def build(make: Callable[[], _T]) -> _T:
    """Build a request message, turning protobuf's type/range errors into InvalidArgument."""
    try:
        return make()
    except errors.SchedError:
        raise
    except (TypeError, ValueError) as exc:
        raise errors.InvalidArgument("request", one_line(str(exc))) from None


def new_request_id() -> str:
    """A fresh client request id (uuid4, hex) for a create or trigger."""
    return uuid.uuid4().hex


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
    policy = build(
        lambda: types_pb2.RetryPolicy(
            max_attempts=max_attempts,
            multiplier=multiplier,
            max_backoff_ms=max_backoff_ms,
            non_retryable_exit_codes=list(non_retryable_exit_codes),
            non_retryable_errors=list(non_retryable_errors),
        )
    )
    if initial_backoff_ms is not None:
        policy.initial_backoff_ms = build(lambda: int(initial_backoff_ms))
    return policy


RetrySpec = types_pb2.RetryPolicy | models.RetryPolicy | Mapping[str, Any]


def as_policy(retry: RetrySpec) -> types_pb2.RetryPolicy:
    """A protobuf RetryPolicy from a message, a :class:`schedd.models.RetryPolicy` or a dict of
    :func:`retry_policy`'s keyword arguments (an unknown key raises InvalidArgument)."""
    if isinstance(retry, types_pb2.RetryPolicy):
        return retry
    if isinstance(retry, models.RetryPolicy):
        return cast(types_pb2.RetryPolicy, retry.to_pb())
    known = {f.name for f in types_pb2.RetryPolicy.DESCRIPTOR.fields}
    for key in retry:
        if key not in known:
            raise errors.InvalidArgument(
                f"retry.{key}", f"unknown field; known: {', '.join(sorted(known))}"
            )
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


_POLICY_INT_FIELDS = (
    "misfire_grace_ms",
    "catchup_window_ms",
    "max_catchup",
    "max_concurrent",
    "dispatch_timeout_ms",
    "priority",
    "keep_runs",
    "keep_for_ms",
    "max_runs",
)


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
    retry: RetrySpec | None = None,
    run_timeout_ms: int = 0,
    **options: Any,
) -> api_pb2.CreateJobRequest:
    """Build the CreateJobRequest for :meth:`Client.create_job`'s arguments (also the job
    definition of an update). Raises InvalidArgument for an unknown option or a bad value the
    client can tell locally; the server validates everything again."""
    kinds = sum(x is not None for x in (cron, at_ms, every_ms))
    unscheduled = kinds == 0 and bool(options.get("depends_on"))
    if kinds != 1 and not unscheduled:
        raise errors.InvalidArgument(
            "schedule",
            "give exactly one of cron, every_ms or at_ms (or none, with depends_on: the job then "
            "runs whenever its upstreams are satisfied)",
        )
    for field, value in (("every_ms", every_ms), ("at_ms", at_ms), ("jitter_ms", jitter_ms)):
        # protobuf would refuse it too, but without naming the field
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise errors.InvalidArgument(f"schedule.{field}", f"{value} ms is out of range")
    if max_attempts < 0:
        raise errors.InvalidArgument("max_attempts", f"{max_attempts} must not be negative")
    if unscheduled:
        schedule = types_pb2.Schedule()
    elif cron is not None:
        schedule = types_pb2.Schedule(
            kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron, timezone=tz or "UTC"
        )
    elif every_ms is not None:
        schedule = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_INTERVAL, every_ms=every_ms)
    else:
        schedule = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=cast(int, at_ms))
    if jitter_ms:
        schedule.jitter_ms = jitter_ms
    req = api_pb2.CreateJobRequest(
        name=name,
        schedule=schedule,
        queue=queue,
        payload=payload,
        max_attempts=max_attempts,
        request_id=request_id,
        run_timeout_ms=run_timeout_ms,
    )
    if retry is not None:
        req.retry.CopyFrom(as_policy(retry))
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
        elif key == "depends_on":
            names = value.split(",") if isinstance(value, str) else list(value)
            req.depends_on.extend(str(v).strip() for v in names if str(v).strip())
        elif key == "trigger_rule":
            req.trigger_rule = cast(Any, policies.trigger_rule_from(value))
        elif key == "dependency_timeout_ms":
            req.dependency_timeout_ms = int(value)
        elif key == "tags":
            req.tags.update({str(k): str(v) for k, v in dict(value).items()})
        elif key == "allow_past":
            req.allow_past = bool(value)
        elif key in ("start_ms", "end_ms", "anchor_ms"):
            setattr(req.schedule, key, int(value))
        elif key == "dst_gap":
            req.schedule.dst_gap = cast(
                Any,
                {"shift": types_pb2.DST_GAP_SHIFT, "skip": types_pb2.DST_GAP_SKIP}.get(
                    str(value).lower(), value if isinstance(value, int) else -1
                ),
            )
        elif key == "dst_repeat":
            req.schedule.dst_repeat = cast(
                Any,
                {"once": types_pb2.DST_REPEAT_ONCE, "twice": types_pb2.DST_REPEAT_TWICE}.get(
                    str(value).lower(), value if isinstance(value, int) else -1
                ),
            )
        else:
            raise errors.InvalidArgument(key, "is not a job option")
    return req


# ---- one call per RPC ----------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[_T]):
    """One leader-bound RPC: where it goes, the request, whether resending it is safe, and how
    its response becomes the SDK's result."""

    service: str  # the stub attribute: "jobs", "runs", "cluster", "tokens" or "workers"
    method: str
    request: Any
    idempotent: bool
    result: Callable[[Any], _T]


def resolve_namespace(namespace: str | None) -> str:
    """A client's namespace: ``namespace``, else ``SCHEDD_NAMESPACE``, else ``default``.
    Raises InvalidArgument naming ``namespace`` for a malformed one."""
    chosen = namespace if namespace is not None else os.environ.get("SCHEDD_NAMESPACE", "")
    return namespaces.namespace(chosen.strip())


def in_namespace(call: Call[_T], namespace: str) -> Call[_T]:
    """``call`` acting in ``namespace`` (requests without a namespace field are left alone;
    run ids name their own namespace). Only an unset field is filled in, and ``default`` is
    left unset: an empty namespace means ``default`` on the wire, so a request reads the same
    to a server from before namespaces, and a resent request is byte-for-byte the first one."""
    if namespace == namespaces.DEFAULT:
        return call
    holder = namespaces.carrier(call.request)
    if holder is not None and not holder.namespace:
        holder.namespace = namespace
    return call


def _job(resp: Any) -> models.Job:
    return models.Job.from_pb(resp.job)


def _run(resp: Any) -> models.Run:
    return models.Run.from_pb(resp.run)


def _nothing(resp: Any) -> None:
    return None


def _overlap(overlap: str | int) -> int:
    return policies.overlap_from(overlap) if overlap else 0


def create_job(name: str, request_id: str | None, definition: dict[str, Any]) -> Call[models.Job]:
    """CreateJob; safe to resend (a request id is generated when none is given)."""
    rid = request_id or new_request_id()
    req = build(lambda: job_request(name, request_id=rid, **definition))
    return Call("jobs", "CreateJob", req, True, _job)


#: One job of :func:`create_jobs`: a dict of :meth:`Client.create_job`'s keyword arguments with
#: its ``name`` (and optionally its ``request_id``), or a CreateJobRequest.
JobSpec = Mapping[str, Any] | api_pb2.CreateJobRequest


def job_item(index: int, spec: JobSpec) -> api_pb2.CreateJobRequest:
    """The CreateJobRequest of the ``index``-th job of a bulk create, with a request id (one is
    generated when it has none). InvalidArgument names ``jobs[index].<field>``."""
    at = f"jobs[{index}]"
    if isinstance(spec, api_pb2.CreateJobRequest):
        req = api_pb2.CreateJobRequest()
        req.CopyFrom(spec)
    elif isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("name", None)
        if not isinstance(name, str) or not name:
            raise errors.InvalidArgument(f"{at}.name", "is required")
        rid = options.pop("request_id", None) or ""
        try:
            req = build(lambda: job_request(name, request_id=rid, **options))
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument(
                f"{at}.{e.field}", e.message.removeprefix(e.field + ": ")
            ) from None
    else:
        raise errors.InvalidArgument(
            at, f"a {type(spec).__name__}; give a dict of create_job's arguments with 'name'"
        )
    if not req.request_id:
        req.request_id = new_request_id()
    return req


def job_batches(
    items: Sequence[api_pb2.CreateJobRequest],
    max_jobs: int = rules.MAX_CREATE_JOBS,
    max_bytes: int = rules.MAX_CREATE_JOBS_BYTES,
) -> list[list[api_pb2.CreateJobRequest]]:
    """``items`` in order, cut into the fewest consecutive CreateJobs calls within the limits
    (at most ``max_jobs`` jobs and ``max_bytes`` request bytes each; a margin is kept for the
    call's namespace)."""
    budget = max_bytes - 128
    out: list[list[api_pb2.CreateJobRequest]] = []
    size = 0
    for item in items:
        cost = item.ByteSize() + 6  # the field tag and its length
        if not out or len(out[-1]) >= max_jobs or size + cost > budget:
            out.append([])
            size = 0
        out[-1].append(item)
        size += cost
    return out


def create_jobs(specs: Iterable[JobSpec]) -> Call[list[models.JobCreateResult]]:
    """CreateJobs: every job in one call and one replicated entry. Safe to resend: each job
    carries a request id (generated when it has none), and a resent call returns each job's
    first outcome."""
    items = [job_item(i, spec) for i, spec in enumerate(specs)]
    if len(items) > rules.MAX_CREATE_JOBS:
        raise errors.InvalidArgument(
            "jobs",
            f"{len(items)} jobs in one call, over the limit of {rules.MAX_CREATE_JOBS}; "
            f"send them in calls of at most {rules.MAX_CREATE_JOBS}",
        )
    req = api_pb2.CreateJobsRequest(jobs=items)
    if req.ByteSize() > rules.MAX_CREATE_JOBS_BYTES:
        raise errors.InvalidArgument(
            "jobs",
            f"the request is {req.ByteSize()} bytes, over the limit of "
            f"{rules.MAX_CREATE_JOBS_BYTES} bytes per call; send fewer jobs per call",
        )
    names = [item.name for item in items]

    def results(resp: Any) -> list[models.JobCreateResult]:
        if len(resp.results) != len(names):
            raise errors.Internal(
                f"CreateJobs: the server answered {len(resp.results)} results for {len(names)} jobs"
            )
        return [
            models.JobCreateResult(
                index=i,
                name=names[i],
                code=errors.status_name(r.code),
                message=r.message,
                job=models.Job.from_pb(r.job) if r.HasField("job") else None,
            )
            for i, r in enumerate(resp.results)
        ]

    return Call("jobs", "CreateJobs", req, True, results)


def update_job(
    name: str, expect_version: int, request_id: str | None, definition: dict[str, Any]
) -> Call[models.Job]:
    """UpdateJob with the whole new definition; safe to resend (request id)."""
    if expect_version < 0:
        raise errors.InvalidArgument("expect_version", f"{expect_version} must not be negative")
    rid = request_id or new_request_id()
    req = build(
        lambda: api_pb2.UpdateJobRequest(
            job=job_request(name, request_id=rid, **definition), expect_version=expect_version
        )
    )
    return Call("jobs", "UpdateJob", req, True, _job)


def backfill_job(
    name: str,
    from_ms: int,
    to_ms: int,
    limit: int,
    overlap: str | int,
    with_downstream: bool = False,
) -> Call[models.BackfillResult]:
    """BackfillJob; safe to resend (slots that already have a run are left alone)."""
    if limit < 0:
        raise errors.InvalidArgument("limit", f"{limit} must not be negative")
    if to_ms < from_ms:
        raise errors.InvalidArgument("to_ms", f"{to_ms} is before from_ms {from_ms}")
    ov = _overlap(overlap)
    req = build(
        lambda: api_pb2.BackfillRequest(
            name=name,
            from_ms=from_ms,
            to_ms=to_ms,
            limit=limit,
            overlap=cast(Any, ov),
            with_downstream=with_downstream,
        )
    )
    return Call("jobs", "BackfillJob", req, True, models.BackfillResult.from_pb)


def explain_job(name: str, at_ms: int) -> Call[models.Explanation]:
    """ExplainJob (a read)."""
    req = build(lambda: api_pb2.ExplainRequest(name=name, at_ms=at_ms))
    return Call("jobs", "ExplainJob", req, True, models.Explanation.from_pb)


def get_job(name: str) -> Call[models.Job]:
    """GetJob (a read)."""
    req = build(lambda: api_pb2.JobRequest(name=name))
    return Call("jobs", "GetJob", req, True, _job)


def delete_job(name: str, force: bool = False) -> Call[list[str]]:
    """DeleteJob; not resent after a timeout (no request id in the protocol). The result: the
    jobs whose depends_on lost it (``force``)."""
    req = build(lambda: api_pb2.JobRequest(name=name, force=force))
    return Call("jobs", "DeleteJob", req, False, lambda resp: list(resp.unlinked))


def get_dependencies(name: str) -> Call[list[models.DependencyNode]]:
    """GetDependencies (a read): the job first, then its upstreams and downstreams."""
    req = build(lambda: api_pb2.JobRequest(name=name))
    return Call(
        "jobs",
        "GetDependencies",
        req,
        True,
        lambda resp: [models.DependencyNode.from_pb(n) for n in resp.nodes],
    )


def pause_job(name: str) -> Call[models.Job]:
    """PauseJob; not resent after a timeout."""
    req = build(lambda: api_pb2.JobRequest(name=name))
    return Call("jobs", "PauseJob", req, False, _job)


def resume_job(name: str, skip_missed: bool) -> Call[models.Job]:
    """ResumeJob; not resent after a timeout."""
    req = build(lambda: api_pb2.ResumeJobRequest(name=name, skip_missed=skip_missed))
    return Call("jobs", "ResumeJob", req, False, _job)


def trigger_job(name: str, request_id: str | None, overlap: str | int) -> Call[models.Run]:
    """TriggerJob; safe to resend (request id)."""
    rid = request_id or new_request_id()
    ov = _overlap(overlap)
    req = build(lambda: api_pb2.TriggerJobRequest(name=name, request_id=rid, overlap=cast(Any, ov)))
    return Call("jobs", "TriggerJob", req, True, _run)


class RunPager:
    """The paging of :meth:`Client.list_runs`: ``next_call()`` until it returns None, feeding
    each response to ``add``; ``runs`` is then the newest ``limit`` runs, oldest first. The
    server sends the newest page first and at most ~3 MiB per response (gRPC's message limit),
    with a token to continue with older runs."""

    def __init__(self, job: str, limit: int, state: int | str | None) -> None:
        if limit < 0:
            raise errors.InvalidArgument("limit", f"{limit} must not be negative")
        self._job = job
        self._limit = limit
        self._state = run_state(state) if state is not None else 0
        self._token = b""
        self._done = limit == 0
        self._pages: list[list[models.Run]] = []
        self._count = 0

    def next_call(self) -> Call[tuple[list[models.Run], bytes]] | None:
        """The call fetching the next (older) page, or None when the listing is complete."""
        if self._done:
            return None
        job, token, st = self._job, self._token, self._state
        want = min(self._limit - self._count, RUN_PAGE_MAX)
        req = build(
            lambda: api_pb2.ListRunsRequest(
                job=job, limit=want, state=cast(Any, st), page_token=token
            )
        )
        return Call(
            "runs",
            "ListRuns",
            req,
            True,
            lambda resp: ([models.Run.from_pb(r) for r in resp.runs], resp.next_page_token),
        )

    def add(self, page: tuple[list[models.Run], bytes]) -> None:
        """Take one response. The listing ends with the limit, an empty page, or no token."""
        runs, token = page
        self._pages.append(runs)
        self._count += len(runs)
        self._token = token
        # (A server older than page tokens sends one page and no token: that is all it gives.)
        if not runs or not token or self._count >= self._limit:
            self._done = True

    @property
    def runs(self) -> list[models.Run]:
        out: list[models.Run] = []
        for page in reversed(self._pages):  # pages come newest first, each oldest first
            out.extend(page)
        return out[-self._limit :] if self._limit else []


#: The most runs one ListRuns request asks for (the server's maximum).
RUN_PAGE_MAX = 100_000


def get_run(run_id: str) -> Call[models.Run]:
    """GetRun (a read)."""
    req = build(lambda: api_pb2.GetRunRequest(run_id=run_id))
    return Call("runs", "GetRun", req, True, _run)


def retry_run(run_id: str, request_id: str | None) -> Call[models.Run]:
    """RetryRun; safe to resend (request id)."""
    rid = request_id or new_request_id()
    req = build(lambda: api_pb2.RetryRunRequest(run_id=run_id, request_id=rid))
    return Call("runs", "RetryRun", req, True, _run)


def cancel_run(run_id: str, reason: str, request_id: str | None) -> Call[models.Run]:
    """CancelRun; safe to resend (request id)."""
    rid = request_id or new_request_id()
    req = build(lambda: api_pb2.CancelRunRequest(run_id=run_id, reason=reason, request_id=rid))
    return Call("runs", "CancelRun", req, True, _run)


def list_workers(namespace: str = "") -> Call[list[models.WorkerInfo]]:
    """ListWorkers (a read; empty = the client's namespace)."""
    req = build(lambda: api_pb2.ListWorkersRequest(namespace=namespace))
    return Call(
        "workers",
        "ListWorkers",
        req,
        True,
        lambda resp: [models.WorkerInfo.from_pb(w) for w in resp.workers],
    )


def complete_run(
    run_id: str, fence: int, success: bool, error: str, exit_code: int | None, session: str = ""
) -> Call[None]:
    """CompleteRun; a success is safe to resend (the server accepts it again for the same
    fence), a failure is not. ``session``: the holding stream's ``Welcome.session``."""
    outcome = api_pb2.OUTCOME_SUCCEEDED if success else api_pb2.OUTCOME_FAILED
    req = build(
        lambda: api_pb2.Completion(
            run_id=run_id,
            fence=fence,
            outcome=outcome,
            error=error,
            exit_code=exit_code,
            session=session,
        )
    )
    return Call("runs", "CompleteRun", req, success, _nothing)


def transfer_leadership(to_node_id: str) -> Call[None]:
    """TransferLeadership; not resent after a timeout (a second transfer would move it again)."""
    req = build(lambda: api_pb2.TransferLeadershipRequest(to_node_id=to_node_id))
    return Call("cluster", "TransferLeadership", req, False, _nothing)


def list_members() -> Call[list[models.Member]]:
    """ListMembers (a read, answered by the leader)."""
    req = build(lambda: api_pb2.ListMembersRequest())
    return Call(
        "cluster",
        "ListMembers",
        req,
        True,
        lambda resp: [models.Member.from_pb(m) for m in resp.members],
    )


def add_member(
    node_id: str, raft_address: str, grpc_address: str, features_supported: int = 0
) -> Call[list[models.Member]]:
    """AddMember; safe to resend (adding a member that is one with the same addresses is a
    no-op). ``features_supported``: the joining node's own version (``schedd run --join``)."""
    req = build(
        lambda: api_pb2.AddMemberRequest(
            node_id=node_id,
            raft_address=raft_address,
            grpc_address=grpc_address,
            features_supported=features_supported,
        )
    )
    return Call(
        "cluster", "AddMember", req, True, lambda r: [models.Member.from_pb(m) for m in r.members]
    )


def remove_member(node_id: str) -> Call[list[models.Member]]:
    """RemoveMember; not resent after a timeout (a resend of a removal that committed answers
    NOT_FOUND)."""
    req = build(lambda: api_pb2.RemoveMemberRequest(node_id=node_id))
    return Call(
        "cluster",
        "RemoveMember",
        req,
        False,
        lambda r: [models.Member.from_pb(m) for m in r.members],
    )


def _new_token(resp: Any) -> models.NewToken:
    return models.NewToken(models.Token.from_pb(resp.token), resp.secret)


def _tokens(resp: Any) -> list[models.Token]:
    return [models.Token.from_pb(t) for t in resp.tokens]


def _token(resp: Any) -> models.Token:
    return models.Token.from_pb(resp.token)


def create_token(
    name: str, grants: Sequence[str], queues: Sequence[str], ttl_s: int
) -> Call[models.NewToken]:
    """CreateToken; not resent after a timeout (the secret of a lost answer is gone: list the
    tokens, revoke the unknown one and create it again)."""
    req = build(
        lambda: api_pb2.CreateTokenRequest(
            name=name, grants=list(grants), queues=list(queues), ttl_s=int(ttl_s)
        )
    )
    return Call("tokens", "CreateToken", req, False, _new_token)


def list_tokens(include_revoked: bool) -> Call[list[models.Token]]:
    """ListTokens (a read)."""
    req = build(lambda: api_pb2.ListTokensRequest(include_revoked=include_revoked))
    return Call("tokens", "ListTokens", req, True, _tokens)


def revoke_token(name: str) -> Call[models.Token]:
    """RevokeToken; revoking twice is harmless, so it is resent after a timeout."""
    req = build(lambda: api_pb2.RevokeTokenRequest(name=name))
    return Call("tokens", "RevokeToken", req, True, _token)


def _audit(resp: Any) -> tuple[list[models.AuditRecord], int]:
    return [models.AuditRecord.from_pb(r) for r in resp.records], resp.next_before_index


def list_audit(
    limit: int, before_index: int, principal: str, target: str
) -> Call[tuple[list[models.AuditRecord], int]]:
    """ListAudit (a read): one page, newest first, and the index to continue below."""
    req = build(
        lambda: api_pb2.ListAuditRequest(
            limit=limit, before_index=before_index, principal=principal, target=target
        )
    )
    return Call("cluster", "ListAudit", req, True, _audit)


def _namespace(resp: Any) -> models.Namespace:
    return models.Namespace.from_pb(resp)


def set_namespace_quota(namespace: str, max_jobs: int, max_runs: int) -> Call[models.Namespace]:
    """SetNamespaceQuota (cluster-admin); setting the same quotas again is harmless, so it is
    resent after a timeout."""
    for f, v in (("max_jobs", max_jobs), ("max_runs", max_runs)):
        if v < 0:
            raise errors.InvalidArgument(f, f"{v} must not be negative (0 = no limit)")
    req = build(
        lambda: api_pb2.SetNamespaceQuotaRequest(
            namespace=namespaces.namespace(namespace), max_jobs=max_jobs, max_runs=max_runs
        )
    )
    return Call("cluster", "SetNamespaceQuota", req, True, _namespace)


def get_namespace(namespace: str) -> Call[models.Namespace]:
    """GetNamespace (a read; empty = the client's namespace)."""
    req = build(lambda: api_pb2.GetNamespaceRequest(namespace=namespace))
    return Call("cluster", "GetNamespace", req, True, _namespace)


def list_namespaces() -> Call[list[models.Namespace]]:
    """ListNamespaces (cluster-admin; a read)."""
    return Call(
        "cluster",
        "ListNamespaces",
        api_pb2.ListNamespacesRequest(),
        True,
        lambda resp: [models.Namespace.from_pb(n) for n in resp.namespaces],
    )


def node_status_request(with_digest: bool) -> api_pb2.NodeStatusRequest:
    """The GetNodeStatus request (sent to one node, not through :class:`Attempts`)."""
    return build(lambda: api_pb2.NodeStatusRequest(with_digest=with_digest))


class JobPager:
    """The paging of :meth:`Client.list_jobs`: ``next_call()`` until it returns None, feeding each
    page's jobs to ``add``; ``jobs`` is then the result (at most ``limit``, ``None`` = all)."""

    def __init__(self, limit: int | None, after: str = "") -> None:
        if limit is not None and limit < 0:
            raise errors.InvalidArgument("limit", f"{limit} must not be negative")
        self._limit = limit
        self._after = after
        self._done = False
        self.jobs: list[models.Job] = []

    def next_call(self) -> Call[list[models.Job]] | None:
        """The call fetching the next page, or None when the listing is complete."""
        if self._done or (self._limit is not None and len(self.jobs) >= self._limit):
            return None
        page = JOB_PAGE if self._limit is None else min(JOB_PAGE, self._limit - len(self.jobs))
        after = self._after
        req = build(lambda: api_pb2.ListJobsRequest(limit=page, after_name=after))
        return Call(
            "jobs", "ListJobs", req, True, lambda resp: [models.Job.from_pb(j) for j in resp.jobs]
        )

    def add(self, got: list[models.Job]) -> None:
        """Take one page. An empty page ends the listing, and so does a page that does not move
        past the previous one (a server ignoring after_name): stop instead of looping."""
        if not got or (self._after and got[-1].name <= self._after):
            self._done = True
            return
        self.jobs.extend(got)
        self._after = got[-1].name
        if self._limit is not None:
            del self.jobs[self._limit :]
