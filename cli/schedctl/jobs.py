"""``schedctl job ...``: create, update, inspect and control jobs; backfill and explain.

The definition flags (schedule, retry, policies) shared by ``create`` and ``update`` live in
:mod:`schedctl.flags`. ``update`` merges them over the job it just read (:mod:`schedctl.spec`)
and sends the whole definition with the version it read, so a concurrent change is refused, not
overwritten.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click

from schedctl import common, deps_view, output, spec
from schedctl.common import (
    EXIT_INTERRUPTED,
    Settings,
    options_named,
    parse_time,
    pass_settings,
    with_request_id_note,
)
from schedctl.completion import job_names
from schedctl.flags import definition_options, kind_of, overlay_from_flags
from schedd import errors
from schedd.client import new_request_id
from schedd.pb import types_pb2
from schedd.sched import policies
from schedd.sched.explain import between_slots
from schedd.sched.schedule import format_ms, parse_duration


@click.group()
def job() -> None:
    """Create, inspect and control jobs; apply and export job files."""


# ---- create ------------------------------------------------------------------------------------


@job.command("create")
@click.argument("name", shell_complete=job_names)
@definition_options
@click.option(
    "--request-id",
    metavar="ID",
    help="Makes the create safe to retry: the same id returns the first answer.",
)
@pass_settings
def job_create(s: Settings, name: str, request_id: str | None, **p: Any) -> None:
    """Create job NAME with a cron schedule (--cron), a fixed interval (--every), or one shot
    (--at TIME, or --in DELAY).

    A failed attempt is retried after a backoff until --max-attempts; then, or at once for a
    non-retryable failure, the run is dead: `schedctl run list --state dead` lists it and
    `schedctl run retry RUN_ID` replays it. Missed slots follow --misfire; a slot due while a run
    is still active follows --overlap (docs/policies.md).

    \b
    Examples:
      schedctl job create nightly --cron '0 3 * * *' --tz Europe/Berlin
      schedctl job create tick --cron '*/10 * * * * *' --queue fast --payload '{"n": 1}'
      schedctl job create poll --every 90s --jitter 10s --overlap forbid
      schedctl job create once --at 2030-01-02T03:04:05Z
      schedctl job create soon --in 10m
      schedctl job create etl --cron '0 * * * *' --max-attempts 4 --backoff 10s \\
          --max-backoff 5m --non-retryable-exit-code 3 --run-timeout 30m \\
          --misfire fire_all --catchup-window 6h --tag gpu=yes --keep-runs 100
      schedctl job create report --cron '0 3 * * *' --after extract,load
      schedctl job create publish --after report --trigger-rule all_done
    """
    kinds = sum(p[k] is not None for k in ("cron", "every", "at", "in_"))
    if kinds != 1 and not (kinds == 0 and any(x.strip(", ") for x in p["depends_on"])):
        raise click.UsageError(
            "give exactly one of --cron EXPR, --every DURATION, --at TIME or --in DURATION "
            "(or none with --after JOB: the job then runs whenever its upstreams are satisfied)"
        )
    if p["cron"] is None and p["tz"] is not None:
        raise click.UsageError("--tz applies to --cron only; put the UTC offset into --at")
    o = overlay_from_flags(p, common.now_ms(), update=False)
    # Only what was given is passed on (a job without retry options keeps the cluster's fixed
    # backoff, no policy); the basic keywords are always there, as the SDK's create_job takes them.
    kw: dict[str, Any] = {
        "cron": o.pop("cron", None),
        "tz": o.pop("tz", None) or "UTC",
        "at_ms": o.pop("at_ms", None),
        "every_ms": o.pop("every_ms", None),
        "jitter_ms": o.pop("jitter_ms", 0),
        "queue": o.pop("queue", None) or "default",
        "payload": o.pop("payload", ""),
        "max_attempts": o.pop("max_attempts", 0),
    }
    kw.update(o)
    rid = request_id or new_request_id()
    try:
        with options_named():
            created = s.client().create_job(name, request_id=rid, **kw)
    except errors.SchedError as exc:
        raise with_request_id_note(exc, rid) from None
    s.emit(created, lambda: output.job_block(created))


# ---- update ------------------------------------------------------------------------------------


@job.command("update")
@click.argument("name", shell_complete=job_names)
@definition_options
@click.option(
    "--expect-version",
    type=click.IntRange(min=1),
    metavar="N",
    help="Refuse the update unless the job is at version N (default: the version read "
    "just before, so a concurrent change is detected).",
)
@click.option("--force", is_flag=True, help="Update whatever the job's version is now.")
@click.option("--request-id", metavar="ID", help="Makes the update safe to retry.")
@pass_settings
def job_update(
    s: Settings,
    name: str,
    expect_version: int | None,
    force: bool,
    request_id: str | None,
    **p: Any,
) -> None:
    """Change job NAME: the options given replace those settings, the rest stay as they are.

    schedctl reads the job, applies the options and sends the whole definition with the version
    it read: if someone changed the job in between, the update is refused (exit 1) and nothing
    changes; --force skips that check. The job's runs stay. An unchanged schedule continues its
    slot sequence; a new one starts at its first slot after now. A new kind of schedule (--cron,
    --every, --at/--in) replaces the old one.

    \b
    Examples:
      schedctl job update nightly --cron '30 3 * * *'
      schedctl job update nightly --misfire skip --overlap forbid --priority 50
      schedctl job update etl --tag gpu- --tag zone=eu --keep-for 7d
      schedctl job update etl --queue slow --expect-version 4
    """
    if force and expect_version is not None:
        raise click.UsageError("give --expect-version N or --force, not both")
    now = common.now_ms()
    o = overlay_from_flags(p, now, update=True)
    if not o:
        raise click.UsageError("nothing to change: give at least one option (see --help)")
    current = s.client().get_job(name)
    base = spec.job_to_spec(current)
    merged = spec.merge_flags(base, o)
    if "tz" in o and kind_of(merged) != "cron":
        raise click.UsageError("--tz applies to cron schedules only")
    changes = spec.diff(merged, base)
    version = output.as_pb(current).version
    if not changes:
        s.emit(
            {"name": name, "changed": False, "version": version, "changes": [], "job": current},
            lambda: f"job {name} unchanged (version {version})",
        )
        return
    expect = 0 if force else (expect_version if expect_version is not None else version)
    try:
        with options_named():
            updated = s.client().update_job(
                name,
                expect_version=expect,
                request_id=request_id or new_request_id(),
                **spec.to_kwargs(merged),
            )
    except errors.FailedPrecondition as exc:
        if expect:
            exc.message = (
                f"{exc.message} (the update expected version {expect}; check "
                f"`schedctl job get {name}` and run it again, or use --force)"
            )
            exc.args = (exc.message,)
        raise
    new_version = output.as_pb(updated).version
    doc = {
        "name": name,
        "changed": True,
        "version": new_version,
        "changes": [{"field": f, "old": a, "new": b} for f, a, b in changes],
        "job": updated,
    }

    def human() -> str:
        lines = [f"updated job {name} (version {version} -> {new_version})"]
        lines += [f"  {f}: {spec.show(f, a)} -> {spec.show(f, b)}" for f, a, b in changes]
        return "\n".join(lines)

    s.emit(doc, human)


# ---- read ------------------------------------------------------------------------------------


@job.command("get")
@click.argument("name", shell_complete=job_names)
@pass_settings
def job_get(s: Settings, name: str) -> None:
    """Show job NAME with all its settings and policies.

    \b
    Example:
      schedctl job get nightly
      schedctl job get nightly --json | jq .version
    """
    j = s.client().get_job(name)
    s.emit(j, lambda: output.job_block(j))


@job.command("list")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", default=1000, show_default=True)
@pass_settings
def job_list(s: Settings, limit: int) -> None:
    """List jobs in name order.

    \b
    Example:
      schedctl job list
      schedctl job list --json | jq -r '.[].name'
    """
    client = s.client()
    if s.json:
        # One JSON array, written page by page as the pages arrive: the first jobs show at
        # once and memory stays bounded, whatever --limit is.
        output.stream_json_list(_job_pages(client, limit), click.echo)
        return
    jobs = client.list_jobs(limit=limit)
    s.emit(
        jobs,
        lambda: (
            output.table(output.JOB_HEADERS, [output.job_row(j) for j in jobs])
            if jobs
            else "no jobs"
        ),
    )


#: jobs per ListJobs page of a streamed listing
JOB_PAGE = 1000


def _job_pages(client: Any, limit: int) -> Iterator[list[Any]]:
    """Up to ``limit`` jobs in name order, one page at a time."""
    after = ""
    while limit > 0:
        want = min(JOB_PAGE, limit)
        page = client.list_jobs(limit=want, after=after)
        if not page:
            return
        yield page
        limit -= len(page)
        if len(page) < want or page[-1].name <= after:
            return
        after = page[-1].name


@job.command("delete")
@click.argument("name", shell_complete=job_names)
@click.option(
    "--force",
    is_flag=True,
    help="Also when other jobs depend on it: its name is removed from their --after lists.",
)
@pass_settings
def job_delete(s: Settings, name: str, force: bool) -> None:
    """Delete job NAME; its runs that have not started are cancelled.

    A job that others depend on (--after NAME) is not deleted: the error names them (exit 1).
    --force deletes it anyway and removes it from their dependencies, and says so.

    \b
    Examples:
      schedctl job delete nightly
      schedctl job delete extract --force
    """
    client = s.client()
    unlinked = list(
        (client.delete_job(name, force=True) if force else client.delete_job(name)) or []
    )

    def human() -> str:
        text = f"deleted job {name}"
        if unlinked:
            text += f"; removed it from the dependencies (--after) of {', '.join(unlinked)}"
        return text

    doc: dict[str, Any] = {"name": name, "deleted": True}
    if force:
        doc["unlinked"] = unlinked
    s.emit(doc, human)


@job.command("pause")
@click.argument("name", shell_complete=job_names)
@pass_settings
def job_pause(s: Settings, name: str) -> None:
    """Stop scheduling new firings of job NAME (runs already created still run).

    \b
    Example:
      schedctl job pause nightly
    """
    j = s.client().pause_job(name)
    s.emit(j, lambda: output.job_block(j))


@job.command("resume")
@click.argument("name", shell_complete=job_names)
@click.option(
    "--skip-missed",
    is_flag=True,
    help="Record the slots missed while paused as skipped and continue after now "
    "(default: the job's misfire policy decides).",
)
@pass_settings
def job_resume(s: Settings, name: str, skip_missed: bool) -> None:
    """Schedule job NAME again. The slots missed while it was paused are handled by its misfire
    policy (skip: none run; fire_once: one run; fire_all: each in the catch-up window), or all
    recorded as skipped with --skip-missed.

    \b
    Example:
      schedctl job resume nightly
      schedctl job resume nightly --skip-missed
    """
    j = s.client().resume_job(name, skip_missed=skip_missed)
    s.emit(j, lambda: output.job_block(j))


@job.command("trigger")
@click.argument("name", shell_complete=job_names)
@click.option(
    "--overlap",
    type=click.Choice(list(policies.OVERLAP_NAMES), case_sensitive=False),
    help="Override the job's overlap policy for this run (allow: run even while another "
    "run is active).",
)
@click.option("--request-id", metavar="ID", help="Makes the trigger safe to retry.")
@pass_settings
def job_trigger(s: Settings, name: str, overlap: str | None, request_id: str | None) -> None:
    """Fire job NAME now, once, in addition to its schedule. When its overlap policy skips the
    run, the skip record is shown (state skipped) and the exit code is still 0.

    \b
    Example:
      schedctl job trigger nightly
      schedctl job trigger nightly --overlap allow
    """
    rid = request_id or new_request_id()
    kw: dict[str, Any] = {"overlap": overlap.lower()} if overlap else {}
    try:
        run = s.client().trigger_job(name, request_id=rid, **kw)
    except errors.SchedError as exc:
        raise with_request_id_note(exc, rid) from None

    def human() -> str:
        r = output.as_pb(run)
        if r.state == types_pb2.RUN_STATE_SKIPPED:
            return f"job {name} not triggered: run {r.run_id} skipped ({output.skip_text(r)})"
        return f"triggered job {name}: run {r.run_id} ({output.run_state(r.state)})"

    s.emit(run, human)


@job.command("preview")
@click.argument("name", required=False, shell_complete=job_names)
@click.option("--cron", metavar="EXPR", help="Preview a cron expression instead of job NAME.")
@click.option("--tz", metavar="ZONE", help="IANA time zone of --cron (default UTC).")
@click.option("--every", metavar="DURATION", help="Preview a fixed interval instead of job NAME.")
@click.option("--jitter", metavar="DURATION", help="With --cron/--every: the jitter to apply.")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--after", metavar="TIME", help="Start after this time (default: now).")
@pass_settings
def job_preview(
    s: Settings,
    name: str | None,
    cron: str | None,
    tz: str | None,
    every: str | None,
    jitter: str | None,
    count: int,
    after: str | None,
) -> None:
    """List the next firing times of job NAME (its stored schedule, jitter and bounds), or of a
    --cron / --every schedule before you create it. Computed locally with the same code the
    leader uses.

    \b
    Examples:
      schedctl job preview nightly --count 5
      schedctl job preview --cron '30 2 * * *' --tz Europe/Berlin --after 2026-03-28T00:00:00Z
      schedctl job preview --every 90s --jitter 10s
    """
    from schedd.sched.schedule import preview
    from schedd.server import validate

    now = common.now_ms()
    start = parse_time(after, "--after", now) if after else now
    if sum(x is not None for x in (name, cron, every)) != 1:
        raise click.UsageError("give exactly one of NAME, --cron EXPR or --every DURATION")
    if name is not None:
        if tz or jitter:
            raise click.UsageError(
                "--tz and --jitter apply to --cron/--every; a job's own settings are used"
            )
        job_name, schedule = name, output.as_pb(s.client().get_job(name)).schedule
        if not schedule.kind:
            raise errors.FailedPrecondition(
                f"name: job {name!r} has no schedule: it runs when its upstreams are "
                f"satisfied (schedctl job deps {name})"
            )
    else:
        if every is not None and tz:
            raise click.UsageError("--tz applies to --cron only")
        raw = (
            types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron, timezone=tz or "UTC")
            if cron is not None
            else types_pb2.Schedule(
                kind=types_pb2.SCHEDULE_KIND_INTERVAL,
                every_ms=parse_duration(every or "", "--every"),
            )
        )
        raw.jitter_ms = parse_duration(jitter, "--jitter") if jitter else 0
        with options_named():
            schedule = validate.schedule(raw, start)
        job_name = ""
    times = preview(schedule, start, count, name=job_name)
    s.emit(
        [{"due_ms": t, "due_at": format_ms(t)} for t in times],
        lambda: "\n".join(format_ms(t) for t in times) or "(no further firings)",
    )


@job.command("explain")
@click.argument("name", shell_complete=job_names)
@click.option(
    "--at",
    "at",
    metavar="TIME",
    default=None,
    help="The time in question: RFC 3339, now, or relative (-1h). A time between slots is "
    "answered about the slot nearest before it. Default: the last --last slots.",
)
@click.option(
    "--last",
    "last",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    metavar="N",
    help="Without --at: how many of the most recent slots to explain, newest first.",
)
@pass_settings
def job_explain(s: Settings, name: str, at: str | None, last: int) -> None:
    """Why did (or will) job NAME run or not at TIME? Prints the verdict (ran, running, skipped,
    not_due_yet, ...), a sentence, the slot concerned, the slots around TIME and the run or skip
    records that decided it. TIME need not be a slot: the slot at or before it is explained
    (the sentence says which). Without --at: one line for each of the last N slots.

    \b
    Examples:
      schedctl job explain nightly
      schedctl job explain nightly --at 2026-03-29T01:00:00Z
      schedctl job explain poll --at -10m --json
    """
    now = common.now_ms()
    if at is None:
        _explain_last(s, name, now, last)
        return
    at_ms = parse_time(at, "--at", now)
    resp = s.client().explain_job(name, at_ms)

    def human() -> str:
        r = output.as_pb(resp)
        head = output.block(
            [
                ("verdict", _verdict(r)),
                ("why", r.explanation or "-"),
                ("asked about", format_ms(at_ms)),
                ("slot", output.when(r.slot_ms)),
                ("previous slot", output.when(r.previous_slot_ms)),
                ("next slot", output.when(r.next_slot_ms)),
            ]
        )
        return f"{head}\n\n{output.runs_table(list(r.runs), 'no run or skip records')}"

    s.emit(resp, human)


def _verdict(r: Any) -> str:
    """The verdict word, with the cause of a stuck pending run: ``pending (no_worker)``."""
    cause = getattr(r, "pending_cause", "")
    return (r.verdict or "-") + (f" ({cause})" if cause else "")


def _explain_last(s: Settings, name: str, now: int, count: int) -> None:
    """Explain the ``count`` slots at or before ``now``, newest first: each answer names its
    slot, and the next question is the millisecond before it."""
    answers: list[Any] = []
    at = now
    while len(answers) < count and at > 0:
        resp = s.client().explain_job(name, at)
        if resp.slot_ms:
            answers.append(resp)
            at = resp.slot_ms - 1
        elif resp.verdict == "dst_gap" and resp.previous_slot_ms:
            at = resp.previous_slot_ms  # a skipped local time: go on from the slot before it
        else:
            if not answers:
                answers.append(resp)  # no slot at all before now: say so
            break

    def why(r: Any, asked: int) -> str:
        # Each question but the first was the millisecond before a slot: the sentence naming
        # the slot picked says nothing the SLOT column does not.
        return r.explanation.removeprefix(between_slots(asked, r.slot_ms)) or "-"

    def human() -> str:
        asked = [now] + [a.slot_ms - 1 for a in answers[:-1]]
        rows = [
            [output.when(r.slot_ms), _verdict(r), why(r, q)]
            for r, q in zip((output.as_pb(a) for a in answers), asked, strict=True)
        ]
        return output.table(("SLOT", "VERDICT", "WHY"), rows)

    s.emit(answers, human)


# ---- backfill --------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    WIDTH = 30

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.drawn = False

    def update(self, done: int, total: int, created: int) -> None:
        if not self.enabled:
            return
        frac = min(1.0, done / total) if total else 1.0
        filled = int(frac * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        click.echo(
            f"\r[{bar}] {frac:4.0%} {done}/{total} slots, {created} runs created",
            nl=False,
            err=True,
        )
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            click.echo("\r\x1b[2K", nl=False, err=True)
            self.drawn = False


@job.command("backfill")
@click.argument("name", shell_complete=job_names)
@click.option(
    "--from",
    "from_",
    metavar="TIME",
    required=True,
    help="First slot time (inclusive): RFC 3339, now, or relative (-7d).",
)
@click.option("--to", metavar="TIME", required=True, help="Last slot time (inclusive).")
@click.option(
    "--overlap",
    type=click.Choice(list(policies.OVERLAP_NAMES), case_sensitive=False),
    help="Overlap policy for the backfilled runs (default allow).",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    metavar="N",
    help="Runs created per request.",
)
@click.option(
    "--with-downstream",
    is_flag=True,
    help="Also the jobs that depend on it: scheduled ones get a run for each slot matched to "
    "a backfilled one, jobs without a schedule run as the backfilled runs end.",
)
@pass_settings
def job_backfill(
    s: Settings,
    name: str,
    from_: str,
    to: str,
    overlap: str | None,
    chunk: int,
    with_downstream: bool,
) -> None:
    """Create runs for the slots of job NAME from --from to --to (inclusive), chunk by chunk.

    Slots that already have a run or a skip record are left alone, so running it again is safe.
    A progress bar is drawn on stderr when it is a terminal; a summary line is always printed.
    Ctrl-C stops after the current chunk is sent: the runs created so far stay, and the message
    says how to continue (exit 130).

    \b
    Examples:
      schedctl job backfill nightly --from 2026-01-01T00:00:00Z --to 2026-01-31T23:59:59Z
      schedctl job backfill poll --from -6h --to now --overlap forbid --chunk 200
      schedctl job backfill extract --from -3d --to now --with-downstream
    """
    now = common.now_ms()
    from_ms = parse_time(from_, "--from", now)
    to_ms = parse_time(to, "--to", now)
    if to_ms < from_ms:
        raise errors.InvalidArgument(
            "--to", f"{format_ms(to_ms)} is before --from {format_ms(from_ms)}"
        )
    created = existing = chunks = downstream = 0
    total = 0
    next_from = from_ms
    bar = Progress(sys.stderr.isatty())
    client = s.client()
    try:
        for resp in client.backfill(
            name,
            from_ms,
            to_ms,
            chunk=chunk,
            overlap=overlap.lower() if overlap else 0,
            **({"with_downstream": True} if with_downstream else {}),
        ):
            r = output.as_pb(resp)
            chunks += 1
            created += r.created
            downstream += r.downstream_created
            existing += r.existing
            total = total or int(r.total_slots)
            next_from = int(r.next_from_ms)
            bar.update(created + existing, total, created)
    except KeyboardInterrupt:
        bar.clear()
        click.echo(
            f"interrupted: {created} runs created in {chunks} chunks stay in place; continue with: "
            f"schedctl job backfill {name} --from {format_ms(next_from)} --to {format_ms(to_ms)}"
            + (f" --overlap {overlap.lower()}" if overlap else "")
            + (" --with-downstream" if with_downstream else ""),
            err=True,
        )
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    bar.clear()
    doc = {
        "name": name,
        "from_ms": from_ms,
        "from_at": format_ms(from_ms),
        "to_ms": to_ms,
        "to_at": format_ms(to_ms),
        "total_slots": total,
        "created": created,
        "existing": existing,
        "chunks": chunks,
    }
    if with_downstream:
        doc["downstream_created"] = downstream
    s.emit(
        doc,
        lambda: (
            f"backfilled job {name} from {format_ms(from_ms)} to {format_ms(to_ms)}: "
            f"{created} runs created, {existing} slots already had a run or skip "
            f"record ({total} slots, {chunks} chunks)"
            + (f"; {downstream} runs created for downstream jobs" if with_downstream else "")
        ),
    )


# ---- deps ----------------------------------------------------------------------------------------


@job.command("deps")
@click.argument("name", shell_complete=job_names)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", "dot", "mermaid"], case_sensitive=False),
    default="tree",
    show_default=True,
    help="tree: upstreams and downstreams with their last outcome; dot (Graphviz) or mermaid: "
    "the graph as text to render.",
)
@pass_settings
def job_deps(s: Settings, name: str, fmt: str) -> None:
    """Show the dependency graph around job NAME: what it waits for (upstream, --after) and
    what waits for it (downstream), transitively, with each job's last outcome and its runs
    waiting for upstreams. Chain edges (--on-success, --on-failure) are shown too.

    \b
    Examples:
      schedctl job deps report
      schedctl job deps report --format mermaid
      schedctl job deps report --format dot | dot -Tsvg > report.svg
    """
    nodes = s.client().dependencies(name)
    graph = deps_view.Graph.of(nodes)
    render = {"tree": graph.tree, "dot": graph.dot, "mermaid": graph.mermaid}[fmt.lower()]
    s.emit(nodes, render)
