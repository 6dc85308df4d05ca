"""Run-history retention: which finished runs of a job its policy no longer keeps. Pure; the
leader proposes the answer in a PruneRuns command and apply deletes only finished runs, so a
run that is still active is never pruned whatever the leader believed."""

from __future__ import annotations

from collections.abc import Iterable

from schedd.pb import types_pb2


def expired(
    job: types_pb2.Job, finished_newest_first: Iterable[types_pb2.Run], now_ms: int, limit: int
) -> list[str]:
    """Run ids beyond ``job.keep_runs`` (newest kept) or finished more than ``job.keep_for_ms``
    before ``now_ms``; at most ``limit``. A skip record counts as one run, whatever its range."""
    out: list[str] = []
    if limit <= 0 or not (job.keep_runs or job.keep_for_ms):
        return out
    horizon = now_ms - job.keep_for_ms if job.keep_for_ms else None
    for n, run in enumerate(finished_newest_first, start=1):
        too_many = bool(job.keep_runs) and n > job.keep_runs
        too_old = horizon is not None and 0 < run.finished_ms < horizon
        if too_many or too_old:
            out.append(run.run_id)
            if len(out) >= limit:
                break
    return out
