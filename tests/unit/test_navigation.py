"""The leader navigation shared by the SDK and the agent (schedd.sdk.navigation), with a fake clock.

Three layers: properties of the Navigator for any sequence of outcomes (hypothesis); the SDK's
schedule (Attempts) against a reference copy of the schedule it had before the navigation core,
plus transcripts of representative failure series (the delays and targets the SDK shows, which
must not change); and the agent's cases (suspects, reconnects) as examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedd import errors
from schedd.clock import FakeClock
from schedd.sdk.core import Action, Attempts, classify
from schedd.sdk.endpoints import backoff_delays
from schedd.sdk.navigation import SUSPECT_S, Move, Navigator, move_after

EPS = ["a:1", "b:2", "c:3"]


def test_move_after_follows_another_node_retries_a_self_hint_and_rotates_without_one() -> None:
    assert move_after("b:2", "a:1") is Move.FOLLOW
    assert move_after("a:1", "a:1") is Move.RETRY
    assert move_after("", "a:1") is Move.ROTATE


def test_the_sdk_classifies_unavailable_by_the_same_rule() -> None:
    for hint in ("b:2", "a:1", ""):
        action = classify("UNAVAILABLE", hint=hint, current="a:1", idempotent=True)
        assert action.value == move_after(hint, "a:1").value
    assert {a.value for a in Action} - {"fail"} == {m.value for m in Move}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="endpoints"):
        Navigator([])
    with pytest.raises(ValueError, match="max_free_hops"):
        Navigator(EPS, max_free_hops=-1)
    with pytest.raises(ValueError, match="hint"):
        Navigator(EPS).failed(Move.FOLLOW, hint="", now=0.0)


def test_defaults() -> None:
    nav = Navigator(EPS)
    assert nav.target == "a:1" and nav.endpoints == EPS
    assert Navigator(EPS, first="x:9").target == "x:9"
    # len(endpoints) + 1 free hops, then a back-off
    delays = [
        nav.failed(Move.FOLLOW, hint="b:2" if i % 2 == 0 else "a:1", now=0.0) for i in range(5)
    ]
    assert delays == [0, 0, 0, 0, 0.05]


# ---- properties, for any sequence of outcomes ------------------------------------------------

ADDRESSES = ["a:1", "b:2", "c:3", "d:4", "x:9"]  # x:9 is never listed: a hinted outsider


@dataclass(frozen=True)
class Fail:
    move: Move
    hint: str
    frozen: bool
    dt: float  # seconds passing before this outcome


@dataclass(frozen=True)
class Connected:
    dt: float


def _outcome() -> st.SearchStrategy[Fail | Connected]:
    dt = st.sampled_from([0.0, 0.05, 0.5, 1.0, 2.0, 4.9, 5.0, 7.0])
    fail = st.builds(
        Fail, st.sampled_from(list(Move)), st.sampled_from(ADDRESSES), st.booleans(), dt
    )
    return st.one_of(fail, fail, fail, st.builds(Connected, dt))


@st.composite
def _config(draw: st.DrawFn) -> tuple[list[str], int]:
    n = draw(st.integers(1, 4))
    return ADDRESSES[:n], draw(st.integers(0, 5))


def _drive(
    nav: Navigator, outcomes: Sequence[Fail | Connected], clock: FakeClock
) -> list[tuple[Fail | Connected, float, bool]]:
    """Feed ``outcomes``; returns (outcome, delay (-1 for Connected), whether the hint was a
    stale one naming a skipped suspect)."""
    out: list[tuple[Fail | Connected, float, bool]] = []
    endpoints = nav.endpoints
    for o in outcomes:
        clock.advance(o.dt)
        if isinstance(o, Connected):
            nav.connected()
            out.append((o, -1.0, False))
            continue
        hint = o.hint if o.move is not Move.ROTATE else ""
        if o.move is Move.FOLLOW and hint == nav.target:
            hint = "x:9" if nav.target != "x:9" else "a:1"
        now = clock.monotonic()
        delay = nav.failed(o.move, hint=hint, now=now, frozen=o.frozen)
        # failed() changes no suspicion but the expiries at `now` and the frozen mark, so
        # asking afterwards sees what it saw
        stale = (
            o.move is Move.FOLLOW
            and nav.is_suspect(hint, now)
            and not all(nav.is_suspect(a, now) for a in endpoints)
        )
        out.append((o, delay, stale))
        clock.advance(delay)
    return out


@settings(max_examples=300, deadline=None)
@given(_config(), st.lists(_outcome(), max_size=60))
def test_free_hops_are_follows_and_bounded_in_a_row(
    config: tuple[list[str], int], outcomes: list[Fail | Connected]
) -> None:
    endpoints, free = config
    nav = Navigator(endpoints, max_free_hops=free)
    run = 0
    for o, delay, _ in _drive(nav, outcomes, FakeClock()):
        if isinstance(o, Connected):
            run = 0
        elif delay == 0:
            assert o.move is Move.FOLLOW, "only a hop to a hint is free"
            run += 1
            assert run <= free
        else:
            run = 0


@settings(max_examples=300, deadline=None)
@given(_config(), st.lists(_outcome(), max_size=60))
def test_the_fast_phase_caps_an_outages_first_seconds_only(
    config: tuple[list[str], int], outcomes: list[Fail | Connected]
) -> None:
    """With ``fast=(5, 0.25)`` (the agent's): the same schedule, each delay capped at 250 ms
    until 5 s after the outage's first back-off; a connection starts a new outage."""
    endpoints, free = config
    nav = Navigator(endpoints, max_free_hops=free, fast=(5.0, 0.25))
    clock = FakeClock()
    expected = backoff_delays()
    began: float | None = None
    t = 0.0  # the clock as _drive moved it: each outcome's dt, then its delay
    for o, delay, stale in _drive(nav, outcomes, clock):
        t += o.dt
        at, t = t, t + max(delay, 0.0)
        if isinstance(o, Connected):
            expected, began = backoff_delays(), None
        elif stale:
            assert delay == 0.05
        elif delay:
            began = at if began is None else began
            want = next(expected)
            assert delay == (min(want, 0.25) if at < began + 5.0 else want)


def test_the_fast_phase_finds_a_leader_elected_after_one_and_a_half_seconds_sooner() -> None:
    """Negative control for the property above: without the fast phase, an outage's retries
    after 1.5 s wait up to a second."""

    def attempts(nav: Navigator) -> list[float]:
        t, out = 0.0, []
        while t < 3.0:
            t += nav.failed(Move.ROTATE, now=t)
            out.append(round(t, 2))
        return out

    slow, fast = attempts(Navigator(EPS)), attempts(Navigator(EPS, fast=(5.0, 0.25)))
    assert [t for t in slow if 1.5 <= t < 2.6] == [1.55, 2.55]
    assert [t for t in fast if 1.5 <= t < 2.6] == [1.6, 1.85, 2.1, 2.35]


@settings(max_examples=300, deadline=None)
@given(_config(), st.lists(_outcome(), max_size=60))
def test_back_off_doubles_from_50ms_capped_at_1s_restarting_after_a_connection(
    config: tuple[list[str], int], outcomes: list[Fail | Connected]
) -> None:
    endpoints, free = config
    nav = Navigator(endpoints, max_free_hops=free)
    expected = backoff_delays()
    for o, delay, stale in _drive(nav, outcomes, FakeClock()):
        if isinstance(o, Connected):
            expected = backoff_delays()
        elif stale:
            assert delay == 0.05  # the schedule does not advance
        elif delay:
            assert delay == next(expected)
            assert 0.05 <= delay <= 1.0


@settings(max_examples=300, deadline=None)
@given(_config(), st.lists(_outcome(), max_size=60))
def test_suspects_are_skipped_while_a_healthy_endpoint_exists_until_they_expire(
    config: tuple[list[str], int], outcomes: list[Fail | Connected]
) -> None:
    endpoints, free = config
    nav = Navigator(endpoints, max_free_hops=free)
    clock = FakeClock()
    marked: dict[str, float] = {}  # the model: address -> when it was last found frozen
    target = nav.target
    for o in outcomes:
        clock.advance(o.dt)
        now = clock.monotonic()
        if isinstance(o, Connected):
            nav.connected()
            marked.pop(target, None)  # it answered: no longer suspect
        else:
            if o.frozen:
                marked[target] = now
            hint = o.hint if o.move is not Move.ROTATE else ""
            if o.move is Move.FOLLOW and hint == target:
                hint = "x:9" if target != "x:9" else "a:1"
            nav.failed(o.move, hint=hint, now=now, frozen=o.frozen)
            target = nav.target
            suspects = {a for a, t in marked.items() if now < t + SUSPECT_S}
            assert nav.suspects(now) == sorted(suspects)
            if any(ep not in suspects for ep in endpoints):
                assert target not in suspects, f"chose suspect {target} while healthy ones exist"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(0, 3), st.lists(st.booleans(), max_size=12))
def test_rotation_visits_every_healthy_endpoint_in_list_order(
    n: int, start: int, frozen: list[bool]
) -> None:
    endpoints = ADDRESSES[:n]
    nav = Navigator(endpoints, first=endpoints[start % n])
    seen = [nav.target]
    for _ in range(n - 1):
        nav.failed(Move.ROTATE, now=0.0)
        seen.append(nav.target)
    assert sorted(seen) == sorted(endpoints)
    i = endpoints.index(seen[0])
    assert seen == [endpoints[(i + k) % n] for k in range(n)]


# ---- the SDK: unchanged schedule ------------------------------------------------------------


class PreviousSdkSchedule:
    """The SDK's leader following as written in Attempts before the navigation core: the
    reference the shared core must reproduce exactly when no suspect is ever marked."""

    def __init__(self, endpoints: Sequence[str], first: str) -> None:
        self.target = first
        self._endpoints = list(endpoints)
        self._delays = backoff_delays()
        self._follows = 0

    def failed(self, move: Move, hint: str) -> float:
        if move is Move.FOLLOW and self._follows <= len(self._endpoints):
            self._follows += 1
            self.target = hint
            return 0.0
        self._follows = 0
        delay = next(self._delays)
        if move is Move.FOLLOW:
            self.target = hint
        elif move is Move.ROTATE:
            if self.target in self._endpoints:
                i = self._endpoints.index(self.target)
                self.target = self._endpoints[(i + 1) % len(self._endpoints)]
            else:
                self.target = self._endpoints[0]
        return delay


@settings(max_examples=500, deadline=None)
@given(
    st.integers(1, 4),
    st.sampled_from(ADDRESSES),
    st.lists(st.tuples(st.sampled_from(list(Move)), st.sampled_from(ADDRESSES)), max_size=80),
)
def test_the_sdk_schedule_is_the_previous_one(
    n: int, first: str, steps: list[tuple[Move, str]]
) -> None:
    endpoints = ADDRESSES[:n]
    old = PreviousSdkSchedule(endpoints, first)
    new = Navigator(endpoints, first=first, max_free_hops=n + 1)
    for move, hint in steps:
        if move is Move.ROTATE:
            hint = ""
        elif move is Move.FOLLOW and hint == old.target:
            continue  # classify never follows a hint naming the current target
        assert new.failed(move, hint=hint, now=0.0) == old.failed(move, hint)
        assert new.target == old.target


def transcript(
    steps: Sequence[tuple[str, str] | tuple[str, str, bool]],
    *,
    first: str = "a:1",
    idempotent: bool = True,
    retry_for: float = 20.0,
) -> list[str]:
    """Drive one call's Attempts through failures (code, hint[, maybe_sent]) with a fake clock;
    one line per attempt: where it went, what failed, what the SDK does next."""
    clock = FakeClock()
    attempts = Attempts(
        EPS,
        first,
        method="GetJob",
        idempotent=idempotent,
        timeout=1.0,
        retry_for=retry_for,
        now=clock.monotonic(),
    )
    lines = []
    for step in steps:
        code, hint = step[0], step[1]
        maybe_sent = step[2] if len(step) == 3 else True  # type: ignore[misc]
        target = attempts.target
        said = f"{target} {code}" + (f" hint={hint}" if hint else "")
        try:
            delay = attempts.failed(code, "", hint, maybe_sent=maybe_sent, now=clock.monotonic())
        except errors.SchedError as exc:
            lines.append(f"{said} -> {type(exc).__name__}")
            break
        clock.advance(delay)
        lines.append(f"{said} -> wait {delay:g} -> {attempts.target}")
    return lines


U, D = "UNAVAILABLE", "DEADLINE_EXCEEDED"

TRANSCRIPTS: dict[
    str, tuple[list[tuple[str, str] | tuple[str, str, bool]], dict[str, object], list[str]]
] = {
    "a follower's hint is followed at once, even outside the list; when that node is gone the "
    "rotation starts over from the first endpoint": (
        [(U, "x:9"), (U, ""), (U, "")],
        {},
        [
            "a:1 UNAVAILABLE hint=x:9 -> wait 0 -> x:9",
            "x:9 UNAVAILABLE -> wait 0.05 -> a:1",
            "a:1 UNAVAILABLE -> wait 0.1 -> b:2",
        ],
    ),
    "dead nodes are rotated past with a doubling back-off capped at 1 s": (
        [(U, "")] * 8,
        {},
        [
            "a:1 UNAVAILABLE -> wait 0.05 -> b:2",
            "b:2 UNAVAILABLE -> wait 0.1 -> c:3",
            "c:3 UNAVAILABLE -> wait 0.2 -> a:1",
            "a:1 UNAVAILABLE -> wait 0.4 -> b:2",
            "b:2 UNAVAILABLE -> wait 0.8 -> c:3",
            "c:3 UNAVAILABLE -> wait 1 -> a:1",
            "a:1 UNAVAILABLE -> wait 1 -> b:2",
            "b:2 UNAVAILABLE -> wait 1 -> c:3",
        ],
    ),
    "two nodes naming each other: len(endpoints) + 1 free hops, then a back-off, again": (
        [(U, "b:2"), (U, "a:1")] * 5,
        {},
        [
            "a:1 UNAVAILABLE hint=b:2 -> wait 0 -> b:2",
            "b:2 UNAVAILABLE hint=a:1 -> wait 0 -> a:1",
            "a:1 UNAVAILABLE hint=b:2 -> wait 0 -> b:2",
            "b:2 UNAVAILABLE hint=a:1 -> wait 0 -> a:1",
            "a:1 UNAVAILABLE hint=b:2 -> wait 0.05 -> b:2",
            "b:2 UNAVAILABLE hint=a:1 -> wait 0 -> a:1",
            "a:1 UNAVAILABLE hint=b:2 -> wait 0 -> b:2",
            "b:2 UNAVAILABLE hint=a:1 -> wait 0 -> a:1",
            "a:1 UNAVAILABLE hint=b:2 -> wait 0 -> b:2",
            "b:2 UNAVAILABLE hint=a:1 -> wait 0.1 -> a:1",
        ],
    ),
    "a node naming itself is asked again after a back-off": (
        [(U, "a:1"), (U, "a:1"), (U, "c:3")],
        {},
        [
            "a:1 UNAVAILABLE hint=a:1 -> wait 0.05 -> a:1",
            "a:1 UNAVAILABLE hint=a:1 -> wait 0.1 -> a:1",
            "a:1 UNAVAILABLE hint=c:3 -> wait 0 -> c:3",
        ],
    ),
    "a back-off ends a run of free hops; the back-off schedule goes on within the call": (
        [(U, "c:3"), (U, ""), (U, "b:2"), (U, "")],
        {},
        [
            "a:1 UNAVAILABLE hint=c:3 -> wait 0 -> c:3",
            "c:3 UNAVAILABLE -> wait 0.05 -> a:1",
            "a:1 UNAVAILABLE hint=b:2 -> wait 0 -> b:2",
            "b:2 UNAVAILABLE -> wait 0.1 -> c:3",
        ],
    ),
    "a remembered leader outside the list that is gone: start over from the first endpoint": (
        [(U, ""), (U, "")],
        {"first": "x:9"},
        ["x:9 UNAVAILABLE -> wait 0.05 -> a:1", "a:1 UNAVAILABLE -> wait 0.1 -> b:2"],
    ),
    "a timed-out read is retried at the next endpoint, even with a hint": (
        [(D, ""), (D, "a:1")],
        {},
        [
            "a:1 DEADLINE_EXCEEDED -> wait 0.05 -> b:2",
            "b:2 DEADLINE_EXCEEDED hint=a:1 -> wait 0.1 -> c:3",
        ],
    ),
    "a write that timed out before any connection is resent elsewhere; once maybe sent, its "
    "outcome is unknown": (
        [(D, "", False), (D, "", True)],
        {"idempotent": False},
        ["a:1 DEADLINE_EXCEEDED -> wait 0.05 -> b:2", "b:2 DEADLINE_EXCEEDED -> OutcomeUnknown"],
    ),
    "a final answer ends the call at once": (
        [(U, "b:2"), ("NOT_FOUND", "")],
        {},
        ["a:1 UNAVAILABLE hint=b:2 -> wait 0 -> b:2", "b:2 NOT_FOUND -> NotFound"],
    ),
    "no retry starts after retry_for: 0.05+0.1+0.2+0.4 = 0.75 s waited, 0.8 more would pass 1 s": (
        [(U, "")] * 6,
        {"retry_for": 1.0},
        [
            "a:1 UNAVAILABLE -> wait 0.05 -> b:2",
            "b:2 UNAVAILABLE -> wait 0.1 -> c:3",
            "c:3 UNAVAILABLE -> wait 0.2 -> a:1",
            "a:1 UNAVAILABLE -> wait 0.4 -> b:2",
            "b:2 UNAVAILABLE -> Unavailable",
        ],
    ),
    "free hops also end the call at retry_for only through back-offs (a free hop never gives up)": (
        [(U, ""), (U, ""), (U, "c:3"), (U, "")],
        {"retry_for": 0.15},
        [
            "a:1 UNAVAILABLE -> wait 0.05 -> b:2",
            "b:2 UNAVAILABLE -> wait 0.1 -> c:3",
            "c:3 UNAVAILABLE hint=c:3 -> Unavailable",
        ],
    ),
}


@pytest.mark.parametrize("name", list(TRANSCRIPTS))
def test_sdk_transcripts(name: str) -> None:
    steps, kwargs, expected = TRANSCRIPTS[name]
    assert transcript(steps, **kwargs) == expected  # type: ignore[arg-type]


# ---- the agent's cases: suspects and reconnects ---------------------------------------------


def agent_nav() -> Navigator:
    """Configured as the agent's stream loop configures it (schedd.agent.stream: one free hop
    in a row)."""
    return Navigator(EPS, max_free_hops=1, suspect_for=SUSPECT_S)


def test_a_frozen_leader_is_skipped_even_when_followers_still_name_it() -> None:
    """The leader a:1 froze (SIGSTOP): the probe found it and the stream was torn down. Its
    followers still name it until their election starts; the agent asks the others 50 ms
    apart (not in a tight loop, and without growing the back-off, so it is there as soon as
    the new leader is), and the frozen node again only once the suspicion expired."""
    clock = FakeClock()
    nav = agent_nav()
    nav.connected()
    assert nav.failed(Move.ROTATE, now=clock.monotonic(), frozen=True) == 0.05
    assert nav.target == "b:2"
    waits, targets = [], []
    for _ in range(6):
        d = nav.failed(Move.FOLLOW, hint="a:1", now=clock.monotonic())  # a stale hint
        clock.advance(d)
        waits.append(d)
        targets.append(nav.target)
    assert targets == ["c:3", "b:2", "c:3", "b:2", "c:3", "b:2"]
    assert waits == [0.05] * 6
    # the election has started: nobody knows a leader; the back-off goes on where it was
    assert nav.failed(Move.ROTATE, now=clock.monotonic()) == 0.1
    assert nav.failed(Move.FOLLOW, hint="c:3", now=clock.monotonic()) == 0  # elected
    assert nav.target == "c:3"
    clock.advance(SUSPECT_S)  # the suspicion has expired: a hint naming a:1 is followed again
    assert nav.failed(Move.FOLLOW, hint="a:1", now=clock.monotonic()) == 0.2  # 2nd hop in a row
    assert nav.target == "a:1"


def test_a_connection_that_times_out_makes_a_suspect_and_rotation_skips_it() -> None:
    clock = FakeClock()
    nav = agent_nav()
    nav.failed(Move.ROTATE, now=clock.monotonic(), frozen=True)  # a:1: no connection within 3 s
    seen = []
    for _ in range(4):
        clock.advance(nav.failed(Move.ROTATE, now=clock.monotonic()))
        seen.append(nav.target)
    assert seen == ["c:3", "b:2", "c:3", "b:2"]
    assert nav.suspects(clock.monotonic()) == ["a:1"]
    clock.advance(SUSPECT_S)
    nav.failed(Move.ROTATE, now=clock.monotonic())
    assert nav.target == "c:3" and nav.suspects(clock.monotonic()) == []
    nav.failed(Move.ROTATE, now=clock.monotonic())
    assert nav.target == "a:1"


def test_when_every_endpoint_is_suspect_none_is_skipped() -> None:
    nav = agent_nav()
    for _ in EPS:
        nav.failed(Move.ROTATE, now=0.0, frozen=True)
    assert nav.suspects(0.0) == EPS
    seen = []
    for _ in EPS:
        nav.failed(Move.ROTATE, now=0.0)
        seen.append(nav.target)
    assert sorted(seen) == EPS
    nav.failed(Move.FOLLOW, hint="b:2", now=0.0)  # nothing to tell apart: follow the hint
    assert nav.target == "b:2"


def test_a_self_hint_from_a_frozen_node_moves_on() -> None:
    nav = agent_nav()
    nav.failed(Move.RETRY, now=0.0, frozen=True)
    assert nav.target == "b:2"


def test_a_welcomed_stream_restarts_the_back_off_and_makes_the_next_hop_free() -> None:
    """The agent's rule: after a stream that worked, a hint is followed at once and the
    back-off starts again at 50 ms; between streams one hop in a row is free."""
    nav = agent_nav()
    assert [nav.failed(Move.ROTATE, now=0.0) for _ in range(3)] == [0.05, 0.1, 0.2]
    assert nav.failed(Move.FOLLOW, hint="c:3", now=0.0) == 0
    assert nav.failed(Move.FOLLOW, hint="a:1", now=0.0) == 0.4  # the second hop in a row
    nav.connected()
    assert nav.failed(Move.FOLLOW, hint="b:2", now=0.0) == 0
    assert nav.failed(Move.ROTATE, now=0.0) == 0.05
    assert nav.target == "c:3"


def test_a_node_that_answers_is_no_longer_suspect() -> None:
    nav = agent_nav()
    for _ in EPS:  # all suspect: a:1 is tried again and welcomes us
        nav.failed(Move.ROTATE, now=0.0, frozen=True)
    assert nav.target == "a:1"
    nav.connected()
    assert nav.suspects(0.0) == ["b:2", "c:3"]
    assert nav.is_suspect("b:2", 0.0) and not nav.is_suspect("a:1", 0.0)
