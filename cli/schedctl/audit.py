"""``schedctl audit list``: the replicated audit trail of changes made through the API."""

from __future__ import annotations

import click

from schedctl import output
from schedctl.common import Settings, pass_settings


@click.group()
def audit() -> None:
    """Who changed what, when, with what outcome (cluster-admin)."""


@audit.command("list")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    metavar="N",
    help="Show the newest N records.",
)
@click.option("--principal", default="", metavar="WHO", help="Only this principal's changes.")
@click.option(
    "--target", default="", metavar="NAME", help="Only changes naming this job, run or token."
)
@pass_settings
def audit_list(s: Settings, limit: int, principal: str, target: str) -> None:
    """List changes made through the API, newest first: every create, update, delete, pause,
    resume, trigger, backfill, retry and token change, with its outcome. Refused calls are not
    here (they never reached the log): see the nodes' `event=denied` log lines.

    \b
    Examples:
      schedctl audit list --limit 20
      schedctl audit list --target nightly
      schedctl audit list --principal token:ci --json
    """
    records, _ = s.client().list_audit(limit, principal=principal, target=target)
    rows = [
        [
            output.when(r.at_ms),
            r.principal,
            r.action,
            r.target,
            r.code,
            r.message if r.code != "OK" else "",
        ]
        for r in records
    ]
    s.emit(
        {"records": output.jsonable(records)},
        lambda: (
            output.table(["WHEN", "WHO", "ACTION", "TARGET", "OUTCOME", "MESSAGE"], rows)
            if rows
            else "no audit records"
        ),
    )
