"""Prometheus metrics on a real 3-node cluster (TLS and tokens on), scraped over HTTP.

A real agent ``Worker`` runs firings (one job succeeds, one fails into a dead letter); the
counters, lags and gRPC figures must move on the leader, exactly one node says it leads, and
every metric name the shipped alert rules and Grafana dashboard use must exist in the output
(a typo in either fails here). ``schedd run`` without ``--metrics`` opens no metrics port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schedd.agent import Context, HandlerFailure, Worker
from schedd.testing import FAST_ARGS, LocalCluster, free_ports
from tests._util import wait_for
from tests.integration.conftest import register

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "schedd-dashboard.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        return str(r.read().decode())


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def metered(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, CollectorRegistry]]:
    """The cluster, with a worker running both jobs; and the worker's metrics registry."""
    cluster = LocalCluster(
        str(tmp_path_factory.mktemp("metrics")), nodes=3, extra_args=list(FAST_ARGS), metrics=True
    )
    register(cluster)
    cluster.start()
    registry = CollectorRegistry()
    worker = Worker(
        cluster.endpoints_env,
        queues=["default"],
        worker_id="metrics-worker",
        concurrency=4,
        credentials=cluster.worker_credentials,
        metrics_registry=registry,
    )

    @worker.handler("metrics-ok")
    def ok(ctx: Context) -> None:
        pass

    @worker.handler("metrics-bad")
    def bad(ctx: Context) -> None:
        raise HandlerFailure("always fails")

    try:
        cluster.wait_for_leader(timeout=30)
        worker.start()
        with cluster.client() as client:
            client.create_job("metrics-ok", every_ms=1000)
            client.create_job("metrics-bad", every_ms=1000, retry={"max_attempts": 1})
        yield cluster, registry
    finally:
        worker.stop()
        cluster.stop()


def leader_samples(cluster: LocalCluster) -> Samples:
    leader = cluster.wait_for_leader(timeout=30)
    return samples(scrape_text(cluster.metrics_url(leader)))


def test_counters_lags_and_grpc_move_on_the_leader(
    metered: tuple[LocalCluster, CollectorRegistry],
) -> None:
    cluster, _ = metered

    def moved() -> Samples | None:
        got = leader_samples(cluster)
        enough = (
            value(got, "schedd_runs_finished_total", outcome="succeeded") >= 3
            and value(got, "schedd_runs_finished_total", outcome="dead") >= 1
        )
        return got if enough else None

    got = wait_for(moved, 30, "3 succeeded and 1 dead run counted on the leader")
    assert value(got, "schedd_runs_created_total", origin="schedule") >= 4
    assert value(got, "schedd_runs_created_total", origin="trigger") == 0
    assert value(got, "schedd_run_duration_seconds_count", outcome="succeeded") >= 3
    assert value(got, "schedd_fire_commit_lag_seconds_count") >= 4
    assert value(got, "schedd_dispatch_lag_seconds_count") >= 4
    # every fired slot was committed within a minute of its due time (a sane clock and unit)
    assert value(got, "schedd_fire_commit_lag_seconds_bucket", le="60.0") == value(
        got, "schedd_fire_commit_lag_seconds_count"
    )
    assert value(got, "schedd_journal_fsync_duration_seconds_count") > 0
    # the daemon's watch saw at least the full collection that froze start-up's objects
    assert value(got, "schedd_gc_pause_seconds_count", generation="2") >= 1
    assert value(got, "schedd_raft_propose_duration_seconds_count") > 0
    assert value(got, "schedd_workers_connected", queue="default") == 1
    assert value(got, "schedd_dispatcher_active") == 1
    create = "/schedd.v1.JobService/CreateJob"
    assert value(got, "schedd_grpc_handled_total", method=create, code="OK") >= 1
    assert value(got, "schedd_grpc_handling_seconds_count", method=create, code="OK") >= 1
    # the agent's Connect stream is counted when it ends, so not yet; its probes are unary
    status = "/schedd.v1.ClusterService/GetNodeStatus"
    assert value(got, "schedd_grpc_handled_total", method=status, code="OK") >= 1
    assert value(got, "process_cpu_seconds_total") > 0
    # the apply backlog is bounded: the leader applies what it commits
    commit = value(got, "schedd_raft_commit_index")
    assert commit > 0 and commit - value(got, "schedd_raft_applied_index") < 1000


def test_refused_calls_are_counted_with_their_code(
    metered: tuple[LocalCluster, CollectorRegistry],
) -> None:
    """A worker identity may not delete jobs: the authentication interceptor refuses the call,
    and the metrics interceptor, which runs first, counts it with that code."""
    import grpc

    from schedd.pb import api_grpc, api_pb2

    cluster, _ = metered
    leader = cluster.wait_for_leader(timeout=30)
    files = [cluster.ca_file, cluster.worker_cert.key, cluster.worker_cert.cert]
    ca, key, cert = (Path(f).read_bytes() for f in files)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    with grpc.secure_channel(cluster.spec(leader).grpc, creds) as channel:
        with pytest.raises(grpc.RpcError) as e:
            api_grpc.JobServiceStub(channel).DeleteJob(
                api_pb2.JobRequest(name="metrics-ok"), timeout=5
            )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    got = leader_samples(cluster)
    method = "/schedd.v1.JobService/DeleteJob"
    assert value(got, "schedd_grpc_handled_total", method=method, code="PERMISSION_DENIED") == 1


def test_exactly_one_node_reports_leading(metered: tuple[LocalCluster, CollectorRegistry]) -> None:
    cluster, _ = metered

    def one_leader() -> list[float] | None:
        flags = [
            value(samples(scrape_text(cluster.metrics_url(s.node_id))), "schedd_raft_is_leader")
            for s in cluster.specs
        ]
        return flags if sorted(flags) == [0.0, 0.0, 1.0] else None

    wait_for(one_leader, 20, "exactly one node with schedd_raft_is_leader 1")


def test_every_node_reports_its_lmdb_map(metered: tuple[LocalCluster, CollectorRegistry]) -> None:
    cluster, _ = metered
    for s in cluster.specs:
        got = samples(scrape_text(cluster.metrics_url(s.node_id)))
        used = value(got, "schedd_lmdb_used_bytes")
        size = value(got, "schedd_lmdb_map_size_bytes")
        ceiling = value(got, "schedd_lmdb_map_max_bytes")
        assert 0 < used < size <= ceiling, (used, size, ceiling)


def test_every_node_reports_its_journal_and_compactions(
    metered: tuple[LocalCluster, CollectorRegistry],
) -> None:
    cluster, _ = metered
    for s in cluster.specs:
        got = samples(scrape_text(cluster.metrics_url(s.node_id)))
        assert value(got, "schedd_raft_journal_bytes") > 0
        assert value(got, "schedd_raft_journal_entries") >= 1
        # (served from the start, before any compaction: a missing series reads as 0)
        present = {(name, labels) for name, labels in got}
        assert ("schedd_raft_snapshot_copying", frozenset()) in present
        for outcome in ("kept", "failed", "superseded"):
            assert (
                "schedd_raft_log_compactions_total",
                frozenset({("outcome", outcome)}),
            ) in present
        for name in ("seconds", "paused_seconds"):
            assert (f"schedd_raft_log_compaction_{name}_total", frozenset()) in present


def test_agent_registry_records_handlers(metered: tuple[LocalCluster, CollectorRegistry]) -> None:
    _, registry = metered

    def counted() -> Samples | None:
        got = samples(generate_latest(registry).decode())
        ok = value(
            got,
            "schedd_agent_handler_duration_seconds_count",
            handler="metrics-ok",
            outcome="succeeded",
        )
        bad = value(
            got,
            "schedd_agent_handler_duration_seconds_count",
            handler="metrics-bad",
            outcome="failed",
        )
        return got if ok >= 2 and bad >= 1 else None

    got = wait_for(counted, 30, "the agent's handler figures")
    assert value(got, "schedd_agent_handler_start_lag_seconds_count") >= 3
    assert value(got, "schedd_agent_handlers_in_flight") in (0.0, 1.0, 2.0)
    assert ("schedd_agent_firings_waiting", frozenset()) in {(n, labels) for n, labels in got}


def _names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:schedd|process)_[a-z0-9_]+)\b", expr))


def referenced_names() -> dict[str, set[str]]:
    """Metric names per file: every PromQL expression of the alert rules and the dashboard."""
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            alerts |= _names_in(rule["expr"])
    dashboard = json.loads(DASHBOARD.read_text())
    panels = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            panels |= _names_in(target["expr"])
    return {"alerts": alerts, "dashboard": panels}


def test_alerts_and_dashboard_use_only_metrics_that_exist(
    metered: tuple[LocalCluster, CollectorRegistry],
) -> None:
    cluster, registry = metered
    leader = cluster.wait_for_leader(timeout=30)
    follower = next(s.node_id for s in cluster.specs if s.node_id != leader)
    texts = [
        scrape_text(cluster.metrics_url(leader)),
        scrape_text(cluster.metrics_url(follower)),
        generate_latest(registry).decode(),
    ]
    exposed: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            # a family without samples (no leased run right now) still declares its name
            exposed.add(family.name)
            exposed.update(s.name for s in family.samples)
            if family.type == "counter":
                exposed.add(family.name + "_total")
    found = referenced_names()
    assert found["alerts"] and found["dashboard"]
    for where, names in found.items():
        missing = sorted(names - exposed)
        assert not missing, f"{where} use metrics no node or agent exposes: {missing}"


def test_the_name_check_catches_a_typo() -> None:
    """Negative control for the test above: a misspelled name is not among the exposed ones."""
    assert _names_in("rate(schedd_runs_finised_total[5m])") == {"schedd_runs_finised_total"}
    assert "schedd_runs_finised_total" not in referenced_names()["alerts"]


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian/Ubuntu: apt-get install prometheus)")
    p = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    rules = sum(len(g["rules"]) for g in yaml.safe_load(ALERTS.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in p.stdout


def _listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (Linux: its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("with_metrics", [False, True])
def test_a_node_opens_a_metrics_port_only_when_asked(tmp_path: Path, with_metrics: bool) -> None:
    raft, grpc_port, metrics_port = free_ports(3)
    pw = tmp_path / "pw"
    pw.write_text("p" * 32)
    pw.chmod(0o600)
    args = [
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
        "--raft-password-file",
        str(pw),
        "--insecure",
    ]
    if with_metrics:
        args += ["--metrics", f"127.0.0.1:{metrics_port}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "cli")]))
    with open(tmp_path / "node.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ports = wait_for(
            lambda: (p := _listening_ports(proc.pid)) >= {raft, grpc_port} and p,
            30,
            "the node's Raft and gRPC ports",
        )
        if with_metrics:
            assert ports == {raft, grpc_port, metrics_port}
            assert "schedd_raft_is_leader" in scrape_text(
                f"http://127.0.0.1:{metrics_port}/metrics"
            )
        else:
            assert ports == {raft, grpc_port}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_bad_metrics_address_is_refused_with_one_line(tmp_path: Path) -> None:
    raft, grpc_port = free_ports(2)
    env = dict(os.environ, SCHEDD_RAFT_PASSWORD="x" * 32)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "cli")])
    p = subprocess.run(
        [
            *(sys.executable, "-m", "schedd", "run", "--node-id", "n1"),
            *("--data-dir", str(tmp_path / "d"), "--insecure"),
            *("--raft", f"127.0.0.1:{raft}", "--grpc", f"127.0.0.1:{grpc_port}"),
            *("--metrics", "9100"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--metrics" in lines[0] and "HOST:PORT" in lines[0], p.stderr
