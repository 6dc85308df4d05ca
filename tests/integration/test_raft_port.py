"""The Raft port under attack, on real `schedd run` processes (docs/security.md, "The Raft port").

* An outsider's huge length prefix followed by a stream of bytes is refused before anything is
  buffered: writes keep committing on the cluster being flooded.
* A holder of the Raft password cannot run code on a node: a crafted pickle in a correctly
  encrypted frame is refused (the file it would create is not created) and the node keeps
  working.
* A weak Raft password (shorter than 16 bytes) or a password file others can read stops
  ``schedd run`` with exit 2 and a line saying what to do.
* The data directory is 0700 and the files a node writes are 0600.
"""

from __future__ import annotations

import os
import pickle
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib

import pytest

from schedd.testing import LocalCluster
from tests._util import wait_for

pytestmark = pytest.mark.integration

FLOOD_S = 10.0
FLOOD_BYTES = 256 << 20  # per attacking connection; the old code stalled well before


def converged(cluster: LocalCluster) -> bool:
    sts = [cluster.status(s.node_id, with_digest=True, timeout=2) for s in cluster.specs]
    if any(st is None for st in sts):
        return False
    return len({(st.applied_index, st.state_digest) for st in sts}) == 1


def _addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _flood(addr: str, stop: threading.Event, refused: list[int]) -> None:
    """One outsider: a 2 GiB length prefix, then bytes as fast as the node takes them;
    reconnect whenever the node closes the connection."""
    chunk = b"\x00" * 65536
    while not stop.is_set():
        sent = 0
        try:
            with socket.create_connection(_addr(addr), timeout=2) as s:
                s.sendall(struct.pack("i", 2**31 - 1))
                while not stop.is_set() and sent < FLOOD_BYTES:
                    s.sendall(chunk)
                    sent += len(chunk)
        except OSError:
            refused[0] += 1
            stop.wait(0.05)


def test_length_prefix_flood_does_not_stall_writes(make_cluster) -> None:
    cluster: LocalCluster = make_cluster(secure=False)  # the password-only Raft port
    cluster.wait_for_leader()
    stop = threading.Event()
    refused = [0]
    attackers = [
        threading.Thread(target=_flood, args=(s.raft, stop, refused), daemon=True)
        for s in cluster.specs
    ]
    commits: list[float] = []
    failures = 0
    start = time.monotonic()
    for t in attackers:
        t.start()
    try:
        with cluster.client(timeout=2.0) as c:
            i = 0
            while time.monotonic() - start < FLOOD_S:
                i += 1
                try:
                    c.create_job(f"flood-{i}", cron="0 0 1 1 *", request_id=f"flood-{i}")
                    commits.append(time.monotonic())
                except Exception:
                    failures += 1
                time.sleep(0.05)  # a steady trickle of writes, ~20/s
    finally:
        stop.set()
        for t in attackers:
            t.join(10)
    end = time.monotonic()
    points = [start, *commits, end]
    stall = max(b - a for a, b in zip(points, points[1:], strict=False))
    print(
        f"flood: {len(commits)} writes committed, {failures} failed, longest stall {stall:.2f}s, "
        f"attacking connections closed by the nodes {refused[0]}"
    )
    assert stall < 3.0, f"writes stalled for {stall:.1f}s under the flood"
    assert refused[0] >= len(cluster.specs), "the nodes never closed an attacking connection"
    wait_for(lambda: converged(cluster), 30, "the replicas to converge after the flood")


def _frame(password: str, payload: bytes) -> bytes:
    """One pysyncobj frame as a holder of the password builds it."""
    from pysyncobj.encryptor import getEncryptor
    from pysyncobj.monotonic import monotonic

    data = getEncryptor(password).encrypt_at_time(zlib.compress(payload, 3), int(monotonic()))
    return struct.pack("i", len(data)) + data


class _Evil:
    """Unpickling this calls ``open(path, "w")``: it creates the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_a_password_holder_cannot_run_code_through_pickle(make_cluster, tmp_path) -> None:
    cluster: LocalCluster = make_cluster(secure=False)  # the password-only Raft port
    with open(cluster.password_file) as f:
        password = f.read().strip()
    marks = []
    for spec in cluster.specs:
        mark = str(tmp_path / f"pwned-{spec.node_id}")
        marks.append(mark)
        with socket.create_connection(_addr(spec.raft), timeout=5) as s:
            s.sendall(_frame(password, pickle.dumps(_Evil(mark), 2)))
            try:  # the node answers (old code: with its key) or closes; either way it has read
                s.recv(1 << 16)
            except OSError:
                pass
    created = [m for m in marks if os.path.exists(m)]
    assert created == [], f"a crafted pickle ran code on the node: {created} created"
    with cluster.client(timeout=5.0) as c:
        c.create_job("after-pickle", cron="0 0 1 1 *", request_id="after-pickle")
    wait_for(lambda: converged(cluster), 30, "the replicas to converge")
    for spec in cluster.specs:
        assert cluster.alive(spec.node_id)


def _recv_frame(s: socket.socket, password: str) -> object:
    from pysyncobj.encryptor import getEncryptor

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (length,) = struct.unpack("i", exactly(4))
    return pickle.loads(zlib.decompress(getEncryptor(password).decrypt(exactly(length))))


def test_a_password_holder_cannot_use_pysyncobjs_admin_commands(make_cluster) -> None:
    """pysyncobj serves 'status', 'add', 'remove', 'set_version' and 'transfer' on the Raft
    port to anyone with the password ('status' answered with the node's Raft state, 'transfer'
    moves leadership at will). schedd refuses them: its admin operations are gRPC calls."""
    cluster: LocalCluster = make_cluster(secure=False)  # the password-only Raft port
    leader = cluster.spec(cluster.wait_for_leader())
    with open(cluster.password_file) as f:
        password = f.read().strip()
    answers = []
    with socket.create_connection(_addr(leader.raft), timeout=5) as s:
        mine = os.urandom(32)
        s.sendall(_frame(password, pickle.dumps(mine, 2)))
        echoed, theirs = _recv_frame(s, password)  # type: ignore[misc]
        assert echoed == mine
        s.sendall(_frame(password, pickle.dumps((theirs, ["status"]), 2)))
        try:
            answers.append(_recv_frame(s, password))
        except (OSError, ConnectionError):
            pass
    assert answers == [], f"the node answered an admin command: {answers}"
    with cluster.client(timeout=5.0) as c:
        c.create_job("after-admin", cron="0 0 1 1 *", request_id="after-admin")
    wait_for(lambda: converged(cluster), 30, "the replicas to converge")


def test_idle_connections_cannot_use_up_descriptors(make_cluster) -> None:
    """300 connections that never say anything: the node keeps at most 64 of them open, and
    closes the rest after connectionTimeout (pysyncobj kept every one open for ever)."""
    cluster: LocalCluster = make_cluster(secure=False)  # the password-only Raft port
    leader = cluster.wait_for_leader()
    pid = cluster.procs[leader].pid

    def fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    before = fds()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(_addr(cluster.spec(leader).raft), timeout=5))
        with cluster.client(timeout=5.0) as c:
            c.create_job("idle", cron="0 0 1 1 *", request_id="idle")
        during = fds()
        assert during <= before + 64 + 8, f"{during - before} more descriptors with 300 idle peers"
        wait_for(lambda: fds() <= before + 8, 15, "the idle connections to be closed")
    finally:
        for s in idle:
            s.close()


def _run_with_password(tmp_path, password_file: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "schedd",
        "run",
        "--node-id",
        "n1",
        "--data-dir",
        str(tmp_path / "n1"),
        "--raft",
        "127.0.0.1:1",
        "--grpc",
        "127.0.0.1:2",
        "--raft-password-file",
        password_file,
    ]
    env = {k: v for k, v in os.environ.items() if k != "SCHEDD_RAFT_PASSWORD"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def test_short_password_is_refused(tmp_path) -> None:
    pw = tmp_path / "pw"
    fd = os.open(pw, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short-password\n")  # 14 bytes
    os.close(fd)
    res = _run_with_password(tmp_path, str(pw))
    assert res.returncode == 2, res.stderr
    assert "at least 16" in res.stderr
    assert "secrets.token_urlsafe(32)" in res.stderr
    assert not (tmp_path / "n1").exists()


def test_password_file_readable_by_others_is_refused(tmp_path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("a-long-enough-password-of-32-bytes\n")
    os.chmod(pw, 0o644)
    res = _run_with_password(tmp_path, str(pw))
    assert res.returncode == 2, res.stderr
    assert f"chmod 600 {pw}" in res.stderr
    assert not (tmp_path / "n1").exists()


def test_short_password_from_the_environment_is_refused(tmp_path) -> None:
    cmd = [sys.executable, "-m", "schedd", "run", "--node-id", "n1", "--data-dir"]
    cmd += [str(tmp_path / "n1"), "--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:2"]
    env = dict(os.environ, SCHEDD_RAFT_PASSWORD="secret")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2, res.stderr
    assert "SCHEDD_RAFT_PASSWORD" in res.stderr and "at least 16" in res.stderr


def test_data_directory_and_files_are_private(make_cluster) -> None:
    cluster: LocalCluster = make_cluster(secure=False)  # the password-only Raft port
    with cluster.client(timeout=5.0) as c:
        c.create_job("modes", cron="0 0 1 1 *", request_id="modes")
    wait_for(lambda: converged(cluster), 30, "the replicas to converge")
    assert stat.S_IMODE(os.stat(cluster.password_file).st_mode) == 0o600
    for spec in cluster.specs:
        loose = []
        for root, dirs, files in os.walk(spec.data_dir):
            for name in dirs:
                path = os.path.join(root, name)
                if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                    loose.append(path)
            for name in files:
                path = os.path.join(root, name)
                if name != "node.log" and stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                    loose.append(path)
        assert stat.S_IMODE(os.stat(spec.data_dir).st_mode) == 0o700
        assert loose == [], f"readable by group or others: {loose}"
