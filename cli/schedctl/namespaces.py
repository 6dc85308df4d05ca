"""``schedctl namespace ...``: quotas and usage of namespaces."""

from __future__ import annotations

import click

from schedctl import output
from schedctl.common import Settings, pass_settings
from schedd.models import Namespace

HEADERS = ["NAMESPACE", "JOBS", "MAX JOBS", "RUNS", "MAX RUNS", "UPDATED", "BY"]


def _row(n: Namespace) -> list[str]:
    return [
        n.name,
        str(n.jobs),
        str(n.max_jobs) if n.max_jobs else "-",
        str(n.runs),
        str(n.max_runs) if n.max_runs else "-",
        output.when(n.updated_ms) if n.updated_ms else "-",
        n.updated_by or "-",
    ]


@click.group("namespace")
def namespace_group() -> None:
    """Namespaces partition jobs, runs and queues (docs/security.md). Every command acts in
    the namespace given by --namespace (default: 'default'); these show and set its quotas."""


@namespace_group.command("get")
@click.argument("name", required=False, default="")
@pass_settings
def namespace_get(s: Settings, name: str) -> None:
    """Quotas and usage of namespace NAME (default: the --namespace one). Needs the reader
    role there.

    \b
    Example:
      schedctl namespace get team-a
    """
    ns = s.client().get_namespace(name or s.namespace_name())
    s.emit(output.jsonable(ns), lambda: output.table(HEADERS, [_row(ns)]))


@namespace_group.command("list")
@pass_settings
def namespace_list(s: Settings) -> None:
    """The namespaces that have quotas (cluster-admin).

    \b
    Example:
      schedctl namespace list
    """
    items = s.client().list_namespaces()
    s.emit(
        {"namespaces": output.jsonable(items)},
        lambda: output.table(HEADERS, [_row(n) for n in items]) if items else "no quotas set",
    )


@namespace_group.command("set-quota")
@click.argument("name")
@click.option(
    "--max-jobs", type=click.IntRange(min=0), default=0, show_default=True, help="0 = no limit."
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Stored runs (any state, skip records included); 0 = no limit.",
)
@pass_settings
def namespace_set_quota(s: Settings, name: str, max_jobs: int, max_runs: int) -> None:
    """Set the quotas of namespace NAME (cluster-admin). Over max-jobs a create is refused;
    at max-runs a trigger or backfill is refused and a scheduled slot is recorded as skipped
    (reason quota) until retention frees room.

    \b
    Example:
      schedctl namespace set-quota team-a --max-jobs 500 --max-runs 100000
    """
    ns = s.client().set_namespace_quota(name, max_jobs=max_jobs, max_runs=max_runs)
    s.emit(output.jsonable(ns), lambda: output.table(HEADERS, [_row(ns)]))
