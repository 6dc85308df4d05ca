"""Dependencies between jobs (``depends_on``), decided in apply. Pure.

Vocabulary: an *upstream* U of a job D is a job named in ``D.depends_on``; D is then a
*downstream* of U and is listed in ``U.dependents`` (kept here, so the end of a run needs no
scan to know whether anything depends on it: jobs without dependents pay one empty-list test).

Which upstream runs a run of D needs (docs/dependencies.md has the user's version):

* **D has a schedule.** For D's slot ``s`` and each upstream U, the record of U's latest slot at
  or before ``s``: slots are UTC instants, so different periods and time zones need no rule of
  their own. The leader computes that slot (schedule math never runs in apply) and carries it in
  ``FireItem.upstream`` / ``BackfillCmd.upstream``; apply reads the record itself: the run with
  the slot's id, else a skip record covering the slot. A slot before U existed (or no slot at
  all, or a deleted or re-created U) has no record and never will: its outcome is *missing*.
* **D has no schedule.** A *gathering* run (origin DEPENDENCY, ``D.gathering_run``) collects,
  per upstream, the latest run that ended (succeeded, dead or failed; not a backfill run made
  without ``with_downstream``) since D's previous gathering run was decided.

A run waiting for upstreams is WAITING with ``waiting_for`` (the upstream jobs whose outcome it
still needs), ``upstream_runs`` and ``dependency_deadline_ms``. :func:`decide` maps the
outcomes and the job's trigger rule to RUN (the run goes through D's overlap policy like any new
run), SKIP (``upstream_failed``, naming the run) or WAIT. DependencyTimeoutCmd ends a run still
waiting at its deadline (``dependency_timeout``).

Every change of an upstream record that can decide a waiting run calls :func:`changed`: a run's
end (succeeded, dead, failed, cancelled), a skip record or its extension, and a replay
(RetryRun), which re-opens the runs it made skip. A decision is itself such a change for D's
own downstreams: they are handled from a work list, never by recursion through the DAG (which is
acyclic: :func:`schedd.state.apply.graph.graph_error` refuses a cycle through depends_on and
on_success/on_failure).

Indexes (schedd.state.keys): ``dep_wait`` (upstream slot -> waiting run), ``dep_failed``
(dead upstream run -> the runs it made skip, for the re-open), ``dep_waiting`` (a job's waiting
runs), ``dep_deadline`` (deadlines, for the leader's timeout scan).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from schedd import rules
from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply import features, quotas
from schedd.state.apply.txn import Job, Result, Run, Txn

RUN, SKIP, WAIT = "run", "skip", "wait"
#: the outcome of an upstream slot that has no record and never will
MISSING = -1

_SUCCEEDED = types_pb2.RUN_STATE_SUCCEEDED
_WAITING = types_pb2.RUN_STATE_WAITING
_SKIPPED = types_pb2.RUN_STATE_SKIPPED
_FINAL = rules.FINAL_RUN_STATES
_REPLAYABLE = (types_pb2.RUN_STATE_DEAD, types_pb2.RUN_STATE_FAILED)
_ENDED = (types_pb2.RUN_STATE_SUCCEEDED, *_REPLAYABLE)  # outcomes a gathering run takes
_SCAN = 100_000  # waits on one upstream incarnation (only WAITING runs have them)


def decide(rule: int, outcomes: Sequence[int | None]) -> str:
    """The trigger rule's verdict from the outcomes of a run's upstreams (a RunState, MISSING,
    or None: not known yet). ``all_succeeded`` (the default): RUN when every one succeeded,
    SKIP as soon as one ended otherwise; ``all_done``: RUN when every one ended, whatever its
    outcome; ``any_succeeded``: RUN as soon as one succeeded, SKIP when every one ended and none
    did. No upstream at all (every one was deleted): RUN."""
    final = [o is not None and (o == MISSING or o in _FINAL) for o in outcomes]
    ok = [o == _SUCCEEDED for o in outcomes]
    if rule == types_pb2.TRIGGER_RULE_ALL_DONE:
        return RUN if all(final) else WAIT
    if rule == types_pb2.TRIGGER_RULE_ANY_SUCCEEDED:
        if any(ok) or not outcomes:
            return RUN
        return SKIP if all(final) else WAIT
    if any(f and not k for f, k in zip(final, ok, strict=True)):
        return SKIP
    return RUN if all(ok) else WAIT


def rule_name(rule: int) -> str:
    return (
        types_pb2.TriggerRule.Name(rule or types_pb2.TRIGGER_RULE_ALL_SUCCEEDED)
        .removeprefix("TRIGGER_RULE_")
        .lower()
    )


def state_word(state: int) -> str:
    if state == MISSING:
        return "missing"
    return types_pb2.RunState.Name(state).removeprefix("RUN_STATE_").lower()


def scheduled(job: Job) -> bool:
    return job.schedule.kind != types_pb2.SCHEDULE_KIND_UNSPECIFIED


def waiting_on_upstreams(run: Run) -> bool:
    return run.state == _WAITING and bool(run.waiting_for)


# ---- deleting jobs of the graph ---------------------------------------------------------------


def unlink_deleted(txn: Txn, job: Job, now: int) -> None:
    """``job`` is being deleted: it leaves its upstreams' lists, and its runs waiting for
    upstreams are cancelled."""
    for up in job.depends_on:
        uj = txn.job(up)
        if uj is not None and job.name in uj.dependents:
            uj.dependents.remove(job.name)
            txn.put_job(uj)
    for key in txn.scan("dep_waiting", keys.dep_waiting_prefix(job.name), _SCAN):
        w = txn.run(key[len(keys.dep_waiting_prefix(job.name)) :].decode())
        if w is not None and waiting_on_upstreams(w):
            _leave_wait(txn, w, None)
            w.ClearField("waiting_for")
            _finish(txn, w, types_pb2.RUN_STATE_CANCELLED, now, note="job was deleted")


def force_unlink(txn: Txn, job: Job, now: int) -> list[str]:
    """``job`` is being deleted although others depend on it: its name leaves their
    ``depends_on``, their runs stop waiting for it (and are decided without it). Returns the
    jobs changed."""
    changed_jobs: list[str] = []
    work = _Work()
    for down in list(job.dependents):
        dj = txn.job(down)
        if dj is None or job.name not in dj.depends_on:
            continue
        dj.depends_on.remove(job.name)
        if not dj.depends_on and not scheduled(dj) and dj.state == types_pb2.JOB_STATE_ACTIVE:
            dj.state = types_pb2.JOB_STATE_FINISHED  # nothing can start it any more
        txn.put_job(dj)
        changed_jobs.append(down)
        prefix = keys.dep_waiting_prefix(down)
        for key in txn.scan("dep_waiting", prefix, _SCAN):
            w = txn.run(key[len(prefix) :].decode())
            if w is None or not waiting_on_upstreams(w):
                continue
            for rid in [r for r in w.upstream_runs if keys.split_run_id(r)[0] == job.name]:
                _unwait(txn, w, rid)
                w.upstream_runs.remove(rid)
            if job.name in w.waiting_for:
                w.waiting_for.remove(job.name)
            w.note = f"upstream job {job.name!r} was deleted; decided without it"
            _evaluate(txn, w, now, work)
    job.ClearField("dependents")
    _drain(txn, now, work)
    return changed_jobs


def forget(txn: Txn, job: Job) -> None:
    """``job`` is being deleted: the index of its skip records goes (written while others
    depended on it)."""
    prefix = keys.dep_wait_prefix(job.name, job.uid)
    for key in txn.scan("dep_skips", prefix, _SCAN):
        txn.delete("dep_skips", key)


# ---- creating waiting runs -------------------------------------------------------------------


def start_waiting(
    txn: Txn,
    job: Job,
    slot_ms: int,
    not_before_ms: int,
    now: int,
    *,
    origin: int,
    matches: Sequence[command_pb2.UpstreamMatch],
    index: int,
    isolated: bool = False,
) -> Run | None:
    """A run of scheduled ``job`` (which has depends_on) for ``slot_ms``: WAITING for the
    upstream records matched to it (``matches``: the command's, ``index``: the slot's position
    in them), decided at once if they already decide it. The caller saves ``job``."""
    from schedd.state.apply.runs import _skip

    rid = keys.run_id(job.name, job.uid, slot_ms)
    if quotas.runs_refused(txn, job.name) is not None:
        return _skip(txn, job, slot_ms, types_pb2.SKIP_REASON_QUOTA, now, origin=origin)
    by_job = {m.job: m for m in matches}
    w = _waiting_run(job, rid, slot_ms, not_before_ms, now, origin)
    w.isolated = isolated
    for up in job.depends_on:
        uj = txn.job(up)
        m = by_job.get(up)
        if uj is None or m is None or m.uid != uj.uid or index >= len(m.slots_ms):
            w.upstream_runs.append(keys.run_id(up, uj.uid if uj is not None else 0, 0))
            continue
        t = m.slots_ms[index]
        urid = keys.run_id(up, uj.uid, t)
        if t and txn.get("runs", urid.encode()) is None:
            hint = m.records[index] if index < len(m.records) else ""
            cover = _covering(txn, uj, t, hint)
            if cover is not None:
                urid = cover.run_id
        w.upstream_runs.append(urid)
    _store_new_waiting(txn, job, w)
    job.open_skip = ""
    work = _Work()
    _evaluate(txn, w, now, work, job=job)
    _drain(txn, now, work)
    return txn.run(rid)


def _waiting_run(
    job: Job, rid: str, slot_ms: int, not_before_ms: int, now: int, origin: int
) -> Run:
    w = Run(
        run_id=rid,
        job=job.name,
        scheduled_ms=slot_ms,
        state=_WAITING,
        attempt=1,
        not_before_ms=not_before_ms,
        queue=job.queue,
        manual=origin == types_pb2.RUN_ORIGIN_DEPENDENCY,
        origin=cast(Any, origin),
        priority=job.priority,
    )
    if job.tags:
        w.tags.update(job.tags)
    w.waiting_for.extend(job.depends_on)
    if job.dependency_timeout_ms:
        w.dependency_deadline_ms = now + job.dependency_timeout_ms
    return w


def _store_new_waiting(txn: Txn, job: Job, w: Run) -> None:
    txn.put_run(w)
    txn.put("runs_by_job", keys.by_job_key(job.name, w.scheduled_ms, w.run_id), b"")
    quotas.add_runs(txn, job.name, 1)
    _index_waiting(txn, w)
    txn.created[w.origin] = txn.created.get(w.origin, 0) + 1


def _index_waiting(txn: Txn, w: Run) -> None:
    txn.put("dep_waiting", keys.dep_waiting_prefix(w.job) + w.run_id.encode(), b"")
    if w.dependency_deadline_ms:
        txn.put("dep_deadline", keys.time_key(w.dependency_deadline_ms, w.run_id), b"")


def _covering(txn: Txn, uj: Job, t: int, hint: str) -> Run | None:
    """A skip record of ``uj`` covering its slot ``t``: found by one seek in ``dep_skips``
    (every skip record written while others depend on ``uj``, this entry's included), else the
    leader's hint (records from before), if it still does."""
    prefix = keys.dep_wait_prefix(uj.name, uj.uid)
    found = txn.scan("dep_skips", prefix, 1, start=prefix + keys.be64(t))
    candidates = [found[0][len(prefix) + 8 :].decode()] if found else []
    for rid in (*candidates, hint):
        if not rid:
            continue
        rec = txn.run(rid)
        if (
            rec is not None
            and rec.state == _SKIPPED
            and rec.job == uj.name
            and keys.uid_of_run_id(rid) == uj.uid
            and rec.scheduled_ms <= t <= max(rec.skipped_until_ms, rec.scheduled_ms)
        ):
            return rec
    return None


# ---- deciding --------------------------------------------------------------------------------


class _Work:
    """Records that changed and whose downstreams must look again: (job name, record,
    re-opened). Handled in order by :func:`_drain`."""

    def __init__(self) -> None:
        self.items: deque[tuple[str, Run, bool]] = deque()

    def add(self, run: Run, reopened: bool = False) -> None:
        self.items.append((run.job, run, reopened))


def _outcome(txn: Txn, rid: str) -> int | None:
    """The outcome of upstream record ``rid``: its state, MISSING, or None (not yet)."""
    rec = txn.run(rid)
    if rec is not None:
        return rec.state
    job, uid, ms = keys.split_run_id(rid)
    uj = txn.job(job)
    if uj is None or uj.uid != uid or ms == 0 or ms < uj.created_ms:
        return MISSING
    cover = None if rid.endswith("m") else _covering(txn, uj, ms, "")
    return cover.state if cover is not None else None


def _key_of(rid: str, waiting_rid: str) -> bytes:
    job, uid, ms = keys.split_run_id(rid)
    return keys.dep_wait_key(job, uid, ms, waiting_rid)


def _unwait(txn: Txn, w: Run, rid: str) -> None:
    txn.delete("dep_wait", _key_of(rid, w.run_id))


def _leave_wait(txn: Txn, w: Run, job: Job | None) -> None:
    """``w`` stops waiting for upstreams: out of the wait indexes (the caller saves it)."""
    for rid in w.upstream_runs:
        _unwait(txn, w, rid)
    txn.delete("dep_waiting", keys.dep_waiting_prefix(w.job) + w.run_id.encode())
    if w.dependency_deadline_ms:
        txn.delete("dep_deadline", keys.time_key(w.dependency_deadline_ms, w.run_id))
    if job is not None and job.gathering_run == w.run_id:
        job.gathering_run = ""


def _finish(txn: Txn, w: Run, state: int, now: int, *, reason: int = 0, note: str = "") -> None:
    w.state = cast(Any, state)
    w.finished_ms = now
    if reason:
        w.skip_reason = cast(Any, reason)
        w.skipped_until_ms = w.scheduled_ms
        w.skipped_count = 1
    if note:
        w.note = note
    txn.put_run(w)
    txn.count_finished(w)
    if state == _SKIPPED:
        txn.skipped[reason] = txn.skipped.get(reason, 0) + 1


def _pending_jobs(w: Run) -> list[str]:
    """Upstreams ``w`` waits for that have no matched record at all (a gathering run's
    upstreams without an outcome yet)."""
    have = {keys.split_run_id(r)[0] for r in w.upstream_runs}
    return [j for j in w.waiting_for if j and j not in have]


def _evaluate(txn: Txn, w: Run, now: int, work: _Work, job: Job | None = None) -> None:
    """Decide the WAITING run ``w`` from its upstreams' outcomes now; records it decides go on
    ``work`` (the caller drains it). ``job``: the caller's copy of w's job, which the caller
    saves; None: loaded and saved here."""
    own = job is None
    if job is None:
        job = txn.job(w.job)
    if job is None or job.uid != keys.uid_of_run_id(w.run_id):
        _leave_wait(txn, w, None)
        w.ClearField("waiting_for")
        _finish(txn, w, types_pb2.RUN_STATE_CANCELLED, now, note="job was deleted")
        work.add(w)
        return
    pending = _pending_jobs(w)
    outcomes = [_outcome(txn, rid) for rid in w.upstream_runs]
    verdict = decide(job.trigger_rule, outcomes + [None] * len(pending))
    if verdict == WAIT:
        w.ClearField("waiting_for")
        for rid, o in zip(w.upstream_runs, outcomes, strict=True):
            if o is None or (o != MISSING and o not in _FINAL):
                w.waiting_for.append(keys.split_run_id(rid)[0])
            if o == MISSING:
                _unwait(txn, w, rid)
            else:  # also when final: a replay of a dead run makes it undecided again
                txn.put("dep_wait", _key_of(rid, w.run_id), b"")
        w.waiting_for.extend(pending)
        txn.put_run(w)
        return
    _leave_wait(txn, w, job)
    if verdict == RUN:
        w.ClearField("waiting_for")
        _admit_waiting(txn, job, w, now, work)
    else:
        _blame(txn, w, job, _failed(w, outcomes))
        _finish(txn, w, _SKIPPED, now, reason=types_pb2.SKIP_REASON_UPSTREAM_FAILED)  # saves w
        work.add(w)
    if own:
        txn.put_job(job)


def _failed(w: Run, outcomes: Sequence[int | None]) -> list[tuple[str, int]]:
    """(run id, outcome) of ``w``'s upstream records that failed it: ended, not succeeded."""
    return [
        (rid, o)
        for rid, o in zip(w.upstream_runs, outcomes, strict=False)
        if o is not None and (o == MISSING or o in _FINAL) and o != _SUCCEEDED
    ]


def _blame(txn: Txn, w: Run, job: Job, failed: list[tuple[str, int]]) -> None:
    """``w`` is skipped upstream_failed by the records ``failed``: it names the first as its
    cause, and a replay of any of them that can be replayed (a dead or failed run, or a skip
    record a replay further up re-opens) re-opens it (``dep_failed``). The caller saves
    ``w``."""
    first, state = failed[0] if failed else ("", MISSING)
    w.caused_by = first
    w.note = (
        f"upstream run {first} is {state_word(state)} (trigger rule {rule_name(job.trigger_rule)})"
    )
    for rid, o in failed:
        if o in _REPLAYABLE or (o == _SKIPPED and _reopenable(txn, rid)):
            txn.put("dep_failed", keys.dep_failed_prefix(rid) + w.run_id.encode(), b"")


def _reopenable(txn: Txn, rid: str) -> bool:
    """A skip record that a replay further up can re-open (it was skipped upstream_failed)."""
    rec = txn.run(rid)
    return rec is not None and rec.skip_reason == types_pb2.SKIP_REASON_UPSTREAM_FAILED


def _admit_waiting(txn: Txn, job: Job, w: Run, now: int, work: _Work) -> None:
    """Its upstreams satisfied ``w``: on through ``job``'s overlap policy, as a new run would go
    (PENDING, buffered, or skipped). A gathering run of a paused job is skipped (paused)."""
    from schedd.state.apply.runs import BUFFER, _active_key, _admit, _pend
    from schedd.state.apply.runs import RUN as ADMIT

    if w.origin == types_pb2.RUN_ORIGIN_DEPENDENCY and job.state == types_pb2.JOB_STATE_PAUSED:
        _finish(txn, w, _SKIPPED, now, reason=types_pb2.SKIP_REASON_PAUSED)
        work.add(w)
        return
    override = types_pb2.OVERLAP_POLICY_ALLOW if w.origin == types_pb2.RUN_ORIGIN_BACKFILL else 0
    decision = _admit(txn, job, now, override, w.run_id)
    if decision == ADMIT:
        w.state = types_pb2.RUN_STATE_PENDING
        w.not_before_ms = max(w.not_before_ms, now)
        if job.dispatch_timeout_ms:
            w.dispatch_deadline_ms = w.not_before_ms + job.dispatch_timeout_ms
        txn.put_run(w)
        _pend(txn, w)
        txn.put("active", _active_key(w, job.uid), b"")
    elif decision == BUFFER:
        job.buffered_run = w.run_id  # WAITING without waiting_for: the overlap buffer
        txn.put_run(w)
    else:
        _finish(txn, w, _SKIPPED, now, reason=decision)
        work.add(w)


# ---- upstream changes ------------------------------------------------------------------------


def changed(
    txn: Txn, job: Job, rec: Run, now: int, *, lo: int = -1, hi: int = -1, reopened: bool = False
) -> None:
    """``rec``, a record of ``job`` (which has dependents), changed: a run ended, a skip record
    covers the slots ``lo .. hi`` (default: its own), or (``reopened``) a replay made a dead run
    active again. Waiting runs it decides are decided, and so on downstream."""
    work = _Work()
    _one(txn, job, rec, now, work, lo, hi, reopened)
    _drain(txn, now, work)


def _drain(txn: Txn, now: int, work: _Work) -> None:
    while work.items:
        name, rec, reopened = work.items.popleft()
        job = txn.job(name)
        if job is None or not job.dependents or job.uid != keys.uid_of_run_id(rec.run_id):
            continue
        _one(txn, job, rec, now, work, -1, -1, reopened)


def _one(
    txn: Txn, job: Job, rec: Run, now: int, work: _Work, lo: int, hi: int, reopened: bool
) -> None:
    if reopened:
        _reopen(txn, rec, now, work)  # the runs it made skip, then the ones still waiting
        lo = hi = rec.scheduled_ms
    if lo < 0:
        lo = rec.scheduled_ms
        hi = max(rec.skipped_until_ms, lo) if rec.state == _SKIPPED else lo
    prefix = keys.dep_wait_prefix(job.name, job.uid)
    touched: set[str] = set()
    for key in txn.scan("dep_wait", prefix, _SCAN):
        slot = keys.from_be64(key[len(prefix) : len(prefix) + 8])
        if slot < lo:
            continue
        if slot > hi:
            break
        w = txn.run(key[len(prefix) + 8 :].decode())
        if w is None or not waiting_on_upstreams(w):
            txn.delete("dep_wait", key)
            continue
        slot_id = keys.run_id(job.name, job.uid, slot)
        if rec.run_id in w.upstream_runs:
            pass
        elif (
            rec.state == _SKIPPED
            and slot_id in w.upstream_runs
            and txn.get("runs", slot_id.encode()) is None  # the slot's own record comes first
        ):
            # the slot's outcome is this (range) skip record: it stands in for the slot from now
            _unwait(txn, w, slot_id)
            w.upstream_runs[list(w.upstream_runs).index(slot_id)] = rec.run_id
        else:
            continue
        touched.add(w.job)
        _evaluate(txn, w, now, work)
    if reopened or rec.state not in _ENDED or rec.isolated:
        return
    for down in job.dependents:
        if down in touched:
            continue  # a run pinned to this record took it; it starts no second one
        dj = txn.job(down)
        if dj is not None and not scheduled(dj) and job.name in dj.depends_on:
            _gather(txn, dj, job.name, rec, now, work)


def _gather(txn: Txn, job: Job, up: str, rec: Run, now: int, work: _Work) -> None:
    """``rec`` of upstream ``up`` ended: the latest outcome of ``up`` for ``job``'s gathering
    run (created when none is open)."""
    from schedd.state.apply.runs import _free_slot, _skip

    w = txn.run(job.gathering_run) if job.gathering_run else None
    if w is None or not waiting_on_upstreams(w):
        if job.state == types_pb2.JOB_STATE_FINISHED:
            return
        slot = _free_slot(txn, job, now)
        origin = types_pb2.RUN_ORIGIN_DEPENDENCY
        if quotas.runs_refused(txn, job.name) is not None:
            _skip(txn, job, slot, types_pb2.SKIP_REASON_QUOTA, now, origin=origin, merge=False)
            txn.put_job(job)
            return
        w = _waiting_run(job, keys.manual_run_id(job.name, job.uid, slot), slot, now, now, origin)
        _store_new_waiting(txn, job, w)
        job.gathering_run = w.run_id
    for rid in [r for r in w.upstream_runs if keys.split_run_id(r)[0] == up]:
        w.upstream_runs.remove(rid)
    w.upstream_runs.append(rec.run_id)
    _evaluate(txn, w, now, work, job=job)
    txn.put_job(job)


def _reopen(txn: Txn, rec: Run, now: int, work: _Work) -> None:
    """``rec`` (a dead run, replayed) is active again: the runs it made skip upstream_failed
    wait for it again, unless another upstream still decides them."""
    prefix = keys.dep_failed_prefix(rec.run_id)
    for key in txn.scan("dep_failed", prefix, _SCAN):
        w = txn.run(key[len(prefix) :].decode())
        if (
            w is None
            or w.state != _SKIPPED
            or w.skip_reason != types_pb2.SKIP_REASON_UPSTREAM_FAILED
        ):
            txn.delete("dep_failed", key)
            continue
        job = txn.job(w.job)
        if job is None or job.uid != keys.uid_of_run_id(w.run_id):
            continue
        pending = _pending_jobs(w)
        outcomes = [_outcome(txn, rid) for rid in w.upstream_runs] + [None] * len(pending)
        if decide(job.trigger_rule, outcomes) == SKIP:
            # Another upstream still fails it: from level 7 on, a replay of that one re-opens
            # it (it may have failed after w was skipped, leaving no dep_failed entry), and w
            # names it as the cause. An older version only skips it (the same level everywhere).
            if features.level(txn) >= features.REOPEN_EVERY_FAILED:
                _blame(txn, w, job, _failed(w, outcomes))
                txn.put_run(w)
            continue
        for rid in w.upstream_runs:
            txn.delete("dep_failed", keys.dep_failed_prefix(rid) + w.run_id.encode())
        w.state = _WAITING
        w.skip_reason = cast(Any, 0)
        w.skipped_until_ms = 0
        w.skipped_count = 0
        w.finished_ms = 0
        w.note = f"re-opened: upstream run {rec.run_id} was retried"
        w.dependency_deadline_ms = (
            now + job.dependency_timeout_ms if job.dependency_timeout_ms else 0
        )
        if not w.waiting_for:
            w.waiting_for.append(rec.job)
        _index_waiting(txn, w)
        _evaluate(txn, w, now, work)
        after = txn.run(w.run_id)
        if after is not None and after.state != _SKIPPED:
            work.add(after, reopened=True)


# ---- commands --------------------------------------------------------------------------------


def timeout(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """DependencyTimeoutCmd: runs still waiting for upstreams at their deadline are skipped."""
    n = 0
    work = _Work()
    for rid in cmd.dependency_timeout.run_ids:
        w = txn.run(rid)
        if (
            w is None
            or not waiting_on_upstreams(w)
            or not w.dependency_deadline_ms
            or w.dependency_deadline_ms > now
        ):
            continue
        job = txn.job(w.job)
        if job is not None and job.uid != keys.uid_of_run_id(rid):
            job = None
        waited = ", ".join(sorted(set(w.waiting_for) - {""})) or "its upstreams"
        _leave_wait(txn, w, job)
        if job is not None:
            txn.put_job(job)
        _finish(
            txn,
            w,
            _SKIPPED,
            now,
            reason=types_pb2.SKIP_REASON_DEPENDENCY_TIMEOUT,
            note=f"no decision within the dependency timeout; still waiting for {waited}",
        )
        work.add(w)
        n += 1
    _drain(txn, now, work)
    return Result(count=n)


def cancel_waiting(txn: Txn, w: Run, why: str, now: int) -> None:
    """An operator cancels ``w`` while it waits for upstreams."""
    job = txn.job(w.job)
    if job is not None and job.uid != keys.uid_of_run_id(w.run_id):
        job = None
    _leave_wait(txn, w, job)
    w.ClearField("waiting_for")
    if job is not None:
        txn.put_job(job)
    _finish(txn, w, types_pb2.RUN_STATE_CANCELLED, now, note=why)
    work = _Work()
    work.add(w)
    _drain(txn, now, work)


def still_needed(txn: Txn, run: Run) -> bool:
    """Whether a run waiting for upstreams waits for ``run``'s outcome (retention keeps it)."""
    job, uid, ms = keys.split_run_id(run.run_id)
    prefix = keys.dep_wait_prefix(job, uid)
    for key in txn.scan("dep_wait", prefix + keys.be64(ms), 64):
        w = txn.run(key[len(prefix) + 8 :].decode())
        if w is not None and run.run_id in w.upstream_runs and waiting_on_upstreams(w):
            return True
    return False


def pruned(txn: Txn, run: Run) -> None:
    """A finished run of a job with depends_on is deleted (retention): its re-open entries go."""
    for rid in run.upstream_runs:
        txn.delete("dep_failed", keys.dep_failed_prefix(rid) + run.run_id.encode())


__all__ = [
    "ALL_SUCCEEDED",
    "MISSING",
    "RUN",
    "SKIP",
    "WAIT",
    "changed",
    "decide",
    "start_waiting",
    "timeout",
]
ALL_SUCCEEDED = types_pb2.TRIGGER_RULE_ALL_SUCCEEDED
