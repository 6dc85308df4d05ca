"""Cron evaluation against an independent brute-force reference, around real DST transitions.

The reference knows nothing of the implementation: it enumerates every UTC minute, converts it
to the zone with zoneinfo, checks the wall-clock fields against sets built directly by the
expression generator (not by our parser), and applies the DST policies literally:

* a wall time matching in a repeated stretch fires at its first occurrence (fold 0) and, with
  TWICE, also at its second (fold 1);
* at an instant where the clock jumps forward, SHIFT fires once if any skipped wall time
  matches; SKIP fires nothing for them.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from schedd.sched.schedule import Cron, DstGap, DstRepeat

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "UTC",
    "Pacific/Chatham",
    "America/Havana",
]
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


# ---- the reference ------------------------------------------------------------------------


@dataclass(frozen=True)
class RefCron:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool
    dom_last: bool = False
    dow_nth: frozenset[tuple[int, int]] = frozenset()
    dow_last: frozenset[int] = frozenset()

    def day_ok(self, dt: datetime) -> bool:
        last = calendar.monthrange(dt.year, dt.month)[1]
        wd = dt.isoweekday() % 7
        dom = dt.day in self.doms or (self.dom_last and dt.day == last)
        dow = (
            wd in self.dows
            or any(wd == w and (dt.day + 6) // 7 == n for w, n in self.dow_nth)
            or any(wd == w and dt.day > last - 7 for w in self.dow_last)
        )
        return (dom and dow) if (self.dom_star or self.dow_star) else (dom or dow)

    def minute_ok(self, dt: datetime) -> bool:
        return (
            dt.month in self.months
            and self.day_ok(dt)
            and dt.hour in self.hours
            and dt.minute in self.minutes
        )


def _offset(t: datetime, zone: ZoneInfo) -> timedelta:
    off = t.astimezone(zone).utcoffset()
    assert off is not None
    return off


def brute_firings(
    ref: RefCron, tz: str, gap: DstGap, repeat: DstRepeat, lo_ms: int, hi_ms: int
) -> list[int]:
    """Every firing instant in (lo_ms, hi_ms], in order, by enumerating UTC minutes."""
    zone = ZoneInfo(tz)
    out: list[int] = []
    t = datetime.fromtimestamp(lo_ms // 60_000 * 60, tz=UTC)
    end = datetime.fromtimestamp(hi_ms / 1000, tz=UTC)
    prev_off = _offset(t - timedelta(minutes=1), zone)
    secs = sorted(ref.seconds)
    while t <= end:
        local = t.astimezone(zone)
        off = _offset(t, zone)
        fired: list[datetime] = []
        if off > prev_off and gap is DstGap.SHIFT:  # the clock jumped forward at t
            w = (t + prev_off).replace(tzinfo=None)
            while w < (t + off).replace(tzinfo=None):
                if ref.minute_ok(w) and any(s >= w.second for s in ref.seconds):
                    fired.append(t)
                    break
                w = w.replace(second=0) + timedelta(minutes=1)
        if ref.minute_ok(local) and (local.fold == 0 or repeat is DstRepeat.TWICE):
            fired.extend(t + timedelta(seconds=s) for s in secs)
        for f in fired:
            ms = int(f.timestamp() * 1000)
            if lo_ms < ms <= hi_ms and (not out or out[-1] != ms):
                out.append(ms)
        prev_off = off
        t += timedelta(minutes=1)
    return out


@cache
def transitions(tz: str) -> tuple[int, ...]:
    """UTC instants (ms) of the zone's offset changes in 2024-2027."""
    zone = ZoneInfo(tz)
    out = []
    t = datetime(2024, 1, 1, tzinfo=UTC)
    prev = t.astimezone(zone).utcoffset()
    while t.year < 2028:
        nxt = t + timedelta(hours=1)
        if nxt.astimezone(zone).utcoffset() != prev:
            lo, hi = int(t.timestamp()), int(nxt.timestamp())
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, tz=zone).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(hi * 1000)
            prev = nxt.astimezone(zone).utcoffset()
        t = nxt
    return tuple(out)


def test_reference_sees_the_transitions() -> None:
    assert len(transitions("Europe/Berlin")) == 8
    assert len(transitions("Australia/Lord_Howe")) == 8
    assert transitions("Asia/Kolkata") == () and transitions("UTC") == ()


# ---- expression generator: (text, set) built together, independently of the parser -------


@st.composite
def field(
    draw: st.DrawFn,
    lo: int,
    hi: int,
    names: list[str] | None = None,
    star_weight: int = 1,
    dense: bool = False,
) -> tuple[str, frozenset[int], bool]:
    """A cron field and the set it denotes. ``names`` renders some values as names."""
    if draw(st.integers(0, 9)) < star_weight:
        return "*", frozenset(range(lo, hi + 1)), True

    def render(v: int) -> str:
        if names and draw(st.booleans()):
            return names[v - lo] if v - lo < len(names) else str(v)
        return str(v)

    parts, values = [], set()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "range", "step", "range_step", "start_step"]))
        if kind == "value":
            v = draw(st.integers(lo, hi))
            parts.append(render(v))
            values.add(v)
        elif kind == "range":
            a = draw(st.integers(lo, hi))
            b = draw(st.integers(a, min(hi, a + (hi - lo if dense else 6))))
            end = render(b)
            if (lo, hi) == (0, 7) and b == 7 and a > 0 and draw(st.booleans()):
                end = draw(
                    st.sampled_from(["0", "SUN", "sun"])
                )  # Sunday ends a range as 7 (cronie)
            parts.append(f"{render(a)}-{end}")
            values.update(range(a, b + 1))
        elif kind == "step":
            k = draw(st.integers(1, max(1, (hi - lo) // 2)))
            parts.append(f"*/{k}")
            values.update(range(lo, hi + 1, k))
        elif kind == "range_step":
            a = draw(st.integers(lo, hi))
            b = draw(st.integers(a, hi))
            k = draw(st.integers(1, 10))
            parts.append(f"{render(a)}-{render(b)}/{k}")
            values.update(range(a, b + 1, k))
        else:  # "a/k" runs to the field's end; for day-of-week that is 6 (Saturday), as croniter,
            # and a start of 7 is Sunday, the week's first day: 7/2 = 0/2
            top = 6 if (lo, hi) == (0, 7) else hi
            a = draw(st.integers(lo, hi))
            k = draw(st.integers(1, 10))
            parts.append(f"{a}/{k}")
            values.update(range(a % 7 if (lo, hi) == (0, 7) else a, top + 1, k))
    # cronie's DOM_STAR/DOW_STAR: a field *starting* with "*" (also "*/k", "*,5") ANDs the day fields
    return ",".join(parts), frozenset(values), parts[0].startswith("*")


@st.composite
def cron_case(draw: st.DrawFn, with_seconds: bool) -> tuple[str, RefCron]:
    sec = draw(field(0, 59, star_weight=0)) if with_seconds else ("0", frozenset({0}), False)
    minute = draw(field(0, 59, star_weight=2 + 4 * with_seconds, dense=True))
    hour = draw(field(0, 23, star_weight=3 + 5 * with_seconds, dense=True))
    dom = draw(field(1, 31, star_weight=8, dense=True))
    month = draw(field(1, 12, MONTH_NAMES, star_weight=8, dense=True))
    dow_text, dow_set, dow_star = draw(field(0, 7, DAY_NAMES + ["7"], star_weight=7, dense=True))
    dow_set = frozenset(v % 7 for v in dow_set)
    extra = draw(st.sampled_from(["", "", "", "", "L", "nth", "last"]))
    dom_text, dom_set, dom_star = dom
    nth: frozenset[tuple[int, int]] = frozenset()
    last: frozenset[int] = frozenset()
    dom_last = False
    if extra == "L":
        dom_text, dom_set, dom_star, dom_last = "L", frozenset(), False, True
    elif extra == "nth":
        w, n = draw(st.integers(0, 6)), draw(st.integers(1, 5))
        dow_text, dow_set, dow_star, nth = f"{w}#{n}", frozenset(), False, frozenset({(w, n)})
    elif extra == "last":
        w = draw(st.integers(0, 6))
        dow_text, dow_set, dow_star, last = f"{DAY_NAMES[w]}L", frozenset(), False, frozenset({w})
    fields = [minute[0], hour[0], dom_text, month[0], dow_text]
    if with_seconds:
        fields.insert(0, sec[0])
    ref = RefCron(
        sec[1],
        minute[1],
        hour[1],
        dom_set,
        month[1],
        dow_set,
        dom_star,
        dow_star,
        dom_last,
        nth,
        last,
    )
    return " ".join(fields), ref


@st.composite
def instant(draw: st.DrawFn, tz: str, span_ms: int) -> int:
    """Mostly close to a real transition of 2024-2027, else anywhere in those years."""
    ts = transitions(tz)
    if ts and draw(st.integers(0, 9)) < 8:
        t = draw(st.sampled_from(ts))
        if draw(st.integers(0, 3)) == 3:
            return t + draw(st.integers(0, 2 * 3_600_000))  # starts within a repeated hour
        return t - draw(st.integers(1, span_ms))  # the window holds the transition
    return draw(st.integers(1_704_067_200_000, 1_830_297_600_000))  # 2024 .. 2027


def impl_firings(cron: Cron, lo_ms: int, hi_ms: int, cap: int) -> list[int]:
    out: list[int] = []
    t: int | None = lo_ms
    while len(out) < cap:
        t = cron.next_after(t)  # type: ignore[arg-type]
        if t is None or t > hi_ms:
            break
        assert not out or t > out[-1]
        out.append(t)
    return out


POLICIES = st.tuples(st.sampled_from(list(DstGap)), st.sampled_from(list(DstRepeat)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), cron_case(with_seconds=False), st.sampled_from(ZONES), POLICIES)
def test_five_field_cron_matches_brute_force(
    data: st.DataObject, case: tuple[str, RefCron], tz: str, policy: tuple[DstGap, DstRepeat]
) -> None:
    expr, ref = case
    span = 30 * 3_600_000
    after = data.draw(instant(tz, span)) + data.draw(st.integers(0, 999))
    cron = Cron(expr, tz, *policy)
    want = brute_firings(ref, tz, *policy, after, after + span)
    got = impl_firings(cron, after, after + span, cap=len(want) + 1)
    assert got == want, (expr, tz, policy, after)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), cron_case(with_seconds=True), st.sampled_from(ZONES), POLICIES)
def test_six_field_cron_matches_brute_force(
    data: st.DataObject, case: tuple[str, RefCron], tz: str, policy: tuple[DstGap, DstRepeat]
) -> None:
    expr, ref = case
    span = 2 * 3_600_000
    after = data.draw(instant(tz, span)) + data.draw(st.integers(0, 999))
    cron = Cron(expr, tz, *policy)
    want = brute_firings(ref, tz, *policy, after, after + span)
    if len(want) > 2000:
        want = want[:2000]
    got = impl_firings(cron, after, after + span, cap=len(want) + (len(want) < 2000))
    assert got == want, (expr, tz, policy, after)


@settings(max_examples=60, deadline=None)
@given(
    cron_case(with_seconds=False),
    st.sampled_from(ZONES),
    POLICIES,
    st.integers(1_704_067_200_000, 1_830_297_600_000),
)
def test_sparse_crons_agree_over_months(
    case: tuple[str, RefCron], tz: str, policy: tuple[DstGap, DstRepeat], after: int
) -> None:
    """Day-level fields (L, #, day-of-week/month OR rule, months) over a long range, checked
    at day granularity: the first firing's local date and the count per day agree."""
    expr, ref = case
    cron = Cron(expr, tz, *policy)
    got = cron.next_after(after)
    zone = ZoneInfo(tz)
    start = datetime.fromtimestamp(after / 1000, tz=zone).date()
    for i in range(400):  # find the first local date after `after` whose day fields match
        d = start + timedelta(days=i)
        if d.month in ref.months and ref.day_ok(datetime(d.year, d.month, d.day)):
            lo = (
                int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp() * 1000)
                - 4 * 3_600_000
            )
            want = brute_firings(ref, tz, *policy, max(after, lo), max(after, lo) + 30 * 3_600_000)
            if want:
                assert got == want[0], (expr, tz, after)
                return
    assert got is None or got > after + 390 * 86_400_000


@settings(max_examples=200, deadline=None)
@given(
    afters=st.lists(
        st.integers(1_500_000_000_000, 1_900_000_000_000), min_size=1, max_size=Cron.MEMO_SIZE * 2
    ),
    expr=st.sampled_from(["* * * * * *", "0 3 1 1 *", "30 2 * * *", "*/7 * * * *", "0 0 29 2 *"]),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
)
def test_the_next_after_memo_never_changes_an_answer(afters: list[int], expr: str, tz: str) -> None:
    """Cron.next_after remembers answers by whole second; asked again (the same instant, another
    millisecond of the same second, or after the memo started over) it answers what a fresh
    expression does."""
    shared = Cron(expr, tz)
    for after in afters + afters + [a + 999 - a % 1000 for a in afters]:
        assert shared.next_after(after) == Cron(expr, tz).next_after(after)
    assert len(shared._memo) <= Cron.MEMO_SIZE


def test_the_next_after_memo_is_used() -> None:
    """Negative control for the property above: the second answer comes from the memo."""
    c = Cron("0 3 1 1 *", "Europe/Berlin")
    first = c.next_after(1_800_000_000_123)
    c._memo[1_800_000_000] = 42  # what only the memo could answer
    assert c.next_after(1_800_000_000_999) == 42 and first != 42
