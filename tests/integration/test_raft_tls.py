"""Mutual TLS on the Raft port (``--tls-cert/--tls-key/--tls-ca``), on real `schedd run`
processes (docs/security.md, "The Raft port"):

* a 3-node cluster with node certificates from one CA elects a leader and replicates;
* a node whose certificate comes from another CA cannot join (the others refuse its handshake
  and it never receives a log entry), while the other two keep committing;
* without a client certificate, nothing reaches the unpickler: the password holder's crafted
  pickle and the length-prefix flood are stopped by the TLS handshake.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import subprocess
import sys

import pytest

from schedd.security.pki import DevPKI, node_identity
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for
from tests.integration.test_raft_port import _addr, _Evil, _frame, converged

pytestmark = pytest.mark.integration


TlsCluster = LocalCluster  # secure (the default): node certificates from the cluster's dev CA


@pytest.fixture
def tls_cluster(tmp_path_factory: pytest.TempPathFactory):
    made: list[LocalCluster] = []

    def make(foreign_ca: str = "", wrong_host: str = "") -> LocalCluster:
        root = str(tmp_path_factory.mktemp("tls-cluster"))
        cluster = LocalCluster(root, nodes=3, extra_args=list(FAST_ARGS))
        if foreign_ca:  # a node certificate signed by another CA
            cluster.node_certs[foreign_ca] = DevPKI(os.path.join(root, "intruder")).node(foreign_ca)
        if wrong_host:  # the cluster's CA, but a certificate for another host
            cluster.node_certs[wrong_host] = DevPKI(cluster.pki_dir).issue(
                f"node-{wrong_host}-elsewhere",
                f"node:{wrong_host}",
                node_identity(wrong_host),
                server=True,
                hosts=("10.9.9.9",),
            )
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for c in made:
        c.stop()


def test_tls_cluster_replicates(tls_cluster) -> None:
    cluster: TlsCluster = tls_cluster()
    cluster.wait_for_leader(timeout=30)
    with cluster.client(timeout=5.0) as c:
        for i in range(20):
            c.create_job(f"tls-{i}", cron="0 0 1 1 *", request_id=f"tls-{i}")
    wait_for(lambda: converged(cluster), 30, "the TLS replicas to converge")
    st = cluster.status("n1", timeout=2)
    assert st is not None and st.applied_index >= 20


@pytest.mark.parametrize("fault", ["foreign_ca", "wrong_host"])
def test_a_node_with_a_certificate_from_another_ca_or_host_cannot_join(tls_cluster, fault) -> None:
    cluster: TlsCluster = tls_cluster(**{fault: "n3"})
    leader = cluster.wait_for_leader(timeout=30)
    assert leader in ("n1", "n2")
    with cluster.client(timeout=5.0) as c:
        for i in range(10):
            c.create_job(f"ca-{i}", cron="0 0 1 1 *", request_id=f"ca-{i}")

    def n1_applied() -> bool:  # a follower learns the commit index with the next message
        n1 = cluster.status("n1", timeout=2)  # None on a failed call: asked again
        return n1 is not None and n1.applied_index >= 10

    wait_for(n1_applied, 15, "n1 to apply the 10 creates")

    def refused() -> list[str]:  # n3 may still be starting when the others elect a leader
        return [
            s.node_id
            for s in cluster.specs[:2]
            if re.search("reason=(tls_handshake|identity)", open(s.log_path).read())
        ]

    wait_for(refused, 20, "n1 or n2 to log the refused connection")
    n3 = cluster.status("n3", timeout=2)
    assert n3 is None or n3.applied_index == 0, "the intruder received log entries"


def test_no_certificate_no_unpickling(tls_cluster, tmp_path) -> None:
    cluster: TlsCluster = tls_cluster()
    cluster.wait_for_leader(timeout=30)
    with open(cluster.password_file) as f:
        password = f.read().strip()
    marks = []
    for spec in cluster.specs:
        mark = str(tmp_path / f"pwned-{spec.node_id}")
        marks.append(mark)
        with socket.create_connection(_addr(spec.raft), timeout=5) as s:
            try:  # the node resets the connection: what it read is no TLS handshake
                s.sendall(_frame(password, pickle.dumps(_Evil(mark), 2)))
                s.sendall(b"\x00" * (1 << 20))  # and some flood after it
                s.recv(1 << 16)
            except OSError:
                pass
    assert [m for m in marks if os.path.exists(m)] == []
    with cluster.client(timeout=5.0) as c:
        c.create_job("after", cron="0 0 1 1 *", request_id="after")
    wait_for(lambda: converged(cluster), 30, "the replicas to converge")


def test_tls_flags_come_together_and_must_load(tmp_path) -> None:
    pw = tmp_path / "pw"
    fd = os.open(pw, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"a-long-enough-password-for-the-test\n")
    os.close(fd)
    base = [sys.executable, "-m", "schedd", "run", "--node-id", "n1", "--data-dir"]
    base += [str(tmp_path / "n1"), "--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:2"]
    base += ["--raft-password-file", str(pw)]
    res = subprocess.run([*base, "--tls-cert", "c.pem"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--tls-cert and --tls-key go together" in res.stderr
    missing = str(tmp_path / "nope.pem")
    res = subprocess.run(
        [*base, "--tls-cert", missing, "--tls-key", missing, "--tls-ca", missing],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and f"--tls-cert: cannot read the certificate {missing}" in (
        res.stderr
    ), res.stderr
    assert not (tmp_path / "n1").exists()


def test_tls_files_can_come_from_the_config_file(tmp_path) -> None:
    pw = tmp_path / "pw"
    fd = os.open(pw, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"a-long-enough-password-for-the-test\n")
    os.close(fd)
    conf = tmp_path / "schedd.toml"
    conf.write_text(
        f'node_id = "n1"\ndata_dir = "{tmp_path / "n1"}"\nraft = "127.0.0.1:1"\n'
        f'grpc = "127.0.0.1:2"\nraft_password_file = "{pw}"\ntls_cert = "c.pem"\n'
    )
    res = subprocess.run(
        [sys.executable, "-m", "schedd", "run", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--tls-cert and --tls-key go together" in res.stderr
