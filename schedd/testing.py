"""Testing helpers shipped to users: a local cluster of real ``schedd run`` processes.

Every node is a separate OS process on 127.0.0.1 with its own data directory, so killing one
(SIGKILL), pausing one (SIGSTOP) or restarting the whole cluster behaves as in production. Used by
``schedd dev``, schedd's own tests and benchmarks, and by your tests:

    from schedd.testing import local_cluster

    def test_my_job_definitions() -> None:
        with local_cluster() as cluster:          # 3 nodes in a temp dir, leader elected
            cluster.client.create_job("nightly", cron="0 3 * * *")
            leader = cluster.kill_leader()        # SIGKILL; the client follows the new leader
            assert cluster.client.get_job("nightly").name == "nightly"

With pytest, the ``schedd_cluster`` fixture of :mod:`schedd.pytest_plugin` does the same per test
(docs/sdk.md). A node that exits on its own makes the waits raise naming its log file.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from schedd.pb import api_grpc, api_pb2

if TYPE_CHECKING:
    from schedd.aio import AsyncClient
    from schedd.client import Client
    from schedd.sdk.credentials import Credentials

__all__ = [
    "FAST_ARGS",
    "LocalCluster",
    "NodeSpec",
    "RunningCluster",
    "free_ports",
    "local_cluster",
]

#: ``schedd run`` options that make failures show quickly in tests: leases expire after 3 s,
#: workers heartbeat every 0.5 s, failed attempts are retried after 0.2 s.
FAST_ARGS: tuple[str, ...] = (
    "--lease-ttl",
    "3s",
    "--heartbeat-interval",
    "500ms",
    "--retry-backoff",
    "200ms",
)


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
    """Where one node of a :class:`LocalCluster` listens and keeps its data and log."""

    node_id: str
    raft: str
    grpc: str
    data_dir: str
    log_path: str
    metrics: str = ""  # HOST:PORT of its /metrics ("" without metrics)
    join: str = ""  # gRPC endpoint it joins through (``--join``), instead of ``--peer`` flags
    http: str = ""  # HOST:PORT of its web dashboard ("" without one)


class LocalCluster:
    """``nodes`` schedd processes under ``root``. Ports are random unless ``base_port`` is given
    (then gRPC = base+i, Raft = base+100+i).

    ``secure`` (the default): a development CA in ``root/pki`` issues each node a certificate,
    an admin and a worker client certificate; nodes require mutual TLS and know a bootstrap
    cluster-admin token (``root/admin.token``). :attr:`client_env` holds what a client needs
    (also written to ``root/env``); :meth:`client` and :attr:`credentials` use it.
    ``secure=False`` starts the nodes with ``--insecure`` (plaintext, no authentication).
    ``metrics``: each node serves Prometheus metrics (``--metrics``) on a port of its own
    (base+200+i with ``base_port``), at :meth:`metrics_url`.
    ``http``: each node serves the web dashboard (``--http``; base+300+i with ``base_port``) at
    :meth:`dashboard_url`: HTTPS with the node's certificate on a secure cluster, plain HTTP
    with ``http_plaintext`` (``schedd dev``) or on an insecure one.
    """

    def __init__(
        self,
        root: str,
        nodes: int = 3,
        base_port: int | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        secure: bool = True,
        metrics: bool = False,
        http: bool = False,
        http_plaintext: bool = False,
    ) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.secure = secure
        self.http_plaintext = http_plaintext or (http and not secure)
        if base_port is None:
            ports = free_ports(4 * nodes)
            grpc_ports, raft_ports = ports[:nodes], ports[nodes : 2 * nodes]
            metrics_ports, http_ports = ports[2 * nodes : 3 * nodes], ports[3 * nodes :]
        else:
            grpc_ports = [base_port + i for i in range(nodes)]
            raft_ports = [base_port + 100 + i for i in range(nodes)]
            metrics_ports = [base_port + 200 + i for i in range(nodes)]
            http_ports = [base_port + 300 + i for i in range(nodes)]
        self.specs = [
            NodeSpec(
                f"n{i + 1}",
                f"127.0.0.1:{raft_ports[i]}",
                f"127.0.0.1:{grpc_ports[i]}",
                os.path.join(self.root, f"n{i + 1}"),
                os.path.join(self.root, f"n{i + 1}", "node.log"),
                f"127.0.0.1:{metrics_ports[i]}" if metrics else "",
                http=f"127.0.0.1:{http_ports[i]}" if http else "",
            )
            for i in range(nodes)
        ]
        self.password_file = os.path.join(self.root, "raft-password")
        if not os.path.exists(self.password_file):
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))  # 43 bytes; nodes refuse fewer than 16
        else:  # a folder made by an older version: nodes refuse a password file others can read
            os.chmod(self.password_file, 0o600)
        self.extra_args = list(extra_args)
        self.env = dict(os.environ if env is None else env)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._bootstrap_seen = False  # the leader has recorded the bootstrap token
        self._features_seen = False  # the leader has raised the feature level (every node reported)
        self.pki_dir = os.path.join(self.root, "pki")
        self.token_file = os.path.join(self.root, "admin.token")
        if secure:
            self._issue()

    # ---- credentials -------------------------------------------------------------------------

    def _issue(self) -> None:
        from schedd.security.pki import DevPKI

        pki = DevPKI(self.pki_dir)
        self.ca_file = pki.ca_path
        self.node_certs = {s.node_id: pki.node(s.node_id) for s in self.specs}
        self.admin_cert = pki.admin("admin")
        self.worker_cert = pki.worker("worker")
        if not os.path.exists(self.token_file):
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("sdt_" + secrets.token_urlsafe(32) + "\n")

    @property
    def client_env(self) -> dict[str, str]:
        """The ``SCHEDD_*`` variables a client of this cluster needs (endpoints, CA, the admin
        client certificate and the bootstrap token; ``SCHEDD_INSECURE=1`` when not secure)."""
        if not self.secure:
            return {"SCHEDD_ENDPOINTS": self.endpoints_env, "SCHEDD_INSECURE": "1"}
        return {
            "SCHEDD_ENDPOINTS": self.endpoints_env,
            "SCHEDD_CA": self.ca_file,
            "SCHEDD_CERT": self.admin_cert.cert,
            "SCHEDD_KEY": self.admin_cert.key,
            "SCHEDD_TOKEN_FILE": self.token_file,
        }

    @property
    def worker_env(self) -> dict[str, str]:
        """Like :attr:`client_env`, with the worker certificate and no token: what a worker
        process uses (its identity comes from the certificate)."""
        if not self.secure:
            return self.client_env
        return {
            "SCHEDD_ENDPOINTS": self.endpoints_env,
            "SCHEDD_CA": self.ca_file,
            "SCHEDD_CERT": self.worker_cert.cert,
            "SCHEDD_KEY": self.worker_cert.key,
        }

    @functools.cached_property
    def credentials(self) -> Credentials:
        """:attr:`client_env` as SDK credentials."""
        from schedd.sdk.credentials import Credentials

        return Credentials.from_env(self.client_env)

    @functools.cached_property
    def worker_credentials(self) -> Credentials:
        """:attr:`worker_env` as SDK credentials (for an in-process ``Worker``)."""
        from schedd.sdk.credentials import Credentials

        return Credentials.from_env(self.worker_env)

    def write_env(self, path: str | None = None) -> str:
        """Write :attr:`client_env` as ``export`` lines (default ``root/env``); the path."""
        import shlex

        path = path or os.path.join(self.root, "env")
        with open(path, "w") as f:
            for k, v in self.client_env.items():
                f.write(f"export {k}={shlex.quote(v)}\n")
        return path

    # ---- addresses ---------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """The nodes' gRPC addresses, in node order."""
        return [s.grpc for s in self.specs]

    @property
    def endpoints_env(self) -> str:
        """The endpoints as one comma-separated string (for ``SCHEDD_ENDPOINTS``)."""
        return ",".join(self.endpoints)

    def metrics_url(self, node_id: str) -> str:
        """``http://HOST:PORT/metrics`` of node ``node_id``; ValueError without ``metrics``."""
        spec = self.spec(node_id)
        if not spec.metrics:
            raise ValueError(
                "this cluster was started without metrics (LocalCluster(metrics=True))"
            )
        return f"http://{spec.metrics}/metrics"

    def dashboard_url(self, node_id: str) -> str:
        """``https://HOST:PORT/`` (``http://`` when plaintext) of node ``node_id``'s dashboard;
        ValueError without ``http``."""
        spec = self.spec(node_id)
        if not spec.http:
            raise ValueError(
                "this cluster was started without dashboards (LocalCluster(http=True))"
            )
        return f"{'http' if self.http_plaintext else 'https'}://{spec.http}/"

    def dashboard_login_url(self, node_id: str) -> str:
        """The dashboard URL that signs in with the admin token (what ``schedd dev`` prints);
        the plain URL on an insecure cluster, which needs no sign-in."""
        base = self.dashboard_url(node_id)
        if not self.secure:
            return base
        with open(self.token_file) as f:
            token = f.read().strip()
        return f"{base}login?token={token}"

    def spec(self, node_id: str) -> NodeSpec:
        """The spec of node ``node_id`` (``n1``, ``n2``, ...). Raises StopIteration if none."""
        return next(s for s in self.specs if s.node_id == node_id)

    def command(self, spec: NodeSpec) -> list[str]:
        """The ``schedd run`` command line of a node."""
        cmd = [
            sys.executable,
            "-m",
            "schedd",
            "run",
            "--node-id",
            spec.node_id,
            "--data-dir",
            spec.data_dir,
            "--raft",
            spec.raft,
            "--grpc",
            spec.grpc,
            "--raft-password-file",
            self.password_file,
        ]
        if spec.join:
            cmd += ["--join", spec.join]
        else:
            for other in self.specs:
                if other is not spec and not other.join:
                    cmd += ["--peer", f"{other.node_id}={other.raft}/{other.grpc}"]
        if spec.metrics:
            cmd += ["--metrics", spec.metrics]
        if spec.http:
            cmd += ["--http", spec.http] + (["--http-plaintext"] if self.http_plaintext else [])
        return cmd + self.security_args(spec) + self.extra_args

    def security_args(self, spec: NodeSpec) -> list[str]:
        """The node's TLS and token options (``--insecure`` when the cluster is not secure)."""
        if not self.secure:
            return ["--insecure"]
        cert = self.node_certs[spec.node_id]
        return [
            *("--tls-cert", cert.cert, "--tls-key", cert.key, "--tls-ca", self.ca_file),
            *("--bootstrap-token-file", self.token_file),
        ]

    # ---- processes ---------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        """Start every node (without waiting for a leader: see :meth:`wait_for_leader`)."""
        for spec in self.specs:
            self.start_node(spec.node_id)
        return self

    def start_node(self, node_id: str) -> None:
        """Start (or restart) one node; its output is appended to its ``node.log``."""
        spec = self.spec(node_id)
        os.makedirs(spec.data_dir, mode=0o700, exist_ok=True)
        log = os.fdopen(
            os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600),
            "ab",
        )
        self.procs[node_id] = subprocess.Popen(
            self.command(spec),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()

    def add_node(self, node_id: str | None = None, join_via: str | None = None) -> NodeSpec:
        """A new node (fresh ports, data directory and certificate) started with ``--join``
        through ``join_via`` (default: the first running node's gRPC address); it asks the
        cluster to add it and catches up from the leader. Returns its spec."""
        node_id = node_id or f"n{len(self.specs) + 1}"
        if any(s.node_id == node_id for s in self.specs):
            raise ValueError(f"{node_id} exists already")
        grpc_port, raft_port = free_ports(2)
        via = join_via or next(s.grpc for s in self.specs if self.alive(s.node_id))
        spec = NodeSpec(
            node_id,
            f"127.0.0.1:{raft_port}",
            f"127.0.0.1:{grpc_port}",
            os.path.join(self.root, node_id),
            os.path.join(self.root, node_id, "node.log"),
            join=via,
        )
        if self.secure:
            from schedd.security.pki import DevPKI

            self.node_certs[node_id] = DevPKI(self.pki_dir).node(node_id)
        self.specs.append(spec)
        self.start_node(node_id)
        return spec

    def forget_node(self, node_id: str) -> None:
        """Stop node ``node_id`` and drop it from this cluster's specs (after removing it from
        the cluster's members)."""
        spec = self.spec(node_id)
        self.stop_node(node_id)
        self.specs = [s for s in self.specs if s.node_id != node_id]
        ch = self._channels.pop(spec.grpc, None)
        if ch is not None:
            ch.close()

    def alive(self, node_id: str) -> bool:
        """Whether the node's process is running (a SIGSTOPped one counts as running)."""
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def kill_node(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a node; for SIGKILL, SIGTERM and SIGINT wait until it has exited."""
        proc = self.procs[node_id]
        if proc.poll() is None:
            proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                proc.wait(timeout=30)

    def stop_node(self, node_id: str, timeout: float = 15.0) -> int | None:
        """Stop a node gracefully (SIGTERM, SIGKILL after ``timeout``); its exit code, or None
        if it was never started."""
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
        """Stop every node and close the status channels. Idempotent."""
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        for spec in self.specs:
            self.stop_node(spec.node_id)

    def kill_leader(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> str:
        """Wait for a leader, send it ``sig`` (SIGKILL: wait until it is gone) and return its
        id. The cluster elects a new leader if a majority is left (see :meth:`wait_for_leader`)."""
        leader = self.wait_for_leader(timeout=timeout)
        self.kill_node(leader, sig)
        return leader

    def client(self, endpoints: Sequence[str] | None = None, **options: Any) -> Client:
        """A new :class:`schedd.client.Client` for every node (or ``endpoints``) with the
        cluster's credentials (``options``: its keyword arguments, e.g. ``timeout``). Close it
        when done."""
        from schedd.client import Client

        options.setdefault("credentials", self.credentials)
        return Client(endpoints or self.endpoints, **options)

    def async_client(self, **options: Any) -> AsyncClient:
        """A new :class:`schedd.aio.AsyncClient` for every node; use it in one event loop and
        ``await client.close()`` (or ``async with``) when done."""
        from schedd.aio import AsyncClient

        options.setdefault("credentials", self.credentials)
        return AsyncClient(self.endpoints, **options)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observation -------------------------------------------------------------------------

    def _channel(self, node_id: str) -> grpc.Channel:
        addr = self.spec(node_id).grpc
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = self.credentials.channel(addr)
        return ch

    def _stub(self, node_id: str) -> api_grpc.ClusterServiceStub:
        return api_grpc.ClusterServiceStub(self._channel(node_id))

    def status(
        self, node_id: str, with_digest: bool = False, timeout: float = 2.0
    ) -> api_pb2.NodeStatus | None:
        """The node's own status (protobuf), or None when it is down or does not answer."""
        if not self.alive(node_id):
            return None
        try:
            return self._stub(node_id).GetNodeStatus(
                api_pb2.NodeStatusRequest(with_digest=with_digest),
                timeout=timeout,
                metadata=self.credentials.metadata,
            )
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
        """Wait until a node (other than ``exclude``) leads; its id. Raises TimeoutError naming the
        logs, or RuntimeError when a node exited on its own."""
        deadline = time.monotonic() + timeout
        led_since: float | None = None
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader != exclude and self._bootstrapped(leader):
                # the feature level rises only once every member reported: with a member that
                # cannot reach the others it never does, so it is waited for a few seconds only
                led_since = led_since if led_since is not None else time.monotonic()
                if self._features_settled(leader) or time.monotonic() - led_since > 5.0:
                    return leader
            else:
                led_since = None
            self._check_alive()
            time.sleep(0.1)
        raise TimeoutError(f"no leader within {timeout}s; node logs are in {self.root}/n*/node.log")

    def _bootstrapped(self, leader: str) -> bool:
        """Whether the leader has recorded the bootstrap token (a secure cluster's first own
        entry): waiting for it keeps that entry out of what a test measures next."""
        if not self.secure or self._bootstrap_seen:
            return True
        try:
            tokens = api_grpc.TokenServiceStub(self._channel(leader)).ListTokens(
                api_pb2.ListTokensRequest(include_revoked=True),
                timeout=2.0,
                metadata=self.credentials.metadata,
            )
        except grpc.RpcError:
            return False
        self._bootstrap_seen = any(t.name == "bootstrap" for t in tokens.tokens)
        return self._bootstrap_seen

    def _features_settled(self, leader: str) -> bool:
        """Whether the leader has raised the cluster's feature level at least once, i.e. every
        node's report of its version is in the log (a new cluster's first entries after the
        bootstrap token): waiting for it keeps them out of what a test measures next."""
        if self._features_seen:
            return True
        st = self.status(leader)
        if st is None:
            return False
        self._features_seen = st.feature_level > 0
        return self._features_seen

    def _check_alive(self) -> None:
        for node_id, proc in self.procs.items():
            if proc.poll() is not None and proc.returncode not in (
                0,
                -signal.SIGKILL,
                -signal.SIGTERM,
            ):
                raise RuntimeError(
                    f"node {node_id} exited with {proc.returncode}; see {self.spec(node_id).log_path}"
                )

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


# ---- for users' tests ----------------------------------------------------------------------


@dataclass
class RunningCluster:
    """A started :class:`LocalCluster` with an elected leader and a connected client, as given
    by :func:`local_cluster` and the ``schedd_cluster`` pytest fixture.

    ``client`` is closed when the cluster stops. Everything of :class:`LocalCluster`
    (``kill_node``, ``start_node``, ``status``, ``wait_converged``, ...) is on ``cluster``.
    """

    cluster: LocalCluster
    client: Client

    @property
    def endpoints(self) -> list[str]:
        """The nodes' gRPC addresses."""
        return self.cluster.endpoints

    @property
    def endpoints_env(self) -> str:
        """The endpoints as one comma-separated string (for ``SCHEDD_ENDPOINTS``)."""
        return self.cluster.endpoints_env

    @property
    def root(self) -> str:
        """The directory holding the nodes' data and logs (``<root>/n1/node.log``, ...)."""
        return self.cluster.root

    @property
    def client_env(self) -> dict[str, str]:
        """The ``SCHEDD_*`` variables for a client of this cluster (see LocalCluster)."""
        return self.cluster.client_env

    @property
    def credentials(self) -> Credentials:
        """The SDK credentials of :attr:`client` (TLS roots, admin certificate, token)."""
        return self.cluster.credentials

    def async_client(self, **options: Any) -> AsyncClient:
        """A new :class:`schedd.aio.AsyncClient` for this cluster (close it when done)."""
        return self.cluster.async_client(**options)

    def kill_leader(self, sig: int = signal.SIGKILL) -> str:
        """SIGKILL (or ``sig``) the current leader; its node id. See :meth:`LocalCluster.kill_leader`."""
        return self.cluster.kill_leader(sig)

    def wait_for_leader(self, timeout: float = 30.0, exclude: str | None = None) -> str:
        """Wait until a node (other than ``exclude``) leads; its node id."""
        return self.cluster.wait_for_leader(timeout=timeout, exclude=exclude)

    def wait_converged(self, timeout: float = 30.0) -> tuple[int, str]:
        """Wait until the running nodes agree on applied index and state digest; both."""
        return self.cluster.wait_converged(timeout=timeout)


@contextlib.contextmanager
def local_cluster(
    nodes: int = 3,
    *,
    root: str | None = None,
    extra_args: Sequence[str] = FAST_ARGS,
    timeout: float = 30.0,
    client_timeout: float = 5.0,
    retry_for: float = 30.0,
) -> Iterator[RunningCluster]:
    """Start ``nodes`` real schedd processes, wait for a leader, yield a :class:`RunningCluster`,
    and stop everything on exit (also on an exception).

    ``root``: the data directory; by default a fresh temporary one that is removed afterwards
    (a given ``root`` is kept, logs included). ``extra_args``: ``schedd run`` options, by default
    :data:`FAST_ARGS`. ``timeout``: how long to wait for the first leader. ``client_timeout`` and
    ``retry_for`` configure the yielded client (see :class:`schedd.client.Client`).
    """

    own_root = root is None
    path = tempfile.mkdtemp(prefix="schedd-test-") if root is None else root
    cluster = LocalCluster(path, nodes=nodes, extra_args=extra_args)
    client: Client | None = None
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=timeout)
        client = cluster.client(timeout=client_timeout, retry_for=retry_for)
        yield RunningCluster(cluster, client)
    finally:
        if client is not None:
            client.close()
        cluster.stop()
        if own_root:
            shutil.rmtree(path, ignore_errors=True)
