"""The replicated state machine, in-process: no Raft, no LMDB, no network."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.server.validate import create_job
from schedd.state import keys
from schedd.state.apply import UNSUPPORTED, MemoryState, encode

T0 = 1_700_000_000_000


def cmd(now: int = T0, **body: object) -> bytes:
    return encode(command_pb2.Command(now_ms=now, **body))


def create(
    name: str,
    cron: str = "* * * * * *",
    now: int = T0,
    request_id: str = "",
    retry: types_pb2.RetryPolicy | None = None,
) -> bytes:
    req = api_pb2.CreateJobRequest(
        name=name,
        request_id=request_id,
        retry=retry,
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron),
    )
    return encode(create_job(req, now))


def fire(name: str, uid: int, from_ms: int, slots: list[int], nxt: int, now: int = T0) -> bytes:
    return cmd(
        now,
        fire_due=command_pb2.FireDueCmd(
            items=[
                command_pb2.FireItem(
                    name=name, uid=uid, from_due_ms=from_ms, slots_ms=slots, next_due_ms=nxt
                )
            ]
        ),
    )


def grant(run_id: str, worker: str = "w1", attempt: int = 1, now: int = T0) -> bytes:
    return cmd(
        now,
        grant_leases=command_pb2.GrantLeasesCmd(
            items=[command_pb2.GrantItem(run_id=run_id, attempt=attempt, worker_id=worker)],
            lease_ttl_ms=10_000,
        ),
    )


def complete(
    run_id: str,
    fence: int,
    success: bool = True,
    now: int = T0,
    exit_code: int | None = None,
    dead_letter: bool = False,
) -> bytes:
    return cmd(
        now,
        complete_runs=command_pb2.CompleteRunsCmd(
            items=[
                command_pb2.CompleteItem(
                    run_id=run_id, fence=fence, success=success, exit_code=exit_code
                )
            ],
            retry_backoff_ms=1000,
            dead_letter=dead_letter,
        ),
    )


def expire(run_id: str, fence: int, now: int = T0, dead_letter: bool = False) -> bytes:
    return cmd(
        now,
        expire_leases=command_pb2.ExpireLeasesCmd(
            items=[command_pb2.ExpireItem(run_id=run_id, fence=fence)],
            retry_backoff_ms=1000,
            dead_letter=dead_letter,
        ),
    )


def run_log(entries: list[bytes]) -> MemoryState:
    state = MemoryState()
    for i, e in enumerate(entries, start=1):
        state.apply(e, i)
    return state


def basic_log() -> list[bytes]:
    first_due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, first_due)
    return [
        create("a"),
        fire("a", 1, first_due, [first_due], first_due + 1000, now=first_due),
        grant(rid),
        complete(rid, 1),
    ]


def test_create_fire_grant_complete() -> None:
    state = MemoryState()
    first_due = T0 - T0 % 1000 + 1000
    assert state.apply(create("a"), 1).job.next_due_ms == first_due
    r = state.apply(fire("a", 1, first_due, [first_due], first_due + 1000, now=first_due), 2)
    assert r.sub == () and r.count == 1
    rid = keys.run_id("a", 1, first_due)
    g = state.apply(grant(rid), 3)
    assert [x.run.fence for x in g.granted] == [1]
    assert state.apply(complete(rid, 1), 4).items == (("OK", ""),)
    run = types_pb2.Run.FromString(state.get("runs", rid.encode()))
    assert run.state == types_pb2.RUN_STATE_SUCCEEDED
    assert state.data["leases"] == {} and state.data["pending"] == {}


def test_replaying_the_log_is_idempotent() -> None:
    entries = basic_log()
    once = run_log(entries)
    twice = run_log(entries)
    for i, e in enumerate(entries, start=1):  # pysyncobj re-applies its journal after a restart
        assert twice.apply(e, i).code == "SKIPPED"
    assert once.digest() == twice.digest()


def test_garbage_and_unknown_commands_are_unsupported_and_change_nothing() -> None:
    """Apply answers UNSUPPORTED (the store then stops the node: tests/unit/test_store.py)."""
    state = run_log(basic_log())
    before = state.digest()
    n = len(basic_log())
    assert state.apply(b"\xff\x00garbage", n + 1).code == UNSUPPORTED
    # A newer version's new command type reads as a command without a body.
    assert state.apply(encode(command_pb2.Command(now_ms=T0)), n + 2).code == UNSUPPORTED
    bad_version = command_pb2.Command(version=99, now_ms=T0, barrier=command_pb2.BarrierCmd())
    assert state.apply(bad_version.SerializeToString(), n + 3).code == UNSUPPORTED
    in_batch = command_pb2.Command(
        now_ms=T0,
        batch=command_pb2.Batch(
            commands=[
                command_pb2.Command(barrier=command_pb2.BarrierCmd()),
                command_pb2.Command(now_ms=T0),
            ]
        ),
    )
    assert state.apply(encode(in_batch), n + 4).code == UNSUPPORTED
    assert state.digest() == before


def test_stale_fence_is_rejected_and_changes_nothing() -> None:
    first_due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, first_due)
    state = run_log(
        [create("a"), fire("a", 1, first_due, [first_due], first_due + 1000), grant(rid)]
    )
    assert state.apply(expire(rid, 1), 4).count == 1  # lease 1 lost: retry pending
    assert state.apply(grant(rid, "w2", attempt=2), 5).granted[0].run.fence == 2
    before = state.digest()
    code, message = state.apply(complete(rid, 1), 6).items[0]  # the paused worker wakes up
    assert code == "ABORTED" and "fence" in message
    assert state.digest() == before
    assert state.apply(complete(rid, 2), 7).items[0][0] == "OK"
    assert state.apply(complete(rid, 2), 8).items[0][0] == "OK"  # resend after reconnect: harmless


def test_duplicate_fire_claim_is_a_no_op() -> None:
    """A deposed leader's FireDue that commits late must not create runs a second time."""
    first_due = T0 - T0 % 1000 + 1000
    f = fire("a", 1, first_due, [first_due], first_due + 1000)
    state = run_log([create("a"), f])
    before = state.digest()
    r = state.apply(f, 3)
    assert r.count == 0 and "stale" in r.message
    # only applied_index moved, which the digest leaves out
    assert state.digest() == before


def test_request_id_makes_create_retry_safe() -> None:
    state = MemoryState()
    assert state.apply(create("a", request_id="r1"), 1).code == "OK"
    again = state.apply(create("a", request_id="r1"), 2)
    assert again.code == "OK" and again.job.name == "a"
    assert state.apply(create("a", request_id="r2"), 3).code == "ALREADY_EXISTS"


def test_grant_of_deleted_jobs_run_cancels_it() -> None:
    first_due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, first_due)
    state = run_log(
        [
            create("a"),
            fire("a", 1, first_due, [first_due], first_due + 1000),
            cmd(delete_job=command_pb2.DeleteJobCmd(name="a")),
        ]
    )
    assert state.apply(grant(rid), 4).granted == ()
    run = types_pb2.Run.FromString(state.get("runs", rid.encode()))
    assert run.state == types_pb2.RUN_STATE_CANCELLED
    assert state.data["due"] == {}


def test_cancel_run_revokes_the_lease_and_refuses_finished_runs() -> None:
    first_due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, first_due)
    state = run_log(basic_log()[:3])  # create, fire, grant: leased under fence 1
    r = state.apply(
        cmd(
            first_due + 5,
            principal="token:ops",
            cancel_run=command_pb2.CancelRunCmd(run_id=rid, reason="wrong input"),
        ),
        4,
    )
    assert r.ok and r.run.state == types_pb2.RUN_STATE_CANCELLED
    assert r.run.note == "cancelled by token:ops: wrong input"
    assert [(x.run_id, x.fence, x.worker_id) for x in r.revoked] == [(rid, 1, "w1")]
    assert state.data["leases"] == {} and state.data["active"] == {}
    late = state.apply(complete(rid, 1), 5)  # the worker's result, too late: stale fence
    assert late.items[0][0] == "ABORTED"
    again = state.apply(cmd(T0, cancel_run=command_pb2.CancelRunCmd(run_id=rid)), 6)
    assert again.code == "FAILED_PRECONDITION" and "cancelled" in again.message
    missing = state.apply(cmd(T0, cancel_run=command_pb2.CancelRunCmd(run_id="a:1:1")), 7)
    assert missing.code == "NOT_FOUND" and missing.message.startswith("run_id:")


def test_cancel_run_of_a_pending_run_takes_it_off_the_queue() -> None:
    first_due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, first_due)
    state = run_log(basic_log()[:2])
    r = state.apply(cmd(T0, cancel_run=command_pb2.CancelRunCmd(run_id=rid)), 3)
    assert r.ok and r.run.state == types_pb2.RUN_STATE_CANCELLED and r.revoked == ()
    assert state.data["pending"] == {} and state.data["pending_q"] == {}
    assert state.apply(grant(rid), 4).granted == ()


def test_attempts_are_bounded() -> None:
    first_due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, first_due)
    entries = [create("a"), fire("a", 1, first_due, [first_due], first_due + 1000)]
    state = run_log(entries)
    idx = len(entries)
    for attempt in range(1, 6):
        idx += 1
        fence = state.apply(grant(rid, attempt=attempt), idx).granted[0].run.fence
        idx += 1
        state.apply(complete(rid, fence, success=False), idx)
    run = types_pb2.Run.FromString(state.get("runs", rid.encode()))
    assert run.state == types_pb2.RUN_STATE_FAILED and run.attempt == 5


# ---- properties over random logs ---------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "create",
                "fire",
                "grant",
                "complete",
                "expire",
                "pause",
                "resume",
                "delete",
                "trigger",
                "cancel",
                "garbage",
                "retry",
            ]
        ),
        st.sampled_from(["a", "b"]),
        st.integers(0, 3),
        st.booleans(),
    ),
    max_size=40,
)


def random_log(ops: list[tuple[str, str, int, bool]]) -> list[bytes]:
    """A log built against a shadow replica so that most entries are meaningful."""
    shadow = MemoryState()
    entries: list[bytes] = []
    now = T0
    for op, name, k, flag in ops:
        now += 1000
        job_raw = shadow.get("jobs", name.encode())
        job = types_pb2.Job.FromString(job_raw) if job_raw else None
        runs = [types_pb2.Run.FromString(v) for v in shadow.data["runs"].values()]
        if op == "create":
            # job "b" has a retry policy: two attempts, exit code 3 is final, exponential backoff
            policy = (
                types_pb2.RetryPolicy(
                    max_attempts=2,
                    initial_backoff_ms=k * 500,
                    multiplier=1.5,
                    non_retryable_exit_codes=[3],
                )
                if name == "b"
                else None
            )
            e = create(name, now=now, retry=policy)
        elif op == "fire" and job is not None:
            slots = [job.next_due_ms + 1000 * i for i in range(k + 1)]
            e = fire(name, job.uid, job.next_due_ms, slots, slots[-1] + 1000, now=now)
        elif op in ("grant", "complete", "expire") and runs:
            run = runs[k % len(runs)]
            fence = run.fence + (1 if flag and op != "grant" else 0)  # sometimes stale/unknown
            if op == "grant":
                e = grant(run.run_id, attempt=run.attempt, now=now)
            elif (
                op == "complete"
            ):  # k: the exit code reported (0: none); k < 2 is an older leader's entry
                e = complete(
                    run.run_id,
                    fence,
                    success=flag,
                    now=now,
                    exit_code=k or None,
                    dead_letter=k >= 2,
                )
            else:
                e = expire(run.run_id, fence, now=now, dead_letter=flag)
        elif op == "retry" and runs:  # mostly a dead letter, sometimes a run in another state
            ended = [
                r for r in runs if r.state in (types_pb2.RUN_STATE_DEAD, types_pb2.RUN_STATE_FAILED)
            ]
            pick = ended if ended and flag else runs
            e = cmd(now, retry_run=command_pb2.RetryRunCmd(run_id=pick[k % len(pick)].run_id))
        elif op == "cancel" and runs:  # any run: finished ones are refused
            e = cmd(now, cancel_run=command_pb2.CancelRunCmd(run_id=runs[k % len(runs)].run_id))
        elif op == "pause":
            e = cmd(now, pause_job=command_pb2.PauseJobCmd(name=name))
        elif op == "resume":
            e = cmd(now, resume_job=command_pb2.ResumeJobCmd(name=name, next_due_ms=now + 500))
        elif op == "delete":
            e = cmd(now, delete_job=command_pb2.DeleteJobCmd(name=name))
        elif op == "trigger":
            e = cmd(now, trigger_job=command_pb2.TriggerJobCmd(name=name))
        elif op == "garbage":
            e = bytes([k, 0xFF, 0x10]) * 3
        else:
            continue
        entries.append(e)
        shadow.apply(e, len(entries))
    return entries


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_two_replicas_applying_the_same_log_are_identical(
    ops: list[tuple[str, str, int, bool]],
) -> None:
    entries = random_log(ops)
    assert run_log(entries).digest() == run_log(entries).digest()


@settings(max_examples=60, deadline=None)
@given(OPS, st.integers(0, 40))
def test_restart_replay_from_any_point_is_idempotent(
    ops: list[tuple[str, str, int, bool]], cut: int
) -> None:
    entries = random_log(ops)
    full = run_log(entries)
    restarted = run_log(entries[:cut])
    for i, e in enumerate(entries, start=1):  # replay the whole journal, as after a restart
        restarted.apply(e, i)
    assert restarted.digest() == full.digest()


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_fences_strictly_increase_and_leases_match_runs(
    ops: list[tuple[str, str, int, bool]],
) -> None:
    state = MemoryState()
    last_fence = 0
    for i, e in enumerate(random_log(ops), start=1):
        for g in state.apply(e, i).granted:
            assert g.run.fence > last_fence
            last_fence = g.run.fence
        runs = {k.decode(): types_pb2.Run.FromString(v) for k, v in state.data["runs"].items()}
        assert all(
            r.state in types_pb2.RunState.values() and r.state != types_pb2.RUN_STATE_UNSPECIFIED
            for r in runs.values()
        )
        assert all(r.attempt > r.attempt_base for r in runs.values())
        dead = {rid for rid, r in runs.items() if r.state == types_pb2.RUN_STATE_DEAD}
        assert not dead & {k.decode() for k in state.data["leases"]}  # dead letters hold no lease
        assert not dead & {keys.split_pending_key(k)[1] for k in state.data["pending"]}  # nor wait
        leased = {rid for rid, r in runs.items() if r.state == types_pb2.RUN_STATE_LEASED}
        assert leased == {
            k.decode() for k in state.data["leases"]
        }  # at most one live lease per run
        pending = {rid for rid, r in runs.items() if r.state == types_pb2.RUN_STATE_PENDING}
        assert pending == {keys.split_pending_key(k)[1] for k in state.data["pending"]}
        assert {
            (r.queue, r.not_before_ms, rid)
            for rid, r in runs.items()
            if r.state == types_pb2.RUN_STATE_PENDING
        } == {
            (
                k.split(b"\x00", 1)[0].decode(),
                keys.from_be64(k.split(b"\x00", 1)[1]),
                k.split(b"\x00", 1)[1][8:].decode(),
            )
            for k in state.data["pending_q"]
        }
        active = {
            rid
            for rid, r in runs.items()
            if r.state in (types_pb2.RUN_STATE_PENDING, types_pb2.RUN_STATE_LEASED)
        }
        # active key: job + 0x00 + be64(uid) + be64(scheduled) + run id
        assert active == {k[k.index(b"\x00") + 17 :].decode() for k in state.data["active"]}
        jobs = [types_pb2.Job.FromString(v) for v in state.data["jobs"].values()]
        due = {keys.split_due_key(k) for k in state.data["due"]}
        assert due == {
            (j.next_due_ms, j.name)
            for j in jobs
            if j.state == types_pb2.JOB_STATE_ACTIVE and j.next_due_ms
        }
