"""Retention: deleting finished runs the leader proposes (never an active one). Pure."""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply import deps, quotas
from schedd.state.apply.runs import FINISHED_STATES
from schedd.state.apply.txn import Result, Txn, request_recorded_at


def _prune_runs(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """Retention: delete finished runs (never an active or waiting one)."""
    n = 0
    for rid in cmd.prune_runs.run_ids:
        run = txn.run(rid)
        if run is None or run.state not in FINISHED_STATES:
            continue
        job = txn.job(run.job)
        if job is not None and job.dependents and deps.still_needed(txn, run):
            continue  # a downstream run is still waiting for this outcome
        txn.delete("runs", rid.encode())
        quotas.add_runs(txn, run.job, -1)
        txn.delete("runs_by_job", keys.by_job_key(run.job, run.scheduled_ms, rid))
        if run.upstream_runs:
            deps.pruned(txn, run)
        if job is not None and job.dependents and run.state == types_pb2.RUN_STATE_SKIPPED:
            until = max(run.skipped_until_ms, run.scheduled_ms)
            uid = keys.uid_of_run_id(rid)
            txn.delete("dep_skips", keys.dep_wait_key(run.job, uid, until, rid))
        if job is not None and job.open_skip == rid:
            job.open_skip = ""
            txn.put_job(job)
        n += 1
    ttl = cmd.prune_runs.request_ttl_ms
    for req in cmd.prune_runs.request_ids if ttl > 0 else ():
        raw = txn.get("requests", req.encode())
        if raw is None:
            continue
        at = request_recorded_at(raw)
        if 0 < at < now - ttl:
            txn.delete("requests", req.encode())
            n += 1
    return Result(count=n)
