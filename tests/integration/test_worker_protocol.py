"""The worker protocol as another language sees it, against a real cluster: server reflection
under both ``grpc.reflection.v1`` and ``v1alpha``, and the Node.js worker of
``examples/node-worker`` (loads the .proto files, says Hello, heartbeats while idle, completes
firings with their fences, drains on SIGTERM).

The Node test needs ``node`` and ``npm`` and the npm registry (``npm install`` of @grpc/grpc-js and
@grpc/proto-loader into a temporary copy of the example); without them it is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_reflection.v1alpha import reflection_pb2

from schedd.client import Client
from schedd.pb import types_pb2
from schedd.testing import LocalCluster
from tests._util import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3600_000


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with cluster.client(retry_for=30) as c:
        yield c


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_the_services_under_both_names(
    cluster: LocalCluster, version: str
) -> None:
    """grpcurl and grpc-js tools ask for grpc.reflection.v1 first; only v1alpha was served."""
    node = cluster.wait_for_leader()
    channel = cluster.credentials.channel(cluster.spec(node).grpc)
    try:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="schedd.v1.Hello"),
        ]
        listed, found = list(call(iter(requests), timeout=10))
        names = {s.name for s in listed.list_services_response.service}
        assert {
            "schedd.v1.WorkerService",
            "schedd.v1.JobService",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= names
        assert found.file_descriptor_response.file_descriptor_proto
    finally:
        channel.close()


@pytest.fixture(scope="module")
def node_worker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/node-worker with its packages installed (skips when it cannot be)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for the Node.js worker example (not on PATH)")
    dest = tmp_path_factory.mktemp("node-worker") / "node-worker"
    shutil.copytree(
        ROOT / "examples" / "node-worker", dest, ignore=shutil.ignore_patterns("node_modules")
    )
    try:
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm install of the Node.js example took over 300 s (no network?)")
    if proc.returncode != 0:
        pytest.skip(f"npm install failed (no network to the npm registry?): {proc.stderr[-500:]}")
    return dest


class NodeProc:
    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["node", "worker.js", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, part: str) -> bool:
        return any(part in line for line in self.lines)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def test_the_node_worker_example_runs_firings(
    cluster: LocalCluster, client: Client, node_worker_dir: Path
) -> None:
    queue = f"node-{uuid.uuid4().hex[:6]}"
    job = f"hello-{uuid.uuid4().hex[:6]}"
    client.create_job(job, every_ms=HOUR_MS, queue=queue, max_attempts=1)
    worker_id = f"node-{uuid.uuid4().hex[:6]}"
    env = {
        "PATH": os.environ["PATH"],
        **cluster.worker_env,
        "SCHEDD_PROTO_DIR": str(ROOT / "proto"),
    }
    nw = NodeProc(node_worker_dir, env, "--queue", queue, "--job", job, "--worker-id", worker_id)
    try:
        wait_for(lambda: nw.saw("event=connected"), 30, "the Node worker connected:\n" + nw.text)
        [info] = [w for w in client.list_workers() if w.worker_id == worker_id]
        assert info.jobs == (job,) and info.queues == (queue,)

        def succeeded(run_ids: list[str]) -> bool:
            return all(client.get_run(r).state == types_pb2.RUN_STATE_SUCCEEDED for r in run_ids)

        runs = [client.trigger_job(job).run_id for _ in range(3)]
        wait_for(lambda: succeeded(runs), 30, "the Node worker's completions:\n" + nw.text)
        assert {client.get_run(r).worker_id for r in runs} == {worker_id}
        # idle for longer than two heartbeat intervals: still getting work (it heartbeats)
        time.sleep(5)
        late = client.trigger_job(job).run_id
        wait_for(lambda: succeeded([late]), 30, "a firing after an idle spell:\n" + nw.text)
        # a failure is reported as one, with the worker's text
        client.update_job(
            job, every_ms=HOUR_MS, queue=queue, max_attempts=1, payload=json.dumps({"fail": "boom"})
        )
        bad = client.trigger_job(job).run_id
        wait_for(lambda: client.get_run(bad).state == types_pb2.RUN_STATE_DEAD, 30, "a failed run")
        assert client.get_run(bad).error == "boom"
        nw.proc.send_signal(signal.SIGTERM)
        assert nw.proc.wait(timeout=20) == 0
        assert nw.saw("event=draining") and nw.saw("event=stopped")
    finally:
        if nw.proc.poll() is None:
            nw.proc.kill()
            nw.proc.wait()
