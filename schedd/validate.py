"""Request validation: public API requests -> replicated commands. Pure (the caller passes
``now_ms``); every rejection is an InvalidArgument naming the field, before anything is
proposed, so bad input changes nothing."""

from __future__ import annotations

import json
import re

from schedd.errors import InvalidArgument
from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.schedule import parse_cron, parse_zone

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_ATTEMPTS_LIMIT = 100
DEFAULT_MAX_ATTEMPTS = 5
MAX_REQUEST_ID = 128
PAST_AT_TOLERANCE_MS = 60_000


def name(value: str, field: str = "name") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not NAME_RE.match(value):
        raise InvalidArgument(field, f"{value[:40]!r} is not a valid job name "
                                     "(1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)")
    return value


def queue(value: str, field: str = "queue") -> str:
    value = value or "default"
    if not QUEUE_RE.match(value):
        raise InvalidArgument(field, f"{value[:40]!r} is not a valid queue name (1-64 of A-Z a-z 0-9 . _ -)")
    return value


def request_id(value: str) -> str:
    if len(value) > MAX_REQUEST_ID:
        raise InvalidArgument("request_id", f"longer than {MAX_REQUEST_ID} characters")
    return value


def payload(value: str) -> str:
    if len(value.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument("payload", f"{len(value.encode())} bytes is over the limit of {MAX_PAYLOAD_BYTES}; "
                                         "keep big data elsewhere and pass a reference")
    if value:
        try:
            json.loads(value)
        except ValueError as e:
            raise InvalidArgument("payload", f"is not valid JSON ({e})") from None
    return value


def first_due(schedule: types_pb2.Schedule, now_ms: int) -> int:
    """The first due instant of a validated schedule, strictly after ``now_ms`` for cron."""
    if schedule.kind == types_pb2.SCHEDULE_KIND_CRON:
        return parse_cron(schedule.cron, schedule.timezone or "UTC").next_after(now_ms)
    return schedule.at_ms


def schedule(s: types_pb2.Schedule, now_ms: int) -> types_pb2.Schedule:
    out = types_pb2.Schedule()
    if s.kind == types_pb2.SCHEDULE_KIND_CRON:
        cron = parse_cron(s.cron, s.timezone or "UTC")
        out.kind, out.cron, out.timezone = s.kind, cron.expr, cron.tz
    elif s.kind == types_pb2.SCHEDULE_KIND_AT:
        if s.at_ms <= 0:
            raise InvalidArgument("schedule.at_ms", "is required for a one-shot job")
        if s.at_ms < now_ms - PAST_AT_TOLERANCE_MS:
            raise InvalidArgument("schedule.at_ms", "is in the past; pick a future time")
        if s.timezone:
            parse_zone(s.timezone)
        out.kind, out.at_ms, out.timezone = s.kind, s.at_ms, s.timezone or "UTC"
    else:
        raise InvalidArgument("schedule.kind", "is required: a cron expression or a one-shot time")
    return out


def create_job(req: api_pb2.CreateJobRequest, now_ms: int) -> command_pb2.Command:
    if req.max_attempts > MAX_ATTEMPTS_LIMIT:
        raise InvalidArgument("max_attempts", f"{req.max_attempts} is over the limit of {MAX_ATTEMPTS_LIMIT}")
    sched = schedule(req.schedule, now_ms)
    job = types_pb2.Job(name=name(req.name), schedule=sched, queue=queue(req.queue),
                        payload=payload(req.payload),
                        max_attempts=req.max_attempts or DEFAULT_MAX_ATTEMPTS,
                        next_due_ms=first_due(sched, now_ms))
    return command_pb2.Command(now_ms=now_ms, request_id=request_id(req.request_id),
                               create_job=command_pb2.CreateJobCmd(job=job))


def resume_due(job: types_pb2.Job, now_ms: int) -> int:
    """Where a resumed job picks up: the next slot after now (missed slots are not replayed)."""
    if job.schedule.kind == types_pb2.SCHEDULE_KIND_AT:
        return job.next_due_ms
    return first_due(job.schedule, now_ms)
