"""The metrics' pure parts: histogram buckets, queue backlog, label capping, the listen address,
and the counts a real apply reports (its Tally) as the node's counters see them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from schedd.errors import InvalidArgument
from schedd.pb import types_pb2
from schedd.server.metrics import Histogram, NodeMetrics, Series, enum_label, parse_listen
from schedd.server.metrics_state import OTHER, cap_labels, queue_backlog
from schedd.state import keys
from schedd.state.apply import MemoryState
from tests.unit.test_apply import T0, complete, create, fire, grant

BOUNDS = (0.01, 0.1, 1.0, 10.0)


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_series_buckets_are_cumulative_and_match_a_reference(values: list[float]) -> None:
    one, many = Series(BOUNDS), Series(BOUNDS)
    for v in values:
        one.observe(v)
    many.observe_many(values)
    buckets, total = many.snapshot()
    assert buckets == one.snapshot()[0]
    assert math.isclose(total, sum(values), abs_tol=1e-9)
    # reference: a bucket counts the values <= its bound (Prometheus' "le")
    expected = [sum(1 for v in values if v <= b) for b in BOUNDS] + [len(values)]
    assert [n for _, n in buckets] == expected
    assert [le for le, _ in buckets] == ["0.01", "0.1", "1.0", "10.0", "+Inf"]


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    s = Series(BOUNDS)
    s.observe(0.1)
    assert s.snapshot()[0][:3] == [("0.01", 0), ("0.1", 1), ("1.0", 1)]


def test_histogram_exposes_its_children_in_the_text_format() -> None:
    reg = CollectorRegistry()
    h = Histogram("x_seconds", "doc", BOUNDS, ["outcome"], registry=reg)
    h.child("ok").observe_many([0.05, 5.0])
    text = generate_latest(reg).decode()
    assert 'x_seconds_bucket{le="0.1",outcome="ok"} 1.0' in text
    assert 'x_seconds_count{outcome="ok"} 2.0' in text
    with pytest.raises(ValueError):
        h.child()


def test_queue_backlog_counts_per_queue_and_finds_the_oldest_ready_run() -> None:
    now = 10_000
    index = sorted(
        [
            keys.queue_pending_key("a", 4_000, "r1"),
            keys.queue_pending_key("a", 9_000, "r2"),
            keys.queue_pending_key("a", 20_000, "r3"),  # backing off: pending, not ready
            keys.queue_pending_key("b", 15_000, "r4"),
        ]
    )
    got = queue_backlog(index, now)
    assert {q: (b.pending, b.oldest_ready_ms) for q, b in got.items()} == {
        "a": (3, 4_000),
        "b": (1, 0),
    }


def test_cap_labels_keeps_the_largest_and_folds_the_rest() -> None:
    values = {f"q{i}": i for i in range(10)}
    assert cap_labels(values, limit=20) == values
    capped = cap_labels(values, limit=4)
    assert capped == {"q9": 9, "q8": 8, "q7": 7, OTHER: sum(range(7))}
    assert sum(capped.values()) == sum(values.values())


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9100", "host:", ":9100", "h:99999", "h:x"):
        with pytest.raises(InvalidArgument) as e:
            parse_listen(bad)
        assert e.value.field == "--metrics"


def test_enum_label() -> None:
    assert enum_label("SKIP_REASON_CATCHUP_WINDOW", "SKIP_REASON_") == "catchup_window"


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    got = reg.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_counters_follow_what_apply_reports() -> None:
    """A real apply of create, fire (two slots), grant, complete: the node's counters show two
    runs created on schedule and one run succeeded, with its duration."""
    m = NodeMetrics()
    state = MemoryState()
    due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, due)
    entries = [
        create("a"),
        fire("a", 1, due, [due, due + 1000], due + 2000, now=due + 1000),
        grant(rid, now=due + 1500),
        complete(rid, 1, now=due + 4000),
    ]
    for i, e in enumerate(entries, start=1):
        m.applied(state.apply(e, i))
    reg = m.registry
    assert sample(reg, "schedd_runs_created_total", origin="schedule") == 2
    assert sample(reg, "schedd_runs_finished_total", outcome="succeeded") == 1
    assert sample(reg, "schedd_run_duration_seconds_count", outcome="succeeded") == 1
    assert sample(reg, "schedd_run_duration_seconds_sum", outcome="succeeded") == 2.5
    assert sample(reg, "schedd_runs_finished_total", outcome="failed") == 0
    # applying the same entries again is skipped by apply, and so counts nothing
    for i, e in enumerate(entries, start=1):
        m.applied(state.apply(e, i))
    assert sample(reg, "schedd_runs_created_total", origin="schedule") == 2


def test_a_failed_last_attempt_counts_as_a_dead_letter() -> None:
    m = NodeMetrics()
    state = MemoryState()
    due = T0 - T0 % 1000 + 1000
    rid = keys.run_id("a", 1, due)
    policy = types_pb2.RetryPolicy(max_attempts=1)
    entries = [
        create("a", retry=policy),
        fire("a", 1, due, [due], due + 1000, now=due),
        grant(rid, now=due),
        complete(rid, 1, success=False, now=due + 100, dead_letter=True),
    ]
    for i, e in enumerate(entries, start=1):
        m.applied(state.apply(e, i))
    assert sample(m.registry, "schedd_runs_finished_total", outcome="dead") == 1
    assert sample(m.registry, "schedd_run_attempts_retried_total") == 0


def test_each_node_has_its_own_registry() -> None:
    a, b = NodeMetrics(), NodeMetrics()
    a.fsync(0.001)
    assert sample(a.registry, "schedd_journal_fsync_duration_seconds_count") == 1
    assert sample(b.registry, "schedd_journal_fsync_duration_seconds_count") == 0
    assert sample(a.registry, "process_cpu_seconds_total") > 0
