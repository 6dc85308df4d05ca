"""A local cluster of real ``schedd run`` processes, for ``schedd dev``, tests and benchmarks.

Every node is a separate OS process on 127.0.0.1 with its own data directory, so killing one
(SIGKILL), pausing one (SIGSTOP) or restarting the whole cluster behaves as in production.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from schedd.pb import api_grpc, api_pb2


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound once, then released)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class NodeSpec:
    node_id: str
    raft: str
    grpc: str
    data_dir: str
    log_path: str


class LocalCluster:
    """``nodes`` schedd processes under ``root``. Ports are random unless ``base_port`` is given
    (then gRPC = base+i, Raft = base+100+i)."""

    def __init__(self, root: str, nodes: int = 3, base_port: int | None = None,
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        if base_port is None:
            ports = free_ports(2 * nodes)
            grpc_ports, raft_ports = ports[:nodes], ports[nodes:]
        else:
            grpc_ports = [base_port + i for i in range(nodes)]
            raft_ports = [base_port + 100 + i for i in range(nodes)]
        self.specs = [NodeSpec(f"n{i + 1}", f"127.0.0.1:{raft_ports[i]}", f"127.0.0.1:{grpc_ports[i]}",
                               os.path.join(self.root, f"n{i + 1}"), os.path.join(self.root, f"n{i + 1}", "node.log"))
                      for i in range(nodes)]
        self.password_file = os.path.join(self.root, "raft-password")
        if not os.path.exists(self.password_file):
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        self.extra_args = list(extra_args)
        self.env = dict(os.environ if env is None else env)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._channels: dict[str, grpc.Channel] = {}

    # ---- addresses ---------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [s.grpc for s in self.specs]

    @property
    def endpoints_env(self) -> str:
        return ",".join(self.endpoints)

    def spec(self, node_id: str) -> NodeSpec:
        return next(s for s in self.specs if s.node_id == node_id)

    def command(self, spec: NodeSpec) -> list[str]:
        cmd = [sys.executable, "-m", "schedd", "run", "--node-id", spec.node_id, "--data-dir", spec.data_dir,
               "--raft", spec.raft, "--grpc", spec.grpc, "--raft-password-file", self.password_file]
        for other in self.specs:
            if other is not spec:
                cmd += ["--peer", f"{other.node_id}={other.raft}/{other.grpc}"]
        return cmd + self.extra_args

    # ---- processes ---------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        for spec in self.specs:
            self.start_node(spec.node_id)
        return self

    def start_node(self, node_id: str) -> None:
        spec = self.spec(node_id)
        os.makedirs(spec.data_dir, exist_ok=True)
        log = open(spec.log_path, "ab")
        self.procs[node_id] = subprocess.Popen(self.command(spec), stdout=log, stderr=subprocess.STDOUT,
                                               env=self.env, start_new_session=True)
        log.close()

    def alive(self, node_id: str) -> bool:
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def kill_node(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[node_id]
        if proc.poll() is None:
            proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                proc.wait(timeout=30)

    def stop_node(self, node_id: str, timeout: float = 15.0) -> int | None:
        proc = self.procs.get(node_id)
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        for spec in self.specs:
            self.stop_node(spec.node_id)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observation -------------------------------------------------------------------------

    def _stub(self, node_id: str) -> api_grpc.ClusterServiceStub:
        addr = self.spec(node_id).grpc
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = grpc.insecure_channel(addr)
        return api_grpc.ClusterServiceStub(ch)

    def status(self, node_id: str, with_digest: bool = False, timeout: float = 2.0) -> api_pb2.NodeStatus | None:
        if not self.alive(node_id):
            return None
        try:
            return self._stub(node_id).GetNodeStatus(api_pb2.NodeStatusRequest(with_digest=with_digest),
                                                     timeout=timeout)
        except grpc.RpcError:
            return None

    def leader(self) -> str | None:
        """The node that says it leads and whose followers agree, else None."""
        for spec in self.specs:
            st = self.status(spec.node_id)
            if st is not None and st.role == "leader":
                return spec.node_id
        return None

    def wait_for_leader(self, timeout: float = 30.0, exclude: str | None = None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader != exclude:
                return leader
            self._check_alive()
            time.sleep(0.1)
        raise TimeoutError(f"no leader within {timeout}s; node logs are in {self.root}/n*/node.log")

    def _check_alive(self) -> None:
        for node_id, proc in self.procs.items():
            if proc.poll() is not None and proc.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM):
                raise RuntimeError(f"node {node_id} exited with {proc.returncode}; see {self.spec(node_id).log_path}")

    def wait_converged(self, timeout: float = 30.0) -> tuple[int, str]:
        """Wait until every running node reports the same applied index and state digest."""
        deadline = time.monotonic() + timeout
        last: list[tuple[str, int, str]] = []
        while time.monotonic() < deadline:
            last = []
            for spec in self.specs:
                if not self.alive(spec.node_id):
                    continue
                st = self.status(spec.node_id, with_digest=True)
                if st is None:
                    break
                last.append((spec.node_id, st.applied_index, st.state_digest))
            else:
                if last and len({(i, d) for _, i, d in last}) == 1:
                    return last[0][1], last[0][2]
            time.sleep(0.2)
        raise AssertionError(f"replicas did not converge within {timeout}s: {last}")
