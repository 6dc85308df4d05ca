"""fenced_sqlite: the compare-and-set of a fence in the user's own SQLite database."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from schedd.errors import SchedError
from schedd.fencing import StaleFence, current_fence, fenced_sqlite


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("CREATE TABLE IF NOT EXISTS effects(resource TEXT, fence INTEGER)")
    return conn


def effects(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return conn.execute("SELECT resource, fence FROM effects ORDER BY rowid").fetchall()


def write(conn: sqlite3.Connection, resource: str, fence: int) -> None:
    with fenced_sqlite(conn, resource, fence) as c:
        c.execute("INSERT INTO effects VALUES (?, ?)", (resource, fence))


def test_newer_fence_wins_and_stale_write_is_refused(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db")
    write(conn, "report:2026-01-02", 5)
    write(conn, "report:2026-01-02", 7)
    with pytest.raises(StaleFence, match=r"fence: 5 is stale .*fence 7 already wrote"):
        write(conn, "report:2026-01-02", 5)
    assert effects(conn) == [("report:2026-01-02", 5), ("report:2026-01-02", 7)]
    assert current_fence(conn, "report:2026-01-02") == 7
    assert issubclass(StaleFence, SchedError)


def test_equal_fence_may_write_again_and_resources_are_independent(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db")
    write(conn, "a", 9)
    write(conn, "a", 9)  # the same attempt retrying its write
    write(conn, "b", 1)  # another resource has its own fence
    assert effects(conn) == [("a", 9), ("a", 9), ("b", 1)]
    assert current_fence(conn, "missing") is None


def test_block_failure_rolls_back_the_fence_too(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db")
    write(conn, "a", 3)
    with pytest.raises(RuntimeError, match="boom"), fenced_sqlite(conn, "a", 8) as c:
        c.execute("INSERT INTO effects VALUES ('a', 8)")
        raise RuntimeError("boom")
    assert current_fence(conn, "a") == 3 and effects(conn) == [("a", 3)]
    write(conn, "a", 4)  # fence 8 never committed: 4 is still newer than 3
    assert current_fence(conn, "a") == 4


def test_bad_arguments(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db")
    with pytest.raises(ValueError, match="fence"):
        write(conn, "a", 0)
    with pytest.raises(ValueError, match="resource"):
        write(conn, "", 1)
    conn.execute("BEGIN")
    with pytest.raises(ValueError, match="transaction"):
        write(conn, "a", 1)
    conn.execute("ROLLBACK")


def test_concurrent_writers_on_separate_connections_apply_at_most_the_newest(
    tmp_path: Path,
) -> None:
    """Two processes' worth of connections racing with fences 1..20 in random order: every
    write that succeeded was, at its commit, the highest fence so far."""
    path = tmp_path / "db"
    connect(path).close()
    ok: list[int] = []
    lock = threading.Lock()

    def worker(fences: list[int]) -> None:
        conn = connect(path)
        for f in fences:
            try:
                write(conn, "r", f)
                with lock:
                    ok.append(f)
            except StaleFence:
                pass

    order = [7, 3, 12, 1, 19, 5, 20, 2, 11, 4, 16, 8, 6, 13, 9, 18, 10, 15, 14, 17]
    threads = [threading.Thread(target=worker, args=(order[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn = connect(path)
    applied = [f for _, f in effects(conn)]
    assert applied == sorted(applied)  # never a lower fence after a higher one
    assert applied[-1] == 20 and current_fence(conn, "r") == 20
    assert sorted(ok) == sorted(applied)
