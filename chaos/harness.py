"""The chaos harness: a real schedd cluster whose every Raft link and every gRPC endpoint goes
through a userspace proxy it controls, real workers, a fencing sink, a history, and faults.

**Partitioning pysyncobj without root (the identity trick).** pysyncobj 0.3.17 opens one TCP
connection per pair of nodes, dialled only by the node whose self address string compares
*greater* (``_shouldConnect``), and the accepting node identifies the dialer by the address
string the dialer sends first. So node ``hi`` lists a lower node ``lo`` under a per-pair proxy
address (same digit count, compares lower than ``hi``'s own address, so ``hi`` still dials it),
and ``lo`` lists ``hi`` under its real address (which is what ``hi`` announces). Every pair's
single connection then runs ``hi → proxy(lo,hi) → lo``. ``assert_raft_proxied`` checks it from
the kernel's socket table: every established connection accepted on a node's Raft port must
come from a proxy's upstream socket. All ports are 5-digit (the Linux ephemeral range), so the
string comparison is the numeric one.

**gRPC.** Each node also gets a proxy in front of its gRPC port; the ``--peer`` gRPC addresses
are the proxy addresses, so the leader hints a follower hands out point through the proxies,
and workers and the workload client only ever talk through them. The harness's own monitor and
final-state reads use the real addresses.

**Membership changes** need one Raft address per node that every node dials (a member entry
carries it), which the per-pair proxy addresses of the trick cannot be. So the membership
scenarios build the cluster with ``raft_proxies=False``: Raft runs node to node (no Raft link
faults, no ``assert_raft_proxied``), gRPC stays proxied, every node advertises its gRPC proxy
(``--advertise-grpc``), and ``Harness.add_node`` / ``remove_member`` / ``wait_members`` grow and
shrink the cluster. Every other scenario runs exactly as before.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from chaos import faketime
from chaos import sink as sinkmod
from chaos.history import History
from chaos.proxy import Link, ProxyHub
from schedd import errors, models, rules, testing
from schedd.client import Client
from schedd.pb import api_pb2, types_pb2
from schedd.testing import LocalCluster, NodeSpec, free_ports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEASE_TTL_S = 3.0
FAST_ARGS = list(testing.FAST_ARGS)
assert f"{LEASE_TTL_S:g}s" in FAST_ARGS  # the checker's lease TTL is FAST_ARGS's

#: Second-level workload: (name, cron, queue, payload behaviour). Every handler fails on the first
#: attempt with probability fail_p and hangs (heartbeating) with probability hang_p; jobs allow
#: MAX_ATTEMPTS attempts unless "max_attempts" says otherwise (0: the server's default, 5).
WORKLOAD: list[tuple[str, str, str, dict[str, Any]]] = [
    ("tick-1s", "* * * * * *", "default", {}),
    ("flaky-2s", "*/2 * * * * *", "default", {"fail_p": 0.3}),
    ("slow-3s", "*/3 * * * * *", "default", {"hang_p": 0.3, "hang_s": 2.0}),
    ("victim-agent", "*/2 * * * * *", "agent", {"fail_p": 0.1}),
    ("victim-shell", "*/2 * * * * *", "shell", {"fail_p": 0.1}),
    (
        "default-2s",
        "*/2 * * * * *",
        "default",
        {"max_attempts": 0},
    ),  # the server's default (5 attempts)
]
MAX_ATTEMPTS = 20
#: A DAG (depends_on, docs/dependencies.md) for the dag scenarios: (name, cron or "" for none,
#: upstreams, trigger rule, payload behaviour, max attempts). dag-a, dag-b and dag-all fail some
#: runs for good (one attempt), so all_succeeded downstreams are skipped upstream_failed (and
#: any_succeeded ones when both upstreams died), and dag-after sees dead runs of dag-all;
#: dag-done and dag-any run on periods of their own and match the latest upstream slots at or
#: before theirs.
DAG_WORKLOAD: list[tuple[str, str, list[str], str, dict[str, Any], int]] = [
    ("dag-a", "*/2 * * * * *", [], "", {"fail_p": 0.25}, 1),
    ("dag-b", "*/2 * * * * *", [], "", {"fail_p": 0.2}, 1),
    ("dag-all", "*/2 * * * * *", ["dag-a", "dag-b"], "all_succeeded", {"fail_p": 0.2}, 1),
    ("dag-done", "*/3 * * * * *", ["dag-a", "dag-b"], "all_done", {}, 3),
    ("dag-any", "*/4 * * * * *", ["dag-a", "dag-b"], "any_succeeded", {}, 3),
    ("dag-after", "", ["dag-all"], "all_succeeded", {}, 3),
]
#: P1 holds the cluster to every slot of the workload, so no slot may be a legitimate misfire:
#: a leader's wall clock steps forward by up to 2 x CHAOS_CLOCK_SKEW_S in clock-jump (120 s by
#: default), past the default 60 s grace. Every other fault delays firings by seconds.
WORKLOAD_GRACE_MS = 5 * 60_000
#: (worker id, kind, queues)
WORKERS = [
    ("a1", "agent", "default,agent"),
    ("a2", "agent", "default,agent"),
    ("s1", "shell", "default,shell"),
]

TERMINAL = rules.FINAL_RUN_STATES  # SKIPPED included: a skip record is over too


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


class ProxiedCluster(LocalCluster):
    """A LocalCluster whose Raft pairs and gRPC ports sit behind ``hub`` proxies (only the gRPC
    ports with ``raft_proxies=False``: then nodes can be added with :meth:`add_node`)."""

    def __init__(
        self,
        root: str,
        hub: ProxyHub,
        nodes: int = 3,
        extra_args: list[str] | None = None,
        raft_proxies: bool = True,
    ) -> None:
        super().__init__(root, nodes=nodes, extra_args=extra_args or FAST_ARGS)
        #: False: Raft runs node to node, without proxies (and without the identity trick), so
        #: that nodes can join and leave: a member entry carries one Raft address per node that
        #: every node dials, which per-pair proxy addresses cannot follow. Only the gRPC ports
        #: are proxied then, and every node advertises its gRPC proxy (``--advertise-grpc``).
        self.raft_proxies = raft_proxies
        pairs = nodes * (nodes - 1) // 2 if raft_proxies else 0
        # one call: ports from two calls can coincide (each call releases its ports at the end)
        ports = free_ports(nodes + pairs + 2 * nodes)
        raft_side, grpc_side = sorted(ports[: nodes + pairs]), ports[nodes + pairs :]
        if any(not 10000 <= p <= 65535 for p in raft_side):
            raise RuntimeError(f"the identity trick needs 5-digit ports; got {raft_side}")
        raft_ports, proxy_ports = (
            raft_side[pairs:],
            raft_side[:pairs],
        )  # every proxy port < every node port
        for i, spec in enumerate(self.specs):
            self.specs[i] = NodeSpec(
                spec.node_id,
                _addr(raft_ports[i]),
                _addr(grpc_side[i]),
                spec.data_dir,
                spec.log_path,
            )
        self.hub = hub
        self.grpc_links: dict[str, Link] = {}
        self.raft_links: dict[
            tuple[str, str], Link
        ] = {}  # (lo, hi) -> link; hi dials lo through it
        for i, spec in enumerate(self.specs):
            self.grpc_links[spec.node_id] = hub.add(
                f"grpc-{spec.node_id}", _addr(grpc_side[nodes + i]), spec.grpc
            )
        k = 0
        for a in self.specs:
            for b in self.specs:
                if raft_proxies and a.raft < b.raft:
                    link = hub.add(f"raft-{a.node_id}-{b.node_id}", _addr(proxy_ports[k]), a.raft)
                    assert len(link.listen) == len(b.raft) and link.listen < b.raft
                    self.raft_links[(a.node_id, b.node_id)] = link
                    k += 1

        #: per-node overrides (set before the node starts): extra environment variables, and the
        #: module run instead of ``schedd`` (``chaos.faketime_node`` for a node under libfaketime)
        self.node_env: dict[str, dict[str, str]] = {}
        self.node_module: dict[str, str] = {}
        self._deferred: set[str] = set()  # being prepared by add_node: start_node waits

    @property
    def proxy_endpoints(self) -> list[str]:
        return [self.grpc_links[s.node_id].listen for s in self.specs]

    def set_data_dir(self, node_id: str, data_dir: str) -> None:
        """Put a node's data (LMDB, journal, snapshot) elsewhere; its log stays where it was."""
        i = next(i for i, s in enumerate(self.specs) if s.node_id == node_id)
        s = self.specs[i]
        self.specs[i] = NodeSpec(s.node_id, s.raft, s.grpc, data_dir, s.log_path)

    def start_node(self, node_id: str) -> None:
        spec = self.spec(node_id)
        if node_id in self._deferred:  # add_node prepares it, its caller starts it
            return
        os.makedirs(spec.data_dir, exist_ok=True)
        os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
        env = dict(self.env)
        env.update(self.node_env.get(node_id, {}))
        log = open(spec.log_path, "ab")
        self.procs[node_id] = subprocess.Popen(
            self.command(spec),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=REPO,
        )
        log.close()

    def command(self, spec: NodeSpec) -> list[str]:
        module = self.node_module.get(spec.node_id, "schedd")
        cmd = [
            sys.executable,
            "-m",
            module,
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
        if not self.raft_proxies:
            cmd += ["--advertise-grpc", self.grpc_links[spec.node_id].listen]
        if spec.join:
            cmd += ["--join", spec.join]
            return cmd + self.security_args(spec) + self.extra_args
        for other in self.specs:
            if other is spec or other.join:
                continue
            raft = (
                self.raft_links[(other.node_id, spec.node_id)].listen
                if self.raft_proxies and other.raft < spec.raft
                else other.raft
            )
            cmd += ["--peer", f"{other.node_id}={raft}/{self.grpc_links[other.node_id].listen}"]
        return cmd + self.security_args(spec) + self.extra_args

    def _unused_port(self, but: NodeSpec | None = None) -> int:
        """A free port that no node (running or not; ``but`` excepted) and no proxy of this
        cluster uses."""
        taken = {
            int(a.rsplit(":", 1)[1]) for s in self.specs if s is not but for a in (s.raft, s.grpc)
        }
        taken |= {int(link.listen.rsplit(":", 1)[1]) for link in self.hub.links.values()}
        while True:
            port = free_ports(1)[0]
            if port not in taken:
                return port

    def add_node(
        self, node_id: str | None = None, join_via: str | None = None, start: bool = True
    ) -> NodeSpec:
        """A new node that joins the running cluster (``--join``) behind a gRPC proxy of its own.
        Only without Raft proxies (see ``raft_proxies``). ``start=False``: its spec, certificate
        and proxy only; :meth:`start_node` starts it."""
        if self.raft_proxies:
            raise RuntimeError(
                "nodes cannot join a cluster whose Raft links run through per-pair proxies "
                "(the identity trick); build it with raft_proxies=False"
            )
        node_id = node_id or f"n{len(self.specs) + 1}"
        self._deferred.add(node_id)
        try:
            spec = super().add_node(node_id, join_via)
        finally:
            self._deferred.discard(node_id)
        # its ports were free, but a node that is down or not started yet leaves its own free
        spec.raft = _addr(self._unused_port(but=spec))
        spec.grpc = _addr(self._unused_port(but=spec))
        if spec.grpc == spec.raft:
            spec.grpc = _addr(self._unused_port())  # spec.raft now counts as taken
        self.grpc_links[node_id] = self.hub.add(
            f"grpc-{node_id}", _addr(self._unused_port()), spec.grpc
        )
        if start:
            self.start_node(node_id)
        return spec

    def links_of(self, node_id: str) -> list[Link]:
        return [link for (a, b), link in self.raft_links.items() if node_id in (a, b)]

    def pair_link(self, src: str, dst: str) -> tuple[Link, str]:
        """The link between two nodes and the proxy direction that carries ``src → dst``."""
        lo, hi = sorted((src, dst), key=lambda n: self.spec(n).raft)
        return self.raft_links[(lo, hi)], ("fwd" if src == hi else "back")

    def assert_raft_proxied(self, timeout: float = 30.0) -> dict[str, Any]:
        """Every pair connected through its proxy, and no Raft connection that bypasses one."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [link.name for link in self.raft_links.values() if link.connected() == 0]
            bad = self._direct_raft_connections()
            if not missing and not bad:
                return {"pairs": len(self.raft_links), "ok": True}
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Raft links not all proxied: unconnected={missing} direct={bad}"
                )
            time.sleep(0.2)

    def _direct_raft_connections(self) -> list[str]:
        node_ports = {int(s.raft.rsplit(":", 1)[1]) for s in self.specs}
        proxy_up = set()
        for link in self.raft_links.values():
            proxy_up |= link.upstream_ports()
        bad = []
        for local, remote in _established_tcp():
            if local in node_ports and remote not in proxy_up:
                bad.append(f"{remote}->{local}")
        return bad


def _last_error(log_path: str) -> str:
    """The last line of a node log that says why the node stopped by itself ("" if none)."""
    try:
        with open(log_path, errors="replace") as f:
            lines = [ln.strip() for ln in f if "error" in ln.lower() or "CRITICAL" in ln]
    except OSError:
        return ""
    return lines[-1][:400] if lines else ""


def _established_tcp() -> list[tuple[int, int]]:
    """(local port, remote port) of every ESTABLISHED IPv4 TCP socket on 127.0.0.1."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] != "01":
                continue
            out.append((int(parts[1].split(":")[1], 16), int(parts[2].split(":")[1], 16)))
    return out


@dataclass
class WorkerProc:
    worker_id: str
    kind: str
    queues: str
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False


@dataclass
class Quiesce:
    paused: dict[str, int] = field(default_factory=dict)  # job -> next_due_ms at pause


class Harness:
    """One scenario run: cluster + proxies + workers + sink + history under ``out``."""

    def __init__(
        self,
        out: str,
        nodes: int = 3,
        seed: int = 0,
        fencing: bool = True,
        workload: list[tuple[str, str, str, dict[str, Any]]] | None = None,
        raft_proxies: bool = True,
    ) -> None:
        self.out = os.path.abspath(out)
        os.makedirs(self.out, exist_ok=True)
        self.seed = seed
        self.rng = random.Random(seed)
        self.fencing = fencing
        self.workload = WORKLOAD if workload is None else workload
        self.dag: list[tuple[str, str, list[str], str, dict[str, Any], int]] = []
        self.history_path = os.path.join(self.out, "history.jsonl")
        self.sink_path = os.path.join(self.out, "sink.db")
        self.ctl = os.path.join(self.out, "ctl")
        os.makedirs(self.ctl, exist_ok=True)
        sinkmod.init(self.sink_path)
        self.h = History(self.history_path, "harness")
        self.nemesis = History(self.history_path, "nemesis")
        self.clienth = History(self.history_path, "client")
        self.hub = ProxyHub()
        self.cluster = ProxiedCluster(
            os.path.join(self.out, "cluster"), self.hub, nodes=nodes, raft_proxies=raft_proxies
        )
        self.workers = {wid: WorkerProc(wid, kind, queues) for wid, kind, queues in WORKERS}
        self._stop = threading.Event()
        self._crud_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: Client | None = None
        self.faults = 0
        self.quiesce = Quiesce()
        self.clock_files: dict[str, str] = {}  # node -> libfaketime timestamp file
        self.clock_offsets: dict[str, float] = {}
        self.mounts: list[str] = []  # tmpfs mounts to save and unmount at stop()
        self.h.write(
            "start",
            seed=seed,
            nodes=nodes,
            fencing=fencing,
            lease_ttl_s=LEASE_TTL_S,
            raft_proxies=raft_proxies,
            specs=[
                {
                    "node": s.node_id,
                    "raft": s.raft,
                    "grpc": s.grpc,
                    "grpc_proxy": self.cluster.grpc_links[s.node_id].listen,
                }
                for s in self.cluster.specs
            ],
            raft_links={
                link.name: [link.listen, link.target] for link in self.cluster.raft_links.values()
            },
        )

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start()
        self.cluster.wait_for_leader(timeout=30)
        if self.cluster.raft_proxies:
            self.h.write("proxy_check", **self.cluster.assert_raft_proxied())
        else:
            self.h.write("proxy_check", raft_proxies=False)
        self._spawn(self._monitor_loop, "monitor")
        for w in self.workers.values():
            self.start_worker(w.worker_id)

    def client(self) -> Client:
        if self._client is None:
            self._client = self.cluster.client(
                timeout=3, retry_for=30, wait_for=30, endpoints=self.cluster.proxy_endpoints
            )
        return self._client

    def _spawn(self, fn: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=fn, name=f"chaos-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Tear everything down; safe to call twice, never raises."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._client is not None:
            self._client.close()
        procs = [w.proc for w in self.workers.values() if w.proc is not None]
        procs += [p for p in self.cluster.procs.values()]
        for p in procs:
            _signal_group(p, signal.SIGCONT)
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(p, signal.SIGKILL)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._kill_effect_children()
        for ch in self.cluster._channels.values():
            ch.close()
        self.cluster._channels.clear()
        self.hub.close()
        for path in self.mounts:
            self._save_and_unmount(path)
        self.mounts.clear()

    def _kill_effect_children(self) -> None:
        """Shell-worker children run in their own sessions; kill any still running."""
        from chaos.history import read

        pids = {
            e["pid"]
            for e in read(self.history_path)
            if e.get("op") == "handler" and e.get("type") == "start"
        }
        for pid in pids - {os.getpid()}:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"chaos.effect" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # ---- workers -----------------------------------------------------------------------------

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.cluster.worker_env)
        env.update(
            CHAOS_SINK=self.sink_path,
            CHAOS_HISTORY=self.history_path,
            CHAOS_CTL=self.ctl,
            CHAOS_SEED=str(self.seed),
            CHAOS_FENCING="on" if self.fencing else "off",
            PYTHONPATH=os.pathsep.join(
                [REPO, os.path.join(REPO, "cli"), env.get("PYTHONPATH", "")]
            ),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start_worker(self, worker_id: str) -> None:
        w = self.workers[worker_id]
        eps = ",".join(self.cluster.proxy_endpoints)
        if w.kind == "agent":
            cmd = [
                sys.executable,
                "-m",
                "chaos.worker",
                "--id",
                w.worker_id,
                "--endpoints",
                eps,
                "--queues",
                w.queues,
                "--concurrency",
                "4",
            ]
        else:
            cmd = [
                sys.executable,
                "-m",
                "schedctl",
                "--endpoints",
                eps,
                "worker",
                "run",
                "--concurrency",
                "4",
                "--worker-id",
                w.worker_id,
            ]
            for q in w.queues.split(","):
                cmd += ["--queue", q]
            cmd += ["--", sys.executable, "-m", "chaos.effect"]
        log = open(os.path.join(self.out, f"worker-{w.worker_id}.log"), "ab")
        w.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.worker_env(),
            cwd=REPO,
            start_new_session=True,
        )
        log.close()
        w.paused = False
        self.h.write("worker_started", worker=w.worker_id, kind=w.kind, pid=w.proc.pid)

    def worker_alive(self, worker_id: str) -> bool:
        p = self.workers[worker_id].proc
        return p is not None and p.poll() is None

    # ---- faults (each one is a nemesis record) -----------------------------------------------

    def leader(self, timeout: float = 30.0) -> str:
        return self.cluster.wait_for_leader(timeout=timeout)

    def _term(self, node: str) -> int:
        st = self.cluster.status(node, timeout=1.0)
        return st.term if st is not None else -1

    def kill_node(self, node: str, leader_fault: bool = False, term: int | None = None) -> None:
        """SIGKILL ``node``. ``term``: its term, read beforehand when the kill must not wait
        for a status call."""
        term = self._term(node) if term is None else term
        self.nemesis.write("kill_node", node=node, leader_fault=leader_fault, term=term)
        self.faults += 1
        self.cluster.kill_node(node, signal.SIGKILL)

    def restart_node(self, node: str) -> None:
        self.cluster.start_node(node)
        self.nemesis.write("restart_node", node=node)

    def pause_node(self, node: str, leader_fault: bool = False) -> None:
        term = self._term(node)
        self.nemesis.write("pause_node", node=node, leader_fault=leader_fault, term=term)
        self.faults += 1
        self.cluster.procs[node].send_signal(signal.SIGSTOP)

    def resume_node(self, node: str) -> None:
        self.cluster.procs[node].send_signal(signal.SIGCONT)
        self.nemesis.write("resume_node", node=node)

    def isolate_node(self, node: str, leader_fault: bool = False) -> None:
        term = self._term(node)
        self.nemesis.write(
            "isolate_node",
            node=node,
            leader_fault=leader_fault,
            term=term,
            links=[link.name for link in self.cluster.links_of(node)],
        )
        self.faults += 1
        for link in self.cluster.links_of(node):
            link.cut("both")

    def cut_one_way(self, src: str, dst: str) -> None:
        link, direction = self.cluster.pair_link(src, dst)
        self.nemesis.write("cut_one_way", src=src, dst=dst, link=link.name, direction=direction)
        self.faults += 1
        link.cut(direction)

    def heal(self) -> None:
        self.hub.heal_all()
        self.nemesis.write("heal")

    def pause_worker(self, worker_id: str) -> None:
        w = self.workers[worker_id]
        self.nemesis.write("pause_worker", worker=worker_id, pid=w.proc.pid if w.proc else None)
        self.faults += 1
        if w.proc is not None:
            w.proc.send_signal(signal.SIGSTOP)
            w.paused = True

    def resume_worker(self, worker_id: str) -> None:
        w = self.workers[worker_id]
        if w.proc is not None:
            w.proc.send_signal(signal.SIGCONT)
            w.paused = False
        self.nemesis.write("resume_worker", worker=worker_id)

    def transfer_leadership(self, to: str, timeout: float = 30.0) -> bool:
        """Ask the leader to hand leadership to ``to`` until it does (a harness step, not a fault)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader == to:
                self.h.write("leader_moved", to=to, term=self._term(to))
                return True
            try:
                self.cluster._stub(leader).TransferLeadership(
                    api_pb2.TransferLeadershipRequest(to_node_id=to),
                    timeout=2,
                    metadata=self.cluster.credentials.metadata,
                )
            except grpc.RpcError:
                pass
            end = min(deadline, time.monotonic() + 3)
            while time.monotonic() < end and self.cluster.leader() != to:
                time.sleep(0.1)
        self.h.write("leader_move_failed", to=to, leader=self.cluster.leader())
        return False

    # ---- membership (a cluster built with raft_proxies=False) --------------------------------

    def add_node(self, join_via: str | None = None, start: bool = True) -> NodeSpec:
        """Start a new node that asks the cluster to add it (``schedd run --join``, through
        ``join_via``, default the first running node) and then catches up. ``start=False``:
        prepare it only (ports, certificate, gRPC proxy); :meth:`start_joiner` starts it."""
        spec = self.cluster.add_node(join_via=join_via, start=start)
        if start:
            self._node_added(spec)
        return spec

    def start_joiner(self, spec: NodeSpec) -> None:
        """Start a node prepared with ``add_node(start=False)``."""
        self.cluster.start_node(spec.node_id)
        self._node_added(spec)

    def _node_added(self, spec: NodeSpec) -> None:
        self.nemesis.write(
            "add_node",
            node=spec.node_id,
            raft=spec.raft,
            grpc=spec.grpc,
            grpc_proxy=self.cluster.grpc_links[spec.node_id].listen,
            join_via=spec.join,
        )

    def remove_member(self, node_id: str, timeout: float = 120.0) -> int:
        """Remove member ``node_id`` through the SDK (a leader hands leadership over first and
        the SDK follows it), then stop the node and forget it. A removal of the leader is a
        leader fault (the checker measures the failover). The leader's handover may fail
        (it answers UNAVAILABLE "leadership did not move in time; retry" after 10 s): the call
        is repeated, as the answer says, for up to ``timeout`` seconds. Returns the attempts."""
        leader = self.cluster.leader()
        self.nemesis.write(
            "remove_member",
            node=node_id,
            leader_fault=node_id == leader,
            term=self._term(node_id),
        )
        log_path = self.cluster.spec(node_id).log_path
        offset = os.path.getsize(log_path)
        t0 = time.monotonic()
        attempts = 0
        # the leader waits up to 10 s for its handover before answering: a longer deadline
        with self.cluster.client(
            timeout=15, retry_for=20, wait_for=30, endpoints=self.cluster.proxy_endpoints
        ) as c:
            while True:
                attempts += 1
                status, res = self.call(
                    "remove_member", lambda: c.remove_member(node_id), node=node_id
                )
                if status == "ok":
                    break
                # NOT_FOUND after a try whose outcome is unknown: that one committed
                if isinstance(res, errors.NotFound):
                    break
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"could not remove {node_id} in {attempts} attempts: {res}")
                time.sleep(1.0)
        with open(log_path, "rb") as f:
            f.seek(offset)
            handovers = f.read().count(f"event=leader_leaving node={node_id}:".encode())
        self.h.write(
            "member_removed",
            node=node_id,
            was_leader=node_id == leader,
            attempts=attempts,
            handovers=handovers,  # the leader handed leadership over this many times
            seconds=round(time.monotonic() - t0, 2),
        )
        rc = self.cluster.stop_node(node_id)
        self.cluster.forget_node(node_id)
        self.h.write("node_retired", node=node_id, rc=rc)
        return attempts

    def members_view(self) -> tuple[str | None, list[api_pb2.Member], int]:
        """(leader, its member list, its commit index); ``[]`` when no leader answers."""
        leader = self.cluster.leader()
        if leader is None:
            return None, [], 0
        try:
            resp = self.cluster._stub(leader).ListMembers(
                api_pb2.ListMembersRequest(),
                timeout=2,
                metadata=self.cluster.credentials.metadata,
            )
        except grpc.RpcError:
            return leader, [], 0
        return leader, list(resp.members), int(resp.commit_index)

    def membership_problems(self, expected: set[str], leader: str) -> list[str]:
        """How the running nodes disagree with member set ``expected`` and with ``leader``
        (each node's GetNodeStatus: its peers, role and leader); [] when they all agree."""
        problems = []
        running = {s.node_id for s in self.cluster.specs if self.cluster.alive(s.node_id)}
        if running != expected:
            problems.append(f"running {sorted(running)}")
        for node in sorted(running):
            st = self.cluster.status(node, timeout=1.0)
            if st is None:
                problems.append(f"{node} does not answer")
                continue
            listed = {node, *st.peers}
            if listed != expected:
                problems.append(f"{node} lists {sorted(listed)}")
            if (st.role == "leader") != (node == leader) or st.leader_id != leader:
                problems.append(f"{node} is {st.role} following {st.leader_id or '-'}")
        return problems

    def wait_members(
        self, expected: set[str], timeout: float = 30.0, restart_exited: bool = False
    ) -> float:
        """Wait until the leader lists exactly ``expected``, each a voter, connected, and with
        its log at least at the commit index of the previous look (caught up), and every
        running node lists the same members and follows that leader. Returns the seconds it
        took; raises RuntimeError on timeout. ``restart_exited``: restart a node whose process
        exited by itself (a ``--join`` that failed)."""
        t0 = time.monotonic()
        prev_commit: int | None = None
        last: list[str] = []
        while True:
            if restart_exited:
                for spec in list(self.cluster.specs):
                    p = self.cluster.procs.get(spec.node_id)
                    if p is not None and p.poll() is not None:
                        self.h.write(
                            "node_exited",
                            node=spec.node_id,
                            rc=p.returncode,
                            error=_last_error(spec.log_path),
                        )
                        self.restart_node(spec.node_id)
            leader, members, commit = self.members_view()
            if leader is None or not members:
                last = ["no leader answers ListMembers"]
            else:
                listed = {m.node_id for m in members}
                behind = [
                    f"{m.node_id}(voter={m.voter},connected={m.connected},match={m.match_index})"
                    for m in members
                    if not (
                        m.voter
                        and m.connected
                        and prev_commit is not None
                        and m.match_index >= prev_commit
                    )
                ]
                last = [f"leader {leader} lists {sorted(listed)}"] if listed != expected else []
                last += [f"behind: {', '.join(behind)}"] if behind else []
                if not last:
                    last = self.membership_problems(expected, leader)
                prev_commit = commit
            took = time.monotonic() - t0
            if not last:
                self.h.write(
                    "members_ok", members=sorted(expected), leader=leader, seconds=round(took, 2)
                )
                return took
            if took > timeout:
                self.h.write("members_timeout", members=sorted(expected), problems=last)
                raise RuntimeError(
                    f"members {sorted(expected)} not in place after {timeout:g}s: {'; '.join(last)}"
                )
            time.sleep(0.3)

    # ---- clock (libfaketime, one node) -------------------------------------------------------

    def enable_faketime(self, node_id: str, lib: str) -> None:
        """Before start: run ``node_id`` under libfaketime with a wall-clock offset file (now +0)."""
        path = os.path.join(self.out, f"faketime-{node_id}.rc")
        faketime.write_offset(path, 0)
        self.clock_files[node_id] = path
        self.clock_offsets[node_id] = 0.0
        self.cluster.node_env[node_id] = faketime.node_env(lib, path)
        self.cluster.node_module[node_id] = "chaos.faketime_node"
        self.h.write("faketime", node=node_id, lib=lib, file=path)

    def set_clock(self, node_id: str, offset_s: float) -> None:
        """Step ``node_id``'s wall clock to real time + ``offset_s`` (takes effect within ~1 s)."""
        prev = self.clock_offsets.get(node_id, 0.0)
        st = self.cluster.status(node_id, timeout=1.0)
        self.nemesis.write(
            "clock_jump",
            node=node_id,
            offset_s=offset_s,
            step_s=offset_s - prev,
            role=st.role if st is not None else "down",
            term=st.term if st is not None else -1,
        )
        if offset_s != prev:
            self.faults += 1
        faketime.write_offset(self.clock_files[node_id], offset_s)
        self.clock_offsets[node_id] = offset_s
        time.sleep(1.2)  # libfaketime re-reads the file at most once a second

    # ---- disk (tmpfs, one node) --------------------------------------------------------------

    def mount_tmpfs(self, path: str, size_mb: int) -> None:
        os.makedirs(path, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", path],
            check=True,
            capture_output=True,
            text=True,
        )
        self.mounts.append(path)
        self.h.write("tmpfs_mounted", path=path, size_mb=size_mb)

    def _save_and_unmount(self, path: str) -> None:
        """Keep a copy of the tmpfs for the post-mortem (``<path>.saved``), then unmount it."""
        import shutil

        try:
            shutil.copytree(
                path, path + ".saved", ignore=shutil.ignore_patterns("fill*"), dirs_exist_ok=True
            )
        except OSError:
            pass
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)

    def fill_disk(self, node_id: str, leave_bytes: int = 0) -> dict[str, int]:
        """Fill the filesystem under ``node_id``'s data dir with a filler file until ENOSPC."""
        d = self.cluster.spec(node_id).data_dir
        st = os.statvfs(d)
        free_before = st.f_bavail * st.f_frsize
        written = 0
        with open(os.path.join(d, "fill"), "wb", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12):
                block = b"\0" * chunk
                while True:
                    if leave_bytes and free_before - written - chunk < leave_bytes:
                        break
                    try:
                        written += f.write(block)
                    except OSError:
                        break
        st = os.statvfs(d)
        info = {
            "free_before": free_before,
            "filled": written,
            "free_after": st.f_bavail * st.f_frsize,
        }
        self.nemesis.write("disk_full", node=node_id, path=d, **info)
        self.faults += 1
        return info

    def free_disk(self, node_id: str) -> None:
        d = self.cluster.spec(node_id).data_dir
        try:
            os.unlink(os.path.join(d, "fill"))
        except FileNotFoundError:
            pass
        st = os.statvfs(d)
        self.nemesis.write("disk_freed", node=node_id, free=st.f_bavail * st.f_frsize)

    # ---- armed handler behaviours ------------------------------------------------------------

    def arm(self, what: str, job: str) -> str:
        name = f"{what}-{job}"
        for suffix in ("", ".taken", ".claimed"):
            try:
                os.unlink(os.path.join(self.ctl, name + suffix))
            except FileNotFoundError:
                pass
        try:
            os.unlink(os.path.join(self.ctl, f"go-{name}"))
        except FileNotFoundError:
            pass
        open(os.path.join(self.ctl, name), "w").close()
        self.h.write("arm", what=what, job=job)
        return name

    def wait_claim(self, name: str, timeout: float = 30.0) -> dict[str, Any] | None:
        path = os.path.join(self.ctl, name + ".claimed")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if os.path.exists(path):
                with open(path) as f:
                    return json.load(f)
            time.sleep(0.02)
        return None

    def release(self, name: str) -> None:
        open(os.path.join(self.ctl, f"go-{name}"), "w").close()

    def expect(self, what: str, **fields: Any) -> None:
        """A scenario-specific fact for the checker to verify."""
        self.h.write("expect", what=what, **fields)

    # ---- workload ----------------------------------------------------------------------------

    def call(
        self, op: str, fn: Callable[[], Any], hist: History | None = None, **args: Any
    ) -> tuple[str, Any]:
        """Run one client operation, recording invoke and its outcome (ok / fail / info)."""
        hist = hist or self.clienth
        key = uuid.uuid4().hex[:12]
        hist.write(op, "invoke", key=key, **args)
        try:
            res = fn()
        except (
            errors.AlreadyExists,
            errors.NotFound,
            errors.InvalidArgument,
            errors.FailedPrecondition,
        ) as e:
            # The SDK resends a delete after a lost connection, so NOT_FOUND may answer our own
            # earlier attempt that did commit (documented in Client.delete_job): outcome unknown.
            kind = "info" if op == "delete_job" and isinstance(e, errors.NotFound) else "fail"
            hist.write(op, kind, key=key, error=f"{type(e).__name__}: {e.message}", **args)
            return kind, e
        except (
            errors.SchedError
        ) as e:  # OutcomeUnknown, Unavailable, NotLeader, ...: may have applied
            hist.write(op, "info", key=key, error=f"{type(e).__name__}: {e.message}", **args)
            return "info", e
        fields: dict[str, Any] = {}
        if isinstance(res, (types_pb2.Job, models.Job)):
            fields["job"] = {
                "name": res.name,
                "uid": res.uid,
                "next_due_ms": res.next_due_ms,
                "state": int(res.state),
                "cron": res.schedule.cron,
            }
        elif isinstance(res, (types_pb2.Run, models.Run)):
            fields["run"] = {"run_id": res.run_id, "job": res.job, "scheduled_ms": res.scheduled_ms}
        hist.write(op, "ok", key=key, **fields, **args)
        return "ok", res

    def create_workload(self) -> None:
        c = self.client()
        for name, cron, queue, behaviour in self.workload:
            for _ in range(5):
                status, _ = self.call(
                    "create_job",
                    lambda n=name, cr=cron, q=queue, b=behaviour: c.create_job(
                        n,
                        cron=cr,
                        queue=q,
                        payload=json.dumps(b),
                        max_attempts=int(b.get("max_attempts", MAX_ATTEMPTS)),
                        request_id=f"workload-{n}",
                        misfire="fire_all",
                        misfire_grace_ms=WORKLOAD_GRACE_MS,
                    ),
                    name=name,
                    workload=True,
                    request_id=f"workload-{name}",
                )
                if status == "ok":
                    break
            else:
                raise RuntimeError(f"could not create workload job {name}")

        for name, cron, ups, rule, behaviour, attempts in self.dag:
            sched: dict[str, Any] = {"cron": cron} if cron else {}
            if ups:
                sched.update(depends_on=ups, trigger_rule=rule)
            for _ in range(5):
                status, _ = self.call(
                    "create_job",
                    lambda n=name, kw=sched, b=behaviour, a=attempts: c.create_job(
                        n,
                        queue="default",
                        payload=json.dumps(b),
                        max_attempts=a,
                        request_id=f"dag-{n}",
                        misfire="fire_all",
                        misfire_grace_ms=WORKLOAD_GRACE_MS,
                        **kw,
                    ),
                    name=name,
                    dag=True,
                    cron=cron,
                    depends_on=ups,
                    trigger_rule=rule,
                    request_id=f"dag-{name}",
                )
                if status == "ok":
                    break
            else:
                raise RuntimeError(f"could not create DAG job {name}")

    def start_crud(self, every_s: float = 0.6) -> None:
        self._spawn(lambda: self._crud_loop(every_s), "crud")

    def _crud_loop(self, every_s: float) -> None:
        hist = History(self.history_path, "crud")
        rng = random.Random(self.seed + 1)
        created: list[str] = []
        i = 0
        with self.cluster.client(
            timeout=2, retry_for=4, endpoints=self.cluster.proxy_endpoints
        ) as c:
            while not self._stop.wait(every_s):
                if created and rng.random() < 0.35:
                    name = created.pop(rng.randrange(len(created)))
                    self.call("delete_job", lambda n=name: c.delete_job(n), hist=hist, name=name)
                else:
                    i += 1
                    name = f"crud-{i}"
                    rid = f"crud-{self.seed}-{i}"
                    status, _ = self.call(
                        "create_job",
                        lambda n=name, r=rid: c.create_job(n, cron="0 0 1 1 *", request_id=r),
                        hist=hist,
                        name=name,
                        request_id=rid,
                    )
                    if status == "ok":
                        created.append(name)
                if self._crud_stop.is_set():
                    break

    def stop_crud(self) -> None:
        self._crud_stop.set()
        for t in self._threads:
            if t.name == "chaos-crud":
                t.join(timeout=15)

    # ---- monitor -----------------------------------------------------------------------------

    def _monitor_loop(self) -> None:
        hist = History(self.history_path, "monitor")
        seen: set[tuple[str, int]] = set()
        while not self._stop.wait(0.2):
            for spec in list(self.cluster.specs):
                try:
                    st = self.cluster.status(spec.node_id, timeout=0.4)
                except StopIteration:  # removed from the cluster meanwhile (forget_node)
                    continue
                if st is not None and st.role == "leader" and (spec.node_id, st.term) not in seen:
                    seen.add((spec.node_id, st.term))
                    hist.write("leader", node=spec.node_id, term=st.term)

    # ---- quiesce, drain, final state ---------------------------------------------------------

    def heal_everything(self) -> None:
        """Undo every fault: heal proxies and clocks, resume and restart nodes and workers."""
        self.hub.heal_all()
        for node_id, off in list(self.clock_offsets.items()):
            if off:
                self.set_clock(node_id, 0.0)
        for spec in self.cluster.specs:
            p = self.cluster.procs.get(spec.node_id)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
            elif p is not None:
                self.restart_node(spec.node_id)
        for w in self.workers.values():
            if w.paused:
                self.resume_worker(w.worker_id)
            if not self.worker_alive(w.worker_id):
                self.start_worker(w.worker_id)
        for name in os.listdir(self.ctl):  # release anything still waiting
            if name.endswith(".claimed"):
                self.release(name[: -len(".claimed")])
        self.h.write("healed")

    def quiesce_and_drain(self, drain_timeout: float = 60.0) -> None:
        self.stop_crud()
        self.heal_everything()
        self.leader(timeout=60)
        c = self.client()
        for name, *_ in self.workload:
            for _ in range(10):
                status, res = self.call(
                    "pause_job", lambda n=name: c.pause_job(n), name=name, quiesce=True
                )
                if status == "ok":
                    self.quiesce.paused[name] = res.next_due_ms
                    break
                time.sleep(0.5)
        # the DAG downstream first: every slot it claimed then has its upstream slots (a job
        # without a schedule stays active: it runs for every upstream outcome, and the drain
        # waits for it)
        for name, cron, *_ in reversed(self.dag):
            if not cron:
                continue
            for _ in range(10):
                status, res = self.call(
                    "pause_job", lambda n=name: c.pause_job(n), name=name, quiesce=True, dag=True
                )
                if status == "ok":
                    self.quiesce.paused[name] = res.next_due_ms
                    break
                time.sleep(0.5)
        self.h.write("quiesced", paused=self.quiesce.paused)
        deadline = time.monotonic() + drain_timeout
        open_runs: list[str] = []
        while time.monotonic() < deadline:
            try:
                runs = c.list_runs(limit=100_000)
            except errors.SchedError:
                time.sleep(0.5)
                continue
            open_runs = [r.run_id for r in runs if r.state not in TERMINAL]
            if not open_runs:
                break
            time.sleep(0.5)
        self.h.write("drained", ok=not open_runs, open_runs=open_runs[:50])
        time.sleep(1.0)  # late completions and stale sink writes land

    def collect_final(self) -> dict[str, Any]:
        c = self.client()
        final: dict[str, Any] = {"jobs": [], "runs": [], "nodes": {}, "converged": None}
        for _ in range(3):
            try:
                final["jobs"] = [
                    {
                        "name": j.name,
                        "uid": j.uid,
                        "state": int(j.state),
                        "next_due_ms": j.next_due_ms,
                    }
                    for j in c.list_jobs(limit=None)
                ]
                final["runs"] = [
                    {
                        "run_id": r.run_id,
                        "job": r.job,
                        "scheduled_ms": r.scheduled_ms,
                        "state": types_pb2.RunState.Name(r.state).removeprefix("RUN_STATE_"),
                        "attempt": r.attempt,
                        "fence": r.fence,
                        "worker_id": r.worker_id,
                        "manual": r.manual,
                        "origin": types_pb2.RunOrigin.Name(r.origin).removeprefix("RUN_ORIGIN_"),
                        "skip_reason": types_pb2.SkipReason.Name(r.skip_reason).removeprefix(
                            "SKIP_REASON_"
                        ),
                        "upstream_runs": list(r.upstream_runs),
                        "finished_ms": r.finished_ms,
                    }
                    for r in c.list_runs(limit=100_000)
                ]
                break
            except errors.SchedError as e:
                final["error"] = e.message
                time.sleep(1)
        try:
            index, digest = self.cluster.wait_converged(timeout=30)
            final["converged"] = {"applied_index": index, "digest": digest}
        except AssertionError as e:
            final["converged"] = None
            final["converge_error"] = str(e)
        for spec in self.cluster.specs:
            st = self.cluster.status(spec.node_id, with_digest=True)
            final["nodes"][spec.node_id] = (
                None
                if st is None
                else {
                    "role": st.role,
                    "term": st.term,
                    "applied_index": st.applied_index,
                    "commit_index": st.commit_index,
                    "digest": st.state_digest,
                    "leader_id": st.leader_id,
                    "peers": sorted(st.peers),
                }
            )
        leader, members, commit = self.members_view()
        final["members"] = (
            None
            if not members
            else {
                "leader": leader,
                "commit_index": commit,
                "members": [
                    {
                        "node_id": m.node_id,
                        "raft_address": m.raft_address,
                        "grpc_address": m.grpc_address,
                        "leader": m.leader,
                        "voter": m.voter,
                        "connected": m.connected,
                        "match_index": m.match_index,
                    }
                    for m in members
                ],
            }
        )
        with open(os.path.join(self.out, "final.json"), "w") as f:
            json.dump(final, f, indent=1)
        self.h.write(
            "final", converged=final["converged"], runs=len(final["runs"]), jobs=len(final["jobs"])
        )
        return final


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
