"""schedd's cron matcher against two independent implementations, cronsim and croniter, in UTC.

Random expressions over the whole syntax schedd accepts (values, ranges, steps, lists, names, 7
for Sunday, ``L``, ``D#n``, ``DL``, ``?``, the seconds field) are evaluated by schedd and by every
reference that reads them the way schedd documents (``docs/schedules.md``): the next firings
after a random instant must be the same, and an expression schedd finds can never fire must
make croniter give up too. UTC only: DST is a per-job policy here
(``test_schedule_props.py`` checks it against a brute-force reference). 600 examples take a few
seconds; set CRON_DIFF_EXAMPLES for a longer run (6,000 passed when this was written).

The references agree with cronie, and with each other, except on the points below; an
expression that uses one of them is compared with the other reference only. These are the
intended differences, each with its reason:

* cronsim reads ``a/s`` in day of week as running to 7 (``1/2`` = Mon, Wed, Fri, Sun; ``7/2`` =
  Sun only). schedd runs it to Saturday and reads a start of 7 as Sunday (``7/2`` = ``0/2``), as
  croniter does; cronie itself rejects ``a/s`` (it has ``a-b/s`` only).
* cronsim rejects a weekday range that ends on Sunday written as 0 or ``SUN`` (``FRI-SUN``);
  cronie (since 2025) and croniter read that end as 7.
* cronsim does not know ``?``, nor a weekday name before ``L`` (``FRIL``).
* croniter, when both day fields are restricted and day of week is ``D#n`` or ``DL``, applies
  that item to the day-of-month side too: ``0 0 13 * 5#2`` fires on second Fridays only, not
  on every 13th (its own choice, pinned by its test_issue_k33); schedd and cronsim OR them like
  any other day-of-week item. croniter also refuses (or misreads) ``D#n`` or ``DL`` next to
  other items in a list (``*/2,5L``). It spells ``5L`` as ``L5``: the expression is translated.
* croniter (7.0) reads a one-value range ``a-a`` as the whole field (``5-5`` = ``*``, ``5-5/2``
  = ``*/2``): deliberate, says its source, but not cron.
* croniter turns a day field that lists every value (``0-6``, ``SUN,*/1``) into ``*``, and so
  ANDs the day fields, when the other day field holds a ``*`` anywhere (``1,*/2``); cronie
  looks at the first character only.
* croniter's default day rule ANDs the day fields only for a bare ``*`` (or ``?``); with
  ``implement_cron_bug=True``, used here, it follows cronie's rule (a field *starting* with
  ``*``), as schedd and cronsim do.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, given, settings

from schedd.sched.schedule import Cron

croniter_mod = pytest.importorskip("croniter")
cronsim_mod = pytest.importorskip("cronsim")

DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
FIRINGS = 6
LO_MS = 631_152_000_000  # 1990-01-01
HI_MS = 3_471_292_800_000  # 2080-01-01


@dataclass
class Expr:
    """An expression and the references that read it as schedd does."""

    fields: list[str]
    not_cronsim: set[str] = field(default_factory=set)  # reasons, for the failure message
    not_croniter: set[str] = field(default_factory=set)

    @property
    def text(self) -> str:
        return " ".join(self.fields)


# ---- the generator ---------------------------------------------------------------------------


def _case(draw: st.DrawFn, name: str) -> str:
    return draw(st.sampled_from([name, name.lower(), name.title()]))


@st.composite
def _item(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None, dow: bool, e: Expr) -> str:
    """One list item: n, a-b, */s, a-b/s or a/s, with names where the field has them."""

    def show(v: int) -> str:
        if names and v - lo < len(names) and draw(st.integers(0, 2)) == 0:
            return _case(draw, names[v - lo])
        return str(v)

    span = hi - lo + 1
    bound = st.sampled_from([lo, hi]) | st.integers(lo, hi)  # the field's ends, often: 7, 0, 31
    kind = draw(st.sampled_from(["value", "range", "star_step", "range_step", "start_step"]))
    if kind == "value":
        return show(draw(bound))
    if kind == "star_step":
        return f"*/{draw(st.integers(1, span))}"
    a = draw(bound)
    if kind == "start_step":
        if dow:
            e.not_cronsim.add("a/s in day of week runs to 7 in cronsim")
        return f"{show(a)}/{draw(st.integers(1, span))}"
    b = draw(st.integers(a, hi))
    if a == b:
        e.not_croniter.add("croniter reads a-a as the whole field")
    end = show(b)
    if dow and b == 7 and a > 0 and draw(st.booleans()):
        end = draw(st.sampled_from(["0", "SUN", "sun"]))
        e.not_cronsim.add("cronsim rejects a weekday range ending on Sunday as 0")
    if kind == "range":
        return f"{show(a)}-{end}"
    return f"{show(a)}-{end}/{draw(st.integers(1, span))}"


@st.composite
def _field(
    draw: st.DrawFn,
    lo: int,
    hi: int,
    e: Expr,
    star: int,
    names: list[str] | None = None,
    day: str = "",
) -> str:
    """A field: ``*`` (``star`` times in 10), else a list of items; the day fields also get
    lists led by ``*`` or ``*/s`` (cronie's rule ANDs them), ``?``, ``L``, ``D#n`` and ``DL``."""
    if draw(st.integers(0, 9)) < star:
        if day and draw(st.integers(0, 4)) == 0:
            e.not_cronsim.add("cronsim does not know ?")
            return "?"
        return "*"
    items = [draw(_item(lo, hi, names, day == "dow", e)) for _ in range(draw(st.integers(1, 3)))]
    if day == "dom" and draw(st.integers(0, 5)) == 0:
        items.append("L")
    if day == "dow" and draw(st.integers(0, 3)) == 0:
        w = draw(st.integers(0, 7))
        if draw(st.booleans()):
            items.append(f"{w}#{draw(st.integers(1, 5))}")
        elif draw(st.booleans()):
            items.append(f"{w}L")
        else:
            items.append(f"{_case(draw, DAY_NAMES[w % 7])}L")
            e.not_cronsim.add("cronsim wants a number before L")
    if day and draw(st.integers(0, 5)) == 0:
        items.insert(0, "*" if draw(st.booleans()) else f"*/{draw(st.integers(2, 9))}")
    return ",".join(items)


@st.composite
def expressions(draw: st.DrawFn) -> Expr:
    e = Expr([])
    seconds = draw(st.booleans())
    e.fields = [
        *([draw(_field(0, 59, e, star=1))] if seconds else []),
        draw(_field(0, 59, e, star=2)),
        draw(_field(0, 23, e, star=3)),
        draw(_field(1, 31, e, star=6, day="dom")),
        draw(_field(1, 12, e, star=7, names=MONTH_NAMES)),
        draw(_field(0, 7, e, star=6, names=DAY_NAMES, day="dow")),
    ]
    dom, dow = e.fields[-3], e.fields[-1]
    anded = dom.startswith(("*", "?")) or dow.startswith(("*", "?"))
    if "*" in dom[1:] or "*" in dow[1:]:
        e.not_croniter.add("croniter finds a '*' anywhere in a day field")
    if re.search(r"[#L]", dow, re.IGNORECASE):
        if not anded:
            e.not_croniter.add("croniter applies D#n and DL to a restricted day of month too")
        if "," in dow:
            e.not_croniter.add("croniter does not mix D#n or DL with other weekday items")
    return e


# ---- the references ----------------------------------------------------------------------------


def via_cronsim(e: Expr, after: datetime) -> list[int]:
    it = cronsim_mod.CronSim(e.text, after)
    return [int(next(it).timestamp() * 1000) for _ in range(FIRINGS)]


def via_croniter(e: Expr, after: datetime) -> list[int]:
    fields = list(e.fields)
    # croniter writes "the last Friday" as L5; names before L are not accepted
    fields[-1] = re.sub(
        r"(\w+?)L(?=,|$)", lambda m: f"L{_dow_number(m.group(1))}", fields[-1], flags=re.IGNORECASE
    )
    it = croniter_mod.croniter(
        " ".join(fields), after, second_at_beginning=len(fields) == 6, implement_cron_bug=True
    )
    return [int(it.get_next(float) * 1000) for _ in range(FIRINGS)]


def _dow_number(text: str) -> int:
    return DAY_NAMES.index(text.upper()) if text.upper() in DAY_NAMES else int(text) % 7


def via_schedd(cron: Cron, after_ms: int) -> list[int]:
    out: list[int] = []
    t: int | None = after_ms
    while len(out) < FIRINGS and (t := cron.next_after(t)) is not None:  # type: ignore[arg-type]
        out.append(t)
    return out


@settings(
    max_examples=int(os.environ.get("CRON_DIFF_EXAMPLES", "600")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(expressions(), st.integers(LO_MS // 1000, HI_MS // 1000))
def test_schedd_agrees_with_cronsim_and_croniter(e: Expr, after_s: int) -> None:
    cron = Cron(e.text)
    after = datetime.fromtimestamp(after_s, tz=UTC)
    if not cron.fires:
        # croniter gives up after searching decades; cronsim would search forever
        if not e.not_croniter:
            with pytest.raises(croniter_mod.CroniterBadDateError):
                via_croniter(e, after)
        event("never fires")
        return
    got = via_schedd(cron, after_s * 1000)
    if not e.not_cronsim:
        assert got == via_cronsim(e, after), ("cronsim", e.text, after)
    if not e.not_croniter:
        assert got == via_croniter(e, after), ("croniter", e.text, after)
    event(
        "compared with "
        + (
            "both"
            if not (e.not_cronsim or e.not_croniter)
            else "croniter"
            if e.not_cronsim and not e.not_croniter
            else "cronsim"
            if not e.not_cronsim
            else "neither"
        )
    )
