"""``schedctl config ...``: named contexts in the config file (see :mod:`schedctl.config`)."""

from __future__ import annotations

import os

import click

from schedctl import config, output
from schedctl.common import Settings, pass_settings
from schedctl.completion import context_names
from schedd import errors
from schedd.client import parse_endpoints


@click.group("config")
def config_group() -> None:
    """Named contexts: sets of endpoints to switch between, like kubectl's.

    The file is $SCHEDD_CONFIG, else $XDG_CONFIG_HOME/schedd/config.toml, else
    ~/.config/schedd/config.toml. Endpoints come from, first match wins: --endpoints,
    --context NAME, SCHEDD_ENDPOINTS, the file's current-context.
    """


@config_group.command("get-contexts")
@pass_settings
def get_contexts(s: Settings) -> None:
    """List the contexts; the current one is marked with *.

    \b
    Example:
      schedctl config get-contexts
    """
    cfg = config.load()
    rows = []
    docs = []
    for name in sorted(cfg.contexts):
        eps = cfg.endpoints_of(name, name)
        rows.append(["*" if name == cfg.current else "", name, eps])
        docs.append({"name": name, "current": name == cfg.current, "endpoints": eps.split(",")})
    s.emit(
        {"file": str(cfg.file), "current_context": cfg.current or None, "contexts": docs},
        lambda: (
            output.table(["CURRENT", "NAME", "ENDPOINTS"], rows)
            if rows
            else f"no contexts in {cfg.file}"
        ),
    )


@config_group.command("current-context")
@pass_settings
def current_context(s: Settings) -> None:
    """Print the current context's name (exit 3 when none is set).

    \b
    Example:
      schedctl config current-context
    """
    cfg = config.load()
    if not cfg.current:
        raise errors.NotFound(
            f"no current-context in {cfg.file}; `schedctl config use-context NAME` sets one"
        )
    s.emit({"current_context": cfg.current}, lambda: cfg.current)


@config_group.command("use-context")
@click.argument("name", shell_complete=context_names)
@pass_settings
def use_context(s: Settings, name: str) -> None:
    """Make context NAME the current one (exit 3 when there is no such context).

    \b
    Example:
      schedctl config use-context prod
    """
    cfg = config.load()
    cfg.use(name)
    cfg.save()
    s.emit({"current_context": name}, lambda: f"switched to context {name!r}")


@config_group.command("set-context")
@click.argument("name")
@click.option(
    "--endpoints",
    "endpoints",
    required=True,
    metavar="HOST:PORT,...",
    help="The gRPC addresses of the cluster's nodes.",
)
@click.option("--use", "use", is_flag=True, help="Also make it the current context.")
@click.option("--ca", metavar="FILE", help="CA certificate of the cluster's nodes.")
@click.option("--cert", metavar="FILE", help="Client certificate (mutual TLS).")
@click.option("--key", metavar="FILE", help="The client certificate's key.")
@click.option("--token-file", metavar="FILE", help="File holding an API token.")
@click.option("--insecure", is_flag=True, help="The nodes run with --insecure (plaintext).")
@pass_settings
def set_context(
    s: Settings,
    name: str,
    endpoints: str,
    use: bool,
    ca: str | None,
    cert: str | None,
    key: str | None,
    token_file: str | None,
    insecure: bool,
) -> None:
    """Add context NAME, or change its endpoints and credentials (file paths are stored
    absolute; the files are read when a command runs).

    \b
    Example:
      schedctl config set-context prod --endpoints 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000 \\
          --ca ca.pem --token-file prod.token --use
    """
    if not name.strip():
        raise errors.InvalidArgument("NAME", "is empty")
    eps = parse_endpoints(endpoints, "--endpoints")
    cfg = config.load()
    creds: dict[str, object] = {
        k: os.path.abspath(os.path.expanduser(v))
        for k, v in (("ca", ca), ("cert", cert), ("key", key), ("token-file", token_file))
        if v
    }
    if insecure:
        creds["insecure"] = True
    cfg.set_context(name, eps, creds)
    if use:
        cfg.use(name)
    cfg.save()
    s.emit(
        {"name": name, "endpoints": eps, "current": cfg.current == name},
        lambda: f"context {name!r} set to {','.join(eps)}" + (" (current)" if use else ""),
    )


@config_group.command("delete-context")
@click.argument("name", shell_complete=context_names)
@pass_settings
def delete_context(s: Settings, name: str) -> None:
    """Remove context NAME (exit 3 when there is no such context).

    \b
    Example:
      schedctl config delete-context staging
    """
    cfg = config.load()
    cfg.delete_context(name)
    cfg.save()
    s.emit({"name": name, "deleted": True}, lambda: f"deleted context {name!r}")
