"""Security on a real 3-node cluster with mutual TLS and tokens (docs/security.md).

Every RPC x every role (allowed and refused), tokens expiring and revoked on every node, a
certificate from another CA, plaintext against the TLS port, a worker outside its queue grant,
certificate rotation under load, and the start-up refusals (no TLS without --insecure, a
world-readable bootstrap token). Every refusal leaves the replicated state as it was.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from schedd import errors
from schedd.client import Client
from schedd.pb import api_grpc, api_pb2, types_pb2
from schedd.sdk.credentials import Credentials
from schedd.security.pki import DevPKI
from schedd.security.roles import ANY_PRINCIPAL, METHOD_ROLES, Role
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for
from tests.integration.conftest import register

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
YEARLY = "0 0 1 1 *"  # no firing during a test: the state digest stays put


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = register(
        LocalCluster(str(tmp_path_factory.mktemp("secure")), nodes=3, extra_args=list(FAST_ARGS))
    )
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        with c.client(retry_for=30) as admin:
            admin.create_job("sec-job", cron=YEARLY)
        yield c
    finally:
        c.stop()


def _creds(c: LocalCluster, token: str | None = None, **kw: Any) -> Credentials:
    base = dict(ca=c.ca_file, cert=c.admin_cert.cert, key=c.admin_cert.key, token=token)
    base.update(kw)
    return Credentials(**base)


def _digests(c: LocalCluster) -> tuple[int, str]:
    return c.wait_converged(timeout=30)


# ---- every RPC x every role ----------------------------------------------------------------

#: method -> a request that passes validation far enough to show the role check ran first
REQUESTS: dict[str, Any] = {
    "CreateJob": api_pb2.CreateJobRequest(
        name="role-probe",
        schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=YEARLY),
    ),
    "CreateJobs": api_pb2.CreateJobsRequest(
        jobs=[
            api_pb2.CreateJobRequest(
                name="role-probe-bulk",
                schedule=types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_CRON, cron=YEARLY),
            )
        ]
    ),
    "GetJob": api_pb2.JobRequest(name="sec-job"),
    "ListJobs": api_pb2.ListJobsRequest(limit=1),
    "DeleteJob": api_pb2.JobRequest(name="no-such-job"),
    "UpdateJob": api_pb2.UpdateJobRequest(),
    "PauseJob": api_pb2.JobRequest(name="no-such-job"),
    "ResumeJob": api_pb2.ResumeJobRequest(name="no-such-job"),
    "TriggerJob": api_pb2.TriggerJobRequest(name="no-such-job"),
    "BackfillJob": api_pb2.BackfillRequest(name="no-such-job"),
    "ExplainJob": api_pb2.ExplainRequest(name="sec-job"),
    "GetDependencies": api_pb2.JobRequest(name="sec-job"),
    "ListRuns": api_pb2.ListRunsRequest(limit=1),
    "GetRun": api_pb2.GetRunRequest(run_id="no-such-run:1:1"),
    "CompleteRun": api_pb2.Completion(run_id="no-such-run:1:1", fence=1),
    "RetryRun": api_pb2.RetryRunRequest(run_id="no-such-run:1:1"),
    "CancelRun": api_pb2.CancelRunRequest(run_id="no-such-run:1:1"),
    "ListWorkers": api_pb2.ListWorkersRequest(),
    "GetNodeStatus": api_pb2.NodeStatusRequest(),
    "TransferLeadership": api_pb2.TransferLeadershipRequest(to_node_id="no-such-node"),
    "ListAudit": api_pb2.ListAuditRequest(limit=1),
    "SetNamespaceQuota": api_pb2.SetNamespaceQuotaRequest(namespace="role-probe"),
    "GetNamespace": api_pb2.GetNamespaceRequest(),
    "ListNamespaces": api_pb2.ListNamespacesRequest(),
    "SaveSnapshot": api_pb2.SaveSnapshotRequest(),
    "ListMembers": api_pb2.ListMembersRequest(),
    # invalid (no addresses) and unknown: refused by validation, nothing changes
    "AddMember": api_pb2.AddMemberRequest(node_id="role-probe"),
    "RemoveMember": api_pb2.RemoveMemberRequest(node_id="no-such-node"),
    "CreateToken": api_pb2.CreateTokenRequest(name="", grants=["reader"]),
    "ListTokens": api_pb2.ListTokensRequest(),
    "RevokeToken": api_pb2.RevokeTokenRequest(name="no-such-token"),
}

STUBS = {
    "JobService": api_grpc.JobServiceStub,
    "RunService": api_grpc.RunServiceStub,
    "ClusterService": api_grpc.ClusterServiceStub,
    "TokenService": api_grpc.TokenServiceStub,
    "WorkerService": api_grpc.WorkerServiceStub,
}

ROLE_GRANTS = {
    "reader": ["reader"],
    "writer": ["writer"],
    "admin": ["admin"],
    "worker": ["worker"],
    "cluster-admin": ["cluster-admin"],
    "other-namespace-writer": ["team-b:writer"],
}
ALLOWED = {
    "reader": {Role.READER},
    "writer": {Role.READER, Role.WRITER},
    "admin": {Role.READER, Role.WRITER, Role.ADMIN},
    "worker": {Role.WORKER},
    "cluster-admin": set(Role),
    "other-namespace-writer": set(),
}


def _call(stub: Any, method: str, secret: str) -> grpc.StatusCode:
    md = (("authorization", f"Bearer {secret}"),)
    try:
        if method == "Connect":
            hello = api_pb2.WorkerMessage(
                hello=api_pb2.Hello(worker_id=f"probe-{secret[-6:]}", queues=["probe"])
            )
            call = stub.Connect(iter([hello]), metadata=md, timeout=3)
            next(call)  # the welcome (or the refusal)
            call.cancel()
            return grpc.StatusCode.OK
        answer = getattr(stub, method)(REQUESTS[method], metadata=md, timeout=5)
        if method == "SaveSnapshot":  # a stream: the refusal comes with its first message
            for _ in answer:
                pass
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_every_rpc_by_every_role_on_the_leader(secure: LocalCluster) -> None:
    c = secure
    with c.client(retry_for=30) as admin:
        secrets = {
            role: admin.create_token(f"role-{role}", grants, ttl_s=600).secret
            for role, grants in ROLE_GRANTS.items()
        }
    before = _digests(c)
    leader = c.wait_for_leader()
    channel = c.credentials.channel(c.spec(leader).grpc)
    seen: dict[tuple[str, str], grpc.StatusCode] = {}
    allowed: list[tuple[Any, str, str]] = []
    try:
        # refusals first: none of them may change the replicated state
        for full, need in sorted(METHOD_ROLES.items()):
            service, method = full.rsplit("/", 2)[-2].split(".")[-1], full.rsplit("/", 1)[-1]
            stub = STUBS[service](channel)
            for role, secret in secrets.items():
                if need in ALLOWED[role] or full in ANY_PRINCIPAL:
                    allowed.append((stub, method, role))
                    continue
                code = _call(stub, method, secret)
                seen[(method, role)] = code
                assert code is grpc.StatusCode.PERMISSION_DENIED, (method, role, code)
        assert _digests(c)[1] == before[1]
        # then what each role may do (the writes fail their lookups or are harmless)
        for stub, method, role in allowed:
            if method == "TransferLeadership":
                continue  # allowed for cluster-admin; moving the leader is tested elsewhere
            code = _call(stub, method, secrets[role])
            seen[(method, role)] = code
            assert code not in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            ), (method, role, code)
    finally:
        channel.close()
    assert len(seen) >= (len(METHOD_ROLES) - 1) * len(secrets)


# ---- tokens: expiry, revocation on every node -------------------------------------------------


def test_an_expired_token_is_refused(secure: LocalCluster) -> None:
    with secure.client(retry_for=30) as admin:
        new = admin.create_token("short-lived", ["reader"], ttl_s=1)
    with Client(secure.endpoints, credentials=_creds(secure, new.secret), retry_for=30) as c:
        assert c.get_job("sec-job").name == "sec-job"
        time.sleep(1.2)  # the token's 1 s lifetime runs out: the wait is the test
        with pytest.raises(errors.Unauthenticated, match="expired"):
            c.get_job("sec-job")


def test_a_revoked_token_is_refused_by_every_node(secure: LocalCluster) -> None:
    with secure.client(retry_for=30) as admin:
        new = admin.create_token("to-revoke", ["reader"])
        creds = _creds(secure, new.secret)
        with Client(secure.endpoints, credentials=creds, retry_for=30) as c:
            for ep in secure.endpoints:
                wait_for(lambda ep=ep: _status_ok(c, ep), 10, f"{ep} to accept the token")
            admin.revoke_token("to-revoke")
            for ep in secure.endpoints:
                wait_for(lambda ep=ep: not _status_ok(c, ep), 10, f"{ep} to refuse the token")
            with pytest.raises(errors.Unauthenticated, match="revoked"):
                c.get_job("sec-job")
        assert [t.name for t in admin.list_tokens(include_revoked=True) if t.revoked] == [
            "to-revoke"
        ]


def _status_ok(c: Client, ep: str) -> bool:
    try:
        c.node_status(ep)
        return True
    except (errors.Unauthenticated, errors.Unavailable):  # Unavailable: not applied there yet
        return False


def test_an_unknown_token_is_sent_to_the_leader_by_a_follower(secure: LocalCluster) -> None:
    """A follower may not have applied a token the leader created a moment ago: it points the
    caller at the leader (UNAVAILABLE with the leader hint, which clients follow) instead of
    refusing; the leader refuses a token it does not know."""
    leader = secure.wait_for_leader()
    nodes = [spec.node_id for spec in secure.specs]
    follower = next(n for n in nodes if n != leader)
    md = (("authorization", "Bearer sdt_not-a-token-of-this-cluster"),)
    answers = {}
    for node in (follower, leader):
        ch = secure.credentials.channel(secure.spec(node).grpc)
        try:
            api_grpc.JobServiceStub(ch).GetJob(
                api_pb2.JobRequest(name="sec-job"), metadata=md, timeout=5
            )
        except grpc.RpcError as e:
            trailing = dict(e.trailing_metadata() or ())
            answers[node] = (e.code(), trailing.get("schedd-leader"))
        finally:
            ch.close()
    assert answers[follower] == (grpc.StatusCode.UNAVAILABLE, secure.spec(leader).grpc)
    assert answers[leader] == (grpc.StatusCode.UNAUTHENTICATED, None)
    # a token used the moment it is created works whichever node the client asks first
    with secure.client(retry_for=30) as admin:
        for i in range(3):
            fresh = admin.create_token(f"fresh-{i}", ["reader"], ttl_s=600).secret
            for first in nodes:
                addr = secure.spec(first).grpc
                eps = [addr] + [e for e in secure.endpoints if e != addr]
                with Client(eps, credentials=_creds(secure, fresh), retry_for=30) as c:
                    assert c.get_job("sec-job").name == "sec-job"


def test_token_secrets_are_never_stored_or_listed(secure: LocalCluster) -> None:
    with secure.client(retry_for=30) as admin:
        new = admin.create_token("secret-check", ["reader"])
        listed = [t for t in admin.list_tokens() if t.name == "secret-check"]
    assert listed and not hasattr(listed[0], "secret")
    assert new.secret.startswith("sdt_") and len(new.secret) > 40
    secure.wait_converged()
    for spec in secure.specs:
        data = Path(spec.data_dir)
        for f in data.rglob("*"):
            if f.is_file():
                assert new.secret.encode() not in f.read_bytes(), f


def test_the_audit_trail_names_who_changed_what_on_every_node(secure: LocalCluster) -> None:
    with secure.client(retry_for=30) as admin:
        secret = admin.create_token("auditor-probe", ["writer"]).secret
        with Client(secure.endpoints, credentials=_creds(secure, secret), retry_for=30) as w:
            w.create_job("audited", cron=YEARLY)
            w.pause_job("audited")
            with pytest.raises(errors.NotFound):
                w.delete_job("never-existed")
            with pytest.raises(errors.PermissionDenied):
                w.list_audit()
        records, _ = admin.list_audit(10, principal="token:auditor-probe")
        assert [(r.action, r.target, r.code) for r in records] == [
            ("delete_job", "never-existed", "NOT_FOUND"),
            ("pause_job", "audited", "OK"),
            ("create_job", "audited", "OK"),
        ]
        (created,) = admin.list_audit(10, target="auditor-probe")[0]
        assert created.action == "create_token" and created.principal == "token:bootstrap"
        # paging: one record at a time walks the same trail
        first, nxt = admin.list_audit(1, principal="token:auditor-probe")
        second, _ = admin.list_audit(1, principal="token:auditor-probe", before_index=nxt)
        assert [first[0].index, second[0].index] == [records[0].index, records[1].index]
    secure.wait_converged()  # every node holds the same trail (it is replicated state)


# ---- transport: other CA, plaintext, no certificate ------------------------------------------


def test_a_certificate_from_another_ca_is_refused(secure: LocalCluster, tmp_path: Path) -> None:
    rogue = DevPKI(str(tmp_path / "rogue"))
    admin = rogue.admin("admin")  # a cluster-admin id, signed by the wrong CA
    creds = Credentials(ca=secure.ca_file, cert=admin.cert, key=admin.key)
    with Client(secure.endpoints, credentials=creds, retry_for=1) as c:
        with pytest.raises(errors.Unavailable):
            c.list_jobs()


def test_plaintext_against_the_tls_port_is_refused(secure: LocalCluster) -> None:
    with Client(secure.endpoints, credentials=Credentials(insecure=True), retry_for=1) as c:
        with pytest.raises(errors.Unavailable):
            c.list_jobs()


def test_a_token_without_a_client_certificate_cannot_connect_under_mutual_tls(
    secure: LocalCluster,
) -> None:
    token = Path(secure.token_file).read_text().strip()
    with Client(
        secure.endpoints, credentials=Credentials(ca=secure.ca_file, token=token), retry_for=1
    ) as c:
        with pytest.raises(errors.Unavailable):
            c.list_jobs()


# ---- workers: queue grants ---------------------------------------------------------------------


def test_a_worker_token_serves_only_its_queues(secure: LocalCluster) -> None:
    with secure.client(retry_for=30) as admin:
        secret = admin.create_token("reports-worker", ["worker"], queues=["reports"]).secret
    leader = secure.wait_for_leader()
    creds = _creds(secure, secret)
    ch = creds.channel(secure.spec(leader).grpc)
    stub = api_grpc.WorkerServiceStub(ch)
    md = creds.metadata
    try:

        def connect(queues: list[str]) -> tuple[grpc.StatusCode, str]:
            hello = api_pb2.WorkerMessage(hello=api_pb2.Hello(worker_id="q-probe", queues=queues))
            call = stub.Connect(iter([hello]), metadata=md, timeout=3)
            try:
                msg = next(call)
                call.cancel()
                return grpc.StatusCode.OK, msg.WhichOneof("body") or ""
            except grpc.RpcError as e:
                return e.code(), e.details() or ""

        code, details = connect(["payments"])
        assert code is grpc.StatusCode.PERMISSION_DENIED and "payments" in details
        code, details = connect(["reports", "payments"])
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert connect(["reports"]) == (grpc.StatusCode.OK, "welcome")
    finally:
        ch.close()


def test_a_worker_with_only_its_certificate_keeps_its_stream(secure: LocalCluster) -> None:
    """The agent probes its node with GetNodeStatus every heartbeat interval; refused to a
    worker-only identity, the probe failed and the agent tore its stream down each time (the
    benchmark's lag grew to 2 s at 100 firings/s)."""
    import logging

    from schedd.agent import Worker

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger(f"test-worker-probe-{id(records)}")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    worker = Worker(
        secure.endpoints,
        queues=["cert-only"],
        worker_id="cert-only",
        credentials=secure.worker_credentials,
        logger=logger,
    )
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:

        def connects() -> int:
            return sum(r.startswith("event=connected") for r in records)

        wait_for(connects, 15, "the worker to connect")
        time.sleep(3.0)  # six heartbeat intervals (FAST_ARGS: 0.5 s), each with a probe
        assert connects() == 1 and not [r for r in records if "disconnected" in r], records
    finally:
        worker.stop(drain_timeout=1)
        t.join(timeout=10)


# ---- certificate rotation under load -------------------------------------------------------------


def _served_serial(addr: str, c: LocalCluster) -> int:
    ctx = ssl.create_default_context(cafile=c.ca_file)
    ctx.load_cert_chain(c.admin_cert.cert, c.admin_cert.key)
    ctx.set_alpn_protocols(["h2"])
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_rotation_under_load_fails_no_call(make_cluster: Any, tmp_path: Path) -> None:
    c = make_cluster()
    failures: list[BaseException] = []
    done = threading.Event()
    created = [0]

    def load() -> None:
        with c.client(retry_for=30) as cl:
            i = 0
            while not done.is_set():
                i += 1
                try:
                    cl.create_job(f"rot-{i}", every_ms=HOUR_MS, request_id=f"rot-{i}")
                    created[0] += 1
                except BaseException as e:  # noqa: BLE001 - any failed call fails the test
                    failures.append(e)
                # a fresh client now and then: new connections get the new certificate
                if i % 20 == 0:
                    with c.client(retry_for=30) as fresh:
                        fresh.get_job(f"rot-{i}")

    before = {s.node_id: _served_serial(s.grpc, c) for s in c.specs}
    t = threading.Thread(target=load, daemon=True)
    t.start()
    time.sleep(1.0)  # load before the rotation: calls in flight while the files change
    # rotate: issue new certificates into a scratch CA dir sharing the CA, then move them over
    scratch = tmp_path / "rotate"
    shutil.copytree(c.pki_dir, scratch)
    for f in scratch.glob("node-*"):
        f.unlink()
    pki = DevPKI(str(scratch))
    for spec in c.specs:
        new = pki.node(spec.node_id)
        old = c.node_certs[spec.node_id]
        # key first, then certificate: in between, the node keeps serving the old pair
        os.replace(new.key, old.key)
        os.replace(new.cert, old.cert)
    wait_for(
        lambda: all(_served_serial(s.grpc, c) != before[s.node_id] for s in c.specs),
        15,
        "every node to serve its new certificate",
    )
    time.sleep(1.0)  # load after the rotation, on the new certificates
    done.set()
    t.join(timeout=30)
    assert failures == [] and created[0] > 10
    for spec in c.specs:
        assert "event=tls_reloaded" in Path(spec.log_path).read_text()


# ---- start-up refusals -------------------------------------------------------------------------


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schedd", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SCHEDD_RAFT_PASSWORD": "x" * 32, **(env or {})},
    )


def test_run_refuses_plaintext_unless_insecure_is_given(tmp_path: Path) -> None:
    p = _run(
        *("--node-id", "n1", "--data-dir", str(tmp_path / "d")),
        *("--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:2"),
    )
    assert p.returncode == 2
    assert "--tls-cert" in p.stderr and "--insecure" in p.stderr and "Traceback" not in p.stderr


def test_run_refuses_a_bootstrap_token_others_can_read(tmp_path: Path) -> None:
    tok = tmp_path / "boot.token"
    tok.write_text("t" * 40)
    tok.chmod(0o644)
    p = _run(
        *("--node-id", "n1", "--data-dir", str(tmp_path / "d")),
        *("--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:2", "--insecure"),
        *("--bootstrap-token-file", str(tok)),
    )
    assert p.returncode == 2 and "chmod 600" in p.stderr, p.stderr
    tok.chmod(0o600)
    tok.write_text("short")
    p = _run(
        *("--node-id", "n1", "--data-dir", str(tmp_path / "d")),
        *("--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:2", "--insecure"),
        *("--bootstrap-token-file", str(tok)),
    )
    assert p.returncode == 2 and "at least 32" in p.stderr, p.stderr


def test_run_refuses_a_key_that_does_not_match_its_certificate(tmp_path: Path) -> None:
    pki = DevPKI(str(tmp_path / "pki"))
    a, b = pki.node("a"), pki.node("b")
    p = _run(
        *("--node-id", "n1", "--data-dir", str(tmp_path / "d")),
        *("--raft", "127.0.0.1:1", "--grpc", "127.0.0.1:2"),
        *("--tls-cert", a.cert, "--tls-key", b.key),
    )
    assert p.returncode == 2 and "does not belong" in p.stderr, p.stderr


def test_an_insecure_node_says_so_in_its_log(make_cluster: Any, tmp_path: Path) -> None:
    c = LocalCluster(str(tmp_path / "plain"), nodes=1, extra_args=list(FAST_ARGS), secure=False)
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        with c.client(retry_for=10) as cl:
            cl.create_job("plain", every_ms=HOUR_MS)
        assert "event=insecure" in Path(c.specs[0].log_path).read_text()
    finally:
        c.stop()
