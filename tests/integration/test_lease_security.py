"""Leases belong to their holder; request ids to their caller; limits keep one client from
hurting everyone. Each test replays an attack measured on a real 3-node cluster.

Workers here are raw Connect streams (``RawWorker``), so a test can act as the holder and as
an intruder that knows the fence (ListRuns shows it). The node limits come from a --config
file (hello timeout, worker streams per identity and per node).
Runtime: about 40 s (two clusters).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from schedd import errors
from schedd.client import Client
from schedd.pb import api_grpc, api_pb2, types_pb2
from schedd.sdk.credentials import Credentials
from schedd.testing import FAST_ARGS, LocalCluster
from tests._util import wait_for

pytestmark = pytest.mark.integration

HOUR_MS = 3600_000
#: the credentials raw workers use by default (set by the cluster fixture)
CREDS: dict[str, Credentials] = {}
OK, PERMISSION_DENIED = grpc.StatusCode.OK.value[0], grpc.StatusCode.PERMISSION_DENIED.value[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("lease-security")
    config = Path(root) / "limits.toml"
    config.write_text('hello_timeout = "1s"\nmax_worker_streams = 4\nworker_streams = 12\n')
    c = LocalCluster(str(root), nodes=3, extra_args=[*FAST_ARGS, "--config", str(config)])
    # raw workers present the cluster's worker certificate (one identity for all of them)
    CREDS["worker"] = c.worker_credentials
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with cluster.client(retry_for=30) as c:
        yield c


def leader_addr(cluster: LocalCluster) -> str:
    return cluster.spec(cluster.wait_for_leader()).grpc


class RawWorker:
    """One WorkerService.Connect stream driven by hand."""

    def __init__(
        self,
        addr: str,
        worker_id: str,
        queues: list[str],
        hello: bool = True,
        creds: Credentials | None = None,
    ) -> None:
        self.worker_id = worker_id
        creds = creds or CREDS["worker"]
        self.channel = creds.channel(addr)
        self._md = creds.metadata
        self._out: queue.SimpleQueue[api_pb2.WorkerMessage | None] = queue.SimpleQueue()
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        if hello:
            self.send(
                api_pb2.WorkerMessage(hello=api_pb2.Hello(worker_id=worker_id, queues=queues))
            )
        self.call = api_grpc.WorkerServiceStub(self.channel).Connect(
            self._requests(), metadata=self._md
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _requests(self) -> Iterator[api_pb2.WorkerMessage]:
        while (msg := self._out.get()) is not None:
            yield msg

    def _pump(self) -> None:
        try:
            for msg in self.call:
                self.inbox.put(msg)
        except grpc.RpcError as e:
            self.inbox.put(e)

    def send(self, msg: api_pb2.WorkerMessage) -> None:
        self._out.put(msg)

    def next(self, kind: str, timeout: float = 10.0) -> Any:
        """The next server message with body ``kind``; raises the stream's error if it ends."""
        while True:
            msg = self.inbox.get(timeout=timeout)
            if isinstance(msg, grpc.RpcError):
                raise msg
            if msg.WhichOneof("body") == kind:
                return getattr(msg, kind)

    def heartbeat(self, run_id: str, fence: int) -> None:
        lease = api_pb2.Lease(run_id=run_id, fence=fence)
        self.send(api_pb2.WorkerMessage(heartbeat=api_pb2.Heartbeat(leases=[lease])))

    def complete(self, run_id: str, fence: int) -> None:
        c = api_pb2.Completion(run_id=run_id, fence=fence, outcome=api_pb2.OUTCOME_SUCCEEDED)
        self.send(api_pb2.WorkerMessage(completions=api_pb2.Completions(completions=[c])))

    def close(self) -> None:
        self._out.put(None)
        self.call.cancel()
        self.channel.close()


def leased_run(
    cluster: LocalCluster, client: Client
) -> tuple[RawWorker, api_pb2.Welcome, types_pb2.Run]:
    """A fresh job on its own queue, triggered and leased to a raw worker (the victim)."""
    q = f"q{uuid.uuid4().hex[:8]}"
    client.create_job(f"sec-{q}", every_ms=HOUR_MS, queue=q)
    victim = RawWorker(leader_addr(cluster), f"victim-{q}", [q])
    welcome = victim.next("welcome")
    run = client.trigger_job(f"sec-{q}")
    firing = victim.next("firings").firings[0]
    assert firing.run_id == run.run_id
    return victim, welcome, client.get_run(run.run_id)


def test_a_completion_for_an_unknown_run_is_refused_before_it_is_proposed(
    cluster: LocalCluster,
) -> None:
    """30 completions with 3 MB errors for runs that do not exist used to be proposed (and copied
    into every journal). Now they are NOT_FOUND at once: the state does not move at all."""
    for _ in range(3):  # measured again if an election (2 cores, busy machine) moves state
        leader = cluster.wait_for_leader()
        wait_for(
            lambda leader=leader: (
                (st := cluster.status(leader)) is not None and st.applied_index > 0
            ),
            30,
            "the new leader's barrier to be applied",
        )
        cluster.wait_converged()
        before = cluster.status(leader, with_digest=True)
        assert before is not None
        stub = api_grpc.RunServiceStub(cluster.credentials.channel(cluster.spec(leader).grpc))
        codes = []
        for i in range(30):
            try:
                stub.CompleteRun(
                    api_pb2.Completion(
                        run_id=f"no-such-run-{i}",
                        fence=1,
                        outcome=api_pb2.OUTCOME_FAILED,
                        error="x" * (3 << 20),
                    ),
                    timeout=10,
                )
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
                assert e.code() != grpc.StatusCode.NOT_FOUND or "run_id" in (e.details() or "")
        after = cluster.status(leader, with_digest=True)
        assert after is not None
        if after.term != before.term or grpc.StatusCode.UNAVAILABLE in codes:
            continue
        assert set(codes) == {grpc.StatusCode.NOT_FOUND}
        assert (after.applied_index, after.state_digest) == (
            before.applied_index,
            before.state_digest,
        )
        return
    pytest.fail("the leader changed during each of 3 measurements")


def test_knowing_the_fence_is_not_enough_to_complete_or_release_a_run(
    cluster: LocalCluster, client: Client
) -> None:
    victim, welcome, run = leased_run(cluster, client)
    try:
        # A forged unary success (the attack: SUCCEEDED for a run whose effect never ran).
        with pytest.raises(errors.SchedError) as denied:
            client.complete_run(run.run_id, run.fence, success=True)
        assert denied.value.code == "PERMISSION_DENIED" and "session" in denied.value.message
        # A forged completion and a release from another worker's stream.
        intruder = RawWorker(leader_addr(cluster), f"intruder-{uuid.uuid4().hex[:6]}", ["none"])
        intruder.next("welcome")
        intruder.complete(run.run_id, run.fence)
        ack = intruder.next("acks").acks[0]
        assert ack.code == PERMISSION_DENIED and "worker_id" in ack.message
        intruder.send(
            api_pb2.WorkerMessage(
                release=api_pb2.Release(
                    leases=[api_pb2.Lease(run_id=run.run_id, fence=run.fence)], reason="mine"
                )
            )
        )
        intruder.close()
        victim.heartbeat(run.run_id, run.fence)
        # Another committed entry, then look: the run is still the victim's, same attempt.
        client.create_job(f"sec-barrier-{uuid.uuid4().hex[:6]}", every_ms=HOUR_MS)
        now = client.get_run(run.run_id)
        assert (now.state, now.fence, now.attempt, now.worker_id) == (
            types_pb2.RUN_STATE_LEASED,
            run.fence,
            run.attempt,
            victim.worker_id,
        )
        # The holder's own session completes it, here through the unary call with its secret.
        client.complete_run(run.run_id, run.fence, success=True, session=welcome.session)
        assert client.get_run(run.run_id).state == types_pb2.RUN_STATE_SUCCEEDED
    finally:
        victim.close()


def test_a_worker_id_cannot_be_taken_over_by_another_identity(
    cluster: LocalCluster, client: Client
) -> None:
    """Reusing a worker id kicked the real worker off. Now a second stream with the same id
    and the same identity replaces the first (a reconnect), and another identity (here a worker
    token, against the worker certificate) is refused with ALREADY_EXISTS."""
    wid = f"owned-{uuid.uuid4().hex[:6]}"
    owner = RawWorker(leader_addr(cluster), wid, ["none"])
    owner.next("welcome")
    secret = client.create_token(f"thief-{wid}", ["worker"]).secret
    env = cluster.client_env
    thief_creds = Credentials(
        ca=env["SCHEDD_CA"], cert=env["SCHEDD_CERT"], key=env["SCHEDD_KEY"], token=secret
    )
    thief = RawWorker(leader_addr(cluster), wid, ["none"], creds=thief_creds)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            thief.next("welcome")
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert wid in (refused.value.details() or "")
        again = RawWorker(leader_addr(cluster), wid, ["none"])  # same identity: a reconnect
        again.next("welcome")
        again.close()
    finally:
        thief.close()
        owner.close()


def test_heartbeats_from_another_stream_do_not_keep_a_dead_workers_lease(
    cluster: LocalCluster, client: Client
) -> None:
    victim, _, run = leased_run(cluster, client)
    intruder = RawWorker(leader_addr(cluster), f"intruder-{uuid.uuid4().hex[:6]}", ["none"])
    intruder.next("welcome")
    stop = threading.Event()

    def keep_alive() -> None:  # the victim is silent; the intruder heartbeats its lease
        while not stop.wait(0.3):
            intruder.heartbeat(run.run_id, run.fence)

    threading.Thread(target=keep_alive, daemon=True).start()
    try:
        # Lease TTL is 3 s (FAST_ARGS): the silent victim's lease must expire.
        wait_for(
            lambda: (
                client.get_run(run.run_id).fence != run.fence
                or client.get_run(run.run_id).state != types_pb2.RUN_STATE_LEASED
            ),
            12,
            "the silent worker's lease to expire",
        )
    finally:
        stop.set()
        intruder.close()
        victim.close()


def test_a_request_id_cannot_be_reused_for_another_request(client: Client) -> None:
    rid = f"victim-{uuid.uuid4().hex}"
    evil = client.create_job(f"sec-evil-{rid[-6:]}", every_ms=HOUR_MS, request_id=rid)
    with pytest.raises(errors.FailedPrecondition) as info:
        client.create_job(f"sec-good-{rid[-6:]}", every_ms=HOUR_MS, request_id=rid)
    assert "request_id" in info.value.message
    # A retry of the same request still returns the first answer.
    again = client.create_job(f"sec-evil-{rid[-6:]}", every_ms=HOUR_MS, request_id=rid)
    assert again.uid == evil.uid
    with pytest.raises(errors.NotFound):
        client.get_job(f"sec-good-{rid[-6:]}")


def test_a_stream_without_hello_is_closed_with_deadline_exceeded(cluster: LocalCluster) -> None:
    silent = RawWorker(leader_addr(cluster), "silent", [], hello=False)
    try:
        with pytest.raises(grpc.RpcError) as info:
            silent.next("welcome", timeout=8)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "hello" in (info.value.details() or "").lower()
    finally:
        silent.close()


def test_worker_streams_per_identity_are_limited(cluster: LocalCluster, client: Client) -> None:
    # An identity of its own (a worker token): streams of other tests' raw workers, closed but
    # perhaps not yet reaped by the server, do not count against it.
    tag = uuid.uuid4().hex[:6]
    secret = client.create_token(f"streams-{tag}", ["worker"]).secret
    env = cluster.client_env
    creds = Credentials(
        ca=env["SCHEDD_CA"], cert=env["SCHEDD_CERT"], key=env["SCHEDD_KEY"], token=secret
    )
    addr = leader_addr(cluster)
    workers: list[RawWorker] = []
    try:
        for i in range(4):  # one after the other: the fifth is the one over the limit
            workers.append(RawWorker(addr, f"many-{tag}-{i}", ["none"], creds=creds))
            workers[-1].next("welcome")
        workers.append(RawWorker(addr, f"many-{tag}-4", ["none"], creds=creds))
        with pytest.raises(grpc.RpcError) as info:
            workers[4].next("welcome")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-worker-streams" in (info.value.details() or "")
    finally:
        for w in workers:
            w.close()


def test_streams_that_never_say_hello_cannot_take_the_apis_threads(
    cluster: LocalCluster, client: Client
) -> None:
    """A worker stream holds a slot from the moment it opens: with the node's 12 slots
    (``worker_streams``) held by connections that never send Hello, further streams are
    refused at once, naming --worker-streams, and unary calls still have their own threads.
    The silent streams are closed after the hello timeout (1 s), and a worker gets in again."""
    addr = leader_addr(cluster)
    silent = [RawWorker(addr, f"mute-{i}", [], hello=False) for i in range(16)]
    try:
        # within the hello timeout, while the slots are held: the API answers
        assert client.list_workers() is not None
        codes = []
        for w in silent:
            try:
                w.next("welcome", timeout=5)
            except grpc.RpcError as e:
                codes.append((e.code(), e.details() or ""))
        refused = [d for c, d in codes if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) >= 4, codes  # 16 opened, at most 12 held
        assert all("--worker-streams" in d for d in refused)
        assert {c for c, _ in codes} <= {
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.DEADLINE_EXCEEDED,  # the ones that held a slot, closed at 1 s
        }
    finally:
        for w in silent:
            w.close()
    back = RawWorker(addr, "after-the-mute", ["none"])
    try:
        back.next("welcome", timeout=15)
    finally:
        back.close()


def test_leader_transfers_are_rate_limited(cluster: LocalCluster) -> None:
    """A TransferLeadership every 50 ms (to every node in turn, so always also to the leader)
    caused 281 elections in 30 s. Now a leader hands over at most once per 3 s and only after
    leading 3 s: in 6 s of that, a few elections at most, and the extra calls are refused."""
    cluster.wait_for_leader()
    term_before = _term(cluster)
    stubs = [
        api_grpc.ClusterServiceStub(cluster.credentials.channel(s.grpc)) for s in cluster.specs
    ]
    codes: list[grpc.StatusCode] = []
    details: list[str] = []

    def call(i: int) -> None:
        try:
            stubs[i % len(stubs)].TransferLeadership(
                api_pb2.TransferLeadershipRequest(), timeout=10
            )
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
            details.append(e.details() or "")

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        pause = threading.Event()
        for i in range(120):  # 120 calls, 50 ms apart: 6 s
            pool.submit(call, i)
            pause.wait(0.05)
    elections = _term(cluster) - term_before
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert any("TransferLeadership" in d for d in details)
    assert elections <= 4, f"{elections} elections in 6 s"
    cluster.wait_for_leader()
    cluster.wait_converged()


def _term(cluster: LocalCluster) -> int:
    terms = [st.term for s in cluster.specs if (st := cluster.status(s.node_id)) is not None]
    return max(terms)


def test_the_lmdb_map_grows_online_and_writes_are_refused_near_its_ceiling(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """269 creates with big payloads filled a 16 MiB map and two nodes crash-looped (exit 70);
    later creates were refused at 90 % of the 16 MiB map. Now the map grows online (logged
    event=map_grown) up to --max-map-size, creates go on past 16 MiB of state, and near the
    ceiling they are refused with RESOURCE_EXHAUSTED naming --max-map-size; no node stops."""
    root = tmp_path_factory.mktemp("map-full")
    c = LocalCluster(
        str(root),
        nodes=3,
        extra_args=[*FAST_ARGS, "--map-size", "16", "--max-map-size", "64"],
    )
    c.start()
    try:
        c.wait_for_leader(timeout=30)
        payload = '"' + "p" * (60 * 1024) + '"'
        refused: list[errors.SchedError] = []
        created: list[int] = []

        def create(i: int) -> None:
            if refused:
                return
            try:
                writer.create_job(f"big-{i}", every_ms=HOUR_MS, payload=payload)
                created.append(i)
            except errors.ResourceExhausted as e:
                refused.append(e)

        with c.client(retry_for=10) as writer:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(create, range(2000)))
            assert refused, "2000 creates of 60 KiB fit under a 64 MiB ceiling?"
            # far more than a 16 MiB map holds (about 260 of these)
            assert len(created) > 600, len(created)
            assert "--max-map-size" in refused[0].message, refused[0].message
            before = c.wait_converged()
            with pytest.raises(errors.ResourceExhausted):
                writer.create_job("one-more", every_ms=HOUR_MS, payload=payload)
            assert c.wait_converged() == before  # the refusal changed nothing
            writer.delete_job("big-0")  # deletes still work: they free space
        assert all(c.alive(s.node_id) for s in c.specs)
        for spec in c.specs:
            with open(spec.log_path) as f:
                assert "event=map_grown from_mib=16 to_mib=32" in f.read(), spec.node_id
    finally:
        c.stop()
