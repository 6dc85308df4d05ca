"""A released lease (the worker gave it back while draining): PENDING at once, no attempt used."""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply import MemoryState
from tests.unit.test_apply import T0, cmd, complete, create, fire, grant, run_log

FIRST_DUE = T0 - T0 % 1000 + 1000
RID = keys.run_id("a", 1, FIRST_DUE)


def release(
    run_id: str, fence: int, now: int, reason: str = "released by worker w1: drain"
) -> bytes:
    return cmd(
        now,
        expire_leases=command_pb2.ExpireLeasesCmd(
            items=[
                command_pb2.ExpireItem(run_id=run_id, fence=fence, reason=reason, released=True)
            ],
            retry_backoff_ms=1000,
            dead_letter=True,
        ),
    )


def run_of(state: MemoryState) -> types_pb2.Run:
    return types_pb2.Run.FromString(state.get("runs", RID.encode()))


def leased() -> tuple[MemoryState, int]:
    entries = [create("a"), fire("a", 1, FIRST_DUE, [FIRST_DUE], FIRST_DUE + 1000), grant(RID)]
    return run_log(entries), len(entries)


def test_release_makes_the_run_pending_now_without_using_an_attempt() -> None:
    state, idx = leased()
    now = FIRST_DUE + 5000
    assert state.apply(release(RID, 1, now), idx + 1).count == 1
    run = run_of(state)
    assert run.state == types_pb2.RUN_STATE_PENDING
    assert run.not_before_ms == now  # due at once: no backoff
    assert (run.attempt, run.attempt_base) == (2, 1)  # attempts since base unchanged
    assert run.error == "released by worker w1: drain"
    assert state.data["leases"] == {}
    assert state.data["pending"] == {keys.pending_key(now, RID): b""}


def test_released_fence_is_stale_and_next_grant_gets_a_higher_fence() -> None:
    state, idx = leased()
    state.apply(release(RID, 1, FIRST_DUE), idx + 1)
    r = state.apply(complete(RID, 1), idx + 2)  # the released handler's late completion
    assert r.items[0][0] == "ABORTED"
    g = state.apply(grant(RID, attempt=2), idx + 3)
    assert [x.run.fence for x in g.granted] == [2]
    assert state.apply(complete(RID, 2), idx + 4).items == (("OK", ""),)
    assert run_of(state).state == types_pb2.RUN_STATE_SUCCEEDED


def test_releases_never_exhaust_the_attempts() -> None:
    """With the default limit of 5 attempts, many releases followed by failures still give
    every real attempt its turn: only failures count."""
    state, idx = leased()
    fence, attempt = 1, 1
    for _ in range(8):  # more releases than max attempts
        idx += 1
        state.apply(release(RID, fence, FIRST_DUE), idx)
        attempt += 1
        idx += 1
        fence = state.apply(grant(RID, attempt=attempt), idx).granted[0].run.fence
    for _ in range(4):  # 4 failures: still retried
        idx += 1
        state.apply(complete(RID, fence, success=False), idx)
        assert run_of(state).state == types_pb2.RUN_STATE_PENDING
        attempt += 1
        idx += 1
        fence = state.apply(grant(RID, attempt=attempt), idx).granted[0].run.fence
    idx += 1
    state.apply(
        cmd(
            FIRST_DUE,
            complete_runs=command_pb2.CompleteRunsCmd(
                items=[command_pb2.CompleteItem(run_id=RID, fence=fence, success=False)],
                retry_backoff_ms=1000,
                dead_letter=True,
            ),
        ),
        idx,
    )
    assert run_of(state).state == types_pb2.RUN_STATE_DEAD  # the 5th failure is the last


def test_release_with_a_stale_fence_changes_nothing() -> None:
    state, idx = leased()
    before = state.digest()
    assert state.apply(release(RID, 99, FIRST_DUE), idx + 1).count == 0
    assert state.digest() == before


def test_unreleased_expiry_still_uses_an_attempt_with_backoff() -> None:
    state, idx = leased()
    state.apply(
        cmd(
            FIRST_DUE,
            expire_leases=command_pb2.ExpireLeasesCmd(
                items=[command_pb2.ExpireItem(run_id=RID, fence=1, reason="lease expired")],
                retry_backoff_ms=1000,
                dead_letter=True,
            ),
        ),
        idx + 1,
    )
    run = run_of(state)
    assert (run.attempt, run.attempt_base) == (2, 0)
    assert run.not_before_ms == FIRST_DUE + 1000
