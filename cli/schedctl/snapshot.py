"""``schedctl snapshot save|inspect``: backups of the replicated state (docs/operations.md).

A backup file holds a header (format, the nodes, the log index, the time, the image's SHA-256)
and a compacted LMDB image of the leader's state. ``schedd restore`` seeds the nodes of a new
cluster from it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from schedctl import output
from schedctl.common import Settings, pass_settings
from schedd.backup import BackupError, BackupHeader, verify


@click.group()
def snapshot() -> None:
    """Back up the cluster's state to a file, and check such a file. Saving needs the
    cluster-admin role; restore a file into a new cluster with `schedd restore`."""


class _Progress:
    """Progress on stderr for saves that take longer than a second: a line rewritten in
    place on a terminal, one line every 5 s otherwise."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._last = 0.0
        self._tty = sys.stderr.isatty()
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        every = 0.5 if self._tty else 5.0
        if now - self._t0 < 1.0 or (now - self._last < every and done < total):
            return
        self._last = now
        pct = 100 * done // max(1, total)
        line = f"saving: {done >> 20} of {total >> 20} MiB ({pct}%)"
        click.echo(("\r" + line) if self._tty else line, err=True, nl=not self._tty)
        self._shown = True

    def end(self) -> None:
        if self._shown and self._tty:
            click.echo("", err=True)


def _doc(h: BackupHeader) -> dict[str, Any]:
    return {
        "format_version": h.format_version,
        "cluster_id": h.cluster_id,
        "node_ids": list(h.node_ids),
        "leader_id": h.leader_id,
        "applied_index": h.applied_index,
        "created": output.when(h.created_ms),
        "created_ms": h.created_ms,
        "size_bytes": h.size_bytes,
        "sha256": h.sha256,
        "next_fence": h.next_fence,
        "jobs": h.jobs,
        "runs": h.runs,
        "schedd_version": h.schedd_version,
    }


def _text(h: BackupHeader) -> str:
    rows = [
        ("format", str(h.format_version)),
        ("cluster", h.cluster_id or ",".join(h.node_ids) or "-"),
        ("leader", h.leader_id or "-"),
        ("applied index", str(h.applied_index)),
        ("created", output.when(h.created_ms)),
        ("size", f"{h.size_bytes} bytes"),
        ("sha256", h.sha256),
        ("next fence", str(h.next_fence)),
        ("jobs", str(h.jobs)),
        ("runs", str(h.runs)),
        ("schedd", h.schedd_version or "-"),
    ]
    return "\n".join(f"{k + ':':<15}{v}" for k, v in rows)


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_settings
def save(s: Settings, file: str) -> None:
    """Save a consistent snapshot of the leader's state to FILE (written atomically: a
    temporary file is renamed over FILE only once complete and verified).

    \b
    Example:
        schedctl snapshot save backup-$(date +%F).snap
    """
    progress = _Progress()
    t0 = time.monotonic()
    try:
        header = s.client().save_snapshot(file, progress=progress)
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    finally:
        progress.end()
    took = time.monotonic() - t0
    s.emit(
        {**_doc(header), "file": file, "seconds": round(took, 3)},
        lambda: (
            f"saved {file}: {header.jobs} jobs, {header.runs} runs at log index "
            f"{header.applied_index}, {header.size_bytes} bytes in {took:.1f}s"
        ),
    )


@snapshot.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_settings
def inspect(s: Settings, file: str) -> None:
    """Print FILE's header and verify its checksum (exit 1 when it does not match).

    \b
    Example:
        schedctl snapshot inspect backup-2026-12-06.snap
    """
    try:
        header = verify(file)
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    s.emit({**_doc(header), "checksum": "ok"}, lambda: _text(header) + "\nchecksum:      ok")
