"""What each page asks the cluster, through an SDK :class:`~schedd.client.Client` acting as the
signed-in user. Every call is an ordinary API call, so the user's roles decide what is seen.

The job list stays cheap with 100,000 jobs: a page is one ``ListJobs`` call for the page's
names (the API pages by name), plus one ``ListRuns(job, limit)`` per row, made in parallel. A
filter the job record decides (status active/paused/finished, queue, a part of the name) walks
the name-ordered list in chunks and stops when the page is full or after
:data:`SCAN_LIMIT` jobs (the page then offers to go on from there). Filters that need runs
(running now, failing, with dead letters) start from the runs in that state, one
``ListRuns(state)`` call, and fetch only those jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from schedd import errors
from schedd.client import Client
from schedd.models import Job, Run, RunState
from schedd.web.viewmodel import JobFilter, JobRow, job_row

__all__ = ["JobPage", "job_page", "recent_runs"]

#: jobs read per ListJobs call while filtering, and at most this many per page request
CHUNK = 1000
SCAN_LIMIT = 20_000
#: newest runs read per job row (running now, last outcome)
RECENT = 5
#: run records read to find the jobs with runs in a state (running, dead, failed)
STATE_SCAN = 1000

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dashboard-io")


@dataclass(frozen=True)
class JobPage:
    rows: list[JobRow]
    next_after: str  # "" = the last page
    scanned: int  # jobs read to fill this page
    stopped_early: bool  # the scan limit was reached before the page was full


def recent_runs(client: Client, names: Sequence[str]) -> list[list[Run]]:
    """The newest runs of each job, read in parallel; a job deleted meanwhile has none."""

    def one(name: str) -> list[Run]:
        try:
            return client.list_runs(job=name, limit=RECENT)
        except errors.NotFound:
            return []

    return list(_pool.map(one, names))


def _rows(client: Client, jobs: Sequence[Job], now_ms: int) -> list[JobRow]:
    runs = recent_runs(client, [j.name for j in jobs])
    return [job_row(j, r, now_ms) for j, r in zip(jobs, runs, strict=True)]


def _page_by_definition(
    client: Client, filt: JobFilter, after: str, limit: int, now_ms: int
) -> JobPage:
    picked: list[Job] = []
    scanned = 0
    cursor = after
    more = True
    while len(picked) < limit and scanned < SCAN_LIMIT:
        ask = limit + 1 if filt.empty else CHUNK
        batch = client.list_jobs(ask, after=cursor)
        scanned += len(batch)
        more = len(batch) == ask
        for job in batch:
            cursor = job.name
            if filt.matches_definition(job):
                picked.append(job)
                if len(picked) == limit:
                    break
        if not more:
            break
    full = len(picked) == limit
    if filt.empty:
        more = more and full
    rows = _rows(client, picked, now_ms)
    next_after = cursor if (more or (full and not filt.empty)) else ""
    return JobPage(rows, next_after, scanned, stopped_early=not full and more)


def _page_by_runs(client: Client, filt: JobFilter, after: str, limit: int, now_ms: int) -> JobPage:
    state = {"running": RunState.LEASED, "dead": RunState.DEAD, "failed": RunState.DEAD}[
        filt.status
    ]
    runs = client.list_runs(limit=STATE_SCAN, state=state)
    if filt.status == "failed":
        runs += client.list_runs(limit=STATE_SCAN, state=RunState.FAILED)
    names = sorted({r.job for r in runs if r.job > after})
    jobs: list[Job] = []
    for name in names:
        try:
            job = client.get_job(name)
        except errors.NotFound:
            continue
        if filt.matches_definition(job):
            jobs.append(job)
        if len(jobs) > limit:
            break
    more = len(jobs) > limit
    rows = [r for r in _rows(client, jobs[:limit], now_ms) if filt.matches_row(r)]
    return JobPage(rows, jobs[limit - 1].name if more else "", len(runs), stopped_early=False)


def job_page(client: Client, filt: JobFilter, after: str, limit: int, now_ms: int) -> JobPage:
    """One page of the job list, in name order, after name ``after``."""
    if filt.needs_runs:
        return _page_by_runs(client, filt, after, limit, now_ms)
    return _page_by_definition(client, filt, after, limit, now_ms)
