"""The job definition flags shared by ``job create`` and ``job update``: their declarations
(:func:`definition_options`) and the partial :mod:`schedctl.spec` they amount to
(:func:`overlay_from_flags`). Pure apart from click; the caller passes the current time."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from schedctl import spec
from schedctl.common import parse_time
from schedd import errors
from schedd.sched import policies
from schedd.sched.schedule import parse_duration


def read_payload(value: str) -> str:
    """``--payload``'s value as JSON text: ``@FILE`` is the file's contents, ``-`` standard
    input, anything else the text itself (neither form is valid JSON, so nothing is ambiguous).
    Surrounding whitespace is dropped (a file's final newline). InvalidArgument naming
    ``--payload`` when the file cannot be read."""
    if value == "-":
        return sys.stdin.read().strip()
    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise errors.InvalidArgument("--payload", f"cannot read {path!r}: {why}") from None
    return value


def _duration_opt(name: str, help: str, dest: str | None = None) -> Callable[[Any], Any]:
    decls = [name, dest] if dest else [name]
    return click.option(*decls, metavar="DURATION", default=None, help=help)


DEFINITION_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--cron", metavar="EXPR", help="Cron: 5 fields, 6 with seconds first, or a macro (@daily)."
    ),
    click.option("--tz", metavar="ZONE", help="IANA time zone of --cron (default UTC)."),
    _duration_opt(
        "--every", "Fixed interval, e.g. 90s, 15m, 1h30m (anchored at the Unix epoch or --start)."
    ),
    click.option(
        "--at",
        "at",
        metavar="TIME",
        help="Fire once at TIME: RFC 3339 (2030-01-02T03:04:05Z) or relative (now+1h).",
    ),
    _duration_opt(
        "--in",
        "Fire once after this delay from now, e.g. 10m (a one-shot, like --at now+10m).",
        "in_",
    ),
    click.option(
        "--allow-past",
        is_flag=True,
        default=None,
        help="With --at: a time in the past fires at once instead of being refused.",
    ),
    _duration_opt("--jitter", "Spread each firing by a deterministic 0..DURATION offset."),
    click.option("--start", metavar="TIME", help="No firing before TIME (`none` clears it)."),
    click.option(
        "--end", metavar="TIME", help="No firing after TIME, inclusive (`none` clears it)."
    ),
    click.option("--anchor", metavar="TIME", help="With --every: slots are TIME + k x interval."),
    click.option(
        "--dst-gap",
        type=click.Choice(["shift", "skip"], case_sensitive=False),
        help="Cron times that do not exist on a spring-forward day: fire just after the gap (shift, default) or not at all.",
    ),
    click.option(
        "--dst-repeat",
        type=click.Choice(["once", "twice"], case_sensitive=False),
        help="Cron times that happen twice on a fall-back day: fire once (default) or twice.",
    ),
    click.option("--queue", metavar="Q", help="Queue the firings go to (default: default)."),
    click.option(
        "--payload",
        metavar="JSON|@FILE|-",
        help="JSON handed to every firing: the text, @FILE for a file's contents, or - to read "
        "standard input.",
    ),
    click.option(
        "--max-attempts",
        type=click.IntRange(min=1),
        metavar="N",
        help="Deliveries per firing before the run is dead (default: the server's, 5).",
    ),
    _duration_opt(
        "--backoff",
        "Wait after the first failed attempt, e.g. 1s; doubles by default (gives "
        "the job a retry policy; without one, the cluster's fixed --retry-backoff applies).",
    ),
    click.option(
        "--backoff-multiplier",
        type=float,
        metavar="X",
        help="Each further wait is X times the last, 1..10 (default 2).",
    ),
    _duration_opt("--max-backoff", "Longest wait between attempts (default 100 x --backoff)."),
    click.option(
        "--non-retryable-exit-code",
        "non_retryable_exit_codes",
        type=int,
        multiple=True,
        metavar="N",
        help="A failure with this exit code is not retried: the run is dead at once. Repeatable.",
    ),
    click.option(
        "--non-retryable-error",
        "non_retryable_errors",
        multiple=True,
        metavar="TEXT",
        help="A failure whose error text contains TEXT is not retried. Repeatable.",
    ),
    _duration_opt(
        "--run-timeout",
        "An attempt still running after DURATION (1s..7d) fails and is retried; 0s: none.",
    ),
    click.option(
        "--misfire",
        type=click.Choice(list(policies.MISFIRE_NAMES), case_sensitive=False),
        help="Slots missed (scheduler down, paused): skip them, fire once for all (default), or fire each.",
    ),
    _duration_opt("--misfire-grace", "Lateness up to this is not a misfire (default 60s)."),
    _duration_opt("--catchup-window", "Slots missed by more than this never fire (default 1d)."),
    click.option(
        "--max-catchup",
        type=click.IntRange(min=1),
        metavar="N",
        help="With --misfire fire_all: at most N missed slots per catch-up (default 100).",
    ),
    click.option(
        "--overlap",
        type=click.Choice(list(policies.OVERLAP_NAMES), case_sensitive=False),
        help="A slot due while a run is active: run alongside (allow, default), skip it "
        "(forbid), hold one (buffer_one), or cancel the active run (replace).",
    ),
    click.option(
        "--max-concurrent",
        type=click.IntRange(min=0),
        metavar="N",
        help="Active runs at once (0: no limit; default 0 with allow, else 1).",
    ),
    _duration_opt(
        "--dispatch-timeout", "A run waiting longer than this for a worker is dead; 0s: none."
    ),
    click.option(
        "--on-success", metavar="JOB", help='Trigger JOB when a run succeeds (`""` clears it).'
    ),
    click.option(
        "--on-failure", metavar="JOB", help='Trigger JOB when a run ends dead (`""` clears it).'
    ),
    click.option(
        "--after",
        "depends_on",
        metavar="JOB[,JOB...]",
        help="Run only after these jobs (depends_on; docs/dependencies.md): each slot waits for "
        "their matching runs; without a schedule, the job runs each time they are satisfied. "
        'Repeatable or comma-separated; `""` clears it.',
        multiple=True,
    ),
    click.option(
        "--trigger-rule",
        type=click.Choice(list(policies.TRIGGER_RULE_NAMES), case_sensitive=False),
        help="With --after: run when all upstreams succeeded (all_succeeded, default), all "
        "ended whatever the outcome (all_done), or one succeeded (any_succeeded).",
    ),
    _duration_opt(
        "--dependency-timeout",
        "With --after: a run still waiting for its upstreams after DURATION is skipped "
        "(default 1d; 0s: wait forever).",
    ),
    click.option(
        "--priority",
        type=click.IntRange(0, 100),
        metavar="N",
        help="0..100; higher runs first among runs due at once (default 0).",
    ),
    click.option(
        "--tag",
        "tags",
        multiple=True,
        metavar="KEY=VALUE",
        help="Only workers carrying this tag get the firings. Repeatable; in an update, KEY- removes one.",
    ),
    click.option(
        "--keep-runs",
        type=click.IntRange(min=0),
        metavar="N",
        help="Keep only the newest N finished runs (0: all).",
    ),
    _duration_opt(
        "--keep-for", "Drop finished runs older than this (0s: keep forever; else at least 1m)."
    ),
    click.option(
        "--max-runs",
        type=click.IntRange(min=0),
        metavar="N",
        help="The schedule ends after N fired slots (0: no limit).",
    ),
]


def definition_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Apply every definition flag to a command (each defaults to None: not given)."""
    for opt in reversed(DEFINITION_OPTIONS):
        f = opt(f)
    return f


def _bound(text: str, option: str, now: int) -> int:
    return 0 if text.strip().lower() in ("none", "0", "") else parse_time(text, option, now)


def _tags(values: tuple[str, ...], removable: bool) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in values:
        if "=" in v:
            k, _, val = v.partition("=")
            if not k.strip():
                raise errors.InvalidArgument("--tag", f"{v!r} has no key; use KEY=VALUE")
            out[k.strip()] = val
        elif removable and v.endswith("-") and len(v) > 1:
            out[v[:-1]] = None
        else:
            raise errors.InvalidArgument(
                "--tag", f"{v!r} is not KEY=VALUE" + (" or KEY-" if removable else "")
            )
    return out


def overlay_from_flags(p: dict[str, Any], now: int, *, update: bool) -> spec.Spec:
    """The definition flags that were given, as a partial spec (keys of :mod:`schedctl.spec`).

    Raises InvalidArgument naming the option for a value that cannot be parsed, and a click usage
    error for flags that contradict each other.
    """
    o: spec.Spec = {}
    if p["at"] is not None and p["in_"] is not None:
        raise click.UsageError("give --at TIME or --in DURATION, not both")
    if p["cron"] is not None:
        o["cron"] = p["cron"]
    if p["tz"] is not None:
        o["tz"] = p["tz"]
    if p["every"] is not None:
        o["every_ms"] = parse_duration(p["every"], "--every")
    if p["at"] is not None:
        o["at_ms"] = parse_time(p["at"], "--at", now)
    if p["in_"] is not None:
        o["at_ms"] = now + parse_duration(p["in_"], "--in")
    if p["allow_past"]:
        o["allow_past"] = True
    for key, opt, param in (
        ("jitter_ms", "--jitter", "jitter"),
        ("run_timeout_ms", "--run-timeout", "run_timeout"),
        ("misfire_grace_ms", "--misfire-grace", "misfire_grace"),
        ("catchup_window_ms", "--catchup-window", "catchup_window"),
        ("dispatch_timeout_ms", "--dispatch-timeout", "dispatch_timeout"),
        ("keep_for_ms", "--keep-for", "keep_for"),
        ("dependency_timeout_ms", "--dependency-timeout", "dependency_timeout"),
    ):
        if p[param] is not None:
            o[key] = 0 if p[param].strip() == "0" else parse_duration(p[param], opt)
    for key, opt in (("start_ms", "--start"), ("end_ms", "--end")):
        if p[key.removesuffix("_ms")] is not None:
            o[key] = _bound(p[key.removesuffix("_ms")], opt, now)
    if p["anchor"] is not None:
        o["anchor_ms"] = parse_time(p["anchor"], "--anchor", now)
    if p["depends_on"]:
        o["depends_on"] = [j.strip() for v in p["depends_on"] for j in v.split(",") if j.strip()]
    for key in ("dst_gap", "dst_repeat", "misfire", "overlap", "trigger_rule"):
        if p[key] is not None:
            o[key] = p[key].lower()
    for key in (
        "queue",
        "on_success",
        "on_failure",
        "max_catchup",
        "max_concurrent",
        "priority",
        "keep_runs",
        "max_runs",
        "max_attempts",
    ):
        if p[key] is not None:
            o[key] = p[key]
    if p["payload"] is not None:
        payload = read_payload(p["payload"])
        if payload:
            try:
                json.loads(payload)
            except ValueError as exc:
                raise click.UsageError(f"--payload: not valid JSON ({exc})") from None
        o["payload"] = payload
    retry: dict[str, Any] = {}
    if p["backoff"] is not None:
        retry["initial_backoff_ms"] = parse_duration(p["backoff"], "--backoff")
    if p["backoff_multiplier"] is not None:
        retry["multiplier"] = p["backoff_multiplier"]
    if p["max_backoff"] is not None:
        retry["max_backoff_ms"] = parse_duration(p["max_backoff"], "--max-backoff")
    if p["non_retryable_exit_codes"]:
        retry["non_retryable_exit_codes"] = list(p["non_retryable_exit_codes"])
    if p["non_retryable_errors"]:
        retry["non_retryable_errors"] = list(p["non_retryable_errors"])
    if retry:
        if p["max_attempts"]:
            retry["max_attempts"] = p["max_attempts"]
        o["retry"] = retry
    if p["tags"]:
        o["tags"] = _tags(p["tags"], removable=update)
    return o


def kind_of(s: spec.Spec) -> str | None:
    return next((k for k in spec.KIND_KEYS if k in s), None)
