"""schedd.raft.compaction.CompactionPolicy: when a node compacts its Raft log (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schedd.raft.compaction import CompactionClock, CompactionPolicy

P = CompactionPolicy(
    min_entries=1000, min_bytes=1 << 20, max_interval_s=600, min_interval_s=30, max_share=0.05
)


def due(
    entries: int,
    since_s: float,
    took: float = 0.0,
    rank: int = 0,
    leader: bool = False,
    size: int = 0,
) -> bool:
    return P.due(
        entries=entries,
        since_s=since_s,
        journal_bytes=size,
        last_took_s=took,
        rank=rank,
        members=3,
        leader=leader,
    )


def test_it_follows_the_write_rate_not_a_fixed_period() -> None:
    """pysyncobj's split slots held a compaction back for up to 10 minutes whatever the write
    rate: here a journal past the threshold is compacted as soon as the floor allows."""
    assert not due(999, since_s=31)
    assert due(1000, since_s=31)
    assert due(50_000, since_s=30)
    # a few large entries (a bulk create) count by their bytes
    assert not due(10, since_s=31, size=(1 << 20) - 1)
    assert due(10, since_s=31, size=1 << 20)


def test_never_more_often_than_the_floor() -> None:
    assert not due(10**6, since_s=29.9)
    # a copy that took 4 s waits 4 / 5 % = 80 s: at most 5 % of the node's time
    assert not due(10**6, since_s=79, took=4.0)
    assert due(10**6, since_s=80, took=4.0)


def test_a_quiet_node_still_compacts_what_it_holds() -> None:
    assert not due(10, since_s=599)
    assert due(10, since_s=600)
    assert not due(1, since_s=10**6)  # nothing applied since the last snapshot


def test_nodes_take_turns_and_the_leader_goes_last() -> None:
    at = [min(n for n in range(1000, 3000, 10) if due(n, 31, rank=r)) for r in range(3)]
    leader = min(n for n in range(1000, 3000, 10) if due(n, 31, rank=0, leader=True))
    assert at[0] < at[1] < at[2] < leader


@given(
    entries=st.integers(0, 10**7),
    since=st.floats(0, 10**5),
    took=st.floats(0, 100),
    rank=st.integers(0, 6),
    members=st.integers(1, 7),
    leader=st.booleans(),
)
def test_the_cost_bound_always_holds(
    entries: int, since: float, took: float, rank: int, members: int, leader: bool
) -> None:
    if P.due(
        entries=entries,
        since_s=since,
        last_took_s=took,
        rank=rank,
        members=members,
        leader=leader,
    ):
        assert since >= P.min_interval_s and since * P.max_share >= took - 1e-9
        assert entries > 1


def test_the_clock_remembers_the_last_compaction() -> None:
    c = CompactionClock(last_end=5.0)
    c.finished(10.0, 12.5)
    assert (c.last_end, c.last_took_s) == (12.5, 2.5)


@given(
    entries=st.integers(0, 10**6),
    size=st.integers(0, 1 << 22),
    since=st.floats(0, 2000),
    took=st.floats(0, 10),
    rank=st.integers(0, 6),
    members=st.integers(1, 7),
    leader=st.booleans(),
)
def test_may_be_due_is_never_false_when_due(
    entries: int, size: int, since: float, took: float, rank: int, members: int, leader: bool
) -> None:
    """The adapter skips the membership lookup when may_be_due is False: that must never hide
    a compaction that due() would ask for."""
    if P.due(
        entries=entries,
        since_s=since,
        journal_bytes=size,
        last_took_s=took,
        rank=rank,
        members=members,
        leader=leader,
    ):
        assert P.may_be_due(entries=entries, since_s=since, journal_bytes=size, last_took_s=took)
