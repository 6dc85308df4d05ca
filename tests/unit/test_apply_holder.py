"""Leases belong to their holder, request ids to their caller: apply's side of both rules.

The leader stamps the worker of the session a completion or release came from
(``CompleteItem.worker_id``, ``ExpireItem.worker_id``) and the service stamps the caller's
identity and a hash of the request into a command with a request id (``Command.principal``,
``Command.request_hash``). Apply checks them against the replicated state only; entries without
the stamps (written by older leaders) keep their old meaning.
"""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply import MemoryState
from tests.unit.test_apply import T0, cmd, create, fire, grant, run_log

FIRST_DUE = T0 - T0 % 1000 + 1000
RID = keys.run_id("a", 1, FIRST_DUE)


def leased() -> tuple[MemoryState, int]:
    entries = [create("a"), fire("a", 1, FIRST_DUE, [FIRST_DUE], FIRST_DUE + 1000), grant(RID)]
    return run_log(entries), len(entries)


def completion(fence: int, worker: str, success: bool = True) -> bytes:
    return cmd(
        T0,
        complete_runs=command_pb2.CompleteRunsCmd(
            items=[
                command_pb2.CompleteItem(run_id=RID, fence=fence, success=success, worker_id=worker)
            ],
            retry_backoff_ms=1000,
            dead_letter=True,
        ),
    )


def release(fence: int, worker: str) -> bytes:
    return cmd(
        T0,
        expire_leases=command_pb2.ExpireLeasesCmd(
            items=[
                command_pb2.ExpireItem(
                    run_id=RID, fence=fence, reason="drain", released=True, worker_id=worker
                )
            ],
            retry_backoff_ms=1000,
            dead_letter=True,
        ),
    )


def run_of(state: MemoryState) -> types_pb2.Run:
    return types_pb2.Run.FromString(state.get("runs", RID.encode()))  # type: ignore[arg-type]


def test_a_completion_from_another_worker_is_refused_and_changes_nothing() -> None:
    state, idx = leased()
    before = state.digest()
    r = state.apply(completion(1, "intruder"), idx + 1)
    code, message = r.items[0]
    assert code == "PERMISSION_DENIED"
    assert "w1" in message and "intruder" in message and "worker_id" in message
    assert state.digest() == before
    assert run_of(state).state == types_pb2.RUN_STATE_LEASED
    # The holder's own completion still counts.
    assert state.apply(completion(1, "w1"), idx + 2).items == (("OK", ""),)
    assert run_of(state).state == types_pb2.RUN_STATE_SUCCEEDED
    # A resend by someone else after the fact is not "already recorded" for them.
    assert state.apply(completion(1, "intruder"), idx + 3).items[0][0] == "PERMISSION_DENIED"
    assert state.apply(completion(1, "w1"), idx + 4).items == (("OK", "already recorded"),)


def test_a_stale_fence_is_still_aborted_whoever_sends_it() -> None:
    state, idx = leased()
    assert state.apply(completion(7, "intruder"), idx + 1).items[0][0] == "ABORTED"


def test_completions_without_a_stamped_worker_keep_their_old_meaning() -> None:
    state, idx = leased()
    assert state.apply(completion(1, ""), idx + 1).items == (("OK", ""),)


def test_a_release_from_another_worker_is_ignored() -> None:
    state, idx = leased()
    before = state.digest()
    assert state.apply(release(1, "intruder"), idx + 1).count == 0
    assert state.digest() == before
    run = run_of(state)
    assert (run.state, run.attempt, run.attempt_base) == (types_pb2.RUN_STATE_LEASED, 1, 0)
    assert state.apply(release(1, "w1"), idx + 2).count == 1
    assert run_of(state).state == types_pb2.RUN_STATE_PENDING


# ---- request ids: scoped to the caller, bound to the request ---------------------------------


def scoped(entry: bytes, principal: str, request_hash: bytes) -> bytes:
    c = command_pb2.Command.FromString(entry)
    c.principal = principal
    c.request_hash = request_hash
    return c.SerializeToString(deterministic=True)


def test_the_same_request_id_from_two_callers_names_two_requests() -> None:
    state = MemoryState()
    a = state.apply(scoped(create("alice-job", request_id="r1"), "alice", b"h-a"), 1)
    b = state.apply(scoped(create("bob-job", request_id="r1"), "bob", b"h-b"), 2)
    assert a.ok and b.ok and a.job is not None and b.job is not None
    assert (a.job.name, b.job.name) == ("alice-job", "bob-job")
    again = state.apply(
        scoped(create("alice-job", request_id="r1", now=T0 + 5), "alice", b"h-a"), 3
    )
    assert again.ok and again.job is not None and again.job.uid == a.job.uid


def test_a_request_id_reused_for_another_request_is_refused_and_changes_nothing() -> None:
    state = MemoryState()
    state.apply(scoped(create("evil", request_id="victim-id"), "anonymous", b"h-evil"), 1)
    before = state.digest(audit=False)
    r = state.apply(scoped(create("good", request_id="victim-id"), "anonymous", b"h-good"), 2)
    assert r.code == "FAILED_PRECONDITION"
    assert "request_id" in r.message and r.job is None
    # nothing but the audit trail's record of the refused attempt
    assert state.digest(audit=False) == before


def test_unscoped_entries_keep_the_old_meaning() -> None:
    state = MemoryState()
    state.apply(create("a", request_id="old"), 1)
    r = state.apply(create("b", request_id="old"), 2)
    assert r.ok and r.job is not None and r.job.name == "a"  # the old behaviour, for old entries
    assert state.get("requests", b"old") is not None
