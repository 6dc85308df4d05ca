"""A schedd node: LMDB store + Raft + dispatcher + gRPC server, wired together.

Lifecycle: ``Node(config).start()`` ... ``stop()``. ``stop`` hands leadership to a caught-up
peer first when this node leads, so a rolling restart does not wait out an election timeout.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from schedd.clock import Clock, SystemClock
from schedd.errors import FailedPrecondition, InvalidArgument, NotLeader, Unavailable
from schedd.pb import api_pb2
from schedd.raft import membership
from schedd.raft.adapter import RaftNode, StateAheadOfJournal
from schedd.raft.journal import JournalCorrupt
from schedd.raft.quorum import QuorumHealth
from schedd.raft.settings import RaftSettings
from schedd.raft.transport import RaftTls, TlsConfigError, TlsFiles, read_secret_file
from schedd.security.tls import ServerTLS, TLSConfigError, server_credentials
from schedd.server import reflection
from schedd.server.auth import AuthInterceptor, TokenTable, bootstrap_token
from schedd.server.decode import DecodeInterceptor
from schedd.server.dispatcher import Dispatcher, DispatchSettings
from schedd.server.limits import Limits, ScanSlots, WriteRates
from schedd.server.metrics import MetricsServer, NodeMetrics, parse_listen
from schedd.server.metrics_grpc import MetricsInterceptor
from schedd.server.metrics_state import NodeCollector
from schedd.server.service import add_services
from schedd.server.snapshots import Snapshots
from schedd.server.workers import Registry
from schedd.state import disk
from schedd.state.apply import Result, features
from schedd.state.store import Store, fatal

log = logging.getLogger("schedd.node")

#: When this process started (close enough: when the server module was first imported), for
#: NodeStatus.started_ms: `schedctl cluster status` shows uptime, so a restarted node shows.
PROCESS_STARTED_MS = int(time.time() * 1000)


@dataclass(frozen=True)
class Peer:
    node_id: str
    raft: str
    grpc: str

    @staticmethod
    def parse(text: str) -> Peer:
        """``ID=RAFT_HOST:PORT/GRPC_HOST:PORT``"""
        node_id, eq, rest = text.partition("=")
        raft, slash, grpc_addr = rest.partition("/")
        if not (node_id and eq and slash and _is_addr(raft) and _is_addr(grpc_addr)):
            raise InvalidArgument("--peer", f"{text!r} is not ID=RAFT_HOST:PORT/GRPC_HOST:PORT")
        return Peer(node_id, raft, grpc_addr)


def _is_addr(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    data_dir: str
    raft: str
    grpc: str
    password: str
    peers: tuple[Peer, ...] = ()
    raft_settings: RaftSettings = field(default_factory=RaftSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    map_size: int = 4 << 30
    #: the LMDB map grows online up to this (0: 8 x map_size); client writes are refused near it
    max_map_size: int = 0
    #: the gRPC server's threads (0: one per worker stream plus the reserve for other calls,
    #: ``limits.max_worker_streams + limits.reserved_grpc_threads``)
    grpc_workers: int = 0
    min_free_bytes: int = 64 << 20  # stop (exit 70) below this much free disk
    #: the node's certificate: served on the gRPC port (None: plaintext, allowed only with
    #: insecure=True); with a CA also mutual TLS between the nodes' Raft ports (without one,
    #: Raft peers are authenticated by the Fernet password only)
    tls: ServerTLS | None = None
    #: plaintext and no authentication: every caller may do everything (--insecure)
    insecure: bool = False
    #: file holding the bootstrap token's secret: the leader records its hash as a cluster-admin
    #: token named "bootstrap" unless a token of that name exists (or was revoked)
    bootstrap_token_file: str = ""
    limits: Limits = field(default_factory=Limits)
    #: HOST:PORT to serve Prometheus metrics on, plain HTTP ("": no metrics, no port opened)
    metrics: str = ""
    #: HOST:PORT to serve the web dashboard on ("": none): HTTPS with the node's certificate,
    #: plain HTTP only with http_plaintext (docs/dashboard.md)
    http: str = ""
    http_plaintext: bool = False
    #: the gRPC address clients and the other nodes are told for this node, when --grpc binds
    #: an address they cannot dial (0.0.0.0 in a container) ("": --grpc itself)
    advertise_grpc: str = ""

    @property
    def grpc_address(self) -> str:
        """Where clients reach this node (what leader hints and the member list say)."""
        return self.advertise_grpc or self.grpc

    def validate(self) -> None:
        if not self.node_id:
            raise InvalidArgument("--node-id", "is required")
        if not _is_addr(self.raft):
            raise InvalidArgument("--raft", f"{self.raft!r} is not HOST:PORT")
        if not _is_addr(self.grpc):
            raise InvalidArgument("--grpc", f"{self.grpc!r} is not HOST:PORT")
        if not self.password:
            raise InvalidArgument(
                "raft password",
                "is required: set SCHEDD_RAFT_PASSWORD or pass "
                "--raft-password-file (Raft traffic is always encrypted)",
            )
        ids = [self.node_id, *(p.node_id for p in self.peers)]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("--peer", "node ids must be unique")
        addrs = [self.raft, *(p.raft for p in self.peers)]
        if len(set(addrs)) != len(addrs):
            raise InvalidArgument("--peer", "raft addresses must be unique")
        if self.tls is None and not self.insecure:
            raise InvalidArgument(
                "--tls-cert",
                "the gRPC port needs a certificate (--tls-cert and --tls-key, plus --tls-ca to "
                "require client certificates); to serve plaintext without authentication on a "
                "trusted network, pass --insecure explicitly",
            )
        if self.tls is not None and self.insecure:
            raise InvalidArgument("--insecure", "cannot be combined with --tls-cert")
        if self.advertise_grpc and not _is_addr(self.advertise_grpc):
            raise InvalidArgument("--advertise-grpc", f"{self.advertise_grpc!r} is not HOST:PORT")
        if self.metrics:
            parse_listen(self.metrics)
        if self.http_plaintext and not self.http:
            raise InvalidArgument("--http-plaintext", "needs --http HOST:PORT")
        if self.http:
            parse_listen(self.http, "--http")
            if self.tls is None and not self.http_plaintext:
                raise InvalidArgument(
                    "--http",
                    "this node has no certificate to serve HTTPS with (--insecure): add "
                    "--http-plaintext to serve the dashboard over plain HTTP, knowingly",
                )
        if self.map_size < (1 << 20):
            raise InvalidArgument("--map-size", f"{self.map_size >> 20} MiB is below 1 MiB")
        if self.max_map_size and self.max_map_size < self.map_size:
            raise InvalidArgument(
                "--max-map-size",
                f"{self.max_map_size >> 20} MiB is below --map-size ({self.map_size >> 20} MiB); "
                "the map only grows: give a ceiling at least as large",
            )

    @property
    def map_ceiling(self) -> int:
        """The LMDB map's ceiling in bytes (--max-map-size, default 8 x --map-size)."""
        return self.max_map_size or 8 * self.map_size


def _read_bootstrap(path: str) -> str:
    """The bootstrap token's secret ("" without a file). Refuses a short secret or a file that
    group or others can read: it is a cluster-admin credential."""
    if not path:
        return ""
    try:
        secret = read_secret_file(path)
    except PermissionError as e:
        raise InvalidArgument("--bootstrap-token-file", str(e)) from None
    except OSError as e:
        raise InvalidArgument(
            "--bootstrap-token-file", f"cannot read {path}: {e.strerror}"
        ) from None
    if len(secret) < 32:
        raise InvalidArgument(
            "--bootstrap-token-file",
            f"the token in {path} is {len(secret)} characters; use at least 32 random ones, e.g. "
            'python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
    return secret


def _private_dir(path: str) -> None:
    """Create the data directory 0700, or make an existing one 0700: it holds the replicated
    state and the Raft journal, which only the node's user may read."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        try:
            os.chmod(path, mode & 0o700)
        except OSError as e:  # not its owner: say so, the files inside are 0600 regardless
            log.warning(
                "event=data_dir_readable_by_others dir=%s mode=%04o error=%s", path, mode, e
            )
            return
        log.warning(
            "event=data_dir_mode_tightened dir=%s was=%04o now=%04o", path, mode, mode & 0o700
        )


def _record_answer(answer: list[bool], event: threading.Event, sent: bool) -> None:
    answer.append(sent)
    event.set()


def _boot_id() -> str:
    """This boot of the machine (Linux); "" where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _set_aside_state_torn_by_a_machine_crash(state_dir: str, marker: str) -> None:
    """LMDB runs without a sync per transaction (the Raft journal is the durable record; LMDB
    is synced once a second). A process crash loses nothing (the page cache survives), but a
    power cut or kernel crash can leave LMDB's data and meta pages half written: a database
    that opens but is wrong. The marker holds the boot id while the node runs and is removed
    after a clean stop; finding it with another boot id means the machine went down under the
    node. Then the state is set aside and rebuilt from the snapshot and the journal, which hold
    everything it had applied."""
    try:
        with open(marker) as f:
            seen = f.read().strip()
    except FileNotFoundError:
        return
    boot = _boot_id()
    if not (seen and boot and seen != boot and os.path.isdir(state_dir)):
        return
    aside = state_dir + ".torn"
    if os.path.exists(aside):
        shutil.rmtree(aside)
    os.rename(state_dir, aside)
    disk.fsync_dir(os.path.dirname(state_dir))
    log.warning(
        "event=state_rebuild state=%s set_aside=%s: the machine restarted while this node was running "
        "(power cut or kernel crash), so its LMDB state may be torn; it is rebuilt from the Raft "
        "snapshot and journal (the old copy can be deleted)",
        state_dir,
        aside,
    )


class Node:
    def __init__(self, config: NodeConfig, clock: Clock | None = None) -> None:
        config.validate()
        self.config = config
        self._bootstrap_secret = _read_bootstrap(config.bootstrap_token_file)
        grpc_creds = None
        if config.tls is not None:
            try:
                grpc_creds = server_credentials(config.tls)
            except TLSConfigError as e:
                raise InvalidArgument(e.flag, e.message) from None
        self.clock = clock or SystemClock()
        self.propose_timeout_s = 5.0
        # Metrics only when asked for: without --metrics no instrument exists, no port is
        # opened and the hooks stay None (one comparison on the hot paths). The port is bound
        # first, before any state is opened: a port in use is a configuration error (exit 2).
        self.metrics = NodeMetrics() if config.metrics else None
        self.metrics_server = (
            MetricsServer(config.metrics, self.metrics.registry) if self.metrics else None
        )
        self.dashboard = self._dashboard() if config.http else None
        raft_tls = None
        if config.tls is not None and config.tls.ca:
            # the same certificate and CA: mutual TLS between the nodes' Raft ports
            files = TlsFiles(cert=config.tls.cert, key=config.tls.key, ca=config.tls.ca)
            try:
                raft_tls = RaftTls(files)
            except TlsConfigError as e:
                raise InvalidArgument(e.flag, e.problem) from None
        _private_dir(config.data_dir)
        state_dir = os.path.join(config.data_dir, "state")
        self._running_marker = os.path.join(config.data_dir, "running.boot")
        _set_aside_state_torn_by_a_machine_crash(state_dir, self._running_marker)
        self.store = Store(state_dir, map_size=config.map_size, max_map_size=config.map_ceiling)
        disk.write_file(self._running_marker, _boot_id().encode())
        self._member_lock = threading.Lock()  # one membership change at a time on this node
        level = self.store.feature_level()
        if level > features.SUPPORTED:
            fatal(
                f"the state in {state_dir} is at feature level {level} "
                f"({features.NAMES.get(level, 'newer')}); this version supports up to "
                f"{features.SUPPORTED}: run the version the rest of the cluster runs (a node "
                "cannot go back to a version older than the cluster's feature level)"
            )
            raise SystemExit(70)
        self._features_reported = 0  # the level this process has reported through the log
        members = self._initial_members()
        self._members = {m.raft: m for m in members}
        self.registry = Registry()
        self.snapshots = Snapshots(
            self.store,
            config.data_dir,
            config.min_free_bytes,
            lambda: [m.node_id for m in self._members.values()],
            rate_bytes_s=config.raft_settings.snapshot_copy_mib_s * (1 << 20),
        )
        self.scans = ScanSlots(config.limits.max_concurrent_scans)
        self.worker_streams = ScanSlots(config.limits.max_worker_streams)
        self.write_rates = WriteRates(config.limits.write_rate_per_s, config.limits.write_burst)
        try:
            self.raft = RaftNode(
                config.raft,
                [m.raft for m in members if m.raft != config.raft],
                self.store,
                config.data_dir,
                config.password,
                config.raft_settings,
                tls=raft_tls,
            )
        except JournalCorrupt as e:
            fatal(
                f"Raft journal damaged: {e}. A crash only ever tears the end of the journal, which "
                "is repaired on start; this is damage before the end (disk or file corruption). "
                "Move the data directory aside and restart the node empty, so it is restored from "
                "the leader (safe while the other nodes hold a majority)"
            )
            raise
        except StateAheadOfJournal as e:
            fatal(str(e))
            raise
        except OSError as e:
            fatal(
                f"cannot open the Raft journal in {config.data_dir}: {e}; check the disk and the "
                "directory's permissions, then restart the node"
            )
            raise
        if raft_tls is None:
            log.info(
                "event=raft_tls_off node=%s: Raft peers are authenticated by the password only; "
                "for mutual TLS between nodes pass --tls-cert, --tls-key and --tls-ca "
                "(docs/security.md)",
                config.node_id,
            )
        self.raft.on_members = self._members_applied
        if self.metrics is not None:
            self.raft.on_propose = self.metrics.propose
            self.raft.journal.on_sync = self.metrics.fsync
        if not config.raft_settings.fsync:
            log.warning(
                "event=unsafe_no_fsync node=%s: the Raft journal is not fsynced before writes are "
                "acknowledged; a power cut of a majority can lose acknowledged writes. Use this only "
                "for tests and throw-away clusters",
                config.node_id,
            )
        self.dispatcher = Dispatcher(
            node_id=config.node_id,
            store=self.store,
            raft=self.raft,
            clock=self.clock,
            registry=self.registry,
            leader_hint=self.leader_grpc,
            settings=config.dispatch,
            metrics=self.metrics,
        )
        self.store.on_applied = self._applied
        self.tokens = TokenTable(
            self.store.tokens_version, self.store.list_tokens, self.clock.now_ms
        )
        self.server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=config.grpc_workers
                or config.limits.max_worker_streams + config.limits.reserved_grpc_threads,
                thread_name_prefix="grpc",
            ),
            options=[("grpc.so_reuseport", 0)],
            # metrics first: it also counts the calls authentication refuses; then auth, so a
            # caller without credentials learns nothing about its request
            interceptors=[
                *([MetricsInterceptor(self.metrics.registry)] if self.metrics else []),
                AuthInterceptor(
                    self.tokens,
                    insecure=config.insecure,
                    leader_hint=lambda: None if self.raft.is_leader() else self.leader_grpc(),
                ),
                DecodeInterceptor(),
            ],
        )
        names = add_services(self.server, self)
        self.health = health.HealthServicer()
        #: the names the health check answers for: the server ("") and each schedd.v1 service
        self._health_names = ["", *names]
        self.quorum_health = QuorumHealth(config.raft_settings.election_max_s, time.monotonic())
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable(self.server, [*names, health.SERVICE_NAME])  # v1 and v1alpha
        if grpc_creds is not None:
            port = self.server.add_secure_port(config.grpc, grpc_creds)
        else:
            log.warning(
                "event=insecure node=%s grpc=%s: serving plaintext without authentication "
                "(--insecure); anyone who reaches this port can read and change every job. "
                "Use --tls-cert/--tls-key/--tls-ca outside a trusted test network",
                config.node_id,
                config.grpc,
            )
            port = self.server.add_insecure_port(config.grpc)
        if port == 0:
            raise InvalidArgument("--grpc", f"cannot listen on {config.grpc} (in use?)")
        if self._bootstrap_secret:
            self.tokens.accept_bootstrap(bootstrap_token(self._bootstrap_secret))
        self._stopped = threading.Event()
        self._syncer: threading.Thread | None = None
        if self.metrics is not None:
            self.metrics.registry.register(NodeCollector(self))

    def _dashboard(self) -> Any:
        """The web dashboard's server, its port bound (a port in use: InvalidArgument naming
        --http). Its SDK clients reach this node first, then the peers, with this node's TLS
        files; every call carries the signed-in user's token (schedd.web.gateway)."""
        from schedd.web import dashboard_server
        from schedd.web.gateway import endpoints_of
        from schedd.web.server import is_loopback
        from schedd.web.server import parse_listen as parse_http

        config = self.config
        tls = config.tls
        if config.http_plaintext and not is_loopback(parse_http(config.http)[0]):
            log.warning(
                "event=dashboard_plaintext node=%s http=%s: the dashboard serves plain HTTP on a "
                "non-loopback address (--http-plaintext); tokens typed into it cross the network "
                "unencrypted",
                config.node_id,
                config.http,
            )
        return dashboard_server(
            config.http,
            node_id=config.node_id,
            endpoints=endpoints_of(config.grpc_address, [p.grpc for p in config.peers]),
            cert=tls.cert if tls else "",
            key=tls.key if tls else "",
            ca=tls.ca if tls else "",
            insecure=config.insecure,
            plaintext=config.http_plaintext,
            figures=self.metrics.totals if self.metrics is not None else None,
        )

    def _initial_members(self) -> tuple[membership.Member, ...]:
        """The member list this node starts with: the one its state recorded at the last
        membership change it applied, else its flags (``--node-id`` and ``--peer``; or the list
        ``--join`` fetched). A node whose state names it with another Raft address stops: it
        would claim another node's place."""
        config = self.config
        flags = (
            membership.Member(config.node_id, config.raft, config.grpc_address),
            *(membership.Member(p.node_id, p.raft, p.grpc) for p in config.peers),
        )
        recorded = self.store.members()
        if recorded is None:
            return flags
        members = membership.from_json(recorded)
        me = next((m for m in members if m.node_id == config.node_id), None)
        if me is not None and me.raft != config.raft:
            fatal(
                f"this node's state records it as member {config.node_id} with Raft address "
                f"{me.raft}, but it was started with --raft {config.raft}: start it with --raft "
                f"{me.raft}, or remove it (schedctl member remove {config.node_id}), delete its "
                "data directory and add it again with the new address"
            )
            raise SystemExit(70)
        if me is None:
            log.warning(
                "event=not_a_member node=%s: this node was removed from the cluster (members: %s); "
                "it receives nothing and takes no part in elections. Stop it, or delete its data "
                "directory and start it with --join to add it again",
                config.node_id,
                ",".join(m.node_id for m in members),
            )
        ignored = {p.node_id for p in config.peers} - {m.node_id for m in members}
        if ignored:
            log.info(
                "event=peer_flags_superseded node=%s ignored=%s: the member list in the state "
                "(changed with schedctl member add/remove) is used, not --peer",
                config.node_id,
                ",".join(sorted(ignored)),
            )
        return members

    def _members_applied(self, index: int, members: tuple[membership.Member, ...]) -> None:
        """The Raft layer applied a membership change (tick thread)."""
        was_member = self.config.raft in self._members
        self._members = {m.raft: m for m in members}
        if was_member and self.config.raft not in self._members:
            log.warning(
                "event=removed_from_cluster node=%s index=%d: this node is no longer a member; "
                "stop its process (it receives nothing more)",
                self.config.node_id,
                index,
            )

    def _applied(self, _index: int, result: Result) -> None:
        """The store's hook for every applied entry (tick thread)."""
        if self.metrics is not None:
            self.metrics.applied(result)
        self.dispatcher.applied(result)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self.dispatcher.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._syncer = threading.Thread(target=self._sync_loop, name="lmdb-sync", daemon=True)
        self._syncer.start()
        threading.Thread(target=self._health_loop, name="health", daemon=True).start()
        if self._bootstrap_secret:
            threading.Thread(target=self._bootstrap_loop, name="bootstrap", daemon=True).start()
        threading.Thread(target=self._features_loop, name="features", daemon=True).start()
        log.info(
            "event=node_started node=%s raft=%s grpc=%s peers=%s",
            self.config.node_id,
            self.config.raft,
            self.config.grpc,
            ",".join(m.node_id for m in self.members() if m.raft != self.config.raft) or "-",
        )
        if self.metrics_server is not None:
            log.info(
                "event=metrics_serving node=%s url=%s", self.config.node_id, self.metrics_server.url
            )
        if self.dashboard is not None:
            self.dashboard.start()
            log.info(
                "event=dashboard_serving node=%s url=%s", self.config.node_id, self.dashboard.url
            )

    def _set_health(self, status: int) -> None:
        for name in self._health_names:
            self.health.set(name, status)  # type: ignore[arg-type]

    def _health_loop(self) -> None:
        """Every 200 ms: the gRPC health status follows whether this node is part of a working
        majority (schedd.raft.quorum), so a load balancer or a readiness probe stops sending
        callers to a node that cannot commit anything."""
        serving = health_pb2.HealthCheckResponse.SERVING
        while not self._stopped.wait(0.2):
            try:
                q = self.quorum_health
                if q.observe(self.raft.quorum_view(), time.monotonic()):
                    status = serving if q.serving else health_pb2.HealthCheckResponse.NOT_SERVING
                    if not self._stopped.is_set():  # stop() set NOT_SERVING for good
                        self._set_health(status)
                    log.log(
                        logging.INFO if q.serving else logging.WARNING,
                        "event=health_changed node=%s status=%s reason=%s",
                        self.config.node_id,
                        "SERVING" if q.serving else "NOT_SERVING",
                        q.reason or "-",
                    )
            except Exception:
                log.exception("event=health_check_failed")

    def _sync_loop(self) -> None:
        # Every second: stop the node cleanly before the disk is full (an I/O error would stop
        # it less clearly), and sync LMDB (never ahead of the Raft journal, see
        # RaftNode.checkpoint). With the durable journal LMDB needs syncing only to shorten a
        # replay: after a machine crash it is rebuilt from the journal anyway (running.boot), and
        # each sync is a filesystem journal commit that delays concurrent fdatasyncs, so then
        # every 10 s. With --unsafe-no-fsync this is the journal's only sync: every second.
        every = 1 if not self.config.raft_settings.fsync else 10
        seconds = 0
        while not self._stopped.wait(1.0):
            seconds += 1
            try:
                free = shutil.disk_usage(self.config.data_dir).free
                if free < self.config.min_free_bytes:
                    fatal(
                        f"only {free >> 20} MiB free on the disk of {self.config.data_dir} "
                        f"(the minimum is {self.config.min_free_bytes >> 20} MiB): free some space "
                        "or grow the volume, then restart the node; it catches up from its peers"
                    )
                # the map is local: growing it needs no agreement (schedd.state.mapsize)
                self.store.maybe_grow()
                if seconds % every == 0:
                    self.raft.checkpoint()
            except Exception:
                log.exception("event=checkpoint_failed")

    def stop(self, handover_s: float = 3.0) -> None:
        if self._stopped.is_set():
            return
        log.info(
            "event=node_stopping node=%s leader=%s", self.config.node_id, self.raft.is_leader()
        )
        if self.raft.is_leader() and len(self._members) > 1 and self.raft.hasQuorum:
            self._hand_over(handover_s)
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.dispatcher.stop()
        if self.dashboard is not None:
            self.dashboard.stop()
        self.server.stop(grace=1.0).wait(2.0)
        self.raft.destroy_synchronous()
        self.store.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        os.unlink(self._running_marker)  # LMDB is synced and closed: a reboot cannot tear it now
        disk.fsync_dir(self.config.data_dir)
        log.info("event=node_stopped node=%s", self.config.node_id)

    def _bootstrap_loop(self) -> None:
        """Until the bootstrap token is recorded: check every 100 ms (the record is the first
        entry a new cluster's leader proposes after its barrier), then stop."""
        while not self._stopped.wait(0.1):
            try:
                if self._maybe_bootstrap():
                    return
            except Exception:
                log.exception("event=bootstrap_token_failed")

    def _maybe_bootstrap(self) -> bool:
        """On the leader: record the bootstrap token (its hash) once, so that it shows in
        ``token list`` and can be revoked; a revoked one is never re-created. True once the
        state holds a token of that name."""
        if any(t.name == "bootstrap" for t in self.store.list_tokens()):
            return True
        if not self.raft.is_leader() or not self.dispatcher.active:
            return False
        from schedd.pb import command_pb2
        from schedd.state.apply import encode

        # audited as the node that recorded it (schedd.state.apply.audit)
        cmd = command_pb2.Command(
            now_ms=self.clock.now_ms(), principal=f"node:{self.config.node_id} (bootstrap)"
        )
        cmd.create_token.token.CopyFrom(bootstrap_token(self._bootstrap_secret))
        try:
            self.raft.propose(encode(cmd), self.propose_timeout_s)
        except Exception as e:  # not leader any more, no quorum: try again shortly
            log.debug("event=bootstrap_token_deferred error=%r", e)
        return False

    # ---- feature levels (schedd.state.apply.features) -----------------------------------------

    def _features_loop(self) -> None:
        """Every 500 ms until stopped: report this version's feature level through the log
        (once per process), and on the leader raise the cluster's level when every member
        supports a higher one."""
        while not self._stopped.wait(0.5):
            try:
                self._features_step()
            except Exception as e:  # no leader, no quorum, a timeout: try again shortly
                log.debug("event=features_deferred error=%r", e)

    def _features_step(self) -> None:
        from schedd.pb import command_pb2
        from schedd.state.apply import encode

        supported = features.SUPPORTED
        levels = features.node_levels(self.store.node_features())
        me = self.config.node_id
        if levels.get(me) != supported and self._features_reported != supported:
            if not self.raft.leader_address():
                return
            cmd = command_pb2.Command(now_ms=self.clock.now_ms(), principal=f"node:{me}")
            cmd.report_features.node_id = me
            cmd.report_features.supported = supported
            self.raft.propose(
                encode(cmd), self.propose_timeout_s
            )  # a follower's goes to the leader
            self._features_reported = supported
            log.info("event=features_reported node=%s supported=%d", me, supported)
            return
        if not self.raft.is_leader() or not self.dispatcher.active:
            return
        members = self.members()
        common = min(levels.get(m.node_id, 0) for m in members)
        current = self.store.feature_level()
        if common > current:
            cmd = command_pb2.Command(now_ms=self.clock.now_ms(), principal=f"node:{me}")
            cmd.set_feature_level.level = min(common, supported)
            self.raft.propose(encode(cmd), self.propose_timeout_s)
            log.info(
                "event=feature_level_raised from=%d to=%d members=%s",
                current,
                min(common, supported),
                ",".join(f"{m.node_id}:{levels.get(m.node_id, 0)}" for m in members),
            )

    def require_feature(self, needed: int, what: str, wait_s: float = 3.0) -> None:
        """FailedPrecondition unless the cluster runs at feature level ``needed`` or above
        (waits up to ``wait_s`` for the leader to raise it: a new cluster raises it within a
        second of electing its first leader)."""

        def behind() -> list[str]:
            levels = features.node_levels(self.store.node_features())
            return sorted(m.node_id for m in self.members() if levels.get(m.node_id, 0) < needed)

        deadline = time.monotonic() + wait_s
        # wait only while the raise is due (every member reported): the leader makes it soon
        while self.store.feature_level() < needed and not behind() and time.monotonic() < deadline:
            time.sleep(0.1)
        level = self.store.feature_level()
        if level >= needed:
            return
        raise FailedPrecondition(
            f"{what} need cluster feature level {needed}; the cluster runs at {level} because "
            f"{', '.join(behind()) or 'a member'} run(s) an older version: upgrade them first "
            "(docs/operations.md, Upgrades)"
        )

    # ---- leadership --------------------------------------------------------------------------

    def leader_grpc(self) -> str:
        member = self._members.get(self.raft.leader_address())
        return member.grpc if member else ""

    def leader_id(self) -> str:
        member = self._members.get(self.raft.leader_address())
        return member.node_id if member else ""

    def await_leader(self, within_s: float, alive: Callable[[], bool]) -> None:
        """Return once a client sent away from here would find a working leader: this node
        leads and dispatches, or it knows a leader it is linked to. At most ``within_s``, or
        until ``alive()`` turns false (the caller left).

        During an election a follower knows no leader, or names the one that died; a worker
        told so polls the nodes with a back-off and was welcomed 0.38 s after the election at
        p50, up to 0.86 s (``python bench/failover.py --kills 20``). Held here, it is told the
        new leader the moment this node hears of it."""
        deadline = time.monotonic() + within_s
        raft = self.raft
        while time.monotonic() < deadline and alive():
            if raft.is_leader():
                if self.dispatcher.active:
                    return
            elif raft.leader_linked():
                return
            time.sleep(0.01)  # an election's end is a change in pysyncobj's state: polled

    def members(self) -> tuple[membership.Member, ...]:
        """The member list as this node knows it (the last change it applied, or its flags)."""
        return tuple(sorted(self._members.values()))

    def _self_member(self) -> membership.Member:
        return self._members.get(self.config.raft) or membership.Member(
            self.config.node_id, self.config.raft, self.config.grpc_address
        )

    def member_view(
        self,
    ) -> tuple[tuple[membership.Member, ...], set[str], dict[str, membership.PeerState], int]:
        """(members, Raft voters' addresses, the leader's view of each peer, commit index)."""

        def read() -> tuple[set[str], dict[str, membership.PeerState], int]:
            return self.raft.voters(), self.raft.peer_states(), int(self.raft.raftCommitIndex)

        voters, peers, commit = self.raft.in_tick(read)
        return self.members(), voters, peers, commit

    def add_member(self, new: membership.Member, supported: int = 0, timeout: float = 10.0) -> bool:
        """Add ``new`` as a voting member (leader). False when it already is one with these
        addresses. Raises FailedPrecondition when the cluster could not commit without it (or
        another change is in progress, or the new node's version (``supported``: its highest
        feature level, 0 = unknown) is older than the cluster's feature level), InvalidArgument
        for a clashing id or address."""
        with self._change_turn():
            self.require_leader()
            self.require_feature(features.MEMBERSHIP, "membership changes")
            level = self.store.feature_level()
            if 0 < supported < level:
                raise FailedPrecondition(
                    f"{new.node_id} runs a version that supports feature level {supported}; the "
                    f"cluster runs at {level}: start it with the version the other nodes run"
                )
            members, _voters, peers, commit = self.member_view()
            change = membership.plan_add(members, self._self_member(), peers, commit, new)
            if change is None:
                return False
            index = self.raft.propose_membership(change, timeout)
            log.info(
                "event=member_added node=%s raft=%s grpc=%s index=%d members=%s",
                new.node_id,
                new.raft,
                new.grpc,
                index,
                ",".join(m.node_id for m in change.members_after),
            )
            return True

    def remove_member(self, node_id: str, timeout: float = 10.0) -> None:
        """Remove member ``node_id`` (leader). The leader itself is removed by handing
        leadership to a caught-up member first and answering NotLeader naming it (the client
        repeats the call there). Raises NotFound / FailedPrecondition as
        :func:`schedd.raft.membership.plan_remove` says."""
        with self._change_turn():
            self.require_leader()
            self.require_feature(features.MEMBERSHIP, "membership changes")
            members, _voters, peers, commit = self.member_view()
            me = self._self_member()
            if node_id == me.node_id and len(members) > 1:
                others = [m for m in members if m != me]
                membership.plan_remove(others + [me], others[0], peers, commit, node_id)
                log.info("event=leader_leaving node=%s: handing leadership over first", node_id)
                self.transfer_leadership("")
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline and (
                    self.raft.is_leader() or not self.leader_grpc()
                ):
                    time.sleep(0.05)
                self.require_leader()  # NotLeader with the new leader's address
                raise Unavailable("leadership did not move in time; retry")
            change = membership.plan_remove(members, me, peers, commit, node_id)
            index = self.raft.propose_membership(change, timeout)
            log.info(
                "event=member_removed node=%s raft=%s index=%d members=%s",
                node_id,
                change.member.raft,
                index,
                ",".join(m.node_id for m in change.members_after),
            )

    @contextlib.contextmanager
    def _change_turn(self) -> Iterator[None]:
        if not self._member_lock.acquire(timeout=15.0):
            raise FailedPrecondition(
                "another membership change is in progress on the leader; retry when it is done"
            )
        try:
            yield
        finally:
            self._member_lock.release()

    def require_leader(self) -> None:
        if not self.raft.is_leader():
            hint = self.leader_grpc()
            where = (
                f"the leader is {self.leader_id()} at {hint}" if hint else "no leader is known yet"
            )
            raise NotLeader(f"{self.config.node_id} is not the leader; {where}", hint)

    def _hand_over(self, within_s: float) -> None:
        """Try to pass leadership to a caught-up peer before stopping. A follower that is a few
        entries behind makes pysyncobj refuse; ask again until it is caught up or time is up.
        The dispatcher proposes nothing meanwhile, so the log stops growing and a follower
        catches up within a round trip (while it fired every 100 ms, the first requests were
        often refused and each refusal cost half a second)."""
        self.dispatcher.hold()
        deadline = time.monotonic() + within_s
        while self.raft.is_leader() and time.monotonic() < deadline:
            sent: list[bool] = []
            answered = threading.Event()
            self.raft.request_transfer(None, functools.partial(_record_answer, sent, answered))
            answered.wait(0.5)
            # sent: the peer starts its election at once, wait for it; refused: ask again soon
            end = min(deadline, time.monotonic() + (0.5 if sent and sent[0] else 0.02))
            while self.raft.is_leader() and time.monotonic() < end:
                time.sleep(0.01)

    def transfer_target(self, to_node_id: str) -> str | None:
        """The Raft address of peer ``to_node_id`` (None for "any peer"); InvalidArgument if
        there is no such peer."""
        if not to_node_id:
            return None
        target = next(
            (
                m.raft
                for m in self._members.values()
                if m.node_id == to_node_id and m.raft != self.config.raft
            ),
            None,
        )
        if target is None:
            raise InvalidArgument("to_node_id", f"no peer named {to_node_id!r}")
        return target

    def transfer_leadership(self, to_node_id: str) -> None:
        target = self.transfer_target(to_node_id)
        self.require_leader()
        # pysyncobj refuses while the target (or every peer) is behind the leader's last entry,
        # which is common for a moment under load: ask again until it is sent or time is up.
        within_s = 5.0
        deadline = time.monotonic() + within_s
        while self.raft.is_leader():
            answer: list[bool] = []
            answered = threading.Event()
            self.raft.request_transfer(target, functools.partial(_record_answer, answer, answered))
            answered.wait(1.0)
            if answer and answer[0]:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"no {'peer' if target is None else to_node_id} caught up with the leader "
                    f"within {within_s:g}s to take over; retry, or check that it is running"
                )
            time.sleep(0.05)

    def status(self, with_digest: bool = False) -> api_pb2.NodeStatus:
        st: dict[str, Any] = self.raft.status()
        role = {0: "follower", 1: "candidate", 2: "leader"}.get(int(st.get("state", 0)), "unknown")
        return api_pb2.NodeStatus(
            node_id=self.config.node_id,
            role=role,
            term=int(st.get("raft_term", 0)),
            commit_index=int(st.get("commit_idx", 0)),
            applied_index=self.store.applied_index(),
            leader_id=self.leader_id(),
            leader_grpc=self.leader_grpc(),
            grpc_address=self.config.grpc_address,
            raft_address=self.config.raft,
            has_quorum=bool(st.get("has_quorum", False)),
            state_digest=self.store.digest() if with_digest else "",
            workers=len(self.registry),
            peers=[m.node_id for m in self.members() if m.raft != self.config.raft],
            unsafe_no_fsync=not self.config.raft_settings.fsync,
            pid=os.getpid(),
            started_ms=PROCESS_STARTED_MS,
            feature_level=self.store.feature_level(),
            features_supported=features.SUPPORTED,
            not_serving=not self.quorum_health.serving,
            not_serving_reason=self.quorum_health.reason,
        )
