"""``schedctl``: the command line for a schedd cluster.

Every failure becomes one line on stderr (``error: ...``) and one of the exit codes in
:data:`schedctl.common.EXIT_CODES`; no traceback reaches the user (set ``SCHEDCTL_DEBUG=1`` to
see one for an unexpected failure). The commands live in :mod:`schedctl.jobs`,
:mod:`schedctl.apply_cmd`, :mod:`schedctl.runs` and :mod:`schedctl.config_cmd`; this module holds
the top-level group, its error boundary, ``cluster``, ``worker`` and ``completion``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from schedctl import apply_cmd, common, output  # noqa: F401  (apply_cmd registers job apply/export)
from schedctl.audit import audit
from schedctl.common import (
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Settings,
    error_line,
    exit_code_for,
    json_option,
    pass_settings,
    watch_option,
)
from schedctl.common import fail_line as _fail
from schedctl.completion import context_names
from schedctl.config_cmd import config_group
from schedctl.jobs import job
from schedctl.members import leader_group, member_group
from schedctl.namespaces import namespace_group
from schedctl.runs import RUN_STATES, run
from schedctl.snapshot import snapshot
from schedctl.tokens import token
from schedd import errors
from schedd.client import Client  # the factory Settings uses; tests replace it here

__all__ = ["EXIT_CODES", "RUN_STATES", "Client", "cli", "error_line", "exit_code_for", "main"]

EPILOG = """\b
Exit codes:
  0    ok
  1    other error (failed precondition, e.g. a job changed since it was read; internal error)
  2    usage error or invalid argument (the message names the option or field)
  3    not found
  4    unavailable: no node or no leader reachable
  5    already exists
  6    aborted: stale fence
  7    outcome unknown: a write timed out and may or may not have been applied
  8    denied: no or bad credentials, or a missing role (docs/security.md)
  130  interrupted (Ctrl-C); --watch exits 0 on Ctrl-C

\b
Endpoints, first match wins: --endpoints, --context NAME, SCHEDD_ENDPOINTS, the config file's
current-context (see `schedctl config --help`).
"""


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
    metavar="HOST:PORT,...",
    help="gRPC addresses of the cluster's nodes (any subset works; the leader is found). "
    "Default: $SCHEDD_ENDPOINTS, or the current context's.",
)
@click.option(
    "--context",
    "context",
    metavar="NAME",
    envvar="SCHEDD_CONTEXT",
    show_envvar=True,
    shell_complete=context_names,
    help="Use the endpoints of this context from the config file.",
)
@click.option(
    "--namespace",
    "-n",
    "namespace",
    metavar="NAME",
    envvar="SCHEDD_NAMESPACE",
    show_envvar=True,
    help="Namespace of the jobs, runs and queues to act on. Default: the context's, else "
    "'default'.",
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
@click.option(
    "--wait-for",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=0.0,
    envvar="SCHEDCTL_WAIT_FOR",
    show_envvar=True,
    help="When no node can be reached at all, keep trying this many seconds (a cluster that is "
    "starting). Default: give up after one round, about a second (exit 4).",
)
@click.option(
    "--ca",
    metavar="FILE",
    help="CA certificate the nodes' certificates chain to. Default: $SCHEDD_CA, else the "
    "system's trusted roots.",
)
@click.option(
    "--cert",
    metavar="FILE",
    help="Client certificate, for clusters that require mutual TLS. Default: $SCHEDD_CERT.",
)
@click.option("--key", metavar="FILE", help="The client certificate's key. Default: $SCHEDD_KEY.")
@click.option(
    "--token-file",
    metavar="FILE",
    help="File holding an API token. Default: $SCHEDD_TOKEN, else $SCHEDD_TOKEN_FILE.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Plaintext, for nodes started with --insecure. Default: $SCHEDD_INSECURE=1.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    endpoints: str | None,
    context: str | None,
    namespace: str | None,
    as_json: bool,
    timeout: float,
    retry_for: float,
    wait_for: float,
    ca: str | None,
    cert: str | None,
    key: str | None,
    token_file: str | None,
    insecure: bool,
) -> None:
    """Operate a schedd cluster: jobs, runs, workers and cluster status.

    \b
    Quick start:
      schedd dev                                  # a local 3-node cluster with TLS and a token
      source .schedd-dev/env                      # endpoints, CA, certificate, token
      schedctl job create hello --cron '*/5 * * * * *'
      schedctl worker run -- echo hello
      schedctl run list --job hello
    """
    settings = Settings(
        endpoints=endpoints,
        json=as_json,
        timeout=timeout,
        retry_for=retry_for,
        wait_for=wait_for,
        context=context,
        client_factory=Client,
        tls={"ca": ca, "cert": cert, "key": key, "token_file": token_file, "insecure": insecure},
        namespace=namespace,
    )
    ctx.obj = settings
    ctx.call_on_close(settings.close)


cli.add_command(job)
cli.add_command(run)
cli.add_command(config_group)
cli.add_command(token)
cli.add_command(audit)
cli.add_command(namespace_group)
cli.add_command(snapshot)
cli.add_command(member_group)
cli.add_command(leader_group)


# ---- cluster -------------------------------------------------------------------------------


@cli.group()
def cluster() -> None:
    """Cluster membership and health."""


@cluster.command("status")
@watch_option()
@pass_settings
def cluster_status(s: Settings, watch: float | None) -> None:
    """Show every node's Raft status: id, role, term, commit and applied index, leader.

    Exits 4 when no node answers (with --watch: shows it and keeps watching).

    \b
    Example:
      schedctl cluster status
      schedctl cluster status --watch 1
      schedctl cluster status --json | jq '.[] | select(.status.role == "leader")'
    """

    def render() -> tuple[object, Callable[[], str]]:
        reports = s.client().cluster_status()
        return _status_docs(reports), lambda: _status_table(reports)

    if watch is not None:
        common.watch(s, watch, "schedctl cluster status", render)
        return
    reports = s.client().cluster_status()
    s.emit(_status_docs(reports), lambda: _status_table(reports))
    if not any(st is not None for _, st, _ in reports):
        raise errors.Unavailable(
            f"no node reachable at {','.join(ep for ep, _, _ in reports)}: "
            "is the cluster running? (`schedd dev` starts a local one; check SCHEDD_ENDPOINTS)"
        )


def _status_docs(reports: Sequence[tuple[str, Any, str]]) -> list[dict[str, Any]]:
    return [
        {"endpoint": ep, "reachable": st is not None, "error": err, "status": st}
        for ep, st, err in reports
    ]


def _status_table(reports: Sequence[tuple[str, Any, str]]) -> str:
    # WORKERS: the worker streams attached to the leader (followers hold none: "-").
    # PID and UPTIME: which process answered, and since when (a restarted node shows).
    headers = ["NODE", "ROLE", "TERM", "COMMIT", "APPLIED", "LEADER", "WORKERS", "PID", "UPTIME"]
    headers.append("GRPC")
    now_ms = int(time.time() * 1000)
    down = any(st is None for _, st, _ in reports)
    unsafe = any(st is not None and getattr(st, "unsafe_no_fsync", False) for _, st, _ in reports)
    sick = any(st is not None and getattr(st, "not_serving", False) for _, st, _ in reports)
    noted = down or unsafe or sick
    if noted:
        headers.append("NOTE")
    rows: list[list[object]] = []
    for ep, st, err in reports:
        if st is None:
            row: list[object] = ["-", "unreachable", "-", "-", "-", "-", "-", "-", "-", ep, err]
        else:
            row = [
                st.node_id or "-",
                st.role or "-",
                st.term,
                st.commit_index,
                st.applied_index,
                st.leader_id or "-",
                st.workers if st.role == "leader" else "-",
                getattr(st, "pid", 0) or "-",
                _uptime(now_ms, getattr(st, "started_ms", 0)),
                st.grpc_address or ep,
            ]
            if noted:
                notes = []
                if getattr(st, "not_serving", False):
                    reason = getattr(st, "not_serving_reason", "") or "no working majority"
                    notes.append(f"NOT SERVING: {reason}")
                if getattr(st, "unsafe_no_fsync", False):
                    notes.append("UNSAFE: --unsafe-no-fsync (writes not on disk when acknowledged)")
                row.append("; ".join(notes))
        rows.append(row)
    return output.table(headers, rows)


def _uptime(now_ms: int, started_ms: int) -> str:
    """``3m12s`` since ``started_ms`` (``-``: a node that does not say)."""
    if not started_ms:
        return "-"
    return output.duration(max(0, now_ms - started_ms) // 1000 * 1000, "0s")


# ---- workers -------------------------------------------------------------------------------


@cli.group()
def worker() -> None:
    """Run workers that execute firings, and list the attached ones."""


@worker.command("list")
@watch_option()
@pass_settings
def worker_list(s: Settings, watch: float | None) -> None:
    """List the workers attached to the leader for this namespace: id, who attached it, queues,
    tags, leases held / concurrency, the jobs it runs (* = any), connected since, last seen.
    DRAINING workers are stopping and take no new firings.

    \b
    Example:
      schedctl worker list
      schedctl worker list --json | jq '.[] | {worker_id, run_ids}'
    """

    def render() -> tuple[object, Callable[[], str]]:
        workers = s.client().list_workers()
        return workers, lambda: _workers_table(workers)

    if watch is not None:
        common.watch(s, watch, "schedctl worker list", render)
        return
    doc, human = render()
    s.emit(doc, human)


def _workers_table(workers: Sequence[Any]) -> str:
    if not workers:
        return (
            "no workers attached to the leader for this namespace "
            "(start one: schedctl worker run --queue QUEUE -- CMD)"
        )
    now_ms = int(time.time() * 1000)
    rows = [
        [
            w.worker_id + (" (draining)" if w.draining else ""),
            w.principal,
            ",".join(w.queues) or "-",
            ",".join(f"{k}={v}" for k, v in sorted(w.tags.items())) or "-",
            f"{w.leases}/{w.concurrency}",
            ",".join(w.jobs) or "*",
            output.when(w.connected_ms),
            f"{output.duration(max(0, now_ms - w.last_seen_ms), '0s')} ago",
        ]
        for w in workers
    ]
    headers = ["WORKER", "PRINCIPAL", "QUEUES", "TAGS", "LEASES", "JOBS", "SINCE", "LAST SEEN"]
    return output.table(headers, rows)


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
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="A tag this worker carries; jobs with tags go only to workers carrying all of them. Repeat.",
)
@click.option(
    "--job",
    "jobs",
    multiple=True,
    metavar="NAME",
    help="Run CMD only for this job (the leader sends no other firings); repeat for several "
    "(default: every job of the queues).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM, how long running commands get to finish before their leases are released.",
)
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@pass_settings
def worker_run(
    s: Settings,
    queues: tuple[str, ...],
    concurrency: int,
    worker_id: str | None,
    tags: tuple[str, ...],
    jobs: tuple[str, ...],
    drain_timeout: float,
    argv: tuple[str, ...],
) -> NoReturn:
    """Run CMD once per firing; exit status 0 means success.

    The command gets SCHEDD_JOB, SCHEDD_RUN_ID, SCHEDD_SCHEDULED_AT, SCHEDD_ATTEMPT and
    SCHEDD_FENCE in its environment. Stop it with Ctrl-C.

    \b
    Example:
      schedctl worker run --queue default --concurrency 4 -- sh -c 'echo "$SCHEDD_JOB"'
      schedctl worker run --queue gpu --tag gpu=a100 --drain-timeout 60 -- ./train.sh
      schedctl worker run --queue reports --job nightly-report -- ./send-report.sh
    """
    endpoints = s.endpoint_list()
    offered: dict[str, str] = {}
    for t in tags:
        key, sep, value = t.partition("=")
        if not sep or not key:
            raise errors.InvalidArgument("--tag", f"{t!r} is not KEY=VALUE")
        offered[key] = value
    try:
        from schedd.agent.shell import run_shell_worker
    except ImportError as exc:
        raise errors.Internal(
            f"the shell worker is not available in this install ({exc})"
        ) from None
    code = run_shell_worker(
        endpoints,
        list(queues) or ["default"],
        concurrency,
        list(argv),
        worker_id,
        tags=offered,
        drain_timeout=drain_timeout,
        credentials=s.credentials(),
        namespace=s.namespace_name(),
        jobs=list(jobs),
    )
    raise click.exceptions.Exit(int(code))


# ---- completion ----------------------------------------------------------------------------


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (click's completion: commands, options and
    choices).

    \b
    Example:
      schedctl completion bash > ~/.local/share/bash-completion/completions/schedctl
      schedctl completion zsh > "${fpath[1]}/_schedctl"
      schedctl completion fish > ~/.config/fish/completions/schedctl.fish
      eval "$(schedctl completion bash)"          # this shell only
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise errors.InvalidArgument("SHELL", f"no completion for {shell}")
    click.echo(cls(cli, {}, "schedctl", "_SCHEDCTL_COMPLETE").source())


# ---- --json after any command ----------------------------------------------------------------

#: commands that print no document, so a per-command --json would mean nothing
_NO_JSON = {("completion",), ("worker", "run")}


def _add_json_flags(group: click.Group, path: tuple[str, ...] = ()) -> None:
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            _add_json_flags(cmd, (*path, name))
        elif (*path, name) not in _NO_JSON:
            cmd.params.append(json_option())


_add_json_flags(cli)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run schedctl and exit with its documented code."""
    cli.main(args=argv, prog_name="schedctl")
    raise SystemExit(EXIT_ERROR)  # not reached: main() always exits


if __name__ == "__main__":
    main()
