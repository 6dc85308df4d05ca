"""Runs inside apply: creation through the overlap policy, skip records, indexes of pending and
active runs, endings, chaining, catch-up pacing. Pure; called by the command handlers.
"""

from __future__ import annotations

from typing import Any, cast

from schedd import rules
from schedd.pb import types_pb2
from schedd.state import keys
from schedd.state.apply import quotas
from schedd.state.apply.txn import Job, Result, Revoked, Run, Txn

_ACTIVE_STATES = (types_pb2.RUN_STATE_PENDING, types_pb2.RUN_STATE_LEASED)


FINISHED_STATES = tuple(sorted(rules.FINAL_RUN_STATES))


_MAX_CHAIN_WALK = 10_000


def _missing(name: str) -> Result:
    return Result("NOT_FOUND", f"name: no job named {name!r}")


def _job_of(txn: Txn, run: Run) -> Job | None:
    """The job incarnation ``run`` belongs to (None: deleted, or deleted and re-created)."""
    job = txn.job(run.job)
    if job is None or job.uid != keys.uid_of_run_id(run.run_id):
        return None
    return job


def _pend(txn: Txn, run: Run) -> None:
    """Index a PENDING run by due time, overall and per queue (the grant planner reads the
    queues its workers serve, so a queue nobody serves cannot starve the others)."""
    rid, at = run.run_id, run.not_before_ms
    txn.put("pending", keys.pending_key(at, rid), b"")
    txn.put("pending_q", keys.queue_pending_key(run.queue, at, rid), b"")


def _unpend(txn: Txn, run: Run) -> None:
    rid, at = run.run_id, run.not_before_ms
    txn.delete("pending", keys.pending_key(at, rid))
    txn.delete("pending_q", keys.queue_pending_key(run.queue, at, rid))


def _lease(txn: Txn, run: Run, worker_id: str, now: int) -> None:
    """Lease the PENDING ``run`` (not in the pending index) to ``worker_id`` under the next
    fence from the replicated counter; the caller saves ``run``."""
    fence = txn.counter(keys.NEXT_FENCE, 1)
    txn.put("meta", keys.NEXT_FENCE, keys.be64(fence + 1))
    run.state = types_pb2.RUN_STATE_LEASED
    run.fence = fence
    run.worker_id = worker_id
    # Leased ahead of its time (fire-ahead), it starts at its due time, not now.
    run.started_ms = max(now, run.not_before_ms)
    txn.put("leases", run.run_id.encode(), keys.lease_value(fence, worker_id))


def _active_key(run: Run, uid: int | None = None) -> bytes:
    return keys.active_key(
        run.job,
        keys.uid_of_run_id(run.run_id) if uid is None else uid,
        run.scheduled_ms,
        run.run_id,
    )


def _rid(job: Job, slot_ms: int, origin: int) -> str:
    if origin in (types_pb2.RUN_ORIGIN_TRIGGER, types_pb2.RUN_ORIGIN_CHAIN):
        return keys.manual_run_id(job.name, job.uid, slot_ms)
    return keys.run_id(job.name, job.uid, slot_ms)


def _new_run(
    txn: Txn,
    job: Job,
    scheduled_ms: int,
    not_before_ms: int,
    manual: bool,
    origin: int = types_pb2.RUN_ORIGIN_SCHEDULE,
    caused_by: str = "",
    *,
    lease_to: str = "",
    now: int = 0,
) -> Run:
    """A new PENDING run of ``job`` for ``scheduled_ms``; with ``lease_to``, LEASED to that
    worker at once (``now``: the entry's time), as a grant right after would have leased it,
    without the pending index entries the grant would delete again."""
    job.open_skip = ""  # a later skip must not extend a record over this run's slot
    name = job.name
    rid = _rid(job, scheduled_ms, origin)
    # Fields at their default are not set (proto3 writes no default): the same bytes, and one
    # firing's run is built once per replica on the hot path.
    run = Run(
        run_id=rid,
        job=name,
        scheduled_ms=scheduled_ms,
        state=types_pb2.RUN_STATE_PENDING,
        attempt=1,
        not_before_ms=not_before_ms,
        queue=job.queue,
        origin=origin,  # type: ignore[arg-type]
    )
    if manual:
        run.manual = True
    if job.priority:
        run.priority = job.priority
    if caused_by:
        run.caused_by = caused_by
    if job.tags:
        run.tags.update(job.tags)
    if job.dispatch_timeout_ms:
        run.dispatch_deadline_ms = not_before_ms + job.dispatch_timeout_ms
    if lease_to:
        _lease(txn, run, lease_to, now)
    txn.put_run(run)
    txn.put("runs_by_job", keys.by_job_key(name, scheduled_ms, rid), b"")
    quotas.add_runs(txn, name, 1)
    if not lease_to:
        _pend(txn, run)
    txn.put("active", keys.active_key(name, job.uid, scheduled_ms, rid), b"")
    txn.created[origin] = txn.created.get(origin, 0) + 1
    return run


def _skip(
    txn: Txn,
    job: Job,
    slot_ms: int,
    reason: int,
    now: int,
    *,
    until: int = 0,
    count: int = 1,
    merge: bool = True,
    origin: int = types_pb2.RUN_ORIGIN_SCHEDULE,
    note: str = "",
) -> Run | None:
    """Record that slots ``slot_ms .. until`` did not fire, and why. With ``merge``, a skip
    right after the job's open skip record with the same reason extends that record instead
    (a long overlap or outage makes one record, not thousands). The caller saves ``job``."""
    until = max(until, slot_ms)
    if merge and job.open_skip:
        rec = txn.run(job.open_skip)
        if (
            rec is not None
            and rec.state == types_pb2.RUN_STATE_SKIPPED
            and rec.skip_reason == reason
            and rec.skipped_until_ms < slot_ms
        ):
            old_until = rec.skipped_until_ms
            rec.skipped_until_ms = until
            rec.skipped_count = rec.skipped_count + count if rec.skipped_count and count else 0
            rec.finished_ms = now
            txn.put_run(rec)
            txn.skipped[reason] = txn.skipped.get(reason, 0) + max(1, count)
            if job.dependents:
                txn.delete("dep_skips", keys.dep_wait_key(job.name, job.uid, old_until, rec.run_id))
                _index_skip(txn, job, rec)
                _upstream_changed(txn, job, rec, now, lo=slot_ms, hi=until)
            return rec
    rid = _rid(job, slot_ms, origin)
    while txn.get("runs", rid.encode()) is not None:
        # The first slot has its own record (a trigger at that millisecond, an earlier skip):
        # the range record starts just after it, so the rest of the range is still covered.
        slot_ms += 1
        if slot_ms > until:
            return None
        rid = _rid(job, slot_ms, origin)
    rec = Run(
        run_id=rid,
        job=job.name,
        scheduled_ms=slot_ms,
        state=types_pb2.RUN_STATE_SKIPPED,
        skip_reason=cast(Any, reason),
        skipped_until_ms=until,
        skipped_count=count,
        finished_ms=now,
        queue=job.queue,
        origin=cast(Any, origin),
        note=note,
    )
    txn.put_run(rec)
    txn.put("runs_by_job", keys.by_job_key(job.name, slot_ms, rid), b"")
    quotas.add_runs(txn, job.name, 1)
    job.open_skip = rid if merge else ""
    txn.skipped[reason] = txn.skipped.get(reason, 0) + max(1, count)
    if job.dependents:
        _index_skip(txn, job, rec)
        _upstream_changed(txn, job, rec, now, lo=slot_ms, hi=until)
    return rec


def _index_skip(txn: Txn, job: Job, rec: Run) -> None:
    """Skip records of a job others depend on, by last slot: a run matched to a slot finds the
    record covering it with one seek (schedd.state.apply.deps)."""
    key = keys.dep_wait_key(
        job.name, job.uid, max(rec.skipped_until_ms, rec.scheduled_ms), rec.run_id
    )
    txn.put("dep_skips", key, keys.be64(rec.scheduled_ms))


def _upstream_changed(
    txn: Txn, job: Job, rec: Run, now: int, *, lo: int = -1, hi: int = -1, reopened: bool = False
) -> None:
    """A record of ``job``, which others depend on, changed (schedd.state.apply.deps)."""
    from schedd.state.apply import deps  # deps builds on this module

    deps.changed(txn, job, rec, now, lo=lo, hi=hi, reopened=reopened)


def _cancel_active(txn: Txn, run: Run, now: int, why: str) -> None:
    """End an active run as CANCELLED: its lease (if any) is revoked and its fence is stale."""
    if run.state == types_pb2.RUN_STATE_LEASED:
        txn.delete("leases", run.run_id.encode())
        txn.revoked.append(Revoked(run.run_id, run.fence, run.worker_id, why))
    elif run.state == types_pb2.RUN_STATE_PENDING:
        _unpend(txn, run)
    run.state = types_pb2.RUN_STATE_CANCELLED
    run.finished_ms = now
    run.note = why
    txn.put_run(run)
    txn.delete("active", _active_key(run))
    txn.count_finished(run)
    job = _job_of(txn, run)
    if job is not None and job.dependents:
        _upstream_changed(txn, job, run, now)


RUN, BUFFER = 0, -1  # decisions of _admit besides a SkipReason


def _admit(txn: Txn, job: Job, now: int, override: int, new_rid: str) -> int:
    """The overlap decision for a new run of ``job``: RUN, BUFFER, or a SkipReason. REPLACE
    cancels the oldest active runs here."""
    policy = override or job.overlap or types_pb2.OVERLAP_POLICY_ALLOW
    limit = job.max_concurrent
    if override == types_pb2.OVERLAP_POLICY_ALLOW:
        limit = 0  # an explicit "allow" on a trigger or backfill runs regardless
    elif policy != types_pb2.OVERLAP_POLICY_ALLOW and limit == 0:
        limit = 1
    if limit == 0:
        return RUN
    prefix = keys.active_prefix(job.name, job.uid)
    active = txn.scan("active", prefix, limit + 64)
    if len(active) < limit:
        return RUN
    if policy == types_pb2.OVERLAP_POLICY_BUFFER_ONE:
        return BUFFER if not job.buffered_run else types_pb2.SKIP_REASON_BUFFER_FULL
    if policy == types_pb2.OVERLAP_POLICY_REPLACE:
        for key in active[: len(active) - limit + 1]:
            old = txn.run(key[len(prefix) + 8 :].decode())
            if old is not None and old.state in _ACTIVE_STATES:
                _cancel_active(txn, old, now, f"replaced by run {new_rid} (overlap policy replace)")
            else:
                txn.delete("active", key)  # a stale entry; never expected
        return RUN
    return types_pb2.SKIP_REASON_OVERLAP


def _start_run(
    txn: Txn,
    job: Job,
    slot_ms: int,
    not_before_ms: int,
    now: int,
    *,
    origin: int,
    override: int = 0,
    manual: bool = False,
    caused_by: str = "",
    merge_skip: bool = True,
    lease_to: str = "",
) -> Run | None:
    """A new run of ``job`` for ``slot_ms`` through its overlap policy: PENDING (LEASED to
    ``lease_to`` when given), WAITING (buffered) or a SKIPPED record. The caller saves
    ``job``."""
    rid = _rid(job, slot_ms, origin)
    if quotas.runs_refused(txn, job.name) is not None:
        # Trigger and backfill refuse before they get here; a slot of the schedule or a chain
        # is recorded as skipped (merged with the job's open quota skip), never dropped.
        return _skip(txn, job, slot_ms, types_pb2.SKIP_REASON_QUOTA, now, origin=origin)
    decision = _admit(txn, job, now, override, rid)
    if decision == RUN:
        return _new_run(
            txn, job, slot_ms, not_before_ms, manual, origin, caused_by, lease_to=lease_to, now=now
        )
    if decision == BUFFER:
        run = Run(
            run_id=rid,
            job=job.name,
            scheduled_ms=slot_ms,
            state=types_pb2.RUN_STATE_WAITING,
            attempt=1,
            not_before_ms=not_before_ms,
            queue=job.queue,
            manual=manual,
            origin=cast(Any, origin),
            priority=job.priority,
            caused_by=caused_by,
        )
        run.tags.update(job.tags)
        txn.put_run(run)
        txn.put("runs_by_job", keys.by_job_key(job.name, slot_ms, rid), b"")
        quotas.add_runs(txn, job.name, 1)
        job.buffered_run = rid
        job.open_skip = ""
        return run
    return _skip(
        txn,
        job,
        slot_ms,
        decision,
        now,
        merge=merge_skip,
        origin=origin,
        note=f"caused by run {caused_by}" if caused_by else "",
    )


def _promote_buffered(txn: Txn, job: Job, now: int) -> None:
    """Move the job's buffered run into the queue (an active run just ended). Saves nothing:
    the caller saves ``job``."""
    rid, job.buffered_run = job.buffered_run, ""
    run = txn.run(rid)
    if run is None or run.state != types_pb2.RUN_STATE_WAITING:
        return
    run.state = types_pb2.RUN_STATE_PENDING
    run.not_before_ms = max(run.not_before_ms, now)
    if job.dispatch_timeout_ms:
        run.dispatch_deadline_ms = run.not_before_ms + job.dispatch_timeout_ms
    txn.put_run(run)
    _pend(txn, run)
    txn.put("active", _active_key(run), b"")


def _ended(txn: Txn, run: Run, now: int, *, success: bool | None) -> None:
    """Bookkeeping after an active run reached a final state (already saved): it stops counting
    for overlap, a buffered run moves up, and on_success / on_failure chains fire (``success``
    None: cancelled, no chain)."""
    txn.delete("active", _active_key(run))
    txn.count_finished(run)
    job = _job_of(txn, run)
    if job is None:
        return
    if job.buffered_run:
        _promote_buffered(txn, job, now)
        txn.put_job(job)
    if job.dependents:
        _upstream_changed(txn, job, run, now)
    target = "" if success is None else (job.on_success if success else job.on_failure)
    if target:
        _chain(txn, run, target, now, "on_success" if success else "on_failure")


def _chain(txn: Txn, run: Run, target: str, now: int, how: str) -> None:
    """Trigger ``target`` because ``run`` ended (ORIGIN_CHAIN, through its overlap policy)."""
    tj = txn.job(target)
    if tj is None:
        run.note = f"{how} job {target!r} does not exist; nothing was chained"
        txn.put_run(run)
        return
    slot = _free_slot(txn, tj, now)
    if tj.state == types_pb2.JOB_STATE_PAUSED:
        _skip(
            txn,
            tj,
            slot,
            types_pb2.SKIP_REASON_PAUSED,
            now,
            merge=False,
            origin=types_pb2.RUN_ORIGIN_CHAIN,
            note=f"caused by run {run.run_id}",
        )
    else:
        _start_run(
            txn,
            tj,
            slot,
            now,
            now,
            origin=types_pb2.RUN_ORIGIN_CHAIN,
            manual=True,
            caused_by=run.run_id,
            merge_skip=False,
        )
    txn.put_job(tj)


def _free_slot(txn: Txn, job: Job, at_ms: int) -> int:
    # Two manual runs in the same millisecond still get distinct, deterministic run ids.
    while txn.get("runs", keys.manual_run_id(job.name, job.uid, at_ms).encode()) is not None:
        at_ms += 1
    return at_ms


def _paced(txn: Txn, now: int, spacing_ms: int) -> int:
    """not_before of the next catch-up run: cluster-wide, at least ``spacing_ms`` apart."""
    if spacing_ms <= 0:
        return now
    at = max(now, txn.counter(keys.CATCHUP_NEXT, 0))
    txn.put("meta", keys.CATCHUP_NEXT, keys.be64(at + spacing_ms))
    return at
