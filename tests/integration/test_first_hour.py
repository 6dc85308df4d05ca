"""A new user's first hour, against real processes: what they meet when the cluster is not
there, when their TLS settings do not match it, and the rough edges of the first commands.

Every test here failed before the change it pins (see CHANGELOG, "First hour").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from schedd import errors
from schedd.client import Client
from schedd.pb import api_grpc, api_pb2, types_pb2
from schedd.sdk import core
from schedd.sdk.credentials import Credentials
from schedd.testing import FAST_ARGS, LocalCluster, free_ports
from tests._util import wait_for

from .conftest import register, schedctl

pytestmark = pytest.mark.integration


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a failed schedctl; fails on a traceback or more lines."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def bare_schedctl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """schedctl with no SCHEDD_* variables but those in ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEDD_", "SCHEDCTL_"))}
    return subprocess.run(
        [sys.executable, "-m", "schedctl", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=timeout,
    )


def _answers(client: Client, endpoint: str) -> bool:
    try:
        client.node_status(endpoint)
    except errors.Unavailable:
        return False
    return True


# ---- 1. nothing listening: fail within about a second, saying what was tried ----------------


def test_sdk_with_nothing_listening_fails_fast_naming_the_endpoints() -> None:
    endpoints = [f"127.0.0.1:{p}" for p in free_ports(3)]
    start = time.monotonic()
    with Client(endpoints, credentials=Credentials(insecure=True)) as c:  # retry_for: 20 s
        with pytest.raises(errors.Unreachable) as info:
            c.list_jobs()
    assert time.monotonic() - start < 5
    msg = info.value.message
    assert all(ep in msg for ep in endpoints) and "connection refused" in msg
    assert "is the cluster running?" in msg and "schedd dev" in msg


def test_cli_with_nothing_listening_exits_4_in_one_line_and_a_write_says_not_applied() -> None:
    endpoints = ",".join(f"127.0.0.1:{p}" for p in free_ports(3))
    start = time.monotonic()
    p = bare_schedctl(
        "--endpoints",
        endpoints,
        "job",
        "create",
        "x",
        "--every",
        "1m",
        env={"SCHEDD_INSECURE": "1"},
    )
    assert time.monotonic() - start < 5
    assert p.returncode == 4
    line = one_line_error(p)
    assert "CreateJob not applied: no node could be reached" in line
    assert all(ep in line for ep in endpoints.split(","))
    assert "may or may not" not in line and "--wait-for" in line


def test_wait_for_waits_for_a_cluster_that_is_starting(tmp_path: Path) -> None:
    c = register(LocalCluster(str(tmp_path / "late"), nodes=3, extra_args=list(FAST_ARGS)))
    starter = threading.Timer(1.0, c.start)  # the cluster comes up after the client asked
    starter.start()
    try:
        with Client(c.endpoints, credentials=c.credentials, wait_for=90) as client:
            assert client.list_jobs() == []
    finally:
        starter.join()
        c.stop()


# ---- 1. a TLS mismatch is named as such ---------------------------------------------------------


def test_wrong_ca_and_plaintext_are_reported_as_tls_mismatches(cluster: LocalCluster) -> None:
    env = cluster.client_env
    no_ca = {k: v for k, v in env.items() if k != "SCHEDD_CA"}  # the system roots instead
    p = bare_schedctl("job", "list", env=no_ca)
    assert p.returncode == 4
    line = one_line_error(p)
    assert "TLS handshake failed" in line and "SCHEDD_CA / --ca" in line
    assert "no leader" not in line

    p = bare_schedctl("--insecure", "job", "list", env=env)
    assert p.returncode == 4
    line = one_line_error(p)
    assert "plaintext client at a TLS port" in line and "no leader" not in line


def test_an_election_is_still_waited_through(make_cluster) -> None:
    # Nodes that answer but know no leader yet (one of three up: no quorum) are retried for
    # retry_for, as before: only a cluster that cannot be reached at all fails fast.
    c: LocalCluster = make_cluster()
    for spec in c.specs[1:]:
        c.stop_node(spec.node_id)
    c.stop_node("n1")
    c.start_node("n1")
    with c.client() as probe:
        wait_for(lambda: _answers(probe, c.spec("n1").grpc), 30, "n1 to answer")
    start = time.monotonic()
    p = schedctl(c.endpoints_env, "--retry-for", "3", "job", "list")
    assert p.returncode == 4
    assert time.monotonic() - start >= 2.5
    line = one_line_error(p)
    assert "no leader reachable" in line and "no node could be reached" not in line


# ---- 3. job explain: the slot before a time, and the last slots ---------------------------------


def test_explain_at_a_time_between_slots_explains_the_slot_before_it(cluster: LocalCluster) -> None:
    eps = cluster.endpoints_env
    assert schedctl(eps, "job", "create", "fh-explain", "--every", "1s").returncode == 0
    with cluster.client() as c:
        wait_for(lambda: len(c.list_runs(job="fh-explain")) >= 3, 30, "three runs")

    p = schedctl(eps, "job", "explain", "fh-explain", "--at", "-1500ms")
    assert p.returncode == 0, p.stderr
    fields = dict(line.split(None, 1) for line in p.stdout.splitlines()[:2])
    assert fields["verdict"] != "not_a_slot", p.stdout
    assert "is not a slot; the last slot before it is" in fields["why"]
    slot = next(line for line in p.stdout.splitlines() if line.startswith("slot "))
    assert slot.split()[1] != "-"  # the slot it picked is named

    p = schedctl(eps, "--json", "job", "explain", "fh-explain")  # no --at: the last 5 slots
    assert p.returncode == 0, p.stderr
    answers = json.loads(p.stdout)
    slots = [a["slot_ms"] for a in answers]
    assert len(slots) == 5 and slots == sorted(slots, reverse=True)
    assert all(b - a == 1000 for a, b in zip(slots[1:], slots, strict=False))
    assert all(a["verdict"] != "not_a_slot" for a in answers)
    p = schedctl(eps, "job", "explain", "fh-explain", "--last", "2")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 3  # header + 2 slots


# ---- 4. the shell worker: a command that cannot run, and a failing command's stderr -------------


def test_worker_run_with_a_missing_command_exits_2_at_start(cluster: LocalCluster) -> None:
    for argv, needles in (
        (["/no/such/cmd"], ["'/no/such/cmd' does not exist"]),
        (["no-such-cmd-fh", "--flag"], ["'no-such-cmd-fh' not found in PATH=/usr/bin:/bin"]),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "schedctl", "worker", "run", "--", *argv],
            capture_output=True,
            text=True,
            env={**os.environ, **cluster.worker_env, "PATH": "/usr/bin:/bin"},
            timeout=30,
        )
        assert p.returncode == 2, p.stderr
        line = one_line_error(p)
        assert all(n in line for n in needles), line


def test_a_failing_command_puts_its_stderr_tail_in_the_run_error(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    script = tmp_path / "fail.sh"
    script.write_text('#!/bin/sh\nfor i in $(seq 1 300); do echo "problem $i" >&2; done\nexit 3\n')
    script.chmod(0o755)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "schedctl", "worker", "run", "--queue", "fh-shell", "--",
             str(script)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **cluster.worker_env},
            start_new_session=True,
        )  # fmt: skip
    try:
        with cluster.client() as c:
            c.create_job("fh-shell", every_ms=3_600_000, queue="fh-shell", max_attempts=1)
            run = c.trigger_job("fh-shell")
            done = wait_for(lambda: (r := c.get_run(run.run_id)).done and r, 60, "the run to end")
            assert done.error.startswith("exit code 3: ") and done.exit_code == 3
            # The end of stderr, many lines of it: not only the last line, and no traceback.
            assert "problem 300" in done.error and "problem 250" in done.error
            assert "problem 1\n" not in done.error and len(done.error) <= 2000

            script.unlink()  # gone after the start check: each firing says so in one line
            run = c.trigger_job("fh-shell")
            done = wait_for(lambda: (r := c.get_run(run.run_id)).done and r, 60, "the run to end")
            assert done.error == f"cannot start {script}: No such file or directory"
        # cluster status counts the attached worker on the leader's row (docs/operations.md)
        p = schedctl(cluster.endpoints_env, "cluster", "status")
        header, *rows = p.stdout.splitlines()
        col = header.split().index("WORKERS")
        leader_row = next(r.split() for r in rows if r.split()[1] == "leader")
        assert int(leader_row[col]) >= 1, p.stdout
        assert "Traceback" not in log.read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=30)


# ---- 5. stale text: the README's quoted error, the example jobs file, apply --dry-run ----------

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_quotes_the_real_bad_input_message(cluster: LocalCluster) -> None:
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| **Bad input**"))
    quoted = row.split("`")[3]  # the code span after `INVALID_ARGUMENT`: the message
    with cluster.client() as c:
        with pytest.raises(errors.InvalidArgument) as info:
            c.create_job("fh-bad", cron="61 * * * *")
    assert info.value.message == quoted
    p = schedctl(cluster.endpoints_env, "job", "create", "fh-bad", "--cron", "61 * * * *")
    assert p.returncode == 2
    assert one_line_error(p) == "error: --cron: " + quoted.removeprefix("schedule.cron: ")


def test_the_example_jobs_file_applies_and_does_not_expire(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    import tomllib

    jobs = tomllib.loads((ROOT / "examples" / "jobs.toml").read_text())["job"]
    for j in jobs:  # a fixed one-shot time must stay in the future for decades
        assert "at" not in j or str(j["at"]) >= "2090", j
    eps = cluster.endpoints_env
    f = str(ROOT / "examples" / "jobs.toml")
    p = schedctl(eps, "job", "apply", "-f", f, "--dry-run")
    assert p.returncode == 0, p.stderr
    p = schedctl(eps, "job", "apply", "-f", f)
    assert p.returncode == 0, p.stderr
    p = schedctl(eps, "job", "apply", "-f", f)
    assert p.returncode == 0 and "unchanged" in p.stdout


def test_apply_dry_run_refuses_what_the_apply_refuses(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    f = tmp_path / "past.toml"
    f.write_text('[[job]]\nname = "fh-past"\nat = "2020-01-01T00:00:00Z"\n')
    eps = cluster.endpoints_env
    dry = schedctl(eps, "job", "apply", "-f", str(f), "--dry-run")
    real = schedctl(eps, "job", "apply", "-f", str(f))
    assert dry.returncode == real.returncode == 2, dry.stdout + dry.stderr
    assert one_line_error(dry) == one_line_error(real)
    assert "schedule.at_ms: is in the past" in one_line_error(dry)
    assert "would be created" not in dry.stdout


# ---- 6. bad input that answered INTERNAL: INVALID_ARGUMENT naming the field ---------------------


def _leader_channel(cluster: LocalCluster) -> grpc.Channel:
    leader = cluster.wait_for_leader()
    return cluster.credentials.channel(cluster.spec(leader).grpc, core.CHANNEL_OPTIONS)


def _job_request(name: str, **fields: object) -> api_pb2.CreateJobRequest:
    every = types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_INTERVAL, every_ms=60_000)
    return api_pb2.CreateJobRequest(name=name, **{"schedule": every, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_job_request("fh-deep", payload="[" * 30_000 + "]" * 30_000), "payload: is nested"),
        (_job_request("fh-nan", payload='{"a": NaN}'), "payload: is not valid JSON"),
        (_job_request("fh-inf", payload="[Infinity]"), "payload: is not valid JSON"),
        (
            _job_request(
                "fh-every",
                schedule=types_pb2.Schedule(
                    kind=types_pb2.SCHEDULE_KIND_CRON, cron="@every 100000000000000000000h"
                ),
            ),
            "schedule.cron: ",
        ),
    ],
    ids=["deep-payload", "nan", "infinity", "huge-every"],
)
def test_bad_job_definitions_are_invalid_argument_naming_the_field(
    cluster: LocalCluster, request_: api_pb2.CreateJobRequest, field: str
) -> None:
    stub = api_grpc.JobServiceStub(_leader_channel(cluster))
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateJob(request_, metadata=cluster.credentials.metadata, timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details().startswith(field)


def test_explain_at_int64_max_is_invalid_argument(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        c.create_job("fh-explain-max", every_ms=60_000)
        with pytest.raises(errors.InvalidArgument) as info:
            c.explain_job("fh-explain-max", 2**63 - 1)
    assert info.value.field == "at_ms"


@pytest.mark.parametrize(
    ("marker", "bad", "field"),
    [
        (b"NAME", b"N\xffME", "name"),
        (b"QUEUE", b"QU\xc3(E", "queue"),
        (b"CR", b"\xe2\x28", "schedule.cron"),
    ],
)
def test_invalid_utf8_in_a_string_field_is_invalid_argument_naming_it(
    cluster: LocalCluster, marker: bytes, bad: bytes, field: str
) -> None:
    req = api_pb2.CreateJobRequest(
        name="NAME",
        queue="QUEUE",
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron="* * * * CR"),
    ).SerializeToString()
    raw = _leader_channel(cluster).unary_unary(
        "/schedd.v1.JobService/CreateJob",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as info:
        raw(req.replace(marker, bad), metadata=cluster.credentials.metadata, timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == f"{field}: is not valid UTF-8"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--every", "100000000000000000000h"], "--every"),
        (["--cron", "@every 100000000000000000000h"], "--cron"),
        (["--every", "1m", "--payload", '{"a": NaN}'], "--payload"),
    ],
)
def test_schedctl_names_the_option_of_bad_input(
    cluster: LocalCluster, args: list[str], option: str
) -> None:
    p = schedctl(cluster.endpoints_env, "job", "create", "fh-bad-cli", *args)
    assert p.returncode == 2
    assert one_line_error(p).startswith(f"error: {option}: ")


# ---- 7. --payload @FILE and -, run list --job NOSUCH -------------------------------------------


def test_payload_from_a_file_and_from_stdin(cluster: LocalCluster, tmp_path: Path) -> None:
    eps = cluster.endpoints_env
    f = tmp_path / "payload.json"
    f.write_text('{"from": "file"}\n')
    p = schedctl(eps, "job", "create", "fh-payload", "--every", "1m", "--payload", f"@{f}")
    assert p.returncode == 0, p.stderr
    with cluster.client() as c:
        assert c.get_job("fh-payload").payload == '{"from": "file"}'
    env = dict(os.environ, **cluster.client_env)
    p = subprocess.run(
        [sys.executable, "-m", "schedctl", "job", "update", "fh-payload", "--payload", "-"],
        input='{"from": "stdin"}',
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    with cluster.client() as c:
        assert c.get_job("fh-payload").payload == '{"from": "stdin"}'
    p = schedctl(eps, "job", "create", "fh-nofile", "--every", "1m", "--payload", "@/no/such.json")
    assert p.returncode == 2
    assert (
        one_line_error(p)
        == "error: --payload: cannot read '/no/such.json': No such file or directory"
    )


def test_run_list_of_an_unknown_job_is_not_found(cluster: LocalCluster) -> None:
    p = schedctl(cluster.endpoints_env, "run", "list", "--job", "NOSUCH")
    assert p.returncode == 3
    assert one_line_error(p) == "error: --job: no job named 'NOSUCH'"
    assert (
        schedctl(cluster.endpoints_env, "job", "create", "fh-empty", "--every", "1h").returncode
        == 0
    )
    p = schedctl(cluster.endpoints_env, "run", "list", "--job", "fh-empty")
    assert p.returncode == 0 and p.stdout.strip() == "no runs"
