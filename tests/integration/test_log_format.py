"""``schedd run --log-format json``: every line a node writes is a JSON object, and the lines
that mark a leader election carry their ``event`` as a key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from schedd.testing import FAST_ARGS, LocalCluster

pytestmark = pytest.mark.integration


def test_json_logs_parse_line_by_line(tmp_path_factory: pytest.TempPathFactory) -> None:
    c = LocalCluster(
        str(tmp_path_factory.mktemp("jsonlog")),
        nodes=3,
        extra_args=[*FAST_ARGS, "--log-format", "json"],
    )
    c.start()
    try:
        leader = c.wait_for_leader(timeout=30)
        with c.client() as client:
            client.create_job("logged", cron="0 3 * * *")
        # every node has heard from the leader (a create commits on a majority: the third node
        # may not have, on a loaded machine)
        c.wait_converged(timeout=30)
    finally:
        c.stop()
    events: dict[str, set[str]] = {}
    for spec in c.specs:
        with open(spec.log_path) as f:
            lines = f.read().splitlines()
        assert lines, spec.node_id
        for line in lines:
            obj = json.loads(line)  # every line, or the test fails naming it
            assert {"time", "level", "logger", "message"} <= obj.keys(), line
            if "event" in obj:
                events.setdefault(obj["event"], set()).add(spec.node_id)
    assert events["leader_changed"] == {s.node_id for s in c.specs}
    assert leader in events["dispatch_started"]
    assert {"node_started", "node_stopped"} <= events.keys()


def test_text_stays_the_default_and_a_bad_format_is_one_line(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "schedd", "run", "--log-format", "yaml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "--log-format" in bad.stderr and "Traceback" not in bad.stderr
