"""The graph of jobs: depends_on and on_success / on_failure edges. Pure.

Validation of a created or updated job against the committed jobs (targets and upstreams exist,
a job with a schedule depends only on jobs with one, no cycle through any mix of edges; the
message shows the path), and the upstreams' ``dependents`` lists, kept by apply so that the end
of a run of a job nothing depends on costs one empty-list test (docs/dependencies.md).
"""

from __future__ import annotations

from schedd.state.apply.deps import scheduled
from schedd.state.apply.txn import Job, Result, Txn

MAX_DEPENDS_ON = 32
MAX_GRAPH_WALK = 10_000


def _successors(job: Job) -> list[str]:
    return [t for t in (job.on_success, job.on_failure, *job.dependents) if t]


def graph_error(txn: Txn, new: Job, old: Job | None) -> Result | None:
    """INVALID_ARGUMENT when ``new`` (a job being created, or updated from ``old``) names a
    chain target or upstream that does not exist, depends on itself, or closes a cycle through
    on_success / on_failure / depends_on edges (the message shows the path). Also refuses a job
    with a schedule depending on one without, and removing the schedule of a job that scheduled
    jobs depend on."""
    if old is None and not (new.on_success or new.on_failure or new.depends_on):
        return None  # a new job with no edge cannot close a cycle or miss a target
    name = new.name
    for fld, target in (("on_success", new.on_success), ("on_failure", new.on_failure)):
        if not target:
            continue
        if target == name:
            return Result("INVALID_ARGUMENT", f"{fld}: a job cannot chain to itself")
        if txn.job(target) is None:
            return Result("INVALID_ARGUMENT", f"{fld}: no job named {target!r}")
    if len(new.depends_on) > MAX_DEPENDS_ON:
        return Result(
            "INVALID_ARGUMENT",
            f"depends_on: {len(new.depends_on)} jobs, over the limit of {MAX_DEPENDS_ON}",
        )
    for up in new.depends_on:
        if up == name:
            return Result("INVALID_ARGUMENT", "depends_on: a job cannot depend on itself")
        uj = txn.job(up)
        if uj is None:
            return Result("INVALID_ARGUMENT", f"depends_on: no job named {up!r}")
        if scheduled(new) and not scheduled(uj):
            return Result(
                "INVALID_ARGUMENT",
                f"depends_on: job {up!r} has no schedule; a job with a schedule can depend only "
                f"on jobs with one (leave {name!r}'s schedule out to run it whenever its "
                "upstreams are satisfied)",
            )
    if old is not None and not scheduled(new):
        for down in old.dependents:
            dj = txn.job(down)
            if dj is not None and scheduled(dj) and name in dj.depends_on:
                return Result(
                    "INVALID_ARGUMENT",
                    f"schedule: job {down!r} has a schedule and depends on {name!r}, which "
                    "would have none; give it a schedule, or change that job first",
                )
    own = list(old.dependents) if old is not None else []
    # A cycle through a new chain edge: name -> target -> ... -> name (or -> an upstream of name).
    goals = {name, *new.depends_on}
    for fld, target in (("on_success", new.on_success), ("on_failure", new.on_failure)):
        if target:
            err = _walk(txn, name, new, own, [target], goals, fld, target)
            if err is not None:
                return err
    # A cycle through a new dependency: upstream -> name -> ... -> upstream.
    if new.depends_on:
        starts = [t for t in (new.on_success, new.on_failure) if t] + own
        err = _walk(txn, name, new, own, starts, set(new.depends_on), "depends_on", "")
        if err is not None:
            return err
    return None


def _walk(
    txn: Txn,
    name: str,
    new: Job,
    own: list[str],
    starts: list[str],
    goals: set[str],
    fld: str,
    target: str,
) -> Result | None:
    """Depth-first from ``starts`` (successors of ``name``) over the stored edges, the new
    definition standing in for ``name``; a path to one of ``goals`` closes a cycle."""
    parent: dict[str, str] = {s: name for s in starts}
    stack = list(starts)
    steps = 0
    while stack:
        cur = stack.pop()
        if cur in goals:
            path = [cur]
            node = parent[cur]
            while node != name:
                path.append(node)
                node = parent[node]
            path.append(name)
            path.reverse()  # name -> ... -> cur
            if fld == "depends_on":
                return Result(
                    "INVALID_ARGUMENT",
                    f"depends_on: depending on {cur!r} makes a cycle: {cur} -> "
                    + " -> ".join(path),
                )
            if cur != name:
                path.append(name)  # cur is an upstream of name
            return Result(
                "INVALID_ARGUMENT",
                f"{fld}: chaining to {target!r} makes a cycle: " + " -> ".join(path),
            )
        steps += 1
        if steps > MAX_GRAPH_WALK:
            return Result(
                "INVALID_ARGUMENT",
                f"{fld}: the graph reachable from {name!r} has more than {MAX_GRAPH_WALK} jobs",
            )
        if cur == name:
            succ = [t for t in (new.on_success, new.on_failure) if t] + own
        else:
            job = txn.job(cur)
            succ = _successors(job) if job is not None else []
        for nxt in succ:
            if nxt not in parent:
                parent[nxt] = cur
                stack.append(nxt)
    return None


def link(txn: Txn, job: Job, old: Job | None) -> None:
    """Keep the upstreams' ``dependents`` lists in step with ``job.depends_on`` (``old``: its
    definition before an update)."""
    before = set(old.depends_on) if old is not None else set()
    after = set(job.depends_on)
    for up in sorted(before - after):
        uj = txn.job(up)
        if uj is not None and job.name in uj.dependents:
            uj.dependents.remove(job.name)
            txn.put_job(uj)
    for up in sorted(after - before):
        uj = txn.job(up)
        if uj is not None and job.name not in uj.dependents:
            uj.dependents.append(job.name)
            txn.put_job(uj)


__all__ = ["MAX_DEPENDS_ON", "graph_error", "link"]
