"""LMDB store: executes apply's mutations, the due index, snapshots. Real LMDB in a temp dir."""

from __future__ import annotations

import os
import threading

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from schedd.pb import command_pb2, types_pb2
from schedd.state import disk, keys
from schedd.state import store as store_module
from schedd.state.apply import MemoryState, encode
from schedd.state.store import Store, copy_paced

T0 = 1_700_000_000_000


def job_cmd(name: str, due: int) -> bytes:
    job = types_pb2.Job(
        name=name,
        queue="default",
        max_attempts=3,
        next_due_ms=due,
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=due, timezone="UTC"),
    )
    return encode(command_pb2.Command(now_ms=T0, create_job=command_pb2.CreateJobCmd(job=job)))


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
        st.integers(T0, T0 + 10_000),
        min_size=1,
        max_size=30,
    ),
    st.integers(T0, T0 + 10_000),
)
def test_due_index_returns_exactly_the_due_jobs_in_order(
    tmp_path_factory, dues: dict[str, int], now: int
) -> None:
    store = Store(str(tmp_path_factory.mktemp("lmdb")))
    try:
        for i, (name, due) in enumerate(sorted(dues.items()), start=1):
            store.apply_entry(job_cmd(name, due), i)
        got = store.due_until(now, limit=1000)
        want = sorted((due, name) for name, due in dues.items() if due <= now)
        assert got == want
        assert store.due_until(now, limit=3) == want[:3]
        assert store.next_due_ms() == min(dues.values())
    finally:
        store.close()


def test_store_and_memory_replica_agree(tmp_path) -> None:
    # (Garbage would stop the node: test_an_entry_this_version_does_not_understand_stops_the_node.)
    entries = [job_cmd("a", T0 + 5), job_cmd("b", T0 + 1), job_cmd("a", T0 + 9)]
    store = Store(str(tmp_path / "s"))
    mem = MemoryState()
    for i, e in enumerate(entries, start=1):
        assert store.apply_entry(e, i).code == mem.apply(e, i).code
    assert store.digest() == mem.digest()
    assert store.applied_index() == len(entries)
    assert store.apply_entry(entries[0], 1).code == "SKIPPED"
    store.close()


def test_snapshot_round_trip_restores_a_lagging_replica(tmp_path) -> None:
    leader = Store(str(tmp_path / "leader"))
    for i in range(1, 50):
        leader.apply_entry(job_cmd(f"job{i}", T0 + i), i)
    meta = ((b"cmd-49", 49, 2), (b"cmd-48", 48, 2), {"127.0.0.1:1", "127.0.0.1:2"})
    snap = str(tmp_path / "raft.snapshot")
    leader.write_snapshot(snap, meta)

    lagging = Store(str(tmp_path / "lagging"))
    lagging.apply_entry(job_cmd("stale-only-here", T0), 1)
    got = lagging.read_snapshot(snap)
    assert got[0] == (b"cmd-49", 49, 2) and got[1] == (b"cmd-48", 48, 2)
    assert sorted(n.id for n in got[2]) == ["127.0.0.1:1", "127.0.0.1:2"]
    assert lagging.digest() == leader.digest()
    assert lagging.applied_index() == 49
    assert lagging.get_job("stale-only-here") is None

    ahead = Store(str(tmp_path / "ahead"))  # a replica already past the snapshot keeps its state
    for i in range(1, 60):
        ahead.apply_entry(job_cmd(f"job{i}", T0 + i), i)
    digest = ahead.digest()
    ahead.read_snapshot(snap)
    assert ahead.digest() == digest
    for s in (leader, lagging, ahead):
        s.close()
    assert os.path.getsize(snap) > 0


def test_list_runs_by_job_newest_last(tmp_path) -> None:
    store = Store(str(tmp_path / "s"))
    store.apply_entry(job_cmd("a", T0 + 1), 1)
    store.apply_entry(job_cmd("ab", T0 + 1), 2)  # a name sharing a prefix must not leak in
    for i, name in enumerate(["a", "a", "ab", "a"], start=3):
        store.apply_entry(
            encode(
                command_pb2.Command(now_ms=T0 + i, trigger_job=command_pb2.TriggerJobCmd(name=name))
            ),
            i,
        )
    runs = store.list_runs("a", limit=10)
    assert [r.job for r in runs] == ["a", "a", "a"]
    assert [r.scheduled_ms for r in runs] == sorted(r.scheduled_ms for r in runs)
    assert [r.scheduled_ms for r in store.list_runs("a", limit=2)] == [T0 + 4, T0 + 6]
    assert len(store.list_runs(limit=100)) == 4
    assert keys.manual_run_id("a", 1, T0 + 3) in {r.run_id for r in runs}
    store.close()


def test_list_jobs_pages_by_bytes_as_well_as_by_count(tmp_path) -> None:
    s = Store(str(tmp_path / "state"))
    for i in range(10):
        cmd = command_pb2.Command(
            now_ms=1,
            create_job=command_pb2.CreateJobCmd(
                job=types_pb2.Job(
                    name=f"j{i}",
                    payload="x" * 10_000,
                    next_due_ms=10**13,
                    schedule=types_pb2.Schedule(cron="0 0 1 1 *"),
                )
            ),
        )
        assert s.apply_entry(encode(cmd), i + 1).ok
    assert len(s.list_jobs(limit=100)) == 10
    page = s.list_jobs(limit=100, max_bytes=35_000)
    assert [j.name for j in page] == ["j0", "j1", "j2"]
    assert [j.name for j in s.list_jobs(after="j2", limit=100, max_bytes=35_000)] == [
        "j3",
        "j4",
        "j5",
    ]
    assert len(s.list_jobs(limit=100, max_bytes=1)) == 1  # always at least one: paging moves on
    s.close()


def test_an_entry_this_version_does_not_understand_stops_the_node(tmp_path, monkeypatch) -> None:
    """A newer version's command (here: no body, as a new oneof field reads) is not skipped:
    the node stops (exit 70 in production) before anything of the entry is recorded."""
    import schedd.state.store as store_module

    def stop(message: str) -> None:
        raise SystemExit(message)

    monkeypatch.setattr(store_module, "fatal", stop)
    store = Store(str(tmp_path / "state"))
    try:
        store.apply_entry(job_cmd("a", T0), 1)
        digest = store.digest()
        try:
            store.apply_entry(encode(command_pb2.Command(now_ms=T0)), 2)
        except SystemExit as e:
            assert "log index 2" in str(e) and "newer schedd" in str(e)
        else:
            raise AssertionError("the node went on after an entry it does not understand")
        assert store.applied_index() == 1 and store.digest() == digest
    finally:
        store.close()


def test_state_and_snapshot_files_are_private_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0o022)  # the explicit modes must hold without schedd run's umask 077
    try:
        store = Store(str(tmp_path / "state"))
        store.apply_entry(job_cmd("a", T0), 1)
        snap = str(tmp_path / "raft.snapshot")
        store.write_snapshot(snap, ((b"c", 1, 1), (b"c", 0, 1), set()))
        store.close()
    finally:
        os.umask(old)
    modes = {
        name: os.stat(path).st_mode & 0o777
        for name, path in [
            ("state", tmp_path / "state"),
            ("data.mdb", tmp_path / "state" / "data.mdb"),
            ("lock.mdb", tmp_path / "state" / "lock.mdb"),
            ("raft.snapshot", snap),
        ]
    }
    assert modes == {"state": 0o700, "data.mdb": 0o600, "lock.mdb": 0o600, "raft.snapshot": 0o600}


def _store_with_runs(path: str) -> Store:
    """Jobs a, ab and team/x (namespace team) with manual runs, some cancelled."""
    store = Store(path)
    idx = 0
    for name in ("a", "ab", "team/x"):
        idx += 1
        store.apply_entry(job_cmd(name, T0 + 1), idx)
    for i in range(40):
        idx += 1
        name = ("a", "ab", "team/x", "a")[i % 4]
        store.apply_entry(
            encode(
                command_pb2.Command(
                    now_ms=T0 + 10 + i, trigger_job=command_pb2.TriggerJobCmd(name=name)
                )
            ),
            idx,
        )
        if i % 3 == 0:
            idx += 1
            rid = keys.manual_run_id(name, 1, T0 + 10 + i)
            store.apply_entry(
                encode(
                    command_pb2.Command(
                        now_ms=T0 + 10 + i, cancel_run=command_pb2.CancelRunCmd(run_id=rid)
                    )
                ),
                idx,
            )
    return store


@settings(max_examples=60, deadline=None)
@given(
    job=st.sampled_from(["", "a", "ab", "team/x", "nope"]),
    namespace=st.sampled_from([None, "default", "team"]),
    state=st.sampled_from([0, types_pb2.RUN_STATE_CANCELLED, types_pb2.RUN_STATE_PENDING]),
    limit=st.integers(1, 50),
    budget=st.integers(0, 2_000),
)
def test_run_pages_put_together_are_the_unpaged_listing(
    tmp_path_factory, job: str, namespace: str | None, state: int, limit: int, budget: int
) -> None:
    """ListRuns pages (a byte budget per response, a key to continue from) put together give
    exactly the one-shot listing: the newest ``limit`` runs, oldest first, nothing twice."""
    store = _PAGED.get("store")
    if store is None:
        store = _PAGED["store"] = _store_with_runs(str(tmp_path_factory.mktemp("paged")))
    ns = None if job else namespace
    want = store.list_runs(job, limit, state, namespace=ns)
    pages: list[list[types_pb2.Run]] = []
    before = None
    got = 0
    while True:
        runs, before = store.list_runs_page(job, limit - got, state, ns, before, budget)
        pages.append(runs)
        got += len(runs)
        assert len(pages) <= 100
        if before is None or got >= limit:
            break
    together = [r for page in reversed(pages) for r in page]
    assert [r.run_id for r in together] == [r.run_id for r in want]
    if job and want:
        assert all(r.job == job for r in together)


_PAGED: dict[str, Store] = {}


def test_list_audit_pages_between_entries_never_inside_a_bulk_one(tmp_path) -> None:
    """An entry of a bulk create holds one audit record per job under one log index: a page
    holds all of them or none, so paging by index neither repeats nor skips a record."""
    from tests.unit.test_bulk_create import bulk, entry, item

    store = Store(str(tmp_path / "s"))
    store.apply_entry(entry(bulk(item("a"))), 1)
    store.apply_entry(entry(bulk(*(item(f"b{i}") for i in range(5)))), 2)
    store.apply_entry(entry(bulk(item("c"))), 3)
    seen, before = [], 0
    while True:
        page, before = store.list_audit(2, before)
        seen.append([(r.index, r.target) for r in page])
        if not before:
            break
    assert seen == [
        [(3, "c"), (2, "b4"), (2, "b3"), (2, "b2"), (2, "b1"), (2, "b0")],
        [(1, "a")],
    ]
    assert [r.target for r in store.list_audit(10, target="b2")[0]] == ["b2"]
    store.close()


def _store_with_jobs(path: str, n: int) -> Store:
    store = Store(path, map_size=64 << 20)
    for i in range(n):
        store.apply_entry(job_cmd(f"job-{i:05d}", T0 + i), i + 1)
    return store


def test_a_paced_snapshot_is_the_same_file_as_an_unpaced_one(tmp_path, monkeypatch) -> None:
    # written out every 64 KiB instead of 8 MiB: a small image goes through every step
    monkeypatch.setattr(store_module, "PACED_WRITE_OUT_BYTES", 64 << 10)
    store = _store_with_jobs(str(tmp_path / "state"), 2000)
    meta = ((b"c", 2000, 1), (b"c", 1999, 1), set())
    try:
        plain, paced = str(tmp_path / "plain"), str(tmp_path / "paced")
        store.snapshot_source(meta).write(plain)
        source = store.snapshot_source(meta)
        size = source.write(paced, rate_bytes_s=float(os.path.getsize(plain)) * 4)
        with open(plain, "rb") as a, open(paced, "rb") as b:
            assert a.read() == b.read()
        assert size == os.path.getsize(plain)
        # a quarter of a second at that rate: the pacing waited for most of it
        assert source.paused_s > 0
        restored = Store(str(tmp_path / "restored"), map_size=64 << 20)
        restored.read_snapshot(paced)
        assert restored.digest() == store.digest()
        restored.close()
    finally:
        store.close()


def test_a_paced_copy_that_cannot_write_raises_and_leaves_no_thread(tmp_path) -> None:
    store = _store_with_jobs(str(tmp_path / "state"), 200)
    try:
        readonly = str(tmp_path / "ro")
        open(readonly, "wb").close()
        fd = os.open(readonly, os.O_RDONLY)
        with store.read() as txn, pytest.raises(OSError):
            copy_paced(store._env, txn, fd, readonly, 1 << 30)
        os.close(fd)
        # LMDB's side ended too (EPIPE): no copying thread is left behind
        assert not [t for t in threading.enumerate() if t.name == "snapshot-copy-lmdb"]
    finally:
        store.close()


def test_write_out_names_the_file_it_could_not_write_out(tmp_path) -> None:
    path = str(tmp_path / "f")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"x" * 100_000)
    disk.write_out(fd, path)
    os.close(fd)
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as e:
            disk.write_out(w, path)  # a pipe has no pages to write out (ESPIPE)
        assert e.value.filename == path
    finally:
        os.close(r)
        os.close(w)


def test_a_paced_backup_image_is_the_same_as_an_unpaced_one(tmp_path) -> None:
    store = _store_with_jobs(str(tmp_path / "state"), 500)
    try:
        images = []
        for rate in (0.0, 1e9):
            path = str(tmp_path / f"image-{rate}")
            with open(path, "wb") as f:
                counts = store.save_image(f.fileno(), rate)
            with open(path, "rb") as f:
                images.append((counts, f.read()))
        assert images[0] == images[1]
        assert images[0][0][2] == 500  # jobs
    finally:
        store.close()
