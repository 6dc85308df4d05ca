"""``schedd dev``'s restart policy (schedd.server.supervise), in process."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schedd.server.supervise import RestartPolicy, exit_text


def test_backoff_doubles_and_gives_up_after_max_restarts_in_a_minute() -> None:
    p = RestartPolicy(max_restarts=3, window_s=60, first_backoff_s=1, max_backoff_s=4)
    assert p.exited("n1", 100.0) == 101.0
    assert p.exited("n1", 102.0) == 104.0
    assert p.exited("n1", 105.0) == 109.0
    assert p.exited("n1", 110.0) is None  # a fourth exit within a minute: left down
    assert p.exited("n2", 110.0) == 111.0  # per node
    assert p.exited("n1", 161.0) == 165.0  # the first exit left the window (3 in it now)


@given(st.lists(st.floats(0, 1000, allow_nan=False), max_size=40))
def test_never_more_than_max_restarts_in_any_window(gaps: list[float]) -> None:
    p = RestartPolicy(max_restarts=5, window_s=60)
    now, restarts = 0.0, []
    for g in gaps:
        now += g
        at = p.exited("n", now)
        if at is not None:
            assert now + 1 <= at <= now + 16
            restarts.append(now)
    for i, t in enumerate(restarts):
        assert len([u for u in restarts[i:] if u < t + 60]) <= 5


def test_exit_text() -> None:
    assert exit_text(3) == "exit code 3"
    assert exit_text(-9) == "killed by signal 9 (SIGKILL)"
    assert exit_text(-40) == "killed by signal 40"
