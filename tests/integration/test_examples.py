"""The examples in examples/ run as documented against a real 3-node cluster.

The centre piece is examples/paused_worker.py: a worker frozen with SIGSTOP after it got a
firing loses its lease, another worker runs the firing with a newer fence, and the first one's
late write is rejected with StaleFence. Runtime: about 15 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

from schedd.pb import api_pb2, types_pb2
from schedd.testing import LocalCluster
from tests._util import wait_for
from tests.integration.conftest import client_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def example(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    eps = args[args.index("--endpoints") + 1] if "--endpoints" in args else ""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **client_env(eps)) if eps else dict(os.environ),
    )


def test_paused_workers_late_write_is_rejected(cluster: LocalCluster, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    p = example("paused_worker.py", "--endpoints", cluster.endpoints_env, "--db", str(db))
    assert p.returncode == 0, p.stdout + p.stderr
    a = re.search(r"worker A \(pid \d+\) got the firing with fence (\d+): SIGSTOP", p.stdout)
    b = re.search(r"worker B got it with fence (\d+) \(attempt (\d+)\)", p.stdout)
    assert a and b, p.stdout
    fence_a, fence_b, attempt_b = int(a.group(1)), int(b.group(1)), int(b.group(2))
    assert fence_b > fence_a and attempt_b >= 2
    assert f"fence: {fence_a} is stale" in p.stdout and f"fence {fence_b} already wrote" in p.stdout
    # Independently of the example's own verdict: only B's write is in the database.
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT fence, worker FROM results").fetchall()
    fences = conn.execute("SELECT fence FROM schedd_fences").fetchall()
    conn.close()
    assert rows == [(fence_b, "B")] and fences == [(fence_b,)]


def test_daily_report_writes_a_fenced_report(cluster: LocalCluster, tmp_path: Path) -> None:
    db = tmp_path / "reports.db"
    p = example(
        "daily_report.py",
        "--endpoints",
        cluster.endpoints_env,
        "--db",
        str(db),
        "--trigger",
        "--once",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"wrote (\d{4}-\d{2}-\d{2}) with fence (\d+)", p.stdout)
    assert m, p.stdout
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT day, fence FROM reports").fetchall() == [
        (m.group(1), int(m.group(2)))
    ]
    assert conn.execute("SELECT resource, fence FROM schedd_fences").fetchall() == [
        (f"report:{m.group(1)}", int(m.group(2)))
    ]
    conn.close()
    with cluster.client() as client:
        job = client.get_job("daily-report")
        assert job.schedule.cron == "0 6 * * *" and job.schedule.timezone == "Europe/Berlin"
        assert any(
            r.state == types_pb2.RUN_STATE_SUCCEEDED for r in client.list_runs("daily-report")
        )


def test_web_service_runs_the_worker_in_the_background_and_drains_on_sigterm(
    cluster: LocalCluster,
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "web_service.py"),
            "--endpoints",
            cluster.endpoints_env,
            "--port",
            "0",
            "--every-ms",
            "3600000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **client_env(cluster.endpoints_env)),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        url = f"http://127.0.0.1:{m.group(1)}"

        def get(path: str) -> dict[str, object]:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]

        assert get("/healthz") == {"worker": "running"}
        with cluster.client() as client:
            run = client.trigger_job("cache-refresh")
            page = wait_for(
                lambda: (x := get("/")) and x["refreshes"] == 1 and x,
                20,
                "a refresh in the web app",
            )
            assert page["last"]["run_id"] == run.run_id  # type: ignore[index]
            wait_for(
                lambda: client.get_run(run.run_id).state == types_pb2.RUN_STATE_SUCCEEDED,
                15,
                "the run's success",
            )
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0 and "stopped" in out, err
            assert "event=worker_stopped" in err
            client.delete_job("cache-refresh")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_shell_example_refuses_a_stale_fence(tmp_path: Path) -> None:
    if subprocess.run(["sh", "-c", "command -v sqlite3"], capture_output=True).returncode != 0:
        pytest.skip("the sqlite3 command line tool is not installed")
    db = tmp_path / "backups.db"

    def run(fence: int) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            BACKUP_DB=str(db),
            SCHEDD_RUN_ID="nightly-backup:3:1767322800000",
            SCHEDD_SCHEDULED_AT="2026-01-02T03:00:00Z",
            SCHEDD_ATTEMPT="1",
            SCHEDD_FENCE=str(fence),
        )
        return subprocess.run(
            ["sh", str(EXAMPLES / "shell" / "backup.sh")], capture_output=True, text=True, env=env
        )

    assert run(7).returncode == 0
    stale = run(4)
    assert stale.returncode == 1 and "stale fence 4" in stale.stderr
    assert run(7).returncode == 0  # the same attempt may write again
    assert run(9).returncode == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT day, fence FROM backups").fetchall() == [("2026-01-02", 9)]
    conn.close()


def test_jobs_file_uses_create_job_request_fields() -> None:
    """Every key of examples/jobs.toml is a CreateJobRequest field (or RetryPolicy field in
    [job.retry]), or one of the schedule keys `job apply` reads; each job has one schedule."""
    data = tomllib.loads((EXAMPLES / "jobs.toml").read_text())
    fields = set(api_pb2.CreateJobRequest.DESCRIPTOR.fields_by_name)
    retry_fields = set(types_pb2.RetryPolicy.DESCRIPTOR.fields_by_name)
    schedule_keys = {"cron", "every", "at", "timezone"}
    jobs = data["job"]
    assert len(jobs) >= 3
    for job in jobs:
        assert set(job) <= fields | schedule_keys, set(job) - fields - schedule_keys
        assert sum(k in job for k in ("cron", "every", "at")) == 1, job["name"]
        assert set(job.get("retry", {})) <= retry_fields
    try:
        from schedctl import spec  # the parser of `schedctl job apply`, when this tree has it
    except ImportError:
        return
    if hasattr(spec, "from_entry"):
        for i, job in enumerate(jobs):
            name, parsed = spec.from_entry(job, f"job[{i}]")
            assert name == job["name"] and parsed
