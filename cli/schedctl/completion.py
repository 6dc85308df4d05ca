"""Dynamic shell completion: job names (asked of the cluster) and context names (from the config
file). ``schedctl completion bash|zsh|fish`` prints click's script that calls back into these.

A completion must never hang or print an error into the user's shell: the cluster is asked with
a 1 s deadline and no leader hunting, and any failure completes nothing.
"""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import CompletionItem

from schedctl import config, output
from schedctl.common import Settings
from schedd.client import Client


def job_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names of the cluster's jobs that start with ``incomplete``."""
    params: dict[str, Any] = ctx.find_root().params
    s = Settings(
        endpoints=params.get("endpoints"),
        json=False,
        timeout=1.0,
        retry_for=0.0,
        context=params.get("context"),
        client_factory=Client,
    )
    try:
        names = [output.as_pb(j).name for j in s.client().list_jobs(limit=1000)]
    except Exception:  # no cluster, no endpoints, a bad config: complete nothing, say nothing
        return []
    finally:
        s.close()
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def context_names(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Names of the config file's contexts that start with ``incomplete``."""
    try:
        names = sorted(config.load().contexts)
    except Exception:
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]
