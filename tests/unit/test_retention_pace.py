"""Retention's walk over the job table (``Dispatcher._plan_prune``) with a fake clock and a fake
job table: each housekeeping pass visits slices of jobs until its time budget is spent, so a
full pass over a large table takes minutes, not hours; the walk always ends and starts over."""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import replace
from typing import Any, cast

import pytest

from schedd.clock import FakeClock
from schedd.pb import types_pb2
from schedd.server.dispatcher import Dispatcher, DispatchSettings
from schedd.server.workers import Registry

NOW = 1_800_000_000_000


class Table:
    """``list_jobs`` and ``finished_runs_newest_first`` over ``n`` jobs; each slice read costs
    ``slice_s`` of the fake clock. Every job keeps 1 run and has 3 finished ones."""

    def __init__(self, clock: FakeClock, n: int, slice_s: float, keep_runs: int = 1) -> None:
        self.clock = clock
        self.names = [f"job-{i:07d}" for i in range(n)]
        self.slice_s = slice_s
        self.keep_runs = keep_runs
        self.slices = 0

    def list_jobs(self, after: str, limit: int) -> list[types_pb2.Job]:
        self.slices += 1
        self.clock.advance(self.slice_s)
        start = 0
        if after:
            start = next((i for i, n in enumerate(self.names) if n > after), len(self.names))
        return [
            types_pb2.Job(name=n, keep_runs=self.keep_runs)
            for n in self.names[start : start + limit]
        ]

    def finished_runs_newest_first(self, job: str) -> Generator[types_pb2.Run, None, None]:
        for k in range(3):
            yield types_pb2.Run(
                run_id=f"{job}:1:{NOW - k}",
                state=types_pb2.RUN_STATE_SUCCEEDED,
                finished_ms=NOW - k,
            )


def dispatcher(table: Table, **settings: Any) -> Dispatcher:
    return Dispatcher(
        node_id="n1",
        store=cast(Any, table),
        raft=cast(Any, None),
        clock=table.clock,
        registry=Registry(),
        leader_hint=lambda: "",
        settings=replace(DispatchSettings(), **settings),
    )


def test_a_pass_visits_slices_until_its_budget_is_spent() -> None:
    clock = FakeClock()
    table = Table(clock, 10_000, slice_s=0.006)
    d = dispatcher(table, prune_budget_s=0.02, prune_runs_per_entry=100_000)
    pruned = d._plan_prune(NOW)
    # 6 ms per slice of 200: the 4th slice crosses 20 ms; 800 jobs, 2 runs each beyond keep_runs
    assert table.slices == 4
    assert len(pruned) == 800 * 2
    assert pruned[:2] == ["job-0000000:1:1799999999999", "job-0000000:1:1799999999998"]
    # the next pass goes on where this one stopped
    pruned = d._plan_prune(NOW)
    assert pruned[0] == "job-0000800:1:1799999999999"


def test_without_a_budget_a_pass_is_one_slice() -> None:
    """Negative control: a zero budget is the old pace of one slice per housekeeping pass."""
    clock = FakeClock()
    table = Table(clock, 10_000, slice_s=0.006)
    d = dispatcher(table, prune_budget_s=0.0, prune_runs_per_entry=100_000)
    assert len(d._plan_prune(NOW)) == 200 * 2
    assert table.slices == 1


def test_a_full_entry_ends_the_pass_early() -> None:
    clock = FakeClock()
    table = Table(clock, 10_000, slice_s=0.0)
    d = dispatcher(table, prune_budget_s=1.0, prune_runs_per_entry=500)
    assert len(d._plan_prune(NOW)) == 500
    assert table.slices == 2  # 400 runs from the first slice, the entry filled in the second


def test_the_walk_ends_at_the_table_end_and_starts_over(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    table = Table(clock, 1_000, slice_s=0.006)
    d = dispatcher(table, prune_budget_s=0.02, prune_runs_per_entry=100_000)
    visited = []
    with caplog.at_level(logging.INFO, logger="schedd.dispatcher"):
        for _ in range(3):
            visited.append(len(d._plan_prune(NOW)) // 2)
    # 800 jobs, then the last 200 (the table ends), then from the start again
    assert visited == [800, 200, 800]
    [line] = [r.getMessage() for r in caplog.records if "retention_pass" in r.getMessage()]
    assert "jobs=1000 housekeeping_passes=2" in line


def test_a_table_smaller_than_its_budget_is_walked_whole_every_pass() -> None:
    clock = FakeClock()
    table = Table(clock, 450, slice_s=0.0)
    d = dispatcher(table, prune_budget_s=0.02, prune_runs_per_entry=100_000)
    for _ in range(3):
        assert len(d._plan_prune(NOW)) == 450 * 2
