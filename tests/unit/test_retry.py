"""Retries and dead letters: the backoff sequence, non-retryable failures, DEAD, RetryRun, run
timeouts on the leader, and the surfaces (validation, ListRuns state filter, SDK, schedctl).

The state machine runs in-process (MemoryState, like test_apply.py); the run-timeout test drives
the real dispatcher tick against a real LMDB store with a fake Raft and a fake clock.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from schedd.clock import FakeClock
from schedd.errors import InvalidArgument
from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched import retry
from schedd.server import validate
from schedd.server.dispatcher import Dispatcher, DispatchSettings
from schedd.server.workers import Registry, WorkerSession
from schedd.state import keys
from schedd.state.apply import MemoryState, encode
from schedd.state.store import Store

try:
    import schedctl  # noqa: F401  (installed with the package)
except ImportError:  # a source checkout: the package lives in cli/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))

from schedctl import main as cli_main  # noqa: E402

from schedd import client as sdk  # noqa: E402

T0 = 1_700_000_000_000
PENDING, LEASED, DEAD, FAILED, SUCCEEDED = (
    types_pb2.RUN_STATE_PENDING,
    types_pb2.RUN_STATE_LEASED,
    types_pb2.RUN_STATE_DEAD,
    types_pb2.RUN_STATE_FAILED,
    types_pb2.RUN_STATE_SUCCEEDED,
)


def policy(**kw: Any) -> types_pb2.RetryPolicy:
    return types_pb2.RetryPolicy(**kw)


# ---- the backoff sequence (pure) -----------------------------------------------------------


def test_backoff_is_exponential_and_capped() -> None:
    p = policy(initial_backoff_ms=1000, multiplier=2.0, max_backoff_ms=10_000)
    assert [retry.backoff_ms(p, n, 999) for n in range(1, 8)] == [
        1000,
        2000,
        4000,
        8000,
        10_000,
        10_000,
        10_000,
    ]


def test_backoff_rounds_half_up_to_whole_milliseconds() -> None:
    p = policy(initial_backoff_ms=3, multiplier=1.5, max_backoff_ms=1000)
    # 3, 4.5, 6.75, 10.125, 15.1875
    assert [retry.backoff_ms(p, n, 0) for n in range(1, 6)] == [3, 5, 7, 10, 15]


def test_backoff_is_exact_not_libm_pow() -> None:
    """The value is the exact rational initial * m**(n-1), whatever the platform's pow does."""
    p = policy(initial_backoff_ms=7, multiplier=1.1, max_backoff_ms=86_400_000)
    for n in range(1, 60):
        exact = Fraction(7) * Fraction(1.1) ** (n - 1)
        assert retry.backoff_ms(p, n, 0) == math.floor(exact + Fraction(1, 2))


def test_no_policy_is_the_commands_fixed_backoff() -> None:
    assert [retry.backoff_ms(None, n, 1500) for n in (1, 2, 9)] == [1500, 1500, 1500]
    # a policy without initial_backoff_ms (only possible by bypassing validation) uses it too
    assert retry.backoff_ms(policy(multiplier=2.0, max_backoff_ms=10_000), 2, 1500) == 3000


def test_multiplier_one_is_a_fixed_backoff_and_zero_backoff_is_allowed() -> None:
    assert {
        retry.backoff_ms(policy(initial_backoff_ms=500, multiplier=1.0, max_backoff_ms=500), n, 0)
        for n in range(1, 100)
    } == {500}
    assert (
        retry.backoff_ms(policy(initial_backoff_ms=0, multiplier=3.0, max_backoff_ms=0), 10, 0) == 0
    )


@pytest.mark.parametrize(
    "p",
    [
        policy(initial_backoff_ms=-5, multiplier=float("nan"), max_backoff_ms=-1),
        policy(initial_backoff_ms=10**15, multiplier=float("inf"), max_backoff_ms=10**15),
        policy(initial_backoff_ms=100, multiplier=-3.0, max_backoff_ms=50),
        policy(initial_backoff_ms=100, multiplier=1e300, max_backoff_ms=10**12),
    ],
)
def test_backoff_never_raises_on_numbers_that_bypassed_validation(p: types_pb2.RetryPolicy) -> None:
    for n in (0, 1, 2, 100, 10_000):
        assert 0 <= retry.backoff_ms(p, n, 1000) <= retry.DAY_MS


def test_max_attempts_falls_back_to_the_job_field_then_five() -> None:
    assert retry.max_attempts(types_pb2.Job(max_attempts=3, retry=policy(max_attempts=7))) == 7
    assert retry.max_attempts(types_pb2.Job(max_attempts=3, retry=policy())) == 3
    assert retry.max_attempts(types_pb2.Job(max_attempts=3)) == 3
    assert retry.max_attempts(types_pb2.Job()) == 5
    assert retry.max_attempts(None) == 5


def test_non_retryable_by_exit_code_or_error_text() -> None:
    p = policy(non_retryable_exit_codes=[3, 64], non_retryable_errors=["PermissionError"])
    assert "exit code 3" in retry.non_retryable(p, 3, "exit code 3")
    assert retry.non_retryable(p, 4, "exit code 4") == ""
    assert "PermissionError" in retry.non_retryable(p, None, "PermissionError(13, 'denied')")
    assert retry.non_retryable(p, None, "permissionerror") == ""  # case-sensitive
    assert retry.non_retryable(None, 3, "PermissionError") == ""


# ---- validation ----------------------------------------------------------------------------


def create_req(
    name: str = "j",
    *,
    max_attempts: int = 0,
    retry_policy: types_pb2.RetryPolicy | None = None,
    run_timeout_ms: int = 0,
    cron: str = "* * * * * *",
) -> api_pb2.CreateJobRequest:
    return api_pb2.CreateJobRequest(
        name=name,
        max_attempts=max_attempts,
        retry=retry_policy,
        run_timeout_ms=run_timeout_ms,
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=cron),
    )


def created_job(req: api_pb2.CreateJobRequest) -> types_pb2.Job:
    return validate.create_job(req, T0).create_job.job


def test_validation_writes_every_default_of_a_policy_out() -> None:
    job = created_job(create_req(retry_policy=policy()))
    assert job.retry.max_attempts == 5 and job.max_attempts == 5
    assert job.retry.HasField("initial_backoff_ms") and job.retry.initial_backoff_ms == 1000
    assert job.retry.multiplier == 2.0 and job.retry.max_backoff_ms == 100_000
    job = created_job(
        create_req(
            max_attempts=3,
            retry_policy=policy(initial_backoff_ms=0, non_retryable_exit_codes=[9, 3, 9]),
        )
    )
    assert (job.retry.max_attempts, job.max_attempts) == (3, 3)
    assert (job.retry.initial_backoff_ms, job.retry.max_backoff_ms) == (0, 0)
    assert list(job.retry.non_retryable_exit_codes) == [3, 9]
    assert (
        created_job(
            create_req(retry_policy=policy(initial_backoff_ms=3_600_000))
        ).retry.max_backoff_ms
        == retry.DAY_MS
    )


def test_a_job_without_a_policy_keeps_the_fixed_backoff() -> None:
    job = created_job(create_req(max_attempts=4))
    assert not job.HasField("retry") and job.max_attempts == 4 and job.run_timeout_ms == 0


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (create_req(retry_policy=policy(max_attempts=101)), "retry.max_attempts"),
        (create_req(max_attempts=2, retry_policy=policy(max_attempts=3)), "retry.max_attempts"),
        (create_req(retry_policy=policy(initial_backoff_ms=-1)), "retry.initial_backoff_ms"),
        (
            create_req(retry_policy=policy(initial_backoff_ms=retry.DAY_MS + 1)),
            "retry.initial_backoff_ms",
        ),
        (create_req(retry_policy=policy(multiplier=0.5)), "retry.multiplier"),
        (create_req(retry_policy=policy(multiplier=-2.0)), "retry.multiplier"),
        (create_req(retry_policy=policy(multiplier=10.5)), "retry.multiplier"),
        (create_req(retry_policy=policy(multiplier=float("nan"))), "retry.multiplier"),
        (create_req(retry_policy=policy(multiplier=float("inf"))), "retry.multiplier"),
        (
            create_req(retry_policy=policy(initial_backoff_ms=5000, max_backoff_ms=1000)),
            "retry.max_backoff_ms",
        ),
        (create_req(retry_policy=policy(max_backoff_ms=-3)), "retry.max_backoff_ms"),
        (create_req(retry_policy=policy(max_backoff_ms=retry.DAY_MS + 1)), "retry.max_backoff_ms"),
        (
            create_req(retry_policy=policy(non_retryable_exit_codes=[0])),
            "retry.non_retryable_exit_codes",
        ),
        (
            create_req(retry_policy=policy(non_retryable_exit_codes=[256])),
            "retry.non_retryable_exit_codes",
        ),
        (
            create_req(retry_policy=policy(non_retryable_exit_codes=list(range(1, 40)))),
            "retry.non_retryable_exit_codes",
        ),
        (create_req(retry_policy=policy(non_retryable_errors=[" "])), "retry.non_retryable_errors"),
        (
            create_req(retry_policy=policy(non_retryable_errors=["x" * 201])),
            "retry.non_retryable_errors",
        ),
        (create_req(run_timeout_ms=-1), "run_timeout_ms"),
        (create_req(run_timeout_ms=999), "run_timeout_ms"),
        (create_req(run_timeout_ms=7 * retry.DAY_MS + 1), "run_timeout_ms"),
    ],
)
def test_bad_retry_numbers_are_invalid_argument_naming_the_field(
    req: api_pb2.CreateJobRequest, field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate.create_job(req, T0)
    assert info.value.field == field, info.value.message


def test_run_timeout_bounds_are_inclusive() -> None:
    assert created_job(create_req(run_timeout_ms=1000)).run_timeout_ms == 1000
    assert (
        created_job(create_req(run_timeout_ms=7 * retry.DAY_MS)).run_timeout_ms == 7 * retry.DAY_MS
    )


# ---- apply: failures, DEAD, RetryRun -------------------------------------------------------


class Log:
    """A replica plus the next log index; helpers append one entry each."""

    def __init__(self) -> None:
        self.state = MemoryState()
        self.index = 0
        self.now = T0

    def apply(self, **body: Any) -> Any:
        self.index += 1
        return self.state.apply(encode(command_pb2.Command(now_ms=self.now, **body)), self.index)

    def create(self, name: str = "j", **kw: Any) -> types_pb2.Job:
        self.index += 1
        req = create_req(name, **kw)
        return self.state.apply(encode(validate.create_job(req, self.now)), self.index).job

    def trigger(self, name: str = "j") -> str:
        return self.apply(trigger_job=command_pb2.TriggerJobCmd(name=name)).run.run_id

    def grant(self, rid: str) -> int:
        run = self.run(rid)
        r = self.apply(
            grant_leases=command_pb2.GrantLeasesCmd(
                items=[command_pb2.GrantItem(run_id=rid, attempt=run.attempt, worker_id="w1")],
                lease_ttl_ms=10_000,
            )
        )
        assert len(r.granted) == 1, (run.state, run.attempt)
        return int(r.granted[0].run.fence)

    def fail(
        self,
        rid: str,
        fence: int,
        error: str = "boom",
        exit_code: int | None = None,
        dead_letter: bool = True,
    ) -> Any:
        return self.apply(
            complete_runs=command_pb2.CompleteRunsCmd(
                items=[
                    command_pb2.CompleteItem(
                        run_id=rid, fence=fence, success=False, error=error, exit_code=exit_code
                    )
                ],
                retry_backoff_ms=777,
                dead_letter=dead_letter,
            )
        )

    def expire(self, rid: str, fence: int, reason: str) -> Any:
        return self.apply(
            expire_leases=command_pb2.ExpireLeasesCmd(
                items=[command_pb2.ExpireItem(run_id=rid, fence=fence, reason=reason)],
                retry_backoff_ms=777,
                dead_letter=True,
            )
        )

    def retry_run(self, rid: str, request_id: str = "") -> Any:
        self.index += 1
        cmd = command_pb2.Command(
            now_ms=self.now, request_id=request_id, retry_run=command_pb2.RetryRunCmd(run_id=rid)
        )
        return self.state.apply(encode(cmd), self.index)

    def run(self, rid: str) -> types_pb2.Run:
        return types_pb2.Run.FromString(self.state.get("runs", rid.encode()))

    def pending_keys(self) -> set[tuple[int, str]]:
        return {keys.split_pending_key(k) for k in self.state.data["pending"]}


def test_failed_attempts_back_off_exponentially_then_the_run_is_dead() -> None:
    log = Log()
    log.create(
        retry_policy=policy(
            max_attempts=4, initial_backoff_ms=1000, multiplier=3.0, max_backoff_ms=5000
        )
    )
    rid = log.trigger()
    waits = []
    for attempt in (1, 2, 3):
        fence = log.grant(rid)
        log.now += 10
        assert log.fail(rid, fence).items == (("OK", ""),)
        run = log.run(rid)
        assert (run.state, run.attempt) == (PENDING, attempt + 1)
        assert (run.not_before_ms, rid) in log.pending_keys()
        waits.append(run.not_before_ms - log.now)
    assert waits == [1000, 3000, 5000]
    fence = log.grant(rid)
    log.fail(rid, fence, "exit code 1", exit_code=1)
    run = log.run(rid)
    assert (run.state, run.attempt, run.exit_code) == (DEAD, 4, 1)
    assert run.finished_ms == log.now and run.error == "exit code 1"
    assert log.state.data["leases"] == {} and log.pending_keys() == set()


def test_a_job_without_a_policy_waits_the_commands_fixed_backoff() -> None:
    log = Log()
    log.create(max_attempts=2)
    rid = log.trigger()
    log.fail(rid, log.grant(rid))
    assert log.run(rid).not_before_ms == log.now + 777
    log.fail(rid, log.grant(rid))
    assert log.run(rid).state == DEAD


def test_entries_from_before_dead_letters_keep_their_meaning() -> None:
    """A CompleteRuns entry without dead_letter (written by an older leader) still ends in FAILED."""
    log = Log()
    log.create(max_attempts=1)
    rid = log.trigger()
    log.fail(rid, log.grant(rid), dead_letter=False)
    assert log.run(rid).state == FAILED


def test_non_retryable_exit_code_is_dead_after_one_attempt() -> None:
    log = Log()
    log.create(retry_policy=policy(max_attempts=5, non_retryable_exit_codes=[3]))
    rid = log.trigger()
    log.fail(rid, log.grant(rid), "exit code 3: bad config", exit_code=3)
    run = log.run(rid)
    assert (run.state, run.attempt, run.exit_code) == (DEAD, 1, 3)
    assert run.error.startswith("exit code 3: bad config") and "non-retryable" in run.error
    assert log.pending_keys() == set()


def test_other_exit_codes_and_completions_without_one_are_retried() -> None:
    log = Log()
    log.create(retry_policy=policy(max_attempts=5, non_retryable_exit_codes=[3]))
    rid = log.trigger()
    log.fail(rid, log.grant(rid), "exit code 4", exit_code=4)
    assert (log.run(rid).state, log.run(rid).exit_code) == (PENDING, 4)
    log.fail(rid, log.grant(rid), "exit code 3 in the text only")  # no exit_code field
    assert log.run(rid).state == PENDING and log.run(rid).exit_code == 0


def test_non_retryable_error_text_applies_to_run_timeouts_too() -> None:
    log = Log()
    log.create(retry_policy=policy(max_attempts=5, non_retryable_errors=["run timeout"]))
    rid = log.trigger()
    assert (
        log.expire(rid, log.grant(rid), "run timeout: still running 30s after it started").count
        == 1
    )
    assert log.run(rid).state == DEAD and log.state.data["leases"] == {}


def test_a_run_timeout_expiry_counts_as_a_failed_attempt() -> None:
    log = Log()
    log.create(max_attempts=2, run_timeout_ms=1000)
    rid = log.trigger()
    log.expire(rid, log.grant(rid), "run timeout: still running 1s after it started")
    assert (log.run(rid).state, log.run(rid).attempt) == (PENDING, 2)
    log.expire(rid, log.grant(rid), "run timeout: still running 1s after it started")
    run = log.run(rid)
    assert run.state == DEAD and run.error.startswith("run timeout")


def test_retry_run_replays_a_dead_run_with_fresh_attempts() -> None:
    log = Log()
    log.create(
        retry_policy=policy(
            max_attempts=2, initial_backoff_ms=100, multiplier=2.0, max_backoff_ms=1000
        )
    )
    rid = log.trigger()
    log.fail(rid, log.grant(rid))
    log.fail(rid, log.grant(rid))
    assert log.run(rid).state == DEAD
    log.now += 60_000
    r = log.retry_run(rid)
    assert r.ok and r.run.run_id == rid
    run = log.run(rid)
    assert (run.state, run.attempt, run.attempt_base) == (PENDING, 3, 2)
    assert run.not_before_ms == log.now and run.finished_ms == 0
    assert log.pending_keys() == {(log.now, rid)}
    # a fresh set of attempts: attempt 3 fails -> retried after the *first* backoff; 4 -> DEAD
    log.fail(rid, log.grant(rid))
    assert (log.run(rid).state, log.run(rid).not_before_ms - log.now) == (PENDING, 100)
    fence = log.grant(rid)
    log.fail(rid, fence)
    assert (log.run(rid).state, log.run(rid).attempt) == (DEAD, 4)
    # and a success after a replay
    log.retry_run(rid)
    log.apply(
        complete_runs=command_pb2.CompleteRunsCmd(
            items=[command_pb2.CompleteItem(run_id=rid, fence=log.grant(rid), success=True)],
            dead_letter=True,
        )
    )
    assert log.run(rid).state == SUCCEEDED


def test_retry_run_replays_a_legacy_failed_run() -> None:
    log = Log()
    log.create(max_attempts=1)
    rid = log.trigger()
    log.fail(rid, log.grant(rid), dead_letter=False)
    assert log.retry_run(rid).ok
    assert (log.run(rid).state, log.run(rid).attempt) == (PENDING, 2)


def test_retry_run_of_a_run_in_another_state_is_failed_precondition_naming_it() -> None:
    log = Log()
    log.create()
    rid = log.trigger()
    before = log.state.digest()
    r = log.retry_run(rid)
    assert (
        r.code == "FAILED_PRECONDITION"
        and "pending" in r.message
        and r.message.startswith("run_id:")
    )
    log.grant(rid)
    before = log.state.digest()
    r = log.retry_run(rid)
    assert r.code == "FAILED_PRECONDITION" and "leased" in r.message
    assert log.state.digest() == before
    assert log.retry_run("j:1:123").code == "NOT_FOUND"


def test_retry_run_of_a_deleted_jobs_run_is_refused() -> None:
    log = Log()
    log.create(max_attempts=1)
    rid = log.trigger()
    log.fail(rid, log.grant(rid))
    log.apply(delete_job=command_pb2.DeleteJobCmd(name="j"))
    log.create()  # the same name again: a different job (uid)
    r = log.retry_run(rid)
    assert r.code == "FAILED_PRECONDITION" and "deleted" in r.message
    assert log.run(rid).state == DEAD


def test_a_retried_retry_run_request_replays_once() -> None:
    log = Log()
    log.create(max_attempts=1)
    rid = log.trigger()
    log.fail(rid, log.grant(rid))
    assert log.retry_run(rid, request_id="r1").ok
    again = log.retry_run(rid, request_id="r1")
    assert again.ok and again.run.attempt == 2 and log.run(rid).attempt == 2


# ---- the ListRuns state filter (real LMDB) -------------------------------------------------


def test_list_runs_state_filter(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lmdb"))
    try:
        log = Log()
        log.create(max_attempts=1)
        log.create("k", max_attempts=1)
        rids = []
        for name in ("j", "j", "k", "j"):
            log.now += 1
            rids.append(log.trigger(name))
        log.fail(rids[0], log.grant(rids[0]))
        log.fail(rids[2], log.grant(rids[2]))
        for db, items in log.state.data.items():  # copy the replica into LMDB
            with store._env.begin(write=True) as txn:
                for k, v in items.items():
                    txn.put(k, v, db=store.db(db))
        assert [r.run_id for r in store.list_runs(state=DEAD)] == sorted([rids[0], rids[2]])
        assert [r.run_id for r in store.list_runs("j", state=DEAD)] == [rids[0]]
        assert [r.run_id for r in store.list_runs("j", state=PENDING)] == [rids[1], rids[3]]
        assert [r.run_id for r in store.list_runs("j", limit=1, state=PENDING)] == [rids[3]]
        assert len(store.list_runs()) == 4
    finally:
        store.close()


# ---- run timeouts: the leader's dispatcher tick --------------------------------------------


class FakeRaft:
    """Commits every proposal at once into the store, like a one-node cluster."""

    raftCurrentTerm = 1

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 0
        self.proposed: list[command_pb2.Command] = []

    def is_leader(self) -> bool:
        return True

    def propose(self, data: bytes, timeout: float) -> Any:
        self.index += 1
        self.proposed.append(command_pb2.Command.FromString(data))
        return self.store.apply_entry(data, self.index)


def test_leader_expires_a_lease_held_past_the_run_timeout(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lmdb"))
    clock = FakeClock(T0)
    raft = FakeRaft(store)
    registry = Registry()
    d = Dispatcher(
        node_id="n1",
        store=store,
        raft=raft,
        clock=clock,
        registry=registry,  # type: ignore[arg-type]
        leader_hint=lambda: "",
        settings=DispatchSettings(lease_ttl_s=3600),
    )
    try:
        raft.propose(
            encode(
                validate.create_job(
                    create_req("slow", max_attempts=2, run_timeout_ms=5000, cron="0 0 1 1 *"), T0
                )
            ),
            0,
        )
        rid = raft.propose(
            encode(
                command_pb2.Command(now_ms=T0, trigger_job=command_pb2.TriggerJobCmd(name="slow"))
            ),
            0,
        ).run.run_id
        d._activate(1)
        session = WorkerSession("w1", frozenset({"default"}), 1, last_seen=clock.monotonic())
        d.attach(session, [])
        d._tick()  # grants the run
        run = store.get_run(rid)
        assert run is not None and run.state == LEASED and run.started_ms == T0
        assert session.outbound.get_nowait().WhichOneof("body") == "firings"
        for _ in range(3):  # heartbeats keep the lease alive, but not past the run timeout
            clock.advance(1.5)
            assert d.heartbeat(session, [api_pb2.Lease(run_id=rid, fence=run.fence)]) == []
            d._tick()
        assert store.get_run(rid).state == LEASED  # type: ignore[union-attr]
        clock.advance(0.5)  # T0 + 5 s: the deadline
        d._tick()
        after = store.get_run(rid)
        assert after is not None and after.state == PENDING and after.attempt == 2
        assert after.error.startswith("run timeout")
        expiry = raft.proposed[-1].batch.commands[0].expire_leases
        assert [(i.run_id, i.fence) for i in expiry.items] == [
            (rid, run.fence)
        ] and expiry.dead_letter
        lost = session.outbound.get_nowait()
        assert lost.WhichOneof("body") == "lost" and lost.lost.leases[0].fence == run.fence
        assert lost.lost.reason.startswith("run timeout")
        # a new leader rebuilds the deadlines from LMDB: the second attempt times out as well
        clock.advance(1.0)
        session.seen(clock.monotonic())
        d._tick()  # grants attempt 2
        second = store.get_run(rid)
        assert second is not None and second.state == LEASED
        d._deactivate("test")
        d._activate(2)
        assert d._deadlines == {rid: (second.fence, second.started_ms + 5000, 5000)}
        session = WorkerSession("w1", frozenset({"default"}), 1, last_seen=clock.monotonic())
        d.attach(session, [api_pb2.Lease(run_id=rid, fence=second.fence)])
        clock.advance(5.0)
        d._tick()
        final = store.get_run(rid)
        assert final is not None and final.state == DEAD and final.error.startswith("run timeout")
    finally:
        store.close()


def test_completions_are_answered_from_the_lease_table_then_from_the_run(tmp_path: Path) -> None:
    """A completion for a lease the leader's table holds (this fence, this worker) is queued
    without reading the run; every other one is answered from the committed run, as before:
    stale fence ABORTED, another worker PERMISSION_DENIED, unknown run NOT_FOUND."""
    store = Store(str(tmp_path / "lmdb"))
    clock = FakeClock(T0)
    raft = FakeRaft(store)
    d = Dispatcher(
        node_id="n1",
        store=store,
        raft=raft,
        clock=clock,
        registry=Registry(),  # type: ignore[arg-type]
        leader_hint=lambda: "",
        settings=DispatchSettings(lease_ttl_s=3600),
    )
    reads: list[str] = []
    get_run = store.get_run

    def counted(rid: str) -> types_pb2.Run | None:
        reads.append(rid)
        return get_run(rid)

    store.get_run = counted  # type: ignore[method-assign]
    try:
        raft.propose(encode(validate.create_job(create_req("a", cron="0 0 1 1 *"), T0)), 0)
        rids = [
            raft.propose(
                encode(
                    command_pb2.Command(now_ms=T0, trigger_job=command_pb2.TriggerJobCmd(name="a"))
                ),
                0,
            ).run.run_id
            for _ in range(2)
        ]
        d._activate(1)
        session = WorkerSession("w1", frozenset({"default"}), 2, last_seen=clock.monotonic())
        d.attach(session, [])
        d._tick()  # grants both runs to w1
        runs = [store.get_run(r) for r in rids]
        assert all(r is not None and r.state == LEASED for r in runs)
        fences = [r.fence for r in runs if r is not None]
        answers: list[tuple[str, str]] = []

        def answer(c: api_pb2.Completion, code: str, msg: str) -> None:
            answers.append((c.run_id, code))

        def complete(rid: str, fence: int, worker: str) -> None:
            item = api_pb2.Completion(run_id=rid, fence=fence, outcome=api_pb2.OUTCOME_SUCCEEDED)
            d.submit_completions([item], answer, worker)

        reads.clear()
        complete(rids[0], fences[0] + 100, "w1")
        complete(rids[0], fences[0], "w2")
        complete("a:9:1", 1, "w1")
        assert answers == [
            (rids[0], "ABORTED"),
            (rids[0], "PERMISSION_DENIED"),
            ("a:9:1", "NOT_FOUND"),
        ]
        assert reads == [rids[0], rids[0], "a:9:1"]
        answers.clear()
        reads.clear()
        complete(rids[0], fences[0], "w1")
        assert reads == [] and answers == []  # held: queued for the next tick unread
        clock.advance(1.0)  # past the linger a lone completion may wait for company
        d._tick()
        assert answers == [(rids[0], "OK")]
        assert store.get_run(rids[0]).state == types_pb2.RUN_STATE_SUCCEEDED  # type: ignore[union-attr]
    finally:
        store.close()


# ---- SDK and schedctl ----------------------------------------------------------------------


def test_sdk_retry_policy_and_run_state_helpers() -> None:
    p = sdk.retry_policy(max_attempts=3, initial_backoff_ms=0, non_retryable_exit_codes=[3])
    assert p.HasField("initial_backoff_ms") and p.initial_backoff_ms == 0
    assert not sdk.retry_policy().HasField("initial_backoff_ms")
    assert sdk.run_state("dead") == sdk.run_state("RUN_STATE_DEAD") == DEAD == sdk.run_state(DEAD)
    with pytest.raises(InvalidArgument) as info:
        sdk.run_state("zombie")
    assert info.value.field == "state" and "dead" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        sdk._as_policy({"max_attempts": 2, "backof": 1})
    assert info.value.field == "retry.backof"


class FakeClient:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    fail: BaseException | None = None
    RUN = types_pb2.Run(run_id="j:1:5", job="j", state=PENDING, attempt=3)

    def __init__(self, endpoints: list[str], **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def _do(self, name: str, result: Any, *args: Any, **kwargs: Any) -> Any:
        FakeClient.calls.append((name, args, kwargs))
        if FakeClient.fail is not None:
            raise FakeClient.fail
        return result

    def create_job(self, name: str, **kw: Any) -> types_pb2.Job:
        return self._do("create_job", types_pb2.Job(name=name), name, **kw)

    def list_runs(self, **kw: Any) -> list[types_pb2.Run]:
        return self._do("list_runs", [self.RUN], **kw)

    def retry_run(self, run_id: str, request_id: str | None = None) -> types_pb2.Run:
        return self._do("retry_run", self.RUN, run_id, request_id=request_id)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(cli_main, "Client", FakeClient)
    FakeClient.calls = []
    FakeClient.fail = None
    return FakeClient


def invoke(*args: str) -> Any:
    return CliRunner().invoke(
        cli_main.cli,
        ["--endpoints", "127.0.0.1:1", *args],
        env={"SCHEDD_ENDPOINTS": None, "SCHEDCTL_RETRY_FOR": None},
    )


def test_schedctl_job_create_passes_the_retry_options(fake: type[FakeClient]) -> None:
    r = invoke(
        "job",
        "create",
        "j",
        "--cron",
        "* * * * *",
        "--max-attempts",
        "4",
        "--backoff",
        "1s",
        "--backoff-multiplier",
        "2.5",
        "--max-backoff",
        "1m",
        "--non-retryable-exit-code",
        "3",
        "--non-retryable-exit-code",
        "64",
        "--non-retryable-error",
        "denied",
        "--run-timeout",
        "30s",
    )
    assert r.exit_code == 0, r.output
    kw = fake.calls[0][2]
    assert kw["max_attempts"] == 4 and kw["run_timeout_ms"] == 30_000
    assert kw["retry"] == {
        "max_attempts": 4,
        "initial_backoff_ms": 1000,
        "multiplier": 2.5,
        "max_backoff_ms": 60_000,
        "non_retryable_exit_codes": [3, 64],
        "non_retryable_errors": ["denied"],
    }


@pytest.mark.parametrize(
    ("field", "option"),
    [
        ("retry.initial_backoff_ms", "--backoff"),
        ("retry.multiplier", "--backoff-multiplier"),
        ("retry.max_backoff_ms", "--max-backoff"),
        ("retry.max_attempts", "--max-attempts"),
        ("retry.non_retryable_exit_codes", "--non-retryable-exit-code"),
        ("run_timeout_ms", "--run-timeout"),
    ],
)
def test_schedctl_names_the_option_for_a_bad_retry_number(
    fake: type[FakeClient], field: str, option: str
) -> None:
    fake.fail = InvalidArgument(field, "is out of range")
    r = invoke("job", "create", "j", "--cron", "* * * * *", "--backoff", "1s")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {option}: is out of range"


def test_schedctl_bad_durations_name_the_option(fake: type[FakeClient]) -> None:
    for opt in ("--backoff", "--max-backoff", "--run-timeout"):
        r = invoke("job", "create", "j", "--cron", "* * * * *", opt, "soon")
        assert r.exit_code == 2 and r.stderr.startswith(f"error: {opt}:"), r.stderr
    assert fake.calls == []


def test_schedctl_run_list_state_and_run_retry(fake: type[FakeClient]) -> None:
    r = invoke("--json", "run", "list", "--state", "dead")
    assert r.exit_code == 0, r.output
    assert fake.calls[-1] == ("list_runs", (), {"job": "", "limit": 100, "state": DEAD})
    r = invoke("run", "list", "--state", "zombie")
    assert r.exit_code == 2 and "--state" in r.stderr
    r = invoke("run", "retry", "j:1:5", "--request-id", "rq")
    assert r.exit_code == 0, r.output
    assert fake.calls[-1] == ("retry_run", ("j:1:5",), {"request_id": "rq"})
    assert "j:1:5" in r.stdout and "attempt 3" in r.stdout and "pending" in r.stdout
    from schedd.errors import FailedPrecondition

    fake.fail = FailedPrecondition(
        "run_id: run 'j:1:5' is succeeded; only dead or failed runs can be retried"
    )
    r = invoke("run", "retry", "j:1:5")
    assert r.exit_code == 1 and "succeeded" in r.stderr
