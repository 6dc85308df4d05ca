"""Retries, dead letters and run timeouts on a real 3-node cluster with a real shell worker.

The worker's command fails with exit code 3 unless a marker file for the job exists, and sleeps
for the job "slow", so one worker exercises every path: attempts exhausted, a non-retryable exit
code, a replay with `schedctl run retry` that succeeds, and a run timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import LocalCluster
from tests._util import wait_for
from tests.integration.conftest import client_env

from .conftest import schedctl

pytestmark = pytest.mark.integration

NEVER = "0 0 1 1 *"  # runs come from triggers only

SCRIPT = """
echo "$SCHEDD_RUN_ID $SCHEDD_ATTEMPT $SCHEDD_FENCE" >> "$MARKS/attempts.log"
if [ "$SCHEDD_JOB" = slow ]; then sleep 30; fi
if [ -e "$MARKS/$SCHEDD_JOB.ok" ]; then exit 0; fi
echo "refusing: no marker for $SCHEDD_JOB" >&2
exit 3
"""


def start_worker(endpoints: str, marks: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "schedctl",
        "--endpoints",
        endpoints,
        "worker",
        "run",
        "--concurrency",
        "3",
        "--",
        "sh",
        "-c",
        SCRIPT,
    ]
    env = {**os.environ, **client_env(endpoints), "MARKS": str(marks)}
    return subprocess.Popen(
        cmd,
        stdout=open(marks / "worker.log", "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )


def ended(client: Client, run_id: str) -> types_pb2.Run | None:
    run = client.get_run(run_id)
    return run if run.state in (types_pb2.RUN_STATE_DEAD, types_pb2.RUN_STATE_SUCCEEDED) else None


def create(eps: str, name: str, *options: str) -> None:
    p = schedctl(eps, "job", "create", name, "--cron", NEVER, *options)
    assert p.returncode == 0, p.stderr


def test_failing_runs_go_dead_are_listed_and_replayed(make_cluster, tmp_path: Path) -> None:
    cluster: LocalCluster = make_cluster()
    eps = cluster.endpoints_env
    worker = start_worker(eps, tmp_path)
    try:
        create(eps, "flaky", "--max-attempts", "2")
        create(
            eps,
            "fatal",
            "--max-attempts",
            "5",
            "--backoff",
            "100ms",
            "--non-retryable-exit-code",
            "3",
        )
        create(eps, "slow", "--max-attempts", "2", "--run-timeout", "1s")
        p = schedctl(eps, "--json", "job", "get", "fatal")
        job = json.loads(p.stdout)
        assert (
            job["retry"]["non_retryable_exit_codes"] == [3]
            and job["retry"]["initial_backoff_ms"] == 100
        )
        with cluster.client(timeout=5, retry_for=30) as client:
            runs = {name: client.trigger_job(name).run_id for name in ("flaky", "fatal", "slow")}

            # attempts exhausted: DEAD after attempt 2, with the exit code recorded
            flaky = wait_for(lambda: ended(client, runs["flaky"]), 30, "the flaky run to end")
            assert (flaky.state, flaky.attempt, flaky.exit_code) == (types_pb2.RUN_STATE_DEAD, 2, 3)
            assert flaky.error.startswith("exit code 3: refusing")

            # non-retryable exit code: DEAD after attempt 1
            fatal = wait_for(lambda: ended(client, runs["fatal"]), 30, "the fatal run to end")
            assert (fatal.state, fatal.attempt) == (types_pb2.RUN_STATE_DEAD, 1)
            assert "non-retryable" in fatal.error

            # run timeout: each attempt is expired by the leader after 1 s, then the run is DEAD
            slow = wait_for(
                lambda: ended(client, runs["slow"]), 30, "the slow run to time out twice"
            )
            assert (slow.state, slow.attempt) == (types_pb2.RUN_STATE_DEAD, 2)
            assert slow.error.startswith("run timeout"), slow.error
            assert slow.finished_ms - slow.started_ms >= 1000

            p = schedctl(eps, "--json", "run", "list", "--state", "dead")
            assert p.returncode == 0, p.stderr
            dead = {r["run_id"]: r for r in json.loads(p.stdout)}
            assert set(dead) == set(runs.values())
            assert (
                dead[runs["flaky"]]["state"] == "RUN_STATE_DEAD"
                and dead[runs["flaky"]]["exit_code"] == 3
            )
            p = schedctl(eps, "--json", "run", "list", "--job", "fatal", "--state", "succeeded")
            assert json.loads(p.stdout) == []

            # replay: the operator fixes the cause (the marker), then retries the dead run
            (tmp_path / "fatal.ok").touch()
            p = schedctl(eps, "run", "retry", runs["fatal"])
            assert p.returncode == 0, p.stderr
            assert f"retrying run {runs['fatal']}: attempt 2" in p.stdout
            fatal = wait_for(lambda: ended(client, runs["fatal"]), 30, "the replayed run to end")
            assert (fatal.state, fatal.attempt, fatal.exit_code) == (
                types_pb2.RUN_STATE_SUCCEEDED,
                2,
                0,
            )

            # a run that is not dead cannot be retried: exit 1, one line naming its state
            p = schedctl(eps, "run", "retry", runs["fatal"])
            assert (
                p.returncode == 1
                and p.stderr.startswith("error: run_id:")
                and "succeeded" in p.stderr
            )
            assert schedctl(eps, "run", "retry", "no-such:1:2").returncode == 3

            lines = (tmp_path / "attempts.log").read_text().split("\n")
            attempts = [line.split()[:2] for line in lines if line.strip()]
            assert (
                attempts.count([runs["fatal"], "1"]) == 1
                and attempts.count([runs["fatal"], "2"]) == 1
            )
            assert [a for a in attempts if a[0] == runs["flaky"]] == [
                [runs["flaky"], "1"],
                [runs["flaky"], "2"],
            ]

        # bad retry numbers: INVALID_ARGUMENT naming the option, nothing created
        for options, option in (
            (["--backoff", "2d"], "--backoff"),
            (["--backoff", "10s", "--max-backoff", "1s"], "--max-backoff"),
            (["--backoff-multiplier", "0.5"], "--backoff-multiplier"),
            (["--non-retryable-exit-code", "300"], "--non-retryable-exit-code"),
            (["--run-timeout", "10d"], "--run-timeout"),
            (["--max-attempts", "101"], "--max-attempts"),
        ):
            p = schedctl(eps, "job", "create", "bad", "--cron", NEVER, *options)
            assert p.returncode == 2 and p.stderr.startswith(f"error: {option}:"), (
                options,
                p.stderr,
            )
        assert schedctl(eps, "job", "get", "bad").returncode == 3
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    cluster.wait_converged(timeout=60)
