"""schedctl's scheduling commands with an in-memory server: create flags, update (merge,
expected version), resume, trigger, backfill (progress, Ctrl-C), explain, skip records in
`run list`, --watch, completion, and time parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from schedctl import common

from schedd import errors
from schedd.pb import api_pb2, types_pb2

from .test_cli_fakes import EP, NOW, FakeServer, invoke, writes


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> type[FakeServer]:
    monkeypatch.setattr("schedctl.main.Client", FakeServer)
    monkeypatch.setattr(common, "now_ms", lambda: NOW)
    FakeServer.reset()
    return FakeServer


def last_write() -> tuple[str, str, dict[str, Any]]:
    return writes()[-1]


def test_create_passes_every_policy_flag(server: type[FakeServer]) -> None:
    r = invoke(
        *EP,
        "job",
        "create",
        "j",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--misfire",
        "fire_all",
        "--misfire-grace",
        "2m",
        "--catchup-window",
        "6h",
        "--max-catchup",
        "10",
        "--overlap",
        "buffer_one",
        "--max-concurrent",
        "2",
        "--dispatch-timeout",
        "1h",
        "--on-success",
        "next",
        "--on-failure",
        "alert",
        "--priority",
        "70",
        "--tag",
        "gpu=yes",
        "--tag",
        "zone=eu",
        "--keep-runs",
        "50",
        "--keep-for",
        "7d",
        "--max-runs",
        "3",
        "--start",
        "2030-01-02T00:00:00Z",
        "--end",
        "2031-01-01T00:00:00+01:00",
        "--dst-gap",
        "skip",
        "--dst-repeat",
        "twice",
        "--jitter",
        "5s",
    )
    assert r.exit_code == 0, r.output
    _, name, kw = last_write()
    assert name == "j"
    kw.pop("request_id")
    assert kw == {
        "cron": "0 3 * * *",
        "tz": "Europe/Berlin",
        "at_ms": None,
        "every_ms": None,
        "jitter_ms": 5000,
        "queue": "default",
        "payload": "",
        "max_attempts": 0,
        "misfire": "fire_all",
        "misfire_grace_ms": 120_000,
        "catchup_window_ms": 6 * 3_600_000,
        "max_catchup": 10,
        "overlap": "buffer_one",
        "max_concurrent": 2,
        "dispatch_timeout_ms": 3_600_000,
        "on_success": "next",
        "on_failure": "alert",
        "priority": 70,
        "tags": {"gpu": "yes", "zone": "eu"},
        "keep_runs": 50,
        "keep_for_ms": 7 * 86_400_000,
        "max_runs": 3,
        "start_ms": NOW + 86_400_000,
        "end_ms": NOW + 365 * 86_400_000 - 3_600_000,
        "dst_gap": "skip",
        "dst_repeat": "twice",
    }
    job = server.jobs["j"]
    assert (
        job.misfire == types_pb2.MISFIRE_POLICY_FIRE_ALL
        and job.schedule.dst_gap == types_pb2.DST_GAP_SKIP
    )
    out = invoke(*EP, "job", "get", "j").stdout
    for needle in [
        "fire_all, grace 2m, catch-up window 6h, at most 10 per catch-up",
        "buffer_one, at most 2 at once",
        "dispatch timeout  1h",
        "priority          70",
        "gpu=yes, zone=eu",
        "on failure        alert",
        "max runs          0 fired of 3",
        "newest 50 finished runs, finished runs for 7d",
        "DST gap skip, repeat twice",
        "from 2030-01-02T00:00:00Z; until 2030-12-31T23:00:00Z; jitter 5s",
        "version           1",
    ]:
        assert needle in out, (needle, out)


def test_create_one_shots_in_and_at(server: type[FakeServer]) -> None:
    assert invoke(*EP, "job", "create", "soon", "--in", "10m").exit_code == 0
    assert last_write()[2]["at_ms"] == NOW + 600_000
    assert invoke(*EP, "job", "create", "rel", "--at", "now+1h").exit_code == 0
    assert last_write()[2]["at_ms"] == NOW + 3_600_000
    invoke(*EP, "job", "create", "past", "--at", "2029-01-01T00:00:00Z", "--allow-past")
    assert (
        last_write()[2]["allow_past"] is True and last_write()[2]["at_ms"] == NOW - 365 * 86_400_000
    )
    r = invoke(*EP, "job", "create", "x", "--at", "now", "--in", "1m")
    assert r.exit_code == 2 and "--in" in r.stderr
    r = invoke(*EP, "job", "create", "x", "--every", "1m", "--tag", "novalue")
    assert r.exit_code == 2 and r.stderr.startswith("error: --tag:")
    r = invoke(*EP, "job", "create", "x", "--every", "1m", "--misfire", "sometimes")
    assert r.exit_code == 2 and "--misfire" in r.stderr


def test_server_errors_about_new_fields_name_the_option(server: type[FakeServer]) -> None:
    server.fail = {
        "create_job": errors.InvalidArgument("catchup_window_ms", "0 ms is out of range")
    }
    r = invoke(*EP, "job", "create", "x", "--every", "1m", "--catchup-window", "0s")
    assert r.exit_code == 2 and r.stderr.strip() == "error: --catchup-window: 0 ms is out of range"
    server.fail = {}
    invoke(*EP, "job", "create", "x", "--every", "1m")
    server.fail = {"update_job": errors.InvalidArgument("job.priority", "101 is over 100")}
    r = invoke(*EP, "job", "update", "x", "--priority", "100")
    assert r.exit_code == 2 and r.stderr.strip() == "error: --priority: 101 is over 100"


def test_update_merges_flags_over_the_current_definition(server: type[FakeServer]) -> None:
    assert (
        invoke(
            *EP,
            "job",
            "create",
            "n",
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Berlin",
            "--queue",
            "q",
            "--tag",
            "a=1",
            "--tag",
            "b=2",
            "--backoff",
            "1s",
        ).exit_code
        == 0
    )
    r = invoke(*EP, "job", "update", "n", "--priority", "5", "--tag", "a-", "--misfire", "skip")
    assert r.exit_code == 0, r.output
    _, _, kw = last_write()
    assert kw["expect_version"] == 1
    assert kw["cron"] == "0 3 * * *" and kw["tz"] == "Europe/Berlin" and kw["queue"] == "q"
    assert kw["priority"] == 5 and kw["tags"] == {"b": "2"} and kw["misfire"] == "skip"
    assert kw["retry"]["initial_backoff_ms"] == 1000
    assert "updated job n (version 1 -> 2)" in r.stdout
    assert "  priority: 0 -> 5" in r.stdout and '  misfire: "fire_once" -> "skip"' in r.stdout
    job = server.jobs["n"]
    assert job.version == 2 and job.priority == 5 and dict(job.tags) == {"b": "2"}

    # a new kind of schedule replaces the old one and its cron-only settings
    r = invoke(*EP, "job", "update", "n", "--every", "15m")
    assert r.exit_code == 0, r.output
    kw = last_write()[2]
    assert "cron" not in kw and "tz" not in kw and kw["every_ms"] == 900_000
    assert server.jobs["n"].schedule.kind == types_pb2.SCHEDULE_KIND_INTERVAL
    assert server.jobs["n"].priority == 5  # everything else stays
    r = invoke(*EP, "job", "update", "n", "--tz", "UTC")
    assert r.exit_code == 2 and "--tz" in r.stderr
    r = invoke(*EP, "job", "update", "n", "--overlap", "forbid")  # allow's limit 0 must not stay
    assert r.exit_code == 0, r.output
    assert server.jobs["n"].max_concurrent == 1 and "max_concurrent" not in last_write()[2]


def test_update_version_checks(server: type[FakeServer]) -> None:
    invoke(*EP, "job", "create", "n", "--every", "1m")
    assert invoke(*EP, "job", "update", "n", "--priority", "1", "--force").exit_code == 0
    assert last_write()[2]["expect_version"] == 0
    r = invoke(*EP, "job", "update", "n", "--priority", "2", "--expect-version", "1")
    assert r.exit_code == 1
    assert (
        "version 2, not 1" in r.stderr and "--force" in r.stderr and len(r.stderr.splitlines()) == 1
    )
    assert (
        invoke(*EP, "job", "update", "n", "--priority", "2", "--expect-version", "2").exit_code == 0
    )
    assert (
        invoke(
            *EP, "job", "update", "n", "--priority", "2", "--force", "--expect-version", "3"
        ).exit_code
        == 2
    )
    r = invoke(*EP, "job", "update", "n")
    assert r.exit_code == 2 and "nothing to change" in r.stderr
    n = len(writes())
    r = invoke(*EP, "job", "update", "n", "--priority", "2")
    assert r.exit_code == 0 and "unchanged" in r.stdout and len(writes()) == n
    assert invoke(*EP, "job", "update", "ghost", "--priority", "2").exit_code == 3


def test_resume_and_trigger_options(server: type[FakeServer]) -> None:
    invoke(*EP, "job", "create", "n", "--every", "1m")
    assert invoke(*EP, "job", "resume", "n", "--skip-missed").exit_code == 0
    assert server.calls[-1] == ("resume_job", "n", {"skip_missed": True})
    assert invoke(*EP, "job", "resume", "n").exit_code == 0
    assert server.calls[-1] == ("resume_job", "n", {"skip_missed": False})
    r = invoke(*EP, "job", "trigger", "n", "--overlap", "allow")
    assert r.exit_code == 0 and server.calls[-1] == ("trigger_job", "n", {"overlap": "allow"})
    assert "triggered job n" in r.stdout
    r = invoke(*EP, "job", "trigger", "n", "--overlap", "forbid")
    assert r.exit_code == 0 and "not triggered" in r.stdout and "overlap" in r.stdout


def chunks(*parts: tuple[int, int, int]) -> list[api_pb2.BackfillResponse]:
    return [
        api_pb2.BackfillResponse(created=c, existing=e, next_from_ms=n, total_slots=10)
        for c, e, n in parts
    ]


def test_backfill_summary_and_json(server: type[FakeServer]) -> None:
    invoke(*EP, "job", "create", "n", "--every", "1h")
    server.backfill_chunks = chunks((4, 0, NOW - 5 * 3_600_000), (4, 2, 0))
    r = invoke(
        *EP,
        "job",
        "backfill",
        "n",
        "--from",
        "-10h",
        "--to",
        "now",
        "--chunk",
        "4",
        "--overlap",
        "forbid",
    )
    assert r.exit_code == 0, r.output
    assert server.calls[-1] == (
        "backfill",
        "n",
        {"from_ms": NOW - 36_000_000, "to_ms": NOW, "chunk": 4, "overlap": "forbid"},
    )
    assert r.stdout.strip() == (
        "backfilled job n from 2029-12-31T14:00:00Z to 2030-01-01T00:00:00Z: 8 runs created, "
        "2 slots already had a run or skip record (10 slots, 2 chunks)"
    )
    assert r.stderr == ""  # not a terminal: no progress bar
    doc = json.loads(
        invoke(*EP, "--json", "job", "backfill", "n", "--from", "-10h", "--to", "now").stdout
    )
    assert doc == {
        "name": "n",
        "from_ms": NOW - 36_000_000,
        "from_at": "2029-12-31T14:00:00Z",
        "to_ms": NOW,
        "to_at": "2030-01-01T00:00:00Z",
        "total_slots": 10,
        "created": 8,
        "existing": 2,
        "chunks": 2,
    }
    r = invoke(*EP, "job", "backfill", "n", "--from", "now", "--to", "-1h")
    assert r.exit_code == 2 and r.stderr.startswith("error: --to:")


def test_backfill_ctrl_c_keeps_done_chunks_and_says_how_to_continue(
    server: type[FakeServer],
) -> None:
    invoke(*EP, "job", "create", "n", "--every", "1h")
    resume_at = NOW - 5 * 3_600_000
    server.backfill_chunks = [*chunks((5, 0, resume_at)), KeyboardInterrupt()]  # type: ignore[list-item]
    r = invoke(*EP, "job", "backfill", "n", "--from", "-10h", "--to", "now", "--overlap", "allow")
    assert r.exit_code == 130
    assert r.stderr.strip() == (
        "interrupted: 5 runs created in 1 chunks stay in place; continue with: schedctl job "
        "backfill n --from 2029-12-31T19:00:00Z --to 2030-01-01T00:00:00Z --overlap allow"
    )


def test_backfill_progress_bar_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from schedctl.jobs import Progress

    drawn: list[str] = []
    monkeypatch.setattr("click.echo", lambda msg="", **kw: drawn.append(str(msg)))
    bar = Progress(enabled=True)
    bar.update(5, 10, 4)
    bar.clear()
    assert drawn[0].startswith("\r[###############...............]  50% 5/10 slots, 4 runs created")
    assert drawn[1] == "\r\x1b[2K"
    silent = Progress(enabled=False)
    silent.update(1, 2, 1)
    assert len(drawn) == 2


def test_explain_prints_verdict_sentence_slots_and_records(server: type[FakeServer]) -> None:
    server.explain = api_pb2.ExplainResponse(
        verdict="skipped",
        explanation="The slot was skipped: the job was paused.",
        slot_ms=NOW,
        previous_slot_ms=NOW - 3_600_000,
        next_slot_ms=NOW + 3_600_000,
        runs=[
            types_pb2.Run(
                run_id="n:1:1",
                job="n",
                scheduled_ms=NOW,
                state=types_pb2.RUN_STATE_SKIPPED,
                skip_reason=types_pb2.SKIP_REASON_PAUSED,
                origin=types_pb2.RUN_ORIGIN_SCHEDULE,
            )
        ],
    )
    r = invoke(*EP, "job", "explain", "n", "--at", "2030-01-01T00:00:30Z")
    assert r.exit_code == 0, r.output
    assert server.calls[-1] == ("explain_job", "n", {"at_ms": NOW + 30_000})
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["verdict", "skipped"]
    assert "The slot was skipped: the job was paused." in lines[1]
    assert "2030-01-01T00:00:00Z" in lines[3] and lines[3].startswith("slot")
    assert lines[-1].split()[3:] == ["skipped", "schedule", "0", "-", "-", "paused"]
    doc = json.loads(invoke(*EP, "job", "explain", "n", "--at", "now", "--json").stdout)
    assert doc["verdict"] == "skipped" and doc["slot_at"] == "2030-01-01T00:00:00Z"
    assert doc["runs"][0]["skip_reason"] == "SKIP_REASON_PAUSED"


def test_run_list_shows_skip_records_with_reason_and_origin(server: type[FakeServer]) -> None:
    server.runs = [
        types_pb2.Run(
            run_id="n:1:a",
            job="n",
            scheduled_ms=NOW,
            state=types_pb2.RUN_STATE_SKIPPED,
            skip_reason=types_pb2.SKIP_REASON_MISFIRE,
            origin=types_pb2.RUN_ORIGIN_SCHEDULE,
            skipped_until_ms=NOW + 600_000,
            skipped_count=11,
        ),
        types_pb2.Run(
            run_id="n:1:b",
            job="n",
            scheduled_ms=NOW + 660_000,
            state=types_pb2.RUN_STATE_SUCCEEDED,
            origin=types_pb2.RUN_ORIGIN_CATCHUP,
            attempt=1,
            fence=7,
            worker_id="w",
        ),
    ]
    r = invoke(*EP, "run", "list", "--job", "n", "--state", "skipped")
    assert r.exit_code == 0, r.output
    assert server.calls[-1] == (
        "list_runs",
        "n",
        {"limit": 100, "state": types_pb2.RUN_STATE_SKIPPED},
    )
    header, skip, ok = r.stdout.strip().splitlines()
    assert header.split()[-5:] == ["ORIGIN", "ATTEMPT", "FENCE", "WORKER", "REASON"]
    assert skip.split()[3:] == [
        "skipped",
        "schedule",
        "0",
        "-",
        "-",
        "misfire",
        "x11",
        "until",
        "2030-01-01T00:10:00Z",
    ]
    assert ok.split()[3:] == ["succeeded", "catchup", "1", "7", "w", "-"]


def test_watch_redraws_until_ctrl_c_and_exits_0(
    server: type[FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(common, "sleep", sleep)
    server.runs = [types_pb2.Run(run_id="n:1:a", job="n", state=types_pb2.RUN_STATE_PENDING)]
    r = invoke(*EP, "run", "list", "--watch", "0.5")
    assert r.exit_code == 0, r.output
    assert sleeps == [0.5, 0.5, 0.5]
    assert r.stdout.count("Every 0.5s: schedctl run list") == 3 and r.stdout.count("n:1:a") == 3

    sleeps.clear()
    r = invoke(*EP, "--json", "cluster", "status", "--watch")
    assert r.exit_code == 0 and sleeps == [2.0, 2.0, 2.0]
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert (
        len(docs) == 3
        and docs[0][0]["status"]["role"] == "leader"
        and docs[0][1]["reachable"] is False
    )

    # an unreachable cluster is shown and the watch goes on
    sleeps.clear()
    server.fail = {"list_runs": errors.Unavailable("no leader reachable at x:1")}
    r = invoke(*EP, "run", "list", "--watch", "1")
    assert r.exit_code == 0 and r.stdout.count("error: no leader reachable") == 3


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_use_clicks_mechanism(shell: str) -> None:
    r = invoke("completion", shell)
    assert r.exit_code == 0, r.output
    assert "_SCHEDCTL_COMPLETE" in r.stdout and f"{shell}_complete" in r.stdout


def test_completion_completes_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.shell_completion import ShellComplete
    from schedctl.main import cli

    names = [
        c.value for c in ShellComplete(cli, {}, "schedctl", "_X").get_completions(["job"], "ex")
    ]
    assert names == ["explain", "export"]
    opts = [
        c.value
        for c in ShellComplete(cli, {}, "schedctl", "_X").get_completions(
            ["job", "create", "x"], "--mis"
        )
    ]
    assert opts == ["--misfire", "--misfire-grace"]


def test_completion_of_job_and_context_names(
    server: type[FakeServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from click.shell_completion import ShellComplete
    from schedctl import completion
    from schedctl.main import cli

    def complete(args: list[str], incomplete: str) -> list[str]:
        return [
            c.value
            for c in ShellComplete(cli, {}, "schedctl", "_X").get_completions(args, incomplete)
        ]

    monkeypatch.setattr(completion, "Client", FakeServer)
    for n in ("nightly", "noon", "poll"):
        invoke(*EP, "job", "create", n, "--every", "1h")
    assert complete(["--endpoints", "h:1", "job", "get"], "n") == ["nightly", "noon"]
    assert complete(["--endpoints", "h:1", "job", "export", "poll"], "") == [
        "nightly",
        "noon",
        "poll",
    ]
    monkeypatch.delenv("SCHEDD_ENDPOINTS", raising=False)
    monkeypatch.setenv("SCHEDD_CONFIG", str(tmp_path / "none.toml"))
    assert complete(["job", "get"], "n") == []  # no endpoints anywhere: nothing, and no error
    cfg = tmp_path / "c.toml"
    cfg.write_text('[contexts.prod]\nendpoints = "a:1"\n[contexts.dev]\nendpoints = "b:1"\n')
    monkeypatch.setenv("SCHEDD_CONFIG", str(cfg))
    assert complete(["config", "use-context"], "") == ["dev", "prod"]
    assert complete(["--context"], "p") == ["prod"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-2h", NOW - 7_200_000),
        ("now+10m", NOW + 600_000),
        ("+1d", NOW + 86_400_000),
        ("2030-01-01T01:00:00+01:00", NOW),
        ("2030-01-01T00:00:00.250Z", NOW + 250),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert common.parse_time(text, "--at", NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "2030-01-01T00:00:00", "-2x", "now+"])
def test_parse_time_rejects_naming_the_option(text: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        common.parse_time(text, "--from", NOW)
    assert info.value.field == "--from"
