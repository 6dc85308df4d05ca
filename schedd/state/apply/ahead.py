"""Runs fired ahead of their time, taken back when their job changes before they are due. Pure.

At feature level 5 (``FIRE_AHEAD``) the leader may commit a slot of a job that
:func:`schedd.server.planner.fires_ahead` up to ``--fire-ahead`` before the slot is due, and lease
it to a worker that waits for ``Firing.start_at_ms``; the handler still starts at the due time.
Firing on time would not have created that run if the job was paused, deleted or updated first,
so those commands call :func:`revoke_early`: every run of the job fired ahead and not due yet at
the command's ``now`` is undone as if it had never been fired (record and indexes deleted, the
lease revoked and its worker told, ``fired_runs`` and ``next_due_ms`` put back), and the job
goes on from its first revoked slot: a paused job's resume then judges that slot by its misfire
policy, an updated job fires it with its new definition.

Invariant kept: an ACTIVE job with a ``next_due_ms`` has its ``due`` index entry.
Failure contract: below level 5 no run can be ahead of its time, and this changes nothing.
"""

from __future__ import annotations

from schedd.pb import types_pb2
from schedd.state import keys
from schedd.state.apply import features, quotas
from schedd.state.apply.runs import _unpend
from schedd.state.apply.txn import Job, Revoked, Txn

#: at most this many active runs of one job are looked at (the early ones are its newest)
SCAN_LIMIT = 10_000

_EARLY_STATES = (types_pb2.RUN_STATE_PENDING, types_pb2.RUN_STATE_LEASED)


def revoke_early(txn: Txn, job: Job, now: int, why: str) -> int:
    """Undo ``job``'s runs that were fired ahead and are not due at ``now`` (see the module
    docstring); saves ``job`` when any was. Returns how many were undone."""
    if features.level(txn) < features.FIRE_AHEAD:
        return 0
    prefix = keys.active_prefix(job.name, job.uid)
    # A run's due time is its slot plus at most the jitter: earlier slots were due before now.
    start = prefix + keys.be64(max(0, now - max(0, job.schedule.jitter_ms)))
    early = []
    for key in txn.scan("active", prefix, SCAN_LIMIT, start):
        run = txn.run(key[len(prefix) + 8 :].decode())
        if (
            run is not None
            and run.state in _EARLY_STATES
            and run.origin == types_pb2.RUN_ORIGIN_SCHEDULE
            and not run.manual
            and run.attempt == 1
            and run.not_before_ms > now
        ):
            early.append((key, run))
    if not early:
        return 0
    for key, run in early:
        if run.state == types_pb2.RUN_STATE_LEASED:
            txn.delete("leases", run.run_id.encode())
            txn.revoked.append(Revoked(run.run_id, run.fence, run.worker_id, why))
        else:
            _unpend(txn, run)
        txn.delete("active", key)
        txn.delete("runs", run.run_id.encode())
        txn.delete("runs_by_job", keys.by_job_key(run.job, run.scheduled_ms, run.run_id))
        quotas.add_runs(txn, job.name, -1)
        job.fired_runs = max(0, job.fired_runs - 1)
    first_due = min(run.not_before_ms for _, run in early)
    if job.state == types_pb2.JOB_STATE_ACTIVE and job.next_due_ms:
        txn.delete("due", keys.due_key(job.next_due_ms, job.name))
    job.next_due_ms = first_due
    if job.state == types_pb2.JOB_STATE_FINISHED:
        job.state = types_pb2.JOB_STATE_ACTIVE  # finished by the early firing of its last slot
    if job.state == types_pb2.JOB_STATE_ACTIVE:
        txn.put("due", keys.due_key(first_due, job.name), b"")
    txn.put_job(job)
    return len(early)
