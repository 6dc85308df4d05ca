"""The fencing sink: the "storage server" of Kleppmann's fencing-token argument, in SQLite.

``write(run_id, fence, worker)`` applies the effect of firing ``run_id`` only if ``fence`` is at
least the highest fence seen for that firing **and** the firing has not been applied yet; it logs
every apply and every rejection (table ``log`` and the JSONL history). The check and the apply
happen in one ``BEGIN IMMEDIATE`` transaction, so concurrent writers in different worker
processes are serialised.

``CHAOS_FENCING=off`` (or ``Sink(..., fencing=False)``) is the negative control: every write is
applied, as a naive non-idempotent effect would be. The checker must then find duplicates.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from chaos.history import History

SCHEMA = """
CREATE TABLE IF NOT EXISTS firing (
  run_id TEXT PRIMARY KEY, max_fence INTEGER NOT NULL, applied_fence INTEGER, applied_by TEXT
);
CREATE TABLE IF NOT EXISTS log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, run_id TEXT NOT NULL, fence INTEGER NOT NULL,
  worker TEXT NOT NULL, result TEXT NOT NULL, reason TEXT NOT NULL, fencing INTEGER NOT NULL
);
"""


def init(path: str) -> None:
    con = sqlite3.connect(path, timeout=30)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(SCHEMA)
        con.commit()
    finally:
        con.close()


class Sink:
    def __init__(
        self, path: str, fencing: bool | None = None, history: History | None = None
    ) -> None:
        if fencing is None:
            fencing = os.environ.get("CHAOS_FENCING", "on").lower() not in (
                "off",
                "0",
                "false",
                "no",
            )
        self.fencing = fencing
        self.history = history
        self._con = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._con.execute("PRAGMA busy_timeout=30000")

    def write(self, run_id: str, fence: int, worker: str) -> tuple[bool, str]:
        """Apply the effect of ``run_id`` under ``fence``; returns (applied, reason)."""
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute(
                "SELECT max_fence, applied_fence FROM firing WHERE run_id=?", (run_id,)
            ).fetchone()
            max_fence = row[0] if row else 0
            applied_fence = row[1] if row else None
            if not self.fencing:
                applied, reason = True, "fencing off"
            elif fence < max_fence:
                applied, reason = False, f"stale fence {fence} < {max_fence}"
            elif applied_fence is not None:
                applied, reason = False, f"already applied under fence {applied_fence}"
            else:
                applied, reason = True, ""
            new_max = max(max_fence, fence)
            if row is None:
                con.execute(
                    "INSERT INTO firing VALUES (?,?,?,?)",
                    (run_id, new_max, fence if applied else None, worker if applied else None),
                )
            elif applied:
                con.execute(
                    "UPDATE firing SET max_fence=?, applied_fence=?, applied_by=? WHERE run_id=?",
                    (new_max, fence, worker, run_id),
                )
            else:
                con.execute("UPDATE firing SET max_fence=? WHERE run_id=?", (new_max, run_id))
            con.execute(
                "INSERT INTO log (t, run_id, fence, worker, result, reason, fencing) VALUES (?,?,?,?,?,?,?)",
                (
                    time.time(),
                    run_id,
                    fence,
                    worker,
                    "apply" if applied else "reject",
                    reason,
                    int(self.fencing),
                ),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if self.history is not None:
            self.history.write(
                "sink",
                "apply" if applied else "reject",
                run_id=run_id,
                fence=fence,
                worker=worker,
                reason=reason,
                fencing=self.fencing,
            )
        return applied, reason

    def close(self) -> None:
        self._con.close()


def read_log(path: str) -> list[dict[str, Any]]:
    """Every sink write in commit order."""
    con = sqlite3.connect(path, timeout=30)
    try:
        cols = ["seq", "t", "run_id", "fence", "worker", "result", "reason", "fencing"]
        return [
            dict(zip(cols, r, strict=True))
            for r in con.execute(f"SELECT {','.join(cols)} FROM log ORDER BY seq")
        ]
    finally:
        con.close()
