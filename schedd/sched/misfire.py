"""When a slot counts as missed (a misfire): one rule, read by the leader's fire planner
(``schedd.sched.firing``) and decided by apply (``schedd.state.apply.firing``), so both agree.
Pure: ``now`` is the leader's stamped time."""

from __future__ import annotations

from schedd.pb import types_pb2

Job = types_pb2.Job


def is_late(job: Job, slot_ms: int, due_ms: int, now: int) -> bool:
    """A slot is missed (a misfire) when it is due more than the grace period before now, or
    when it fell while the job was paused (a resume never fires the paused slots as if on time).
    Lateness counts from the job's creation at the earliest: a one-shot created for a past time
    (allow_past) is not late."""
    return in_pause(job, slot_ms, now) or now - max(due_ms, job.created_ms) > job.misfire_grace_ms


def in_pause(job: Job, slot_ms: int, now: int) -> bool:
    """``slot_ms`` fell inside the job's last pause (``paused_ms`` .. ``resumed_ms``, or now)."""
    return bool(job.paused_ms) and job.paused_ms <= slot_ms < (job.resumed_ms or now + 1)
