"""What the dashboard shows, computed from the API's records: pure functions, no I/O.

Every page turns :mod:`schedd.models` records (as the SDK returns them) into rows of text with
these helpers, so the wording of a status, a schedule, a duration or an instant is decided (and
unit-tested) in one place. The current time is always a parameter (``now_ms``), never read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schedd.errors import InvalidArgument, SchedError
from schedd.models import Job, JobState, Run, RunState, Schedule, ScheduleKind, SkipReason
from schedd.sched.schedule import format_duration, parse_duration, parse_rfc3339

__all__ = [
    "JobFilter",
    "JobRow",
    "RunRow",
    "duration_text",
    "error_text",
    "instant_text",
    "job_row",
    "job_status",
    "parse_instant",
    "relative_text",
    "run_row",
    "schedule_text",
    "skip_reason_text",
]

#: the job list's status filters: "" (every job) and these
STATUS_FILTERS = ("active", "paused", "finished", "running", "failed", "dead")

#: runs whose state means "a worker holds it now" / "it ended badly"
_RUNNING = (RunState.LEASED,)
_FAILED = (RunState.DEAD, RunState.FAILED)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def instant_text(ms: int, tz: str = "UTC") -> str:
    """``ms`` as local time in zone ``tz`` with the zone's abbreviation ("2026-03-29 03:00:00
    CEST"); milliseconds only when not zero; "" for 0 (no such instant)."""
    if not ms:
        return ""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(_zone(tz))
    frac = f".{ms % 1000:03d}" if ms % 1000 else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + frac + " " + (dt.tzname() or tz)


def duration_text(ms: int) -> str:
    """A duration for people: "0s", "350ms", "4.2s", "3m 5s", "2h 10m", "3d 4h" (two units at
    most, so a column stays short). Negative durations are shown as their magnitude."""
    ms = abs(int(ms))
    if ms < 1000:
        return f"{ms}ms"
    if ms < 10_000:
        return f"{ms / 1000:.1f}s"
    s = ms // 1000
    for unit, size, sub, sub_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if s >= size:
            big, rest = divmod(s, size)
            small = rest // sub_size
            return f"{big}{unit} {small}{sub}" if small else f"{big}{unit}"
    return f"{s}s"


def relative_text(ms: int, now_ms: int) -> str:
    """ "in 4s", "3m 5s ago", "now" (within half a second); "" for 0."""
    if not ms:
        return ""
    delta = ms - now_ms
    if abs(delta) < 500:
        return "now"
    return f"in {duration_text(delta)}" if delta > 0 else f"{duration_text(delta)} ago"


def schedule_text(schedule: Schedule) -> str:
    """One line: "cron */5 * * * * * (Europe/Berlin)", "every 1m30s, jitter 10s", "once at
    2026-01-02 03:04:05 UTC"."""
    kind = schedule.kind
    if kind == ScheduleKind.CRON:
        text = f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    elif kind == ScheduleKind.INTERVAL:
        text = f"every {format_duration(schedule.every_ms)}"
    elif kind == ScheduleKind.AT:
        text = f"once at {instant_text(schedule.at_ms)}"
    else:
        return "none"
    if schedule.jitter_ms:
        text += f", jitter {format_duration(schedule.jitter_ms)}"
    return text


_SKIP_WORDS = {
    SkipReason.MISFIRE: "missed, and the misfire policy is skip",
    SkipReason.COALESCED: "missed; a later slot ran for it (fire_once)",
    SkipReason.CATCHUP_WINDOW: "missed by more than the catch-up window",
    SkipReason.CATCHUP_LIMIT: "beyond max_catchup missed slots (fire_all)",
    SkipReason.OVERLAP: "an earlier run was still active (overlap policy / max_concurrent)",
    SkipReason.BUFFER_FULL: "buffer_one already held a firing",
    SkipReason.PAUSED: "the job was paused",
    SkipReason.MAX_RUNS: "the job had reached max_runs",
    SkipReason.DST_GAP: "the local time did not exist (DST gap, dst_gap skip)",
    SkipReason.QUOTA: "the namespace was at its max_runs quota",
    SkipReason.UPSTREAM_FAILED: "an upstream run it depends on did not succeed",
    SkipReason.DEPENDENCY_TIMEOUT: "its upstreams did not decide it in time",
}


def skip_reason_text(reason: SkipReason) -> str:
    """Why a slot was skipped, as a sentence fragment ("" when no reason is recorded)."""
    if reason == SkipReason.UNSPECIFIED:
        return ""
    return _SKIP_WORDS.get(reason, reason.word)


def job_status(job: Job, recent: Sequence[Run]) -> str:
    """The one-word status of a job row, most urgent first: ``running`` (a worker holds a run
    now), ``paused``, ``failing`` (its newest finished run is dead or failed), ``finished`` (a
    one-shot that fired), ``active``. ``recent``: its newest runs, any order."""
    if any(r.state in _RUNNING for r in recent):
        return "running"
    if job.state == JobState.PAUSED:
        return "paused"
    last = last_outcome(recent)
    if last is not None and last.state in _FAILED:
        return "failing"
    if job.state == JobState.FINISHED:
        return "finished"
    return "active"


def last_outcome(recent: Iterable[Run]) -> Run | None:
    """The newest run (by slot) that ended: succeeded, dead, failed or cancelled; skip records
    and runs still pending or running are not outcomes."""
    ended = [
        r
        for r in recent
        if r.state in (RunState.SUCCEEDED, RunState.DEAD, RunState.FAILED, RunState.CANCELLED)
    ]
    return max(ended, key=lambda r: (r.finished_ms or r.scheduled_ms, r.scheduled_ms), default=None)


@dataclass(frozen=True)
class JobRow:
    """One line of the job list."""

    name: str
    status: str
    schedule: str
    timezone: str
    queue: str
    next_fire: str  # in the job's zone
    next_fire_utc: str
    next_fire_in: str
    last_outcome: str  # "succeeded", "dead", ... ("" when none yet)
    last_outcome_when: str
    running: int
    paused: bool


def job_row(job: Job, recent: Sequence[Run], now_ms: int) -> JobRow:
    tz = job.schedule.timezone or "UTC"
    last = last_outcome(recent)
    return JobRow(
        name=job.name,
        status=job_status(job, recent),
        schedule=schedule_text(job.schedule),
        timezone=tz,
        queue=job.queue,
        next_fire=instant_text(job.next_due_ms, tz),
        next_fire_utc=instant_text(job.next_due_ms),
        next_fire_in=relative_text(job.next_due_ms, now_ms),
        last_outcome=last.state.word if last is not None else "",
        last_outcome_when=(
            relative_text(last.finished_ms or last.scheduled_ms, now_ms) if last is not None else ""
        ),
        running=sum(1 for r in recent if r.state in _RUNNING),
        paused=job.state == JobState.PAUSED,
    )


@dataclass(frozen=True)
class RunRow:
    """One line of a run list, and the facts of the run detail page."""

    run_id: str
    job: str
    state: str
    origin: str
    scheduled: str
    scheduled_in: str
    attempt: int
    fence: int
    worker: str
    started: str
    finished: str
    took: str  # started .. finished, or started .. now while it runs
    error: str
    exit_code: str
    skip_reason: str
    note: str
    progress: str
    retryable: bool  # dead or failed: RetryRun replays it
    cancellable: bool  # pending, leased or waiting


def run_row(run: Run, now_ms: int, tz: str = "UTC") -> RunRow:
    took = ""
    if run.started_ms and run.finished_ms:
        took = duration_text(run.finished_ms - run.started_ms)
    elif run.started_ms and run.state == RunState.LEASED:
        took = duration_text(now_ms - run.started_ms) + " so far"
    skip = skip_reason_text(run.skip_reason)
    if run.state == RunState.SKIPPED and run.skipped_count > 1:
        skip += f" ({run.skipped_count} slots up to {instant_text(run.skipped_until_ms, tz)})"
    return RunRow(
        run_id=run.run_id,
        job=run.job,
        state=run.state.word,
        origin=run.origin.word if run.origin.word != "unspecified" else "",
        scheduled=instant_text(run.scheduled_ms, tz),
        scheduled_in=relative_text(run.scheduled_ms, now_ms),
        attempt=run.attempt,
        fence=run.fence,
        worker=run.worker_id,
        started=instant_text(run.started_ms, tz),
        finished=instant_text(run.finished_ms, tz),
        took=took,
        error=run.error,
        exit_code=str(run.exit_code) if run.exit_code else "",
        skip_reason=skip,
        note=run.note,
        progress=run.progress,
        retryable=run.state in _FAILED,
        cancellable=run.state in (RunState.PENDING, RunState.LEASED, RunState.WAITING),
    )


@dataclass(frozen=True)
class JobFilter:
    """The job list's filter: ``status`` (one of :data:`STATUS_FILTERS` or ""), ``queue``
    (exact), ``search`` (a case-insensitive part of the name)."""

    status: str = ""
    queue: str = ""
    search: str = ""

    @classmethod
    def parse(cls, status: str = "", queue: str = "", search: str = "") -> JobFilter:
        """From query parameters; an unknown status raises InvalidArgument naming ``status``."""
        status = status.strip().lower()
        if status and status not in STATUS_FILTERS:
            raise InvalidArgument(
                "status", f"{status!r} is not one of: {', '.join(STATUS_FILTERS)}"
            )
        return cls(status, queue.strip(), search.strip())

    @property
    def needs_runs(self) -> bool:
        """Whether matching a job needs its runs, not just its definition."""
        return self.status in ("running", "failed", "dead")

    @property
    def empty(self) -> bool:
        return not (self.status or self.queue or self.search)

    def matches_definition(self, job: Job) -> bool:
        """The part of the filter the job record alone decides."""
        if self.search and self.search.lower() not in job.name.lower():
            return False
        if self.queue and job.queue != self.queue:
            return False
        if self.status == "active":
            return job.state == JobState.ACTIVE
        if self.status == "paused":
            return job.state == JobState.PAUSED
        if self.status == "finished":
            return job.state == JobState.FINISHED
        return True

    def matches_row(self, row: JobRow) -> bool:
        """The part that needs the job's runs (after :meth:`matches_definition`)."""
        if self.status == "running":
            return row.running > 0
        if self.status == "failed":
            return row.last_outcome in ("dead", "failed")
        return True


def parse_instant(text: str, tz: str, now_ms: int) -> int:
    """An instant a person typed, as epoch ms: "now", a relative "-5m" / "+1h", an RFC 3339
    time with an offset, or a local "2026-03-29 02:30[:00]" (also with "T") read in zone
    ``tz``. Raises InvalidArgument naming ``at``."""
    text = text.strip()
    if not text or text.lower() == "now":
        return now_ms
    if text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        return now_ms + sign * parse_duration(text[1:], "at")
    normal = text.replace(" ", "T", 1)
    try:
        dt = datetime.fromisoformat(normal.replace("z", "Z"))
    except ValueError:
        raise InvalidArgument(
            "at",
            f"{text!r} is not a time: use now, -5m, 2026-03-29 02:30 (in the job's zone) "
            "or an RFC 3339 time such as 2026-03-29T00:30:00Z",
        ) from None
    if dt.tzinfo is not None:
        return parse_rfc3339(normal, "at")
    return int(round(dt.replace(tzinfo=_zone(tz)).timestamp() * 1000))


#: a headline per API status code, for the message shown on the page
_HEADLINES = {
    "INVALID_ARGUMENT": "Invalid input",
    "NOT_FOUND": "Not found",
    "ALREADY_EXISTS": "Already exists",
    "ABORTED": "Refused (stale fence)",
    "FAILED_PRECONDITION": "Not possible now",
    "PERMISSION_DENIED": "Permission denied",
    "RESOURCE_EXHAUSTED": "Limit reached",
    "UNAVAILABLE": "Cluster unavailable",
    "DEADLINE_EXCEEDED": "Outcome unknown",
    "UNAUTHENTICATED": "Not signed in",
}


def error_text(exc: SchedError) -> str:
    """The message the page shows for an API error: a headline for its status code, the code,
    and the server's own message (which names the field, role or limit)."""
    headline = _HEADLINES.get(exc.code, "Error")
    return f"{headline} ({exc.code}): {exc.message}"
