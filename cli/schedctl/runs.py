"""``schedctl run ...``: list (with skip records and ``--watch``), get and retry runs."""

from __future__ import annotations

from typing import Any

import click

from schedctl import common, output
from schedctl.common import Settings, pass_settings, watch_option, with_request_id_note
from schedd import errors
from schedd.client import new_request_id
from schedd.pb import types_pb2

#: run states by the word schedctl shows and accepts (``--state dead``)
RUN_STATES = {
    name.removeprefix("RUN_STATE_").lower(): value
    for name, value in types_pb2.RunState.items()
    if value != types_pb2.RUN_STATE_UNSPECIFIED
}


@click.group()
def run() -> None:
    """Inspect runs (one run per firing; attempts are retries of it; a skipped slot is a run
    record in state skipped)."""


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
    help="Only runs in this state; dead = the dead letters, skipped = the skip records "
    "(scans the runs).",
)
@watch_option()
@pass_settings
def run_list(
    s: Settings, job_name: str, limit: int, state: str | None, watch: float | None
) -> None:
    """List the newest runs, oldest first. ORIGIN says where a run came from (schedule,
    catchup, trigger, backfill, chain); REASON says why a skip record's slot did not fire
    (misfire, coalesced, overlap, paused, ...; "x12 until T" when it stands for a range).

    \b
    Examples:
      schedctl run list --job nightly --limit 20
      schedctl run list --state dead
      schedctl run list --state skipped --job poll
      schedctl run list --job nightly --watch 5
    """
    kw: dict[str, Any] = {} if state is None else {"state": RUN_STATES[state]}

    def job_exists() -> None:
        # ListRuns filters by name and cannot tell "no runs" from "no such job": ask.
        try:
            s.client().get_job(job_name)
        except errors.NotFound:
            raise errors.NotFound(f"--job: no job named {job_name!r}") from None

    def render() -> tuple[object, Any]:
        runs = s.client().list_runs(job=job_name, limit=limit, **kw)
        if not runs and job_name:
            job_exists()
        return runs, lambda: output.runs_table(runs)

    if watch is not None:
        if job_name:
            job_exists()  # once: a typo is not redrawn as an empty table forever
        title = (
            "schedctl run list"
            + (f" --job {job_name}" if job_name else "")
            + (f" --state {state}" if state else "")
        )
        common.watch(s, watch, title, render)
        return
    doc, human = render()
    s.emit(doc, human)


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
    s.emit(r, lambda: output.run_block(r))


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
        raise with_request_id_note(exc, rid) from None

    def human() -> str:
        rr = output.as_pb(r)
        return f"retrying run {rr.run_id}: attempt {rr.attempt} ({output.run_state(rr.state)})"

    s.emit(r, human)
