"""DST policies on real transition days, as readable transcripts.

Each row: zone, cron, start instant, policies, and the firings that follow, in UTC with the
local wall time in the comment. 2026 transitions used:

    Europe/Berlin        2026-03-29 01:00Z  02:00 CET  -> 03:00 CEST  (gap 02:00-02:59)
                         2026-10-25 01:00Z  03:00 CEST -> 02:00 CET   (02:00-02:59 twice)
    America/New_York     2026-03-08 07:00Z  02:00 EST  -> 03:00 EDT   (gap 02:00-02:59)
                         2026-11-01 06:00Z  02:00 EDT  -> 01:00 EST   (01:00-01:59 twice)
    Australia/Lord_Howe  2026-10-03 15:30Z  02:00 +1030 -> 02:30 +11  (gap 02:00-02:29)
                         2026-04-04 15:00Z  02:00 +11 -> 01:30 +1030  (01:30-01:59 twice)
    America/Havana       2026-03-08 05:00Z  00:00 CST  -> 01:00 CDT   (midnight does not exist)
"""

from __future__ import annotations

import pytest

from schedd.sched.schedule import DstGap, DstRepeat, parse_cron, parse_rfc3339

SHIFT, SKIP = DstGap.SHIFT, DstGap.SKIP
ONCE, TWICE = DstRepeat.ONCE, DstRepeat.TWICE


def utc(text: str) -> int:
    return parse_rfc3339(text if text.endswith("Z") else text + "Z", "t")


CASES = [
    # ---- Berlin, spring forward: 02:30 does not exist on 2026-03-29
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-28T12:00",
        SHIFT,
        ONCE,
        [
            "2026-03-29T01:00",  # 03:00 CEST: the first instant after the gap
            "2026-03-30T00:30",
        ],
    ),  # 02:30 CEST
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-28T12:00",
        SKIP,
        ONCE,
        ["2026-03-30T00:30"],
    ),  # no firing on the 29th
    (
        "Europe/Berlin",
        "10,40 * * * *",
        "2026-03-29T00:30",
        SHIFT,
        ONCE,
        [
            "2026-03-29T00:40",  # 01:40 CET
            "2026-03-29T01:00",  # 02:10 and 02:40 do not exist: one firing at 03:00 CEST
            "2026-03-29T01:10",  # 03:10 CEST
            "2026-03-29T01:40",
        ],
    ),
    (
        "Europe/Berlin",
        "10,40 * * * *",
        "2026-03-29T00:30",
        SKIP,
        ONCE,
        ["2026-03-29T00:40", "2026-03-29T01:10", "2026-03-29T01:40"],
    ),
    (
        "Europe/Berlin",
        "*/20 * * * *",
        "2026-03-29T00:30",
        SHIFT,
        ONCE,
        ["2026-03-29T00:40", "2026-03-29T01:00", "2026-03-29T01:20"],
    ),  # 03:00 fires once, not twice
    (
        "Europe/Berlin",
        "*/20 * 2 * * *",
        "2026-03-28T12:00",
        SHIFT,
        ONCE,  # seconds: 02:00:00-02:59:40
        ["2026-03-29T01:00", "2026-03-30T00:00", "2026-03-30T00:00:20"],
    ),
    (
        "Europe/Berlin",
        "*/20 * 2 * * *",
        "2026-03-28T12:00",
        SKIP,
        ONCE,
        ["2026-03-30T00:00", "2026-03-30T00:00:20"],
    ),
    # ---- Berlin, fall back: 02:00-02:59 happens twice on 2026-10-25
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24T12:00",
        SHIFT,
        ONCE,
        [
            "2026-10-25T00:30",  # 02:30 CEST, the first occurrence
            "2026-10-26T01:30",
        ],
    ),  # 02:30 CET the next day
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24T12:00",
        SHIFT,
        TWICE,
        ["2026-10-25T00:30", "2026-10-25T01:30", "2026-10-26T01:30"],
    ),  # 02:30 CEST and 02:30 CET
    (
        "Europe/Berlin",
        "*/30 * * * *",
        "2026-10-24T23:45",
        SHIFT,
        ONCE,
        [
            "2026-10-25T00:00",
            "2026-10-25T00:30",  # 02:00, 02:30 CEST
            "2026-10-25T02:00",
        ],
    ),  # 03:00 CET: the repeated hour stays silent
    (
        "Europe/Berlin",
        "*/30 * * * *",
        "2026-10-24T23:45",
        SHIFT,
        TWICE,
        [
            "2026-10-25T00:00",
            "2026-10-25T00:30",
            "2026-10-25T01:00",
            "2026-10-25T01:30",
            "2026-10-25T02:00",
        ],
    ),
    (
        "Europe/Berlin",
        "*/30 * * * *",
        "2026-10-25T00:40",
        SHIFT,
        TWICE,  # from 02:40 CEST (1st pass)
        ["2026-10-25T01:00", "2026-10-25T01:30", "2026-10-25T02:00"],
    ),
    ("Europe/Berlin", "*/30 * * * *", "2026-10-25T00:40", SHIFT, ONCE, ["2026-10-25T02:00"]),
    (
        "Europe/Berlin",
        "*/30 * * * *",
        "2026-10-25T01:10",
        SHIFT,
        TWICE,  # from 02:10 CET (2nd pass)
        ["2026-10-25T01:30", "2026-10-25T02:00"],
    ),
    ("Europe/Berlin", "*/30 * * * *", "2026-10-25T01:10", SHIFT, ONCE, ["2026-10-25T02:00"]),
    # ---- New York
    (
        "America/New_York",
        "30 2 * * *",
        "2026-03-07T12:00",
        SHIFT,
        ONCE,
        [
            "2026-03-08T07:00",  # 03:00 EDT
            "2026-03-09T06:30",
        ],
    ),  # 02:30 EDT
    ("America/New_York", "30 2 * * *", "2026-03-07T12:00", SKIP, ONCE, ["2026-03-09T06:30"]),
    (
        "America/New_York",
        "30 1 * * *",
        "2026-10-31T12:00",
        SHIFT,
        ONCE,
        [
            "2026-11-01T05:30",  # 01:30 EDT
            "2026-11-02T06:30",
        ],
    ),  # 01:30 EST
    (
        "America/New_York",
        "30 1 * * *",
        "2026-10-31T12:00",
        SKIP,
        TWICE,
        ["2026-11-01T05:30", "2026-11-01T06:30", "2026-11-02T06:30"],
    ),
    # ---- Lord Howe: 30-minute shifts
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03T00:00",
        SHIFT,
        ONCE,
        [
            "2026-10-03T15:30",  # 02:30 +11, the end of the 30-minute gap
            "2026-10-04T15:15",
        ],
    ),  # 02:15 +11
    ("Australia/Lord_Howe", "15 2 * * *", "2026-10-03T00:00", SKIP, ONCE, ["2026-10-04T15:15"]),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04T00:00",
        SHIFT,
        ONCE,
        [
            "2026-04-04T14:45",  # 01:45 +11
            "2026-04-05T15:15",
        ],
    ),  # 01:45 +1030 the next day
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04T00:00",
        SHIFT,
        TWICE,
        ["2026-04-04T14:45", "2026-04-04T15:15", "2026-04-05T15:15"],
    ),
    (
        "Australia/Lord_Howe",
        "*/10 * * * *",
        "2026-04-04T14:25",
        SHIFT,
        ONCE,
        [
            "2026-04-04T14:30",
            "2026-04-04T14:40",
            "2026-04-04T14:50",  # 01:30-01:50 +11
            "2026-04-04T15:30",
        ],
    ),  # 02:00 +1030
    (
        "Australia/Lord_Howe",
        "*/10 * * * *",
        "2026-04-04T14:25",
        SHIFT,
        TWICE,
        [
            "2026-04-04T14:30",
            "2026-04-04T14:40",
            "2026-04-04T14:50",
            "2026-04-04T15:00",
            "2026-04-04T15:10",
            "2026-04-04T15:20",  # 01:30-01:50 +1030
            "2026-04-04T15:30",
        ],
    ),
    # ---- Havana: midnight itself is skipped
    (
        "America/Havana",
        "0 0 * * *",
        "2026-03-07T12:00",
        SHIFT,
        ONCE,
        [
            "2026-03-08T05:00",  # 01:00 CDT
            "2026-03-09T04:00",
        ],
    ),  # 00:00 CDT
    ("America/Havana", "0 0 * * *", "2026-03-07T12:00", SKIP, ONCE, ["2026-03-09T04:00"]),
]


@pytest.mark.parametrize(
    "tz,expr,start,gap,repeat,want",
    CASES,
    ids=[f"{c[0]}|{c[1]}|{c[2]}|{c[3].value}|{c[4].value}" for c in CASES],
)
def test_transition_days(
    tz: str, expr: str, start: str, gap: DstGap, repeat: DstRepeat, want: list[str]
) -> None:
    cron = parse_cron(expr, tz, dst_gap=gap, dst_repeat=repeat)
    got, t = [], utc(start)
    for _ in want:
        nxt = cron.next_after(t)
        assert nxt is not None
        got.append(nxt)
        t = nxt
    assert got == [utc(w) for w in want]


def test_hourly_with_default_policies_runs_every_local_hour_once() -> None:
    """`0 * * * *` in Berlin: on the fall-back day (25 hours long) 24 firings, one per local
    hour label, the repeated 02:00 once; on the spring-forward day (23 hours) 23 firings, the
    missing 02:00 shifted onto 03:00 and not fired twice."""
    cron = parse_cron("0 * * * *", "Europe/Berlin")
    for day_start, day_end, n in [
        ("2026-10-24T22:00", "2026-10-25T23:00", 24),
        ("2026-03-28T23:00", "2026-03-29T22:00", 23),
    ]:
        t, count = utc(day_start) - 1, 0
        while (nxt := cron.next_after(t)) is not None and nxt < utc(day_end):
            t, count = nxt, count + 1
        assert count == n


def test_the_worked_examples_in_the_docs_hold() -> None:
    """docs/schedules.md's DST table is a transcript: recompute every row."""
    from datetime import datetime, timedelta
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from schedd.sched.schedule import Cron, format_ms

    doc = (Path(__file__).resolve().parents[2] / "docs" / "schedules.md").read_text()
    table = doc.split("<!-- dst-table")[1].split("<!-- /dst-table -->")[0]
    rows = [r.strip().strip("|").split("|") for r in table.splitlines()[3:] if r.startswith("|")]
    assert len(rows) >= 12
    for zone, expr, day, policy, local_text, in_utc in (map(str.strip, r) for r in rows):
        cron = Cron(
            expr.strip("`"),
            zone,
            DstGap.SKIP if policy == "skip" else DstGap.SHIFT,
            DstRepeat.TWICE if policy == "twice" else DstRepeat.ONCE,
        )
        z = ZoneInfo(zone)
        d = datetime.fromisoformat(day)
        t = int(d.replace(tzinfo=z).timestamp() * 1000) - 1
        end = int((d + timedelta(days=1)).replace(tzinfo=z).timestamp() * 1000)
        got_utc, got_local = [], []
        while (nxt := cron.next_after(t)) is not None and nxt < end:
            got_utc.append(format_ms(nxt)[5:16].replace("T", " "))
            local = datetime.fromtimestamp(nxt / 1000, z).isoformat(timespec="minutes")
            got_local.append(local[11:])
            t = nxt
        assert (", ".join(got_utc) or "—") == in_utc, (zone, expr, day, policy)
        assert (", ".join(got_local) or "—") == local_text, (zone, expr, day, policy)
