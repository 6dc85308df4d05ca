"""Cron math against an independent brute-force enumeration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from schedd.errors import InvalidArgument
from schedd.sched.schedule import format_ms, parse_cron, parse_rfc3339, slots_due

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def brute_next(minute_set: set[int], hour_set: set[int], after_ms: int, tz: str) -> int:
    """Minute by minute in the zone's wall clock (no DST transitions in the sampled ranges)."""
    zone = ZoneInfo(tz)
    t = datetime.fromtimestamp(after_ms / 1000, tz=UTC).replace(
        second=0, microsecond=0
    ) + timedelta(minutes=1)
    for _ in range(60 * 24 * 3):
        local = t.astimezone(zone)
        if local.minute in minute_set and local.hour in hour_set:
            return int(t.timestamp() * 1000)
        t += timedelta(minutes=1)
    raise AssertionError("no match in 3 days")


@settings(max_examples=80, deadline=None)
@given(
    st.sets(st.integers(0, 59), min_size=1, max_size=5),
    st.sets(st.integers(0, 23), min_size=1, max_size=4),
    st.integers(0, 30 * 24 * 3600 * 1000),
    st.sampled_from(["UTC", "Asia/Kolkata", "Asia/Tokyo"]),
)
def test_cron_matches_brute_force(minutes: set[int], hours: set[int], offset: int, tz: str) -> None:
    expr = f"{','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours)))} * * *"
    after = T0 + offset
    assert parse_cron(expr, tz).next_after(after) == brute_next(minutes, hours, after, tz)


def test_six_fields_have_seconds_first() -> None:
    cron = parse_cron("*/15 * * * * *")
    assert cron.next_after(T0) == T0 + 10_000  # :20 -> :30... T0 is at :20
    assert cron.next_after(T0 + 10_000) == T0 + 25_000


def test_next_after_is_strictly_after() -> None:
    cron = parse_cron("* * * * * *")
    assert cron.next_after(T0) == T0 + 1000
    assert cron.next_after(T0 + 1) == T0 + 1000


def test_slots_due_enumerates_every_missed_slot() -> None:
    cron = parse_cron("* * * * * *")
    slots, nxt = slots_due(cron, T0, T0 + 4500, limit=100)
    assert slots == [T0, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000] and nxt == T0 + 5000
    slots, nxt = slots_due(cron, T0, T0 + 4500, limit=2)
    assert slots == [T0, T0 + 1000] and nxt == T0 + 2000


def test_zone_is_respected() -> None:
    # 09:00 in Berlin on 2026-01-15 is 08:00Z (CET, UTC+1)
    after = parse_rfc3339("2026-01-15T00:00:00Z", "t")
    assert parse_cron("0 9 * * *", "Europe/Berlin").next_after(after) == parse_rfc3339(
        "2026-01-15T08:00:00Z", "t"
    )


@pytest.mark.parametrize(
    "expr,tz,field",
    [
        ("61 * * * *", "UTC", "schedule.cron"),
        ("* * *", "UTC", "schedule.cron"),
        ("", "UTC", "schedule.cron"),
        ("* * * * *", "Mars/Olympus", "schedule.timezone"),
        ("* * * * *", "../../etc/passwd", "schedule.timezone"),
    ],
)
def test_invalid_input_names_the_field(expr: str, tz: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_cron(expr, tz)
    assert e.value.field == field


def test_rfc3339() -> None:
    assert parse_rfc3339("2026-01-02T03:04:05Z", "at") == 1767323045000
    with pytest.raises(InvalidArgument):
        parse_rfc3339("2026-01-02 03:04", "at")
    assert format_ms(1767323045123) == "2026-01-02T03:04:05.123Z"


def test_slots_due_stops_when_the_schedule_ends() -> None:
    from schedd.sched.schedule import Interval, Schedule

    sched = Schedule(Interval(1000), end_ms=T0 + 2000)
    assert slots_due(sched, T0, T0 + 10_000, limit=100) == ([T0, T0 + 1000, T0 + 2000], 0)
    assert slots_due(sched, None, T0, limit=100) == ([], 0)
