"""Chaos smoke set (CI): each scenario of ``chaos/`` in short form on a real 3-node cluster whose
Raft and gRPC links run through the harness's proxies (gRPC only for the membership scenarios,
whose nodes join and leave). Fails on any checker violation; a
negative control fails when the checker does *not* see what it exists for: the duplicates that
running without fencing must produce, the acknowledged writes a power cut loses with
``--unsafe-no-fsync``. A scenario's ``smoke_duration`` shortens its fault phase here. Longer
runs: ``python -m chaos all --duration 60`` (see chaos/README.md).
"""

from __future__ import annotations

import pytest

from chaos import scenarios

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SMOKE_DURATION_S = 8.0
#: seeds a race-dependent negative control may take to show its violation (see below); three
#: were not always enough on the shared 2-core box (in one full suite run the Raft truncation
#: showed on none of them), and a seed costs time only when the ones before it did not show it
CONTROL_SEEDS = (1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize("name", [s.name for s in scenarios.SMOKE])
def test_scenario(name: str, tmp_path) -> None:
    sc = scenarios.SCENARIOS[name]
    # A control that demonstrates a race (the Raft truncation: whether the entries lost in the
    # window were writes a client saw acknowledged depends on timing) proves the checker can
    # see the bug once it shows on any seed; every other scenario runs seed 1 only.
    for seed in CONTROL_SEEDS if sc.demonstrates else CONTROL_SEEDS[:1]:
        o = scenarios.run(
            name,
            seed=seed,
            duration=sc.smoke_duration or SMOKE_DURATION_S,
            out_root=str(tmp_path / f"seed{seed}"),
        )
        if o.passed:
            break
    print(
        "\n"
        + scenarios.table([scenarios.row(o, 3)])
        + f"\n{o.seconds:.0f}s, history in {o.report.out}"
    )
    if o.scenario.control:
        assert o.passed, (
            f"negative control: the checker found no duplicate effect with fencing off; "
            f"it cannot see the bug it exists for (history: {o.report.out})"
        )
    elif o.scenario.demonstrates:
        assert o.passed, (
            f"negative control: the checker reported no {'/'.join(o.scenario.demonstrates)} violation; it "
            f"cannot see the loss it exists for (history: {o.report.out})"
        )
    else:
        assert o.passed, "checker violations:\n" + "\n".join(o.report.violations[:30])
        assert o.report.expected > 0 and o.report.lost == 0 and o.report.duplicates == 0
