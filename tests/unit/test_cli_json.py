"""Golden tests of schedctl's --json field names (docs/cli.md documents them: a rename here is
a breaking change for scripts) and of the per-command --json flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from schedctl import main as cli_main
from schedctl import output

from schedd.pb import api_pb2, types_pb2

from .test_cli_fakes import EP, NOW, FakeServer, Record, invoke

JOB_KEYS = [
    "name",
    "schedule",
    "queue",
    "payload",
    "state",
    "next_due_ms",
    "next_due_at",
    "created_ms",
    "created_at",
    "uid",
    "max_attempts",
    "retry",
    "run_timeout_ms",
    "misfire",
    "misfire_grace_ms",
    "catchup_window_ms",
    "max_catchup",
    "overlap",
    "max_concurrent",
    "dispatch_timeout_ms",
    "on_success",
    "on_failure",
    "priority",
    "tags",
    "keep_runs",
    "keep_for_ms",
    "version",
    "paused_ms",
    "paused_at",
    "max_runs",
    "fired_runs",
    "buffered_run",
    "updated_ms",
    "updated_at",
]
SCHEDULE_KEYS = [
    "kind",
    "cron",
    "timezone",
    "at_ms",
    "at",
    "every_ms",
    "anchor_ms",
    "anchor_at",
    "start_ms",
    "start_at",
    "end_ms",
    "end_at",
    "jitter_ms",
    "dst_gap",
    "dst_repeat",
]
RETRY_KEYS = [
    "max_attempts",
    "initial_backoff_ms",
    "multiplier",
    "max_backoff_ms",
    "non_retryable_exit_codes",
    "non_retryable_errors",
]
RUN_KEYS = [
    "run_id",
    "job",
    "scheduled_ms",
    "scheduled_at",
    "state",
    "attempt",
    "fence",
    "worker_id",
    "not_before_ms",
    "not_before_at",
    "started_ms",
    "started_at",
    "finished_ms",
    "finished_at",
    "error",
    "queue",
    "manual",
    "exit_code",
    "attempt_base",
    "origin",
    "skip_reason",
    "skipped_until_ms",
    "skipped_until_at",
    "skipped_count",
    "note",
    "priority",
    "tags",
    "dispatch_deadline_ms",
    "dispatch_deadline_at",
    "caused_by",
    "progress",
]
EXPLAIN_KEYS = [
    "verdict",
    "explanation",
    "slot_ms",
    "slot_at",
    "runs",
    "previous_slot_ms",
    "previous_slot_at",
    "next_slot_ms",
    "next_slot_at",
]
NODE_KEYS = [
    "node_id",
    "role",
    "term",
    "commit_index",
    "applied_index",
    "leader_id",
    "leader_grpc",
    "grpc_address",
    "raft_address",
    "has_quorum",
    "state_digest",
    "workers",
    "peers",
]


def keys(doc: dict[str, Any], golden: list[str]) -> list[str]:
    """The golden keys in the order ``doc`` has them: a field added to the proto later is not a
    breaking change, a renamed, removed or reordered one is."""
    return [k for k in doc if k in golden]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> type[FakeServer]:
    monkeypatch.setattr("schedctl.main.Client", FakeServer)
    monkeypatch.setattr("schedctl.common.now_ms", lambda: NOW)
    FakeServer.reset()
    return FakeServer


def j(*args: str) -> Any:
    r = invoke(*EP, *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_job_documents(server: type[FakeServer]) -> None:
    created = j("--json", "job", "create", "n", "--every", "1h", "--backoff", "1s", "--tag", "a=b")
    assert keys(created, JOB_KEYS) == JOB_KEYS
    assert keys(created["schedule"], SCHEDULE_KEYS) == SCHEDULE_KEYS
    assert keys(created["retry"], RETRY_KEYS) == RETRY_KEYS
    assert created["schedule"]["kind"] == "SCHEDULE_KIND_INTERVAL" and created["tags"] == {"a": "b"}
    assert created["misfire"] == "MISFIRE_POLICY_FIRE_ONCE" and created["version"] == 1
    assert j("job", "get", "n", "--json") == created
    assert [keys(x, JOB_KEYS) for x in j("job", "list", "--json")] == [JOB_KEYS]
    updated = j("job", "update", "n", "--priority", "3", "--json")
    assert list(updated) == ["name", "changed", "version", "changes", "job"]
    assert updated["changes"] == [{"field": "priority", "old": 0, "new": 3}]
    assert updated["version"] == 2 and keys(updated["job"], JOB_KEYS) == JOB_KEYS
    same = j("job", "update", "n", "--priority", "3", "--json")
    assert same["changed"] is False and same["changes"] == []
    assert j("job", "delete", "n", "--json") == {"name": "n", "deleted": True}


def test_run_explain_trigger_and_cluster_documents(server: type[FakeServer]) -> None:
    server.runs = [
        types_pb2.Run(
            run_id="r",
            job="n",
            state=types_pb2.RUN_STATE_SKIPPED,
            skip_reason=types_pb2.SKIP_REASON_OVERLAP,
            origin=types_pb2.RUN_ORIGIN_BACKFILL,
        )
    ]
    runs = j("run", "list", "--json")
    assert [keys(r, RUN_KEYS) for r in runs] == [RUN_KEYS]
    assert (
        runs[0]["skip_reason"] == "SKIP_REASON_OVERLAP"
        and runs[0]["origin"] == "RUN_ORIGIN_BACKFILL"
    )
    server.explain = api_pb2.ExplainResponse(verdict="ran", runs=[types_pb2.Run(run_id="r")])
    explained = j("job", "explain", "n", "--at", "now", "--json")
    assert keys(explained, EXPLAIN_KEYS) == EXPLAIN_KEYS
    assert keys(explained["runs"][0], RUN_KEYS) == RUN_KEYS
    assert invoke(*EP, "job", "create", "n", "--every", "1h").exit_code == 0
    assert keys(j("job", "trigger", "n", "--json"), RUN_KEYS) == RUN_KEYS
    nodes = j("cluster", "status", "--json")
    assert [list(n) for n in nodes] == [["endpoint", "reachable", "error", "status"]] * 2
    assert keys(nodes[0]["status"], NODE_KEYS) == NODE_KEYS and nodes[1]["status"] is None


def test_apply_and_backfill_documents(server: type[FakeServer], tmp_path: Path) -> None:
    f = tmp_path / "j.toml"
    f.write_text('[[job]]\nname = "n"\nevery = "1h"\n')
    doc = j("job", "apply", "-f", str(f), "--json")
    assert doc == {
        "dry_run": False,
        "jobs": [
            {
                "name": "n",
                "action": "created",
                "changes": [{"field": "every_ms", "old": None, "new": 3_600_000}],
            }
        ],
        "counts": {"created": 1, "updated": 0, "unchanged": 0, "deleted": 0},
    }
    server.backfill_chunks = [api_pb2.BackfillResponse(created=1, total_slots=1)]
    assert list(j("job", "backfill", "n", "--from", "-1h", "--to", "now", "--json")) == [
        "name",
        "from_ms",
        "from_at",
        "to_ms",
        "to_at",
        "total_slots",
        "created",
        "existing",
        "chunks",
    ]
    assert j("job", "export", "--json") == {"job": [{"name": "n", "every": "1h"}]}
    assert list(j("job", "preview", "--every", "1h", "--count", "1", "--json")[0]) == [
        "due_ms",
        "due_at",
    ]


def test_records_and_messages_print_the_same_json() -> None:
    job = types_pb2.Job(
        name="n", schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="* * * * *")
    )
    assert output.dumps(Record(job)) == output.dumps(job)
    assert output.dumps([Record(job), {"x": Record(job)}]) == output.dumps([job, {"x": job}])
    assert output.job_block(Record(job)) == output.job_block(job)


def _leaves(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += _leaves(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


def test_every_command_takes_json_after_it() -> None:
    without = {("completion",), ("worker", "run")}
    for path, cmd in _leaves(cli_main.cli):
        has = any("--json" in p.opts for p in cmd.params)
        assert has == (path not in without), path
