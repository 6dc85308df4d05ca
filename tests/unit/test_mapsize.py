"""When the local LMDB map grows (schedd.state.mapsize), and the store growing it online."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from schedd.pb import command_pb2, types_pb2
from schedd.state.apply import encode
from schedd.state.mapsize import MIB, MapGrowth
from schedd.state.store import Store

T0 = 1_700_000_000_000


def test_grows_by_doubling_past_the_threshold_up_to_the_ceiling() -> None:
    g = MapGrowth(ceiling=64 * MIB)
    assert g.next_size(12 * MIB, 16 * MIB) is None  # 75 %: stay
    assert g.next_size(13 * MIB, 16 * MIB) == 32 * MIB
    assert g.next_size(30 * MIB, 16 * MIB) == 64 * MIB  # enough to sit under 80 % again
    assert g.next_size(60 * MIB, 48 * MIB) == 64 * MIB  # capped
    assert g.next_size(60 * MIB, 64 * MIB) is None  # at the ceiling
    assert g.next_size(1 * MIB, 16 * MIB, full=True) == 32 * MIB  # apply met MapFullError
    assert g.next_size(9 * MIB, 16 * MIB, threshold=0.5) == 32 * MIB  # room ahead of a copy
    assert g.next_size(7 * MIB, 16 * MIB, threshold=0.5) is None


def test_a_store_grows_online_and_keeps_its_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(str(tmp_path / "state"), map_size=2 * MIB, max_map_size=8 * MIB)
    grown = []
    store.on_grown = lambda a, b: grown.append((a, b))
    caplog.set_level(logging.INFO, "schedd.store")
    payload = '"' + "x" * 60_000 + '"'
    index = 0
    for i in range(60):  # ~3.6 MiB of payloads: more than the initial map
        job = types_pb2.Job(
            name=f"j{i}",
            queue="default",
            max_attempts=3,
            payload=payload,
            schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0, timezone="UTC"),
            next_due_ms=T0,
        )
        cmd = command_pb2.Command(now_ms=T0, create_job=command_pb2.CreateJobCmd(job=job))
        index += 1
        assert store.apply_entry(encode(cmd), index).ok
        with store.read() as txn:  # a read between applies, as gRPC threads do
            assert txn.stat(store.db("jobs"))["entries"] == i + 1
    assert grown and grown[0][0] == 2 * MIB
    assert store.map_size() > 2 * MIB
    assert store.get_job("j0") is not None and store.applied_index() == 60
    assert "event=map_grown from_mib=2 to_mib=4" in caplog.text
    store.close()


def test_a_growth_waits_for_open_reads_and_gives_up_rather_than_stall(tmp_path: Path) -> None:
    """set_mapsize under an open read transaction would remap memory the reader still uses:
    a growth waits for the reads in flight, and gives up (to retry later) after ``wait_s``."""
    store = Store(str(tmp_path / "state"), map_size=2 * MIB, max_map_size=8 * MIB)
    with store.read():
        with store.read():  # re-entrant in one thread
            assert not store.maybe_grow(full=True, wait_s=0.2)
    assert store.map_size() == 2 * MIB
    assert store.maybe_grow(full=True, wait_s=0.2)
    assert store.map_size() == 4 * MIB
    store.close()


def test_a_snapshot_copy_gets_room_first_since_the_map_cannot_grow_under_it(
    tmp_path: Path,
) -> None:
    """While a copy holds its read transaction, writes take new pages past the high-water mark
    and a growth waits: the store grows before the copy when the file is past half the map,
    not only past the usual 80 %."""
    store = Store(str(tmp_path / "state"), map_size=4 * MIB, max_map_size=16 * MIB)
    index = 0
    while store.high_water() < int(0.6 * 4 * MIB):
        index += 1
        job = types_pb2.Job(
            name=f"j{index}",
            queue="default",
            max_attempts=3,
            payload='"' + "x" * 20_000 + '"',
            schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0, timezone="UTC"),
            next_due_ms=T0,
        )
        cmd = command_pb2.Command(now_ms=T0, create_job=command_pb2.CreateJobCmd(job=job))
        assert store.apply_entry(encode(cmd), index).ok
    assert not store.maybe_grow()  # under 80 %: the usual policy stays
    assert store.make_room_for_copy()
    assert store.map_size() == 8 * MIB
    assert not store.make_room_for_copy()  # under half now
    store.close()
