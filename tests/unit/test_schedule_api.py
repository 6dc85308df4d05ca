"""The compiled schedule: intervals, one-shots, bounds, jitter, preview, the dispatcher's use of
it, and validation of the Schedule message."""

from __future__ import annotations

import hashlib

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from schedd.errors import InvalidArgument
from schedd.pb import api_pb2, types_pb2
from schedd.sched.schedule import (
    At,
    Cron,
    DstGap,
    DstRepeat,
    Interval,
    Schedule,
    compile_schedule,
    format_duration,
    jitter_offset,
    parse_cron,
    parse_duration,
    parse_rfc3339,
    preview,
)
from schedd.server import validate

T0 = parse_rfc3339("2026-01-01T00:00:00Z", "t")  # a Thursday
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
CRON, AT, INTERVAL = (
    types_pb2.SCHEDULE_KIND_CRON,
    types_pb2.SCHEDULE_KIND_AT,
    types_pb2.SCHEDULE_KIND_INTERVAL,
)


def utc(text: str) -> int:
    return parse_rfc3339(text, "t")


def chain(s: Schedule | Cron, after: int, n: int) -> list[int]:
    out: list[int] = []
    t: int | None = after
    while len(out) < n and (t := s.next_after(t)) is not None:  # type: ignore[arg-type]
        out.append(t)
    return out


# ---- cron syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr,after,want",
    [
        ("@hourly", "2026-01-01T00:10:00Z", ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]),
        ("@daily", "2026-01-01T00:10:00Z", ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
        ("@midnight", "2026-01-01T00:10:00Z", ["2026-01-02T00:00:00Z"]),
        (
            "@weekly",
            "2026-01-01T00:00:00Z",
            ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
        ),  # Sundays
        ("@monthly", "2026-01-01T00:00:00Z", ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
        ("@yearly", "2026-01-01T00:00:00Z", ["2027-01-01T00:00:00Z"]),
        ("@ANNUALLY", "2026-01-01T00:00:00Z", ["2027-01-01T00:00:00Z"]),
        (
            "0 9 * * mon-FRI",
            "2026-01-02T10:00:00Z",
            ["2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z"],
        ),
        ("0 9 * * 7", "2026-01-01T00:00:00Z", ["2026-01-04T09:00:00Z"]),  # 7 is Sunday too
        (
            "0 9 * * 5-7",
            "2026-01-01T00:00:00Z",
            [
                "2026-01-02T09:00:00Z",
                "2026-01-03T09:00:00Z",
                "2026-01-04T09:00:00Z",
                "2026-01-09T09:00:00Z",
            ],
        ),
        (
            "0 0 1 jan,Jul *",
            "2026-01-01T00:00:00Z",
            ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"],
        ),
        ("0 0 L * *", "2026-01-01T00:00:00Z", ["2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z"]),
        ("0 0 L 2 *", "2027-06-01T00:00:00Z", ["2028-02-29T00:00:00Z"]),
        ("0 0 * * 5#2", "2026-01-01T00:00:00Z", ["2026-01-09T00:00:00Z", "2026-02-13T00:00:00Z"]),
        ("0 0 * * FRIL", "2026-01-01T00:00:00Z", ["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"]),
        (
            "0 0 13 * 5",
            "2026-01-01T00:00:00Z",
            ["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z"],
        ),  # day fields ORed
        ("0 0 ? * 5", "2026-01-01T00:00:00Z", ["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"]),
        ("0 0 29 2 *", "2026-01-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        (
            "5-10/5 0 1 1 *",
            "2026-01-01T00:00:00Z",
            ["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z", "2027-01-01T00:05:00Z"],
        ),
        ("50/5 0 1 1 *", "2026-01-01T00:00:00Z", ["2026-01-01T00:50:00Z", "2026-01-01T00:55:00Z"]),
        (
            "30 */20 0 1 1 *",
            "2026-01-01T00:00:00Z",
            ["2026-01-01T00:00:30Z", "2026-01-01T00:20:30Z"],
        ),
    ],
)
def test_cron_syntax(expr: str, after: str, want: list[str]) -> None:
    assert chain(parse_cron(expr), utc(after), len(want)) == [utc(w) for w in want]


@pytest.mark.parametrize(
    "expr",
    [
        "61 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "5-1 * * * *",
        "*/0 * * * *",
        "a * * * *",
        "1,,2 * * * *",
        "* * 15W * *",
        "* * * * 1#6",
        "* * * * XYZ",
        "* * * FOO *",
        "0 0 30 2 *",
        "@fortnightly",
        "@every 1m",
        "* * * * * * *",
        "L * * * *",
    ],
)
def test_bad_cron_names_the_field(expr: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_cron(expr)
    assert e.value.field == "schedule.cron"
    assert e.value.message.startswith("schedule.cron: ")


def test_cron_equality_ignores_derived_state() -> None:
    assert parse_cron("0 9 * * *", "Europe/Berlin") == Cron("0 9 * * *", "Europe/Berlin")
    assert Cron("0 9 * * *", dst_gap=DstGap.SKIP) != Cron("0 9 * * *")


# ---- interval and one-shot -----------------------------------------------------------------


def test_interval_default_anchor_is_the_epoch() -> None:
    s = compile_schedule(types_pb2.Schedule(kind=INTERVAL, every_ms=15 * MIN))
    assert chain(s, T0 + 1, 3) == [T0 + 15 * MIN, T0 + 30 * MIN, T0 + 45 * MIN]
    assert s.next_after(T0 - 1) == T0  # strictly after
    assert s.next_after(T0) == T0 + 15 * MIN


def test_interval_anchor_and_start() -> None:
    start = T0 + 7 * MIN + 123
    by_start = compile_schedule(types_pb2.Schedule(kind=INTERVAL, every_ms=90_000, start_ms=start))
    assert chain(by_start, 0, 3) == [start, start + 90_000, start + 180_000]
    anchored = compile_schedule(
        types_pb2.Schedule(kind=INTERVAL, every_ms=90_000, start_ms=start, anchor_ms=5)
    )
    assert chain(anchored, 0, 1) == [min(t for t in range(5, start + 90_000, 90_000) if t >= start)]


@given(st.integers(1000, 10 * DAY), st.integers(-(10**13), 10**13), st.integers(-(10**13), 10**13))
def test_interval_slots_are_anchor_plus_multiples(every: int, anchor: int, after: int) -> None:
    t = Interval(every, anchor).next_after(after)
    assert (t - anchor) % every == 0 and after < t <= after + every


def test_every_macro_is_an_interval() -> None:
    s = compile_schedule(types_pb2.Schedule(kind=CRON, cron="@every 1h30m"))
    assert s.trigger == Interval(90 * MIN, 0)
    assert parse_duration("1h30m", "f") == 90 * MIN and parse_duration("250ms", "f") == 250
    assert parse_duration("2d", "f") == 2 * DAY and format_duration(90 * MIN + 250) == "1h30m250ms"
    assert parse_duration("1.5h", "f") == 90 * MIN  # a fraction that makes whole milliseconds
    for bad in ("", "90", "1x", "h", "-5s", "1.5ms", "0.0001s"):
        with pytest.raises(InvalidArgument):
            parse_duration(bad, "f")


def test_at_fires_once() -> None:
    s = compile_schedule(types_pb2.Schedule(kind=AT, at_ms=T0))
    assert chain(s, 0, 5) == [T0]
    assert s.next_after(T0) is None


# ---- bounds --------------------------------------------------------------------------------


def test_bounds_are_inclusive() -> None:
    s = Schedule(Interval(HOUR), start_ms=T0 + HOUR, end_ms=T0 + 3 * HOUR)
    assert chain(s, 0, 10) == [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]
    s = Schedule(Interval(HOUR), start_ms=T0 + 1, end_ms=T0 + 3 * HOUR - 1)
    assert chain(s, 0, 10) == [T0 + HOUR, T0 + 2 * HOUR]


def test_bounds_with_cron_in_a_zone() -> None:
    s = compile_schedule(
        types_pb2.Schedule(
            kind=CRON,
            cron="0 9 * * *",
            timezone="Asia/Kolkata",
            start_ms=utc("2026-01-03T00:00:00Z"),
            end_ms=utc("2026-01-05T03:30:00Z"),
        )
    )
    assert chain(s, 0, 10) == [
        utc("2026-01-03T03:30:00Z"),
        utc("2026-01-04T03:30:00Z"),
        utc("2026-01-05T03:30:00Z"),
    ]


# ---- jitter --------------------------------------------------------------------------------


def test_jitter_is_a_pinned_sha256() -> None:
    """Pinned: changing the hash moves every jittered job after an upgrade."""
    assert jitter_offset("backup", 1767225600000, 30_000) == 27449
    assert jitter_offset("report", 1767225600000, HOUR) == 63627
    digest = hashlib.sha256(b"backup\x001767225600000").digest()
    assert int.from_bytes(digest[:8], "big") % 30_000 == 27449
    assert jitter_offset("x", T0, 1) == 0 and jitter_offset("x", T0, 0) == 0


def test_jitter_depends_on_the_job_and_the_slot() -> None:
    s = compile_schedule(types_pb2.Schedule(kind=CRON, cron="0 * * * *", jitter_ms=30 * MIN))
    a = [s.due_ms("a", T0 + k * HOUR) - (T0 + k * HOUR) for k in range(50)]
    b = [s.due_ms("b", T0 + k * HOUR) - (T0 + k * HOUR) for k in range(50)]
    assert a != b and len(set(a)) > 40
    assert all(0 <= x < 30 * MIN for x in a + b)
    assert a == [s.due_ms("a", T0 + k * HOUR) - (T0 + k * HOUR) for k in range(50)]  # deterministic


def test_jitter_is_capped_by_the_next_slot_and_the_end() -> None:
    # 09:00 and 09:01 every day: the 09:00 slot is due before 09:01 whatever the jitter.
    s = compile_schedule(types_pb2.Schedule(kind=CRON, cron="0,1 9 * * *", jitter_ms=DAY))
    for k in range(30):
        slot = T0 + k * DAY + 9 * HOUR
        assert slot <= s.due_ms("j", slot) < slot + MIN
        assert slot + MIN <= s.due_ms("j", slot + MIN) < slot + DAY
    end = T0 + 3 * HOUR
    s = Schedule(Interval(HOUR), end_ms=end, jitter_ms=HOUR - 1)
    assert all(s.due_ms(n, end) == end for n in ("a", "b", "c"))


SCHEDULES = [
    Schedule(parse_cron("*/7 * * * * *"), jitter_ms=DAY),
    Schedule(parse_cron("0 9,10 * * *", "Europe/Berlin"), jitter_ms=2 * HOUR),
    Schedule(
        parse_cron("*/30 * * * *", "Europe/Berlin", dst_repeat=DstRepeat.TWICE), jitter_ms=HOUR
    ),
    Schedule(parse_cron("10,40 * * * *", "Australia/Lord_Howe"), jitter_ms=20 * MIN),
    Schedule(Interval(90_000, 12_345), jitter_ms=89_999),
    Schedule(Interval(HOUR), start_ms=T0 + 5 * HOUR, end_ms=T0 + 40 * HOUR, jitter_ms=HOUR - 1),
    Schedule(At(T0 + 5 * HOUR), jitter_ms=DAY),
    Schedule(parse_cron("* * * * *")),
]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(SCHEDULES),
    st.sampled_from(["a", "job-1", "nightly.backup"]),
    st.integers(utc("2026-03-27T00:00:00Z"), utc("2026-04-06T00:00:00Z")),
    st.lists(st.integers(0, 3 * HOUR), min_size=1, max_size=30),
    st.integers(1, 5),
)
def test_dispatcher_loop_fires_every_slot_once_in_order(
    sched: Schedule, name: str, created: int, steps: list[int], limit: int
) -> None:
    """Drive the schedule the way the dispatcher does (claim by due time, compare-and-set on
    next_due_ms, a bounded batch per tick): every slot fires exactly once, in order, never
    before its due time, and next_due_ms strictly increases (what apply requires)."""
    next_due = sched.first_due(name, created)
    now, fired = created, []
    for step in steps:
        now += step
        while next_due and next_due <= now:
            first = sched.slot_of_due(name, next_due)
            slots, nxt = sched.slots_due(name, first, now, limit)
            assert slots and slots[0] == first
            assert nxt == 0 or nxt > next_due
            for slot in slots:
                assert sched.due_ms(name, slot) <= now
            fired.extend(slots)
            next_due = nxt
    expected = [slot for slot, due in sched.preview(name, created, len(fired) + 1)]
    assert fired == expected[: len(fired)]
    if next_due:
        assert expected[len(fired)] == sched.slot_of_due(name, next_due)
        assert next_due == sched.due_ms(name, expected[len(fired)]) > now


def test_slot_of_due_without_jitter_is_the_identity() -> None:
    s = compile_schedule(types_pb2.Schedule(kind=CRON, cron="0 * * * *"))
    assert s.slot_of_due("x", T0 + 5) == T0 + 5  # whatever is stored, as before


# ---- preview -------------------------------------------------------------------------------


def test_preview() -> None:
    pb = types_pb2.Schedule(
        kind=CRON, cron="0 9 * * *", timezone="Europe/Berlin", end_ms=utc("2026-01-03T08:00:00Z")
    )
    assert preview(pb, T0, 10) == [
        utc("2026-01-01T08:00:00Z"),
        utc("2026-01-02T08:00:00Z"),
        utc("2026-01-03T08:00:00Z"),
    ]
    assert preview(pb, T0, 2) == preview(compile_schedule(pb), T0, 2)
    assert preview(pb, T0, 0) == []
    jit = types_pb2.Schedule(kind=INTERVAL, every_ms=HOUR, jitter_ms=10 * MIN)
    p = preview(jit, T0, 5, name="report")
    assert p == [compile_schedule(jit).due_ms("report", T0 + k * HOUR) for k in range(1, 6)]
    assert all(0 <= d - (T0 + k * HOUR) < 10 * MIN for k, d in enumerate(p, 1))
    assert p != preview(jit, T0, 5, name="other")


def test_preview_shows_the_dst_policy() -> None:
    berlin = types_pb2.Schedule(kind=CRON, cron="30 2 * * *", timezone="Europe/Berlin")
    after = utc("2026-10-24T12:00:00Z")
    once = preview(berlin, after, 2)
    berlin.dst_repeat = types_pb2.DST_REPEAT_TWICE
    twice = preview(berlin, after, 2)
    assert once == [utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
    assert twice == [utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:30:00Z")]


# ---- validation ----------------------------------------------------------------------------

NOW = T0


@pytest.mark.parametrize(
    "fields,field",
    [
        (dict(kind=INTERVAL, every_ms=999), "schedule.every_ms"),
        (dict(kind=INTERVAL), "schedule.every_ms"),
        (dict(kind=INTERVAL, every_ms=400 * DAY), "schedule.every_ms"),
        (dict(kind=INTERVAL, every_ms=MIN, jitter_ms=MIN), "schedule.jitter_ms"),
        (dict(kind=INTERVAL, every_ms=MIN, anchor_ms=-1), "schedule.anchor_ms"),
        (dict(kind=CRON, cron="* * * * *", jitter_ms=DAY + 1), "schedule.jitter_ms"),
        (dict(kind=CRON, cron="* * * * *", jitter_ms=-1), "schedule.jitter_ms"),
        (dict(kind=CRON, cron="* * * * *", start_ms=T0 + DAY, end_ms=T0 + DAY), "schedule.end_ms"),
        (dict(kind=CRON, cron="* * * * *", end_ms=NOW - 1), "schedule.end_ms"),
        (dict(kind=CRON, cron="* * * * *", start_ms=-5), "schedule.start_ms"),
        (
            dict(
                kind=CRON,
                cron="0 0 29 2 *",
                start_ms=utc("2028-03-01T00:00:00Z"),
                end_ms=utc("2031-12-31T00:00:00Z"),
            ),
            "schedule.end_ms",
        ),
        (dict(kind=CRON, cron="* * * * *", dst_gap=7), "schedule.dst_gap"),
        (dict(kind=CRON, cron="* * * * *", dst_repeat=9), "schedule.dst_repeat"),
        (dict(kind=INTERVAL, every_ms=MIN, dst_gap=types_pb2.DST_GAP_SKIP), "schedule.dst_gap"),
        (
            dict(kind=AT, at_ms=T0 + DAY, dst_repeat=types_pb2.DST_REPEAT_TWICE),
            "schedule.dst_repeat",
        ),
        (dict(kind=CRON, cron="@every 1m", dst_gap=types_pb2.DST_GAP_SKIP), "schedule.dst_gap"),
        (dict(kind=CRON, cron="* * * * *", anchor_ms=0), "schedule.anchor_ms"),
        (dict(kind=CRON, cron="@every 500ms"), "schedule.cron"),
        (dict(kind=CRON, cron="@every often"), "schedule.cron"),
        (dict(kind=CRON, cron="0 0 30 2 *"), "schedule.cron"),
        (dict(kind=CRON, cron="* * * * *", timezone="Mars/Base"), "schedule.timezone"),
        (dict(kind=AT, at_ms=T0 + DAY, end_ms=T0 + HOUR), "schedule.at_ms"),
        (dict(kind=AT, at_ms=NOW - DAY), "schedule.at_ms"),
        (dict(cron="* * * * *"), "schedule.kind"),
    ],
)
def test_invalid_schedule_names_the_field(fields: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        validate.schedule(types_pb2.Schedule(**fields), NOW)
    assert e.value.field == field, e.value.message


def test_validation_writes_the_defaults_out() -> None:
    out = validate.schedule(types_pb2.Schedule(kind=CRON, cron=" 0  9 * * * "), NOW)
    assert (out.cron, out.timezone) == ("0 9 * * *", "UTC")
    assert (out.dst_gap, out.dst_repeat) == (types_pb2.DST_GAP_SHIFT, types_pb2.DST_REPEAT_ONCE)
    out = validate.schedule(
        types_pb2.Schedule(
            kind=CRON,
            cron="@Daily",
            dst_gap=types_pb2.DST_GAP_SKIP,
            dst_repeat=types_pb2.DST_REPEAT_TWICE,
        ),
        NOW,
    )
    assert (out.cron, out.dst_gap, out.dst_repeat) == (
        "@daily",
        types_pb2.DST_GAP_SKIP,
        types_pb2.DST_REPEAT_TWICE,
    )
    out = validate.schedule(types_pb2.Schedule(kind=INTERVAL, every_ms=MIN), NOW)
    assert out.HasField("anchor_ms") and out.anchor_ms == 0
    out = validate.schedule(types_pb2.Schedule(kind=INTERVAL, every_ms=MIN, start_ms=T0 + 7), NOW)
    assert out.anchor_ms == T0 + 7 and out.start_ms == T0 + 7
    out = validate.schedule(types_pb2.Schedule(kind=CRON, cron="@every 90s", jitter_ms=5000), NOW)
    assert (out.kind, out.every_ms, out.anchor_ms, out.jitter_ms, out.cron) == (
        INTERVAL,
        90_000,
        0,
        5000,
        "",
    )
    out = validate.schedule(types_pb2.Schedule(kind=AT, at_ms=T0 + HOUR, jitter_ms=MIN), NOW)
    assert (out.at_ms, out.jitter_ms) == (T0 + HOUR, MIN)


def test_create_and_resume_use_the_jittered_due_time() -> None:
    req = api_pb2.CreateJobRequest(
        name="nightly",
        schedule=types_pb2.Schedule(
            kind=CRON, cron="0 3 * * *", timezone="Europe/Berlin", jitter_ms=HOUR
        ),
    )
    job = validate.create_job(req, NOW).create_job.job
    slot = utc("2026-01-01T02:00:00Z")
    assert job.next_due_ms == compile_schedule(job.schedule).due_ms("nightly", slot)
    assert slot <= job.next_due_ms < slot + HOUR
    assert validate.resume_due(job, slot + 1) == compile_schedule(job.schedule).due_ms(
        "nightly", slot + DAY
    )
    at = validate.create_job(
        api_pb2.CreateJobRequest(
            name="once", schedule=types_pb2.Schedule(kind=AT, at_ms=NOW - 1000)
        ),
        NOW,
    ).create_job.job
    assert at.next_due_ms == NOW - 1000  # a one-shot a little in the past fires at once


def test_existing_records_without_new_fields_still_compile() -> None:
    """A Job stored before these fields existed: UNSPECIFIED policies mean shift + once."""
    s = compile_schedule(types_pb2.Schedule(kind=CRON, cron="30 2 * * *", timezone="Europe/Berlin"))
    assert isinstance(s.trigger, Cron)
    assert (s.trigger.dst_gap, s.trigger.dst_repeat) == (DstGap.SHIFT, DstRepeat.ONCE)
    assert (s.start_ms, s.end_ms, s.jitter_ms) == (0, 0, 0)


# ---- bad input that used to answer INTERNAL (first-hour issue) ------------------------------


def test_payload_depth_counts_brackets_outside_strings_only() -> None:
    assert validate.payload('{"a": "[[[[[[[[[[" }') == '{"a": "[[[[[[[[[[" }'
    deep = "[" * (validate.MAX_PAYLOAD_DEPTH + 1) + "]" * (validate.MAX_PAYLOAD_DEPTH + 1)
    with pytest.raises(InvalidArgument, match=r"^payload: is nested 101 levels deep"):
        validate.payload(deep)
    ok = "[" * validate.MAX_PAYLOAD_DEPTH + "]" * validate.MAX_PAYLOAD_DEPTH
    assert validate.payload(ok) == ok
    assert validate.payload('"\\\\"') == '"\\\\"'  # an escaped backslash ends the string


@pytest.mark.parametrize("text", ['{"a": NaN}', "[Infinity]", "-Infinity"])
def test_payload_is_strict_json(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^payload: is not valid JSON"):
        validate.payload(text)


def test_every_alias_beyond_the_maximum_interval_names_the_field() -> None:
    s = types_pb2.Schedule(kind=CRON, cron="@every 100000000000000000000h")
    with pytest.raises(InvalidArgument, match=r"^schedule\.cron: .* maximum interval"):
        validate.schedule(s, 0)


def test_an_instant_is_between_the_epoch_and_9999() -> None:
    assert validate.instant(1, "at_ms") == 1
    assert validate.instant(validate.MAX_TIME_MS, "at_ms") == validate.MAX_TIME_MS
    for bad in (0, -1, validate.MAX_TIME_MS + 1, 2**63 - 1):
        with pytest.raises(InvalidArgument, match=r"^at_ms: "):
            validate.instant(bad, "at_ms")


def test_bad_utf8_field_names_the_nested_field() -> None:
    from schedd.server.decode import bad_utf8_field

    req = api_pb2.CreateJobRequest(
        name="ok", schedule=types_pb2.Schedule(kind=CRON, cron="* * * * ZZ"), tags={"k": "VV"}
    ).SerializeToString()
    desc = api_pb2.CreateJobRequest.DESCRIPTOR
    assert bad_utf8_field(req, desc) == ""
    assert bad_utf8_field(req.replace(b"ZZ", b"\xc3("), desc) == "schedule.cron"
    assert bad_utf8_field(req.replace(b"VV", b"\xffV"), desc) == "tags.value"
    assert bad_utf8_field(b"\x0a\xff", desc) == ""  # truncated: no field to name
