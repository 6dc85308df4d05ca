"""``schedctl job apply -f FILE`` and ``schedctl job export``: jobs declared in a file.

Apply is idempotent: for each job in the file, schedctl reads the job, compares the file's
definition with it (:func:`schedctl.spec.diff`: the file's keys only, the schedule as a whole,
values normalised as the server stores them) and creates it, updates it (with the version it
read, so a concurrent change is refused) or leaves it alone ("unchanged"). Export writes the jobs
in the same format, so export -> apply changes nothing.

A dry run checks each job it would create or update with the leader's own validation
(:func:`schedd.server.validate.create_job`, on the request the real apply would send), so it
refuses what the apply would refuse (a one-shot ``at`` in the past, a bad cron, ...).

Jobs to create are sent in bulk (CreateJobs, up to 1,000 per call): one replicated entry per
call instead of one per job.

Failure contract: the whole file is checked before anything is sent (a bad key or value is an
InvalidArgument naming the file, the job and the key, and nothing changes). A server error stops
at that job: the jobs before it are done and reported, the rest are not tried; fix and re-run.
A bulk call is all or nothing at validation, so a job the server refuses stops the apply with
nothing of its call created (the calls before it are done and reported).
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from schedctl import common, output, spec, tomlout
from schedctl.common import Settings, pass_settings
from schedctl.completion import job_names
from schedctl.jobs import job
from schedd import errors
from schedd.client import new_request_id
from schedd.sdk import core
from schedd.server import validate

FORMATS = ("toml", "yaml", "json")


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        raise errors.InvalidArgument(
            "--format", "YAML needs PyYAML (pip install pyyaml); TOML works without it"
        ) from None
    return yaml


def format_of(path: str, given: str | None) -> str:
    """The file format: ``--format``, else the file's extension."""
    if given:
        return given
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        return "toml"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise errors.InvalidArgument(
        "--format",
        f"cannot tell the format of {path!r} from its name; give --format toml|yaml|json",
    )


def parse_entries(text: str, fmt: str, source: str) -> list[tuple[Any, str]]:
    """The job entries of a file's text, each with a ``where`` label for error messages.

    TOML: ``[[job]]`` tables. YAML and JSON: a list of mappings, or a mapping with a ``job``
    (or ``jobs``) list.
    """
    try:
        if fmt == "toml":
            doc: Any = tomllib.loads(text)
        elif fmt == "yaml":
            yaml = _yaml()
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise errors.InvalidArgument(
                    source, f"not valid YAML ({' '.join(str(exc).split())})"
                ) from None
        else:
            doc = json.loads(text) if text.strip() else None
    except tomllib.TOMLDecodeError as exc:
        raise errors.InvalidArgument(source, f"not valid TOML ({exc})") from None
    except json.JSONDecodeError as exc:
        raise errors.InvalidArgument(source, f"not valid JSON ({exc})") from None
    if doc is None:
        return []
    where_jobs = "[[job]] tables" if fmt == "toml" else "a list of jobs"
    if isinstance(doc, dict):
        extra = sorted(set(doc) - ({"job"} if fmt == "toml" else {"job", "jobs"}))
        if extra:
            raise errors.InvalidArgument(
                source, f"unknown top-level key {extra[0]!r}: jobs go in {where_jobs}"
            )
        doc = doc.get("job", doc.get("jobs", []))
    if not isinstance(doc, list):
        raise errors.InvalidArgument(source, f"expected {where_jobs}")
    return [(entry, f"{source}: job #{i + 1}") for i, entry in enumerate(doc)]


def load_specs(files: Iterable[str], fmt: str | None) -> list[tuple[str, spec.Spec]]:
    """Every job of every file, checked; InvalidArgument for a bad entry or a duplicate name."""
    out: list[tuple[str, spec.Spec]] = []
    seen: dict[str, str] = {}
    for path in files:
        if path == "-":
            text, source = sys.stdin.read(), "<stdin>"
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise errors.InvalidArgument(
                    "-f", f"cannot read {path!r} ({exc.strerror})"
                ) from None
            source = path
        file_fmt = fmt or ("toml" if path == "-" else format_of(path, None))
        for entry, where in parse_entries(text, file_fmt, source):
            name, sp = spec.from_entry(entry, where)
            if name in seen:
                raise errors.InvalidArgument(
                    where, f"job {name!r} is declared twice (also in {seen[name]})"
                )
            seen[name] = where
            out.append((name, sp))
    return out


def chain_order(specs: list[tuple[str, spec.Spec]]) -> list[tuple[str, spec.Spec]]:
    """File order, except that a job named by another's on_success / on_failure / depends_on
    comes first (the server needs the target or upstream to exist). A cycle keeps file order
    (the server refuses it)."""
    by_name = dict(specs)
    done: list[tuple[str, spec.Spec]] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in placed or name in visiting:
            return
        visiting.add(name)
        sp = by_name[name]
        for target in [sp.get("on_success"), sp.get("on_failure"), *sp.get("depends_on", [])]:
            if target and target in by_name:
                visit(target)
        visiting.discard(name)
        placed.add(name)
        done.append((name, by_name[name]))

    for name, _ in specs:
        visit(name)
    return done


def downstream_first(jobs: list[Any]) -> list[Any]:
    """``jobs`` (stored Jobs) in name order, except that a job comes after every one of them
    that depends on it (a job others depend on cannot be deleted before them)."""
    left = sorted(jobs, key=lambda j: j.name)
    names = {j.name for j in left}
    out: list[Any] = []
    while left:
        gone = {j.name for j in out}
        ready = [j for j in left if not (set(j.dependents) & names) - gone]
        if not ready:  # a cycle cannot be stored; keep going in name order
            ready = left[:1]
        out.append(ready[0])
        left.remove(ready[0])
    return out


def parse_selector(text: str) -> dict[str, str]:
    """``queue=Q,name=GLOB`` -> {"queue": "Q", "name": "GLOB"}."""
    sel: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in ("queue", "name") or not value.strip():
            raise errors.InvalidArgument(
                "--selector", f"{part.strip()!r} is not queue=NAME or name=GLOB"
            )
        sel[key] = value.strip()
    return sel


def _selected(job_: Any, sel: dict[str, str]) -> bool:
    if "queue" in sel and job_.queue != sel["queue"]:
        return False
    return "name" not in sel or fnmatch.fnmatchcase(job_.name, sel["name"])


def _change_doc(changes: list[tuple[str, Any, Any]]) -> list[dict[str, Any]]:
    return [{"field": f, "old": a, "new": b} for f, a, b in changes]


@job.command("apply")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="A .toml, .yaml/.yml or .json file of jobs; `-` reads stdin (TOML unless "
    "--format). Repeatable.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="The files' format (default: from the extension).",
)
@click.option(
    "--dry-run", is_flag=True, help="Change nothing; print what would change, field by field."
)
@click.option(
    "--prune",
    is_flag=True,
    help="Also delete the jobs matched by --selector that the files do not declare.",
)
@click.option(
    "--selector",
    metavar="queue=Q,name=GLOB",
    help="With --prune: which jobs the files own (required with --prune).",
)
@pass_settings
def job_apply(
    s: Settings,
    files: tuple[str, ...],
    fmt: str | None,
    dry_run: bool,
    prune: bool,
    selector: str | None,
) -> None:
    """Create or update the jobs declared in FILE, so that they match it. Idempotent: applying
    the same file again changes nothing and reports each job "unchanged".

    A job's keys are CreateJobRequest's field names (queue, payload, max_attempts, retry,
    misfire, overlap, priority, tags, keep_runs, max_runs, ...) plus friendly ones: cron, tz,
    every, at, jitter, start, end, dst_gap, dst_repeat, and durations written as strings ("90s",
    "1h30m") in the keys without _ms (run_timeout, misfire_grace, catchup_window,
    dispatch_timeout, keep_for). The schedule keys describe the whole schedule; any other key
    left out keeps the job's current value. docs/cli.md has the full list.

    \b
    jobs.toml:
      [[job]]
      name = "nightly"
      cron = "0 3 * * *"
      tz = "Europe/Berlin"
      misfire = "skip"
      retry = { max_attempts = 3, initial_backoff = "10s" }
      tags = { region = "eu" }

    \b
    Examples:
      schedctl job apply -f jobs.toml
      schedctl job apply -f jobs.yaml --dry-run
      schedctl job apply -f etl.toml --prune --selector queue=etl
    """
    if prune and not selector:
        raise click.UsageError(
            "--prune needs --selector queue=Q or name=GLOB: it deletes only the jobs it selects"
        )
    if selector and not prune:
        raise click.UsageError("--selector applies to --prune only")
    specs = chain_order(load_specs(files, fmt))
    sel = parse_selector(selector) if selector else None
    client = s.client()
    results: list[dict[str, Any]] = []
    creates = _Creates(client, results)
    doing = ""
    try:
        for name, sp in specs:
            doing = f"job {name!r}: "
            try:
                current: Any = client.get_job(name)
            except errors.NotFound:
                current = None
            if current is None:
                changes = spec.diff(sp, None)
                if dry_run:
                    check_like_the_leader(name, spec.to_kwargs(sp))
                else:  # sent in bulk, before the next update (which may chain to it)
                    creates.add(name, spec.to_kwargs(sp), _change_doc(changes))
                    continue
                action = "created"
            else:
                base = spec.job_to_spec(current)
                changes = spec.diff(sp, base)
                action = "updated" if changes else "unchanged"
                if changes and dry_run:
                    check_like_the_leader(name, spec.to_kwargs(spec.merge_file(base, sp)))
                elif changes:
                    doing = ""
                    creates.flush()
                    doing = f"job {name!r}: "
                    client.update_job(
                        name,
                        expect_version=output.as_pb(current).version,
                        request_id=new_request_id(),
                        **spec.to_kwargs(spec.merge_file(base, sp)),
                    )
            creates.line({"name": name, "action": action, "changes": _change_doc(changes)})
        doing = ""
        creates.flush()
        if sel is not None:
            declared = {name for name, _ in specs}
            doing = "--prune: "
            doomed = [
                output.as_pb(j)
                for j in client.list_jobs(limit=None)
                if output.as_pb(j).name not in declared and _selected(output.as_pb(j), sel)
            ]
            for jb in downstream_first(doomed):
                doing = f"--prune: job {jb.name!r}: "
                if not dry_run:
                    client.delete_job(jb.name)
                results.append({"name": jb.name, "action": "deleted", "changes": []})
    except errors.SchedError as exc:
        _report(s, results, dry_run)
        exc.message = f"{doing}{exc.message}" + (
            "; the jobs listed above were applied, the rest were not tried"
            if results and not dry_run
            else ""
        )
        exc.args = (exc.message,)
        raise
    _report(s, results, dry_run)


class _Creates:
    """The jobs ``job apply`` creates, sent in bulk (CreateJobs, at most 1,000 per call) and in
    file order: a run of creates is sent when an update comes next (it may chain to them) or at
    the end. Result lines keep file order: a line that follows pending creates waits for them.

    Failure contract, as with one create per call: a call with an invalid job creates nothing
    and its error names the job (``job 'x': schedule.cron: ...``); a job that fails when applied
    (e.g. created meanwhile by someone else) stops the apply after that call, the jobs it did
    create listed. Against a server or cluster without CreateJobs (an older version, or a
    rolling upgrade not finished) the jobs are created one call each."""

    def __init__(self, client: Any, results: list[dict[str, Any]]) -> None:
        self.client = client
        self.results = results
        self.pending: dict[str, dict[str, Any]] = {}  # name -> create_job's keyword arguments
        self.waiting: list[dict[str, Any]] = []  # result lines behind the pending creates
        self.bulk = True

    def add(self, name: str, definition: dict[str, Any], changes: list[dict[str, Any]]) -> None:
        self.pending[name] = {"request_id": new_request_id(), **definition}
        self.waiting.append({"name": name, "action": "created", "changes": changes})

    def line(self, result: dict[str, Any]) -> None:
        """A result line, in file order."""
        (self.waiting if self.pending else self.results).append(result)

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        lines, self.waiting = self.waiting, []
        done: set[str] = set()
        try:
            try:
                items = [
                    core.job_item(i, {"name": n, **d}) for i, (n, d) in enumerate(pending.items())
                ]
            except errors.InvalidArgument as exc:
                raise _named(exc, list(pending)) from None
            for chunk in core.job_batches(items):
                self._send(chunk, pending, done)
        finally:
            self.results.extend(
                line for line in lines if line["action"] != "created" or line["name"] in done
            )

    def _send(self, chunk: list[Any], pending: dict[str, dict[str, Any]], done: set[str]) -> None:
        if self.bulk:
            try:
                answers = self.client.create_jobs(chunk)
            except errors.InvalidArgument as exc:
                raise _named(exc, [item.name for item in chunk]) from None
            except errors.SchedError as exc:
                if not _no_bulk(exc):
                    raise
                self.bulk = False  # nothing was created: one call per job from here on
        if not self.bulk:
            for item in chunk:
                try:
                    self.client.create_job(item.name, **pending[item.name])
                except errors.SchedError as exc:
                    exc.message = f"job {item.name!r}: {exc.message}"
                    exc.args = (exc.message,)
                    raise
                done.add(item.name)
            return
        done.update(a.name for a in answers if a.ok)
        failed = [a for a in answers if not a.ok]
        if failed:
            first = failed[0]
            err = first.error or errors.Internal(first.message)
            more = ""
            if len(failed) > 1:
                names = ", ".join(repr(a.name) for a in failed[1:6])
                more = (
                    f" ({len(failed) - 1} more failed: {names}{', ...' if len(failed) > 6 else ''})"
                )
            err.message = f"job {first.name!r}: {first.message}{more}"
            err.args = (err.message,)
            raise err


def _named(exc: errors.InvalidArgument, names: list[str]) -> errors.InvalidArgument:
    """The bulk call's error with each ``jobs[i].`` written as that job's name, like a single
    create's error (``job 'x': schedule.cron: ...``)."""

    def name(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"job {names[i]!r}: " if i < len(names) else m.group(0)

    out = errors.InvalidArgument(exc.field, "")
    out.message = _ITEM.sub(name, exc.message)
    out.args = (out.message,)
    return out


_ITEM = re.compile(r"jobs\[(\d+)\]\.")


def _no_bulk(exc: errors.SchedError) -> bool:
    """Does ``exc`` say the server or cluster has no CreateJobs yet (an older version answers
    UNIMPLEMENTED, a cluster in a rolling upgrade FAILED_PRECONDITION naming the feature
    level)? Nothing was created then."""
    text = exc.message.lower()
    if isinstance(exc, errors.FailedPrecondition):
        return "feature level" in text and "createjobs" in text
    return isinstance(exc, errors.Internal) and (
        "unimplemented" in text or "method not found" in text
    )


def check_like_the_leader(name: str, definition: dict[str, Any]) -> None:
    """Validate the job definition that apply would send for ``name`` as the leader does: the
    SDK's request (:func:`schedd.sdk.core.create_job`, as ``Client.create_job`` builds it) through
    the server's :func:`schedd.server.validate.create_job` at this machine's time (an update
    validates its new definition the same way). InvalidArgument naming the field, like the
    server's answer to the real apply."""
    validate.create_job(core.create_job(name, None, definition).request, common.now_ms())


def _report(s: Settings, results: list[dict[str, Any]], dry_run: bool) -> None:
    counts = {
        a: sum(r["action"] == a for r in results)
        for a in ("created", "updated", "unchanged", "deleted")
    }
    doc = {"dry_run": dry_run, "jobs": results, "counts": counts}

    def human() -> str:
        lines = ["dry run: nothing was changed"] if dry_run else []
        for r in results:
            verb = r["action"]
            if dry_run and verb != "unchanged":
                verb = "would be " + verb
            lines.append(f"job {r['name']}: {verb}")
            for c in r["changes"]:
                if r["action"] == "created":
                    lines.append(f"  + {c['field']} = {spec.show(c['field'], c['new'])}")
                else:
                    lines.append(
                        f"  {c['field']}: {spec.show(c['field'], c['old'])} -> "
                        f"{spec.show(c['field'], c['new'])}"
                    )
        words = (
            {"created": "to create", "updated": "to update", "deleted": "to delete"}
            if dry_run
            else {}
        )
        summary = (
            ", ".join(f"{n} {words.get(a, a)}" for a, n in counts.items() if n) or "nothing to do"
        )
        lines.append(f"{len(results)} job{'' if len(results) == 1 else 's'}: {summary}")
        return "\n".join(lines)

    s.emit(doc, human)


@job.command("export")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=job_names)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(FORMATS),
    default="toml",
    show_default=True,
    help="Format of the file written to stdout (--json: json).",
)
@pass_settings
def job_export(s: Settings, names: tuple[str, ...], fmt: str) -> None:
    """Print jobs as a file for `job apply` (default: all jobs; applying it unchanged reports
    every job "unchanged"). Settings equal to the server's defaults are left out.

    \b
    Examples:
      schedctl job export > jobs.toml
      schedctl job export nightly etl -o yaml > jobs.yaml
      schedctl job export | schedctl job apply -f - --dry-run
    """
    client = s.client()
    jobs = [client.get_job(n) for n in names] if names else client.list_jobs(limit=None)
    entries = [spec.to_entry(output.as_pb(j).name, spec.job_to_spec(j)) for j in jobs]
    if s.json or fmt == "json":
        click.echo(output.dumps({"job": entries}))
    elif fmt == "yaml":
        click.echo(_yaml().safe_dump(entries, sort_keys=False, allow_unicode=True), nl=False)
    else:
        click.echo(
            "# schedctl job export: apply with `schedctl job apply -f FILE`\n\n"
            + tomlout.dumps({"job": entries}),
            nl=False,
        )
