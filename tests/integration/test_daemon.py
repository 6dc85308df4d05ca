"""The schedd daemon command: refuses bad configuration with one line, stops gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from schedd.testing import LocalCluster, free_ports

pytestmark = pytest.mark.integration


def schedd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "SCHEDD_RAFT_PASSWORD"}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "schedd", *args], capture_output=True, text=True, env=e, timeout=60
    )


@pytest.mark.parametrize(
    "extra,env,needle",
    [
        ([], {}, "Raft password is required"),
        (["--peer", "n2=nonsense"], {"SCHEDD_RAFT_PASSWORD": "x" * 32}, "--peer"),
        (["--lease-ttl", "soon"], {"SCHEDD_RAFT_PASSWORD": "x" * 32}, "--lease-ttl"),
        (["--election-timeout", "1s"], {"SCHEDD_RAFT_PASSWORD": "x" * 32}, "--election-timeout"),
        (
            ["--election-timeout", "2s-1s"],
            {"SCHEDD_RAFT_PASSWORD": "x" * 32},
            "--election-timeout",
        ),
        (["--fire-ahead", "soon"], {"SCHEDD_RAFT_PASSWORD": "x" * 32}, "--fire-ahead"),
        # over half the lease: the lease would not outlast the wait for the due time
        (
            ["--lease-ttl", "2s", "--fire-ahead", "1500ms"],
            {"SCHEDD_RAFT_PASSWORD": "x" * 32},
            "--fire-ahead",
        ),
        # below Python's own default: refused, not silently raised
        (["--gc-threshold", "10"], {"SCHEDD_RAFT_PASSWORD": "x" * 32}, "--gc-threshold"),
        (
            ["--snapshot-copy-rate", "-5"],
            {"SCHEDD_RAFT_PASSWORD": "x" * 32},
            "--snapshot-copy-rate",
        ),
        (
            ["--insecure", "--map-size", "64", "--max-map-size", "32"],
            {"SCHEDD_RAFT_PASSWORD": "x" * 32},
            "--max-map-size",
        ),
    ],
)
def test_bad_configuration_is_refused_with_one_line(tmp_path, extra, env, needle) -> None:
    raft, grpc_port = free_ports(2)
    p = schedd(
        "run",
        "--node-id",
        "n1",
        "--data-dir",
        str(tmp_path / "d"),
        "--raft",
        f"127.0.0.1:{raft}",
        "--grpc",
        f"127.0.0.1:{grpc_port}",
        *extra,
        env=env,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("gc_threshold", 'gc_threshold = "lots"'),
        ("snapshot_copy_mib_s", 'snapshot_copy_mib_s = "fast"'),
    ],
)
def test_a_bad_setting_in_the_config_file_is_refused(tmp_path, key: str, line: str) -> None:
    conf = tmp_path / "n1.toml"
    conf.write_text(line + "\n")
    p = schedd("run", "--config", str(conf))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in p.stderr


def test_sigterm_on_the_leader_hands_over_and_exits_cleanly(make_cluster) -> None:
    cluster: LocalCluster = make_cluster()
    leader = cluster.wait_for_leader()
    term_before = cluster.status(leader).term
    t0 = time.monotonic()
    assert cluster.stop_node(leader) == 0
    new_leader = cluster.wait_for_leader(timeout=20, exclude=leader)
    took = time.monotonic() - t0
    assert cluster.status(new_leader).term > term_before
    with open(cluster.spec(leader).log_path) as f:
        log = f.read()
    assert "event=node_stopped" in log and "Traceback" not in log
    print(f"handover: {leader} -> {new_leader} in {took:.2f}s")
    cluster.kill_node(new_leader, signal.SIGKILL)  # the remaining node alone has no quorum: fine


def test_the_defaults_start_a_node(tmp_path) -> None:
    """No timing flags at all: the defaults must parse (they once failed the duration syntax)."""
    from tests._util import wait_for

    raft, grpc_port = free_ports(2)
    log = tmp_path / "node.log"
    env = {k: v for k, v in os.environ.items()}
    env["SCHEDD_RAFT_PASSWORD"] = "x" * 32
    with open(log, "wb") as out:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "schedd",
                "run",
                "--node-id",
                "n1",
                "--data-dir",
                str(tmp_path / "d"),
                "--raft",
                f"127.0.0.1:{raft}",
                "--grpc",
                f"127.0.0.1:{grpc_port}",
                "--insecure",  # the one security flag a node needs: TLS or this
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(
            lambda: p.poll() is not None or "event=gc_configured" in log.read_text(),
            20,
            "the node to start",
        )
        assert p.poll() is None, log.read_text()
        text = log.read_text()
        assert "event=node_started" in text
        # the collector's default for the daemon: a young collection every 50,000 objects
        assert "event=gc_configured node=n1 thresholds=50000/" in text, text
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
