"""The real schedctl against a real 3-node cluster: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import schedctl

pytestmark = pytest.mark.integration


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(lines) >= 1 and lines[0].startswith("error:"), proc.stderr
    return lines[0]


def test_create_get_list_and_json(cluster) -> None:
    eps = cluster.endpoints_env
    p = schedctl(
        eps,
        "job",
        "create",
        "cli-a",
        "--cron",
        "0 3 29 2 *",  # (only the trigger below may run it: */5 fired mid-test once)
        "--tz",
        "Europe/Berlin",
        "--payload",
        '{"x": 1}',
    )
    assert p.returncode == 0, p.stderr
    p = schedctl(eps, "--json", "job", "get", "cli-a")
    assert p.returncode == 0, p.stderr
    job = json.loads(p.stdout)
    assert job["name"] == "cli-a" and job["schedule"]["timezone"] == "Europe/Berlin"
    p = schedctl(eps, "--json", "job", "list")
    assert "cli-a" in [j["name"] for j in json.loads(p.stdout)]
    p = schedctl(eps, "job", "trigger", "cli-a")
    assert p.returncode == 0, p.stderr
    p = schedctl(eps, "--json", "run", "list", "--job", "cli-a")
    runs = json.loads(p.stdout)
    assert len(runs) == 1 and runs[0]["job"] == "cli-a"
    p = schedctl(eps, "cluster", "status")
    assert p.returncode == 0 and "leader" in p.stdout


@pytest.mark.parametrize(
    "args,code,field",
    [
        (["job", "create", "bad-cron", "--cron", "61 * * * *"], 2, "--cron"),
        (["job", "create", "bad-tz", "--cron", "* * * * *", "--tz", "Mars/Base"], 2, "--tz"),
        (["job", "create", "bad name!", "--cron", "* * * * *"], 2, "name"),
        (["job", "get", "no-such-job"], 3, "name"),
        (["job", "delete", "no-such-job"], 3, "name"),
    ],
)
def test_bad_input_is_one_line_with_the_right_exit_code(cluster, args, code, field) -> None:
    p = schedctl(cluster.endpoints_env, *args)
    assert p.returncode == code, (p.returncode, p.stderr)
    assert field in one_line_error(p)


def test_duplicate_name_is_already_exists_and_changes_nothing(cluster) -> None:
    eps = cluster.endpoints_env
    assert schedctl(eps, "job", "create", "dup", "--cron", "0 3 * * *").returncode == 0
    before = json.loads(schedctl(eps, "--json", "job", "get", "dup").stdout)
    p = schedctl(eps, "job", "create", "dup", "--cron", "0 4 * * *")
    assert p.returncode == 5
    assert "dup" in one_line_error(p)
    assert json.loads(schedctl(eps, "--json", "job", "get", "dup").stdout) == before


def test_follower_endpoint_is_followed_to_the_leader(cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(s.grpc for s in cluster.specs if s.node_id != leader)
    p = schedctl(follower, "job", "create", "via-follower", "--cron", "0 5 * * *")
    assert p.returncode == 0, p.stderr


def test_the_shell_protocol_reaches_clicks_completion() -> None:
    """The real program answers bash's completion protocol (no cluster needed: subcommand names)."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "COMP_WORDS": "schedctl job ex",
        "COMP_CWORD": "2",
        "_SCHEDCTL_COMPLETE": "bash_complete",
        "PYTHONPATH": os.pathsep.join(
            [str(root), str(root / "cli"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    p = subprocess.run(
        [sys.executable, "-m", "schedctl"], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and p.stdout.split() == ["plain,explain", "plain,export"], (
        p.stdout,
        p.stderr,
    )
