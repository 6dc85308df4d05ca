"""FireDue: each slot the leader listed is decided here by the job's misfire and overlap
policies, so every replica and every later leader decides the same. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from schedd.pb import command_pb2, types_pb2
from schedd.rules import leases_in_fire
from schedd.sched.misfire import in_pause, is_late
from schedd.state import keys
from schedd.state.apply import deps, features, quotas
from schedd.state.apply.runs import _new_run, _paced, _skip, _start_run
from schedd.state.apply.txn import Granted, Job, Result, Txn


def _fire_due(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    fired = 0
    stale = 0
    granted: list[Granted] = []
    leasing: bool | None = None  # the cluster is at FIRE_AND_LEASE (read once, when needed)
    for item in cmd.fire_due.items:
        job = txn.job(item.name)
        if (
            job is None
            or job.uid != item.uid
            or job.state != types_pb2.JOB_STATE_ACTIVE
            or job.next_due_ms != item.from_due_ms
            or (item.next_due_ms and item.next_due_ms <= item.from_due_ms)
        ):
            stale += 1
            continue
        if job.depends_on and {m.job for m in item.upstream} != set(job.depends_on):
            stale += 1  # planned before an update changed its upstreams: the next tick replans
            continue
        lease_to: Sequence[str] = ()
        if item.lease_to:
            if leasing is None:
                leasing = features.level(txn) >= features.FIRE_AND_LEASE
            if leasing:
                lease_to = item.lease_to
        if item.policy and job.misfire:
            fired += _fire_with_policy(
                txn, job, item, now, cmd.fire_due.catchup_spacing_ms, lease_to, granted
            )
        else:
            for pos, slot in enumerate(item.slots_ms):
                if txn.get("runs", keys.run_id(job.name, job.uid, slot).encode()) is None:
                    if quotas.runs_refused(txn, job.name) is not None:
                        _skip(txn, job, slot, types_pb2.SKIP_REASON_QUOTA, now)
                        continue
                    worker = lease_to[pos] if pos < len(lease_to) else ""
                    run = _new_run(txn, job, slot, slot, manual=False, lease_to=worker, now=now)
                    if worker:
                        granted.append(Granted(run, job.payload, job.run_timeout_ms))
                    fired += 1
        txn.delete("due", keys.due_key(job.next_due_ms, job.name))
        job.next_due_ms = item.next_due_ms
        if job.max_runs and job.fired_runs >= job.max_runs:
            job.next_due_ms = 0
        if job.next_due_ms:
            txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
        else:
            job.state = types_pb2.JOB_STATE_FINISHED
        txn.put_job(job)
    return Result(count=fired, message=f"{stale} stale" if stale else "", granted=tuple(granted))


_RANGE_REASON = {
    types_pb2.MISFIRE_POLICY_SKIP: types_pb2.SKIP_REASON_MISFIRE,
    types_pb2.MISFIRE_POLICY_FIRE_ONCE: types_pb2.SKIP_REASON_COALESCED,
}


def _fire_with_policy(
    txn: Txn,
    job: Job,
    item: command_pb2.FireItem,
    now: int,
    spacing_ms: int,
    lease_to: Sequence[str],
    granted: list[Granted],
) -> int:
    """Decide each slot of ``item`` by the job's misfire policy, then its overlap policy. An
    on-time slot with a worker in ``lease_to`` (parallel to the item's slots) that becomes a
    PENDING run is leased to it at once and added to ``granted``; a catch-up run never is (it
    waits for its paced not_before)."""
    misfire = job.misfire
    if item.dropped_first_ms:
        _skip(
            txn,
            job,
            item.dropped_first_ms,
            _why(job, item.dropped_first_ms, now, types_pb2.SKIP_REASON_CATCHUP_WINDOW),
            now,
            until=item.dropped_last_ms,
            count=int(item.dropped_count),
        )
    if item.late_first_ms:
        range_reason = _RANGE_REASON.get(misfire, types_pb2.SKIP_REASON_CATCHUP_LIMIT)
        _skip(
            txn,
            job,
            item.late_first_ms,
            _why(job, item.late_first_ms, now, range_reason),
            now,
            until=item.late_last_ms,
            count=int(item.late_count),
        )
    for gap in item.dst_gap_ms:
        _skip(txn, job, gap, types_pb2.SKIP_REASON_DST_GAP, now, merge=False)
    slots = item.slots_ms
    dues = item.dues_ms if len(item.dues_ms) == len(slots) else slots
    late: list[int] = []
    fire: list[tuple[int, int, int]] = []  # (slot, not_before (-1: paced), origin)
    for s, d in zip(slots, dues, strict=True):
        if is_late(job, s, d, now):
            late.append(s)
        else:
            fire.append((s, d, _SCHEDULE))
    if late:
        if misfire == types_pb2.MISFIRE_POLICY_SKIP:
            for s in late:
                _skip(txn, job, s, _why(job, s, now, types_pb2.SKIP_REASON_MISFIRE), now)
            catchup = []
        elif misfire == types_pb2.MISFIRE_POLICY_FIRE_ONCE:
            for s in late[:-1]:
                _skip(txn, job, s, types_pb2.SKIP_REASON_COALESCED, now)
            catchup = late[-1:]
        else:
            catchup = late
        fire = [(s, -1, types_pb2.RUN_ORIGIN_CATCHUP) for s in catchup] + fire
    fired = 0
    # (the slots' positions only matter to a job with upstreams: not built for the others)
    position = {s: i for i, s in enumerate(slots)} if job.depends_on else {}
    workers = dict(zip(slots, lease_to, strict=False)) if lease_to and leases_in_fire(job) else {}
    name, uid, max_runs = job.name, job.uid, job.max_runs
    for slot, due, origin in fire:
        if max_runs and job.fired_runs >= max_runs:
            break
        if txn.get("runs", keys.run_id(name, uid, slot).encode()) is not None:
            job.open_skip = ""  # (a backfill's) record of its own: later skips start anew
            continue
        not_before = _paced(txn, now, spacing_ms) if due < 0 else due
        if job.depends_on:
            run = deps.start_waiting(
                txn,
                job,
                slot,
                not_before,
                now,
                origin=origin,
                matches=item.upstream,
                index=position[slot],
            )
        else:
            worker = workers.get(slot, "") if due >= 0 else ""
            run = _start_run(txn, job, slot, not_before, now, origin=origin, lease_to=worker)
            if worker and run is not None and run.state == types_pb2.RUN_STATE_LEASED:
                granted.append(Granted(run, job.payload, job.run_timeout_ms))
        if run is not None and run.state != types_pb2.RUN_STATE_SKIPPED:
            job.fired_runs += 1
            job.open_skip = ""
            fired += 1
    return fired


_SCHEDULE = types_pb2.RUN_ORIGIN_SCHEDULE


def _why(job: Job, slot: int, now: int, default: int) -> int:
    """Why ``slot`` did not fire: paused when it fell in the job's pause, else ``default``."""
    return types_pb2.SKIP_REASON_PAUSED if in_pause(job, slot, now) else default
