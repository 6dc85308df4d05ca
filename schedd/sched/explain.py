"""``job explain``: why did (or will) a job run or not at a given time? Pure: the caller passes
the job, its compiled schedule, the leader's time and a lookup of the job's run records.

The answer comes from replicated state (run and skip records, the job's pause window and
policies), never from a guess: "ran", "failed", "running", "skipped" (with the recorded
reason), or, when no record exists, the rule that explains it (not a slot of the schedule, DST
gap, before the job existed, not due yet, paused, retention).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from schedd.pb import api_pb2, types_pb2
from schedd.sched import policies
from schedd.sched.schedule import Cron, Schedule, format_ms

_BACK_LIMIT_MS = 400 * 86_400_000

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
