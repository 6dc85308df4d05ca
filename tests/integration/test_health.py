"""The standard gRPC health check (grpc.health.v1) tells the truth about quorum, on real
processes: a node left without a majority answers NOT_SERVING (for "" and every schedd.v1
service) within a few seconds, and SERVING again once the majority is back."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from schedd.pb import api_pb2
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for

pytestmark = pytest.mark.integration

SERVICES = [
    "",
    *(
        api_pb2.DESCRIPTOR.services_by_name[n].full_name
        for n in ("JobService", "RunService", "WorkerService", "ClusterService", "TokenService")
    ),
]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _statuses(cluster: LocalCluster, node_id: str) -> set[int]:
    """The health status of every service name on one node (no credentials needed)."""
    with cluster.credentials.channel(cluster.spec(node_id).grpc) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        out = set()
        for name in SERVICES:
            try:
                out.add(stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=2).status)
            except grpc.RpcError:
                out.add(-1)
        return out


def _all_serving(cluster: LocalCluster, timeout: float) -> None:
    for spec in cluster.specs:
        wait_for(
            functools.partial(_serving, cluster, spec.node_id), timeout, f"{spec.node_id} SERVING"
        )


def _serving(cluster: LocalCluster, node_id: str) -> bool:
    return _statuses(cluster, node_id) == {SERVING}


def test_health_follows_quorum(tmp_path_factory: pytest.TempPathFactory) -> None:
    c = LocalCluster(str(tmp_path_factory.mktemp("health")), nodes=3, extra_args=FAST_ARGS)
    c.start()
    try:
        leader = c.wait_for_leader(timeout=30)
        _all_serving(c, 10)
        others = [s.node_id for s in c.specs if s.node_id != leader]
        for node_id in others:
            c.kill_node(node_id)
        t0 = time.monotonic()
        wait_for(lambda: _statuses(c, leader) == {NOT_SERVING}, 10, "the survivor NOT_SERVING")
        took = time.monotonic() - t0
        assert took < 8, took
        # schedctl cluster status says so too, with the reason
        shown = subprocess.run(
            [sys.executable, "-m", "schedctl", "cluster", "status"],
            capture_output=True,
            text=True,
            env={**os.environ, **c.client_env, "SCHEDD_ENDPOINTS": c.spec(leader).grpc},
            timeout=60,
        )
        assert "NOT SERVING: " in shown.stdout, shown.stdout + shown.stderr
        for node_id in others:
            c.start_node(node_id)
        wait_for(lambda: _statuses(c, leader) == {SERVING}, 30, "the survivor SERVING again")
        c.wait_for_leader(timeout=30)
        _all_serving(c, 20)
        with open(c.spec(leader).log_path) as f:
            assert "status=NOT_SERVING" in f.read()
    finally:
        c.stop()
