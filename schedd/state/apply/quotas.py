"""Namespace quotas: max jobs and max stored runs per namespace, counted by apply. Pure.

A namespace has a record in the ``namespaces`` database only once a cluster admin set its
quotas (SetNamespaceCmd). Writing the record for the first time counts the namespace's jobs and
stored runs (one scan, in apply, so every replica counts the same); from then on every job
create/delete and every run record created or pruned moves the counts. Namespaces without a
record are not counted and have no limits (the cost for them is one missed lookup per new run).

Failure contract: an over-quota create, trigger or backfill is refused with RESOURCE_EXHAUSTED
before it changes anything; a scheduled (or chained) slot of a namespace at ``max_runs`` is
recorded as SKIPPED with SKIP_REASON_QUOTA (one merged record per job for a run of such slots),
so nothing is dropped without a record saying why.
"""

from __future__ import annotations

from schedd import namespaces
from schedd.pb import command_pb2, types_pb2
from schedd.state.apply.txn import Result, Txn


def get(txn: Txn, ns: str) -> types_pb2.Namespace | None:
    raw = txn.get("namespaces", ns.encode())
    return None if raw is None else types_pb2.Namespace.FromString(raw)


def _put(txn: Txn, rec: types_pb2.Namespace) -> None:
    txn.put("namespaces", rec.name.encode(), rec.SerializeToString(deterministic=True))


def _count(txn: Txn, db: str, ns: str) -> int:
    keys = txn.scan(db, namespaces.prefix(ns), 1 << 40)
    if ns != namespaces.DEFAULT:
        return len(keys)
    return sum(1 for k in keys if namespaces.in_namespace(k, ns))


def set_namespace(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    want = cmd.set_namespace.namespace
    if not want.name or not namespaces.NAMESPACE_RE.match(want.name):
        return Result("INVALID_ARGUMENT", f"namespace: {want.name[:40]!r} is not a namespace")
    rec = get(txn, want.name)
    if rec is None:
        rec = types_pb2.Namespace(
            name=want.name,
            jobs=_count(txn, "jobs", want.name),
            runs=_count(txn, "runs", want.name),
        )
    rec.max_jobs = want.max_jobs
    rec.max_runs = want.max_runs
    rec.updated_ms = now
    rec.updated_by = want.updated_by or cmd.principal
    _put(txn, rec)
    return Result(message=f"namespace {rec.name}: max_jobs {rec.max_jobs} max_runs {rec.max_runs}")


def job_refused(txn: Txn, stored_name: str) -> Result | None:
    """RESOURCE_EXHAUSTED when the job's namespace holds its ``max_jobs`` jobs."""
    ns = namespaces.split(stored_name)[0]
    rec = get(txn, ns)
    if rec is None or not rec.max_jobs or rec.jobs < rec.max_jobs:
        return None
    return Result(
        "RESOURCE_EXHAUSTED",
        f"namespace: {ns!r} holds its quota of {rec.max_jobs} jobs; delete jobs, or ask a "
        "cluster admin to raise it (schedctl namespace set-quota)",
    )


def runs_refused(txn: Txn, stored_job: str, new_runs: int = 1) -> Result | None:
    """RESOURCE_EXHAUSTED when ``new_runs`` more run records would pass the namespace's
    ``max_runs``."""
    ns = namespaces.split(stored_job)[0]
    rec = get(txn, ns)
    if rec is None or not rec.max_runs or rec.runs + new_runs <= rec.max_runs:
        return None
    return Result(
        "RESOURCE_EXHAUSTED",
        f"namespace: {ns!r} holds {rec.runs} of its quota of {rec.max_runs} stored runs; "
        "let retention remove finished runs (job keep_runs / keep_for), or ask a cluster admin "
        "to raise it (schedctl namespace set-quota)",
    )


def add_jobs(txn: Txn, stored_name: str, delta: int) -> None:
    rec = get(txn, namespaces.split(stored_name)[0])
    if rec is not None:
        rec.jobs = max(0, rec.jobs + delta)
        _put(txn, rec)


def add_runs(txn: Txn, stored_job: str, delta: int) -> None:
    rec = get(txn, namespaces.split(stored_job)[0])
    if rec is not None:
        rec.runs = max(0, rec.runs + delta)
        _put(txn, rec)
