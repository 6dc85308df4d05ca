"""What every schedctl command shares: exit codes, the global settings (endpoints from flags,
environment or a config context; the client made on first use), time parsing, error renaming and
the ``--watch`` loop.

Failure contract: everything raises :class:`schedd.errors.SchedError` (or a click usage error);
the top-level boundary in :mod:`schedctl.main` turns it into one ``error: ...`` line and the exit
code :func:`exit_code_for` names.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import click

from schedctl import config, output
from schedd import errors, namespaces
from schedd.client import Client, parse_endpoints
from schedd.sched.schedule import format_ms, parse_duration, parse_rfc3339
from schedd.sdk.credentials import Credentials

# ---- exit codes ----------------------------------------------------------------------------

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_EXISTS = 5
EXIT_ABORTED = 6
EXIT_OUTCOME_UNKNOWN = 7
EXIT_DENIED = 8  # no or bad credentials, or a missing role
EXIT_INTERRUPTED = 130

#: error type -> exit code; the first matching entry wins (subclasses before their parents).
EXIT_CODES: list[tuple[type[errors.SchedError], int]] = [
    (errors.InvalidArgument, EXIT_USAGE),
    (errors.NotFound, EXIT_NOT_FOUND),
    (errors.Unavailable, EXIT_UNAVAILABLE),
    (errors.AlreadyExists, EXIT_EXISTS),
    (errors.StaleFence, EXIT_ABORTED),
    (errors.OutcomeUnknown, EXIT_OUTCOME_UNKNOWN),
    (errors.Unauthenticated, EXIT_DENIED),
    (errors.PermissionDenied, EXIT_DENIED),
]

NO_ENDPOINTS = (
    "not set; start a local cluster with `schedd dev` and run the "
    "`export SCHEDD_ENDPOINTS=...` line it prints, pass --endpoints HOST:PORT[,HOST:PORT...], "
    "or pick a context with `schedctl config use-context NAME`"
)
UNAVAILABLE_HINT = "check `schedctl cluster status` and SCHEDD_ENDPOINTS"


def exit_code_for(exc: errors.SchedError) -> int:
    """The documented exit code for a schedd error."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR


def error_line(exc: errors.SchedError) -> str:
    """The single line printed for ``exc`` (without the ``error: `` prefix)."""
    msg = " ".join(exc.message.split())
    if isinstance(exc, errors.Unreachable):
        # Nothing was sent (a write's message says "not applied"); a cluster that is starting
        # can be waited for.
        if "TLS" in msg:
            return msg
        return f"{msg}; --wait-for SECONDS waits for a cluster that is starting"
    if isinstance(exc, errors.Unavailable) and "cluster status" not in msg and "`schedd" not in msg:
        msg = f"{msg} ({UNAVAILABLE_HINT})"
    if msg.startswith("UNIMPLEMENTED"):
        msg = f"{msg} (the cluster's schedd is older than this schedctl; upgrade the nodes)"
    return msg


def fail_line(message: str) -> None:
    """Print ``error: message`` as one line on stderr."""
    click.echo(f"error: {' '.join(message.split())}", err=True)


# ---- settings shared by all commands --------------------------------------------------------


@dataclass
class Settings:
    """Global options; the client is made on first use so --help and local checks need no cluster.

    Where the endpoints come from, first match wins: ``--endpoints``, ``--context NAME``, the
    ``SCHEDD_ENDPOINTS`` environment variable, the config file's ``current-context``.
    """

    endpoints: str | None
    json: bool
    timeout: float
    retry_for: float
    context: str | None = None
    wait_for: float = 0.0
    client_factory: Callable[..., Client] = Client
    #: --ca/--cert/--key/--token-file/--insecure; each falls back to its SCHEDD_* variable
    tls: dict[str, Any] = field(default_factory=dict)
    #: --namespace (or $SCHEDD_NAMESPACE); None: the context's, else "default"
    namespace: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def credentials(self) -> Credentials:
        """TLS roots, client certificate and token: the flags, else the ``SCHEDD_*`` variables
        (schedd.sdk.credentials); InvalidArgument naming the flag or variable when unusable."""
        env = self._context_credentials()
        env.update(os.environ)
        for flag, var in (
            ("ca", "SCHEDD_CA"),
            ("cert", "SCHEDD_CERT"),
            ("key", "SCHEDD_KEY"),
            ("token_file", "SCHEDD_TOKEN_FILE"),
        ):
            if self.tls.get(flag):
                env[var] = self.tls[flag]
                if flag == "token_file":
                    env.pop("SCHEDD_TOKEN", None)
        if self.tls.get("insecure"):
            env["SCHEDD_INSECURE"] = "1"
        creds = Credentials.from_env(env)
        creds.check()
        return creds

    def namespace_name(self) -> str:
        """The namespace commands act in: --namespace / $SCHEDD_NAMESPACE, else the context's
        ``namespace``, else ``default``; InvalidArgument naming --namespace when malformed."""
        chosen = self.namespace
        if not chosen:
            source, _ = self.endpoint_source()
            if source.startswith("context "):
                cfg = config.load()
                chosen = str(cfg.contexts.get(self.context or cfg.current, {}).get("namespace", ""))
        try:
            return namespaces.namespace((chosen or "").strip())
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument("--namespace", e.message.split(": ", 1)[-1]) from None

    def endpoint_source(self) -> tuple[str, str]:
        """(where from, the comma-separated endpoints); InvalidArgument when there are none."""
        if self.endpoints and self.endpoints.strip():
            return "--endpoints", self.endpoints
        if self.context:
            return f"context {self.context!r}", config.load().endpoints_of(
                self.context, "--context"
            )
        env = os.environ.get("SCHEDD_ENDPOINTS", "")
        if env.strip():
            return "SCHEDD_ENDPOINTS", env
        cfg = config.load()
        if cfg.current:
            return f"context {cfg.current!r}", cfg.endpoints_of(cfg.current, "current-context")
        raise errors.InvalidArgument("--endpoints", NO_ENDPOINTS)

    def _context_credentials(self) -> dict[str, str]:
        """The credential settings of the context the endpoints come from (none otherwise)."""
        source, _ = self.endpoint_source()
        if not source.startswith("context "):
            return {}
        cfg = config.load()
        return cfg.credentials_of(self.context or cfg.current)

    def endpoint_list(self) -> list[str]:
        """The resolved endpoints as ``host:port`` strings; InvalidArgument when absent or bad."""
        source, value = self.endpoint_source()
        return parse_endpoints(value, "--endpoints" if source == "SCHEDD_ENDPOINTS" else source)

    def client(self) -> Client:
        """The SDK client for the configured endpoints (made once)."""
        if self._client is None:
            extra: dict[str, Any] = (
                {
                    "credentials": self.credentials(),
                    "namespace": self.namespace_name(),
                    "wait_for": self.wait_for,
                }
                if self.client_factory is Client
                else {}
            )
            self._client = self.client_factory(
                self.endpoint_list(), timeout=self.timeout, retry_for=self.retry_for, **extra
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


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        settings = ctx.find_object(Settings)
        if settings is not None:
            settings.json = True
    return value


def json_option() -> click.Option:
    """The per-command ``--json`` flag (the same as the global one, placed after the command)."""
    return click.Option(
        ["--json"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_json,
        help="Print one JSON document instead of text.",
    )


# ---- errors named by the option that caused them --------------------------------------------

#: server-side field names of a job definition -> the schedctl option that sets them
DEFINITION_OPTIONS = {
    "name": "NAME",
    "schedule.cron": "--cron",
    "schedule.timezone": "--tz",
    "schedule.at_ms": "--at",
    "schedule.every_ms": "--every",
    "schedule.jitter_ms": "--jitter",
    "schedule.start_ms": "--start",
    "schedule.end_ms": "--end",
    "schedule.anchor_ms": "--anchor",
    "schedule.dst_gap": "--dst-gap",
    "schedule.dst_repeat": "--dst-repeat",
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
    "misfire": "--misfire",
    "misfire_grace_ms": "--misfire-grace",
    "catchup_window_ms": "--catchup-window",
    "max_catchup": "--max-catchup",
    "overlap": "--overlap",
    "max_concurrent": "--max-concurrent",
    "dispatch_timeout_ms": "--dispatch-timeout",
    "on_success": "--on-success",
    "depends_on": "--after",
    "trigger_rule": "--trigger-rule",
    "dependency_timeout_ms": "--dependency-timeout",
    "on_failure": "--on-failure",
    "priority": "--priority",
    "tags": "--tag",
    "keep_runs": "--keep-runs",
    "keep_for_ms": "--keep-for",
    "max_runs": "--max-runs",
    "allow_past": "--allow-past",
}


@contextmanager
def options_named(names: Mapping[str, str] = DEFINITION_OPTIONS) -> Iterator[None]:
    """Re-raise an InvalidArgument about a request field as one about the option that set it
    (``schedule.cron: ...`` -> ``--cron: ...``); an UpdateJob's ``job.`` prefix is dropped."""
    try:
        yield
    except errors.InvalidArgument as exc:
        key = exc.field.removeprefix("job.")
        option = names.get(key) or names.get(key.split("[")[0])
        if option is None:
            raise
        raise errors.InvalidArgument(option, exc.message.removeprefix(f"{exc.field}: ")) from None


def with_request_id_note(exc: errors.SchedError, rid: str) -> errors.SchedError:
    """Tell the user how to retry a create/trigger whose outcome is unknown without duplicating;
    one that reached no node was not applied, and says so."""
    if isinstance(exc, errors.Unreachable):
        return exc
    if isinstance(exc, errors.Unavailable | errors.OutcomeUnknown):
        exc.message = (
            f"{exc.message}; it may or may not have been applied: "
            f"re-run with --request-id {rid} to retry safely"
        )
        exc.args = (exc.message,)
    return exc


# ---- times ---------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(now)?\s*([+-])\s*(\S+)$", re.IGNORECASE)


def now_ms() -> int:
    """The wall clock in epoch milliseconds (the CLI's only clock read)."""
    return int(time.time() * 1000)


def parse_time(text: str, option: str, now: int) -> int:
    """An RFC 3339 time (``2026-01-02T03:04:05Z``, ``...+01:00``), ``now``, or a time relative to
    now (``-2h``, ``now+10m``) -> epoch milliseconds. InvalidArgument naming ``option``."""
    t = text.strip()
    if t.lower() == "now":
        return now
    m = _RELATIVE.match(t)
    if m and not t[:4].isdigit():
        d = parse_duration(m.group(3), option)
        return now + d if m.group(2) == "+" else now - d
    try:
        return parse_rfc3339(t, option)
    except errors.InvalidArgument:
        raise errors.InvalidArgument(
            option,
            f"{text!r} is not a time: use RFC 3339 (2026-01-02T03:04:05Z), now, or "
            "a time relative to now such as -2h or now+10m",
        ) from None


# ---- --watch --------------------------------------------------------------------------------

#: sleep between redraws; tests replace it
sleep: Callable[[float], None] = time.sleep


def watch_option() -> Callable[[Any], Any]:
    """``--watch [SECONDS]``: redraw every SECONDS (default 2) until Ctrl-C."""
    return click.option(
        "--watch",
        "watch",
        type=click.FloatRange(min=0.1),
        is_flag=False,
        flag_value=2.0,
        default=None,
        metavar="[SECONDS]",
        help="Redraw every SECONDS (default 2) until Ctrl-C, which exits 0. With --json: one "
        "JSON document per line per redraw.",
    )


def watch(
    s: Settings, interval: float, title: str, render: Callable[[], tuple[object, Callable[[], str]]]
) -> None:
    """Redraw ``render()`` every ``interval`` seconds until Ctrl-C (then return: exit 0).

    The screen is cleared only on a terminal. A cluster that is unreachable for a moment is shown
    as an error line in the redraw and the loop goes on; any other error ends it.
    """
    tty = sys.stdout.isatty()
    try:
        while True:
            try:
                doc, human = render()
                text = output.dumps(doc, compact=True) if s.json else human()
            except (errors.Unavailable, errors.OutcomeUnknown) as exc:
                if s.json:
                    text = output.dumps({"error": error_line(exc)}, compact=True)
                else:
                    text = f"error: {error_line(exc)}"
            if s.json:
                click.echo(text)
            else:
                if tty:
                    click.clear()
                click.echo(f"Every {interval:g}s: {title}    {format_ms(now_ms())}\n\n{text}\n")
            sleep(interval)
    except KeyboardInterrupt:
        return
