"""Job commands: create, update, delete, pause, resume, trigger, backfill. Pure."""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply import deps, graph, quotas
from schedd.state.apply.ahead import revoke_early
from schedd.state.apply.runs import (
    _free_slot,
    _missing,
    _paced,
    _promote_buffered,
    _skip,
    _start_run,
)
from schedd.state.apply.txn import Job, Result, Txn


def _live(job: Job) -> bool:
    """Whether ``job`` can still fire: a due slot, or (without a schedule) upstreams that start
    it when they are satisfied."""
    return bool(job.next_due_ms) or (not deps.scheduled(job) and bool(job.depends_on))


def _create_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    job = Job()
    job.CopyFrom(cmd.create_job.job)
    if not job.name:
        return Result("INVALID_ARGUMENT", "name: is required")
    if txn.get("jobs", job.name.encode()) is not None:
        return Result("ALREADY_EXISTS", f"name: a job named {job.name!r} already exists")
    job.ClearField("dependents")  # kept by apply alone
    job.gathering_run = ""
    err = graph.graph_error(txn, job, None)
    if err is None:
        err = quotas.job_refused(txn, job.name)
    if err is not None:
        return err
    quotas.add_jobs(txn, job.name, 1)
    job.uid = index
    job.created_ms = now
    job.version = 1
    job.state = types_pb2.JOB_STATE_ACTIVE if _live(job) else types_pb2.JOB_STATE_FINISHED
    if job.next_due_ms:
        txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
    if job.depends_on:
        graph.link(txn, job, None)
    txn.put_job(job)
    return Result(job=job)


def _update_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    new = Job()
    new.CopyFrom(cmd.update_job.job)
    job = txn.job(new.name)
    if job is None:
        return _missing(new.name)
    want = cmd.update_job.expect_version
    if want and max(job.version, 1) != want:
        return Result(
            "FAILED_PRECONDITION",
            f"expect_version: job {job.name!r} is at version "
            f"{max(job.version, 1)}, not {want}; read it again and retry",
            job=job,
        )
    err = graph.graph_error(txn, new, job)
    if err is not None:
        return err
    revoke_early(txn, job, now, "job updated before the slot was due")
    same_schedule = new.schedule.SerializeToString(
        deterministic=True
    ) == job.schedule.SerializeToString(deterministic=True)
    next_due = job.next_due_ms if same_schedule else new.next_due_ms
    if job.state == types_pb2.JOB_STATE_ACTIVE and job.next_due_ms:
        txn.delete("due", keys.due_key(job.next_due_ms, job.name))
    for f in (
        "uid",
        "created_ms",
        "state",
        "fired_runs",
        "buffered_run",
        "open_skip",
        "paused_ms",
        "resumed_ms",
        "gathering_run",
    ):
        setattr(new, f, getattr(job, f))
    new.ClearField("dependents")
    new.dependents.extend(job.dependents)
    if not same_schedule:
        new.open_skip = ""  # the new slot sequence starts its own skip records
    new.version = max(job.version, 1) + 1
    new.updated_ms = now
    new.next_due_ms = next_due
    if new.max_runs and new.fired_runs >= new.max_runs:
        new.next_due_ms = 0
    if new.state != types_pb2.JOB_STATE_PAUSED:
        new.state = types_pb2.JOB_STATE_ACTIVE if _live(new) else types_pb2.JOB_STATE_FINISHED
    if new.state == types_pb2.JOB_STATE_ACTIVE and new.next_due_ms:
        txn.put("due", keys.due_key(new.next_due_ms, new.name), b"")
    if new.buffered_run and new.overlap != types_pb2.OVERLAP_POLICY_BUFFER_ONE:
        _promote_buffered(txn, new, now)
    if new.depends_on or job.depends_on:
        graph.link(txn, new, job)
    txn.put_job(new)
    return Result(job=new)


def _delete_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.delete_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    unlinked: list[str] = []
    if job.dependents:
        if not cmd.delete_job.force:
            return Result(
                "FAILED_PRECONDITION",
                f"name: jobs depend on {name!r}: {', '.join(job.dependents)}; delete or change "
                "them first, or force the delete (their depends_on then loses it)",
                job=job,
            )
        unlinked = deps.force_unlink(txn, job, now)
    revoke_early(txn, job, now, "job deleted before the slot was due")
    if job.depends_on or job.gathering_run:
        deps.unlink_deleted(txn, job, now)
    deps.forget(txn, job)
    if job.next_due_ms and job.state == types_pb2.JOB_STATE_ACTIVE:
        txn.delete("due", keys.due_key(job.next_due_ms, name))
    if job.buffered_run:
        run = txn.run(job.buffered_run)
        if run is not None and run.state == types_pb2.RUN_STATE_WAITING:
            run.state = types_pb2.RUN_STATE_CANCELLED
            run.finished_ms = now
            run.error = "job was deleted"
            txn.put_run(run)
    txn.delete("jobs", name.encode())
    quotas.add_jobs(txn, name, -1)
    # Its PENDING runs are cancelled lazily, when the dispatcher tries to grant them.
    return Result(
        job=job,
        message=f"removed {name!r} from the depends_on of {', '.join(unlinked)}"
        if unlinked
        else "",
        items=tuple(("UNLINKED", j) for j in unlinked),
    )


def _pause_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.pause_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    revoke_early(txn, job, now, "job paused before the slot was due")
    if job.state == types_pb2.JOB_STATE_ACTIVE:
        if job.next_due_ms:
            txn.delete("due", keys.due_key(job.next_due_ms, name))
        job.state = types_pb2.JOB_STATE_PAUSED
        job.paused_ms = now
        job.resumed_ms = 0
        txn.put_job(job)
    return Result(job=job)


def _resume_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    body = cmd.resume_job
    job = txn.job(body.name)
    if job is None:
        return _missing(body.name)
    if job.state != types_pb2.JOB_STATE_PAUSED:
        return Result(job=job)
    if body.mode == command_pb2.RESUME_MISFIRE:
        pass  # keep next_due_ms: FireDue applies the misfire policy to the slots missed
    elif body.mode == command_pb2.RESUME_SKIP_MISSED:
        if job.next_due_ms != body.from_due_ms:
            return Result(
                "FAILED_PRECONDITION",
                f"name: job {job.name!r} changed while resuming; retry",
                job=job,
            )
        if body.missed_first_ms and body.missed_first_ms <= now:
            _skip(
                txn,
                job,
                body.missed_first_ms,
                types_pb2.SKIP_REASON_PAUSED,
                now,
                until=now,
                count=0,
                merge=False,
            )
        job.next_due_ms = body.next_due_ms
    else:
        job.next_due_ms = body.next_due_ms
    job.resumed_ms = now or 1
    if job.max_runs and job.fired_runs >= job.max_runs:
        job.next_due_ms = 0
    if job.next_due_ms:
        job.state = types_pb2.JOB_STATE_ACTIVE
        txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
    else:
        job.state = types_pb2.JOB_STATE_ACTIVE if _live(job) else types_pb2.JOB_STATE_FINISHED
    txn.put_job(job)
    return Result(job=job)


def _trigger_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.trigger_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    refused = quotas.runs_refused(txn, job.name)
    if refused is not None:
        return refused
    slot = _free_slot(txn, job, now)
    run = _start_run(
        txn,
        job,
        slot,
        now,
        now,
        origin=types_pb2.RUN_ORIGIN_TRIGGER,
        override=cmd.trigger_job.overlap,
        manual=True,
        merge_skip=False,
    )
    txn.put_job(job)
    return Result(job=job, run=run)


def _backfill(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    body = cmd.backfill
    job = txn.job(body.name)
    if job is None or job.uid != body.uid:
        return _missing(body.name)
    refused = quotas.runs_refused(txn, job.name, len(body.slots_ms))
    if refused is not None:
        return refused
    created = existing = 0
    for i, slot in enumerate(body.slots_ms):
        if txn.get("runs", keys.run_id(job.name, job.uid, slot).encode()) is not None:
            existing += 1
            continue
        if job.depends_on and deps.scheduled(job):
            run = deps.start_waiting(
                txn,
                job,
                slot,
                _paced(txn, now, body.spacing_ms),
                now,
                origin=types_pb2.RUN_ORIGIN_BACKFILL,
                matches=body.upstream,
                index=i,
                isolated=body.isolate,
            )
        else:
            run = _start_run(
                txn,
                job,
                slot,
                _paced(txn, now, body.spacing_ms),
                now,
                origin=types_pb2.RUN_ORIGIN_BACKFILL,
                override=body.overlap or types_pb2.OVERLAP_POLICY_ALLOW,
                merge_skip=False,
            )
            if run is not None and body.isolate:
                run.isolated = True
                txn.put_run(run)
        created += run is not None
    txn.put_job(job)
    return Result(job=job, count=created, existing=existing)
