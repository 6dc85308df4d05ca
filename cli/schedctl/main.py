"""``schedctl``: the command line for a schedd cluster.

Every failure becomes one line on stderr (``error: ...``) and one of the exit codes in
:data:`EXIT_CODES`; no traceback reaches the user (set ``SCHEDCTL_DEBUG=1`` to see one for an
unexpected failure).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from schedctl import output
from schedd import errors
from schedd.client import Client, new_request_id, parse_endpoints
from schedd.pb import types_pb2
from schedd.schedule import parse_duration, parse_rfc3339

# ---- exit codes ----------------------------------------------------------------------------

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_EXISTS = 5
EXIT_ABORTED = 6
EXIT_OUTCOME_UNKNOWN = 7
EXIT_INTERRUPTED = 130

#: error type -> exit code; the first matching entry wins (subclasses before their parents).
EXIT_CODES: list[tuple[type[errors.SchedError], int]] = [
    (errors.InvalidArgument, EXIT_USAGE),
    (errors.NotFound, EXIT_NOT_FOUND),
    (errors.Unavailable, EXIT_UNAVAILABLE),
    (errors.AlreadyExists, EXIT_EXISTS),
    (errors.StaleFence, EXIT_ABORTED),
    (errors.OutcomeUnknown, EXIT_OUTCOME_UNKNOWN),
]

EPILOG = """\b
Exit codes:
  0    ok
  1    other error (failed precondition, internal error, ...)
  2    usage error or invalid argument (the message names the option or field)
  3    not found
  4    unavailable: no node or no leader reachable
  5    already exists
  6    aborted: stale fence
  7    outcome unknown: a write timed out and may or may not have been applied
  130  interrupted (Ctrl-C)
"""

NO_ENDPOINTS = (
    "not set; start a local cluster with `schedd dev` and run the "
    "`export SCHEDD_ENDPOINTS=...` line it prints, or pass --endpoints HOST:PORT[,HOST:PORT...]"
)
UNAVAILABLE_HINT = "check `schedctl cluster status` and SCHEDD_ENDPOINTS"

#: server-side field names of CreateJob -> the schedctl option that sets them
CREATE_FIELDS = {
    "name": "NAME",
    "schedule.cron": "--cron",
    "schedule.timezone": "--tz",
    "schedule.at_ms": "--at",
    "schedule.every_ms": "--every",
    "schedule.jitter_ms": "--jitter",
    "queue": "--queue",
    "payload": "--payload",
    "max_attempts": "--max-attempts",
    "request_id": "--request-id",
    "retry.max_attempts": "--max-attempts",
    "retry.initial_backoff_ms": "--backoff",
    "retry.multiplier": "--backoff-multiplier",
    "retry.max_backoff_ms": "--max-backoff",
    "retry.non_retryable_exit_codes": "--non-retryable-exit-code",
    "retry.non_retryable_errors": "--non-retryable-error",
    "run_timeout_ms": "--run-timeout",
}

#: run states by the word schedctl shows and accepts (``--state dead``)
RUN_STATES = {
    name.removeprefix("RUN_STATE_").lower(): value
    for name, value in types_pb2.RunState.items()
    if value != types_pb2.RUN_STATE_UNSPECIFIED
}


def exit_code_for(exc: errors.SchedError) -> int:
    """The documented exit code for a schedd error."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR


def error_line(exc: errors.SchedError) -> str:
    """The single line printed for ``exc`` (without the ``error: `` prefix)."""
    msg = " ".join(exc.message.split())
    if isinstance(exc, errors.Unavailable) and "cluster status" not in msg and "`schedd" not in msg:
        msg = f"{msg} ({UNAVAILABLE_HINT})"
    return msg


def _fail(message: str) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)


# ---- settings shared by all commands --------------------------------------------------------


@dataclass
class Settings:
    """Global options; the client is made on first use so --help and local checks need no cluster."""

    endpoints: str | None
    json: bool
    timeout: float
    retry_for: float
    _client: Client | None = field(default=None, repr=False)

    def endpoint_list(self) -> list[str]:
        """The --endpoints / SCHEDD_ENDPOINTS addresses; InvalidArgument when absent or bad."""
        if not self.endpoints or not self.endpoints.strip():
            raise errors.InvalidArgument("--endpoints", NO_ENDPOINTS)
        return parse_endpoints(self.endpoints, "--endpoints")

    def client(self) -> Client:
        """The SDK client for the configured endpoints (made once)."""
        if self._client is None:
            self._client = Client(
                self.endpoint_list(), timeout=self.timeout, retry_for=self.retry_for
            )
        return self._client

    def close(self) -> None:
        """Close the client if one was made."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit(self, doc: object, human: Callable[[], str]) -> None:
        """Print ``doc`` as JSON with --json, else the text ``human()`` returns."""
        click.echo(output.dumps(doc) if self.json else human())


pass_settings = click.make_pass_decorator(Settings)


# ---- the top-level group with the error boundary -------------------------------------------


class _Schedctl(click.Group):
    """A click group whose ``main`` turns every failure into one line and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = _guarded(
            lambda: super(_Schedctl, self).main(
                args, prog_name or "schedctl", complete_var, standalone_mode=False, **extra
            )
        )
        if standalone_mode:
            sys.exit(code)
        return code


def _guarded(run: Callable[[], Any]) -> int:
    """Run the CLI; map every outcome to an exit code, printing at most one error line."""
    try:
        rv = run()
        return rv if isinstance(rv, int) else EXIT_OK
    except errors.SchedError as exc:
        _fail(error_line(exc))
        return exit_code_for(exc)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        return EXIT_OK
    except click.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(exc.format_message() + where)
        return EXIT_USAGE
    except click.ClickException as exc:
        _fail(exc.format_message())
        return exc.exit_code
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        _fail("aborted")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: never show a traceback to a user
        if os.environ.get("SCHEDCTL_DEBUG"):
            traceback.print_exc()
        _fail(
            f"unexpected failure in schedctl: {type(exc).__name__}: {exc} "
            "(set SCHEDCTL_DEBUG=1 for details and please report it)"
        )
        return EXIT_ERROR


@click.group(
    cls=_Schedctl,
    name="schedctl",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--endpoints",
    envvar="SCHEDD_ENDPOINTS",
    show_envvar=True,
    metavar="HOST:PORT,...",
    help="gRPC addresses of the cluster's nodes (any subset works; the leader is found).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    default=5.0,
    show_default=True,
    help="Deadline of each request, in seconds.",
)
@click.option(
    "--retry-for",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=20.0,
    show_default=True,
    envvar="SCHEDCTL_RETRY_FOR",
    show_envvar=True,
    help="Keep looking for a leader this many seconds before giving up (exit 4).",
)
@click.pass_context
def cli(
    ctx: click.Context, endpoints: str | None, as_json: bool, timeout: float, retry_for: float
) -> None:
    """Operate a schedd cluster: jobs, runs, workers and cluster status.

    \b
    Quick start:
      schedd dev                                  # a local 3-node cluster; prints the export line
      export SCHEDD_ENDPOINTS=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
      schedctl job create hello --cron '*/5 * * * * *'
      schedctl worker run -- echo hello
      schedctl run list --job hello
    """
    settings = Settings(endpoints=endpoints, json=as_json, timeout=timeout, retry_for=retry_for)
    ctx.obj = settings
    ctx.call_on_close(settings.close)


# ---- cluster -------------------------------------------------------------------------------


@cli.group()
def cluster() -> None:
    """Cluster membership and health."""


@cluster.command("status")
@pass_settings
def cluster_status(s: Settings) -> None:
    """Show every node's Raft status: id, role, term, commit and applied index, leader.

    Exits 4 when no node answers.

    \b
    Example:
      schedctl cluster status
      schedctl --json cluster status | jq '.[] | select(.status.role == "leader")'
    """
    reports = s.client().cluster_status()
    docs = [
        {
            "endpoint": ep,
            "reachable": st is not None,
            "error": err,
            "status": output.message_to_dict(st) if st is not None else None,
        }
        for ep, st, err in reports
    ]

    def human() -> str:
        headers = ["NODE", "ROLE", "TERM", "COMMIT", "APPLIED", "LEADER", "GRPC"]
        down = any(st is None for _, st, _ in reports)
        if down:
            headers.append("NOTE")
        rows: list[list[object]] = []
        for ep, st, err in reports:
            if st is None:
                row: list[object] = ["-", "unreachable", "-", "-", "-", "-", ep, err]
            else:
                row = [
                    st.node_id or "-",
                    st.role or "-",
                    st.term,
                    st.commit_index,
                    st.applied_index,
                    st.leader_id or "-",
                    st.grpc_address or ep,
                ]
                if down:
                    row.append("")
            rows.append(row)
        return output.table(headers, rows)

    s.emit(docs, human)
    if not any(st is not None for _, st, _ in reports):
        raise errors.Unavailable(
            f"no node reachable at {','.join(ep for ep, _, _ in reports)}: "
            "is the cluster running? (`schedd dev` starts a local one; check SCHEDD_ENDPOINTS)"
        )


# ---- jobs ----------------------------------------------------------------------------------


@cli.group()
def job() -> None:
    """Create, inspect and control jobs."""


def _with_request_id_note(exc: errors.SchedError, rid: str) -> errors.SchedError:
    """Tell the user how to retry a create/trigger whose outcome is unknown without duplicating."""
    if isinstance(exc, errors.Unavailable | errors.OutcomeUnknown):
        exc.message = (
            f"{exc.message}; it may or may not have been applied: "
            f"re-run with --request-id {rid} to retry safely"
        )
        exc.args = (exc.message,)
    return exc


@job.command("create")
@click.argument("name")
@click.option("--cron", metavar="EXPR", help="Cron: 5 fields, or 6 with seconds first.")
@click.option("--tz", metavar="ZONE", help="IANA time zone of --cron (default UTC).")
@click.option("--every", metavar="DURATION", help="Fixed interval, e.g. 90s, 15m, 1h30m (anchored at the Unix epoch).")
@click.option("--jitter", metavar="DURATION", help="Spread each firing by a deterministic 0..DURATION offset.")
@click.option(
    "--at", "at", metavar="RFC3339", help="Fire once at this time, e.g. 2030-01-02T03:04:05Z."
)
@click.option(
    "--queue", metavar="Q", default="default", show_default=True, help="Queue the firings go to."
)
@click.option("--payload", metavar="JSON", default="", help="JSON handed to every firing.")
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    metavar="N",
    default=None,
    help="Deliveries per firing before the run is dead (default: the server's, 5).",
)
@click.option(
    "--backoff",
    metavar="DURATION",
    help="Wait after the first failed attempt, e.g. 1s; doubles by default (gives the job a "
    "retry policy; without one, the cluster's fixed --retry-backoff applies).",
)
@click.option(
    "--backoff-multiplier",
    type=float,
    metavar="X",
    help="Each further wait is X times the last, 1..10 (default 2).",
)
@click.option(
    "--max-backoff", metavar="DURATION", help="Longest wait between attempts (default 100 x --backoff)."
)
@click.option(
    "--non-retryable-exit-code",
    "non_retryable_exit_codes",
    type=int,
    multiple=True,
    metavar="N",
    help="A failure with this exit code is not retried: the run is dead at once. Repeatable.",
)
@click.option(
    "--non-retryable-error",
    "non_retryable_errors",
    multiple=True,
    metavar="TEXT",
    help="A failure whose error text contains TEXT is not retried. Repeatable.",
)
@click.option(
    "--run-timeout",
    metavar="DURATION",
    help="An attempt still running after DURATION (1s..7d) fails and is retried.",
)
@click.option(
    "--request-id",
    metavar="ID",
    help="Makes the create safe to retry: the same id returns the first answer.",
)
@pass_settings
def job_create(
    s: Settings,
    name: str,
    cron: str | None,
    tz: str | None,
    every: str | None,
    jitter: str | None,
    at: str | None,
    queue: str,
    payload: str,
    max_attempts: int | None,
    backoff: str | None,
    backoff_multiplier: float | None,
    max_backoff: str | None,
    non_retryable_exit_codes: tuple[int, ...],
    non_retryable_errors: tuple[str, ...],
    run_timeout: str | None,
    request_id: str | None,
) -> None:
    """Create job NAME with a cron schedule (--cron), a fixed interval (--every) or a one-shot
    time (--at).

    A failed attempt is retried after a backoff until --max-attempts; then, or at once for a
    non-retryable failure, the run is dead: `schedctl run list --state dead` lists it and
    `schedctl run retry RUN_ID` replays it.

    \b
    Examples:
      schedctl job create nightly --cron '0 3 * * *' --tz Europe/Berlin
      schedctl job create tick --cron '*/10 * * * * *' --queue fast --payload '{"n": 1}'
      schedctl job create poll --every 90s --jitter 10s
      schedctl job create once --at 2030-01-02T03:04:05Z
      schedctl job create etl --cron '0 * * * *' --max-attempts 4 --backoff 10s \\
          --max-backoff 5m --non-retryable-exit-code 3 --run-timeout 30m
    """
    if sum(x is not None for x in (cron, every, at)) != 1:
        raise click.UsageError("give exactly one of --cron EXPR, --every DURATION or --at RFC3339")
    if cron is None and tz is not None:
        raise click.UsageError("--tz applies to --cron only; put the UTC offset into --at")
    at_ms = parse_rfc3339(at, "--at") if at is not None else None
    every_ms = parse_duration(every, "--every") if every is not None else None
    jitter_ms = parse_duration(jitter, "--jitter") if jitter is not None else 0
    if payload:
        try:
            json.loads(payload)
        except ValueError as exc:
            raise click.UsageError(f"--payload: not valid JSON ({exc})") from None
    # Only what was given is passed on: a job without retry options keeps the cluster's fixed
    # backoff (no policy), and the SDK call stays as it was for scripts that do not use them.
    extra: dict[str, Any] = {}
    retry: dict[str, Any] = {}
    if backoff is not None:
        retry["initial_backoff_ms"] = parse_duration(backoff, "--backoff")
    if backoff_multiplier is not None:
        retry["multiplier"] = backoff_multiplier
    if max_backoff is not None:
        retry["max_backoff_ms"] = parse_duration(max_backoff, "--max-backoff")
    if non_retryable_exit_codes:
        retry["non_retryable_exit_codes"] = list(non_retryable_exit_codes)
    if non_retryable_errors:
        retry["non_retryable_errors"] = list(non_retryable_errors)
    if retry:
        if max_attempts:
            retry["max_attempts"] = max_attempts
        extra["retry"] = retry
    if run_timeout is not None:
        extra["run_timeout_ms"] = parse_duration(run_timeout, "--run-timeout")
    rid = request_id or new_request_id()
    try:
        created = s.client().create_job(
            name,
            cron=cron,
            tz=tz or "UTC",
            at_ms=at_ms,
            every_ms=every_ms,
            jitter_ms=jitter_ms,
            queue=queue,
            payload=payload,
            max_attempts=max_attempts or 0,
            request_id=rid,
            **extra,
        )
    except errors.InvalidArgument as exc:
        option = CREATE_FIELDS.get(exc.field)
        if option is None:
            raise
        raise errors.InvalidArgument(option, exc.message.removeprefix(f"{exc.field}: ")) from None
    except errors.SchedError as exc:
        raise _with_request_id_note(exc, rid) from None
    s.emit(output.message_to_dict(created), lambda: output.job_block(created))


@job.command("get")
@click.argument("name")
@pass_settings
def job_get(s: Settings, name: str) -> None:
    """Show job NAME.

    \b
    Example:
      schedctl job get nightly
    """
    j = s.client().get_job(name)
    s.emit(output.message_to_dict(j), lambda: output.job_block(j))


@job.command("list")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", default=1000, show_default=True)
@pass_settings
def job_list(s: Settings, limit: int) -> None:
    """List jobs in name order.

    \b
    Example:
      schedctl job list
      schedctl --json job list | jq -r '.[].name'
    """
    jobs = s.client().list_jobs(limit=limit)
    s.emit(
        [output.message_to_dict(j) for j in jobs],
        lambda: (
            output.table(output.JOB_HEADERS, [output.job_row(j) for j in jobs])
            if jobs
            else "no jobs"
        ),
    )


@job.command("delete")
@click.argument("name")
@pass_settings
def job_delete(s: Settings, name: str) -> None:
    """Delete job NAME; its runs that have not started are cancelled.

    \b
    Example:
      schedctl job delete nightly
    """
    s.client().delete_job(name)
    s.emit({"name": name, "deleted": True}, lambda: f"deleted job {name}")


@job.command("pause")
@click.argument("name")
@pass_settings
def job_pause(s: Settings, name: str) -> None:
    """Stop scheduling new firings of job NAME.

    \b
    Example:
      schedctl job pause nightly
    """
    j = s.client().pause_job(name)
    s.emit(output.message_to_dict(j), lambda: output.job_block(j))


@job.command("resume")
@click.argument("name")
@pass_settings
def job_resume(s: Settings, name: str) -> None:
    """Schedule job NAME again.

    \b
    Example:
      schedctl job resume nightly
    """
    j = s.client().resume_job(name)
    s.emit(output.message_to_dict(j), lambda: output.job_block(j))


@job.command("preview")
@click.argument("name", required=False)
@click.option("--cron", metavar="EXPR", help="Preview a cron expression instead of job NAME.")
@click.option("--tz", metavar="ZONE", help="IANA time zone of --cron (default UTC).")
@click.option("--every", metavar="DURATION", help="Preview a fixed interval instead of job NAME.")
@click.option("--jitter", metavar="DURATION", help="With --cron/--every: the jitter to apply.")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--after", metavar="RFC3339", help="Start after this time (default: now).")
@pass_settings
def job_preview(s: Settings, name: str | None, cron: str | None, tz: str | None, every: str | None,
                jitter: str | None, count: int, after: str | None) -> None:
    """List the next firing times of job NAME (its stored schedule, jitter and bounds), or of a
    --cron / --every schedule before you create it. Computed locally with the same code the
    leader uses.

    \b
    Examples:
      schedctl job preview nightly --count 5
      schedctl job preview --cron '30 2 * * *' --tz Europe/Berlin --after 2026-03-28T00:00:00Z
      schedctl job preview --every 90s --jitter 10s
    """
    import time

    from schedd import validate
    from schedd.pb import types_pb2
    from schedd.schedule import format_ms, parse_duration, preview

    now_ms = parse_rfc3339(after, "--after") if after else int(time.time() * 1000)
    given = sum(x is not None for x in (name, cron, every))
    if given != 1:
        raise click.UsageError("give exactly one of NAME, --cron EXPR or --every DURATION")
    if name is not None:
        if tz or jitter:
            raise click.UsageError("--tz and --jitter apply to --cron/--every; a job's own settings are used")
        job_name, schedule = name, s.client().get_job(name).schedule.to_pb()
    else:
        if every is not None and tz:
            raise click.UsageError("--tz applies to --cron only")
        raw = (types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron, timezone=tz or "UTC")
               if cron is not None else
               types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_INTERVAL, every_ms=parse_duration(every or "", "--every")))
        raw.jitter_ms = parse_duration(jitter, "--jitter") if jitter else 0
        try:
            schedule = validate.schedule(raw, now_ms)
        except errors.InvalidArgument as exc:
            option = CREATE_FIELDS.get(exc.field)
            if option is None:
                raise
            raise errors.InvalidArgument(option, exc.message.removeprefix(f"{exc.field}: ")) from None
        job_name = ""
    times = preview(schedule, now_ms, count, name=job_name)
    s.emit([{"due_ms": t, "due_at": format_ms(t)} for t in times],
           lambda: "\n".join(format_ms(t) for t in times) or "(no further firings)")


@job.command("trigger")
@click.argument("name")
@click.option("--request-id", metavar="ID", help="Makes the trigger safe to retry.")
@pass_settings
def job_trigger(s: Settings, name: str, request_id: str | None) -> None:
    """Fire job NAME now, once, in addition to its schedule.

    \b
    Example:
      schedctl job trigger nightly
    """
    rid = request_id or new_request_id()
    try:
        run = s.client().trigger_job(name, request_id=rid)
    except errors.SchedError as exc:
        raise _with_request_id_note(exc, rid) from None
    s.emit(
        output.message_to_dict(run),
        lambda: f"triggered job {name}: run {run.run_id} ({output.run_state(run.state)})",
    )


# ---- runs ----------------------------------------------------------------------------------


@cli.group()
def run() -> None:
    """Inspect runs (one run per firing; attempts are retries of it)."""


@run.command("list")
@click.option("--job", "job_name", metavar="NAME", default="", help="Only this job's runs.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    default=100,
    show_default=True,
    help="Show the newest N runs.",
)
@click.option(
    "--state",
    type=click.Choice(list(RUN_STATES)),
    default=None,
    help="Only runs in this state; dead = the dead letters (scans the runs).",
)
@pass_settings
def run_list(s: Settings, job_name: str, limit: int, state: str | None) -> None:
    """List the newest runs, oldest first.

    \b
    Example:
      schedctl run list --job nightly --limit 20
      schedctl run list --state dead
    """
    kw: dict[str, Any] = {} if state is None else {"state": RUN_STATES[state]}
    runs = s.client().list_runs(job=job_name, limit=limit, **kw)
    s.emit(
        [output.message_to_dict(r) for r in runs],
        lambda: (
            output.table(output.RUN_HEADERS, [output.run_row(r) for r in runs])
            if runs
            else "no runs"
        ),
    )


@run.command("get")
@click.argument("run_id")
@pass_settings
def run_get(s: Settings, run_id: str) -> None:
    """Show run RUN_ID.

    \b
    Example:
      schedctl run list --job nightly      # shows the run ids
      schedctl run get RUN_ID
    """
    r = s.client().get_run(run_id)
    s.emit(output.message_to_dict(r), lambda: output.run_block(r))


@run.command("retry")
@click.argument("run_id")
@click.option("--request-id", metavar="ID", help="Makes the retry safe to repeat.")
@pass_settings
def run_retry(s: Settings, run_id: str, request_id: str | None) -> None:
    """Replay dead (or failed) run RUN_ID: it runs again now, at the next attempt number, with a
    fresh set of attempts under its job's retry policy. Exits 1 for a run in another state.

    \b
    Example:
      schedctl run list --state dead       # shows the run ids
      schedctl run retry RUN_ID
    """
    rid = request_id or new_request_id()
    try:
        r = s.client().retry_run(run_id, request_id=rid)
    except errors.SchedError as exc:
        raise _with_request_id_note(exc, rid) from None
    s.emit(
        output.message_to_dict(r),
        lambda: f"retrying run {r.run_id}: attempt {r.attempt} ({output.run_state(r.state)})",
    )


# ---- workers -------------------------------------------------------------------------------


@cli.group()
def worker() -> None:
    """Run workers that execute firings."""


@worker.command(
    "run",
    context_settings={"allow_interspersed_args": False},
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    help="Queue to take firings from; repeat for several (default: default).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    default=1,
    show_default=True,
    help="Firings run at once.",
)
@click.option("--worker-id", metavar="ID", help="Stable id of this worker (default: generated).")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@pass_settings
def worker_run(
    s: Settings,
    queues: tuple[str, ...],
    concurrency: int,
    worker_id: str | None,
    argv: tuple[str, ...],
) -> NoReturn:
    """Run CMD once per firing; exit status 0 means success.

    The command gets SCHEDD_JOB, SCHEDD_RUN_ID, SCHEDD_SCHEDULED_AT, SCHEDD_ATTEMPT and
    SCHEDD_FENCE in its environment. Stop it with Ctrl-C.

    \b
    Example:
      schedctl worker run --queue default --concurrency 4 -- sh -c 'echo "$SCHEDD_JOB"'
    """
    endpoints = s.endpoint_list()
    try:
        from schedd.shellworker import run_shell_worker
    except ImportError as exc:
        raise errors.Internal(
            f"the shell worker is not available in this install ({exc})"
        ) from None
    code = run_shell_worker(
        endpoints, list(queues) or ["default"], concurrency, list(argv), worker_id
    )
    raise click.exceptions.Exit(int(code))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run schedctl and exit with its documented code."""
    cli.main(args=argv, prog_name="schedctl")
    raise SystemExit(EXIT_ERROR)  # not reached: main() always exits


if __name__ == "__main__":
    main()
