"""``schedctl token ...``: create, list and revoke API tokens (cluster-admin only)."""

from __future__ import annotations

import os

import click

from schedctl import output
from schedctl.common import Settings, pass_settings
from schedd import errors
from schedd.models import Token
from schedd.sched.schedule import parse_duration


@click.group()
def token() -> None:
    """API tokens for people and automation. Only a token's hash is stored; the secret is
    printed once, by `token create`. Needs the cluster-admin role."""


def _row(t: Token) -> list[str]:
    return [
        t.name,
        ",".join(t.grants),
        ",".join(t.queues) or "-",
        output.when(t.created_ms),
        output.when(t.expires_ms) if t.expires_ms else "never",
        output.when(t.revoked_ms) if t.revoked_ms else "-",
        t.created_by or "-",
    ]


HEADERS = ["NAME", "GRANTS", "QUEUES", "CREATED", "EXPIRES", "REVOKED", "CREATED BY"]


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    metavar="[NAMESPACE:]ROLE",
    help="reader, writer, admin or worker (in namespace 'default' unless NAMESPACE: is given), "
    "or cluster-admin. Repeat.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="QUEUE",
    help="Worker grants only: the queues it may take firings from. Repeat.",
)
@click.option(
    "--ttl",
    default="90d",
    show_default=True,
    metavar="DURATION",
    help="Lifetime (e.g. 12h, 30d); 0 = never expires.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    help="Write the secret to this file (created with mode 0600) instead of printing it.",
)
@pass_settings
def token_create(
    s: Settings,
    name: str,
    roles: tuple[str, ...],
    queues: tuple[str, ...],
    ttl: str,
    out_file: str | None,
) -> None:
    """Create token NAME and print its secret (shown this once; only its hash is stored).

    \b
    Examples:
      schedctl token create ci --role writer --ttl 30d --out ci.token
      schedctl token create reports-worker --role worker --queue reports
      schedctl token create ops --role cluster-admin --ttl 12h
    """
    ttl_s = 0 if ttl.strip() == "0" else parse_duration(ttl, "--ttl") // 1000
    fd = None
    if out_file:  # opened first: a token whose secret cannot be saved is never created
        try:
            fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise errors.InvalidArgument(
                "--out", f"cannot create {out_file}: {e.strerror} (it must not exist yet)"
            ) from None
    try:
        new = s.client().create_token(name, list(roles), queues=list(queues), ttl_s=ttl_s)
    except BaseException:
        if fd is not None and out_file:
            os.close(fd)
            os.unlink(out_file)
        raise
    if fd is not None:
        with os.fdopen(fd, "w") as f:
            f.write(new.secret + "\n")
    doc = {"token": output.jsonable(new.token)}
    if not out_file:
        doc["secret"] = new.secret

    def human() -> str:
        where = (
            f"secret written to {out_file} (mode 0600)"
            if out_file
            else f"secret (shown once, store it now): {new.secret}"
        )
        return output.table(HEADERS, [_row(new.token)]) + "\n" + where

    s.emit(doc, human)


@token.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@pass_settings
def token_list(s: Settings, include_revoked: bool) -> None:
    """List the tokens (names, grants, expiry; never secrets).

    \b
    Example:
      schedctl token list --all
    """
    tokens = s.client().list_tokens(include_revoked=include_revoked)
    s.emit(
        {"tokens": output.jsonable(tokens)},
        lambda: output.table(HEADERS, [_row(t) for t in tokens]) if tokens else "no tokens",
    )


@token.command("revoke")
@click.argument("name")
@pass_settings
def token_revoke(s: Settings, name: str) -> None:
    """Revoke token NAME on every node (each node refuses it once it has applied the
    revocation, normally within milliseconds). Revoking twice is harmless.

    \b
    Example:
      schedctl token revoke bootstrap
    """
    t = s.client().revoke_token(name)
    s.emit({"token": output.jsonable(t)}, lambda: f"revoked token {t.name}")
