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


def test_job_list_json_is_streamed_page_by_page_as_one_array(
    server: type[FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``job list --json`` writes each page as it arrives; the output is exactly the one array
    a single listing would print, for any --limit and page size."""
    from schedctl import jobs as jobs_cmd

    for i in range(5):
        assert invoke(*EP, "job", "create", f"n{i}", "--every", "1h").exit_code == 0
    monkeypatch.setattr(jobs_cmd, "JOB_PAGE", 2)
    everything = [output.jsonable(Record(server.jobs[n])) for n in sorted(server.jobs)]
    for limit, want in ((1000, everything), (3, everything[:3]), (4, everything[:4])):
        server.calls.clear()
        r = invoke(*EP, "--json", "job", "list", "--limit", str(limit))
        assert r.exit_code == 0, r.output
        assert r.output == output.dumps(want) + "\n"
        pages = [c for c in server.calls if c[0] == "list_jobs"]
        assert len(pages) > 1 and all(kw["limit"] <= 2 for _, _, kw in pages)  # paged
    server.jobs.clear()
    r = invoke(*EP, "--json", "job", "list")
    assert r.exit_code == 0 and r.output == "[]\n"


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


def test_job_get_shows_the_resume_time_after_pause_then_resume() -> None:
    """After pause then resume, `job get` said "active since" the pause time (paused_ms stays
    set as the start of the last pause)."""
    sched = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="* * * * *")
    t_pause, t_resume = 1_700_000_000_000, 1_700_000_600_000
    paused = types_pb2.Job(
        name="n", schedule=sched, state=types_pb2.JOB_STATE_PAUSED, paused_ms=t_pause
    )
    assert "paused since 2023-11-14T22:13:20Z" in output.job_block(paused)
    resumed = types_pb2.Job(
        name="n",
        schedule=sched,
        state=types_pb2.JOB_STATE_ACTIVE,
        paused_ms=t_pause,
        resumed_ms=t_resume,
    )
    line = next(ln for ln in output.job_block(resumed).splitlines() if ln.startswith("state"))
    assert "active since 2023-11-14T22:23:20Z" in line
    assert "(paused 2023-11-14T22:13:20Z .. 2023-11-14T22:23:20Z)" in line
    fresh = types_pb2.Job(name="n", schedule=sched, state=types_pb2.JOB_STATE_ACTIVE)
    line = next(ln for ln in output.job_block(fresh).splitlines() if ln.startswith("state"))
    assert line.split() == ["state", "active"]


# ---- the direct path of output.message_to_dict against protobuf's MessageToDict ----------------

from google.protobuf.descriptor import FieldDescriptor  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MESSAGE_CLASSES = sorted(
    (
        getattr(module, name)
        for module in (types_pb2, api_pb2)
        for name in module.DESCRIPTOR.message_types_by_name
    ),
    key=lambda c: c.DESCRIPTOR.full_name,
)

_TEXT = st.text(alphabet=st.sampled_from('ab:é- "\\\n0'), max_size=6)
_VALUES = {
    FieldDescriptor.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.CPPTYPE_BOOL: st.booleans(),
    FieldDescriptor.CPPTYPE_STRING: _TEXT,
    FieldDescriptor.CPPTYPE_DOUBLE: st.floats(allow_nan=False, allow_infinity=False, width=32),
    FieldDescriptor.CPPTYPE_FLOAT: st.floats(allow_nan=False, allow_infinity=False, width=32),
}


def _fill(draw: st.DrawFn, msg: Any, depth: int) -> None:
    """Set a random subset of ``msg``'s fields: enums also to numbers they do not name,
    nested messages down to ``depth``."""
    for f in msg.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            for _ in range(draw(st.integers(0, 2))):
                getattr(msg, f.name)[draw(_TEXT)] = draw(_TEXT)
        elif f.message_type is not None:
            if depth <= 0:
                continue
            if f.is_repeated:
                for _ in range(draw(st.integers(0, 2))):
                    _fill(draw, getattr(msg, f.name).add(), depth - 1)
            else:
                getattr(msg, f.name).SetInParent()
                _fill(draw, getattr(msg, f.name), depth - 1)
        else:
            if f.enum_type is not None:
                values = st.one_of(
                    st.sampled_from([v.number for v in f.enum_type.values]), st.integers(0, 99)
                )
            elif f.type == FieldDescriptor.TYPE_BYTES:
                values = st.binary(max_size=4)
            else:
                values = _VALUES[f.cpp_type]
            if f.is_repeated:
                getattr(msg, f.name).extend(draw(st.lists(values, max_size=3)))
            else:
                setattr(msg, f.name, draw(values))


@st.composite
def messages(draw: st.DrawFn) -> Any:
    msg = draw(st.sampled_from(MESSAGE_CLASSES))()
    _fill(draw, msg, 2)
    return msg


@settings(max_examples=600, deadline=None)
@given(messages())
def test_the_direct_path_gives_what_message_to_dict_gives(msg: Any) -> None:
    try:
        want = output.reference_message_to_dict(msg)
    except ValueError as e:  # a time no calendar holds: the same error either way
        with pytest.raises(type(e)):
            output.message_to_dict(msg)
        return
    got = output.message_to_dict(msg)
    assert got == want
    assert json.dumps(got) == json.dumps(want)  # the same key order too, at every level


def test_the_direct_path_covers_jobs_and_runs() -> None:
    """Negative control: the property above would pass trivially if every message fell back."""
    for cls in (types_pb2.Job, types_pb2.Run, types_pb2.Schedule):
        assert output._plan(cls.DESCRIPTOR) is not None, cls
