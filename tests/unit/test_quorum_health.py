"""The health decision (schedd.raft.quorum): SERVING while part of a working majority,
NOT_SERVING after a grace of one election timeout without one, SERVING again at once."""

from __future__ import annotations

from schedd.raft.quorum import QuorumHealth, QuorumView

LEADER_OK = QuorumView(is_leader=True, has_quorum=True, leader_heard=True)
LEADER_ALONE = QuorumView(is_leader=True, has_quorum=False, leader_heard=True)
FOLLOWER_OK = QuorumView(is_leader=False, has_quorum=True, leader_heard=True)
FOLLOWER_CUT_OFF = QuorumView(is_leader=False, has_quorum=False, leader_heard=True)
FOLLOWER_NO_LEADER = QuorumView(is_leader=False, has_quorum=True, leader_heard=False)


def test_serving_while_part_of_a_majority() -> None:
    h = QuorumHealth(grace_s=2.0, now_s=0.0)
    for t, view in enumerate([LEADER_OK, FOLLOWER_OK, LEADER_OK]):
        assert not h.observe(view, float(t))
        assert h.serving


def test_a_leader_without_majority_stops_serving_after_the_grace() -> None:
    h = QuorumHealth(grace_s=2.0, now_s=0.0)
    h.observe(LEADER_OK, 10.0)
    assert not h.observe(LEADER_ALONE, 11.0)  # within the grace: an election may fix it
    assert h.serving
    assert h.observe(LEADER_ALONE, 12.5)
    assert not h.serving and h.reason == "leader_without_majority"
    assert h.observe(LEADER_OK, 13.0)  # one good observation is enough
    assert h.serving and h.reason == ""


def test_a_follower_cut_off_or_without_leader_stops_serving() -> None:
    for view, reason in [
        (FOLLOWER_CUT_OFF, "no_majority_connected"),
        (FOLLOWER_NO_LEADER, "no_leader"),
    ]:
        h = QuorumHealth(grace_s=1.0, now_s=0.0)
        h.observe(view, 0.5)
        assert h.serving
        assert h.observe(view, 1.5)
        assert h.reason == reason


def test_the_grace_counts_from_the_last_good_observation_and_from_start() -> None:
    h = QuorumHealth(grace_s=2.0, now_s=100.0)
    assert not h.observe(FOLLOWER_NO_LEADER, 101.9)  # a node just started: election pending
    assert h.observe(FOLLOWER_NO_LEADER, 102.1)
    h.observe(FOLLOWER_OK, 103.0)
    assert not h.observe(FOLLOWER_NO_LEADER, 104.9)
    assert h.serving
