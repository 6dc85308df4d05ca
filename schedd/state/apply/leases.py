"""Leases and run endings: grants (fences from the replicated counter), expiries and
releases, completions with retries and dead letters, dispatch timeouts, dead-letter replay. Pure.
"""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.sched import retry
from schedd.state import keys
from schedd.state.apply import deps
from schedd.state.apply.runs import (
    _active_key,
    _cancel_active,
    _ended,
    _job_of,
    _lease,
    _pend,
    _promote_buffered,
    _unpend,
    _upstream_changed,
)
from schedd.state.apply.txn import Granted, Result, Run, Txn


def _grant_leases(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    granted: list[Granted] = []
    ttl = cmd.grant_leases.lease_ttl_ms
    for item in cmd.grant_leases.items:
        run = txn.run(item.run_id)
        if run is None or run.state != types_pb2.RUN_STATE_PENDING or run.attempt != item.attempt:
            continue
        job = _job_of(txn, run)
        _unpend(txn, run)
        if job is None:
            run.state = types_pb2.RUN_STATE_CANCELLED
            run.finished_ms = now
            run.error = "job was deleted"
            txn.put_run(run)
            txn.delete("active", _active_key(run))
            txn.count_finished(run)
            continue
        _lease(txn, run, item.worker_id, now)
        txn.put_run(run)
        granted.append(Granted(run, job.payload, job.run_timeout_ms))
    del ttl  # the expiry lives in the leader's memory; renewals are not replicated
    return Result(granted=tuple(granted), count=len(granted))


def _fail_attempt(
    txn: Txn,
    run: Run,
    error: str,
    now: int,
    default_backoff_ms: int,
    *,
    exit_code: int | None = None,
    dead_letter: bool = False,
) -> None:
    """End the current attempt as failed: retry after the job's backoff, or end the run when the
    failure is non-retryable or its attempts are used up: DEAD (a dead letter) when the command
    says so, FAILED for entries written before dead letters existed."""
    txn.delete("leases", run.run_id.encode())
    job = _job_of(txn, run)
    policy = retry.policy_of(job)
    failed = max(1, run.attempt - run.attempt_base)  # attempts since the last manual retry
    final = retry.non_retryable(policy, exit_code, error)
    run.error = error
    run.exit_code = exit_code or 0
    if not final and failed < retry.max_attempts(job) and job is not None:
        run.state = types_pb2.RUN_STATE_PENDING
        run.attempt += 1
        run.not_before_ms = now + retry.backoff_ms(policy, failed, default_backoff_ms)
        if job.dispatch_timeout_ms:
            run.dispatch_deadline_ms = run.not_before_ms + job.dispatch_timeout_ms
        _pend(txn, run)
        txn.put_run(run)
        txn.retried += 1
        return
    run.state = types_pb2.RUN_STATE_DEAD if dead_letter else types_pb2.RUN_STATE_FAILED
    run.finished_ms = now
    if final:
        run.error = f"{error} (not retried: {final})"
    txn.put_run(run)
    _ended(txn, run, now, success=False)


def _expire_leases(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    expired = 0
    for item in cmd.expire_leases.items:
        run = txn.run(item.run_id)
        if run is None or run.state != types_pb2.RUN_STATE_LEASED or run.fence != item.fence:
            continue
        if item.released:
            if item.worker_id and item.worker_id != _holder(txn, run):
                continue  # only the holding worker's session can give a lease back
            _release(txn, run, item.reason or "released by the worker", now)
            expired += 1
            continue
        _fail_attempt(
            txn,
            run,
            item.reason or "lease expired",
            now,
            cmd.expire_leases.retry_backoff_ms,
            dead_letter=cmd.expire_leases.dead_letter,
        )
        expired += 1
    return Result(count=expired)


def _release(txn: Txn, run: Run, reason: str, now: int) -> None:
    """The worker gave the lease back unfinished (drain): the run is PENDING again at once, at
    the next attempt number (so a new grant has a new attempt and fence), and ``attempt_base``
    moves with it, so the release does not use up an attempt of the retry policy."""
    txn.delete("leases", run.run_id.encode())
    run.state = types_pb2.RUN_STATE_PENDING
    run.attempt += 1
    run.attempt_base += 1
    run.not_before_ms = now
    run.error = reason
    txn.put_run(run)
    _pend(txn, run)


def _holder(txn: Txn, run: Run) -> str:
    """The worker holding the run's lease as recorded by its grant (the run's last worker once
    the lease is gone)."""
    raw = txn.get("leases", run.run_id.encode())
    return keys.split_lease_value(raw)[1] if raw is not None else run.worker_id


def _complete_runs(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """Completions under the run's current fence. An item stamped with a worker id (every item
    from this version's leaders) counts only if that worker holds the lease: knowing a fence
    (ListRuns shows it) is not enough to end somebody else's attempt."""
    items: list[tuple[str, str]] = []
    for item in cmd.complete_runs.items:
        run = txn.run(item.run_id)
        if run is None:
            items.append(("NOT_FOUND", f"run_id: no run {item.run_id!r}"))
            continue
        if run.fence == item.fence and item.worker_id:
            holder = _holder(txn, run)
            if holder != item.worker_id:
                items.append(
                    (
                        "PERMISSION_DENIED",
                        f"worker_id: run {item.run_id!r} fence {item.fence} is leased to worker "
                        f"{holder!r}, not {item.worker_id!r}; only the holder's session can "
                        "complete it",
                    )
                )
                continue
        if run.state != types_pb2.RUN_STATE_LEASED or run.fence != item.fence:
            if (
                run.fence == item.fence
                and item.success
                and run.state == types_pb2.RUN_STATE_SUCCEEDED
            ):
                items.append(("OK", "already recorded"))  # a resend after a reconnect
                continue
            state = _state_word(run.state)
            items.append(
                (
                    "ABORTED",
                    f"fence: {item.fence} is stale for run {item.run_id!r} "
                    f"(current fence {run.fence}, state {state}); the result was discarded",
                )
            )
            continue
        if item.success:
            txn.delete("leases", run.run_id.encode())
            run.state = types_pb2.RUN_STATE_SUCCEEDED
            run.finished_ms = now
            run.error = ""
            run.exit_code = 0
            txn.put_run(run)
            _ended(txn, run, now, success=True)
        else:
            _fail_attempt(
                txn,
                run,
                item.error or "failed",
                now,
                cmd.complete_runs.retry_backoff_ms,
                exit_code=item.exit_code if item.HasField("exit_code") else None,
                dead_letter=cmd.complete_runs.dead_letter,
            )
        items.append(("OK", ""))
    return Result(items=tuple(items), count=sum(1 for c, _ in items if c == "OK"))


def _dispatch_timeout(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """PENDING runs nobody started before their dispatch deadline become DEAD (no retry: a
    retry would wait for the same missing worker). Compare-and-set on attempt and deadline."""
    n = 0
    for item in cmd.dispatch_timeout.items:
        run = txn.run(item.run_id)
        if (
            run is None
            or run.state != types_pb2.RUN_STATE_PENDING
            or run.attempt != item.attempt
            or not run.dispatch_deadline_ms
            or run.dispatch_deadline_ms > now
        ):
            continue
        _unpend(txn, run)
        job = _job_of(txn, run)
        limit = (
            job.dispatch_timeout_ms
            if job is not None
            else run.dispatch_deadline_ms - run.not_before_ms
        )
        run.state = types_pb2.RUN_STATE_DEAD
        run.finished_ms = now
        run.error = (
            f"dispatch timeout: no worker (queue {run.queue!r}"
            + (f", tags {dict(sorted(run.tags.items()))}" if run.tags else "")
            + f") started it within {limit} ms of its due time"
        )
        txn.put_run(run)
        _ended(txn, run, now, success=False)
        n += 1
    return Result(count=n)


def _cancel_run(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """An operator ends an active run as CANCELLED. PENDING: it leaves the queue; LEASED: its
    lease is revoked (``Result.revoked``: the leader tells the worker, whose handler is
    cancelled) and its fence stale, so a late completion is refused; WAITING (buffered): it
    leaves the job's buffer. A buffered run of the job moves up as after any ending; no chain
    fires. A finished run is FAILED_PRECONDITION, an unknown one NOT_FOUND."""
    c = cmd.cancel_run
    run = txn.run(c.run_id)
    if run is None:
        return Result("NOT_FOUND", f"run_id: no run {c.run_id!r}")
    why = "cancelled" + (f" by {cmd.principal}" if cmd.principal else "")
    why += f": {c.reason}" if c.reason else ""
    job = _job_of(txn, run)
    if run.state == types_pb2.RUN_STATE_WAITING and run.waiting_for:
        deps.cancel_waiting(txn, run, why, now)  # waiting for upstreams, not buffered
        return Result(run=run)
    if run.state == types_pb2.RUN_STATE_WAITING:
        if job is not None and job.buffered_run == run.run_id:
            job.buffered_run = ""
            txn.put_job(job)
        run.state = types_pb2.RUN_STATE_CANCELLED
        run.finished_ms = now
        run.note = why
        txn.put_run(run)
        txn.count_finished(run)
        return Result(run=run)
    if run.state not in (types_pb2.RUN_STATE_PENDING, types_pb2.RUN_STATE_LEASED):
        return Result(
            "FAILED_PRECONDITION",
            f"run_id: run {c.run_id!r} is {_state_word(run.state)}; only a pending, leased or "
            "waiting run can be cancelled",
            run=run,
        )
    _cancel_active(txn, run, now, why)
    if job is not None and job.buffered_run:
        _promote_buffered(txn, job, now)
        txn.put_job(job)
    return Result(run=run)


def _state_word(state: int) -> str:
    return (
        types_pb2.RunState.Name(state).removeprefix("RUN_STATE_").lower()
        if state in types_pb2.RunState.values()
        else str(state)
    )


def _retry_run(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """An operator's replay of a dead letter: the run is PENDING again, due now, at the next
    attempt number, with a fresh set of attempts (``attempt_base``) under the job's policy."""
    rid = cmd.retry_run.run_id
    run = txn.run(rid)
    if run is None:
        return Result("NOT_FOUND", f"run_id: no run {rid!r}")
    if run.state not in (types_pb2.RUN_STATE_DEAD, types_pb2.RUN_STATE_FAILED):
        return Result(
            "FAILED_PRECONDITION",
            f"run_id: run {rid!r} is {_state_word(run.state)}; "
            "only dead or failed runs can be retried",
            run=run,
        )
    job = txn.job(run.job)
    if job is None or job.uid != keys.uid_of_run_id(run.run_id):
        return Result(
            "FAILED_PRECONDITION",
            f"run_id: the job of run {rid!r} was deleted; it cannot be retried",
            run=run,
        )
    run.state = types_pb2.RUN_STATE_PENDING
    run.attempt_base = run.attempt
    run.attempt += 1
    run.not_before_ms = now
    run.finished_ms = 0
    if job.dispatch_timeout_ms:
        run.dispatch_deadline_ms = now + job.dispatch_timeout_ms
    txn.put_run(run)
    _pend(txn, run)
    txn.put("active", _active_key(run), b"")
    if job.dependents:  # the runs its death made skip wait for it again
        _upstream_changed(txn, job, run, now, reopened=True)
    return Result(job=job, run=run)
