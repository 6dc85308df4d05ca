"""schedctl's contract with scripts: one error line on stderr, documented exit codes, no
traceback, stable JSON. No server: local checks, a port with nothing listening, a fake Client."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

try:
    import schedctl  # noqa: F401  (installed with the package)
except ImportError:  # a source checkout: the package lives in cli/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))

from schedctl import main as cli_main  # noqa: E402

from schedd import errors  # noqa: E402
from schedd.pb import api_pb2, types_pb2  # noqa: E402

# No endpoints from the environment and no config file: each test says where the cluster is.
CLEAN_ENV: dict[str, str | None] = {
    "SCHEDD_ENDPOINTS": None,
    "SCHEDCTL_RETRY_FOR": None,
    "SCHEDD_CONTEXT": None,
    "SCHEDD_CONFIG": str(Path(__file__).parent / "no-such-dir" / "config.toml"),
}


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(cli_main.cli, list(args), env={**CLEAN_ENV, **(env or {})})


def assert_one_error_line(result: Result, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line
    assert "Traceback" not in result.output
    return line


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- local checks (no cluster needed) ------------------------------------------------------


def test_missing_endpoints_is_exit_2_with_what_to_do() -> None:
    result = invoke("job", "get", "nightly")
    assert result.exit_code == 2
    assert_one_error_line(result, "--endpoints", "schedd dev", "export SCHEDD_ENDPOINTS=")
    assert result.stdout == ""


def test_malformed_endpoints_is_exit_2() -> None:
    result = invoke("--endpoints", "localhost", "job", "get", "x")
    assert result.exit_code == 2
    assert_one_error_line(result, "--endpoints", "localhost")


def test_cron_and_at_together_is_a_usage_error() -> None:
    result = invoke(
        "--endpoints", "127.0.0.1:1", "job", "create", "j", "--cron", "* * * * *",
        "--at", "2030-01-01T00:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 2
    assert_one_error_line(result, "--cron", "--at")


def test_neither_cron_nor_at_is_a_usage_error() -> None:
    result = invoke("job", "create", "j")  # checked before endpoints are needed
    assert result.exit_code == 2
    assert_one_error_line(result, "--cron", "--at")


def test_bad_json_payload_is_exit_2_naming_payload() -> None:
    result = invoke("job", "create", "j", "--cron", "* * * * *", "--payload", "{not json")
    assert result.exit_code == 2
    assert_one_error_line(result, "--payload", "JSON")


def test_bad_at_time_is_exit_2_naming_at() -> None:
    result = invoke("job", "create", "j", "--at", "tomorrow")
    assert result.exit_code == 2
    assert_one_error_line(result, "--at", "RFC 3339")


def test_tz_with_at_is_rejected() -> None:
    result = invoke("job", "create", "j", "--at", "2030-01-01T00:00:00Z", "--tz", "UTC")
    assert result.exit_code == 2
    assert_one_error_line(result, "--tz")


def test_click_usage_errors_are_one_line_too() -> None:
    result = invoke("job", "create")
    assert result.exit_code == 2
    assert_one_error_line(result, "NAME", "schedctl job create --help")
    result = invoke("job", "frobnicate")
    assert result.exit_code == 2
    assert_one_error_line(result, "frobnicate")
    result = invoke("--timeout", "0", "job", "list")
    assert result.exit_code == 2
    assert_one_error_line(result, "--timeout")


def _leaf_commands(group: Any, path: tuple[str, ...] = ()) -> list[list[str]]:
    out: list[list[str]] = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += _leaf_commands(cmd, (*path, name))
        else:
            out.append([*path, name])
    return out


def test_help_documents_exit_codes_and_every_command_has_an_example() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for line in ["0    ok", "2    usage", "3    not found", "4    unavailable", "6    aborted"]:
        assert line in result.stdout
    commands = _leaf_commands(cli_main.cli)
    for expected in (
        ["cluster", "status"],
        ["job", "create"],
        ["job", "update"],
        ["job", "apply"],
        ["job", "export"],
        ["job", "backfill"],
        ["job", "explain"],
        ["run", "list"],
        ["config", "use-context"],
        ["completion"],
        ["worker", "run"],
    ):
        assert expected in commands
    for cmd in commands:
        result = invoke(*cmd, "--help")
        assert result.exit_code == 0, cmd
        assert "Example" in result.stdout, cmd
        assert f"schedctl {' '.join(cmd)}" in result.stdout, cmd


# ---- a real, unreachable endpoint ----------------------------------------------------------


def test_unreachable_endpoint_is_exit_4_fast_one_line_no_traceback() -> None:
    # Default settings (retry_for 20 s): nothing listening fails after one round, not 20 s.
    endpoint = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = invoke("--endpoints", endpoint, "job", "get", "nightly")
    assert time.monotonic() - start < 5
    assert result.exit_code == 4
    assert_one_error_line(
        result, "no node could be reached", endpoint, "connection refused", "schedd dev",
        "--wait-for",
    )  # fmt: skip
    assert result.stdout == ""


def test_cluster_status_with_nothing_listening_shows_nodes_unreachable_and_exits_4() -> None:
    endpoints = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    result = invoke("--endpoints", endpoints, "--timeout", "0.5", "cluster", "status")
    assert result.exit_code == 4
    assert_one_error_line(result, "no node reachable")
    rows = result.stdout.strip().splitlines()
    assert rows[0].split()[:3] == ["NODE", "ROLE", "TERM"]
    assert len(rows) == 3 and all("unreachable" in r for r in rows[1:])

    result = invoke("--json", "--endpoints", endpoints, "--timeout", "0.5", "cluster", "status")
    assert result.exit_code == 4
    doc = json.loads(result.stdout)
    assert [d["reachable"] for d in doc] == [False, False]
    assert doc[0]["endpoint"] == endpoints.split(",")[0] and doc[0]["status"] is None


# ---- mapping of server answers, with a fake Client -----------------------------------------


JOB = types_pb2.Job(
    name="nightly",
    schedule=types_pb2.Schedule(
        kind=types_pb2.SCHEDULE_KIND_CRON, cron="0 3 * * *", timezone="Europe/Berlin"
    ),
    queue="default",
    state=types_pb2.JOB_STATE_ACTIVE,
    next_due_ms=1_893_466_800_000,  # 2030-01-01T03:00:00Z
    created_ms=1_700_000_000_500,
    uid=12,
)
RUN = types_pb2.Run(
    run_id="nightly/1893466800000",
    job="nightly",
    scheduled_ms=1_893_466_800_000,
    state=types_pb2.RUN_STATE_SUCCEEDED,
    attempt=1,
    fence=4_294_967_301,
    worker_id="w1",
)


class FakeClient:
    """Replaces schedd.client.Client inside schedctl; ``fail`` maps method name -> exception."""

    fail: dict[str, BaseException] = {}
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __init__(self, endpoints: list[str], **kwargs: Any) -> None:
        self.endpoints = endpoints

    def close(self) -> None:
        pass

    def _do(self, name: str, result: Any, *args: Any, **kwargs: Any) -> Any:
        FakeClient.calls.append((name, args, kwargs))
        if name in self.fail:
            raise self.fail[name]
        return result

    def get_job(self, name: str) -> types_pb2.Job:
        return self._do("get_job", JOB, name)

    def create_job(self, name: str, **kw: Any) -> types_pb2.Job:
        return self._do("create_job", JOB, name, **kw)

    def delete_job(self, name: str) -> None:
        return self._do("delete_job", None, name)

    def trigger_job(self, name: str, request_id: str | None = None) -> types_pb2.Run:
        return self._do("trigger_job", RUN, name, request_id=request_id)

    def list_runs(self, job: str = "", limit: int = 100) -> list[types_pb2.Run]:
        return self._do("list_runs", [RUN], job=job, limit=limit)

    def list_jobs(self, limit: int = 1000, *, after: str = "") -> list[types_pb2.Job]:
        return self._do("list_jobs", [j for j in [JOB] if j.name > after], limit=limit)

    def cluster_status(self) -> list[tuple[str, api_pb2.NodeStatus | None, str]]:
        st = api_pb2.NodeStatus(
            node_id="n1", role="leader", term=3, commit_index=9, applied_index=9,
            leader_id="n1", grpc_address="127.0.0.1:7101",
        )  # fmt: skip
        return self._do("cluster_status", [("127.0.0.1:7101", st, ""), ("h:2", None, "refused")])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(cli_main, "Client", FakeClient)
    FakeClient.fail = {}
    FakeClient.calls = []
    return FakeClient


EP = ("--endpoints", "127.0.0.1:7101")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFound("job 'nightly' not found"), 3),
        (errors.Unavailable("no leader reachable at x:1"), 4),
        (errors.NotLeader("not the leader", "b:2"), 4),
        (errors.StaleFence("fence 3 is stale"), 6),
        (errors.FailedPrecondition("job is paused"), 1),
        (errors.Internal("boom"), 1),
        (errors.OutcomeUnknown("timed out"), 7),
        (errors.InvalidArgument("name", "too long"), 2),
    ],
)
def test_sched_errors_map_to_documented_exit_codes(
    fake: type[FakeClient], exc: errors.SchedError, code: int
) -> None:
    fake.fail = {"get_job": exc}
    result = invoke(*EP, "job", "get", "nightly")
    assert result.exit_code == code
    line = assert_one_error_line(result, exc.message)
    if isinstance(exc, errors.Unavailable):
        assert "schedctl cluster status" in line
    assert result.stdout == ""


def test_duplicate_create_is_exit_5(fake: type[FakeClient]) -> None:
    fake.fail = {"create_job": errors.AlreadyExists("job 'nightly' already exists")}
    result = invoke(*EP, "job", "create", "nightly", "--cron", "0 3 * * *")
    assert result.exit_code == 5
    assert_one_error_line(result, "already exists")


def test_server_field_names_are_shown_as_options(fake: type[FakeClient]) -> None:
    fake.fail = {"create_job": errors.InvalidArgument("schedule.cron", "invalid cron 'x'")}
    result = invoke(*EP, "job", "create", "j", "--cron", "x")
    assert result.exit_code == 2
    assert assert_one_error_line(result) == "error: --cron: invalid cron 'x'"


def test_unknown_outcome_of_create_tells_how_to_retry_safely(fake: type[FakeClient]) -> None:
    fake.fail = {"create_job": errors.OutcomeUnknown("CreateJob timed out")}
    result = invoke(*EP, "job", "create", "j", "--cron", "* * * * *")
    assert result.exit_code == 7
    rid = fake.calls[0][2]["request_id"]
    assert_one_error_line(result, f"--request-id {rid}")


def test_create_passes_options_through(fake: type[FakeClient]) -> None:
    result = invoke(
        *EP, "job", "create", "j", "--at", "2030-01-01T01:00:00+01:00", "--queue", "q",
        "--payload", '{"a": 1}', "--max-attempts", "3", "--request-id", "r1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    name, args, kw = fake.calls[0]
    assert (name, args) == ("create_job", ("j",))
    assert kw == {
        "cron": None,
        "tz": "UTC",
        "at_ms": 1_893_456_000_000,
        "every_ms": None,
        "jitter_ms": 0,
        "queue": "q",
        "payload": '{"a": 1}',
        "max_attempts": 3,
        "request_id": "r1",
    }


def test_unexpected_exception_is_one_line_exit_1(fake: type[FakeClient]) -> None:
    fake.fail = {"get_job": RuntimeError("kaboom")}
    result = invoke(*EP, "job", "get", "nightly")
    assert result.exit_code == 1
    assert_one_error_line(result, "RuntimeError", "kaboom")


def test_ctrl_c_is_exit_130(fake: type[FakeClient]) -> None:
    fake.fail = {"list_runs": KeyboardInterrupt()}
    result = invoke(*EP, "run", "list")
    assert result.exit_code == 130
    assert "Traceback" not in result.output


def test_human_output_uses_rfc3339_and_short_enum_names(fake: type[FakeClient]) -> None:
    result = invoke(*EP, "run", "list", "--job", "nightly")
    assert result.exit_code == 0
    header, row = result.stdout.strip().splitlines()
    assert header.split("  ")[0] == "RUN ID"
    for col in ["JOB", "SCHEDULED AT", "STATE", "ATTEMPT", "FENCE", "WORKER"]:
        assert col in header
    assert row.split() == [
        "nightly/1893466800000", "nightly", "2030-01-01T03:00:00Z", "succeeded", "-", "1",
        "4294967301", "w1", "-",
    ]  # fmt: skip
    assert fake.calls[0][2] == {"job": "nightly", "limit": 100}

    result = invoke(*EP, "job", "get", "nightly")
    assert "active" in result.stdout and "JOB_STATE" not in result.stdout
    assert 'cron "0 3 * * *" Europe/Berlin' in result.stdout
    assert "2030-01-01T03:00:00Z" in result.stdout
    assert "2023-11-14T22:13:20.500Z" in result.stdout

    result = invoke(*EP, "cluster", "status")
    assert result.exit_code == 0  # one node reachable is enough
    assert "leader" in result.stdout and "unreachable" in result.stdout


def test_json_output_is_stable_snake_case_with_rfc3339_companions(
    fake: type[FakeClient],
) -> None:
    doc = json.loads(invoke("--json", *EP, "job", "get", "nightly").stdout)
    assert doc["name"] == "nightly"
    assert doc["next_due_ms"] == 1_893_466_800_000  # a number, not a string
    assert doc["next_due_at"] == "2030-01-01T03:00:00Z"
    assert doc["created_at"] == "2023-11-14T22:13:20.500Z"
    assert doc["schedule"]["timezone"] == "Europe/Berlin"
    assert doc["payload"] == "" and doc["max_attempts"] == 0  # defaults are printed
    assert doc["uid"] == 12

    runs = json.loads(invoke("--json", *EP, "run", "list").stdout)
    assert isinstance(runs, list) and len(runs) == 1
    assert runs[0]["scheduled_at"] == "2030-01-01T03:00:00Z"
    assert runs[0]["fence"] == 4_294_967_301
    assert runs[0]["worker_id"] == "w1"
    assert runs[0]["finished_ms"] == 0 and runs[0]["finished_at"] is None

    deleted = json.loads(invoke("--json", *EP, "job", "delete", "nightly").stdout)
    assert deleted == {"name": "nightly", "deleted": True}

    jobs = json.loads(invoke("--json", *EP, "job", "list").stdout)
    assert [j["name"] for j in jobs] == ["nightly"]


# ---- worker run ----------------------------------------------------------------------------


def test_worker_run_hands_argv_to_the_shell_worker_and_exits_with_its_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    got: dict[str, Any] = {}

    def run_shell_worker(
        endpoints: list[str],
        queues: list[str],
        concurrency: int,
        argv: list[str],
        worker_id: str | None,
        *,
        tags: dict[str, str] | None = None,
        drain_timeout: float = 10.0,
        credentials: object = None,
        namespace: str | None = None,
        jobs: list[str] | None = None,
    ) -> int:
        assert namespace == "default" and jobs == []
        got.update(endpoints=endpoints, queues=queues, concurrency=concurrency, argv=argv)
        got["worker_id"] = worker_id
        if tags or drain_timeout != 10.0:
            got.update(tags=tags, drain_timeout=drain_timeout)
        return 3

    module = types.ModuleType("schedd.agent.shell")
    module.run_shell_worker = run_shell_worker  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "schedd.agent.shell", module)
    result = invoke(
        "--endpoints", "a:1,b:2", "worker", "run", "--queue", "q1", "--queue", "q2",
        "--concurrency", "4", "--", "sh", "-c", "exit 0", "--not-ours",
    )  # fmt: skip
    assert result.exit_code == 3
    assert got == {
        "endpoints": ["a:1", "b:2"],
        "queues": ["q1", "q2"],
        "concurrency": 4,
        "argv": ["sh", "-c", "exit 0", "--not-ours"],
        "worker_id": None,
    }

    got.clear()
    result = invoke(
        "--endpoints", "a:1", "worker", "run", "--tag", "gpu=a100", "--drain-timeout", "60", "ls"
    )
    assert result.exit_code == 3 and got["tags"] == {"gpu": "a100"} and got["drain_timeout"] == 60.0
    result = invoke("--endpoints", "a:1", "worker", "run", "--tag", "gpu", "ls")
    assert result.exit_code == 2 and "--tag" in result.output

    got.clear()
    result = invoke("--endpoints", "a:1", "worker", "run", "ls", "-l")
    assert result.exit_code == 3
    assert got["argv"] == ["ls", "-l"] and got["queues"] == ["default"]


def test_worker_run_without_a_command_is_a_usage_error() -> None:
    result = invoke("--endpoints", "a:1", "worker", "run", "--queue", "q")
    assert result.exit_code == 2
    assert_one_error_line(result)


# ---- timeouts against real sockets: "never sent" vs "outcome unknown" ----------------------


def test_write_to_a_silent_host_is_unavailable_not_outcome_unknown() -> None:
    # A socket that accepts TCP but never speaks HTTP/2, like a stopped (SIGSTOP) node: the
    # request is never sent, so the client may move on and finally report exit 4, not 7.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        result = invoke(
            "--endpoints", endpoint, "--timeout", "0.3", "job", "pause", "nightly",
            env={"SCHEDCTL_RETRY_FOR": "0.5"},
        )  # fmt: skip
    assert result.exit_code == 4, result.output
    assert_one_error_line(result, "PauseJob not applied", "no connection within 0.3s", endpoint)


def test_write_that_reached_a_slow_leader_is_outcome_unknown_exit_7() -> None:
    from concurrent import futures

    import grpc

    from schedd.pb import api_grpc

    release = threading.Event()

    class Slow(api_grpc.JobServiceServicer):
        def PauseJob(self, request: Any, context: Any) -> Any:
            release.wait(5)
            return api_pb2.JobResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_grpc.add_JobServiceServicer_to_server(Slow(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = invoke(
            "--endpoints", f"127.0.0.1:{port}", "--insecure", "--timeout", "0.5", "job", "pause",
            "nightly", env={"SCHEDCTL_RETRY_FOR": "5"},
        )  # fmt: skip
    finally:
        release.set()
        server.stop(0)
    assert result.exit_code == 7, result.output
    assert_one_error_line(result, "PauseJob", "may or may not have been applied")


def test_json_keys_follow_proto_field_order_whatever_is_set(fake: type[FakeClient]) -> None:
    runs = json.loads(invoke("--json", *EP, "run", "list").stdout)
    keys = [k for k in runs[0] if not k.endswith("_at")]
    assert keys == [f.name for f in types_pb2.Run.DESCRIPTOR.fields]
    assert list(runs[0])[:4] == ["run_id", "job", "scheduled_ms", "scheduled_at"]
