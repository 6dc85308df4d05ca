"""Job definitions as schedctl handles them: one flat mapping ("spec") per job.

A spec uses the keyword names of :func:`schedd.client.job_request` (``cron``, ``tz``,
``every_ms``, ``at_ms``, ``jitter_ms``, ``start_ms``, ``end_ms``, ``anchor_ms``, ``dst_gap``,
``dst_repeat``, ``queue``, ``payload``, ``max_attempts``, ``retry``, ``run_timeout_ms``,
``misfire``, ...), with canonical values: integers for milliseconds, words for enums
(``"fire_once"``, ``"shift"``), a dict for ``retry`` and ``tags``. So a spec is at once

* what ``job update`` merges its flags into, and what ``job apply`` compares a file with
  (:func:`job_to_spec` reads the server's stored job; :func:`diff` compares);
* the keyword arguments of ``Client.create_job`` / ``update_job`` (:func:`to_kwargs`).

File entries (``job apply``) use the same keys plus friendly ones (``every = "90s"``,
``at = "2030-01-01T00:00:00Z"``, ``timezone``, ``misfire_grace = "2m"``, a ``schedule`` table
with the proto's field names); :func:`from_entry` turns one into a spec with every value checked
and the schedule normalised the way the server stores it. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from schedctl.output import as_pb
from schedd import errors
from schedd.client import retry_policy
from schedd.pb import types_pb2
from schedd.sched import policies
from schedd.sched.schedule import (
    collapse_blanks,
    format_duration,
    format_ms,
    parse_cron,
    parse_duration,
    parse_rfc3339,
)
from schedd.server import validate

Spec = dict[str, Any]

KIND_KEYS = ("cron", "every_ms", "at_ms")
SCHEDULE_KEYS = (
    "cron",
    "tz",
    "every_ms",
    "at_ms",
    "jitter_ms",
    "start_ms",
    "end_ms",
    "anchor_ms",
    "dst_gap",
    "dst_repeat",
)
CRON_ONLY = ("tz", "dst_gap", "dst_repeat")

#: spec key -> value kind (how it is parsed from a file and shown in a diff)
FIELDS: dict[str, str] = {
    "cron": "str",
    "tz": "str",
    "every_ms": "duration",
    "at_ms": "time",
    "jitter_ms": "duration",
    "start_ms": "time",
    "end_ms": "time",
    "anchor_ms": "time",
    "dst_gap": "word",
    "dst_repeat": "word",
    "queue": "str",
    "payload": "payload",
    "max_attempts": "int",
    "retry": "retry",
    "run_timeout_ms": "duration",
    "misfire": "word",
    "misfire_grace_ms": "duration",
    "catchup_window_ms": "duration",
    "max_catchup": "int",
    "overlap": "word",
    "max_concurrent": "int",
    "dispatch_timeout_ms": "duration",
    "on_success": "str",
    "on_failure": "str",
    "priority": "int",
    "tags": "tags",
    "keep_runs": "int",
    "keep_for_ms": "duration",
    "max_runs": "int",
    "depends_on": "strs",
    "trigger_rule": "word",
    "dependency_timeout_ms": "duration",
    "allow_past": "bool",
}
WORDS: dict[str, tuple[str, ...]] = {
    "misfire": tuple(policies.MISFIRE_NAMES),
    "overlap": tuple(policies.OVERLAP_NAMES),
    "dst_gap": ("shift", "skip"),
    "dst_repeat": ("once", "twice"),
    "trigger_rule": tuple(policies.TRIGGER_RULE_NAMES),
}
RETRY_FIELDS: dict[str, str] = {
    "max_attempts": "int",
    "initial_backoff_ms": "duration",
    "multiplier": "float",
    "max_backoff_ms": "duration",
    "non_retryable_exit_codes": "ints",
    "non_retryable_errors": "strs",
}
#: accepted in a file or a create, but not part of the stored job: never compared
NOT_STORED = ("allow_past",)

#: friendly file keys -> spec keys
ALIASES: dict[str, str] = {
    "timezone": "tz",
    "every": "every_ms",
    "at": "at_ms",
    "jitter": "jitter_ms",
    "start": "start_ms",
    "end": "end_ms",
    "anchor": "anchor_ms",
    "run_timeout": "run_timeout_ms",
    "misfire_grace": "misfire_grace_ms",
    "catchup_window": "catchup_window_ms",
    "dispatch_timeout": "dispatch_timeout_ms",
    "keep_for": "keep_for_ms",
    "initial_backoff": "initial_backoff_ms",
    "backoff": "initial_backoff_ms",
    "max_backoff": "max_backoff_ms",
    "after": "depends_on",
    "dependency_timeout": "dependency_timeout_ms",
}

#: what the server writes out for a setting left unset (docs/policies.md); export leaves these out
DEFAULTS: dict[str, Any] = {
    "tz": "UTC",
    "jitter_ms": 0,
    "start_ms": 0,
    "end_ms": 0,
    "dst_gap": "shift",
    "dst_repeat": "once",
    "queue": "default",
    "payload": "",
    "max_attempts": 5,
    "run_timeout_ms": 0,
    "misfire": "fire_once",
    "misfire_grace_ms": policies.DEFAULT_MISFIRE_GRACE_MS,
    "catchup_window_ms": policies.DEFAULT_CATCHUP_WINDOW_MS,
    "max_catchup": policies.DEFAULT_MAX_CATCHUP,
    "overlap": "allow",
    "dispatch_timeout_ms": 0,
    "on_success": "",
    "on_failure": "",
    "priority": 0,
    "tags": {},
    "keep_runs": 0,
    "keep_for_ms": 0,
    "max_runs": 0,
    "depends_on": [],
    "trigger_rule": "all_succeeded",
    "dependency_timeout_ms": 86_400_000,
}
#: keys that only apply with depends_on (the server refuses them without)
DEPENDENCY_ONLY = ("trigger_rule", "dependency_timeout_ms")

_GAP_WORD = {types_pb2.DST_GAP_SHIFT: "shift", types_pb2.DST_GAP_SKIP: "skip"}
_REPEAT_WORD = {types_pb2.DST_REPEAT_ONCE: "once", types_pb2.DST_REPEAT_TWICE: "twice"}


# ---- the stored job as a spec ----------------------------------------------------------------


def retry_to_dict(p: Any) -> dict[str, Any]:
    """A stored RetryPolicy as a canonical dict."""
    return {
        "max_attempts": int(p.max_attempts),
        "initial_backoff_ms": int(p.initial_backoff_ms),
        "multiplier": float(p.multiplier),
        "max_backoff_ms": int(p.max_backoff_ms),
        "non_retryable_exit_codes": sorted(int(c) for c in p.non_retryable_exit_codes),
        "non_retryable_errors": list(p.non_retryable_errors),
    }


def job_to_spec(job: Any) -> Spec:
    """The definition of a stored job (what a create with these keywords would store).

    Policies of a job created before policies existed (enum 0) are left out, so an update sends
    no value for them and the server's defaults apply.
    """
    j = as_pb(job)
    s = j.schedule
    spec: Spec = {}
    if s.kind == types_pb2.SCHEDULE_KIND_CRON:
        spec.update(
            cron=s.cron,
            tz=s.timezone or "UTC",
            dst_gap=_GAP_WORD.get(s.dst_gap, "shift"),
            dst_repeat=_REPEAT_WORD.get(s.dst_repeat, "once"),
        )
    elif s.kind == types_pb2.SCHEDULE_KIND_INTERVAL:
        spec.update(
            every_ms=int(s.every_ms),
            anchor_ms=int(s.anchor_ms) if s.HasField("anchor_ms") else int(s.start_ms),
        )
    elif s.kind == types_pb2.SCHEDULE_KIND_AT:
        spec["at_ms"] = int(s.at_ms)
    spec.update(jitter_ms=int(s.jitter_ms), start_ms=int(s.start_ms), end_ms=int(s.end_ms))
    spec.update(queue=j.queue or "default", payload=j.payload, max_attempts=int(j.max_attempts))
    if j.HasField("retry"):
        spec["retry"] = retry_to_dict(j.retry)
    spec["run_timeout_ms"] = int(j.run_timeout_ms)
    if j.misfire:
        spec.update(
            misfire=policies.misfire_name(j.misfire),
            misfire_grace_ms=int(j.misfire_grace_ms),
            catchup_window_ms=int(j.catchup_window_ms),
            max_catchup=int(j.max_catchup),
        )
    if j.overlap:
        spec.update(overlap=policies.overlap_name(j.overlap), max_concurrent=int(j.max_concurrent))
    spec.update(
        dispatch_timeout_ms=int(j.dispatch_timeout_ms),
        on_success=j.on_success,
        on_failure=j.on_failure,
        priority=int(j.priority),
        tags=dict(j.tags),
        keep_runs=int(j.keep_runs),
        keep_for_ms=int(j.keep_for_ms),
        max_runs=int(j.max_runs),
    )
    if j.depends_on:
        spec.update(
            depends_on=list(j.depends_on),
            trigger_rule=policies.trigger_rule_name(j.trigger_rule),
            dependency_timeout_ms=int(j.dependency_timeout_ms),
        )
    return spec


def _follow_depends_on(out: Spec) -> None:
    """Without upstreams, the settings that apply only to them go (the server refuses them)."""
    if not out.get("depends_on"):
        out.pop("depends_on", None)
        for k in DEPENDENCY_ONLY:
            out.pop(k, None)


def to_kwargs(spec: Spec) -> dict[str, Any]:
    """Keyword arguments of ``Client.create_job`` / ``update_job`` for a spec."""
    kw = {k: v for k, v in spec.items() if v is not None}
    if "retry" in kw:
        kw["retry"] = dict(kw["retry"])
    if "tags" in kw:
        kw["tags"] = dict(kw["tags"])
    return kw


# ---- merging --------------------------------------------------------------------------------


def _drop_other_kinds(out: Spec, overlay: Mapping[str, Any]) -> None:
    if not any(k in overlay for k in KIND_KEYS):
        return
    for k in KIND_KEYS:
        out.pop(k, None)
    if "cron" not in overlay:
        for k in CRON_ONLY:
            out.pop(k, None)
    if "every_ms" not in overlay:
        out.pop("anchor_ms", None)


def _default_max_concurrent(overlap: str) -> int:
    return 0 if overlap == "allow" else 1


def _follow_overlap(out: Spec, base: Spec, overlay: Mapping[str, Any]) -> None:
    """A new overlap policy without a max_concurrent: a limit that was the old policy's default
    goes, so the new policy's default applies (0 = unlimited is refused with forbid)."""
    if (
        "overlap" in overlay
        and "max_concurrent" not in overlay
        and "max_concurrent" in base
        and base["max_concurrent"] == _default_max_concurrent(base.get("overlap", "allow"))
    ):
        out.pop("max_concurrent", None)


def _follow_max_attempts(out: Spec, overlay: Mapping[str, Any]) -> None:
    """A new max_attempts is also the retry policy's (the server refuses the two disagreeing)."""
    if "max_attempts" in overlay and "retry" in out:
        out["retry"] = {**out["retry"], "max_attempts": overlay["max_attempts"]}


def merge_flags(base: Spec, overlay: Mapping[str, Any]) -> Spec:
    """``base`` with the given flags applied (``job update``).

    A new kind of schedule (``cron``/``every_ms``/``at_ms``) replaces the old one and drops the
    settings that only applied to it (``tz`` and the DST rules of a cron, an interval's anchor).
    ``retry`` keys are merged into the current policy; ``tags`` are merged too, a ``None`` value
    removes the tag. ``max_attempts`` also sets ``retry.max_attempts`` when there is a policy (the
    server refuses the two when they disagree). A new ``overlap`` drops a ``max_concurrent`` that
    was the old policy's default.
    """
    out = dict(base)
    _drop_other_kinds(out, overlay)
    for k, v in overlay.items():
        if k == "retry":
            out["retry"] = {**out.get("retry", {}), **v}
        elif k == "tags":
            tags = dict(out.get("tags", {}))
            for tk, tv in v.items():
                if tv is None:
                    tags.pop(tk, None)
                else:
                    tags[tk] = tv
            out["tags"] = tags
        else:
            out[k] = v
    _follow_max_attempts(out, overlay)
    _follow_overlap(out, base, overlay)
    _follow_depends_on(out)
    return out


def merge_file(base: Spec, entry: Spec) -> Spec:
    """``base`` with a file's spec applied (``job apply``): the file's schedule replaces the whole
    schedule, each other key it sets replaces that key (``retry`` and ``tags`` as a whole), and
    what it leaves out keeps the job's current value."""
    out = {k: v for k, v in base.items() if k not in SCHEDULE_KEYS}
    out.update(entry)
    if "retry" not in entry:
        _follow_max_attempts(out, entry)
    _follow_overlap(out, base, entry)
    _follow_depends_on(out)
    return out


# ---- comparison -----------------------------------------------------------------------------


def _payload_value(text: Any) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "payload":
        return bool(_payload_value(a) == _payload_value(b))
    if FIELDS.get(key) == "float" or key == "retry.multiplier":
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9
    return bool(a == b)


def diff(wanted: Spec, current: Spec | None) -> list[tuple[str, Any, Any]]:
    """``(field, old, new)`` for each key ``wanted`` sets whose value differs from ``current``
    (``None``: the job does not exist, so every key that is not a default is new). ``retry``
    differences are listed per sub-field (``retry.max_backoff_ms``). Keys that are not stored
    (``allow_past``) never differ.
    """
    cur = current or {}
    out: list[tuple[str, Any, Any]] = []
    for key, new in wanted.items():
        if key in NOT_STORED or new is None:
            continue
        old = cur.get(key)
        if current is None and (
            new == DEFAULTS.get(key) or (key == "anchor_ms" and new == wanted.get("start_ms", 0))
        ):
            continue  # a new job: the defaults filled in are not worth listing
        if key == "retry" and isinstance(old, dict):
            for rk in RETRY_FIELDS:
                if not _same(f"retry.{rk}", old.get(rk), new.get(rk)):
                    out.append((f"retry.{rk}", old.get(rk), new.get(rk)))
        elif current is None or not _same(key, old, new):
            out.append((key, old, new))
    return out


def show(key: str, v: Any) -> str:
    """A value of ``key`` for people: durations as ``1m30s``, times in RFC 3339, ``-`` for none."""
    if v is None:
        return "-"
    kind = (
        RETRY_FIELDS.get(key.removeprefix("retry."), "")
        if key.startswith("retry.")
        else FIELDS.get(key, "")
    )
    if kind == "duration":
        return format_duration(int(v))
    if kind == "time":
        return format_ms(int(v)) if v else "none"
    if kind == "retry" and isinstance(v, dict):
        return ", ".join(f"{k}={show('retry.' + k, x)}" for k, x in v.items() if x != [])
    if kind == "float":
        return f"{float(v):g}"
    if kind == "tags" and isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in sorted(v.items())) or "none"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return json.dumps(v) if isinstance(v, bool | list) else str(v)


# ---- file entries -----------------------------------------------------------------------------


def _bad(where: str, key: str, problem: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{where}: {key}", problem)


def _parse(kind: str, key: str, v: Any, where: str) -> Any:
    """One file value of ``kind`` in canonical form."""
    if kind == "str":
        if not isinstance(v, str):
            raise _bad(where, key, f"must be a string, not {v!r}")
        return v
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _bad(where, key, f"must be a whole number >= 0, not {v!r}")
        return v
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _bad(where, key, f"must be a number, not {v!r}")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise _bad(where, key, f"must be true or false, not {v!r}")
        return v
    if kind == "duration":
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if isinstance(v, str):
            if v.strip() == "0":
                return 0
            return parse_duration(v, f"{where}: {key}")
        raise _bad(where, key, f'must be a duration such as "90s" or milliseconds, not {v!r}')
    if kind == "time":
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if isinstance(v, datetime):
            if v.tzinfo is None:
                raise _bad(where, key, f"{v} has no UTC offset; add Z or +HH:MM")
            return int(round(v.timestamp() * 1000))
        if isinstance(v, date):
            raise _bad(where, key, f"{v} is a date; give a time such as {v}T00:00:00Z")
        if isinstance(v, str):
            return parse_rfc3339(v, f"{where}: {key}")
        raise _bad(where, key, f"must be an RFC 3339 time or milliseconds, not {v!r}")
    if kind == "word":
        allowed = WORDS[key]
        word = v.strip().lower().replace("-", "_") if isinstance(v, str) else None
        if word not in allowed:
            raise _bad(where, key, f"{v!r} is not one of {', '.join(allowed)}")
        return word
    if kind == "payload":
        if isinstance(v, str):
            return v
        if isinstance(v, Mapping | list):
            return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)
        raise _bad(where, key, "must be JSON text or a table")
    if kind == "tags":
        if not isinstance(v, Mapping):
            raise _bad(where, key, 'must be a table of name = "value"')
        for tk, tv in v.items():
            if not isinstance(tv, str):
                raise _bad(where, f"{key}.{tk}", f"must be a string, not {tv!r}")
        return {str(tk): tv for tk, tv in v.items()}
    if kind == "ints":
        if not isinstance(v, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in v
        ):
            raise _bad(where, key, "must be a list of whole numbers")
        return list(v)
    if kind == "strs":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise _bad(where, key, "must be a list of strings")
        return list(v)
    raise AssertionError(kind)


def canonical_retry(raw: Mapping[str, Any], max_attempts: int, where: str) -> dict[str, Any]:
    """A retry table with every default written out exactly as the server stores it (the
    server's own validation, run locally). InvalidArgument naming ``where: retry.<field>``."""
    args = dict(raw)
    initial = args.pop("initial_backoff_ms", None)
    try:
        policy = retry_policy(initial_backoff_ms=initial, **args)
        return retry_to_dict(validate.retry_policy(policy, max_attempts))
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(
            f"{where}: {exc.field}", exc.message.removeprefix(f"{exc.field}: ")
        ) from None


def _normalise_schedule(spec: Spec, where: str) -> None:
    """Fill in the schedule the way the server stores it, so a file compares equal to it."""
    cron = spec.get("cron")
    text = collapse_blanks(cron, f"{where}: cron") if isinstance(cron, str) else ""
    if text.lower().startswith("@every"):
        spec["every_ms"] = parse_duration(text[len("@every") :], f"{where}: cron")
        del spec["cron"]
    kinds = [k for k in KIND_KEYS if k in spec]
    if not kinds and spec.get("depends_on"):
        for k in SCHEDULE_KEYS:
            if k in spec:
                raise _bad(where, k, "applies to a schedule; this job has none (only depends_on)")
        return  # no schedule: it runs whenever its upstreams are satisfied
    if len(kinds) != 1:
        raise _bad(
            where,
            "schedule",
            "give exactly one of cron, every or at"
            + (f" (got {', '.join(kinds)})" if kinds else ""),
        )
    kind = kinds[0]
    for k in CRON_ONLY:
        if k in spec and kind != "cron":
            raise _bad(where, k, "applies to cron schedules only")
    if "anchor_ms" in spec and kind != "every_ms":
        raise _bad(where, "anchor", "applies to interval (every) schedules only")
    spec.setdefault("jitter_ms", 0)
    spec.setdefault("start_ms", 0)
    spec.setdefault("end_ms", 0)
    if kind == "cron":
        spec.setdefault("tz", "UTC")
        spec.setdefault("dst_gap", "shift")
        spec.setdefault("dst_repeat", "once")
        try:  # what the server stores: whitespace collapsed, macros lower case
            c = parse_cron(spec["cron"], spec["tz"], f"{where}: cron")
            spec["cron"], spec["tz"] = c.expr, c.tz
        except errors.InvalidArgument as exc:
            field = exc.field if exc.field.startswith(where) else f"{where}: tz"
            raise errors.InvalidArgument(
                field, exc.message.removeprefix(f"{exc.field}: ")
            ) from None
    elif kind == "every_ms":
        spec.setdefault("anchor_ms", spec["start_ms"])


def from_entry(entry: Mapping[str, Any], where: str) -> tuple[str, Spec]:
    """(name, spec) of one job entry of an apply file. InvalidArgument naming ``where`` and the
    key for anything malformed or unknown."""
    if not isinstance(entry, Mapping):
        raise errors.InvalidArgument(where, "a job must be a table (mapping) of keys")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(where, "name", "is required (a string)")
    where = f"{where} ({name})"
    flat: dict[str, Any] = {}
    for k, v in entry.items():
        if k == "name":
            continue
        if k == "schedule":
            if not isinstance(v, Mapping):
                raise _bad(where, "schedule", "must be a table")
            for sk, sv in v.items():
                if sk == "timezone" or sk in SCHEDULE_KEYS or ALIASES.get(sk) in SCHEDULE_KEYS:
                    _put(flat, sk, sv, where, f"schedule.{sk}")
                else:
                    raise _bad(
                        where,
                        f"schedule.{sk}",
                        "unknown schedule key (cron, timezone, "
                        "every_ms, at_ms, jitter_ms, start_ms, end_ms, anchor_ms, dst_gap, dst_repeat)",
                    )
            continue
        _put(flat, k, v, where, k)
    spec: Spec = {}
    for k, (v, label) in flat.items():
        kind = FIELDS[k]
        if kind == "retry":
            if not isinstance(v, Mapping):
                raise _bad(where, label, "must be a table")
            retry: dict[str, Any] = {}
            for rk, rv in v.items():
                canon = ALIASES.get(rk, rk)
                if canon not in RETRY_FIELDS:
                    raise _bad(
                        where, f"retry.{rk}", f"unknown key; known: {', '.join(RETRY_FIELDS)}"
                    )
                retry[canon] = _parse(RETRY_FIELDS[canon], f"retry.{rk}", rv, where)
            spec["retry"] = retry
        else:
            spec[k] = _parse(kind, label, v, where)
    if "payload" in spec:
        try:
            validate.payload(spec["payload"])
        except errors.InvalidArgument as exc:
            raise _bad(where, "payload", exc.message.removeprefix("payload: ")) from None
    _normalise_schedule(spec, where)
    if "retry" in spec:
        spec["retry"] = canonical_retry(spec["retry"], spec.get("max_attempts", 0), where)
        spec.setdefault("max_attempts", spec["retry"]["max_attempts"])
    return name, spec


def _put(flat: dict[str, tuple[Any, str]], k: str, v: Any, where: str, label: str) -> None:
    canon = ALIASES.get(k, k)
    if canon not in FIELDS or canon in ("initial_backoff_ms", "max_backoff_ms"):
        if k == "request_id":
            raise _bad(where, k, "is not part of a job's definition")
        raise _bad(where, label, "unknown key (see `schedctl job apply --help` for the keys)")
    if canon in flat:
        raise _bad(where, label, f"given twice (also as {flat[canon][1]})")
    flat[canon] = (v, label)


# ---- export -----------------------------------------------------------------------------------


def to_entry(name: str, spec: Spec) -> dict[str, Any]:
    """A spec as a file entry with friendly keys, leaving out what equals the server's default
    (so ``job export`` output is short and applying it back changes nothing)."""
    e: dict[str, Any] = {"name": name}
    if "cron" in spec:
        e["cron"] = spec["cron"]
    elif "every_ms" in spec:
        e["every"] = format_duration(spec["every_ms"])
    elif "at_ms" in spec:
        e["at"] = format_ms(spec["at_ms"])
    for key, friendly in (("tz", "tz"), ("dst_gap", "dst_gap"), ("dst_repeat", "dst_repeat")):
        if key in spec and spec[key] != DEFAULTS[key]:
            e[friendly] = spec[key]
    if spec.get("jitter_ms"):
        e["jitter"] = format_duration(spec["jitter_ms"])
    for key, friendly in (("start_ms", "start"), ("end_ms", "end")):
        if spec.get(key):
            e[friendly] = format_ms(spec[key])
    if "anchor_ms" in spec and spec["anchor_ms"] != spec.get("start_ms", 0):
        e["anchor"] = format_ms(spec["anchor_ms"])
    for key in ("queue", "payload"):
        if spec.get(key, DEFAULTS[key]) != DEFAULTS[key]:
            e[key] = spec[key]
    if "retry" in spec:
        r = spec["retry"]
        e["retry"] = {
            "max_attempts": r["max_attempts"],
            "initial_backoff": format_duration(r["initial_backoff_ms"]),
            "multiplier": r["multiplier"],
            "max_backoff": format_duration(r["max_backoff_ms"]),
        }
        if r["non_retryable_exit_codes"]:
            e["retry"]["non_retryable_exit_codes"] = r["non_retryable_exit_codes"]
        if r["non_retryable_errors"]:
            e["retry"]["non_retryable_errors"] = r["non_retryable_errors"]
    elif spec.get("max_attempts", 5) != DEFAULTS["max_attempts"]:
        e["max_attempts"] = spec["max_attempts"]
    friendly_names = {v: k for k, v in ALIASES.items() if k not in ("backoff",)}
    for key in (
        "run_timeout_ms",
        "misfire",
        "misfire_grace_ms",
        "catchup_window_ms",
        "max_catchup",
        "overlap",
        "max_concurrent",
        "dispatch_timeout_ms",
        "on_success",
        "on_failure",
        "priority",
        "tags",
        "keep_runs",
        "keep_for_ms",
        "max_runs",
        "depends_on",
        "trigger_rule",
        "dependency_timeout_ms",
    ):
        if key not in spec:
            continue
        v = spec[key]
        default = DEFAULTS.get(key)
        if key == "max_concurrent":  # 0 (no limit) with allow, else 1
            default = _default_max_concurrent(spec.get("overlap", "allow"))
        if v == default:
            continue
        if key == "dependency_timeout_ms" and v == 0:
            e["dependency_timeout"] = "0"
        elif FIELDS[key] == "duration":
            e[friendly_names.get(key, key)] = format_duration(v)
        else:
            e[key] = v
    return e
