"""Schedule math: pure functions from (schedule, instant) to the next scheduled instants.

Runs on the leader (and in validation), never inside apply: the leader carries every computed
due time in the command, so replicas never depend on their own time-zone database. No I/O but
zoneinfo, no clock, no randomness; every time is an integer count of milliseconds since the
Unix epoch. The user guide is ``docs/schedules.md``.

Vocabulary:

* a **trigger** (:class:`Cron`, :class:`Interval`, :class:`At`) says which instants are
  scheduled; ``next_after(t)`` is the first one strictly after ``t`` (None: never again);
* a **slot** is one such instant. It is the run's identity (``Run.scheduled_ms``, the run id,
  ``ctx.scheduled_at``), whatever jitter does;
* a :class:`Schedule` is a trigger plus bounds (``start_ms`` <= slot <= ``end_ms``) and jitter;
* a slot's **due** time is when it fires: ``slot + jitter_offset(job name, slot, window)``, where
  the window is ``jitter_ms`` capped so that a slot is always due before the next slot (and not
  after ``end_ms``). Due times therefore increase strictly with slots: the due index, the
  dispatcher's compare-and-set on ``Job.next_due_ms`` and misfire handling need no change, and
  every leader and ``preview`` compute the same instants.

Cron is evaluated by walking local wall-clock time in the job's IANA zone with our own field
matcher (croniter is not used: its DST behaviour is fixed, ours is a per-job policy). The syntax
follows cronie (the Linux ``cron(8)``) where cronie defines it: the day-of-month/day-of-week rule
(a day field *starting* with ``*`` makes the two ANDed), Sunday as the upper end of a weekday
range (``FRI-SUN``), fields separated by spaces and tabs only, ASCII digits only. DST:

* a local time that does not exist (spring forward) fires at the first instant after the gap
  (``DstGap.SHIFT``, the default; all missing times of one gap collapse into that one firing)
  or not at all (``DstGap.SKIP``);
* a local time that happens twice (fall back) fires at its first occurrence only
  (``DstRepeat.ONCE``, the default) or at both (``DstRepeat.TWICE``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
import unicodedata
from abc import ABC, abstractmethod
from bisect import bisect_left
from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schedd.errors import InvalidArgument
from schedd.pb import types_pb2

MAX_CRON_LEN = 200
MIN_INTERVAL_MS = 1_000
MAX_INTERVAL_MS = 366 * 86_400_000
MAX_JITTER_MS = 86_400_000  # for cron and one-shot schedules; an interval's is below every_ms
MAX_PREVIEW = 1_000

_DAY_S = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MIN_S = -2_208_988_800  # 1900-01-01T00:00:00Z: earlier `after` values are clamped to it
_MAX_S = 253_370_764_800  # 9999-01-01T00:00:00Z: nothing is scheduled after it
_SEARCH_YEARS = 401  # the Gregorian calendar repeats every 400 years
# The lengths a month can have. Over any 400 consecutive years every month starts on every
# weekday with each of its lengths (February: 28 and 29), which makes the static "can it ever
# fire?" check exact (tests/unit/test_schedule_edges.py checks the claim).
_MONTH_LENGTHS = {m: ((28, 29) if m == 2 else (monthrange(2001, m)[1],)) for m in range(1, 13)}
_MONTH_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


class DstGap(enum.Enum):
    """What a cron does with a local time that does not exist (the clock jumps over it)."""

    SHIFT = "shift"  # fire at the first instant after the gap (once per gap)
    SKIP = "skip"  # do not fire


class DstRepeat(enum.Enum):
    """What a cron does with a local time that happens twice (the clock falls back)."""

    ONCE = "once"  # fire at the first occurrence only
    TWICE = "twice"  # fire at both occurrences


_GAP_FROM_PB: dict[int, DstGap] = {
    types_pb2.DST_GAP_UNSPECIFIED: DstGap.SHIFT,
    types_pb2.DST_GAP_SHIFT: DstGap.SHIFT,
    types_pb2.DST_GAP_SKIP: DstGap.SKIP,
}
_REPEAT_FROM_PB: dict[int, DstRepeat] = {
    types_pb2.DST_REPEAT_UNSPECIFIED: DstRepeat.ONCE,
    types_pb2.DST_REPEAT_ONCE: DstRepeat.ONCE,
    types_pb2.DST_REPEAT_TWICE: DstRepeat.TWICE,
}
GAP_TO_PB = {DstGap.SHIFT: types_pb2.DST_GAP_SHIFT, DstGap.SKIP: types_pb2.DST_GAP_SKIP}
REPEAT_TO_PB = {
    DstRepeat.ONCE: types_pb2.DST_REPEAT_ONCE,
    DstRepeat.TWICE: types_pb2.DST_REPEAT_TWICE,
}


def dst_gap_from_pb(value: int, field_name: str = "schedule.dst_gap") -> DstGap:
    try:
        return _GAP_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(field_name, f"unknown value {value}; use SHIFT or SKIP") from None


def dst_repeat_from_pb(value: int, field_name: str = "schedule.dst_repeat") -> DstRepeat:
    try:
        return _REPEAT_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(field_name, f"unknown value {value}; use ONCE or TWICE") from None


# ---- triggers -----------------------------------------------------------------------------


class Trigger(ABC):
    """Which instants are scheduled. Pure and deterministic."""

    @abstractmethod
    def next_after(self, after_ms: int) -> int | None:
        """The first scheduled instant strictly after ``after_ms``; None if there is none."""


@dataclass(frozen=True)
class At(Trigger):
    """One shot at ``at_ms``."""

    at_ms: int

    def next_after(self, after_ms: int) -> int | None:
        return self.at_ms if self.at_ms > after_ms else None


@dataclass(frozen=True)
class Interval(Trigger):
    """Every ``every_ms``, at ``anchor_ms + k * every_ms`` for every integer k (DST-blind)."""

    every_ms: int
    anchor_ms: int = 0

    def __post_init__(self) -> None:
        if self.every_ms <= 0:
            raise ValueError("every_ms must be positive")

    def next_after(self, after_ms: int) -> int:
        return self.anchor_ms + ((after_ms - self.anchor_ms) // self.every_ms + 1) * self.every_ms


# ---- cron fields ----------------------------------------------------------------------------

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    n: i + 1
    for i, n in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAYS = {n: i for i, n in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


@dataclass(frozen=True)
class _Spec:
    name: str
    lo: int
    hi: int
    names: dict[str, int]


_SECOND = _Spec("second", 0, 59, {})
_MINUTE = _Spec("minute", 0, 59, {})
_HOUR = _Spec("hour", 0, 23, {})
_DOM = _Spec("day-of-month", 1, 31, {})
_MONTH = _Spec("month", 1, 12, _MONTHS)
_DOW = _Spec("day-of-week", 0, 7, _DAYS)  # 0 and 7 are Sunday


@dataclass(frozen=True)
class _Fields:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    doms: frozenset[int]
    months: tuple[int, ...]
    dows: frozenset[int]  # 0 = Sunday
    dom_last: bool  # "L": the last day of the month
    dow_nth: frozenset[tuple[int, int]]  # "5#3": (weekday, n) the n-th such weekday of the month
    dow_last: frozenset[int]  # "5L": the last such weekday of the month
    dom_star: bool  # the field starts with "*" (or is "?"): see day_ok
    dow_star: bool

    def day_ok(self, d: int, wd: int, last: int) -> bool:
        """Whether day ``d`` of a month of ``last`` days, a weekday ``wd`` (0 = Sunday), matches
        the day fields. cronie's rule (from Vixie cron): if either day field starts with ``*``
        (``*``, ``*/2``, ``*,5``) or is ``?``, a day must match both fields; else either.
        ``last`` may be 0 when neither field uses ``L``."""
        dom_ok = d in self.doms or (self.dom_last and d == last)
        dow_ok = (
            wd in self.dows
            or (wd, (d - 1) // 7 + 1) in self.dow_nth
            or (wd in self.dow_last and d + 7 > last)
        )
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def day_matches(self, y: int, m: int, d: int, wd: int) -> bool:
        """:meth:`day_ok` for the date ``y-m-d`` (weekday ``wd``, 0 = Sunday)."""
        return self.day_ok(d, wd, monthrange(y, m)[1] if (self.dom_last or self.dow_last) else 0)

    def can_fire(self) -> bool:
        """Whether any date matches the month and day fields: exact, without walking years.

        A date matches by its month length, its weekday and its day number only, and every
        (month length, weekday of the 1st) pair of the months in the month field occurs in any
        400 consecutive years (``_MONTH_LENGTHS``). At most 4 lengths x 7 weekdays x 31 days."""
        lengths = sorted({n for m in self.months for n in _MONTH_LENGTHS[m]}, reverse=True)
        return any(
            self.day_ok(d, (first + d - 1) % 7, n)
            for n in lengths
            for first in range(7)
            for d in range(1, n + 1)
        )

    def why_never(self) -> str:
        """Why :meth:`can_fire` is false, in words, for an error message."""
        months = (
            ""
            if len(self.months) == 12
            else f" in {_join([_MONTH_NAMES[m - 1] for m in self.months])}"
        )
        if self.dows >= frozenset(range(7)):
            # Every weekday matches, so only the day numbers can be at fault (an L would match):
            # each is past the end of every month listed.
            return f"there is no day {_join(sorted(self.doms))}{months}"
        # Else the fields are ANDed (ORed, the weekdays alone would fire), and a '?' field
        # matches every day, so a field that starts with '*' makes them so.
        which = (
            "both day fields start"
            if self.dom_star and self.dow_star
            else f"the {'day-of-month' if self.dom_star else 'day-of-week'} field starts"
        )
        return (
            f"no day{months} matches both the day-of-month and the day-of-week field (a day "
            f"must match both because {which} with '*')"
        )

    def next_time_of_day(self, tod: int) -> int | None:
        """The first matching second of the day at or after ``tod`` (seconds since midnight)."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        h, rest = divmod(tod, 3600)
        m, s = divmod(rest, 60)
        i = bisect_left(hours, h)
        if i == len(hours):
            return None
        if hours[i] > h:
            return hours[i] * 3600 + minutes[0] * 60 + seconds[0]
        j = bisect_left(minutes, m)
        if j < len(minutes):
            if minutes[j] > m:
                return h * 3600 + minutes[j] * 60 + seconds[0]
            k = bisect_left(seconds, s)
            if k < len(seconds):
                return h * 3600 + m * 60 + seconds[k]
            if j + 1 < len(minutes):
                return h * 3600 + minutes[j + 1] * 60 + seconds[0]
        if i + 1 < len(hours):
            return hours[i + 1] * 3600 + minutes[0] * 60 + seconds[0]
        return None


def _join(items: list[int] | list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _is_number(text: str) -> bool:
    """ASCII digits only. ``str.isdigit()`` alone is also true for '¹' (which ``int()`` then
    rejects with a bare ValueError) and for '٣', '５' and '𝟓' (which ``int()`` reads as 3 and 5)."""
    return text.isascii() and text.isdigit()


def _digit_hint(text: str) -> str:
    """A hint for an error about ``text`` when it holds a non-ASCII digit."""
    if any(c.isdigit() and not c.isascii() for c in text):
        return " (write numbers with the ASCII digits 0-9)"
    return ""


def _value(text: str, spec: _Spec, err: str) -> int:
    if _is_number(text):
        v = int(text)
    elif text.upper() in spec.names:
        v = spec.names[text.upper()]
    else:
        raise InvalidArgument(
            err,
            f"{spec.name} field: {text!r} is not a number"
            + (" or a name" if spec.names else "")
            + _digit_hint(text),
        )
    if not spec.lo <= v <= spec.hi:
        raise InvalidArgument(err, f"{spec.name} field: {v} is out of range {spec.lo}-{spec.hi}")
    return v


_NTH_RE = re.compile(r"(\w+)#(\w+)", re.ASCII)


def _parse_field(text: str, spec: _Spec, err: str) -> tuple[set[int], bool, set[str]]:
    """-> (values, star, special items). Supports * ? n a-b */s a-b/s a/s, lists, names, and
    the special items L (day of month), D#n and DL (day of week). ``star`` is cronie's DOM_STAR
    and DOW_STAR flag: the field starts with ``*`` (or is ``?``); see :meth:`_Fields.day_ok`."""
    if text == "*" or (text == "?" and spec in (_DOM, _DOW)):
        hi = 6 if spec is _DOW else spec.hi
        return set(range(spec.lo, hi + 1)), True, set()
    values: set[int] = set()
    special: set[str] = set()
    for part in text.split(","):
        if not part:
            raise InvalidArgument(err, f"{spec.name} field: empty item in {text!r}")
        up = part.upper()
        if spec is _DOM and up == "L":
            special.add("L")
            continue
        if spec is _DOW and (mt := _NTH_RE.fullmatch(up)):
            if not _is_number(mt.group(2)) or not 1 <= int(mt.group(2)) <= 5:
                raise InvalidArgument(
                    err,
                    f"{spec.name} field: {part!r}: the week after # must be "
                    f"1-5{_digit_hint(mt.group(2))}",
                )
            special.add(f"{_value(mt.group(1), spec, err) % 7}#{mt.group(2)}")
            continue
        if spec is _DOW and len(up) > 1 and up.endswith("L"):
            special.add(f"{_value(up[:-1], spec, err) % 7}L")
            continue
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not _is_number(step_text) or int(step_text) < 1:
                raise InvalidArgument(
                    err,
                    f"{spec.name} field: step in {part!r} must be a positive "
                    f"number{_digit_hint(step_text)}",
                )
            step = int(step_text)
        if base == "*":
            a, b = spec.lo, (6 if spec is _DOW else spec.hi)
        elif "-" in base:
            first, _, last = base.partition("-")
            a, b = _value(first, spec, err), _value(last, spec, err)
            if spec is _DOW and b == 0 < a:
                b = 7  # cronie reads Sunday at the end of a weekday range as 7: FRI-SUN = 5-7
            if a > b:
                raise InvalidArgument(err, f"{spec.name} field: range {part!r} runs backwards")
        else:
            a = _value(base, spec, err)
            if slash and spec is _DOW:
                a %= 7  # 7/2 = 0/2: Sunday starts the week; from 7 to Saturday would be empty
            b = (6 if spec is _DOW else spec.hi) if slash else a
        values.update(range(a, b + 1, step))
    if spec is _DOW:
        values = {v % 7 for v in values}
    return values, text.startswith("*"), special


_BAD_BLANK = re.compile(r"[^\S \t]")  # whitespace other than space and tab


@functools.lru_cache(maxsize=4096)
def collapse_blanks(text: str, field_name: str = "schedule.cron") -> str:
    """The canonical spacing of a cron (or ``@every``) text: runs of spaces and tabs become one
    space, none at either end. Raises InvalidArgument naming ``field_name`` for any other
    whitespace (a newline, U+00A0 NO-BREAK SPACE, U+3000 IDEOGRAPHIC SPACE, ...): cronie
    separates fields by spaces and tabs only, and a look-alike blank is more likely a paste
    accident than an intended separator. Cached (a valid text only: an error is raised
    again each time): a bulk create's jobs mostly share a few expressions, each collapsed
    several times on the way."""
    if bad := _BAD_BLANK.search(text):
        ch = bad.group()
        name = unicodedata.name(ch, "")
        raise InvalidArgument(
            field_name,
            f"{text!r}: U+{ord(ch):04X}{' ' + name if name else ''} is not a field "
            "separator; separate fields with spaces or tabs",
        )
    return " ".join(text.split())


def _parse_fields(expr: str, err: str) -> _Fields:
    parts = collapse_blanks(expr, err).split()
    if len(parts) not in (5, 6):
        raise InvalidArgument(err, f"has {len(parts)} fields; want 5 or 6")
    if len(parts) == 5:
        parts = ["0", *parts]
    sec, minute, hour, dom, month, dow = parts
    seconds, _, _ = _parse_field(sec, _SECOND, err)
    minutes, _, _ = _parse_field(minute, _MINUTE, err)
    hours, _, _ = _parse_field(hour, _HOUR, err)
    doms, dom_star, dom_special = _parse_field(dom, _DOM, err)
    months, _, _ = _parse_field(month, _MONTH, err)
    dows, dow_star, dow_special = _parse_field(dow, _DOW, err)
    nth = frozenset((int(s[0]), int(s[2])) for s in dow_special if "#" in s)
    last = frozenset(int(s[0]) for s in dow_special if s.endswith("L"))
    return _Fields(
        tuple(sorted(seconds)),
        tuple(sorted(minutes)),
        tuple(sorted(hours)),
        frozenset(doms),
        tuple(sorted(months)),
        frozenset(dows),
        "L" in dom_special,
        nth,
        last,
        dom_star,
        dow_star,
    )


def normalize_cron(expr: str, field_name: str = "schedule.cron") -> str:
    """Collapse blanks (:func:`collapse_blanks`), lower-case a macro, check the field count.
    Raises InvalidArgument naming ``field_name``."""
    expr = collapse_blanks(expr or "", field_name)
    if not expr:
        raise InvalidArgument(field_name, "is required")
    if len(expr) > MAX_CRON_LEN:
        raise InvalidArgument(field_name, f"longer than {MAX_CRON_LEN} characters")
    if expr.startswith("@"):
        macro = expr.lower()
        if macro.startswith("@every"):
            raise InvalidArgument(
                field_name, f"{expr!r} is an interval; use kind INTERVAL with every_ms"
            )
        if macro not in MACROS:
            raise InvalidArgument(
                field_name, f"unknown macro {expr!r}; use one of {', '.join(MACROS)}"
            )
        return macro
    n = len(expr.split())
    if n not in (5, 6):
        raise InvalidArgument(
            field_name,
            f"{expr!r} has {n} fields; want 5 (min hour dom month dow) or 6 (seconds first)",
        )
    return expr


# ---- cron trigger ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron(Trigger):
    """A cron expression evaluated on the wall clock of an IANA zone, with explicit DST policies.

    ``expr`` is 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a
    macro. Build it with :func:`parse_cron` to get errors that name the request field.
    """

    expr: str
    tz: str = "UTC"
    dst_gap: DstGap = DstGap.SHIFT
    dst_repeat: DstRepeat = DstRepeat.ONCE
    _fields: _Fields = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _fires: bool = field(init=False, repr=False, compare=False)
    # next_after results by whole second (the answer depends on nothing else): compiled
    # schedules are shared (a cache in the dispatcher and in validation), and many jobs with
    # one expression ask for the slot after the same instant: a bulk create ("first slot after
    # now"), or a tick firing them all ("next slot after this one").
    _memo: dict[int, int | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expr = MACROS.get(self.expr, self.expr)
        fields = _parse_fields(expr, "schedule.cron")
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_zone", ZoneInfo(self.tz))
        object.__setattr__(self, "_fires", fields.can_fire())
        object.__setattr__(self, "_memo", {})

    @property
    def fires(self) -> bool:
        """Whether any date at all matches the fields (``0 0 30 2 *``: no). Exact, and computed
        without walking the calendar; when false, :meth:`next_after` is None at once."""
        return self._fires

    def why_never(self) -> str:
        """Why :attr:`fires` is false, in words, for an error message."""
        return self._fields.why_never()

    # -- zone helpers (all in whole seconds; "wall" = local wall-clock seconds since 1970-01-01)

    def _offset_at(self, t: int) -> tuple[int, int]:
        """(UTC offset, fold) of the local time at instant ``t``."""
        dt = datetime.fromtimestamp(t, tz=self._zone)
        return int(dt.utcoffset().total_seconds()), dt.fold  # type: ignore[union-attr]

    def _offsets(self, wall: int) -> tuple[int, int]:
        """Offsets of a wall time read with fold=0 and fold=1. Equal: the time exists once;
        first < second: it is in a gap; first > second: it happens twice (PEP 495)."""
        naive = (_EPOCH_NAIVE + timedelta(seconds=wall)).replace(tzinfo=self._zone)
        u0 = naive.utcoffset()
        u1 = naive.replace(fold=1).utcoffset()
        return int(u0.total_seconds()), int(u1.total_seconds())  # type: ignore[union-attr]

    def _transition(self, lo: int, hi: int) -> int:
        """The first instant in (lo, hi] with the offset of ``hi`` (one transition in between)."""
        target = self._offset_at(hi)[0]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._offset_at(mid)[0] == target:
                hi = mid
            else:
                lo = mid
        return hi

    def _next_wall(self, start: int, limit: int | None = None) -> int | None:
        """The first wall time >= ``start`` (and < ``limit``) that the fields match. Called only
        when some date matches (``fires``), so the walk ends early: every matching calendar
        shape recurs well within ``_SEARCH_YEARS`` (the rarest, a leap February starting on a
        given weekday, within 40 years)."""
        f = self._fields
        day, tod = divmod(start, _DAY_S)
        d = date.fromordinal(day + _EPOCH_ORDINAL)
        stop_year = min(d.year + _SEARCH_YEARS, 9998)
        while True:
            if limit is not None and day * _DAY_S >= limit:
                return None
            if d.year > stop_year:
                return None
            if d.month not in f.months:
                i = bisect_left(f.months, d.month)
                y, m = (d.year, f.months[i]) if i < len(f.months) else (d.year + 1, f.months[0])
                if y > stop_year:
                    return None
                d = date(y, m, 1)
                day, tod = d.toordinal() - _EPOCH_ORDINAL, 0
                continue
            if f.day_matches(d.year, d.month, d.day, (d.weekday() + 1) % 7):
                t = f.next_time_of_day(tod)
                if t is not None:
                    wall = day * _DAY_S + t
                    return wall if limit is None or wall < limit else None
            day, tod = day + 1, 0
            d = d + timedelta(days=1)

    #: at most this many remembered answers per expression (then the memo starts over)
    MEMO_SIZE = 64

    def next_after(self, after_ms: int) -> int | None:
        after = max(after_ms // 1000, _MIN_S - 1)
        memo = self._memo
        try:
            return memo[after]
        except KeyError:
            pass
        slot = self._next_after_s(after)
        if len(memo) >= self.MEMO_SIZE:
            memo.clear()
        memo[after] = slot
        return slot

    def _next_after_s(self, after: int) -> int | None:
        """The first slot (ms) strictly after the whole second ``after``."""
        if after >= _MAX_S or not self._fires:
            return None
        off, fold = self._offset_at(after)
        local = after + off
        start = local + 1  # slots are whole seconds, so "wall > local" for any milliseconds
        u0, u1 = self._offsets(local)
        if u0 > u1:
            # `after` is inside a repeated stretch [fs, fe) of wall time: first pass with offset
            # u0 during [T - d, T), second pass with offset u1 during [T, T + d).
            d = u0 - u1
            if fold == 0:
                t = self._transition(after, after + d)
                fs, fe = t + u1, t + u0
                wall = self._next_wall(start, fe)
                if wall is not None:
                    return (wall - u0) * 1000
                if self.dst_repeat is DstRepeat.TWICE:
                    wall = self._next_wall(fs, fe)
                    if wall is not None:
                        return (wall - u1) * 1000
            else:
                t = self._transition(after - d, after)
                fe = t + u0
                if self.dst_repeat is DstRepeat.TWICE:
                    wall = self._next_wall(start, fe)
                    if wall is not None:
                        return (wall - u1) * 1000
            start = max(start, fe)
        while True:
            wall = self._next_wall(start)
            if wall is None:
                return None
            u0, u1 = self._offsets(wall)
            if u0 >= u1:  # exists once, or the first occurrence of a repeated time
                return (wall - u0) * 1000
            # In a gap [T + u0, T + u1): the clock jumped from T + u0 to T + u1 at instant T.
            t = self._transition(wall - u1, wall - u0)
            if self.dst_gap is DstGap.SHIFT:
                return t * 1000
            start = t + u1


def parse_zone(tz: str, field_name: str = "schedule.timezone") -> str:
    tz = tz or "UTC"
    if len(tz) > 64 or tz.startswith(("/", ".")) or ".." in tz:
        raise InvalidArgument(field_name, f"unknown time zone {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(
            field_name, f"unknown time zone {tz!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return tz


@functools.lru_cache(maxsize=4096)
def parse_cron(
    expr: str,
    tz: str = "UTC",
    field: str = "schedule.cron",
    dst_gap: DstGap = DstGap.SHIFT,
    dst_repeat: DstRepeat = DstRepeat.ONCE,
) -> Cron:
    """Validate a cron expression and zone; raise InvalidArgument naming the field. Cached
    (a valid expression only: an error is raised again each time; a Cron is immutable, so the
    callers share it): validating a job parses its expression twice, and a bulk create's jobs
    mostly share a few."""
    expr = normalize_cron(expr, field)
    zone = parse_zone(tz)
    cron = _checked_cron(expr, zone, dst_gap, dst_repeat)
    if isinstance(cron, str):
        raise InvalidArgument(field, cron)
    return cron


@functools.lru_cache(maxsize=4096)
def _checked_cron(expr: str, zone: str, dst_gap: DstGap, dst_repeat: DstRepeat) -> Cron | str:
    """The Cron of a normalised expression and zone, or the problem with it. Cached: a create
    compiles its schedule three times, and the jobs of a bulk create often share one (the
    compilation was most of the leader's CPU per job); a Cron is immutable, so sharing is safe."""
    try:
        cron = Cron(expr, zone, dst_gap, dst_repeat)
    except InvalidArgument as e:
        return f"{expr!r}: {e.message.split(': ', 1)[1]}"
    # The static check decides without walking the calendar (walking 401 years of days to find
    # nothing cost 12-100 ms of CPU per request); the walk from 1970 stays as the net behind it
    # and ends early for anything that fires.
    if not cron.fires:
        return f"cron expression {expr!r} never fires: {cron.why_never()}"
    if cron.next_after(0) is None:
        return f"cron expression {expr!r} never fires"
    return cron


# ---- durations ------------------------------------------------------------------------------

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_RE = re.compile(
    r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII
)  # \d alone also matches '٣' and '５'


def parse_duration(text: str, field_name: str) -> int:
    """ "90s", "1h30m", "250ms", "2d", "2.5s" -> milliseconds; ASCII digits only; a fraction is
    allowed where it makes whole milliseconds. The one duration syntax of schedd (job fields,
    daemon flags, the CLI). Raises InvalidArgument naming ``field_name``."""
    text = (text or "").strip().lower()
    if not text or _DURATION_RE.sub("", text):
        raise InvalidArgument(
            field_name,
            f"{text!r} is not a duration such as 90s, 15m, 1h30m or 2d" + _digit_hint(text),
        )
    total = sum(Fraction(n) * _UNITS_MS[u] for n, u in _DURATION_RE.findall(text))
    if total.denominator != 1:
        raise InvalidArgument(field_name, f"{text!r} is not a whole number of milliseconds")
    return int(total)


def format_duration(ms: int) -> str:
    """Inverse of :func:`parse_duration` (largest units first): 5400000 -> "1h30m"."""
    if ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        n, ms = divmod(ms, _UNITS_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


# ---- jitter and the compiled schedule -----------------------------------------------------


def jitter_offset(name: str, slot_ms: int, window_ms: int) -> int:
    """A deterministic offset in [0, window_ms): sha256 of (job name, slot), mod the window.
    Same on every node and every Python process (``hash()`` is salted per process)."""
    if window_ms <= 1:
        return 0
    digest = hashlib.sha256(f"{name}\x00{slot_ms}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % window_ms


@dataclass(frozen=True)
class Schedule:
    """A trigger with bounds and jitter; what :func:`compile_schedule` returns.

    ``next_after`` gives slots (the runs' identities) within ``[start_ms, end_ms]``;
    ``due_ms`` gives when a slot fires. See the module docstring.
    """

    trigger: Trigger
    start_ms: int = 0  # 0: no lower bound
    end_ms: int = 0  # 0: no upper bound (inclusive otherwise)
    jitter_ms: int = 0

    def next_after(self, after_ms: int) -> int | None:
        """The first slot strictly after ``after_ms`` within the bounds; None: never again."""
        if self.start_ms:
            after_ms = max(after_ms, self.start_ms - 1)
        slot = self.trigger.next_after(after_ms)
        if slot is None or (self.end_ms and slot > self.end_ms):
            return None
        return slot

    def jitter_window(self, slot_ms: int, next_slot_ms: int | None) -> int:
        """``jitter_ms``, capped so the slot is due before the next slot and by ``end_ms``."""
        window = self.jitter_ms
        if next_slot_ms is not None:
            window = min(window, next_slot_ms - slot_ms)
        if self.end_ms:
            window = min(window, self.end_ms - slot_ms + 1)
        return window

    def due_ms(self, name: str, slot_ms: int) -> int:
        """When ``slot_ms`` fires for job ``name``: the slot plus its jitter offset."""
        if self.jitter_ms <= 0:
            return slot_ms
        window = self.jitter_window(slot_ms, self.next_after(slot_ms))
        return slot_ms + jitter_offset(name, slot_ms, window)

    def slot_of_due(self, name: str, due_ms: int) -> int:
        """The slot whose due time is ``due_ms`` (the job's ``next_due_ms``): the last slot at or
        before it. Falls back to ``due_ms`` itself when no slot lies within the jitter window (a
        due time computed under other settings), which is also the answer without jitter."""
        if self.jitter_ms <= 0:
            return due_ms
        slot = self.previous_slot(due_ms, self.jitter_ms)
        return due_ms if slot is None else slot

    def previous_slot(self, at_ms: int, max_back_ms: int) -> int | None:
        """The last slot at or before ``at_ms``, looking back at most ``max_back_ms`` (None: no
        slot in that stretch). An exponential search backwards, then forwards: a few steps even
        for per-second crons."""
        back = 1000
        while True:
            back = min(back, max_back_ms)
            slot = self.next_after(at_ms - back)
            if slot is not None and slot <= at_ms:
                break
            if back >= max_back_ms:
                return None
            back *= 8
        while (nxt := self.next_after(slot)) is not None and nxt <= at_ms:
            slot = nxt
        return slot

    def iter_slots(self, name: str, after_ms: int) -> Iterator[tuple[int, int]]:
        """(slot, due) pairs for the slots strictly after ``after_ms``, in order."""
        slot = self.next_after(after_ms)
        while slot is not None:
            nxt = self.next_after(slot)
            window = self.jitter_window(slot, nxt) if self.jitter_ms > 0 else 0
            yield slot, slot + jitter_offset(name, slot, window)
            slot = nxt

    def first_due(self, name: str, after_ms: int) -> int:
        """Due time of the first slot strictly after ``after_ms``; 0 when there is none."""
        slot = self.next_after(after_ms)
        return 0 if slot is None else self.due_ms(name, slot)

    def slots_due(
        self, name: str, first_slot_ms: int, now_ms: int, limit: int
    ) -> tuple[list[int], int]:
        """Slots from ``first_slot_ms`` on whose due time is <= ``now_ms`` (at most ``limit``),
        and the due time of the slot after the last one returned (0: none)."""
        slots: list[int] = []
        slot: int | None = first_slot_ms
        while slot is not None:
            nxt = self.next_after(slot)
            window = self.jitter_window(slot, nxt) if self.jitter_ms > 0 else 0
            due = slot + jitter_offset(name, slot, window)
            if due > now_ms or len(slots) >= limit:
                return slots, due
            slots.append(slot)
            slot = nxt
        return slots, 0

    def preview(self, name: str, after_ms: int, count: int) -> list[tuple[int, int]]:
        """The next ``count`` (slot, due) pairs after ``after_ms``."""
        out: list[tuple[int, int]] = []
        if count <= 0:
            return out
        for pair in self.iter_slots(name, after_ms):
            out.append(pair)
            if len(out) >= count:
                break
        return out


def _anchor(s: types_pb2.Schedule) -> int:
    if s.HasField("anchor_ms"):
        return s.anchor_ms
    return s.start_ms


def compile_schedule(s: types_pb2.Schedule) -> Schedule:
    """Build the evaluator of a Schedule message. Checks the structure (cron syntax, zone,
    kind, DST enums) and raises InvalidArgument naming the field; the limits that depend on
    the present time are checked by ``schedd.server.validate.schedule``. A cron text of the form
    ``@every <duration>`` is accepted as an interval."""
    if s.kind == types_pb2.SCHEDULE_KIND_CRON:
        text = collapse_blanks(s.cron, "schedule.cron")
        if text.lower().startswith("@every"):
            every = parse_duration(text[len("@every") :], "schedule.cron")
            if every < MIN_INTERVAL_MS:
                raise InvalidArgument(
                    "schedule.cron", f"{text!r}: the interval must be at least 1s"
                )
            trigger: Trigger = Interval(every, _anchor(s))
        else:
            trigger = parse_cron(
                text,
                s.timezone or "UTC",
                "schedule.cron",
                dst_gap_from_pb(s.dst_gap),
                dst_repeat_from_pb(s.dst_repeat),
            )
    elif s.kind == types_pb2.SCHEDULE_KIND_INTERVAL:
        if s.every_ms < MIN_INTERVAL_MS:
            raise InvalidArgument(
                "schedule.every_ms", f"{s.every_ms} ms is below the minimum of 1s"
            )
        trigger = Interval(s.every_ms, _anchor(s))
    elif s.kind == types_pb2.SCHEDULE_KIND_AT:
        trigger = At(s.at_ms)
    else:
        raise InvalidArgument(
            "schedule.kind", "is required: a cron expression, an interval or a one-shot time"
        )
    return Schedule(trigger, max(0, s.start_ms), max(0, s.end_ms), max(0, s.jitter_ms))


def preview(
    schedule: Schedule | types_pb2.Schedule, after_ms: int, count: int, name: str = ""
) -> list[int]:
    """The next ``count`` firing instants strictly after ``after_ms``, with bounds and jitter
    (for job ``name``) applied: what ``schedctl job preview`` lists."""
    if isinstance(schedule, types_pb2.Schedule):
        schedule = compile_schedule(schedule)
    count = min(count, MAX_PREVIEW)
    return [due for _, due in schedule.preview(name, after_ms, count)]


def slots_due(
    trigger: Trigger | Schedule, first_due_ms: int | None, now_ms: int, limit: int
) -> tuple[list[int], int]:
    """Scheduled instants from ``first_due_ms`` up to ``now_ms`` (at most ``limit``) and the
    next instant after the last one returned (0: none). No jitter: see Schedule.slots_due."""
    slots: list[int] = []
    t = first_due_ms
    while t is not None and t <= now_ms and len(slots) < limit:
        slots.append(t)
        t = trigger.next_after(t)
    return slots, t or 0


# ---- RFC 3339 -------------------------------------------------------------------------------


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
        raise InvalidArgument(
            field, f"{text!r} is not an RFC 3339 time such as 2026-01-02T03:04:05Z"
        ) from None
    if dt.tzinfo is None:
        raise InvalidArgument(field, f"{text!r} has no UTC offset; add Z or +HH:MM")
    return int(round(dt.timestamp() * 1000))
