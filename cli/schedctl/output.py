"""How schedctl shows things: aligned plain-text tables for people, JSON for scripts.

Human output: times in RFC 3339 UTC, enums without their prefix ("active", "succeeded").
JSON output: protobuf field names (snake_case) with every field present, 64-bit integers as
numbers, enums by their full proto name ("RUN_STATE_SUCCEEDED"), and an RFC 3339 string next to
each ``*_ms`` timestamp (``scheduled_ms`` → ``scheduled_at``; ``null`` when the time is 0).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from schedd import models
from schedd.pb import types_pb2
from schedd.schedule import format_duration, format_ms

#: timestamp field -> the RFC 3339 field added next to it in JSON output
TIME_FIELDS: dict[str, str] = {
    "scheduled_ms": "scheduled_at",
    "next_due_ms": "next_due_at",
    "created_ms": "created_at",
    "started_ms": "started_at",
    "finished_ms": "finished_at",
    "not_before_ms": "not_before_at",
    "at_ms": "at",
}

_PARAMS = inspect.signature(json_format.MessageToDict).parameters
_DEFAULTS_KW: dict[str, bool] = (
    {"always_print_fields_with_no_presence": True}
    if "always_print_fields_with_no_presence" in _PARAMS
    else {"including_default_value_fields": True}  # protobuf < 5.26
)
_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


# ---- plain values --------------------------------------------------------------------------


def when(ms: int) -> str:
    """RFC 3339 UTC, or ``-`` for 0 (no time)."""
    return format_ms(ms) if ms else "-"


def enum_word(enum: EnumDescriptor, value: int) -> str:
    """``RUN_STATE_SUCCEEDED`` -> ``succeeded``; unknown numbers print as the number."""
    v = enum.values_by_number.get(value)
    if v is None:
        return str(value)
    first = enum.values[0].name if enum.values else ""
    prefix = first.removesuffix("UNSPECIFIED") if first.endswith("_UNSPECIFIED") else ""
    return v.name.removeprefix(prefix).lower()


def job_state(value: int) -> str:
    """Short name of a JobState value."""
    return enum_word(types_pb2.JobState.DESCRIPTOR, value)


def run_state(value: int) -> str:
    """Short name of a RunState value."""
    return enum_word(types_pb2.RunState.DESCRIPTOR, value)


def schedule_text(s: models.Schedule | types_pb2.Schedule) -> str:
    """``cron "0 3 * * *" Europe/Berlin`` or ``at 2026-01-02T03:04:05Z``."""
    if s.kind == types_pb2.SCHEDULE_KIND_CRON:
        return f'cron "{s.cron}" {s.timezone or "UTC"}'
    if s.kind == types_pb2.SCHEDULE_KIND_AT:
        return f"at {when(s.at_ms)}"
    return "-"


# ---- tables and blocks ---------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned with two spaces; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        padded = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def block(pairs: Sequence[tuple[str, object]]) -> str:
    """``key  value`` lines, keys aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in pairs)


JOB_HEADERS = ("NAME", "STATE", "SCHEDULE", "QUEUE", "NEXT DUE")
RUN_HEADERS = ("RUN ID", "JOB", "SCHEDULED AT", "STATE", "ATTEMPT", "FENCE", "WORKER")


def job_row(j: models.Job | types_pb2.Job) -> list[str]:
    """One row of the job table."""
    return [j.name, job_state(j.state), schedule_text(j.schedule), j.queue, when(j.next_due_ms)]


def run_row(r: models.Run | types_pb2.Run) -> list[object]:
    """One row of the run table."""
    return [
        r.run_id,
        r.job,
        when(r.scheduled_ms),
        run_state(r.state),
        r.attempt,
        r.fence or "-",
        r.worker_id or "-",
    ]


def retry_text(job: models.Job | types_pb2.Job) -> str:
    """``3 attempts, backoff 1s x2 up to 1m, not retried: exit 3`` (or the fixed default)."""
    j: types_pb2.Job = job.to_pb() if isinstance(job, models.Job) else job
    if not j.HasField("retry"):
        return "cluster default backoff"
    p = j.retry
    text = (f"backoff {format_duration(p.initial_backoff_ms)} x{p.multiplier:g} "
            f"up to {format_duration(p.max_backoff_ms)}")
    final = [f"exit {c}" for c in p.non_retryable_exit_codes]
    final += [repr(e) for e in p.non_retryable_errors]
    if final:
        text += f"; not retried: {', '.join(final)}"
    return text


def job_block(job: models.Job | types_pb2.Job) -> str:
    """Every field of a job, one per line."""
    j: types_pb2.Job = job.to_pb() if isinstance(job, models.Job) else job
    return block(
        [
            ("name", j.name),
            ("state", job_state(j.state)),
            ("schedule", schedule_text(j.schedule)),
            ("queue", j.queue),
            ("next due", when(j.next_due_ms)),
            ("max attempts", (j.retry.max_attempts if j.HasField("retry") else 0)
             or j.max_attempts or "default"),
            ("retry", retry_text(j)),
            ("run timeout", format_duration(j.run_timeout_ms) if j.run_timeout_ms else "none"),
            ("payload", j.payload or "-"),
            ("created", when(j.created_ms)),
            ("uid", j.uid),
        ]
    )


def run_block(r: models.Run | types_pb2.Run) -> str:
    """Every field of a run, one per line."""
    return block(
        [
            ("run id", r.run_id),
            ("job", r.job),
            ("state", run_state(r.state)),
            ("scheduled at", when(r.scheduled_ms)),
            ("attempt", r.attempt),
            ("fence", r.fence or "-"),
            ("worker", r.worker_id or "-"),
            ("queue", r.queue),
            ("manual", "yes" if r.manual else "no"),
            ("not before", when(r.not_before_ms)),
            ("started", when(r.started_ms)),
            ("finished", when(r.finished_ms)),
            ("error", r.error or "-"),
            ("exit code", r.exit_code or "-"),
        ]
    )


# ---- JSON ----------------------------------------------------------------------------------


def message_to_dict(msg: Message | models.Record) -> dict[str, Any]:
    """A protobuf message (or an SDK record, converted back to one) as the stable JSON object
    described in the module docstring."""
    if isinstance(msg, models.Record):
        msg = msg.to_pb()
    raw = json_format.MessageToDict(msg, preserving_proto_field_name=True, **_DEFAULTS_KW)
    return _normalize(raw, msg.DESCRIPTOR)


def _is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return field.label == FieldDescriptor.LABEL_REPEATED  # type: ignore[attr-defined]


def _normalize(obj: Mapping[str, Any], desc: Descriptor) -> dict[str, Any]:
    # Keys in field-number order, whatever MessageToDict did, so the layout never depends on
    # which fields happen to be set.
    order = {f.name: f.number for f in desc.fields}
    out: dict[str, Any] = {}
    for key in sorted(obj, key=lambda k: (order.get(k, 1 << 30), k)):
        value = obj[key]
        field = desc.fields_by_name.get(key)
        if field is not None:
            if field.message_type is not None and not field.message_type.GetOptions().map_entry:
                sub = field.message_type
                value = (
                    [_normalize(v, sub) for v in value]
                    if _is_repeated(field)
                    else _normalize(value, sub)
                )
            elif field.cpp_type in _INT64:
                value = [int(v) for v in value] if _is_repeated(field) else int(value)
        out[key] = value
        if key in TIME_FIELDS and isinstance(value, int):
            out[TIME_FIELDS[key]] = format_ms(value) if value else None
    return out


def dumps(doc: object) -> str:
    """One JSON document, indented, with a stable key order."""
    return json.dumps(doc, indent=2, ensure_ascii=False)
