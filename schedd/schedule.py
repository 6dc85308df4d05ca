"""Schedule math: pure functions from (schedule, instant) to the next scheduled instant.

Runs on the leader (and in validation), never inside apply: the leader carries every computed
due time in the command, so replicas never depend on their own time-zone database.

Cron: 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, as in
Quartz, Spring and Dkron; evaluated in an IANA time zone (default UTC). Times are integer
milliseconds since the Unix epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from schedd.errors import InvalidArgument

MAX_CRON_LEN = 200


@dataclass(frozen=True)
class Cron:
    """A validated cron expression in a zone. ``next_after`` is strictly after its argument."""

    expr: str
    tz: str

    def next_after(self, after_ms: int) -> int:
        zone = ZoneInfo(self.tz)
        start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(zone)
        it = croniter(_croniter_expr(self.expr), start, second_at_beginning=_has_seconds(self.expr))
        nxt = it.get_next(datetime)
        ms = int(round(nxt.timestamp() * 1000))
        # croniter works in whole seconds; guard against returning the same instant.
        while ms <= after_ms:
            nxt = it.get_next(datetime)
            ms = int(round(nxt.timestamp() * 1000))
        return ms


def _has_seconds(expr: str) -> bool:
    return len(expr.split()) == 6


def _croniter_expr(expr: str) -> str:
    return " ".join(expr.split())


def parse_zone(tz: str, field: str = "schedule.timezone") -> str:
    tz = tz or "UTC"
    if len(tz) > 64 or tz.startswith(("/", ".")) or ".." in tz:
        raise InvalidArgument(field, f"unknown time zone {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(field, f"unknown time zone {tz!r} (use an IANA name such as Europe/Berlin)") from None
    return tz


def parse_cron(expr: str, tz: str = "UTC", field: str = "schedule.cron") -> Cron:
    """Validate a cron expression and zone; raise InvalidArgument naming the field."""
    expr = " ".join((expr or "").split())
    if not expr:
        raise InvalidArgument(field, "is required")
    if len(expr) > MAX_CRON_LEN:
        raise InvalidArgument(field, f"longer than {MAX_CRON_LEN} characters")
    n = len(expr.split())
    if n not in (5, 6):
        raise InvalidArgument(field, f"{expr!r} has {n} fields; want 5 (min hour dom month dow) or 6 (seconds first)")
    try:
        ok = croniter.is_valid(_croniter_expr(expr), second_at_beginning=(n == 6))
    except Exception:  # croniter raises assorted types for odd input
        ok = False
    if not ok:
        raise InvalidArgument(field, f"invalid cron expression {expr!r}")
    cron = Cron(expr, parse_zone(tz))
    try:
        cron.next_after(0)
    except Exception:
        raise InvalidArgument(field, f"cron expression {expr!r} never fires") from None
    return cron


def slots_due(cron: Cron, first_due_ms: int, now_ms: int, limit: int) -> tuple[list[int], int]:
    """Scheduled instants from ``first_due_ms`` up to ``now_ms`` (at most ``limit``) and the
    next due instant after the last one returned."""
    slots: list[int] = []
    t = first_due_ms
    while t <= now_ms and len(slots) < limit:
        slots.append(t)
        t = cron.next_after(t)
    return slots, t


def format_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds when they are not zero."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str, field: str) -> int:
    """Parse an RFC 3339 time with an offset (or Z) to epoch milliseconds."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise InvalidArgument(field, f"{text!r} is not an RFC 3339 time such as 2026-01-02T03:04:05Z") from None
    if dt.tzinfo is None:
        raise InvalidArgument(field, f"{text!r} has no UTC offset; add Z or +HH:MM")
    return int(round(dt.timestamp() * 1000))
