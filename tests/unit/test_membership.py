"""The membership planner (schedd.raft.membership): a change is refused unless the cluster keeps
a working majority without the member being added or removed; ids and addresses stay unique;
the entry's payload reads back. Pure: no processes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedd.errors import FailedPrecondition, InvalidArgument, NotFound
from schedd.raft import membership as mb
from schedd.raft.membership import Member, PeerState


def member(i: int) -> Member:
    return Member(f"n{i}", f"127.0.0.1:{7100 + i}", f"127.0.0.1:{7000 + i}")


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Member], Member, dict[str, PeerState], int]:
    n = draw(st.integers(1, 7))
    members = [member(i) for i in range(1, n + 1)]
    leader = members[draw(st.integers(0, n - 1))]
    commit = draw(st.integers(0, 5000))
    peers = {
        m.raft: PeerState(draw(st.booleans()), draw(st.integers(0, commit + 5)))
        for m in members
        if m != leader
    }
    return members, leader, peers, commit


def healthy_count(
    members: list[Member], leader: Member, peers: dict[str, PeerState], commit: int
) -> int:
    return sum(
        1
        for m in members
        if m == leader
        or (peers[m.raft].connected and commit - peers[m.raft].match_index <= mb.CAUGHT_UP_SLACK)
    )


@given(clusters())
def test_an_addition_is_planned_exactly_when_a_majority_of_the_larger_cluster_is_healthy(
    c: tuple[list[Member], Member, dict[str, PeerState], int],
) -> None:
    members, leader, peers, commit = c
    new = member(99)
    ok = healthy_count(members, leader, peers, commit) >= mb.majority(len(members) + 1)
    if ok:
        change = mb.plan_add(members, leader, peers, commit, new)
        assert change is not None and change.op == mb.ADD
        assert set(change.members_after) == {*members, new}
    else:
        with pytest.raises(FailedPrecondition, match="bring them back"):
            mb.plan_add(members, leader, peers, commit, new)


@given(clusters(), st.integers(1, 7))
def test_a_removal_keeps_a_majority_of_the_members_left(
    c: tuple[list[Member], Member, dict[str, PeerState], int], which: int
) -> None:
    members, leader, peers, commit = c
    target = member(which)
    if target not in members:
        with pytest.raises(NotFound, match="not a member"):
            mb.plan_remove(members, leader, peers, commit, target.node_id)
        return
    rest = [m for m in members if m != target]
    if len(members) == 1 or target == leader:
        with pytest.raises(FailedPrecondition):
            mb.plan_remove(members, leader, peers, commit, target.node_id)
        return
    if healthy_count(rest, leader, peers, commit) >= mb.majority(len(rest)):
        change = mb.plan_remove(members, leader, peers, commit, target.node_id)
        assert change.op == mb.REMOVE and set(change.members_after) == set(rest)
    else:
        with pytest.raises(FailedPrecondition, match="bring them back"):
            mb.plan_remove(members, leader, peers, commit, target.node_id)


def test_adding_a_member_again_with_the_same_addresses_is_a_no_op() -> None:
    members = [member(1), member(2), member(3)]
    peers = {m.raft: PeerState(True, 10) for m in members[1:]}
    assert mb.plan_add(members, members[0], peers, 10, member(2)) is None


def test_an_id_or_raft_address_of_another_member_is_refused_naming_the_field() -> None:
    members = [member(1), member(2), member(3)]
    peers = {m.raft: PeerState(True, 10) for m in members[1:]}
    with pytest.raises(InvalidArgument, match="node_id"):
        mb.plan_add(members, members[0], peers, 10, Member("n2", "h:1", "h:2"))
    with pytest.raises(InvalidArgument, match="raft_address"):
        mb.plan_add(members, members[0], peers, 10, Member("n9", members[2].raft, "h:2"))


def test_a_member_far_behind_does_not_count_towards_the_majority() -> None:
    # 3 members, one connected but catching up: adding a 4th needs 3 healthy
    members = [member(1), member(2), member(3)]
    commit = 5000
    far = commit - mb.CAUGHT_UP_SLACK - 1
    peers = {members[1].raft: PeerState(True, commit), members[2].raft: PeerState(True, far)}
    with pytest.raises(FailedPrecondition, match="n3"):
        mb.plan_add(members, members[0], peers, commit, member(4))
    # a few entries behind under load is healthy
    peers[members[2].raft] = PeerState(True, commit - 3)
    assert mb.plan_add(members, members[0], peers, commit, member(4)) is not None


@given(clusters())
def test_the_payload_reads_back(c: tuple[list[Member], Member, dict[str, PeerState], int]) -> None:
    members, leader, peers, commit = c
    change = mb.Change(mb.ADD, member(42), tuple(sorted([*members, member(42)])))
    op, address, after = mb.decode_payload(change.payload())
    assert (op, address, after) == (mb.ADD, member(42).raft, change.members_after)
    assert mb.from_json(mb.to_json(after or ())) == tuple(sorted(after or ()))


def test_pysyncobj_own_format_and_garbage() -> None:
    assert mb.decode_payload(["rem", "h:1"]) == ("rem", "h:1", None)
    for bad in ([], ["drop", "h:1"], ["add", 7], ["add", "h:1", "n", "g", [["a", "b"]]]):
        with pytest.raises(ValueError):
            mb.decode_payload(bad)
