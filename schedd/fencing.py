"""Fenced effects in your own SQLite database: a stale worker's write is refused.

Every delivery of a firing carries ``ctx.fence``, a number that strictly increases cluster-wide
with every lease. The scheduler rejects a stale worker's completion, but only the system that
*receives the effect* can refuse a stale worker's write. This module does it for SQLite with one
table, ``schedd_fences(resource TEXT PRIMARY KEY, fence INTEGER NOT NULL)``, and a
compare-and-set in the same transaction as the effect::

    from schedd.fencing import fenced_sqlite, StaleFence

    @worker.handler("daily-report")
    def report(ctx):
        conn = sqlite3.connect("reports.db", isolation_level=None)
        with fenced_sqlite(conn, f"report:{ctx.scheduled_at:%Y-%m-%d}", ctx.fence):
            conn.execute("INSERT OR REPLACE INTO reports(day, body) VALUES (?, ?)", ...)

Contract of :func:`fenced_sqlite` (``resource`` names what the effect writes; one row per
resource):

* It opens a write transaction (``BEGIN IMMEDIATE``: the write lock is taken before the check,
  so two writers cannot both pass it), then records ``fence`` for ``resource`` **only if** no
  fence greater than ``fence`` has been recorded. If one has, it rolls back and raises
  :class:`StaleFence` before your block runs: a newer attempt owns the resource.
* An *equal* fence passes: the same attempt may retry its own write (idempotent resend).
* Your block runs inside the transaction; it commits when the block ends normally and rolls
  back (the fence too) when the block raises, and the exception propagates.
* ``StaleFence`` is :class:`schedd.errors.StaleFence` (a ``SchedError``): raise it out of a
  handler and the attempt fails with that text (the scheduler also rejects its completion).

The connection must not be inside a transaction already, and must not be in Python's implicit
transaction mode with pending writes: use ``isolation_level=None`` (autocommit), as above.
PostgreSQL and other databases: see docs/fencing.md for the same compare-and-set in SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from schedd.errors import StaleFence

__all__ = ["FENCE_TABLE", "StaleFence", "current_fence", "ensure_fence_table", "fenced_sqlite"]

#: The table the fences are kept in (created on first use).
FENCE_TABLE = "schedd_fences"

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {FENCE_TABLE} (resource TEXT PRIMARY KEY, fence INTEGER NOT NULL)"
)
# One statement: insert the first fence, or raise a lower-or-equal one; a greater recorded fence
# makes the WHERE false and changes nothing (changes() == 0), which is the stale case.
_CAS = (
    f"INSERT INTO {FENCE_TABLE}(resource, fence) VALUES (?, ?) "
    "ON CONFLICT(resource) DO UPDATE SET fence = excluded.fence "
    f"WHERE {FENCE_TABLE}.fence <= excluded.fence"
)


def ensure_fence_table(conn: sqlite3.Connection) -> None:
    """Create ``schedd_fences`` if it does not exist (idempotent)."""
    conn.execute(_CREATE)


def current_fence(conn: sqlite3.Connection, resource: str) -> int | None:
    """The highest fence recorded for ``resource`` (None when none, or no table yet)."""
    try:
        row = conn.execute(
            f"SELECT fence FROM {FENCE_TABLE} WHERE resource = ?", (resource,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else int(row[0])


def _check(resource: str, fence: int) -> None:
    if not isinstance(resource, str) or not resource:
        raise ValueError("resource: must be a non-empty string")
    if isinstance(fence, bool) or not isinstance(fence, int) or fence <= 0:
        raise ValueError(f"fence: must be a positive integer (ctx.fence), got {fence!r}")


@contextmanager
def fenced_sqlite(
    conn: sqlite3.Connection, resource: str, fence: int
) -> Iterator[sqlite3.Connection]:
    """Run the block as one transaction that first claims ``resource`` for ``fence``; see the
    module docstring for the contract. Raises StaleFence (nothing written) when a greater fence
    already wrote, ValueError for a bad argument, ``sqlite3.Error`` from the database."""
    _check(resource, fence)
    if conn.in_transaction:
        raise ValueError(
            "conn: already inside a transaction; the fence check must open its own "
            "(connect with isolation_level=None)"
        )
    ensure_fence_table(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(_CAS, (resource, fence))
        if cur.rowcount == 0:
            row = conn.execute(
                f"SELECT fence FROM {FENCE_TABLE} WHERE resource = ?", (resource,)
            ).fetchone()
            newer = int(row[0]) if row else None
            raise StaleFence(
                f"fence: {fence} is stale for {resource!r} (fence {newer} already wrote); "
                "a newer attempt owns it, the effect was not applied"
            )
        yield conn
    except BaseException:
        if conn.in_transaction:  # some errors (e.g. SQLITE_FULL) already rolled back
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
