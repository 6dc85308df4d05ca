"""Commands the leader builds from a request *and* the committed job: resume and backfill.

Pure (no I/O, no clock: ``now_ms`` is the leader's stamped time). The gRPC servicers read the
job, call these and propose the result; the model test of apply calls the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schedd.pb import command_pb2, types_pb2
from schedd.sched.firing import count_slots
from schedd.sched.schedule import Cron, Schedule, compile_schedule
from schedd.server import validate

COUNT_CAP = 1_000_000
CRON_COUNT_CAP = 20_000  # ~0.2 s of cron math; every chunk call counts its remaining range


def plan_resume(job: types_pb2.Job, now_ms: int, skip_missed: bool) -> command_pb2.ResumeJobCmd:
    """Resume ``job``: missed slots go through its misfire policy, or with ``skip_missed`` are
    recorded as SKIPPED (paused) and the job jumps to its first slot after now.

    A one-shot job has nothing to skip, nor has a job with no next slot (it reached
    ``max_runs``, even if raised again while paused, or its schedule ended): a plain resume
    leaves it finished, where a jump past now would revive it with the pause's slots
    unrecorded."""
    body = command_pb2.ResumeJobCmd(name=job.name, mode=command_pb2.RESUME_MISFIRE)
    if (
        skip_missed
        and job.next_due_ms
        and job.schedule.kind
        not in (
            types_pb2.SCHEDULE_KIND_AT,
            types_pb2.SCHEDULE_KIND_UNSPECIFIED,  # no schedule (depends_on only): nothing to skip
        )
    ):
        body.mode = command_pb2.RESUME_SKIP_MISSED
        body.from_due_ms = job.next_due_ms
        body.next_due_ms = validate.resume_due(job, now_ms)
        if job.next_due_ms and job.next_due_ms <= now_ms:
            body.missed_first_ms = compile_schedule(job.schedule).slot_of_due(
                job.name, job.next_due_ms
            )
    return body


@dataclass(frozen=True)
class BackfillChunk:
    """One backfill chunk: ``slots`` to create now, where the next chunk starts (0: done) and
    the slots of the whole range (0 for a cron range too long to count)."""

    slots: list[int]
    next_from_ms: int
    total_slots: int


def plan_backfill(job: types_pb2.Job, start_ms: int, end_ms: int, limit: int) -> BackfillChunk:
    """The slots of ``job``'s schedule in [start, end], at most ``limit`` of them."""
    sched = compile_schedule(job.schedule)
    slots: list[int] = []
    slot = sched.next_after(start_ms - 1)
    while slot is not None and slot <= end_ms and len(slots) < limit:
        slots.append(slot)
        slot = sched.next_after(slot)
    nxt = slot if slot is not None and slot <= end_ms else 0
    return BackfillChunk(slots, nxt, capped_count(sched, start_ms, end_ms))


def capped_count(sched: Schedule, start: int, end: int) -> int:
    """Slots in [start, end]: exact for intervals (capped at 1,000,000); for cron, counted up
    to 20,000 and 0 ("too many to count") beyond."""
    n = count_slots(sched, start, end)
    if n or not isinstance(sched.trigger, Cron):
        return min(n, COUNT_CAP)
    slot = sched.next_after(start - 1)
    while slot is not None and slot <= end:
        n += 1
        if n > CRON_COUNT_CAP:
            return 0
        slot = sched.next_after(slot)
    return n


#: downstream jobs and slots one backfill chunk may add (with_downstream)
MAX_DOWNSTREAM_JOBS = 100
MAX_DOWNSTREAM_SLOTS = 10_000


def plan_downstream(
    get_job: Callable[[str], types_pb2.Job | None],
    job: types_pb2.Job,
    slots: Sequence[int],
) -> list[tuple[types_pb2.Job, list[int]]]:
    """Backfill ``with_downstream``: for each job with a schedule that depends on ``job``
    (transitively, breadth first), its slots whose matched upstream slot is one of ``slots``:
    those from the first of them up to (not including) the upstream's next slot after the
    last. Jobs without a schedule need nothing: the backfilled runs start them as they end."""
    out: list[tuple[types_pb2.Job, list[int]]] = []
    todo: list[tuple[types_pb2.Job, list[int]]] = [(job, sorted(slots))]
    seen = {job.name}
    budget = MAX_DOWNSTREAM_SLOTS
    while todo and len(out) < MAX_DOWNSTREAM_JOBS:
        up, up_slots = todo.pop(0)
        if not up_slots:
            continue
        end = compile_schedule(up.schedule).next_after(up_slots[-1])
        for name in up.dependents:
            down = get_job(name)
            if down is None or name in seen or not down.schedule.kind:
                continue
            if up.name not in down.depends_on:
                continue
            seen.add(name)
            sched = compile_schedule(down.schedule)
            mine: list[int] = []
            slot = sched.next_after(up_slots[0] - 1)
            while slot is not None and (end is None or slot < end) and len(mine) < budget:
                mine.append(slot)
                slot = sched.next_after(slot)
            budget -= len(mine)
            out.append((down, mine))
            todo.append((down, mine))
    return out
