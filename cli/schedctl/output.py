"""How schedctl shows things: aligned plain-text tables for people, JSON for scripts.

Human output: times in RFC 3339 UTC, enums without their prefix ("active", "succeeded").
JSON output: protobuf field names (snake_case) with every field present, 64-bit integers as
numbers, enums by their full proto name ("RUN_STATE_SUCCEEDED"), and an RFC 3339 string next to
each ``*_ms`` timestamp (``scheduled_ms`` → ``scheduled_at``; ``null`` when the time is 0).

The SDK may hand back protobuf messages or frozen records with the same attribute names and a
``to_pb()`` method. Everything here reads results by attribute only, and :func:`as_pb` turns a
record back into its message where protobuf semantics (field presence, JSON) are needed. All JSON
output goes through :func:`jsonable` (via :func:`dumps`), so both kinds print identically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from schedd.pb import types_pb2
from schedd.sched.schedule import format_duration, format_ms

if TYPE_CHECKING:
    # At run time descriptors are upb's (protobuf's C implementation); the stubs type both kinds.
    from google._upb._message import Descriptor as UpbDescriptor
    from google._upb._message import FieldDescriptor as UpbFieldDescriptor

#: timestamp field -> the RFC 3339 field added next to it in JSON output
TIME_FIELDS: dict[str, str] = {
    "scheduled_ms": "scheduled_at",
    "next_due_ms": "next_due_at",
    "created_ms": "created_at",
    "started_ms": "started_at",
    "finished_ms": "finished_at",
    "not_before_ms": "not_before_at",
    "at_ms": "at",
    "paused_ms": "paused_at",
    "updated_ms": "updated_at",
    "resumed_ms": "resumed_at",
    "skipped_until_ms": "skipped_until_at",
    "dispatch_deadline_ms": "dispatch_deadline_at",
    "start_ms": "start_at",
    "end_ms": "end_at",
    "anchor_ms": "anchor_at",
    "slot_ms": "slot_at",
    "previous_slot_ms": "previous_slot_at",
    "next_slot_ms": "next_slot_at",
    "next_from_ms": "next_from_at",
}

_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


# ---- plain values --------------------------------------------------------------------------


def as_pb(obj: Any) -> Any:
    """The protobuf message behind an SDK result: ``obj.to_pb()`` when it has one, else ``obj``."""
    to_pb = getattr(obj, "to_pb", None)
    return to_pb() if callable(to_pb) else obj


def when(ms: int) -> str:
    """RFC 3339 UTC, or ``-`` for 0 (no time)."""
    return format_ms(ms) if ms else "-"


def duration(ms: int, zero: str = "none") -> str:
    """``1h30m``, or ``zero`` for 0."""
    return format_duration(ms) if ms else zero


def enum_word(enum: EnumDescriptor, value: int) -> str:
    """``RUN_STATE_SUCCEEDED`` -> ``succeeded``; unknown numbers print as the number."""
    v = enum.values_by_number.get(int(value))
    if v is None:
        return str(int(value))
    first = enum.values[0].name if enum.values else ""
    prefix = first.removesuffix("UNSPECIFIED") if first.endswith("_UNSPECIFIED") else ""
    return v.name.removeprefix(prefix).lower()


def job_state(value: int) -> str:
    """Short name of a JobState value."""
    return enum_word(types_pb2.JobState.DESCRIPTOR, value)


def run_state(value: int) -> str:
    """Short name of a RunState value."""
    return enum_word(types_pb2.RunState.DESCRIPTOR, value)


def skip_reason(value: int) -> str:
    """Short name of a SkipReason value (``""`` for none)."""
    return "" if not value else enum_word(types_pb2.SkipReason.DESCRIPTOR, value)


def origin(value: int) -> str:
    """Short name of a RunOrigin value (``""`` for runs recorded before origins existed)."""
    return "" if not value else enum_word(types_pb2.RunOrigin.DESCRIPTOR, value)


def misfire(value: int) -> str:
    """Short name of a MisfirePolicy value; 0 (a job from before policies) reads ``default``."""
    return enum_word(types_pb2.MisfirePolicy.DESCRIPTOR, value) if value else "default"


def overlap(value: int) -> str:
    """Short name of an OverlapPolicy value; 0 is the default, allow."""
    return enum_word(types_pb2.OverlapPolicy.DESCRIPTOR, value or types_pb2.OVERLAP_POLICY_ALLOW)


def schedule_text(s: Any, deps_only: bool = False) -> str:
    """``cron "0 3 * * *" Europe/Berlin``, ``every 1m30s`` or ``at 2026-01-02T03:04:05Z``."""
    if s.kind == types_pb2.SCHEDULE_KIND_CRON:
        return f'cron "{s.cron}" {s.timezone or "UTC"}'
    if s.kind == types_pb2.SCHEDULE_KIND_INTERVAL:
        return f"every {format_duration(s.every_ms)}"
    if s.kind == types_pb2.SCHEDULE_KIND_AT:
        return f"at {when(s.at_ms)}"
    return "none (runs when its upstreams are satisfied)" if deps_only else "-"


def schedule_details(s: Any) -> str:
    """Bounds, jitter and DST rules of a schedule, or ``-`` when it has none of them."""
    parts = []
    if s.start_ms:
        parts.append(f"from {when(s.start_ms)}")
    if s.end_ms:
        parts.append(f"until {when(s.end_ms)}")
    if s.jitter_ms:
        parts.append(f"jitter {format_duration(s.jitter_ms)}")
    if s.kind == types_pb2.SCHEDULE_KIND_INTERVAL and s.anchor_ms and s.anchor_ms != s.start_ms:
        parts.append(f"anchored at {when(s.anchor_ms)}")
    if s.kind == types_pb2.SCHEDULE_KIND_CRON:
        parts.append(
            f"DST gap {enum_word(types_pb2.DstGap.DESCRIPTOR, s.dst_gap or 1)}, "
            f"repeat {enum_word(types_pb2.DstRepeat.DESCRIPTOR, s.dst_repeat or 1)}"
        )
    return "; ".join(parts) or "-"


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
RUN_HEADERS = (
    "RUN ID",
    "JOB",
    "SCHEDULED AT",
    "STATE",
    "ORIGIN",
    "ATTEMPT",
    "FENCE",
    "WORKER",
    "REASON",
)


def job_row(job: Any) -> list[str]:
    """One row of the job table."""
    j = as_pb(job)
    return [j.name, job_state(j.state), schedule_text(j.schedule), j.queue, when(j.next_due_ms)]


def skip_text(r: Any) -> str:
    """``misfire``, or ``misfire x12 until 2026-...`` for a record standing for a range."""
    word = skip_reason(r.skip_reason)
    if not word:
        return "-"
    if r.skipped_until_ms and r.skipped_until_ms != r.scheduled_ms:
        count = f" x{r.skipped_count}" if r.skipped_count else ""
        return f"{word}{count} until {when(r.skipped_until_ms)}"
    return word


def run_row(run: Any) -> list[object]:
    """One row of the run table (REASON: why a skip record was not fired)."""
    r = as_pb(run)
    return [
        r.run_id,
        r.job,
        when(r.scheduled_ms),
        run_state(r.state),
        origin(r.origin) or ("trigger" if r.manual else "-"),
        r.attempt,
        r.fence or "-",
        r.worker_id or "-",
        f"for {','.join(r.waiting_for)}"
        if r.state == types_pb2.RUN_STATE_WAITING and r.waiting_for
        else skip_text(r),
    ]


def runs_table(runs: Sequence[Any], empty: str = "no runs") -> str:
    """The run table, or ``empty``."""
    return table(RUN_HEADERS, [run_row(r) for r in runs]) if runs else empty


def retry_text(job: Any) -> str:
    """``backoff 1s x2 up to 1m40s; not retried: exit 3`` (or the fixed default)."""
    j = as_pb(job)
    if not j.HasField("retry"):
        return "cluster default backoff"
    p = j.retry
    text = (
        f"backoff {format_duration(p.initial_backoff_ms)} x{p.multiplier:g} "
        f"up to {format_duration(p.max_backoff_ms)}"
    )
    final = [f"exit {c}" for c in p.non_retryable_exit_codes]
    final += [repr(e) for e in p.non_retryable_errors]
    if final:
        text += f"; not retried: {', '.join(final)}"
    return text


def _misfire_text(j: Any) -> str:
    if not j.misfire:
        return "default (created before misfire policies)"
    text = f"{misfire(j.misfire)}, grace {duration(j.misfire_grace_ms, '0s')}"
    text += f", catch-up window {duration(j.catchup_window_ms)}"
    if j.misfire == types_pb2.MISFIRE_POLICY_FIRE_ALL:
        text += f", at most {j.max_catchup} per catch-up"
    return text


def _overlap_text(j: Any) -> str:
    limit = f"at most {j.max_concurrent} at once" if j.max_concurrent else "no limit"
    text = f"{overlap(j.overlap)}, {limit}"
    if j.buffered_run:
        text += f", buffered run {j.buffered_run}"
    return text


def _retention_text(j: Any) -> str:
    parts = []
    if j.keep_runs:
        parts.append(f"newest {j.keep_runs} finished runs")
    if j.keep_for_ms:
        parts.append(f"finished runs for {format_duration(j.keep_for_ms)}")
    return ", ".join(parts) or "keep all runs"


def _state_since(j: Any) -> str:
    """``paused since T`` while paused; ``active since T`` after a resume (the resume time,
    not the pause's: paused_ms stays set after a resume, as the start of the last pause)."""
    if j.state == types_pb2.JOB_STATE_PAUSED and j.paused_ms:
        return f"{job_state(j.state)} since {when(j.paused_ms)}"
    if j.state == types_pb2.JOB_STATE_ACTIVE and j.resumed_ms:
        paused = f" (paused {when(j.paused_ms)} .. {when(j.resumed_ms)})" if j.paused_ms else ""
        return f"{job_state(j.state)} since {when(j.resumed_ms)}{paused}"
    return job_state(j.state)


def job_block(job: Any) -> str:
    """Every field of a job, one per line, policies included."""
    j = as_pb(job)
    tags = ", ".join(f"{k}={v}" for k, v in sorted(j.tags.items())) or "-"
    max_attempts = (j.retry.max_attempts if j.HasField("retry") else 0) or j.max_attempts
    return block(
        [
            ("name", j.name),
            ("state", _state_since(j)),
            ("schedule", schedule_text(j.schedule, bool(j.depends_on))),
            ("schedule options", schedule_details(j.schedule)),
            ("queue", j.queue),
            ("next due", when(j.next_due_ms)),
            ("misfire", _misfire_text(j)),
            ("overlap", _overlap_text(j)),
            ("max attempts", max_attempts or "default"),
            ("retry", retry_text(j)),
            ("run timeout", duration(j.run_timeout_ms)),
            ("dispatch timeout", duration(j.dispatch_timeout_ms)),
            ("priority", j.priority),
            ("tags", tags),
            ("on success", j.on_success or "-"),
            ("on failure", j.on_failure or "-"),
            ("depends on", ", ".join(j.depends_on) or "-"),
            ("trigger rule", _rule_text(j) if j.depends_on else "-"),
            ("dependents", ", ".join(j.dependents) or "-"),
            (
                "max runs",
                f"{j.fired_runs} fired of {j.max_runs}"
                if j.max_runs
                else f"no limit ({j.fired_runs} fired)",
            ),
            ("retention", _retention_text(j)),
            ("payload", j.payload or "-"),
            ("version", j.version),
            ("created", when(j.created_ms)),
            ("updated", when(j.updated_ms)),
            ("uid", j.uid),
        ]
    )


def _rule_text(j: Any) -> str:
    timeout = (
        f"dependency timeout {duration(j.dependency_timeout_ms)}"
        if j.dependency_timeout_ms
        else "no dependency timeout"
    )
    return f"{trigger_rule(j.trigger_rule)}, {timeout}"


def trigger_rule(value: int) -> str:
    """Short name of a TriggerRule value (0 reads ``all_succeeded``, the default)."""
    return enum_word(
        types_pb2.TriggerRule.DESCRIPTOR, value or types_pb2.TRIGGER_RULE_ALL_SUCCEEDED
    )


def run_block(run: Any) -> str:
    """Every field of a run, one per line."""
    r = as_pb(run)
    pairs: list[tuple[str, object]] = [
        ("run id", r.run_id),
        ("job", r.job),
        ("state", run_state(r.state)),
        ("scheduled at", when(r.scheduled_ms)),
        ("origin", origin(r.origin) or ("trigger" if r.manual else "-")),
    ]
    if r.skip_reason:
        pairs.append(("skip reason", skip_text(r)))
    if r.skipped_count:
        pairs.append(("skipped slots", r.skipped_count))
    pairs += [
        ("attempt", r.attempt),
        ("fence", r.fence or "-"),
        ("worker", r.worker_id or "-"),
        ("queue", r.queue),
        ("priority", r.priority),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(r.tags.items())) or "-"),
        ("not before", when(r.not_before_ms)),
        ("dispatch deadline", when(r.dispatch_deadline_ms)),
        ("started", when(r.started_ms)),
        ("finished", when(r.finished_ms)),
        ("progress", r.progress or "-"),
        ("error", r.error or "-"),
        ("exit code", r.exit_code or "-"),
        ("caused by", r.caused_by or "-"),
        ("note", r.note or "-"),
    ]
    if r.upstream_runs or r.waiting_for:
        pairs += [
            ("waiting for", ", ".join(r.waiting_for) or "-"),
            ("upstream runs", ", ".join(r.upstream_runs) or "-"),
            ("dependency deadline", when(r.dependency_deadline_ms)),
        ]
    return block(pairs)


# ---- JSON ----------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """The JSON-ready form of ``obj``: the one path every JSON document takes.

    A protobuf message, or an SDK record with ``to_pb()``, becomes the stable object described in
    the module docstring; lists, tuples and dicts are converted element by element; other values
    pass through (they must already be JSON-serializable).
    """
    msg = as_pb(obj)
    if isinstance(msg, Message):
        return message_to_dict(msg)
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def message_to_dict(msg: Message) -> dict[str, Any]:
    """A protobuf message as the stable JSON object described in the module docstring.

    Messages made only of fields this module can convert directly (integers, strings, bools,
    enums, nested messages, string maps) take a direct path, about ten times faster than
    protobuf's ``MessageToDict`` (a 100,000-job ``job list --json`` spent most of its time
    there); any other message takes :func:`reference_message_to_dict`. Both give the same
    object: tests/unit/test_cli_json.py checks it on generated messages."""
    desc = msg.DESCRIPTOR
    plan = _PLANS.get(desc, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _PLANS[desc] = _plan(desc)
    if plan is None:
        return reference_message_to_dict(msg)
    out: dict[str, Any] = {}
    for name, kind, extra, time_key in plan:
        value = getattr(msg, name)
        if kind == _SCALAR:
            out[name] = value
            if time_key:
                out[time_key] = format_ms(value) if value else None
        elif kind == _MESSAGE:
            out[name] = message_to_dict(value) if msg.HasField(name) else None
        elif kind == _MESSAGES:
            out[name] = [message_to_dict(v) for v in value]
        elif kind == _ENUM:
            e = extra.get(value)
            out[name] = e.name if e is not None else value
        elif kind == _ENUMS:
            out[name] = [(e.name if (e := extra.get(v)) is not None else v) for v in value]
        elif kind == _MAP:
            out[name] = dict(value)
        else:  # _REPEATED scalars
            out[name] = list(value)
    return out


def reference_message_to_dict(msg: Message) -> dict[str, Any]:
    """:func:`message_to_dict` through protobuf's ``MessageToDict``: any message, slower."""
    raw = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _normalize(raw, msg.DESCRIPTOR)


_SCALAR, _MESSAGE, _MESSAGES, _ENUM, _ENUMS, _MAP, _REPEATED = range(7)
_UNPLANNED: Any = object()
#: descriptor -> (field name, kind, enum values by number, time key) in field-number order;
#: None: the message has a field the direct path does not convert (floats, bytes, other maps)
_PLANS: dict[Any, list[tuple[str, int, Any, str | None]] | None] = {}
_INTEGERS = (
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT64,
)
_DIRECT = (*_INTEGERS, FieldDescriptor.CPPTYPE_BOOL, FieldDescriptor.CPPTYPE_STRING)


def _plan(desc: Any) -> list[tuple[str, int, Any, str | None]] | None:
    plan: list[tuple[str, int, Any, str | None]] = []
    for f in sorted(desc.fields, key=lambda f: f.number):
        repeated = f.is_repeated
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, value = (
                f.message_type.fields_by_name["key"],
                f.message_type.fields_by_name["value"],
            )
            if FieldDescriptor.CPPTYPE_STRING != key.cpp_type or value.cpp_type != key.cpp_type:
                return None
            plan.append((f.name, _MAP, None, None))
        elif f.message_type is not None:
            plan.append((f.name, _MESSAGES if repeated else _MESSAGE, None, None))
        elif f.enum_type is not None:
            plan.append((f.name, _ENUMS if repeated else _ENUM, f.enum_type.values_by_number, None))
        elif f.cpp_type not in _DIRECT or f.type == FieldDescriptor.TYPE_BYTES:
            return None
        elif repeated:
            plan.append((f.name, _REPEATED, None, None))
        else:
            timed = f.cpp_type in _INTEGERS and f.name in TIME_FIELDS
            plan.append((f.name, _SCALAR, None, TIME_FIELDS[f.name] if timed else None))
    return plan


def _default(field: FieldDescriptor | UpbFieldDescriptor) -> Any:
    """The JSON value of a field that MessageToDict left out (an unset message or optional)."""
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            return {}
        return [] if field.is_repeated else None
    if field.is_repeated:
        return []
    if field.enum_type is not None:
        return field.enum_type.values_by_number[0].name
    if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return ""
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return False
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return 0.0
    return 0


def _normalize(obj: Mapping[str, Any], desc: Descriptor | UpbDescriptor) -> dict[str, Any]:
    # Keys in field-number order, whatever MessageToDict did, and every field present (an unset
    # message is null), so the layout never depends on which fields happen to be set.
    obj = {**{f.name: _default(f) for f in desc.fields if f.name not in obj}, **obj}
    order = {f.name: f.number for f in desc.fields}
    out: dict[str, Any] = {}
    for key in sorted(obj, key=lambda k: (order.get(k, 1 << 30), k)):
        value = obj[key]
        field = desc.fields_by_name.get(key)
        if field is not None and value is not None:
            if field.message_type is not None and not field.message_type.GetOptions().map_entry:
                sub = field.message_type
                value = (
                    [_normalize(v, sub) for v in value]
                    if field.is_repeated
                    else _normalize(value, sub)
                )
            elif field.cpp_type in _INT64:
                value = [int(v) for v in value] if field.is_repeated else int(value)
        out[key] = value
        if key in TIME_FIELDS and isinstance(value, int):
            out[TIME_FIELDS[key]] = format_ms(value) if value else None
    return out


def stream_json_list(pages: Iterable[Sequence[Any]], echo: Callable[..., Any]) -> None:
    """Write the items of ``pages`` as one JSON array, page by page, exactly as
    ``echo(dumps(all_items))`` would (``echo`` is ``click.echo``: ``nl=False`` continues a line)."""
    opened = False
    for page in pages:
        if not page:
            continue
        body = dumps(list(page))[2:-2]  # '[\n' ... '\n]': the items, indented as in the array
        echo(("[\n" if not opened else ",\n") + body, nl=False)
        opened = True
    echo("\n]" if opened else "[]")


def dumps(doc: object, *, compact: bool = False) -> str:
    """One JSON document (through :func:`jsonable`), indented, or on one line with ``compact``."""
    if compact:
        return json.dumps(jsonable(doc), ensure_ascii=False, separators=(",", ":"))
    return json.dumps(jsonable(doc), indent=2, ensure_ascii=False)
