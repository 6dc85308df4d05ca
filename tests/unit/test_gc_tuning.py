"""The daemon's garbage collector settings and its pause watch, with the real collector."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from schedd.server import gc_tuning
from schedd.server.metrics import NodeMetrics


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_configure_raises_only_the_first_threshold(restore_gc: None) -> None:
    _, gen1, gen2 = gc.get_threshold()
    assert gc_tuning.configure(50_000) == (50_000, gen1, gen2)


def test_a_raised_threshold_leaves_a_ticks_objects_to_reference_counting(restore_gc: None) -> None:
    """What the setting is for: a tick's worth of live tuples (here 5,000) starts young
    collections at Python's default, and none at the daemon's."""

    def collections_while_holding(n: int) -> int:
        gc.collect()
        seen: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "stop":
                seen.append(info["generation"])

        gc.callbacks.append(count)
        try:
            held = [(i, str(i)) for i in range(n)]
            del held
        finally:
            gc.callbacks.remove(count)
        return len(seen)

    gc_tuning.configure(700)
    assert collections_while_holding(5_000) >= 5
    gc_tuning.configure(gc_tuning.DEFAULT_GEN0)
    assert collections_while_holding(5_000) == 0


def test_freeze_moves_what_exists_out_of_later_collections(restore_gc: None) -> None:
    frozen = gc_tuning.freeze_startup()
    assert frozen == gc.get_freeze_count() > 1000  # (this test process: modules, hypothesis…)
    assert len(gc.get_objects(2)) < frozen


def test_the_watch_times_real_collections_and_logs_slow_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = gc_tuning.PauseWatch(slow_s=0.0).install()  # every pause counts as slow
    try:
        with caplog.at_level(logging.WARNING, logger="schedd.gc"):
            gc.collect()
            gc.collect(0)
    finally:
        watch.uninstall()
    got = watch.snapshot()
    assert got[2][0][-1] == ("+Inf", 1) and got[0][0][-1] == ("+Inf", 1)
    assert got[1][0][-1] == ("+Inf", 0)
    assert got[2][1] > 0
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("event=gc_pause generation=2 ms=") for m in lines), lines
    assert all("--election-timeout" in m for m in lines)
    gc.collect()  # uninstalled: counts no more
    assert watch.snapshot()[2][0][-1] == ("+Inf", 1)


def test_the_freezes_own_collection_is_counted_not_logged(
    restore_gc: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = gc_tuning.PauseWatch(slow_s=0.0).install()
    monkeypatch.setattr(gc_tuning, "WATCH", watch)
    try:
        with caplog.at_level(logging.WARNING, logger="schedd.gc"):
            gc_tuning.freeze_startup()
            assert not caplog.records
            gc.collect()  # a later one is logged again
    finally:
        watch.uninstall()
    assert len(caplog.records) == 1
    assert watch.snapshot()[2][0][-1] == ("+Inf", 2)


def test_the_process_watch_logs_nothing_before_start_up_is_done(
    restore_gc: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that refuses its configuration prints one line: a slow collection during
    start-up (a busy machine) is counted, not logged, until the node serves."""
    monkeypatch.setattr(gc_tuning, "WATCH", None)
    watch = gc_tuning.watch_pauses()
    watch.slow_s = 0.0  # every pause counts as slow
    try:
        with caplog.at_level(logging.WARNING, logger="schedd.gc"):
            gc.collect()
            assert not caplog.records
            gc_tuning.freeze_startup()
            gc.collect()
    finally:
        watch.uninstall()
    assert len(caplog.records) == 1  # only the one after start-up
    assert watch.snapshot()[2][0][-1] == ("+Inf", 3)


def test_a_fast_collection_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    watch = gc_tuning.PauseWatch(slow_s=60.0).install()
    try:
        with caplog.at_level(logging.WARNING, logger="schedd.gc"):
            gc.collect(0)
    finally:
        watch.uninstall()
    assert not caplog.records
    assert watch.snapshot()[0][0][-1] == ("+Inf", 1)


@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 5, allow_nan=False)), max_size=40))
def test_buckets_are_cumulative_per_generation(pauses: list[tuple[int, float]]) -> None:
    watch = gc_tuning.PauseWatch()
    for gen, s in pauses:
        watch.observe(gen, s)
    got = watch.snapshot()
    for gen in range(3):
        mine = [s for g, s in pauses if g == gen]
        buckets, total = got[gen]
        expected = [sum(1 for s in mine if s <= b) for b in gc_tuning.PAUSE_BUCKETS] + [len(mine)]
        assert [n for _, n in buckets] == expected
        assert total == pytest.approx(sum(mine))


def test_the_node_metrics_show_the_process_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    text = generate_latest(NodeMetrics().registry).decode()
    assert "# TYPE schedd_gc_pause_seconds histogram" in text
    assert "schedd_gc_pause_seconds_count" not in text  # no watch in this process: no samples
    watch = gc_tuning.PauseWatch()
    watch.observe(2, 0.02)
    monkeypatch.setattr(gc_tuning, "WATCH", watch)
    text = generate_latest(NodeMetrics().registry).decode()
    assert 'schedd_gc_pause_seconds_bucket{generation="2",le="0.025"} 1.0' in text
    assert 'schedd_gc_pause_seconds_bucket{generation="2",le="0.01"} 0.0' in text
    assert 'schedd_gc_pause_seconds_count{generation="0"} 0.0' in text
