"""bench/run.py's verdicts on the performance targets: a figure on the wrong side of its limit is
NOT met, ratios are taken against the same run's baseline, and a part that did not run gives no
verdict (rather than a made-up one)."""

from __future__ import annotations

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench")


@pytest.fixture(scope="module")
def run_py():  # type: ignore[no-untyped-def]
    sys.path.insert(0, os.path.abspath(BENCH))
    try:
        import run

        yield run
    finally:
        sys.path.remove(os.path.abspath(BENCH))


def verdicts(run_py, parts):  # type: ignore[no-untyped-def]
    return {t["target"]: t["verdict"] for t in run_py.targets(parts)}


def test_limits_ratios_and_missing_parts(run_py) -> None:  # type: ignore[no-untyped-def]
    parts = {
        "schedd_throughput": [
            {"valid": True, "firings_per_s": 16_000.0, "cpu_us_per_firing": {"all": 120.0}},
            {"valid": True, "firings_per_s": 18_000.0, "cpu_us_per_firing": {"all": 80.0}},
            {"valid": True, "firings_per_s": 17_000.0, "cpu_us_per_firing": {"all": 90.0}},
        ],
        "floor": [{"valid": True, "firings_per_s": 30_000.0}],
        "apscheduler_throughput": [{"valid": True, "firings_per_s": 17_000.0}],
        "schedd_lag": [{"valid": True, "lag": {"p50_ms": 3.5, "p99_ms": 10.0}}],
    }
    v = verdicts(run_py, parts)
    assert v["CPU per firing, whole box ≤ 100 µs"] == "met"  # median 90
    assert v["burst ≥ 15,000 firings/s"] == "met"
    assert v["burst ≥ 0.6× the floor"] == "NOT met"  # 17,000 / 30,000 = 0.57
    assert v["burst ≥ 1× APScheduler in memory"] == "met"  # 17,000 / 17,000
    assert v["lag aligned p50 ≤ 3 ms"] == "NOT met"
    assert v["lag aligned p99 ≤ 10 ms"] == "met"  # the limit itself is met
    # parts that did not run: no verdict at all
    assert "bulk create ≥ 20,000 jobs/s" not in v
    assert "lag spread p50 ≤ 3 ms" not in v


def test_a_ratio_without_its_baseline_gives_no_verdict(run_py) -> None:  # type: ignore[no-untyped-def]
    parts = {"schedd_throughput": [{"valid": True, "firings_per_s": 50_000.0}]}
    v = verdicts(run_py, parts)
    assert "burst ≥ 0.6× the floor" not in v
    assert v["burst ≥ 15,000 firings/s"] == "met"
