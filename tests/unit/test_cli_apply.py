"""`schedctl job apply` / `job export` against an in-memory server that normalises like the
real one: idempotence, the dry-run diff, export round trips, prune, and bad files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from schedctl import spec, tomlout

from schedd import errors
from schedd.pb import types_pb2

from .test_cli_fakes import EP, NOW, FakeServer, invoke, writes

JOBS_TOML = """
[[job]]
name = "nightly"
cron = "0  3 * * *"          # extra space: the server stores it collapsed
tz = "Europe/Berlin"
misfire = "skip"
overlap = "forbid"
retry = { max_attempts = 3, initial_backoff = "10s" }
tags = { region = "eu" }
payload = { report = "daily", to = ["ops@example.com"] }
keep_for = "7d"
priority = 10
on_failure = "alert"

[[job]]
name = "alert"
every = "1h"
jitter = "30s"
queue = "ops"

[[job]]
name = "once"
at = 2030-06-01T12:00:00Z
run_timeout = "5m"

[[job]]
name = "legacy"
schedule = { cron = "@daily", timezone = "UTC" }
max_attempts = 2
catchup_window_ms = 3600000
"""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> type[FakeServer]:
    monkeypatch.setattr("schedctl.main.Client", FakeServer)
    FakeServer.reset()
    return FakeServer


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_apply_creates_then_is_idempotent(server: type[FakeServer], tmp_path: Path) -> None:
    f = write(tmp_path, "jobs.toml", JOBS_TOML)
    r = invoke(*EP, "job", "apply", "-f", f)
    assert r.exit_code == 0, r.output
    # one bulk call (CreateJobs) for the four creates
    assert [(c[0], c[2]["call"]) for c in writes()] == [("create_jobs", 1)] * 4
    # on_failure names "alert": it is created before "nightly"
    assert [c[1] for c in writes()].index("alert") < [c[1] for c in writes()].index("nightly")
    assert "4 jobs: 4 created" in r.stdout
    nightly = server.jobs["nightly"]
    assert nightly.schedule.cron == "0 3 * * *" and nightly.tags == {"region": "eu"}
    assert json.loads(nightly.payload) == {"report": "daily", "to": ["ops@example.com"]}
    assert nightly.retry.initial_backoff_ms == 10_000 and nightly.keep_for_ms == 7 * 86_400_000

    server.calls.clear()
    r = invoke(*EP, "job", "apply", "-f", f)
    assert r.exit_code == 0, r.output
    assert writes() == []
    assert r.stdout.count(": unchanged") == 4 and "4 jobs: 4 unchanged" in r.stdout

    doc = json.loads(invoke(*EP, "--json", "job", "apply", "-f", f).stdout)
    assert doc["counts"] == {"created": 0, "updated": 0, "unchanged": 4, "deleted": 0}
    assert {j["action"] for j in doc["jobs"]} == {"unchanged"}


def test_dry_run_prints_the_diff_and_changes_nothing(
    server: type[FakeServer], tmp_path: Path
) -> None:
    f = write(tmp_path, "jobs.toml", JOBS_TOML)
    assert invoke(*EP, "job", "apply", "-f", f).exit_code == 0
    changed = (
        JOBS_TOML.replace('misfire = "skip"', 'misfire = "fire_all"')
        .replace('initial_backoff = "10s"', 'initial_backoff = "20s"')
        .replace('jitter = "30s"', 'jitter = "1m"')
    )
    f2 = write(tmp_path, "jobs2.toml", changed)
    server.calls.clear()
    r = invoke(*EP, "job", "apply", "-f", f2, "--dry-run")
    assert r.exit_code == 0, r.output
    assert writes() == []
    out = r.stdout
    assert "dry run: nothing was changed" in out
    assert "job nightly: would be updated" in out
    assert '  misfire: "skip" -> "fire_all"' in out
    assert "  retry.initial_backoff_ms: 10s -> 20s" in out
    # the cap follows the default (100 x initial), which the server writes out: shown as well
    assert "  retry.max_backoff_ms: 16m40s -> 33m20s" in out
    assert "job alert: would be updated" in out and "  jitter_ms: 30s -> 1m" in out
    assert "job once: unchanged" in out and "job legacy: unchanged" in out
    assert out.splitlines()[-1] == "4 jobs: 2 to update, 2 unchanged"

    doc = json.loads(invoke(*EP, "job", "apply", "-f", f2, "--dry-run", "--json").stdout)
    assert doc["dry_run"] is True
    nightly = next(j for j in doc["jobs"] if j["name"] == "nightly")
    assert {"field": "misfire", "old": "skip", "new": "fire_all"} in nightly["changes"]
    assert writes() == []

    version = server.jobs["nightly"].version
    r = invoke(*EP, "job", "apply", "-f", f2)
    assert r.exit_code == 0, r.output
    ups = [c for c in writes() if c[0] == "update_job"]
    assert sorted(c[1] for c in ups) == ["alert", "nightly"]
    nightly_up = next(c for c in ups if c[1] == "nightly")
    assert nightly_up[2]["expect_version"] == version
    assert server.jobs["nightly"].misfire == 3 and server.jobs["nightly"].version == version + 1
    # what the file leaves out keeps its value (priority was in the file; the queue was not)
    assert server.jobs["nightly"].priority == 10
    server.calls.clear()
    assert "4 jobs: 4 unchanged" in invoke(*EP, "job", "apply", "-f", f2).stdout
    assert writes() == []


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_export_then_apply_is_unchanged(server: type[FakeServer], tmp_path: Path, fmt: str) -> None:
    assert invoke(*EP, "job", "apply", "-f", write(tmp_path, "jobs.toml", JOBS_TOML)).exit_code == 0
    r = invoke(*EP, "job", "export", "-o", fmt)
    assert r.exit_code == 0, r.output
    exported = write(tmp_path, f"export.{fmt}", r.stdout)
    server.calls.clear()
    r = invoke(*EP, "job", "apply", "-f", exported)
    assert r.exit_code == 0, r.output
    assert "4 jobs: 4 unchanged" in r.stdout and writes() == []
    # and into an empty cluster it creates the same jobs
    before = {n: j.SerializeToString(deterministic=True) for n, j in server.jobs.items()}
    server.jobs.clear()
    assert invoke(*EP, "job", "apply", "-f", exported).exit_code == 0
    assert {n: j.SerializeToString(deterministic=True) for n, j in server.jobs.items()} == before


def test_export_leaves_defaults_out(server: type[FakeServer], tmp_path: Path) -> None:
    assert invoke(*EP, "job", "apply", "-f", write(tmp_path, "jobs.toml", JOBS_TOML)).exit_code == 0
    doc = tomllib.loads(invoke(*EP, "job", "export", "alert", "once").stdout)
    assert doc == {
        "job": [
            {"name": "alert", "every": "1h", "jitter": "30s", "queue": "ops"},
            {"name": "once", "at": "2030-06-01T12:00:00Z", "run_timeout": "5m"},
        ]
    }
    entries = yaml.safe_load(invoke(*EP, "job", "export", "nightly", "-o", "yaml").stdout)
    assert entries[0]["misfire"] == "skip" and entries[0]["tags"] == {"region": "eu"}
    assert entries[0]["retry"]["initial_backoff"] == "10s"
    assert invoke(*EP, "job", "export", "nope").exit_code == 3


def test_prune_needs_a_selector_and_deletes_only_selected(
    server: type[FakeServer], tmp_path: Path
) -> None:
    f = write(tmp_path, "jobs.toml", JOBS_TOML)
    assert invoke(*EP, "job", "apply", "-f", f).exit_code == 0
    invoke(*EP, "job", "create", "stray-ops", "--every", "1h", "--queue", "ops")
    invoke(*EP, "job", "create", "stray-default", "--every", "1h")
    r = invoke(*EP, "job", "apply", "-f", f, "--prune")
    assert r.exit_code == 2 and "--selector" in r.stderr
    r = invoke(*EP, "job", "apply", "-f", f, "--prune", "--selector", "queue=ops", "--dry-run")
    assert r.exit_code == 0 and "job stray-ops: would be deleted" in r.stdout
    assert "stray-ops" in server.jobs
    r = invoke(*EP, "job", "apply", "-f", f, "--prune", "--selector", "queue=ops")
    assert r.exit_code == 0, r.output
    assert (
        "stray-ops" not in server.jobs and "stray-default" in server.jobs and "alert" in server.jobs
    )
    assert invoke(*EP, "job", "apply", "-f", f, "--prune", "--selector", "color=red").exit_code == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[[job]]\nname = "a"\ncron = "* * * * *"\nmisfire = "sometimes"\n',
            "job #1 (a): misfire: 'sometimes' is not one of",
        ),
        (
            '[[job]]\nname = "a"\ncron = "* * * * *"\ncolour = "red"\n',
            "job #1 (a): colour: unknown key",
        ),
        ('[[job]]\nname = "a"\n', "job #1 (a): schedule: give exactly one of cron, every or at"),
        ('[[job]]\nname = "a"\nevery = "soon"\n', "job #1 (a): every: 'soon' is not a duration"),
        (
            '[[job]]\nname = "a"\nevery = "1m"\ntz = "UTC"\n',
            "job #1 (a): tz: applies to cron schedules only",
        ),
        ('[[job]]\nname = "a"\ncron = "61 * * * *"\n', "job #1 (a): cron:"),
        (
            '[[job]]\nname = "a"\ncron = "* * * * *"\ntz = "Mars/Base"\n',
            "job #1 (a): tz: unknown time zone",
        ),
        (
            '[[job]]\nname = "a"\ncron = "* * * * *"\nretry = { multiplier = 50 }\n',
            "job #1 (a): retry.multiplier",
        ),
        ('[[job]]\nname = "a"\nat = 2030-01-01T00:00:00\n', "has no UTC offset"),
        (
            '[[job]]\nname = "a"\ncron = "* * * * *"\n[[job]]\nname = "a"\nevery = "1m"\n',
            "declared twice",
        ),
        ('[[job]]\nname = "a"\ncron = "* * * * *"\nevery = "1m"\n', "got cron, every_ms"),
        (
            '[[job]]\nname = "a"\ncron = "* * * * *"\ntags = { gpu = true }\n',
            "tags.gpu: must be a string",
        ),
        ("[jobs]\n", "unknown top-level key 'jobs'"),
        ("[[job]\n", "not valid TOML"),
    ],
)
def test_bad_files_are_one_line_exit_2_and_change_nothing(
    server: type[FakeServer], tmp_path: Path, text: str, needle: str
) -> None:
    f = write(tmp_path, "bad.toml", text)
    r = invoke(*EP, "job", "apply", "-f", f)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert server.calls == []


def test_yaml_list_and_stdin(server: type[FakeServer], tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "jobs.yml",
        "- name: a\n  every: 90s\n  overlap: buffer-one\n- name: b\n  at: 2030-01-02T00:00:00Z\n",
    )
    r = invoke(*EP, "job", "apply", "-f", f)
    assert r.exit_code == 0, r.output
    assert server.jobs["a"].overlap == 3 and server.jobs["b"].schedule.at_ms == NOW + 86_400_000
    r = invoke(
        *EP,
        "job",
        "apply",
        "-f",
        "-",
        input='[[job]]\nname = "a"\nevery = "90s"\noverlap = "buffer_one"\n',
    )
    assert r.exit_code == 0 and "job a: unchanged" in r.stdout


def test_a_concurrent_change_stops_the_apply_with_exit_1(
    server: type[FakeServer], tmp_path: Path
) -> None:
    f = write(tmp_path, "jobs.toml", JOBS_TOML)
    assert invoke(*EP, "job", "apply", "-f", f).exit_code == 0
    server.fail = {"update_job": errors.FailedPrecondition("job 'nightly' is at version 2, not 1")}
    r = invoke(
        *EP,
        "job",
        "apply",
        "-f",
        write(tmp_path, "j2.toml", JOBS_TOML.replace("priority = 10", "priority = 11")),
    )
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        "error: job 'nightly': job 'nightly' is at version 2, not 1; the jobs listed above were "
        "applied, the rest were not tried"
    ]


def many_jobs(n: int, start: int = 0) -> str:
    return "".join(
        f'[[job]]\nname = "j{i:05d}"\nevery = "1h"\npayload = {{ n = {i} }}\n\n'
        for i in range(start, start + n)
    )


def test_many_jobs_are_created_in_bulk_calls_of_at_most_1000(
    server: type[FakeServer], tmp_path: Path
) -> None:
    f = write(tmp_path, "many.toml", many_jobs(2500))
    r = invoke(*EP, "job", "apply", "-f", f)
    assert r.exit_code == 0, r.output
    calls = [c[2]["call"] for c in writes()]
    assert [calls.count(k) for k in (1, 2, 3)] == [1000, 1000, 500] and len(calls) == 2500
    assert len(server.jobs) == 2500
    lines = r.stdout.splitlines()
    assert lines[0] == "job j00000: created" and lines[-1] == "2500 jobs: 2500 created"
    server.calls.clear()
    r = invoke(*EP, "--json", "job", "apply", "-f", f)
    assert json.loads(r.stdout)["counts"]["unchanged"] == 2500 and writes() == []


def test_creates_go_before_an_update_that_follows_them_and_lines_keep_file_order(
    server: type[FakeServer], tmp_path: Path
) -> None:
    assert invoke(*EP, "job", "apply", "-f", write(tmp_path, "a.toml", many_jobs(2))).exit_code == 0
    server.calls.clear()
    text = many_jobs(1, 5) + many_jobs(1, 0) + many_jobs(1, 1).replace('"1h"', '"2h"')
    text += many_jobs(1, 6)
    r = invoke(*EP, "job", "apply", "-f", write(tmp_path, "b.toml", text))
    assert r.exit_code == 0, r.output
    assert [(c[0], c[1]) for c in writes()] == [
        ("create_jobs", "j00005"),
        ("update_job", "j00001"),
        ("create_jobs", "j00006"),
    ]
    assert [ln for ln in r.stdout.splitlines() if not ln.startswith("  +")] == [
        "job j00005: created",
        "job j00000: unchanged",
        "job j00001: updated",
        "  every_ms: 1h -> 2h",
        "job j00006: created",
        "4 jobs: 2 created, 1 updated, 1 unchanged",
    ]


def test_an_invalid_job_in_a_bulk_call_is_named_and_nothing_is_created(
    server: type[FakeServer], tmp_path: Path
) -> None:
    text = many_jobs(3) + '[[job]]\nname = "late"\nat = 2001-01-01T00:00:00Z\n'
    r = invoke(*EP, "job", "apply", "-f", write(tmp_path, "bad.toml", text))
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: job 'late': schedule.at_ms: "), lines
    assert server.jobs == {}


def test_a_job_created_meanwhile_stops_the_apply_after_its_call(
    server: type[FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = FakeServer.get_job

    def racing_get(self: FakeServer, name: str) -> object:
        try:
            return real_get(self, name)
        finally:  # after apply read j00001 (not found), someone else creates it
            if name == "j00002":
                FakeServer.jobs["j00001"] = types_pb2.Job(name="j00001")

    monkeypatch.setattr(FakeServer, "get_job", racing_get)
    r = invoke(*EP, "job", "apply", "-f", write(tmp_path, "m.toml", many_jobs(3)))
    assert r.exit_code == 5, r.output  # ALREADY_EXISTS, as for a single create
    assert [ln for ln in r.stdout.splitlines() if not ln.startswith("  +")] == [
        "job j00000: created",
        "job j00002: created",
        "2 jobs: 2 created",
    ]
    assert r.stderr.strip() == (
        "error: job 'j00001': name: a job named 'j00001' already exists; the jobs listed above "
        "were applied, the rest were not tried"
    )


@pytest.mark.parametrize(
    "refusal",
    [
        errors.Internal("Method not found!"),
        errors.FailedPrecondition(
            "CreateJobs calls (bulk job creation) need cluster feature level 3; the cluster runs "
            "at 2 because n1 run(s) an older version"
        ),
    ],
)
def test_without_create_jobs_on_the_server_each_job_is_created_alone(
    server: type[FakeServer], tmp_path: Path, refusal: errors.SchedError
) -> None:
    server.fail = {"create_jobs": refusal}
    r = invoke(*EP, "job", "apply", "-f", write(tmp_path, "m.toml", many_jobs(3)))
    assert r.exit_code == 0, r.output
    assert [c[0] for c in writes()] == ["create_jobs"] + ["create_job"] * 3
    assert sorted(server.jobs) == ["j00000", "j00001", "j00002"]


# ---- the pure parts ----------------------------------------------------------------------------


def test_spec_diff_compares_only_what_the_file_sets() -> None:
    current = {"cron": "0 3 * * *", "tz": "UTC", "queue": "q", "priority": 5, "payload": '{"a": 1}'}
    assert spec.diff({"cron": "0 3 * * *", "payload": '{ "a" : 1 }'}, current) == []
    assert spec.diff({"priority": 6, "allow_past": True}, current) == [("priority", 5, 6)]
    assert spec.diff({"queue": "q"}, None) == [("queue", None, "q")]


def test_merge_flags_switches_schedule_kinds_and_merges_tags() -> None:
    base = {
        "cron": "0 3 * * *",
        "tz": "Europe/Berlin",
        "dst_gap": "skip",
        "dst_repeat": "once",
        "tags": {"a": "1", "b": "2"},
        "retry": {"max_attempts": 5, "multiplier": 2.0},
    }
    out = spec.merge_flags(
        base, {"every_ms": 60_000, "tags": {"a": None, "c": "3"}, "max_attempts": 2}
    )
    assert "cron" not in out and "tz" not in out and "dst_gap" not in out
    assert out["every_ms"] == 60_000 and out["tags"] == {"b": "2", "c": "3"}
    assert out["retry"]["max_attempts"] == 2 and out["max_attempts"] == 2
    out = spec.merge_flags(base, {"cron": "0 4 * * *"})
    assert out["tz"] == "Europe/Berlin" and out["dst_gap"] == "skip"


def test_max_attempts_follows_into_the_retry_policy_without_touching_the_base() -> None:
    base = {"every_ms": 60_000, "max_attempts": 5, "retry": {"max_attempts": 5, "multiplier": 2.0}}
    out = spec.merge_flags(base, {"max_attempts": 3})
    assert out["retry"]["max_attempts"] == 3 and base["retry"]["max_attempts"] == 5
    assert spec.diff(out, base) == [("max_attempts", 5, 3), ("retry.max_attempts", 5, 3)]
    out = spec.merge_file(base, {"every_ms": 60_000, "max_attempts": 2})
    assert out["retry"]["max_attempts"] == 2 and base["retry"]["max_attempts"] == 5


def test_a_new_overlap_policy_brings_its_own_max_concurrent_default() -> None:
    allow = {"every_ms": 60_000, "overlap": "allow", "max_concurrent": 0}
    assert "max_concurrent" not in spec.merge_flags(allow, {"overlap": "forbid"})
    assert "max_concurrent" not in spec.merge_file(allow, {"every_ms": 60_000, "overlap": "forbid"})
    custom = {**allow, "max_concurrent": 3}
    assert spec.merge_flags(custom, {"overlap": "forbid"})["max_concurrent"] == 3
    assert (
        spec.merge_flags(allow, {"overlap": "forbid", "max_concurrent": 2})["max_concurrent"] == 2
    )


def test_toml_writer_round_trips() -> None:
    doc = {
        "current-context": "prod",
        "x": 1.5,
        "ok": True,
        "list": [1, 2],
        "contexts": {"prod": {"endpoints": ["a:1", "b:2"]}, "a b": {"endpoints": "c:3"}},
        "job": [{"name": 'we"ird\\\n\x7f', "tags": {"k.1": "v"}, "retry": {}}],
    }
    assert tomllib.loads(tomlout.dumps(doc)) == doc
