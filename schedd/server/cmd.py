"""The ``schedd`` daemon command: ``schedd run`` (one node) and ``schedd dev`` (a local cluster).

Exit codes: 0 clean stop, 2 bad configuration (one line on stderr naming the option) or server
packages missing (``schedd[server]``), 70 a fatal storage error (see the log line), 1 anything else.
"""

from __future__ import annotations

import errno
import faulthandler
import gc
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
import tomllib
from typing import Any

import click

from schedd.errors import SchedError

log = logging.getLogger("schedd")


def _setup_logging(level: str, log_format: str = "text") -> None:
    from schedd.server.logformat import formatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # pysyncobj's warnings matter: its CRITICAL "truncating already-applied log entries" was the
    # visible sign of a follower dropping acknowledged entries, which schedd.raft now prevents;
    # should it ever appear again it is a bug to report, not noise.
    pysyncobj_log = logging.getLogger("pysyncobj")
    pysyncobj_log.setLevel(logging.WARNING if level.upper() != "DEBUG" else logging.DEBUG)
    pysyncobj_log.addHandler(_StorageFailureStop())


class _StorageFailureStop(logging.Handler):
    """pysyncobj catches and logs exceptions of its tick (``failed _onTick``) and carries on.
    A disk error there (journal or term/vote file: full disk, I/O error) must stop the node
    instead, as a storage error in apply does: exit 70 with a line saying what to do."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError) and exc.errno in (
            errno.ENOSPC,
            errno.EIO,
            errno.EDQUOT,
            errno.EROFS,
        ):
            from schedd.state.store import fatal

            fatal(
                f"Raft journal write failed: {exc}; free disk space or fix the disk, then restart "
                "the node (it catches up from its peers)"
            )


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"schedd: error: {message}", err=True)
    sys.exit(code)


#: What a node imports beyond the SDK: module -> its distribution (the `server` extra, pyproject.toml).
SERVER_MODULES = {
    "lmdb": "lmdb",
    "pysyncobj": "pysyncobj",
    "cryptography": "cryptography",
    "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection",
    "prometheus_client": "prometheus-client",
    "starlette": "starlette",
    "jinja2": "jinja2",
    "uvicorn": "uvicorn",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _require_server() -> None:
    """One line and exit 2 when an SDK-only install (``pip install --no-deps schedd``) is asked
    to run a node, instead of an import traceback."""
    missing = [dist for module, dist in SERVER_MODULES.items() if not _installed(module)]
    if missing:
        _fail(
            f"running a node needs {', '.join(missing)}, not installed here: "
            "python3 -m pip install 'schedd[server]'"
        )


#: The shortest Raft password accepted. It derives the key of every Raft frame (PBKDF2 with a
#: salt fixed in pysyncobj), so captured traffic allows offline guessing of a short one.
MIN_PASSWORD_BYTES = 16
_GENERATE = (
    'python3 -c "import secrets;print(secrets.token_urlsafe(32))" > FILE && chmod 600 FILE, '
    "then pass --raft-password-file FILE"
)


def _raft_password(pw_file: str | None) -> tuple[str, str]:
    """The Raft password and where it came from. A file must not be readable by group or
    others (exit 2 naming ``chmod 600``)."""
    if not pw_file:
        return os.environ.get("SCHEDD_RAFT_PASSWORD", ""), "SCHEDD_RAFT_PASSWORD"
    from schedd.raft.transport import read_secret_file

    try:
        return read_secret_file(pw_file), f"--raft-password-file {pw_file}"
    except PermissionError as e:
        _fail(f"--raft-password-file: {e}")
    except OSError as e:
        _fail(f"--raft-password-file: cannot read {pw_file}: {e.strerror}")
    raise AssertionError("unreachable")


def _election_timeout(text: str) -> tuple[float, float] | None:
    """``--election-timeout MIN-MAX`` in seconds (None when not given)."""
    if not text.strip():
        return None
    lo, sep, hi = text.partition("-")
    if not sep:
        _fail(f"--election-timeout: {text!r} is not a range such as 400ms-1s")
    low = _parse_duration(lo, "--election-timeout")
    high = _parse_duration(hi, "--election-timeout")
    if not 0.3 <= low < high <= 60:
        _fail(
            f"--election-timeout: {text!r} must be MIN-MAX with 300ms <= MIN < MAX <= 60s "
            "(a leader heartbeats every 100 ms)"
        )
    return low, high


def _fire_ahead(text: str) -> int:
    """``--fire-ahead`` in ms: a duration, or 0 (off)."""
    if text.strip() in ("0", "0s", "0ms", "off"):
        return 0
    return int(round(_parse_duration(text, "--fire-ahead") * 1000))


def _parse_duration(text: str, option: str) -> float:
    """A flag's duration in seconds, by the one duration syntax (``500ms``, ``10s``, ``2.5s``,
    ``1m30s``; a bare number is seconds)."""
    from schedd.errors import InvalidArgument
    from schedd.sched.schedule import parse_duration

    text = text.strip()
    try:
        bare = text.isascii() and text.replace(".", "", 1).isdigit()
        ms = parse_duration(text + "s" if bare else text, option)
    except InvalidArgument:
        _fail(f"{option}: {text!r} is not a duration such as 500ms, 10s or 2m")
        raise
    if ms <= 0:
        _fail(f"{option}: must be positive")
    return ms / 1000


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="schedd")
def main() -> None:
    """schedd: a Raft-replicated job scheduler.

    \b
    Start a local 3-node cluster with a demo worker:
        schedd dev --demo
    Run one node of a production cluster (docs/security.md: certificates and tokens):
        SCHEDD_RAFT_PASSWORD=... schedd run --node-id n1 --data-dir /var/lib/schedd \\
            --raft 10.0.0.1:7001 --grpc 10.0.0.1:7000 \\
            --tls-cert n1.pem --tls-key n1.key --tls-ca ca.pem \\
            --bootstrap-token-file /etc/schedd/bootstrap.token \\
            --peer n2=10.0.0.2:7001/10.0.0.2:7000 --peer n3=10.0.0.3:7001/10.0.0.3:7000
    """


def _catchup_spacing(rate: Any) -> int:
    try:
        per_s = float(rate)
    except (TypeError, ValueError):
        _fail(f"--catchup-rate: {rate!r} is not a number of runs per second")
        raise
    if not 0.01 <= per_s <= 100_000:
        _fail(f"--catchup-rate: {per_s:g} is out of range: 0.01 .. 100000 runs per second")
    return max(0, round(1000 / per_s))


def _write_rate(text: str) -> dict[str, Any]:
    """``--write-rate RATE[/BURST]`` as Limits fields ({} for the default)."""
    if not text:
        return {}
    rate_text, _, burst_text = text.partition("/")
    try:
        rate = float(rate_text)
        burst = int(burst_text) if burst_text else max(1, int(rate * 10))
    except ValueError:
        _fail(f"--write-rate: {text!r} is not RATE or RATE/BURST (e.g. 200/2000, or 0 for none)")
    if rate < 0 or burst < 1:
        _fail(f"--write-rate: {text!r}: the rate must be >= 0 and the burst >= 1")
    return {"write_rate_per_s": rate, "write_burst": burst}


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML file with the options below.",
)
@click.option("--node-id", help="This node's id (unique in the cluster).")
@click.option("--data-dir", help="Directory for the LMDB state, Raft journal and snapshot.")
@click.option("--raft", "raft_addr", help="HOST:PORT for Raft traffic (peers connect here).")
@click.option("--grpc", "grpc_addr", help="HOST:PORT for the gRPC API (clients and workers).")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    help="ID=RAFT_HOST:PORT/GRPC_HOST:PORT of another node; repeat.",
)
@click.option(
    "--join",
    "join_endpoint",
    help="HOST:PORT of a running cluster's gRPC API: ask it to add this node as a member, then "
    "start with its members as peers (instead of --peer). Ignored once this node's state has "
    "recorded the member list (a restart).",
)
@click.option(
    "--advertise-grpc",
    help="HOST:PORT clients and the other nodes are given for this node, when --grpc binds an "
    "address they cannot dial (such as 0.0.0.0 in a container) [--grpc].",
)
@click.option(
    "--raft-password-file",
    type=click.Path(dir_okay=False),
    help="File holding the Raft password (else SCHEDD_RAFT_PASSWORD).",
)
@click.option(
    "--lease-ttl", default=None, help="Lease period of a firing without heartbeats [10s]."
)
@click.option("--heartbeat-interval", default=None, help="How often workers heartbeat [2s].")
@click.option(
    "--fire-ahead",
    default=None,
    help="Commit and lease a firing up to this long before it is due, to a worker that waits "
    "for the due time on its own clock (this version's agent): the handler starts on time "
    "instead of after a Raft round. Jobs with an overlap limit or upstreams fire once due; "
    "a pause, delete or update in the window takes the early firing back. 0 turns it off "
    "[100ms; at most 5s and half of --lease-ttl].",
)
@click.option(
    "--retry-backoff",
    default=None,
    help="Wait before a failed or expired attempt is retried, for jobs without a retry policy [1s].",
)
@click.option(
    "--catchup-rate",
    default=None,
    type=float,
    help="Cluster-wide limit on catch-up runs (missed slots fired late, backfills), per second [100].",
)
@click.option(
    "--map-size",
    default=None,
    type=click.IntRange(1, None),
    help="Initial LMDB map size in MiB [4096]; it grows online up to --max-map-size.",
)
@click.option(
    "--max-map-size",
    default=None,
    type=click.IntRange(1, None),
    help="Ceiling of the LMDB map in MiB: the map doubles when 80%% full, up to this; client "
    "writes are refused (RESOURCE_EXHAUSTED) near it [8 x --map-size].",
)
@click.option(
    "--min-free",
    default=None,
    type=int,
    envvar="SCHEDD_MIN_FREE_MIB",
    help="Stop (exit 70) when the data disk has less free space, MiB [64].",
)
@click.option(
    "--election-timeout",
    default=None,
    help="Raft election timeout range MIN-MAX: a follower that hears nothing from a leader for "
    "a random time in it starts an election. Lower is faster failover; too low for the "
    "machine's load means needless elections (python bench/failover.py measures both) "
    "[400ms-1s].",
)
@click.option(
    "--worker-streams",
    default=None,
    type=click.IntRange(1, 100_000),
    help="Worker streams the node serves at once, all identities together (each holds a "
    "thread; 64 more threads serve every other call) [1024].",
)
@click.option(
    "--max-worker-streams",
    default=None,
    type=click.IntRange(1, 100_000),
    help="Worker streams one client identity may hold on the leader at once [1024]; lower it "
    "when several teams share the cluster.",
)
@click.option(
    "--hello-timeout",
    default=None,
    help="A worker stream must send its Hello within this long, or it is closed [10s].",
)
@click.option(
    "--max-scans",
    default=None,
    type=click.IntRange(1, 1000),
    help="Full-table reads (job list, run list without a job, audit list) served at once; "
    "more are refused with RESOURCE_EXHAUSTED [4].",
)
@click.option(
    "--write-rate",
    default=None,
    help="Writes one client identity may make on a node: RATE per second, optionally /BURST "
    "(e.g. 200/2000); 0 = no limit [500/5000].",
)
@click.option(
    "--unsafe-no-fsync",
    is_flag=True,
    default=None,
    help="Acknowledge writes before they are on disk (synced once a second instead). A power cut "
    "of a majority then loses acknowledged writes and can reuse fences. Only for tests and "
    "throw-away clusters; never set by default or by an environment variable.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    help="PEM certificate of this node (SANs: the names clients and peers dial; extended key "
    "usages serverAuth and clientAuth). The gRPC port serves it (re-read when the file changes: "
    "rotate without a restart); with --tls-ca the Raft port uses it for mutual TLS between nodes.",
)
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key of --tls-cert.")
@click.option(
    "--tls-ca",
    type=click.Path(dir_okay=False),
    help="PEM CA that client and peer certificates must chain to: every gRPC client (workers, "
    "people) then needs one (mutual TLS), identities and roles come from their SPIFFE ids, and "
    "Raft traffic between nodes is mutual TLS too.",
)
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="Serve gRPC in plaintext without authentication: anyone who reaches the port can "
    "change every job. Only for a trusted test network; never the default.",
)
@click.option(
    "--bootstrap-token-file",
    type=click.Path(dir_okay=False),
    help="File (mode 0600) with the first cluster-admin token, at least 32 random characters; "
    "give every node the same file. Create more tokens with it (schedctl token create), then "
    "revoke it (schedctl token revoke bootstrap).",
)
@click.option(
    "--metrics",
    "metrics_addr",
    help="HOST:PORT to serve Prometheus metrics on (/metrics, plain HTTP, no authentication; "
    "no job payloads). Off unless given; bind it to an address only your monitoring reaches.",
)
@click.option(
    "--http",
    "http_addr",
    help="HOST:PORT to serve the web dashboard on (docs/dashboard.md): HTTPS with --tls-cert; "
    "people sign in with an API token and act with its roles. Off unless given.",
)
@click.option(
    "--http-plaintext",
    is_flag=True,
    default=None,
    help="Serve --http as plain HTTP instead of HTTPS (required on an --insecure node). Tokens "
    "typed into the dashboard then cross the network unencrypted: only for 127.0.0.1 (schedd "
    "dev) or behind a TLS-terminating proxy on the same host.",
)
@click.option(
    "--gc-threshold",
    default=None,
    type=int,
    help="Objects allocated (net) between two young garbage collections [50000]; 700 is "
    "Python's default, which on a busy node collects every few milliseconds for nothing "
    "(docs/operations.md, Garbage collection).",
)
@click.option(
    "--snapshot-copy-rate",
    default=None,
    type=float,
    help="MiB per second a Raft log compaction writes its snapshot at [100]; 0: as fast as the "
    "disk goes, which on a large state holds the Raft journal's syncs back (docs/operations.md, "
    "Disk and data). Backups (schedctl snapshot save) are written at the same pace.",
)
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as key=value text, or one JSON object per line (time, level, logger, "
    "message and the message's key=value fields as keys) [text].",
)
def run(
    config_file: str | None,
    node_id: str | None,
    data_dir: str | None,
    raft_addr: str | None,
    grpc_addr: str | None,
    peers: tuple[str, ...],
    join_endpoint: str | None,
    advertise_grpc: str | None,
    raft_password_file: str | None,
    lease_ttl: str | None,
    heartbeat_interval: str | None,
    fire_ahead: str | None,
    retry_backoff: str | None,
    catchup_rate: float | None,
    map_size: int | None,
    max_map_size: int | None,
    min_free: int | None,
    election_timeout: str | None,
    worker_streams: int | None,
    max_worker_streams: int | None,
    hello_timeout: str | None,
    max_scans: int | None,
    write_rate: str | None,
    unsafe_no_fsync: bool | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    insecure: bool | None,
    bootstrap_token_file: str | None,
    metrics_addr: str | None,
    http_addr: str | None,
    http_plaintext: bool | None,
    gc_threshold: int | None,
    snapshot_copy_rate: float | None,
    log_level: str,
    log_format: str | None,
) -> None:
    """Run one schedd node until SIGTERM or Ctrl-C.

    \b
    Example:
        SCHEDD_RAFT_PASSWORD=secret schedd run --node-id n1 --data-dir ./n1 \\
            --raft 127.0.0.1:7101 --grpc 127.0.0.1:7001 \\
            --peer n2=127.0.0.1:7102/127.0.0.1:7002 --peer n3=127.0.0.1:7103/127.0.0.1:7003
    """
    _require_server()
    conf: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                conf = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            _fail(f"--config: cannot read {config_file}: {e}")

    def pick(value: Any, key: str, default: Any = None) -> Any:
        return value if value not in (None, ()) else conf.get(key, default)

    fmt = pick(log_format, "log_format", "text")
    if fmt not in ("text", "json"):
        _fail(f'--config: log_format must be "text" or "json", not {fmt!r}')
    _setup_logging(pick(log_level if log_level != "info" else None, "log_level", "info"), fmt)
    # Everything this process creates (its data directory, the journal, LMDB, snapshots,
    # including the files libraries create) is private to the node's user.
    os.umask(0o077)
    faulthandler.enable()  # a fatal signal (SIGBUS, SIGSEGV) leaves a stack in the log
    from schedd.server import gc_tuning

    threshold = pick(gc_threshold, "gc_threshold", gc_tuning.DEFAULT_GEN0)
    if type(threshold) is not int or not 700 <= threshold <= 10_000_000:
        where = "--gc-threshold" if gc_threshold is not None else "--config: gc_threshold"
        _fail(f"{where} must be a whole number from 700 to 10000000, not {threshold!r}")
    gc_tuning.configure(threshold)
    gc_tuning.watch_pauses()
    from schedd.raft.settings import RaftSettings

    copy_rate = pick(snapshot_copy_rate, "snapshot_copy_mib_s", RaftSettings.snapshot_copy_mib_s)
    if type(copy_rate) not in (int, float) or not 0 <= copy_rate <= 100_000:
        where = (
            "--snapshot-copy-rate"
            if snapshot_copy_rate is not None
            else "--config: snapshot_copy_mib_s"
        )
        _fail(f"{where} must be a number of MiB/s from 0 (no limit) to 100000, not {copy_rate!r}")
    from schedd.server.dispatcher import DispatchSettings
    from schedd.server.node import Node, NodeConfig, Peer

    password, password_source = _raft_password(pick(raft_password_file, "raft_password_file"))
    for flag, value in (
        ("--node-id", pick(node_id, "node_id")),
        ("--data-dir", pick(data_dir, "data_dir")),
        ("--raft", pick(raft_addr, "raft")),
        ("--grpc", pick(grpc_addr, "grpc")),
    ):
        if not value:
            _fail(f"{flag} is required (or set it in --config)")
    if not password:
        _fail(
            "a Raft password is required: set SCHEDD_RAFT_PASSWORD or pass --raft-password-file "
            f"(Raft traffic is always encrypted and authenticated); generate one with {_GENERATE}"
        )
    if len(password.encode()) < MIN_PASSWORD_BYTES:
        _fail(
            f"the Raft password ({password_source}) is {len(password.encode())} bytes; it must be "
            f"at least {MIN_PASSWORD_BYTES}: generate one with {_GENERATE}"
        )
    d = DispatchSettings()
    settings = DispatchSettings(
        lease_ttl_s=_parse_duration(
            str(pick(lease_ttl, "lease_ttl", f"{d.lease_ttl_s}s")), "--lease-ttl"
        ),
        heartbeat_interval_s=_parse_duration(
            str(pick(heartbeat_interval, "heartbeat_interval", f"{d.heartbeat_interval_s}s")),
            "--heartbeat-interval",
        ),
        retry_backoff_ms=int(
            1000
            * _parse_duration(
                str(pick(retry_backoff, "retry_backoff", f"{d.retry_backoff_ms}ms")),
                "--retry-backoff",
            )
        ),
        catchup_spacing_ms=_catchup_spacing(
            pick(catchup_rate, "catchup_rate", 1000 / d.catchup_spacing_ms)
        ),
        fire_ahead_ms=_fire_ahead(str(pick(fire_ahead, "fire_ahead", f"{d.fire_ahead_ms}ms"))),
    )
    if settings.fire_ahead_ms > min(5000, settings.lease_ttl_s * 500):
        _fail(
            f"--fire-ahead: {settings.fire_ahead_ms} ms is over the limit of 5s and half of "
            "--lease-ttl (the lease must outlast the wait for the due time)"
        )
    if settings.heartbeat_interval_s * 2 > settings.lease_ttl_s:
        _fail(
            "--heartbeat-interval: must be at most half of --lease-ttl so one lost heartbeat does not expire a lease"
        )
    unsafe = pick(unsafe_no_fsync, "unsafe_no_fsync", False)
    if not isinstance(unsafe, bool):
        _fail(f"--config: unsafe_no_fsync must be true or false, not {unsafe!r}")
    from schedd.security.tls import ServerTLS

    cert, key, ca = (
        pick(tls_cert, "tls_cert"),
        pick(tls_key, "tls_key"),
        pick(tls_ca, "tls_ca"),
    )
    if bool(cert) != bool(key):
        _fail("--tls-cert and --tls-key go together: give both (or --insecure for plaintext)")
    if ca and not cert:
        _fail("--tls-ca needs --tls-cert and --tls-key (the node's own certificate)")
    plain = pick(insecure, "insecure", False)
    if not isinstance(plain, bool):
        _fail(f"--config: insecure must be true or false, not {plain!r}")
    http_plain = pick(http_plaintext, "http_plaintext", False)
    if not isinstance(http_plain, bool):
        _fail(f"--config: http_plaintext must be true or false, not {http_plain!r}")
    from schedd.server.limits import Limits

    dl = Limits()
    node_limits = Limits(
        max_worker_streams=int(pick(worker_streams, "worker_streams", dl.max_worker_streams)),
        max_worker_streams_per_principal=int(
            pick(max_worker_streams, "max_worker_streams", dl.max_worker_streams_per_principal)
        ),
        hello_timeout_s=_parse_duration(
            str(pick(hello_timeout, "hello_timeout", f"{dl.hello_timeout_s}s")), "--hello-timeout"
        ),
        max_concurrent_scans=int(pick(max_scans, "max_scans", dl.max_concurrent_scans)),
        **_write_rate(str(pick(write_rate, "write_rate", ""))),
    )
    if pick(metrics_addr, "metrics"):
        from prometheus_client import disable_created_metrics

        disable_created_metrics()  # the *_created series only double the output
    peer_specs = tuple(pick(peers, "peers", ()))
    join_at = pick(join_endpoint, "join", "")
    advertised = str(pick(advertise_grpc, "advertise_grpc", ""))
    if join_at:
        peer_specs = (
            _join(
                join_at,
                node_id=pick(node_id, "node_id"),
                data_dir=pick(data_dir, "data_dir"),
                raft=pick(raft_addr, "raft"),
                grpc_address=advertised or pick(grpc_addr, "grpc"),
                ca=ca or "",
                cert=cert or "",
                key=key or "",
                token_file=pick(bootstrap_token_file, "bootstrap_token_file", ""),
                insecure=plain,
            )
            or peer_specs
        )
    defaults = RaftSettings()
    elect = _election_timeout(str(pick(election_timeout, "election_timeout", ""))) or (
        defaults.election_min_s,
        defaults.election_max_s,
    )
    try:
        config = NodeConfig(
            node_id=pick(node_id, "node_id"),
            data_dir=pick(data_dir, "data_dir"),
            raft=pick(raft_addr, "raft"),
            grpc=pick(grpc_addr, "grpc"),
            password=password,
            peers=tuple(Peer.parse(p) for p in peer_specs),
            advertise_grpc=advertised,
            dispatch=settings,
            raft_settings=RaftSettings(
                fsync=not unsafe,
                election_min_s=elect[0],
                election_max_s=elect[1],
                snapshot_copy_mib_s=float(copy_rate),
            ),
            map_size=int(pick(map_size, "map_size_mib", 4096)) << 20,
            max_map_size=int(pick(max_map_size, "max_map_size_mib", 0)) << 20,
            min_free_bytes=int(pick(min_free, "min_free_mib", 64)) << 20,
            tls=ServerTLS(cert, key, ca or "") if cert else None,
            insecure=plain,
            bootstrap_token_file=pick(bootstrap_token_file, "bootstrap_token_file", ""),
            limits=node_limits,
            metrics=str(pick(metrics_addr, "metrics", "")),
            http=str(pick(http_addr, "http", "")),
            http_plaintext=http_plain,
        )
        node = Node(config)
    except SchedError as e:
        _fail(e.message)
        return
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node.start()
    # Start-up's objects live as long as the process: no later collection needs to see them.
    frozen = gc_tuning.freeze_startup()
    log.info(
        "event=gc_configured node=%s thresholds=%s frozen=%d",
        config.node_id,
        "/".join(map(str, gc.get_threshold())),
        frozen,
    )
    while not stop.wait(0.5):
        pass
    node.stop()
    sys.exit(0)


def _join(endpoint: str, *, node_id: str, data_dir: str, **kw: Any) -> tuple[str, ...]:
    """``--join``: the peers as ``--peer`` strings, () when the state already records them."""
    from schedd.server import join

    if not join.needs_join(data_dir):
        log.info("event=join_skipped node=%s: the state records the member list", node_id)
        return ()
    raft, grpc_address = kw.pop("raft"), kw.pop("grpc_address")
    try:
        creds = join.credentials(**kw)
        members = join.join(endpoint, node_id, raft, grpc_address, creds)
    except SchedError as e:
        _fail(
            f"--join {endpoint}: the cluster did not add {node_id}: {e.message}. Fix that and "
            "start this node again (nothing was changed on this node)"
        )
        raise
    return tuple(f"{i}={r}/{g}" for i, r, g in members if i != node_id)


@main.command()
@click.argument("backup_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option(
    "--data-dir",
    required=True,
    help="The new node's data directory (absent or empty); run once per node of the new cluster.",
)
@click.option(
    "--map-size",
    default=4096,
    show_default=True,
    type=click.IntRange(1, None),
    help="Initial LMDB map size in MiB (raised to fit the backup).",
)
def restore(backup_file: str, data_dir: str, map_size: int) -> None:
    """Seed the data directory of one node of a NEW cluster from a backup made by
    `schedctl snapshot save`. Then start the nodes with `schedd run` as usual.

    \b
    Example (each node of the new cluster, before its first start):
        schedd restore backup.snap --data-dir /var/lib/schedd
    """
    _require_server()
    os.umask(0o077)
    from schedd.backup import BackupError
    from schedd.server.restore import restore as seed

    t0 = time.monotonic()
    try:
        header = seed(backup_file, data_dir, map_size << 20)
    except BackupError as e:
        _fail(str(e), 1)
        return
    except OSError as e:
        _fail(f"cannot restore into {data_dir}: {e}", 1)
        return
    click.echo(
        f"restored {header.jobs} jobs and {header.runs} runs at log index "
        f"{header.applied_index} into {data_dir} in {time.monotonic() - t0:.1f}s; "
        "start the node with `schedd run --data-dir "
        f"{data_dir} ...` (every node of the new cluster restored from the same file)"
    )


@main.command()
@click.option(
    "--nodes", default=3, show_default=True, type=click.IntRange(1, 7), help="How many nodes."
)
@click.option(
    "--dir",
    "root",
    default=".schedd-dev",
    show_default=True,
    help="Where the nodes keep their data.",
)
@click.option(
    "--base-port",
    default=50051,
    show_default=True,
    type=click.IntRange(1024, 65000),
    help="gRPC ports are BASE..BASE+N-1, Raft ports BASE+100...",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also start a shell worker on queue 'demo' and a demo job firing every 5 seconds "
    "(without it, a demo job left from before is paused).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Plaintext without authentication (default: a local CA, mutual TLS and an admin token "
    "in DIR, all written to DIR/env).",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Serve each node's Prometheus metrics on 127.0.0.1, ports BASE+200...",
)
@click.option(
    "--http/--no-http",
    "http",
    default=True,
    show_default=True,
    help="Serve each node's web dashboard on 127.0.0.1, ports BASE+300..., as plain HTTP "
    "(loopback only; sign-in with a token still required).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="The nodes' log format (schedd run --log-format).",
)
def dev(
    nodes: int,
    root: str,
    base_port: int,
    demo: bool,
    insecure: bool,
    metrics: bool,
    http: bool,
    log_format: str,
) -> None:
    """Start a local cluster of real `schedd run` processes on 127.0.0.1 and keep it running
    until Ctrl-C.

    \b
    Example:
        schedd dev --demo
        source .schedd-dev/env        # in another shell: endpoints, CA, certificate, token
        schedctl run list --job demo
    """
    import socket
    import subprocess

    from schedd.testing import LocalCluster

    _require_server()

    ports = [base_port + i for i in range(nodes)] + [base_port + 100 + i for i in range(nodes)]
    if metrics:
        ports += [base_port + 200 + i for i in range(nodes)]
    if http:
        ports += [base_port + 300 + i for i in range(nodes)]
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                _fail(
                    f"--base-port: port {port} is in use (another schedd dev?); stop it or pick another --base-port"
                )
    cluster = LocalCluster(
        root,
        nodes=nodes,
        base_port=base_port,
        secure=not insecure,
        metrics=metrics,
        # Plain HTTP on 127.0.0.1 only: the browser would refuse the dev CA's certificate, and
        # loopback traffic does not leave the machine; a token is still needed to sign in.
        http=http,
        http_plaintext=http,
        extra_args=["--log-format", log_format] if log_format != "text" else [],
    )
    click.echo(
        f"starting {nodes} schedd nodes in {cluster.root} (logs: {cluster.root}/n*/node.log)"
    )
    cluster.start()
    worker: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        try:
            leader = cluster.wait_for_leader(timeout=30)
        except (TimeoutError, RuntimeError) as e:
            _fail(str(e), 1)
        env_path = cluster.write_env()
        # Leadership moves (a node restarts, an election): this line is only the start.
        click.echo(f"leader at start: {leader} (`schedctl cluster status` shows the current one)")
        for spec in cluster.specs:
            click.echo(
                f"  {spec.node_id}: grpc {spec.grpc}  raft {spec.raft}"
                + (f"  metrics http://{spec.metrics}/metrics" if spec.metrics else "")
            )
        if http:
            click.echo(f"dashboard: {cluster.dashboard_login_url(cluster.specs[0].node_id)}")
            click.echo(
                "  (the link signs you in with the admin token and drops it from the address; "
                "every node serves the dashboard: "
                + ", ".join(f"http://{s.http}/" for s in cluster.specs)
                + ")"
            )
        if insecure:
            click.echo("security: OFF (--insecure): plaintext, no authentication")
        else:
            click.echo(
                f"security: mutual TLS (CA {cluster.ca_file}) and an admin token "
                f"({cluster.token_file})"
            )
        click.echo("point schedctl and the SDK at the cluster in another shell with:")
        click.echo(f"  source {os.path.relpath(env_path)}")
        if demo:
            worker = _start_demo(cluster)
        else:
            _pause_demo(cluster)
        click.echo("press Ctrl-C to stop")
        supervisor = _Supervisor(cluster)
        while not stop.wait(0.5):
            supervisor.check(time.monotonic())
            if worker is not None and worker.poll() is not None:
                click.echo(
                    f"demo worker exited with {worker.returncode}; see {cluster.root}/worker.log",
                    err=True,
                )
                worker = None
    finally:
        click.echo("stopping...")
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        cluster.stop()
        click.echo("stopped")


class _Supervisor:
    """Watches ``schedd dev``'s node processes: a node that exits is reported (one line: how
    it ended, its log), restarted after a backoff with the command printed, and left down after
    too many exits in a minute (schedd.server.supervise.RestartPolicy)."""

    def __init__(self, cluster: Any) -> None:
        from schedd.server.supervise import RestartPolicy

        self.cluster = cluster
        self.policy = RestartPolicy()
        self.restart_at: dict[str, float] = {}
        self.down: set[str] = set()

    def check(self, now: float) -> None:
        import shlex

        from schedd.server.supervise import exit_text

        c = self.cluster
        for spec in c.specs:
            nid = spec.node_id
            if nid in self.down:
                continue
            if nid in self.restart_at:
                if now >= self.restart_at[nid]:
                    del self.restart_at[nid]
                    c.start_node(nid)
                    cmd = shlex.join(c.command(spec))
                    click.echo(f"{nid}: restarted (pid {c.procs[nid].pid}): {cmd}", err=True)
                continue
            proc = c.procs.get(nid)
            if proc is None or proc.poll() is None:
                continue
            at = self.policy.exited(nid, now)
            how = exit_text(proc.returncode)
            if at is None:
                self.down.add(nid)
                cmd = shlex.join(c.command(spec))
                click.echo(
                    f"{nid} exited ({how}) {self.policy.max_restarts + 1} times within "
                    f"{self.policy.window_s:g}s; leaving it down. Log: {spec.log_path}; "
                    f"start it by hand with: {cmd}",
                    err=True,
                )
            else:
                self.restart_at[nid] = at
                click.echo(
                    f"{nid} exited ({how}); log: {spec.log_path}; restarting in {at - now:.0f}s",
                    err=True,
                )


DEMO_CRON = "*/5 * * * * *"
DEMO_PAYLOAD = '{"hello": "world"}'


def _pause_demo(cluster: Any) -> None:
    """Without --demo, the demo job a former ``schedd dev --demo`` left in this directory would
    keep firing with no demo worker: pause it (``--demo`` resumes it)."""
    from schedd.errors import NotFound
    from schedd.models import JobState

    with cluster.client() as client:
        try:
            job = client.get_job("demo")
        except NotFound:
            return
        if job.state != JobState.ACTIVE or job.schedule.cron != DEMO_CRON:
            return  # not the demo job, or not firing
        client.pause_job("demo")
    click.echo("demo: paused job 'demo' from an earlier `schedd dev --demo` (--demo resumes it)")


def _start_demo(cluster: Any) -> Any:
    import subprocess

    from schedd.errors import AlreadyExists, NotFound
    from schedd.models import JobState

    log_path = os.path.join(cluster.root, "worker.log")
    script = 'echo "demo: job=$SCHEDD_JOB run=$SCHEDD_RUN_ID scheduled=$SCHEDD_SCHEDULED_AT fence=$SCHEDD_FENCE"'
    cmd = [
        sys.executable,
        "-m",
        "schedctl",
        "--endpoints",
        cluster.endpoints_env,
        "worker",
        "run",
        # Its own queue: a worker that echoes would make every job of `default` succeed.
        "--queue",
        "demo",
        "--concurrency",
        "4",
        "--",
        "sh",
        "-c",
        script,
    ]
    worker = subprocess.Popen(
        cmd,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **cluster.worker_env},
    )
    with cluster.client() as client:
        try:
            job = client.get_job("demo")
        except NotFound:
            job = None
        if job is not None and job.queue != "demo" and job.schedule.cron == DEMO_CRON:
            # the demo job of an older schedd dev, on `default`: move it to its own queue
            client.delete_job("demo")
            job = None
        if job is None:
            try:
                client.create_job("demo", cron=DEMO_CRON, queue="demo", payload=DEMO_PAYLOAD)
            except AlreadyExists:
                pass  # a retry of our own create that had gone through
        elif job.state == JobState.PAUSED and job.schedule.cron == DEMO_CRON:
            client.resume_job("demo", skip_missed=True)  # paused by a dev without --demo
    click.echo(
        f"demo: a shell worker on queue 'demo' is running (output in {log_path}); "
        "job 'demo' fires every 5 seconds."
    )
    click.echo("  watch it with:  schedctl run list --job demo")
    time.sleep(0)
    return worker


if __name__ == "__main__":
    main()
