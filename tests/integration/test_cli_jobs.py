"""The real schedctl against one real 3-node cluster (module-scoped, shared by every test here):
job apply idempotence and its dry-run diff, export round trips, update with versions, trigger
overlap and skip records, backfill and explain, contexts, JSON field names and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedd.pb import types_pb2

from .conftest import schedctl

pytestmark = pytest.mark.integration

T0 = "2026-01-01T00:00:00Z"
T0_MS = 1_767_225_600_000


def ok(eps: str, *args: str) -> subprocess.CompletedProcess[str]:
    p = schedctl(eps, *args)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    return p


def js(eps: str, *args: str) -> object:
    return json.loads(ok(eps, "--json", *args).stdout)


def one_error(p: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, (
        p.stderr
    )
    return lines[0]


BASIC = """
[[job]]
name = "ap-nightly"
cron = "0  3 * * *"
tz = "Europe/Berlin"
queue = "reports"
payload = { to = ["ops@example.com"] }
retry = { max_attempts = 3, initial_backoff = "10s", non_retryable_exit_codes = [3] }
run_timeout = "30m"

[[job]]
name = "ap-poll"
every = "90s"
jitter = "10s"

[[job]]
name = "ap-once"
at = "2030-01-02T03:04:05Z"
max_attempts = 2
"""


def test_apply_is_idempotent_and_export_round_trips(cluster, tmp_path: Path) -> None:
    eps = cluster.endpoints_env
    f = tmp_path / "jobs.toml"
    f.write_text(BASIC)
    first = js(eps, "job", "apply", "-f", str(f))
    assert first["counts"] == {"created": 3, "updated": 0, "unchanged": 0, "deleted": 0}
    before = {j["name"]: j for j in js(eps, "job", "list") if j["name"].startswith("ap-")}
    p = ok(eps, "job", "apply", "-f", str(f))
    assert p.stdout.splitlines() == [
        "job ap-nightly: unchanged",
        "job ap-poll: unchanged",
        "job ap-once: unchanged",
        "3 jobs: 3 unchanged",
    ]
    for fmt in ("toml", "yaml"):
        exported = tmp_path / f"export.{fmt}"
        exported.write_text(
            ok(eps, "job", "export", "ap-nightly", "ap-poll", "ap-once", "-o", fmt).stdout
        )
        doc = js(eps, "job", "apply", "-f", str(exported))
        assert doc["counts"]["unchanged"] == 3 and doc["counts"]["updated"] == 0, (fmt, doc)
    after = {j["name"]: j for j in js(eps, "job", "list") if j["name"].startswith("ap-")}
    assert after == before  # nothing was written: same versions, same everything


def test_dry_run_prints_the_diff_and_changes_nothing_then_apply_updates(
    cluster, tmp_path: Path
) -> None:
    eps = cluster.endpoints_env
    f = tmp_path / "jobs.toml"
    f.write_text(
        '[[job]]\nname = "dr"\ncron = "0 3 * * *"\nqueue = "a"\nretry = { initial_backoff = "1s" }\n'
    )
    ok(eps, "job", "apply", "-f", str(f))
    before = js(eps, "job", "get", "dr")
    f.write_text(
        '[[job]]\nname = "dr"\ncron = "0 4 * * *"\nqueue = "b"\nretry = { initial_backoff = "2s" }\n'
    )
    p = ok(eps, "job", "apply", "-f", str(f), "--dry-run")
    assert p.stdout.splitlines() == [
        "dry run: nothing was changed",
        "job dr: would be updated",
        '  cron: "0 3 * * *" -> "0 4 * * *"',
        '  queue: "a" -> "b"',
        "  retry.initial_backoff_ms: 1s -> 2s",
        "  retry.max_backoff_ms: 1m40s -> 3m20s",
        "1 job: 1 to update",
    ]
    assert js(eps, "job", "get", "dr") == before
    doc = js(eps, "job", "apply", "-f", str(f))
    assert doc["jobs"][0]["action"] == "updated"
    job = js(eps, "job", "get", "dr")
    assert job["schedule"]["cron"] == "0 4 * * *" and job["queue"] == "b"
    assert job["version"] == before["version"] + 1
    assert js(eps, "job", "apply", "-f", str(f))["jobs"][0]["action"] == "unchanged"


POLICIES = """
[[job]]
name = "pol-target"
every = "1h"

[[job]]
name = "pol"
cron = "30 2 * * *"
tz = "Europe/Berlin"
dst_gap = "skip"
dst_repeat = "twice"
start = "2030-01-01T00:00:00Z"
end = "2031-01-01T00:00:00Z"
misfire = "fire_all"
misfire_grace = "2m"
catchup_window = "6h"
max_catchup = 10
overlap = "forbid"
dispatch_timeout = "1h"
on_failure = "pol-target"
priority = 40
tags = { gpu = "yes" }
keep_runs = 20
keep_for = "7d"
max_runs = 100
"""


def test_apply_with_every_policy_is_idempotent(cluster, tmp_path: Path) -> None:
    eps = cluster.endpoints_env
    f = tmp_path / "pol.toml"
    f.write_text(POLICIES)
    assert js(eps, "job", "apply", "-f", str(f))["counts"]["created"] == 2
    job = js(eps, "job", "get", "pol")
    assert job["misfire"] == "MISFIRE_POLICY_FIRE_ALL" and job["overlap"] == "OVERLAP_POLICY_FORBID"
    assert (
        job["tags"] == {"gpu": "yes"}
        and job["priority"] == 40
        and job["on_failure"] == "pol-target"
    )
    assert job["schedule"]["dst_gap"] == "DST_GAP_SKIP" and job["keep_for_ms"] == 7 * 86_400_000
    doc = js(eps, "job", "apply", "-f", str(f))
    assert doc["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "deleted": 0}, doc
    exported = tmp_path / "pol-export.toml"
    exported.write_text(ok(eps, "job", "export", "pol", "pol-target").stdout)
    assert js(eps, "job", "apply", "-f", str(exported))["counts"]["unchanged"] == 2
    text = ok(eps, "job", "get", "pol").stdout
    for needle in (
        "fire_all, grace 2m, catch-up window 6h, at most 10 per catch-up",
        "forbid",
        "gpu=yes",
        "pol-target",
        "DST gap skip, repeat twice",
    ):
        assert needle in text, (needle, text)


def test_update_merges_and_detects_a_concurrent_change(cluster) -> None:
    eps = cluster.endpoints_env
    ok(eps, "job", "create", "upd", "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--queue", "q")
    v1 = js(eps, "job", "get", "upd")["version"]
    doc = js(eps, "job", "update", "upd", "--priority", "7", "--overlap", "forbid")
    assert doc["changed"] is True and doc["version"] == v1 + 1
    job = doc["job"]
    assert (
        job["priority"] == 7
        and job["queue"] == "q"
        and job["schedule"]["timezone"] == "Europe/Berlin"
    )
    p = schedctl(eps, "job", "update", "upd", "--priority", "8", "--expect-version", str(v1))
    assert p.returncode == 1 and "--force" in one_error(p)
    assert js(eps, "job", "get", "upd")["priority"] == 7  # nothing changed
    ok(eps, "job", "update", "upd", "--priority", "8", "--force")
    assert js(eps, "job", "get", "upd")["priority"] == 8
    assert "unchanged" in ok(eps, "job", "update", "upd", "--priority", "8").stdout
    p = schedctl(eps, "job", "update", "no-such-job", "--priority", "1")
    assert p.returncode == 3


def test_trigger_overlap_forbid_records_a_skip(cluster) -> None:
    eps = cluster.endpoints_env
    ok(
        eps,
        "job",
        "create",
        "ov",
        "--cron",
        "0 0 1 1 *",
        "--queue",
        "nobody-listens",
        "--overlap",
        "forbid",
    )
    first = js(eps, "job", "trigger", "ov")
    assert first["state"] == "RUN_STATE_PENDING" and first["origin"] == "RUN_ORIGIN_TRIGGER"
    second = js(eps, "job", "trigger", "ov")  # the first is still active (no worker on the queue)
    assert second["state"] == "RUN_STATE_SKIPPED" and second["skip_reason"] == "SKIP_REASON_OVERLAP"
    p = ok(eps, "run", "list", "--job", "ov", "--state", "skipped")
    row = p.stdout.splitlines()[1].split()
    assert row[3:5] == ["skipped", "trigger"] and row[-1] == "overlap"
    allowed = js(eps, "job", "trigger", "ov", "--overlap", "allow")
    assert allowed["state"] == "RUN_STATE_PENDING"
    ok(eps, "job", "pause", "ov")
    assert js(eps, "job", "resume", "ov", "--skip-missed")["state"] == "JOB_STATE_ACTIVE"


def test_backfill_then_explain(cluster) -> None:
    eps = cluster.endpoints_env
    ok(eps, "job", "create", "bf", "--cron", "0 * * * *", "--queue", "nobody-listens")
    p = ok(
        eps, "job", "backfill", "bf", "--from", T0, "--to", "2026-01-01T05:00:00Z", "--chunk", "4"
    )
    assert p.stdout.strip().endswith(
        "6 runs created, 0 slots already had a run or skip record (6 slots, 2 chunks)"
    )
    assert p.stderr == ""  # not a terminal: no progress bar
    again = js(eps, "job", "backfill", "bf", "--from", T0, "--to", "2026-01-01T05:00:00Z")
    assert again["created"] == 0 and again["existing"] == 6
    runs = js(eps, "run", "list", "--job", "bf")
    assert len(runs) == 6 and {r["origin"] for r in runs} == {"RUN_ORIGIN_BACKFILL"}
    assert sorted(r["scheduled_ms"] for r in runs) == [T0_MS + h * 3_600_000 for h in range(6)]

    doc = js(eps, "job", "explain", "bf", "--at", "2026-01-01T01:00:00Z")
    assert doc["slot_ms"] == T0_MS + 3_600_000 and doc["verdict"] and doc["explanation"]
    assert [r["scheduled_ms"] for r in doc["runs"]] == [T0_MS + 3_600_000]
    between = js(eps, "job", "explain", "bf", "--at", "2026-01-01T01:30:00Z")
    assert (
        between["previous_slot_ms"] == T0_MS + 3_600_000
        and between["next_slot_ms"] == T0_MS + 7_200_000
    )
    text = ok(eps, "job", "explain", "bf", "--at", "2026-01-01T01:00:00Z").stdout
    assert text.startswith("verdict") and "2026-01-01T01:00:00Z" in text and "backfill" in text
    p = schedctl(eps, "job", "backfill", "bf", "--from", "2026-01-02T00:00:00Z", "--to", T0)
    assert p.returncode == 2 and "--to" in one_error(p)
    assert schedctl(eps, "job", "explain", "no-such-job").returncode == 3


def test_json_field_names_and_exit_codes(cluster, tmp_path: Path) -> None:
    eps = cluster.endpoints_env
    ok(eps, "job", "create", "jf", "--every", "1h")
    job = js(eps, "job", "get", "jf")
    names = [f.name for f in types_pb2.Job.DESCRIPTOR.fields]
    assert [k for k in job if not k.endswith("_at")] == names
    assert job["next_due_at"].endswith("Z")
    assert (
        json.loads(ok(eps, "job", "get", "jf", "--json").stdout) == job
    )  # --json after the command
    nodes = js(eps, "cluster", "status")
    assert {n["status"]["role"] for n in nodes} >= {"leader"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[job]]\nname = "x"\nevery = "1m"\nmisfire = "maybe"\n')
    p = schedctl(eps, "job", "apply", "-f", str(bad))
    assert p.returncode == 2 and "misfire" in one_error(p)
    assert schedctl(eps, "job", "get", "x").returncode == 3  # nothing was created
    p = schedctl(eps, "job", "create", "jf", "--every", "1h")
    assert p.returncode == 5


def run_with_config(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDD_")}
    env["SCHEDD_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "schedctl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_contexts_pick_the_cluster(cluster, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    p = run_with_config(cfg, "job", "list")
    assert p.returncode == 2 and "use-context" in one_error(p)
    assert (
        run_with_config(
            cfg, "config", "set-context", "local", "--endpoints", cluster.endpoints_env, "--use"
        ).returncode
        == 0
    )
    # endpoints alone: TLS against the system roots, which do not know the dev CA
    p = run_with_config(cfg, "--retry-for", "1", "cluster", "status")
    assert "leader" not in p.stdout
    env = cluster.client_env
    creds = ["--ca", env["SCHEDD_CA"], "--cert", env["SCHEDD_CERT"], "--key", env["SCHEDD_KEY"]]
    creds += ["--token-file", env["SCHEDD_TOKEN_FILE"]]
    args = ["config", "set-context", "local", "--endpoints", cluster.endpoints_env, *creds]
    assert run_with_config(cfg, *args).returncode == 0
    p = run_with_config(cfg, "cluster", "status")
    assert p.returncode == 0 and "leader" in p.stdout
    p = run_with_config(cfg, "job", "list")
    assert p.returncode == 0, p.stderr
    assert run_with_config(cfg, "config", "current-context").stdout.strip() == "local"
    p = run_with_config(cfg, "--context", "elsewhere", "job", "list")
    assert p.returncode == 2 and "elsewhere" in one_error(p)


def test_apply_of_many_jobs_creates_them_in_bulk_and_names_a_bad_one(
    cluster, tmp_path: Path
) -> None:
    eps = cluster.endpoints_env
    many = "".join(
        f'[[job]]\nname = "bulk-{i:04d}"\nevery = "1h"\nqueue = "bulk"\n\n' for i in range(1200)
    )
    f = tmp_path / "many.toml"
    f.write_text(many)
    doc = js(eps, "job", "apply", "-f", str(f))  # two CreateJobs calls: 1,000 + 200
    assert doc["counts"]["created"] == 1200
    assert [j["name"] for j in doc["jobs"][:2]] == ["bulk-0000", "bulk-0001"]
    listed = js(eps, "job", "list", "--limit", "100000")
    names = {j["name"] for j in listed if j["name"].startswith("bulk-")}
    assert len(names) == 1200
    assert js(eps, "job", "apply", "-f", str(f))["counts"]["unchanged"] == 1200

    bad = tmp_path / "bad.toml"
    bad.write_text(  # in the first call: all or nothing, so nothing is created
        '[[job]]\nname = "bulkbad-late"\nat = "2001-01-01T00:00:00Z"\n\n'
        + many.replace("bulk-", "bulkbad-")
    )
    p = schedctl(eps, "job", "apply", "-f", str(bad))
    assert p.returncode == 2
    assert one_error(p).startswith("error: job 'bulkbad-late': schedule.at_ms: ")
    listed = js(eps, "job", "list", "--limit", "100000")
    assert not [j for j in listed if j["name"].startswith("bulkbad-")]
