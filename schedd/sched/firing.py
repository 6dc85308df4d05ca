"""Leader-side planning of due firings: which slots of a due job a FireDue item carries.

Pure (no I/O, no clock: ``now_ms`` is an argument), so every leader builds the same item from
the same committed job and stamped time. The *decisions* (fire, coalesce, skip, buffer) are
made by apply from the item and the job's policies (``schedd.state.apply._fire_with_policy``); this
module only enumerates slots, bounded so one tick never walks an unbounded range:

* slots older than the catch-up window (``now - catchup_window_ms``) are not enumerated: they
  become one ``dropped`` range (counted exactly for intervals, uncounted for cron);
* missed ("late") slots inside the window are walked; only the newest ``keep`` of them are
  listed (``keep`` = max_catchup for FIRE_ALL, 1 for FIRE_ONCE, 0 for SKIP), older ones become
  one ``late`` range;
* on-time slots are listed, at most ``max_slots`` per item;
* a walk that hits ``scan_cap`` stops before deciding the slots it kept (they might not be the
  newest missed ones): the item ends there and the next tick continues from the first of them.
"""

from __future__ import annotations

from collections import deque

from schedd.pb import command_pb2, types_pb2
from schedd.sched.misfire import is_late
from schedd.sched.schedule import Interval, Schedule, compile_schedule

DEFAULT_SCAN_CAP = 20_000


def _keep(job: types_pb2.Job) -> int:
    if job.misfire == types_pb2.MISFIRE_POLICY_SKIP:
        return 0
    if job.misfire == types_pb2.MISFIRE_POLICY_FIRE_ONCE:
        return 1
    return max(1, job.max_catchup)


def count_slots(sched: Schedule, first_ms: int, last_ms: int) -> int:
    """Slots in ``first_ms .. last_ms`` when cheap to know (interval schedules), else 0."""
    trig = sched.trigger
    if not isinstance(trig, Interval) or last_ms < first_ms:
        return 0
    lo = -((first_ms - trig.anchor_ms) // -trig.every_ms)  # ceil
    hi = (last_ms - trig.anchor_ms) // trig.every_ms  # floor
    return max(0, hi - lo + 1)


def plan_fire(
    sched: Schedule,
    job: types_pb2.Job,
    due_ms: int,
    now_ms: int,
    *,
    max_slots: int,
    scan_cap: int = DEFAULT_SCAN_CAP,
    horizon_ms: int | None = None,
) -> command_pb2.FireItem:
    """The FireItem for ``job`` whose committed next due time ``due_ms`` has come (<= now), or
    comes by ``horizon_ms`` (firing ahead: slots due up to the horizon are listed; whether one
    is late is still judged at ``now_ms``)."""
    horizon = now_ms if horizon_ms is None else max(now_ms, horizon_ms)
    name = job.name
    item = command_pb2.FireItem(name=name, uid=job.uid, from_due_ms=due_ms, policy=True)
    real: Schedule | None = None
    if (
        job.schedule.kind == types_pb2.SCHEDULE_KIND_CRON
        and job.schedule.dst_gap == types_pb2.DST_GAP_SKIP
    ):
        # Walk the SHIFT variant: its slots are the real ones plus one instant per DST gap,
        # which is recorded (not fired) so that the skipped local time has a record.
        shifted = types_pb2.Schedule()
        shifted.CopyFrom(job.schedule)
        shifted.dst_gap = types_pb2.DST_GAP_SHIFT
        real, sched = sched, compile_schedule(shifted)

    def is_gap(t: int) -> bool:  # a slot of the SHIFT variant only
        return real is not None and real.next_after(t - 1) != t and sched.next_after(t - 1) == t

    def due_of(t: int) -> int:  # a gap instant carries no jitter; real slots keep their own
        return t if is_gap(t) else (real or sched).due_ms(name, t)

    slot: int | None = due_ms if is_gap(due_ms) else (real or sched).slot_of_due(name, due_ms)
    window_start = now_ms - job.catchup_window_ms
    if due_ms < window_start and max(due_ms, job.created_ms) < window_start:
        assert slot is not None
        item.dropped_first_ms = slot
        item.dropped_last_ms = window_start - 1
        item.dropped_count = count_slots(sched, slot, window_start - 1)
        slot = sched.next_after(window_start - 1)
    keep = _keep(job)
    kept: deque[tuple[int, int]] = deque()
    late_first = late_last = late_count = 0
    on_time: list[tuple[int, int]] = []
    walked = 0
    partial = False
    while slot is not None:
        due = due_of(slot)
        if due > horizon:
            break
        if is_gap(slot):
            item.dst_gap_ms.append(slot)
            slot = sched.next_after(slot)
            continue
        if is_late(job, slot, due, now_ms):
            kept.append((slot, due))
            if len(kept) > keep:
                s, _ = kept.popleft()
                late_first = late_first or s
                late_last = s
                late_count += 1
        else:
            on_time.append((slot, due))
        walked += 1
        slot = sched.next_after(slot)
        if len(on_time) >= max_slots:
            break
        if walked >= scan_cap and not on_time:
            partial = True
            break
    if partial and kept:
        # The kept slots may not be the newest missed ones: leave them for the next tick.
        next_slot: int | None = kept[0][0]
        kept.clear()
    else:
        next_slot = slot
    if late_first:
        item.late_first_ms, item.late_last_ms, item.late_count = late_first, late_last, late_count
    listed = list(kept) + on_time
    item.slots_ms.extend(s for s, _ in listed)
    item.dues_ms.extend(d for _, d in listed)
    item.next_due_ms = due_of(next_slot) if next_slot is not None else 0
    return item
