"""Request validation: public API requests -> replicated commands. Pure (the caller passes
``now_ms``); every rejection is an InvalidArgument naming the field, before anything is
proposed, so bad input changes nothing."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

from schedd import namespaces, rules
from schedd.errors import InvalidArgument
from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched import policies
from schedd.sched.retry import (
    DAY_MS,
    DEFAULT_INITIAL_BACKOFF_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_FACTOR,
    DEFAULT_MULTIPLIER,
    MAX_ATTEMPTS_LIMIT,
    MAX_MULTIPLIER,
)
from schedd.sched.schedule import (
    GAP_TO_PB,
    MAX_INTERVAL_MS,
    MAX_JITTER_MS,
    MIN_INTERVAL_MS,
    REPEAT_TO_PB,
    Schedule,
    collapse_blanks,
    compile_schedule,
    dst_gap_from_pb,
    dst_repeat_from_pb,
    parse_cron,
    parse_duration,
    parse_zone,
)
from schedd.security import roles

NAME_RE, QUEUE_RE, TAG_RE = rules.NAME_RE, rules.QUEUE_RE, rules.TAG_RE
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_REQUEST_ID = 128
MAX_RUN_ID = 300
MIN_RUN_TIMEOUT_MS = 1000
MAX_RUN_TIMEOUT_MS = 7 * DAY_MS
MAX_NON_RETRYABLE = 32  # entries in each non-retryable list
MAX_NON_RETRYABLE_ERROR = 200  # characters of one non-retryable error text
PAST_AT_TOLERANCE_MS = 60_000
MAX_TAGS = rules.MAX_JOB_TAGS
MAX_PRIORITY = 100
MAX_KEEP_RUNS = 1_000_000
DEFAULT_BACKFILL_CHUNK = 1000
MAX_BACKFILL_CHUNK = 10_000
MAX_BACKFILL_SPAN_MS = 3660 * 86_400_000
#: Free texts workers send: cut (never refused) to these many UTF-8 bytes, the cut marked, before
#: anything is replicated or kept in memory. A worker's error is evidence worth keeping whole
#: when it is short; a megabyte of it would be copied into every replica's journal.
MAX_ERROR_BYTES = 8 * 1024
MAX_PROGRESS_BYTES = 1024
MAX_RELEASE_REASON_BYTES = 256


name = rules.name
queue = rules.queue


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def request_id(value: str) -> str:
    if len(value) > MAX_REQUEST_ID:
        raise InvalidArgument("request_id", f"longer than {MAX_REQUEST_ID} characters")
    if _CONTROL.search(value):
        raise InvalidArgument("request_id", "must not contain control characters")
    return value


def clip_text(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes (at a character boundary), the cut
    marked with how much was left out; shorter texts unchanged."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    keep = raw[: max(0, max_bytes - 40)].decode(errors="ignore")
    return keep + f" [... {len(raw) - len(keep.encode())} more bytes cut]"


def completion(c: api_pb2.Completion, field: str = "") -> api_pb2.Completion:
    """A worker's completion, checked (run_id, fence, outcome) and with its error cut to
    ``MAX_ERROR_BYTES``. ``field`` prefixes the field names in errors (e.g. "completions[3].")."""
    if not c.run_id:
        raise InvalidArgument(f"{field}run_id", "is required")
    if len(c.run_id) > MAX_RUN_ID:
        raise InvalidArgument(f"{field}run_id", f"longer than {MAX_RUN_ID} characters")
    if not c.fence:
        raise InvalidArgument(f"{field}fence", "is required (the fence of the firing)")
    if c.outcome not in (api_pb2.OUTCOME_SUCCEEDED, api_pb2.OUTCOME_FAILED):
        raise InvalidArgument(f"{field}outcome", "must be OUTCOME_SUCCEEDED or OUTCOME_FAILED")
    out = api_pb2.Completion()
    out.CopyFrom(c)
    out.error = clip_text(c.error, MAX_ERROR_BYTES)
    return out


def payload(value: str) -> str:
    if len(value.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(
            "payload",
            f"{len(value.encode())} bytes is over the limit of {MAX_PAYLOAD_BYTES}; "
            "keep big data elsewhere and pass a reference",
        )
    if value:
        depth = _json_depth(value)
        if depth > MAX_PAYLOAD_DEPTH:
            raise InvalidArgument(
                "payload", f"is nested {depth} levels deep; the limit is {MAX_PAYLOAD_DEPTH}"
            )
        try:
            json.loads(value, parse_constant=_not_json)
        except ValueError as e:
            raise InvalidArgument("payload", f"is not valid JSON ({e})") from None
    return value


#: Arrays and objects inside each other in a payload: deeper ones would exhaust the recursion of
#: the JSON decoders that read them (the server's, and the workers').
MAX_PAYLOAD_DEPTH = 100


def _not_json(word: str) -> None:
    """``json.loads`` accepts NaN and Infinity, which JSON (RFC 8259) does not: other
    languages' decoders would refuse the payload a worker gets."""
    raise ValueError(f"{word} is not a JSON value")


def _json_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (strings skipped), without recursing."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def first_due(
    schedule: types_pb2.Schedule,
    now_ms: int,
    job_name: str = "",
    compiled: Schedule | None = None,
) -> int:
    """The first due instant of a validated schedule (0: none): for a recurring schedule, the
    due time (jitter applied) of the first slot strictly after ``now_ms``; for a one-shot, the
    due time of ``at_ms`` even if it is a little in the past (it fires at once). ``compiled``:
    the schedule already compiled (by :func:`schedule_compiled`)."""
    sched = compiled if compiled is not None else compile_schedule(schedule)
    if schedule.kind == types_pb2.SCHEDULE_KIND_AT:
        return sched.due_ms(job_name, schedule.at_ms)
    return sched.first_due(job_name, now_ms)


def _bounds_and_jitter(s: types_pb2.Schedule, out: types_pb2.Schedule) -> None:
    for f in ("start_ms", "end_ms", "jitter_ms"):
        if getattr(s, f) < 0:
            raise InvalidArgument(f"schedule.{f}", "must not be negative")
    if s.start_ms and s.end_ms and s.end_ms <= s.start_ms:
        raise InvalidArgument("schedule.end_ms", "must be after schedule.start_ms")
    if out.kind == types_pb2.SCHEDULE_KIND_INTERVAL:
        if s.jitter_ms >= out.every_ms:
            raise InvalidArgument(
                "schedule.jitter_ms",
                f"{s.jitter_ms} ms must be less than the interval ({out.every_ms} ms)",
            )
    elif s.jitter_ms > MAX_JITTER_MS:
        raise InvalidArgument("schedule.jitter_ms", f"{s.jitter_ms} ms is over the limit of 1 day")
    out.start_ms, out.end_ms, out.jitter_ms = s.start_ms, s.end_ms, s.jitter_ms


def _cron_or_every(s: types_pb2.Schedule, out: types_pb2.Schedule) -> None:
    text = collapse_blanks(s.cron, "schedule.cron")
    if text.lower().startswith("@every"):  # an alias of an interval: stored as one
        out.kind = types_pb2.SCHEDULE_KIND_INTERVAL
        every = parse_duration(text[len("@every") :], "schedule.cron")
        if every > MAX_INTERVAL_MS:  # checked before the int64 field could refuse it
            raise InvalidArgument(
                "schedule.cron", f"{text!r} is over the maximum interval of 366 days"
            )
        out.every_ms = every
        for f in ("dst_gap", "dst_repeat"):
            if getattr(s, f):
                raise InvalidArgument(
                    f"schedule.{f}", "applies to cron expressions only, not @every"
                )
        _interval_fields(s, out, "schedule.cron")
        return
    gap = dst_gap_from_pb(s.dst_gap)
    repeat = dst_repeat_from_pb(s.dst_repeat)
    cron = parse_cron(text, s.timezone or "UTC", "schedule.cron", gap, repeat)
    out.kind, out.cron, out.timezone = s.kind, cron.expr, cron.tz
    out.dst_gap, out.dst_repeat = GAP_TO_PB[gap], REPEAT_TO_PB[repeat]


def _interval_fields(s: types_pb2.Schedule, out: types_pb2.Schedule, every_field: str) -> None:
    if out.every_ms < MIN_INTERVAL_MS:
        raise InvalidArgument(every_field, f"{out.every_ms} ms is below the minimum interval of 1s")
    if out.every_ms > MAX_INTERVAL_MS:
        raise InvalidArgument(
            every_field, f"{out.every_ms} ms is over the maximum interval of 366 days"
        )
    if s.HasField("anchor_ms") and s.anchor_ms < 0:
        raise InvalidArgument("schedule.anchor_ms", "must not be negative")
    out.anchor_ms = s.anchor_ms if s.HasField("anchor_ms") else max(0, s.start_ms)
    out.timezone = parse_zone(s.timezone) if s.timezone else "UTC"


def schedule(s: types_pb2.Schedule, now_ms: int, allow_past: bool = False) -> types_pb2.Schedule:
    """Validate a schedule and return it normalized, every default written out (so a later
    change of a default never changes a stored job)."""
    return schedule_compiled(s, now_ms, allow_past)[0]


def schedule_compiled(
    s: types_pb2.Schedule, now_ms: int, allow_past: bool = False
) -> tuple[types_pb2.Schedule, Schedule]:
    """:func:`schedule`, and the normalized schedule compiled (a job's first due time needs it
    too: compiling once halves what a bulk create spends on schedules)."""
    out = types_pb2.Schedule()
    if s.kind != types_pb2.SCHEDULE_KIND_CRON:
        for f in ("dst_gap", "dst_repeat"):
            if getattr(s, f):
                raise InvalidArgument(f"schedule.{f}", "applies to cron schedules only")
    if (
        s.kind != types_pb2.SCHEDULE_KIND_INTERVAL
        and s.HasField("anchor_ms")
        and not s.cron.strip().lower().startswith("@every")
    ):
        raise InvalidArgument("schedule.anchor_ms", "applies to interval schedules only")
    if s.kind == types_pb2.SCHEDULE_KIND_CRON:
        _cron_or_every(s, out)
    elif s.kind == types_pb2.SCHEDULE_KIND_INTERVAL:
        out.kind, out.every_ms = s.kind, s.every_ms
        _interval_fields(s, out, "schedule.every_ms")
    elif s.kind == types_pb2.SCHEDULE_KIND_AT:
        if s.at_ms <= 0:
            raise InvalidArgument("schedule.at_ms", "is required for a one-shot job")
        if s.at_ms < now_ms - PAST_AT_TOLERANCE_MS and not allow_past:
            raise InvalidArgument("schedule.at_ms", "is in the past; pick a future time")
        if s.timezone:
            parse_zone(s.timezone)
        out.kind, out.at_ms, out.timezone = s.kind, s.at_ms, s.timezone or "UTC"
    else:
        raise InvalidArgument(
            "schedule.kind", "is required: a cron expression, an interval or a one-shot time"
        )
    _bounds_and_jitter(s, out)
    sched = compile_schedule(out)
    if out.kind == types_pb2.SCHEDULE_KIND_AT:
        if (out.start_ms and out.at_ms < out.start_ms) or (out.end_ms and out.at_ms > out.end_ms):
            raise InvalidArgument(
                "schedule.at_ms", "is outside schedule.start_ms .. schedule.end_ms"
            )
    elif sched.next_after(now_ms) is None:
        if out.end_ms:
            raise InvalidArgument(
                "schedule.end_ms",
                "the schedule has no firing between now (or schedule.start_ms) and schedule.end_ms",
            )
        raise InvalidArgument("schedule.cron", "the schedule never fires after now")
    return out, sched


def _ms(value: int, field: str, low: int, high: int, what: str) -> int:
    if value < 0:
        raise InvalidArgument(field, f"{value} must not be negative")
    if not low <= value <= high:
        raise InvalidArgument(field, f"{value} ms is out of range: {what}")
    return value


def retry_policy(p: types_pb2.RetryPolicy, max_attempts: int) -> types_pb2.RetryPolicy:
    """Validate a retry policy and return it with every default written out. ``max_attempts``
    is the request's own (legacy) field, already checked; the two must agree when both are set."""
    out = types_pb2.RetryPolicy()
    if p.max_attempts > MAX_ATTEMPTS_LIMIT:
        raise InvalidArgument(
            "retry.max_attempts", f"{p.max_attempts} is over the limit of {MAX_ATTEMPTS_LIMIT}"
        )
    if p.max_attempts and max_attempts and p.max_attempts != max_attempts:
        raise InvalidArgument(
            "retry.max_attempts",
            f"{p.max_attempts} disagrees with max_attempts {max_attempts}; set one of them",
        )
    out.max_attempts = p.max_attempts or max_attempts or DEFAULT_MAX_ATTEMPTS
    initial = (
        p.initial_backoff_ms if p.HasField("initial_backoff_ms") else DEFAULT_INITIAL_BACKOFF_MS
    )
    out.initial_backoff_ms = _ms(initial, "retry.initial_backoff_ms", 0, DAY_MS, "0 .. 1 day")
    m = p.multiplier
    if m == 0:
        m = DEFAULT_MULTIPLIER
    if not (math.isfinite(m) and 1.0 <= m <= MAX_MULTIPLIER):
        raise InvalidArgument(
            "retry.multiplier", f"{p.multiplier!r} is out of range: 1 .. {MAX_MULTIPLIER:g}"
        )
    out.multiplier = m
    cap = p.max_backoff_ms
    if cap == 0:
        cap = min(DAY_MS, DEFAULT_MAX_BACKOFF_FACTOR * initial)
    elif cap > 0 and cap < initial:
        raise InvalidArgument(
            "retry.max_backoff_ms", f"{cap} ms is below retry.initial_backoff_ms ({initial} ms)"
        )
    out.max_backoff_ms = _ms(
        cap, "retry.max_backoff_ms", initial, DAY_MS, "retry.initial_backoff_ms .. 1 day"
    )
    codes = sorted(set(p.non_retryable_exit_codes))
    if len(codes) > MAX_NON_RETRYABLE:
        raise InvalidArgument(
            "retry.non_retryable_exit_codes",
            f"{len(codes)} codes is over the limit of {MAX_NON_RETRYABLE}",
        )
    for code in codes:
        if not 1 <= code <= 255:
            raise InvalidArgument(
                "retry.non_retryable_exit_codes", f"{code} is not a failing exit code (1 .. 255)"
            )
    out.non_retryable_exit_codes.extend(codes)
    texts = list(dict.fromkeys(p.non_retryable_errors))
    if len(texts) > MAX_NON_RETRYABLE:
        raise InvalidArgument(
            "retry.non_retryable_errors",
            f"{len(texts)} entries is over the limit of {MAX_NON_RETRYABLE}",
        )
    for text in texts:
        if not text.strip():
            raise InvalidArgument(
                "retry.non_retryable_errors", "an entry is empty (it would match every error)"
            )
        if len(text) > MAX_NON_RETRYABLE_ERROR:
            raise InvalidArgument(
                "retry.non_retryable_errors",
                f"an entry is longer than {MAX_NON_RETRYABLE_ERROR} characters",
            )
    out.non_retryable_errors.extend(texts)
    return out


def run_timeout(value: int) -> int:
    if value < 0:
        raise InvalidArgument("run_timeout_ms", f"{value} must not be negative")
    if value and not MIN_RUN_TIMEOUT_MS <= value <= MAX_RUN_TIMEOUT_MS:
        raise InvalidArgument(
            "run_timeout_ms", f"{value} ms is out of range: 0 (none) or 1 s .. 7 days"
        )
    return value


def run_id(value: str) -> str:
    if not value:
        raise InvalidArgument("run_id", "is required")
    if len(value) > MAX_RUN_ID:
        raise InvalidArgument("run_id", f"longer than {MAX_RUN_ID} characters")
    return value


def _opt(req: api_pb2.CreateJobRequest, f: str, default: int) -> int:
    return getattr(req, f) if req.HasField(f) else default


def tags(values: Mapping[str, str], field: str = "tags") -> dict[str, str]:
    return rules.tags(values, field)


def policies_into(req: api_pb2.CreateJobRequest, job: types_pb2.Job) -> None:
    """Validate the policy fields of a create/update request into ``job``, defaults written out."""
    job.misfire = policies.misfire_from(req.misfire or policies.DEFAULT_MISFIRE)  # type: ignore[assignment]
    job.misfire_grace_ms = _ms(
        _opt(req, "misfire_grace_ms", policies.DEFAULT_MISFIRE_GRACE_MS),
        "misfire_grace_ms",
        0,
        DAY_MS,
        "0 .. 1 day",
    )
    job.catchup_window_ms = _ms(
        _opt(req, "catchup_window_ms", policies.DEFAULT_CATCHUP_WINDOW_MS),
        "catchup_window_ms",
        1000,
        366 * DAY_MS,
        "1 s .. 366 days",
    )
    mc = _opt(req, "max_catchup", policies.DEFAULT_MAX_CATCHUP)
    if not 1 <= mc <= policies.MAX_MAX_CATCHUP:
        raise InvalidArgument(
            "max_catchup", f"{mc} is out of range: 1 .. {policies.MAX_MAX_CATCHUP}"
        )
    job.max_catchup = mc
    job.overlap = policies.overlap_from(req.overlap or policies.DEFAULT_OVERLAP)  # type: ignore[assignment]
    limit = _opt(req, "max_concurrent", 0 if job.overlap == types_pb2.OVERLAP_POLICY_ALLOW else 1)
    if limit > policies.MAX_CONCURRENT_LIMIT:
        raise InvalidArgument(
            "max_concurrent", f"{limit} is over the limit of {policies.MAX_CONCURRENT_LIMIT}"
        )
    if limit == 0 and job.overlap != types_pb2.OVERLAP_POLICY_ALLOW:
        raise InvalidArgument(
            "max_concurrent",
            f"must be at least 1 with overlap policy {policies.overlap_name(job.overlap)}",
        )
    job.max_concurrent = limit
    if req.dispatch_timeout_ms < 0 or (
        req.dispatch_timeout_ms
        and not MIN_RUN_TIMEOUT_MS <= req.dispatch_timeout_ms <= MAX_RUN_TIMEOUT_MS
    ):
        raise InvalidArgument(
            "dispatch_timeout_ms",
            f"{req.dispatch_timeout_ms} ms is out of range: 0 (none) or 1 s .. 7 days",
        )
    job.dispatch_timeout_ms = req.dispatch_timeout_ms
    for f in ("on_success", "on_failure"):
        target = getattr(req, f)
        if target:
            name(target, f)
            if target == req.name:
                raise InvalidArgument(f, "a job cannot chain to itself")
        setattr(job, f, target)
    if not 0 <= req.priority <= MAX_PRIORITY:
        raise InvalidArgument("priority", f"{req.priority} is out of range: 0 .. {MAX_PRIORITY}")
    job.priority = req.priority
    job.tags.update(tags(req.tags))
    if req.keep_runs > MAX_KEEP_RUNS:
        raise InvalidArgument("keep_runs", f"{req.keep_runs} is over the limit of {MAX_KEEP_RUNS}")
    job.keep_runs = req.keep_runs
    if req.keep_for_ms < 0 or (req.keep_for_ms and not 60_000 <= req.keep_for_ms <= 3660 * DAY_MS):
        raise InvalidArgument(
            "keep_for_ms",
            f"{req.keep_for_ms} ms is out of range: 0 (forever) or 1 minute .. 10 years",
        )
    job.keep_for_ms = req.keep_for_ms
    job.max_runs = req.max_runs


def job_definition(req: api_pb2.CreateJobRequest, now_ms: int) -> types_pb2.Job:
    """A create (or update) request as a validated Job, every default written out, with the
    leader's first due time after ``now_ms``."""
    if req.max_attempts > MAX_ATTEMPTS_LIMIT:
        raise InvalidArgument(
            "max_attempts", f"{req.max_attempts} is over the limit of {MAX_ATTEMPTS_LIMIT}"
        )
    s = req.schedule
    if (
        s.kind == types_pb2.SCHEDULE_KIND_AT
        and not req.allow_past
        and s.at_ms > 0
        and s.at_ms < now_ms - PAST_AT_TOLERANCE_MS
    ):
        raise InvalidArgument(
            "schedule.at_ms",
            "is in the past; pick a future time, or set allow_past "
            "(schedctl: --allow-past) to run it at once",
        )
    unscheduled = bool(req.depends_on) and s == types_pb2.Schedule()
    sched, compiled = (
        (types_pb2.Schedule(), None)
        if unscheduled
        else schedule_compiled(s, now_ms, allow_past=req.allow_past)
    )
    # Names are checked bare and stored qualified with the namespace (schedd.namespaces); the
    # jitter hashes the stored name, as the dispatcher does.
    ns = namespaces.namespace(req.namespace)
    stored = namespaces.qualify(ns, name(req.name))
    job = types_pb2.Job(
        name=stored,
        schedule=sched,
        queue=namespaces.qualify(ns, queue(req.queue)),
        payload=payload(req.payload),
        max_attempts=req.max_attempts or DEFAULT_MAX_ATTEMPTS,
        run_timeout_ms=run_timeout(req.run_timeout_ms),
        next_due_ms=0 if unscheduled else first_due(sched, now_ms, stored, compiled),
    )
    dependencies_into(req, job, ns)
    if req.HasField("retry"):
        job.retry.CopyFrom(retry_policy(req.retry, req.max_attempts))
        job.max_attempts = job.retry.max_attempts
    policies_into(req, job)
    job.on_success = namespaces.qualify(ns, job.on_success)
    job.on_failure = namespaces.qualify(ns, job.on_failure)
    return job


MAX_DEPENDS_ON = 32
DEFAULT_DEPENDENCY_TIMEOUT_MS = DAY_MS
MAX_DEPENDENCY_TIMEOUT_MS = 30 * DAY_MS


def dependencies_into(req: api_pb2.CreateJobRequest, job: types_pb2.Job, ns: str) -> None:
    """Validate depends_on, trigger_rule and dependency_timeout_ms into ``job`` (upstreams
    stored qualified with the namespace; the default timeout written out). Whether the
    upstreams exist and make no cycle is checked by apply, against the committed jobs."""
    seen: set[str] = set()
    if len(req.depends_on) > MAX_DEPENDS_ON:
        raise InvalidArgument(
            "depends_on", f"{len(req.depends_on)} jobs, over the limit of {MAX_DEPENDS_ON}"
        )
    for i, up in enumerate(req.depends_on):
        fld = f"depends_on[{i}]"
        name(up, fld)
        if up == req.name:
            raise InvalidArgument(fld, "a job cannot depend on itself")
        if up in seen:
            raise InvalidArgument(fld, f"{up!r} is listed twice")
        seen.add(up)
        job.depends_on.append(namespaces.qualify(ns, up))
    if req.trigger_rule not in policies.TRIGGER_RULE_NUMBERS:
        raise InvalidArgument(
            "trigger_rule",
            f"{req.trigger_rule} is not one of all_succeeded, all_done, any_succeeded",
        )
    timeout = _opt(req, "dependency_timeout_ms", DEFAULT_DEPENDENCY_TIMEOUT_MS)
    if not req.depends_on:
        if req.trigger_rule:
            raise InvalidArgument("trigger_rule", "applies to jobs with depends_on only")
        if req.HasField("dependency_timeout_ms"):
            raise InvalidArgument("dependency_timeout_ms", "applies to jobs with depends_on only")
        return
    if timeout < 0 or (timeout and not 1000 <= timeout <= MAX_DEPENDENCY_TIMEOUT_MS):
        raise InvalidArgument(
            "dependency_timeout_ms",
            f"{timeout} ms is out of range: 0 (wait forever) or 1 s .. 30 days",
        )
    job.trigger_rule = req.trigger_rule or types_pb2.TRIGGER_RULE_ALL_SUCCEEDED  # type: ignore[assignment]
    job.dependency_timeout_ms = timeout


def create_job(req: api_pb2.CreateJobRequest, now_ms: int) -> command_pb2.Command:
    job = job_definition(req, now_ms)
    return command_pb2.Command(
        now_ms=now_ms,
        request_id=request_id(req.request_id),
        create_job=command_pb2.CreateJobCmd(job=job),
    )


MAX_CREATE_JOBS = rules.MAX_CREATE_JOBS
MAX_CREATE_JOBS_BYTES = rules.MAX_CREATE_JOBS_BYTES
#: item errors named in one INVALID_ARGUMENT message (the rest are counted)
MAX_ITEM_ERRORS = 20


#: a bulk item's shape (:func:`_shape_of`) -> the job its first item validated to, and its
#: compiled schedule when the due time hashes the job's name (jitter), else None
_Shapes = dict[bytes, tuple[types_pb2.Job, Schedule | None]]


def _shape_of(item: api_pb2.CreateJobRequest) -> bytes | None:
    """What validates ``item`` apart from its name, request id and payload: the request with
    those three cleared, serialized. None for an item whose checks compare another field with
    its own name (a chain target or an upstream: "cannot chain to itself")."""
    if item.depends_on or item.on_success or item.on_failure:
        return None
    name_, rid, data = item.name, item.request_id, item.payload
    item.name = item.request_id = item.payload = ""
    shape = item.SerializeToString(deterministic=True)
    item.name, item.request_id, item.payload = name_, rid, data
    return shape


def _create_like(
    item: api_pb2.CreateJobRequest,
    now_ms: int,
    like: types_pb2.Job,
    compiled: Schedule | None,
) -> command_pb2.Command:
    """:func:`create_job` of ``item``, whose shape validated to ``like``: only what depends on
    the name, request id and payload is checked and set again, in the order create_job checks
    them (name, payload, request id), so the first error is the one it would raise."""
    ns = namespaces.namespace(item.namespace)
    stored = namespaces.qualify(ns, name(item.name))
    data = payload(item.payload)
    cmd = command_pb2.Command(now_ms=now_ms, request_id=request_id(item.request_id))
    job = cmd.create_job.job  # (built in place: a CreateJobCmd(job=...) would copy it again)
    job.CopyFrom(like)
    job.name = stored
    job.payload = data
    if compiled is not None:
        job.next_due_ms = first_due(job.schedule, now_ms, stored, compiled)
    return cmd


def _create_item(
    item: api_pb2.CreateJobRequest, now_ms: int, shapes: _Shapes | None
) -> command_pb2.Command:
    """:func:`create_job` of one bulk item; an item shaped like an earlier valid one reuses its
    validated job (bulk calls repeat one schedule and policy set across thousands of jobs)."""
    shape = _shape_of(item) if shapes is not None else None
    if shape is not None and shapes is not None:
        hit = shapes.get(shape)
        if hit is not None:
            return _create_like(item, now_ms, *hit)
    cmd = create_job(item, now_ms)
    if shape is not None and shapes is not None:
        job = cmd.create_job.job
        # (a shape has a schedule: only an item with upstreams may lack one)
        shapes[shape] = (job, compile_schedule(job.schedule) if job.schedule.jitter_ms else None)
    return cmd


def create_jobs(
    req: api_pb2.CreateJobsRequest, now_ms: int, *, reuse_shapes: bool = True
) -> list[tuple[api_pb2.CreateJobRequest, command_pb2.Command]]:
    """Every item of a bulk create as CreateJob validates it: (the item as created, with the
    call's namespace written into it, its command). All or nothing: one InvalidArgument naming
    each bad item by index and field (``jobs[3].schedule.cron: ...``, the first
    ``MAX_ITEM_ERRORS`` of them), including a name or request id that two items share.

    Items alike but for name, request id and payload are validated in full once
    (``reuse_shapes=False``: every item in full, the reference the tests compare with); the
    commands and errors are the same either way."""
    shapes: _Shapes | None = {} if reuse_shapes else None
    ns = namespaces.namespace(req.namespace)
    if len(req.jobs) > MAX_CREATE_JOBS:
        raise InvalidArgument(
            "jobs",
            f"{len(req.jobs)} jobs in one call, over the limit of {MAX_CREATE_JOBS}; "
            f"send them in calls of at most {MAX_CREATE_JOBS}",
        )
    size = req.ByteSize()
    if size > MAX_CREATE_JOBS_BYTES:
        raise InvalidArgument(
            "jobs",
            f"the request is {size} bytes, over the limit of {MAX_CREATE_JOBS_BYTES} bytes "
            "per call; send fewer jobs per call",
        )
    out: list[tuple[api_pb2.CreateJobRequest, command_pb2.Command]] = []
    bad: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    ids: dict[str, int] = {}
    for i, given in enumerate(req.jobs):
        at = f"jobs[{i}]."
        try:
            if given.namespace and namespaces.namespace(given.namespace, at + "namespace") != ns:
                raise InvalidArgument(
                    at + "namespace",
                    f"{given.namespace!r} is not the call's namespace {ns!r}: one call creates "
                    "jobs in one namespace",
                )
            item = api_pb2.CreateJobRequest()
            item.CopyFrom(given)
            item.namespace = "" if ns == namespaces.DEFAULT else ns
            try:
                cmd = _create_item(item, now_ms, shapes)
            except InvalidArgument as e:
                raise InvalidArgument(at + e.field, _problem(e)) from None
            for seen, value, fld, what in (
                (names, item.name, "name", "name"),
                (ids, item.request_id, "request_id", "request id"),
            ):
                if value in seen:
                    raise InvalidArgument(
                        at + fld, f"{value!r} is also the {what} of jobs[{seen[value]}]"
                    )
                if value:
                    seen[value] = i
        except InvalidArgument as e:
            bad.append((e.field, _problem(e)))
            continue
        out.append((item, cmd))
    if bad:
        shown = [f"{f}: {p}" for f, p in bad[:MAX_ITEM_ERRORS]]
        more = len(bad) - len(shown)
        if more:
            shown.append(f"and {more} more invalid job{'s' if more > 1 else ''}")
        text = "; ".join(shown)
        raise InvalidArgument(bad[0][0], text[len(bad[0][0]) + 2 :])
    return out


def _problem(e: InvalidArgument) -> str:
    """The problem of ``e`` without its field (its message is ``field: problem``)."""
    return e.message.removeprefix(e.field + ": ")


def update_job(req: api_pb2.UpdateJobRequest, now_ms: int) -> command_pb2.Command:
    job = job_definition(req.job, now_ms)
    return command_pb2.Command(
        now_ms=now_ms,
        request_id=request_id(req.job.request_id),
        update_job=command_pb2.UpdateJobCmd(job=job, expect_version=req.expect_version),
    )


def job_key(job_name: str, namespace: str, field: str = "name") -> str:
    """The stored name of job ``job_name`` of ``namespace`` (both checked)."""
    return namespaces.qualify(namespaces.namespace(namespace), name(job_name, field))


#: Hello.jobs: at most this many job names (a worker with more handlers registers a default).
MAX_WORKER_JOBS = 1000


def worker_jobs(values: Sequence[str], ns: str, field: str = "hello.jobs") -> frozenset[str] | None:
    """The stored names of the jobs a worker announces (bare names within ``ns``); None when it
    runs any job: an empty list, or one containing ``*`` (a default handler). Raises
    InvalidArgument naming ``field`` for a bad name or too many names."""
    if not values or "*" in values:
        return None
    if len(values) > MAX_WORKER_JOBS:
        raise InvalidArgument(
            field,
            f"{len(values)} job names, over the maximum of {MAX_WORKER_JOBS}; "
            "register a default ('*') handler instead",
        )
    return frozenset(namespaces.qualify(ns, name(v, field)) for v in values)


def backfill_range(req: api_pb2.BackfillRequest) -> tuple[int, int, int]:
    """(from_ms, to_ms, limit) of a backfill request."""
    name(req.name)
    namespaces.namespace(req.namespace)
    if req.from_ms <= 0:
        raise InvalidArgument("from_ms", "is required (the first instant of the range)")
    if req.to_ms < req.from_ms:
        raise InvalidArgument("to_ms", "must not be before from_ms")
    if req.to_ms - req.from_ms > MAX_BACKFILL_SPAN_MS:
        raise InvalidArgument("to_ms", "the range is longer than 10 years")
    limit = req.limit or DEFAULT_BACKFILL_CHUNK
    if limit > MAX_BACKFILL_CHUNK:
        raise InvalidArgument(
            "limit", f"{limit} is over the limit of {MAX_BACKFILL_CHUNK} runs per call"
        )
    if req.overlap:
        policies.overlap_from(req.overlap)
    return req.from_ms, req.to_ms, limit


def run_state(value: int, field: str = "state") -> int:
    if value not in types_pb2.RunState.values():
        raise InvalidArgument(field, f"{value} is not a run state")
    return value


def resume_due(job: types_pb2.Job, now_ms: int) -> int:
    """Where a resumed job picks up when missed slots are skipped: the next slot after now."""
    if job.schedule.kind == types_pb2.SCHEDULE_KIND_AT:
        return job.next_due_ms
    return first_due(job.schedule, now_ms, job.name)


TOKEN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_TOKEN_GRANTS = 32
MAX_TOKEN_TTL_S = 10 * 366 * 86_400


_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def node_id(value: str, field: str = "node_id") -> str:
    if not _NODE_ID.fullmatch(value):
        raise InvalidArgument(
            field, f"{value!r:.80} is not a node id ([A-Za-z0-9][A-Za-z0-9._-]{{0,62}})"
        )
    return value


def host_port(value: str, field: str) -> str:
    host, colon, port = value.rpartition(":")
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536) or any(
        c.isspace() or c in "/@" for c in value
    ):
        raise InvalidArgument(field, f"{value!r:.80} is not HOST:PORT")
    return value


def token_name(value: str, field: str = "name") -> str:
    if not TOKEN_NAME_RE.match(value):
        raise InvalidArgument(
            field,
            f"{value[:80]!r} is not a token name: 1-63 of a-z 0-9 . _ -, starting with a letter "
            "or digit",
        )
    return value


def create_token(req: api_pb2.CreateTokenRequest, now_ms: int) -> types_pb2.Token:
    """The token record to propose (without its secret hash and creator)."""
    name_ = token_name(req.name)
    if not req.grants:
        raise InvalidArgument(
            "grants", "at least one role is required, e.g. writer, default:reader, cluster-admin"
        )
    if len(req.grants) > MAX_TOKEN_GRANTS:
        raise InvalidArgument("grants", f"{len(req.grants)} grants; at most {MAX_TOKEN_GRANTS}")
    grants: list[str] = []
    for g in req.grants:
        try:
            grant = roles.parse_grant(g)
        except ValueError as e:
            raise InvalidArgument("grants", str(e)) from None
        if grant.namespace != roles.ANY_NAMESPACE:
            namespaces.namespace(grant.namespace, "grants")
        if str(grant) not in grants:
            grants.append(str(grant))
    queues = [queue(q, "queues") for q in dict.fromkeys(req.queues)]
    if queues and not any(roles.parse_grant(g).role is roles.Role.WORKER for g in grants):
        raise InvalidArgument("queues", "restricts worker grants; add a worker role or drop it")
    if not 0 <= req.ttl_s <= MAX_TOKEN_TTL_S:
        raise InvalidArgument("ttl_s", f"{req.ttl_s} is out of range 0 .. {MAX_TOKEN_TTL_S}")
    return types_pb2.Token(
        name=name_,
        grants=grants,
        queues=queues,
        expires_ms=now_ms + req.ttl_s * 1000 if req.ttl_s else 0,
    )


#: The latest instant schedd schedules or explains: 9999-01-01T00:00:00Z (schedule.py's _MAX_S).
MAX_TIME_MS = 253_370_764_800_000


def instant(value: int, field: str) -> int:
    """A time a request asks about, in epoch ms: after the epoch and before the year 9999."""
    if value <= 0:
        raise InvalidArgument(field, "is required (a time in epoch milliseconds)")
    if value > MAX_TIME_MS:
        raise InvalidArgument(field, f"{value} is after 9999-01-01T00:00:00Z")
    return value


def page_limit(value: int, field: str, *, default: int, maximum: int, hint: str = "") -> int:
    """A page size: 0 means ``default``; above ``maximum`` is refused naming ``field`` (and
    ``hint``, how to get more)."""
    if value == 0:
        return default
    if value > maximum:
        raise InvalidArgument(
            field, f"{value} is over the maximum of {maximum}" + (f"; {hint}" if hint else "")
        )
    return value
