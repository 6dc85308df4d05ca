"""The JSONL history every chaos process appends to.

One JSON object per line: ``t`` (wall clock, seconds), ``mono`` (CLOCK_MONOTONIC, comparable
across processes on one machine), ``proc`` (who wrote it: ``client``, ``crud``, ``nemesis``,
``monitor``, ``harness``, ``worker:<id>``, ``sink``), ``op`` and ``type``:

* client calls: ``type`` is ``invoke`` then exactly one of ``ok`` / ``fail`` (certainly not
  applied) / ``info`` (outcome unknown: may or may not have been applied), with the same ``key``;
* ``handler`` ``start`` / ``end`` for every handler attempt (run id, fence, attempt, worker);
* ``sink`` ``apply`` / ``reject`` for every fenced write;
* ``nemesis`` faults (kill, pause, resume, cut, heal, restart) and ``monitor`` ``leader`` changes;
* ``expect`` records: scenario-specific facts the checker must verify.

Writers in several processes share the file: each record is one ``write(2)`` on an
``O_APPEND`` descriptor, which Linux appends atomically for regular files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any


class History:
    def __init__(self, path: str, proc: str) -> None:
        self.path = path
        self.proc = proc
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, op: str, type: str = "info", **fields: Any) -> dict[str, Any]:
        rec = {
            "t": time.time(),
            "mono": time.monotonic(),
            "proc": self.proc,
            "op": op,
            "type": type,
            **fields,
        }
        os.write(self._fd, (json.dumps(rec, separators=(",", ":"), default=str) + "\n").encode())
        return rec

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def read(path: str) -> Iterator[dict[str, Any]]:
    """Every complete record, in file order (a torn last line from a SIGKILL is skipped)."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def from_env(proc: str) -> History | None:
    path = os.environ.get("CHAOS_HISTORY")
    return History(path, proc) if path else None
