"""``job explain``: why did (or will) a job run or not at a given time? Pure: the caller passes
the job, its compiled schedule, the leader's time and a lookup of the job's run records.

The answer comes from replicated state (run and skip records, the job's pause window and
policies), never from a guess: "ran", "failed", "running", "skipped" (with the recorded
reason), or, when no record exists, the rule that explains it (not a slot of the schedule, DST
gap, before the job existed, not due yet, paused, retention).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from schedd import namespaces
from schedd.pb import api_pb2, types_pb2
from schedd.sched import policies
from schedd.sched.schedule import Cron, Schedule, format_ms

_BACK_LIMIT_MS = 400 * 86_400_000
#: skip reasons whose record's note says more (which upstream run)
_NOTED = (types_pb2.SKIP_REASON_UPSTREAM_FAILED, types_pb2.SKIP_REASON_DEPENDENCY_TIMEOUT)

RecordsBefore = Callable[[int, int], list[types_pb2.Run]]  # (at_ms, limit) -> newest first


def _dst_gap_between(sched: Schedule, lo: int, hi: int) -> bool:
    trig = sched.trigger
    if not isinstance(trig, Cron):
        return False
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(trig.tz)
    a = datetime.fromtimestamp(lo / 1000, UTC).astimezone(zone).utcoffset()
    b = datetime.fromtimestamp(hi / 1000, UTC).astimezone(zone).utcoffset()
    return a is not None and b is not None and b > a


def _state(run: types_pb2.Run) -> str:
    return types_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_").lower()


@dataclass(frozen=True)
class WorkerView:
    """A worker attached to the leader, as plain data (a snapshot of the leader's registry):
    ``queues`` and ``jobs`` are stored (namespace-qualified) names; ``jobs`` None: any job;
    ``live``: heard from recently enough to get new firings; ``draining``: stopping."""

    worker_id: str
    queues: frozenset[str]
    concurrency: int
    leases: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    jobs: frozenset[str] | None = None
    live: bool = True
    draining: bool = False


def _ids(workers: Sequence[WorkerView], limit: int = 5) -> str:
    names = [w.worker_id for w in workers[:limit]]
    return ", ".join(names) + (f" and {len(workers) - limit} more" if len(workers) > limit else "")


def pending_cause(
    run: types_pb2.Run, workers: Sequence[WorkerView], now_ms: int
) -> tuple[str, str]:
    """Why the PENDING run ``run`` (stored names) has not started: ``(cause, sentence)``, the
    first that holds of: ``backoff`` (its not-before time is still ahead; for a first scheduled
    attempt fired ahead of its time, only when no cause below holds), ``no_worker`` (no live
    worker serves its queue), ``tags`` (none of those carries its tags), ``no_handler`` (none of
    those announces its job), ``busy`` (all of those hold as many leases as their concurrency);
    else ``""`` with a sentence saying a worker can take it. Mirrors the grant planner's rule
    (schedd.server.planner.plan_grants)."""
    ns, queue = namespaces.split(run.queue)
    where = f"queue {queue!r}" + (f" of namespace {ns!r}" if ns != namespaces.DEFAULT else "")
    # A first scheduled attempt fired ahead of its time (--fire-ahead) is due in a moment: what
    # matters is whether a worker can take it then, so the worker checks below come first.
    ahead = (
        run.not_before_ms > now_ms
        and run.attempt == 1
        and run.origin == types_pb2.RUN_ORIGIN_SCHEDULE
    )
    if run.not_before_ms > now_ms and not ahead:
        why = (
            f"waiting for its retry backoff (attempt {run.attempt})"
            if run.attempt > 1
            else "paced (catch-up runs are spread out) or scheduled ahead"
        )
        return "backoff", f"It is {why} until {format_ms(run.not_before_ms)}."
    attached = [w for w in workers if run.queue in w.queues]
    serving = [w for w in attached if w.live and not w.draining]
    if not serving:
        if attached:
            return "no_worker", (
                f"No worker takes work from {where} now: the attached ones ({_ids(attached)}) "
                "are stopping or have not heartbeated lately."
            )
        return "no_worker", (
            f"No worker serves {where}: start one (schedctl worker run --queue {queue} ...; "
            "schedctl worker list shows the attached ones)."
        )
    tags = dict(run.tags)
    tagged = [w for w in serving if all(w.tags.get(k) == v for k, v in tags.items())]
    if not tagged:
        want = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
        return "tags", (
            f"No worker of {where} carries the job's tags {want} "
            f"(workers of the queue: {_ids(serving)})."
        )
    capable = [w for w in tagged if w.jobs is None or run.job in w.jobs]
    if not capable:
        return "no_handler", (
            f"No worker of {where} has a handler for job {namespaces.bare(run.job)!r} "
            f"(workers of the queue: {_ids(tagged)}; each announces the jobs it runs)."
        )
    if all(w.leases >= w.concurrency for w in capable):
        return "busy", (
            f"Every worker that can run it is busy ({_ids(capable)}: leases held = "
            "concurrency); it starts when one finishes."
        )
    if ahead:
        return "backoff", (
            f"It was fired ahead of its time and goes to a worker ({_ids(capable)}) to start "
            f"at {format_ms(run.not_before_ms)}."
        )
    return "", f"A worker can take it ({_ids(capable)}): it should start within a moment."


def with_pending_cause(
    answer: api_pb2.ExplainResponse,
    run: types_pb2.Run,
    workers: Sequence[WorkerView],
    now_ms: int,
    paused: bool = False,
) -> api_pb2.ExplainResponse:
    """``answer`` (a ``pending`` verdict about ``run``) with the cause and its sentence added."""
    cause, text = pending_cause(run, workers, now_ms)
    answer.pending_cause = cause
    answer.explanation += " " + text
    if paused:
        answer.explanation += " (The job is paused: no new slots fire, but runs already pending "
        answer.explanation += "still go out.)"
    return answer


def explain(
    job: types_pb2.Job, sched: Schedule, at_ms: int, now_ms: int, records_before: RecordsBefore
) -> api_pb2.ExplainResponse:
    """Why job ``job`` did (or will) run or not at ``at_ms``.

    ``at_ms`` need not be a slot: a time between slots is answered about the slot nearest at or
    before it (``slot_ms``), and the sentence says so ("-5m" means "the firing before then").
    Only a time in a skipped daylight-saving gap answers ``dst_gap``, and one before the first
    slot ``not_a_slot``. ``previous_slot_ms``/``next_slot_ms`` are the slots around ``at_ms``.
    """
    prev = sched.previous_slot(at_ms, _BACK_LIMIT_MS)
    if prev and prev != at_ms and not _in_skipped_gap(job, sched, prev, at_ms):
        out = _explain_slot(job, sched, prev, now_ms, records_before)
        out.explanation = between_slots(at_ms, prev) + out.explanation
        return out
    return _explain_slot(job, sched, at_ms, now_ms, records_before)


def between_slots(at_ms: int, slot_ms: int) -> str:
    """The sentence that opens an answer about ``slot_ms`` for a question about ``at_ms``."""
    return f"{format_ms(at_ms)} is not a slot; the last slot before it is {format_ms(slot_ms)}. "


def _in_skipped_gap(job: types_pb2.Job, sched: Schedule, prev: int, at_ms: int) -> bool:
    """Whether ``at_ms`` (after slot ``prev``) lies where the job's dst_gap skip policy dropped
    local times: the asked-about time itself did not exist, which is the answer to give."""
    nxt = sched.next_after(at_ms)
    return bool(
        nxt
        and job.schedule.dst_gap == types_pb2.DST_GAP_SKIP
        and _dst_gap_between(sched, prev, nxt)
    )


def _explain_slot(
    job: types_pb2.Job, sched: Schedule, at_ms: int, now_ms: int, records_before: RecordsBefore
) -> api_pb2.ExplainResponse:
    out = api_pb2.ExplainResponse()
    prev = sched.previous_slot(at_ms, _BACK_LIMIT_MS)
    nxt = sched.next_after(at_ms)
    out.previous_slot_ms = prev or 0
    out.next_slot_ms = nxt or 0
    when = format_ms(at_ms)

    def answer(verdict: str, text: str, *runs: types_pb2.Run) -> api_pb2.ExplainResponse:
        out.verdict = verdict
        out.explanation = text
        out.runs.extend(runs)
        return out

    if prev != at_ms:
        around = (
            f" The slots around it are {format_ms(prev) if prev else 'none'} and "
            f"{format_ms(nxt) if nxt else 'none'}."
        )
        if (
            prev
            and nxt
            and job.schedule.dst_gap == types_pb2.DST_GAP_SKIP
            and _dst_gap_between(sched, prev, nxt)
        ):
            return answer(
                "dst_gap",
                f"{when} falls in a daylight-saving gap of zone {job.schedule.timezone}: "
                f"local times in it do not exist and the job's dst_gap policy is skip." + around,
            )
        return answer(
            "not_a_slot",
            f"{when} is not a slot of the job's schedule and no slot comes before it, so nothing "
            "was due then." + around,
        )
    out.slot_ms = at_ms
    if at_ms < job.created_ms and not records_before(at_ms, 1):
        return answer(
            "before_created", f"The job was created at {format_ms(job.created_ms)}, after {when}."
        )
    for rec in records_before(at_ms, 50):
        covers = rec.scheduled_ms == at_ms or (
            rec.state == types_pb2.RUN_STATE_SKIPPED
            and rec.scheduled_ms <= at_ms <= rec.skipped_until_ms
        )
        if not covers:
            continue
        origin = policies.origin_word(rec.origin)
        how = f" ({origin} run)" if origin and origin != "schedule" else ""
        if rec.state == types_pb2.RUN_STATE_SKIPPED:
            reason = policies.SKIP_REASON_TEXT.get(rec.skip_reason, "no reason recorded")
            span = (
                ""
                if rec.skipped_until_ms <= rec.scheduled_ms
                else f" The record covers {format_ms(rec.scheduled_ms)} .. {format_ms(rec.skipped_until_ms)}"
                + (f" ({rec.skipped_count} slots)." if rec.skipped_count else ".")
            )
            if rec.note and rec.skip_reason in _NOTED:
                span += f" ({rec.note})"
            return answer("skipped", f"The slot at {when} did not run: {reason}.{span}", rec)
        if rec.state == types_pb2.RUN_STATE_SUCCEEDED:
            return answer(
                "ran",
                f"The slot at {when} ran{how}: run {rec.run_id} succeeded at "
                f"{format_ms(rec.finished_ms)} after {rec.attempt} attempt(s).",
                rec,
            )
        if rec.state in (types_pb2.RUN_STATE_DEAD, types_pb2.RUN_STATE_FAILED):
            return answer(
                "failed",
                f"The slot at {when} ran{how} and failed: run {rec.run_id} is "
                f"{_state(rec)} after {rec.attempt} attempt(s): {rec.error}",
                rec,
            )
        if rec.state == types_pb2.RUN_STATE_CANCELLED:
            return answer(
                "cancelled",
                f"Run {rec.run_id} for {when} was cancelled: "
                f"{rec.note or rec.error or 'no reason recorded'}.",
                rec,
            )
        if rec.state == types_pb2.RUN_STATE_WAITING and rec.waiting_for:
            return answer(
                "waiting",
                f"Run {rec.run_id} for {when}{how} is waiting for its upstreams "
                f"(trigger rule {policies.trigger_rule_name(job.trigger_rule)}).",
                rec,
            )
        if rec.state == types_pb2.RUN_STATE_WAITING:
            return answer(
                "waiting",
                f"Run {rec.run_id} for {when} is buffered (overlap policy buffer_one) "
                "until an active run of the job ends.",
                rec,
            )
        return answer(
            "running" if rec.state == types_pb2.RUN_STATE_LEASED else "pending",
            f"Run {rec.run_id} for {when} is {_state(rec)} (attempt {rec.attempt}).",
            rec,
        )
    due = sched.due_ms(job.name, at_ms)
    paused = job.state == types_pb2.JOB_STATE_PAUSED
    if paused and at_ms >= job.paused_ms:
        return answer(
            "paused",
            f"The job has been paused since {format_ms(job.paused_ms)}; on resume its "
            f"misfire policy ({policies.misfire_name(job.misfire)}) decides about {when}.",
        )
    if due > now_ms or (job.next_due_ms and due >= job.next_due_ms):
        return answer(
            "not_due_yet",
            f"The slot at {when} is due at {format_ms(due)} and has not been fired yet."
            if due > now_ms
            else f"The slot at {when} is due since {format_ms(due)}; the leader has not fired it yet "
            "(no leader, or it is catching up).",
        )
    if job.updated_ms and job.updated_ms > at_ms and job.version > 1:
        return answer(
            "no_record",
            f"No run or skip record exists for {when}; the job was updated at "
            f"{format_ms(job.updated_ms)} (version {job.version}), and the "
            "schedule in force then may have differed.",
        )
    if job.keep_runs or job.keep_for_ms:
        return answer(
            "pruned",
            f"No record exists for {when} any more: the job's retention "
            f"(keep_runs={job.keep_runs}, keep_for_ms={job.keep_for_ms}) removed it.",
        )
    return answer(
        "no_record",
        f"No run or skip record exists for {when}. It was created before "
        "schedd recorded skip reasons, or its job was re-created.",
    )


def explain_unscheduled(
    job: types_pb2.Job, at_ms: int, records_before: RecordsBefore
) -> api_pb2.ExplainResponse:
    """``job explain`` for a job without a schedule (it runs when its upstreams are
    satisfied): about its newest record at or before ``at_ms``."""
    ups = ", ".join(namespaces.bare(u) for u in job.depends_on) or "none"
    recs = records_before(at_ms, 1)
    if not recs:
        out = api_pb2.ExplainResponse(
            verdict="no_record",
            explanation=f"The job has no schedule: it runs when its upstreams ({ups}) satisfy "
            f"its trigger rule ({policies.trigger_rule_name(job.trigger_rule)}), and none has "
            f"by {format_ms(at_ms)}.",
        )
        return out
    rec = recs[0]
    slot = cast(Schedule, _NoSchedule(rec.scheduled_ms))  # only these three methods are used
    out = _explain_slot(job, slot, rec.scheduled_ms, at_ms, lambda a, n: recs)
    out.explanation = f"The job has no schedule (upstreams: {ups}); its latest record: " + (
        out.explanation
    )
    return out


class _NoSchedule:
    """The one "slot" an answer about an unscheduled job's record needs."""

    def __init__(self, slot_ms: int) -> None:
        self.slot_ms = slot_ms

    def previous_slot(self, at_ms: int, max_back_ms: int) -> int | None:
        return self.slot_ms if self.slot_ms <= at_ms else None

    def next_after(self, at_ms: int) -> int | None:
        return None

    def due_ms(self, name: str, slot_ms: int) -> int:
        return slot_ms


_PHRASE = {
    "backoff": "in its retry backoff",
    "no_worker": "no worker on queue {queue}",
    "tags": "no worker of queue {queue} with its tags",
    "no_handler": "no worker of queue {queue} with a handler for it",
    "busy": "every worker of queue {queue} is busy",
}


def upstream_phrase(
    upstream: types_pb2.Run | None,
    job: str,
    slot_ms: int,
    workers: Sequence[WorkerView],
    now_ms: int,
) -> str:
    """``B's run of 02:00 (pending, no worker on queue etl)``: one upstream a run waits for
    (``upstream`` None: no record yet)."""
    who = (
        f"{namespaces.bare(job)}'s run of {format_ms(slot_ms)}"
        if slot_ms
        else (f"a new outcome of {namespaces.bare(job)}")
    )
    if upstream is None:
        return f"{who} (not fired yet)"
    state = _state(upstream)
    if upstream.state == types_pb2.RUN_STATE_PENDING:
        cause, _ = pending_cause(upstream, workers, now_ms)
        if cause in _PHRASE:
            state += ", " + _PHRASE[cause].format(queue=namespaces.bare(upstream.queue))
    elif upstream.state == types_pb2.RUN_STATE_WAITING and upstream.waiting_for:
        state += " for " + ", ".join(namespaces.bare(u) for u in upstream.waiting_for)
    return f"{who} ({state})"


def with_upstreams(
    answer: api_pb2.ExplainResponse,
    run: types_pb2.Run,
    get_run: Callable[[str], types_pb2.Run | None],
    get_job: Callable[[str], types_pb2.Job | None],
    workers: Sequence[WorkerView],
    now_ms: int,
) -> api_pb2.ExplainResponse:
    """``answer`` (a ``waiting`` verdict about ``run``, which waits for upstreams) with what it
    waits for: "waiting for B's run of 02:00 (pending, no worker on queue etl)"."""
    parts = []
    by_job = {r.rsplit(":", 2)[0]: r for r in run.upstream_runs}
    for up in run.waiting_for:
        rid = by_job.get(up, "")
        rec = get_run(rid) if rid else None
        slot = 0
        if rid and not rid.endswith("m"):
            try:
                slot = int(rid.rsplit(":", 1)[1])
            except ValueError:
                slot = 0
        if rec is not None:
            slot = rec.scheduled_ms if rec.origin != types_pb2.RUN_ORIGIN_DEPENDENCY else 0
            answer.upstream.append(rec)
        uj = get_job(up)
        if rid and slot == 0 and uj is not None and uj.schedule.kind and rec is None:
            parts.append(f"{namespaces.bare(up)} (it has no slot at or before this one)")
            continue
        parts.append(upstream_phrase(rec, up, slot, workers, now_ms))
    if parts:
        answer.explanation += " It is waiting for " + "; ".join(parts) + "."
    if run.dependency_deadline_ms:
        answer.explanation += (
            f" It is skipped (dependency_timeout) if still waiting at "
            f"{format_ms(run.dependency_deadline_ms)}."
        )
    return answer
