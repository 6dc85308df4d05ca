"""The fault scenarios and the runner that turns one into a checked history and a table row.

Every scenario runs the same workload (``harness.WORKLOAD``: second-level cron jobs, flaky and
slow handlers, three workers of two kinds, job create/delete with request ids), injects its
faults for ``duration`` seconds, heals everything, pauses every workload job (the quiesce
point), drains, fetches the final state, tears the processes down and runs the checker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from chaos import checker, faketime, history, scenarios_power, truncation
from chaos.harness import DAG_WORKLOAD, LEASE_TTL_S, Harness
from schedd.pb import api_grpc, api_pb2, types_pb2
from schedd.testing import NodeSpec

OUT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
WARMUP_S = 4.0
ELECTION_MAX_S = 1.0  # schedd's RaftSettings.election_max_s


class Skip(Exception):
    """Raised by a scenario's setup when this machine cannot inject its fault."""


@dataclass(frozen=True)
class Scenario:
    name: str
    desc: str
    body: Callable[[Harness, float], None]
    fencing: bool = True
    control: bool = False  # negative control: passes when the checker reports duplicates
    smoke: bool = True
    #: runs after the harness is built and before the cluster starts (per-node env, mounts);
    #: raises Skip when the fault cannot be injected here
    setup: Callable[[Harness], None] | None = None
    #: a negative control of a failure the checker must see: passes only when it reports a
    #: violation starting with one of these prefixes (e.g. "P4"), and the run itself went through
    demonstrates: tuple[str, ...] = ()
    #: fault seconds in the CI smoke set (tests/chaos/test_smoke.py) when shorter than its default
    smoke_duration: float | None = None
    #: False: Raft runs without the per-pair proxies (no Raft link faults), so that nodes can
    #: join and leave (membership scenarios); gRPC stays proxied
    raft_proxies: bool = True


def _until(deadline: float, need: float) -> bool:
    return time.monotonic() + need <= deadline


def _settle(h: Harness, seconds: float) -> None:
    h.leader(timeout=60)
    time.sleep(seconds)


# ---- node faults -------------------------------------------------------------------------------


def leader_kill(h: Harness, duration: float) -> None:
    end = time.monotonic() + duration
    while True:
        leader = h.leader()
        h.kill_node(leader, leader_fault=True)
        time.sleep(5)
        h.restart_node(leader)
        _settle(h, 3)
        if not _until(end, 10):
            return


def leader_pause(h: Harness, duration: float) -> None:
    end = time.monotonic() + duration
    while True:
        leader = h.leader()
        h.pause_node(leader, leader_fault=True)
        time.sleep(2 * ELECTION_MAX_S + LEASE_TTL_S)  # past the election and the lease timeouts
        h.resume_node(leader)
        _settle(h, 3)
        if not _until(end, 11):
            return


def leader_isolated(h: Harness, duration: float) -> None:
    end = time.monotonic() + duration
    while True:
        leader = h.leader()
        h.isolate_node(leader, leader_fault=True)
        time.sleep(8)
        h.heal()
        _settle(h, 3)
        if not _until(end, 11):
            return


def follower_kill_catch_up(h: Harness, duration: float) -> None:
    leader = h.leader()
    follower = next(s.node_id for s in h.cluster.specs if s.node_id != leader)
    h.kill_node(follower)
    time.sleep(max(5.0, duration - 5))
    h.restart_node(follower)
    _settle(h, 4)


def full_cluster_restart(h: Harness, duration: float) -> None:
    end = time.monotonic() + duration
    while True:
        leader = h.leader()
        for spec in h.cluster.specs:
            h.kill_node(spec.node_id, leader_fault=spec.node_id == leader)
        time.sleep(2)
        for spec in h.cluster.specs:
            time.sleep(h.rng.uniform(0, 1.5))
            h.restart_node(spec.node_id)
        _settle(h, 4)
        if not _until(end, 12):
            return


def leader_one_way(h: Harness, duration: float) -> None:
    """Drop only what the leader sends to its peers (it still hears them) for 8 s (F7)."""
    end = time.monotonic() + duration
    while True:
        leader = h.leader()
        h.nemesis.write("leader_out_cut", node=leader, leader_fault=True, term=h._term(leader))
        for spec in h.cluster.specs:
            if spec.node_id != leader:
                h.cut_one_way(leader, spec.node_id)
        time.sleep(8)
        h.heal()
        _settle(h, 3)
        if not _until(end, 11):
            return


def flaky_network(h: Harness, duration: float) -> None:
    """Every Raft link: 30 ms delay per chunk and a 2% chance per chunk of a connection reset (F9)."""
    h.nemesis.write("flaky_links", delay_s=0.03, reset_p=0.02)
    h.faults += 1
    for link in h.cluster.raft_links.values():
        link.flaky(delay_s=0.03, reset_p=0.02)
    time.sleep(duration)
    h.heal()


# ---- worker faults -----------------------------------------------------------------------------


def _wait_handler_end(h: Harness, run_id: str, fence: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in history.read(h.history_path):
            if (
                e["op"] == "handler"
                and e["type"] == "end"
                and e["run_id"] == run_id
                and e["fence"] == fence
            ):
                return True
        time.sleep(0.2)
    return False


def _wait_newer_apply(h: Harness, run_id: str, fence: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in history.read(h.history_path):
            if (
                e["op"] == "sink"
                and e["type"] == "apply"
                and e["run_id"] == run_id
                and e["fence"] > fence
            ):
                return True
        time.sleep(0.2)
    return False


def worker_pause_long(h: Harness, duration: float) -> None:
    """SIGSTOP worker a1 (not inside any particular handler) for 20 s, then SIGCONT."""
    h.pause_worker("a1")
    time.sleep(20)
    h.resume_worker("a1")


def worker_pause_past_lease(h: Harness, duration: float) -> None:
    """SIGSTOP a worker inside a handler, before its effect, for 2x the lease TTL; after SIGCONT
    it writes with its old fence. The run was redelivered meanwhile: the sink must refuse it."""
    end = time.monotonic() + duration
    while True:
        name = h.arm("pause", "victim-agent")
        claim = h.wait_claim(name, timeout=15)
        if claim is None:
            raise RuntimeError("no victim-agent firing claimed the pause within 15s")
        h.pause_worker(claim["worker"])
        h.expect("sink_reject", run_id=claim["run_id"], fence=claim["fence"])
        time.sleep(2 * LEASE_TTL_S)
        h.resume_worker(claim["worker"])
        # The stale handler stays blocked (the rest of its "GC pause") until a newer attempt of
        # its run has written its effect, so its write is the late one, as in Kleppmann's example.
        _wait_newer_apply(h, claim["run_id"], claim["fence"], 20)
        h.release(name)
        _wait_handler_end(h, claim["run_id"], claim["fence"], 15)
        if not _until(end, 2 * LEASE_TTL_S + 6):
            return
        time.sleep(2)


def worker_killed_after_effect(h: Harness, duration: float) -> None:
    """The handler writes its effect, then its worker is SIGKILLed before Complete: the run must
    be redelivered (at least once) and the sink must keep one effect. Agent, then shell worker."""
    end = time.monotonic() + duration
    while True:
        for job in ("victim-agent", "victim-shell"):
            name = h.arm("kill", job)
            claim = h.wait_claim(name, timeout=15)
            if claim is None:
                raise RuntimeError(f"no {job} firing claimed the kill within 15s")
            h.expect("redelivered", run_id=claim["run_id"], fence=claim["fence"])
            wid = claim["worker"]
            deadline = time.monotonic() + 10
            while h.worker_alive(wid) and time.monotonic() < deadline:
                time.sleep(0.05)
            h.nemesis.write(
                "kill_worker", worker=wid, by="handler after its effect", run_id=claim["run_id"]
            )
            time.sleep(0.5)
            h.start_worker(wid)
        if not _until(end, 12):
            return
        time.sleep(2 * LEASE_TTL_S)


# ---- ambiguous client writes -------------------------------------------------------------------


def _raw_outcome(fut: grpc.Future) -> tuple[str, str]:
    try:
        fut.result()
        return "ok", ""
    except grpc.RpcError as e:
        code = e.code().name if e.code() is not None else "UNKNOWN"
        if code in ("INVALID_ARGUMENT", "ALREADY_EXISTS", "NOT_FOUND", "FAILED_PRECONDITION"):
            return "fail", code
        return "info", code


def _raw_call(
    h: Harness,
    leader: str,
    method: str,
    req: object,
    tag: str,
    key: str,
    name: str,
    fault: Callable[[], None],
) -> None:
    """Send one write straight to ``leader`` through its gRPC proxy, run ``fault`` right after
    it was sent, and record the outcome (usually ``info``: the reply was lost)."""
    creds = h.cluster.credentials
    ch = creds.channel(h.cluster.grpc_links[leader].listen)
    md = creds.metadata
    try:
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = api_grpc.JobServiceStub(ch)
        stub.ListJobs(api_pb2.ListJobsRequest(limit=1), timeout=5, metadata=md)  # connection up
        link = h.cluster.grpc_links[leader]
        link.cut("back")  # the request reaches the leader; its reply will not reach us
        h.nemesis.write("cut_client_reply", node=leader, link=link.name, request_id=key)
        h.faults += 1
        h.clienth.write(method, "invoke", key=key, name=name, request_id=key, raw=True, tag=tag)
        fut = getattr(stub, method.title().replace("_", "")).future(req, timeout=2, metadata=md)
        fault()
        status, code = _raw_outcome(fut)
        extra: dict[str, object] = {}
        if status == "ok":
            res = fut.result()
            extra = {"job": _job(res.job)} if method == "create_job" else {"run": _run(res.run)}
        h.clienth.write(
            method,
            status,
            key=key,
            name=name,
            request_id=key,
            raw=True,
            error=code,
            tag=tag,
            **extra,
        )
    finally:
        ch.close()
        h.heal()


def _ambiguous(
    h: Harness, tag: str, fault: Callable[[str], None], after: Callable[[], None]
) -> None:
    """A create and then a trigger, each sent to the leader whose reply is lost (and ``fault``
    applied right after sending), then retried through the SDK with the same request id."""
    name, rid_c, rid_t = f"amb-{tag}", f"amb-{tag}-create", f"amb-{tag}-trigger"
    c = h.client()
    leader = h.leader()
    req = api_pb2.CreateJobRequest(
        name=name,
        schedule=types_pb2.Schedule(
            kind=types_pb2.SCHEDULE_KIND_CRON, cron="0 0 1 1 *", timezone="UTC"
        ),
        queue="default",
        request_id=rid_c,
        max_attempts=20,
    )
    _raw_call(h, leader, "create_job", req, tag, rid_c, name, lambda: fault(leader))
    after()
    for _ in range(10):
        st, _ = h.call(
            "create_job",
            lambda: c.create_job(name, cron="0 0 1 1 *", max_attempts=20, request_id=rid_c),
            name=name,
            request_id=rid_c,
        )
        if st == "ok":
            break
    h.expect("one_job", name=name, request_id=rid_c)
    leader = h.leader()
    _raw_call(
        h,
        leader,
        "trigger_job",
        api_pb2.TriggerJobRequest(name=name, request_id=rid_t),
        tag,
        rid_t,
        name,
        lambda: fault(leader),
    )
    after()
    for _ in range(10):
        st, _ = h.call(
            "trigger_job",
            lambda: c.trigger_job(name, request_id=rid_t),
            name=name,
            request_id=rid_t,
        )
        if st == "ok":
            break
    h.expect("one_run", job=name, request_id=rid_t, count=1)


def _job(j: types_pb2.Job) -> dict[str, object]:
    return {
        "name": j.name,
        "uid": j.uid,
        "next_due_ms": j.next_due_ms,
        "state": int(j.state),
        "cron": j.schedule.cron,
    }


def _run(r: types_pb2.Run) -> dict[str, object]:
    return {"run_id": r.run_id, "job": r.job, "scheduled_ms": r.scheduled_ms}


def ambiguous_client_write(h: Harness, duration: float) -> None:
    """(a) the leader's reply is black-holed in the client's proxy after the request went
    through; (b) the same, and the leader is SIGKILLed 100 ms after the request was sent. The
    client retries with the same request id: exactly one job, exactly one triggered run."""
    t0 = time.monotonic()
    killed: list[str] = []

    def kill(leader: str) -> None:
        time.sleep(0.1)
        killed.append(leader)
        h.kill_node(leader, leader_fault=True)

    def restart() -> None:
        if killed:
            h.restart_node(killed.pop())
            _settle(h, 1)

    _ambiguous(h, "cut", lambda leader: None, lambda: None)
    _ambiguous(h, "kill", kill, restart)
    rest = duration - (time.monotonic() - t0)
    if rest > 0:
        time.sleep(rest)


# ---- clock jumps (F13) -------------------------------------------------------------------------

CLOCK_NODE = "n1"
CLOCK_SKEW_S = float(os.environ.get("CHAOS_CLOCK_SKEW_S", "60"))


def _clock_setup(h: Harness) -> None:
    lib, why = faketime.check()
    if lib is None:
        raise Skip(f"clock-jump needs libfaketime: {why}")
    h.enable_faketime(CLOCK_NODE, lib)


def _other(h: Harness, node: str) -> str:
    return next(s.node_id for s in h.cluster.specs if s.node_id != node)


def clock_jump(h: Harness, duration: float) -> None:
    """One node (n1, under libfaketime) steps its wall clock while leading, then while following.

    1. n1 leads; its clock steps back S: it fires nothing until real time is S past the next
       slot, then every slot S late.
    2. still leading, it steps forward 2S (to +S): the late slots fire at once, and the next S
       seconds of slots fire early (by at most S).
    3. leadership moves to a node with a true clock: those slots already fired, so nothing is
       due for about S seconds; nothing fires twice.
    4. n1 follows; its clock steps back 2S (to -S), then forward to +S, then to true time:
       a follower stamps nothing, so scheduling must not notice.
    Lease expiry follows the monotonic clock: no step may expire a lease early or late.
    """
    S = CLOCK_SKEW_S
    node = CLOCK_NODE
    if not h.transfer_leadership(node):
        raise RuntimeError(f"could not make {node} the leader")
    h.set_clock(node, -S)
    time.sleep(S + 8)
    h.set_clock(node, +S)
    time.sleep(8)
    if not h.transfer_leadership(_other(h, node)):
        raise RuntimeError(f"could not move leadership off {node}")
    time.sleep(S + 4)
    h.set_clock(node, -S)
    time.sleep(8)
    h.set_clock(node, +S)
    time.sleep(8)
    h.set_clock(node, 0.0)
    _settle(h, 3)


# ---- disk full (F14) ---------------------------------------------------------------------------

DISK_NODE = "n3"
DISK_TMPFS_MB = 24


def _disk_setup(h: Harness) -> None:
    if os.geteuid() != 0:
        raise Skip("disk-full mounts a tmpfs and needs root")
    path = os.path.join(h.cluster.root, DISK_NODE, "data")
    try:
        h.mount_tmpfs(path, DISK_TMPFS_MB)
    except (OSError, subprocess.CalledProcessError) as e:
        raise Skip(
            f"disk-full cannot mount a tmpfs here: {getattr(e, 'stderr', '') or e}"
        ) from None
    h.cluster.set_data_dir(DISK_NODE, path)
    # A fatal signal (SIGBUS from an mmap write into a full tmpfs) then prints the Python stack
    # of every thread to the node log: the evidence of which write it was.
    # A 24 MiB volume is below the default free-space floor (64 MiB): lower it for this node.
    h.cluster.node_env[DISK_NODE] = {"PYTHONFAULTHANDLER": "1", "SCHEDD_MIN_FREE_MIB": "2"}


def _log_tail(path: str, n: int = 400) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()[-n:]
    except OSError:
        return []
    keep = ("CRITICAL", "ERROR", "Traceback", "Error", "error", "Fatal", "No space")
    return [ln for ln in lines if any(k in ln for k in keep)][-20:]


def disk_full(h: Harness, duration: float) -> None:
    """A follower's data dir (n3: LMDB, Raft journal, snapshot) is a 24 MiB tmpfs. Under load it is
    filled to ENOSPC. The node must stop by itself (exit 70, one CRITICAL line) without
    acknowledging anything it did not store; the other two keep scheduling. Then the space is
    freed, the node restarted: it must catch up and converge (checked at the end)."""
    node = DISK_NODE
    if h.leader() == node and not h.transfer_leadership(_other(h, node)):
        raise RuntimeError(f"could not move leadership off {node}")
    t0 = time.monotonic()
    fill = h.fill_disk(node)
    proc = h.cluster.procs[node]
    wait_s = max(30.0, duration - 10)
    samples: list[tuple[float, int, int]] = []  # (seconds since fill, node applied, leader commit)
    while proc.poll() is None and time.monotonic() - t0 < wait_s:
        st = h.cluster.status(node, timeout=1.0)
        leader = h.cluster.leader()
        lst = h.cluster.status(leader, timeout=1.0) if leader else None
        if st is not None and lst is not None:
            samples.append((round(time.monotonic() - t0, 1), st.applied_index, lst.commit_index))
        time.sleep(0.5)
    rc = proc.poll()
    spec = h.cluster.spec(node)
    st = os.statvfs(spec.data_dir)
    files = {
        n: os.path.getsize(os.path.join(spec.data_dir, n))
        for n in os.listdir(spec.data_dir)
        if os.path.isfile(os.path.join(spec.data_dir, n))
    }
    lag = samples[-1][2] - samples[-1][1] if samples else None
    h.nemesis.write(
        "disk_full_outcome",
        node=node,
        rc=rc,
        after_s=round(time.monotonic() - t0, 1),
        log=_log_tail(spec.log_path),
        free=st.f_bavail * st.f_frsize,
        files=files,
        last_samples=samples[-5:],
        lag=lag,
        fill=fill,
    )
    h.expect(
        "disk_full_exit",
        node=node,
        rc=rc,
        log=_log_tail(spec.log_path),
        lag=lag,
        wait_s=round(wait_s, 1),
    )
    if rc is None:  # still running on a full disk: stop it so that it can be restarted
        h.cluster.kill_node(node, signal.SIGKILL)
        h.nemesis.write(
            "kill_node", node=node, leader_fault=False, why="still running on a full disk"
        )
    rest = duration - (time.monotonic() - t0) - 5
    if rest > 0:
        time.sleep(rest)  # the majority keeps scheduling without it
    h.free_disk(node)
    h.restart_node(node)
    _settle(h, 5)


# ---- membership changes ------------------------------------------------------------------------


def _members(h: Harness) -> set[str]:
    return {s.node_id for s in h.cluster.specs}


def _expect_members(h: Harness) -> None:
    """The final state must hold exactly the cluster's current nodes as members (checker C11)."""
    h.expect("members", members={s.node_id: s.raft for s in h.cluster.specs})


def _log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _wait_log(path: str, needle: str, offset: int, timeout: float) -> bool:
    """Wait until ``needle`` appears in the file at ``path`` after byte ``offset`` (polled
    every 5 ms: a fault is injected the moment a node logs a step)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                if needle.encode() in f.read():
                    return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def member_grow_shrink(h: Harness, duration: float) -> None:
    """Grow the cluster by two nodes (``--join``, one at a time, each connected and caught up
    before the next; a node whose join was refused exits and is started again, as a service
    manager would), then shrink it by two: the leader (it hands leadership over first; the
    removal is repeated while the leader answers that the handover failed), then a follower
    picked by the seed; each removed node is stopped. Under the full workload."""
    for _ in range(2):
        spec = h.add_node()
        h.wait_members(_members(h), timeout=45, restart_exited=True)
        h.h.write("grown", node=spec.node_id, members=sorted(_members(h)))
        time.sleep(2)
    leader = h.leader()
    h.remove_member(leader)
    h.wait_members(_members(h), timeout=30)
    time.sleep(2)
    leader = h.leader()
    follower = h.rng.choice(sorted(_members(h) - {leader}))
    h.remove_member(follower)
    h.wait_members(_members(h), timeout=30)
    _expect_members(h)
    _settle(h, 2)


def _restart_after_kill(h: Harness, killed: str, down_s: float) -> None:
    """Record how long the survivors took to elect a leader (≤ 20 s), keep ``killed`` down for
    ``down_s`` seconds in all, restart it."""
    t0 = time.monotonic()
    leader = None
    while time.monotonic() - t0 < 20 and leader is None:
        leader = h.cluster.leader()
        time.sleep(0.05)
    h.h.write(
        "elected_after_kill",
        killed=killed,
        leader=leader,
        seconds=round(time.monotonic() - t0, 2) if leader else None,
    )
    time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
    h.restart_node(killed)


def _add_member_raw(h: Harness, leader: str, spec: NodeSpec) -> grpc.Future:
    """Send AddMember for ``spec`` straight to ``leader`` (no retry); the call's future."""
    req = api_pb2.AddMemberRequest(
        node_id=spec.node_id,
        raft_address=spec.raft,
        grpc_address=h.cluster.grpc_links[spec.node_id].listen,  # what the node advertises
    )
    h.clienth.write("add_member", "invoke", node=spec.node_id, leader=leader, raw=True)
    return h.cluster._stub(leader).AddMember.future(
        req, timeout=10, metadata=h.cluster.credentials.metadata
    )


def member_change_leader_kill(h: Harness, duration: float) -> None:
    """SIGKILL the leader in the middle of adding a node, twice, then heal and converge:

    1. a node joins (``--join``); the moment its join returns (the addition committed; the node
       has no log and no Raft connection yet) the leader is killed. With 3 -> 4 members the two
       survivors need the new node's vote: it must connect and catch up before a leader wins.
    2. AddMember for another node is sent straight to the leader, which is killed (seeded,
       half the seeds each) 0-50 ms later or the moment it logs that it appended the entry:
       before the entry is appended, before it is replicated or committed, or before the
       answer. The addition may survive or be lost; then the node is started with
       ``--join``, asking again (adding is idempotent; a refusal makes it exit, and it is
       restarted).

    After each round the killed node is restarted and every node must agree on the members."""
    # (1) the addition committed, the new node not caught up yet
    leader = h.leader()
    spec = h.add_node()
    joined = _wait_log(spec.log_path, "event=joined", 0, timeout=30)
    h.kill_node(leader, leader_fault=True)
    h.h.write("kill_at", round=1, node=spec.node_id, joined=joined)
    _restart_after_kill(h, leader, down_s=3)
    h.wait_members(_members(h), timeout=60, restart_exited=True)
    _settle(h, 2)

    # (2) the leader dies right after AddMember was sent to it
    leader = h.leader()
    term = h._term(leader)
    spec = h.add_node(start=False)
    log_path = h.cluster.spec(leader).log_path
    offset = _log_size(log_path)
    at_append = h.rng.random() < 0.5
    delay = h.rng.uniform(0.0, 0.05)
    needle = f"raft_members_changed op=add address={spec.raft} "
    t0 = time.monotonic()
    fut = _add_member_raw(h, leader, spec)
    if at_append:  # the moment the leader logs that it appended the entry
        _wait_log(log_path, needle, offset, timeout=5)
    else:
        time.sleep(delay)
    waited = time.monotonic() - t0
    h.kill_node(leader, leader_fault=True, term=term)
    status, code = _raw_outcome(fut)
    h.clienth.write("add_member", status, node=spec.node_id, leader=leader, raw=True, error=code)
    h.h.write(
        "kill_at",
        round=2,
        node=spec.node_id,
        at="append" if at_append else "delay",
        delay_ms=round(waited * 1000, 1),
        # how far the killed leader got, from its log
        appended=_wait_log(log_path, needle, offset, 0),
        committed=_wait_log(log_path, f"event=member_added node={spec.node_id} ", offset, 0),
        answered=status == "ok",
    )
    h.start_joiner(spec)
    _restart_after_kill(h, leader, down_s=3)
    h.wait_members(_members(h), timeout=60, restart_exited=True)
    _expect_members(h)
    _settle(h, 2)


def _dag_setup(h: Harness) -> None:
    h.dag = list(DAG_WORKLOAD)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "leader-kill", "SIGKILL the leader, restart it 5 s later; repeat (F1)", leader_kill
        ),
        Scenario(
            "dag-leader-kill",
            "a DAG (depends_on: all_succeeded, all_done, any_succeeded on other periods, and a "
            "job without a schedule) whose upstreams fail for good now and then; SIGKILL the "
            "leader, restart it; the checker verifies matching, trigger rules, one run per slot",
            leader_kill,
            setup=_dag_setup,
        ),
        Scenario(
            "leader-pause",
            "SIGSTOP the leader past the election and lease timeouts, SIGCONT (F5)",
            leader_pause,
        ),
        Scenario(
            "leader-isolated",
            "black-hole every Raft link of the leader in its proxies for 8 s (F6)",
            leader_isolated,
        ),
        Scenario(
            "worker-pause-past-lease",
            "SIGSTOP a worker mid-handler for 2x lease TTL; its late write must be fenced (F10)",
            worker_pause_past_lease,
        ),
        Scenario(
            "worker-killed-after-effect",
            "SIGKILL the worker after its sink write, before Complete (F11)",
            worker_killed_after_effect,
        ),
        Scenario(
            "ambiguous-client-write",
            "reply lost / leader killed right after a create or trigger; retried with "
            "the same request id (F18)",
            ambiguous_client_write,
        ),
        Scenario(
            "leader-one-way",
            "drop everything the leader sends on its Raft links for 8 s (F7)",
            leader_one_way,
            smoke=False,
        ),
        Scenario(
            "flaky-network",
            "30 ms delay and 2% connection resets per chunk on every Raft link (F9)",
            flaky_network,
            smoke=False,
        ),
        Scenario(
            "worker-pause-long",
            "SIGSTOP one agent worker for 20 s (about 6 lease periods) while another "
            "worker of the same queues is idle",
            worker_pause_long,
        ),
        Scenario(
            "raft-truncation",
            "leader pipelining big entries, one follower stopped; the other follower's "
            "log shrinking below its acknowledgements (pysyncobj's bug, fixed) would spring a trap that "
            "cuts it off at that moment; the leader is killed each round",
            truncation.raft_truncation,
            setup=truncation.trap_setup(fix=True),
            smoke_duration=5.0,
        ),
        Scenario(
            "control-raft-truncation",
            "negative control: raft-truncation with pysyncobj's own replication "
            "(CHAOS_RAFT_FIX=off); the checker must report lost acknowledged writes, diverged replicas "
            "or pysyncobj truncating applied entries (the bug's own log line)",
            truncation.raft_truncation,
            setup=truncation.trap_setup(fix=False),
            demonstrates=("P4", "C7", "C10"),
            smoke_duration=5.0,
        ),
        Scenario(
            "full-cluster-restart",
            "SIGKILL every node, restart them staggered (F4)",
            full_cluster_restart,
            smoke=False,
        ),
        Scenario(
            "follower-kill-catch-up",
            "SIGKILL a follower under load, restart it, check it converges (F2)",
            follower_kill_catch_up,
            smoke=False,
        ),
        Scenario(
            "control-no-fencing",
            "negative control: worker-pause-past-lease with CHAOS_FENCING=off; the "
            "checker must report duplicates",
            worker_pause_past_lease,
            fencing=False,
            control=True,
        ),
        Scenario(
            "clock-jump",
            f"libfaketime on n1: wall clock -{CLOCK_SKEW_S:g}s/+{CLOCK_SKEW_S:g}s while it leads, "
            "then while it follows (F13)",
            clock_jump,
            smoke=False,
            setup=_clock_setup,
        ),
        Scenario(
            "disk-full",
            f"a follower's data dir on a {DISK_TMPFS_MB} MiB tmpfs, filled under load; freed, "
            "restarted, must converge (F14)",
            disk_full,
            smoke=False,
            setup=_disk_setup,
        ),
        Scenario(
            "member-grow-shrink",
            "grow 3 -> 5 with schedd run --join (each connected and caught up before the "
            "next), then shrink 5 -> 3: remove the leader, then a follower (no Raft proxies)",
            member_grow_shrink,
            raft_proxies=False,
            # On demand: tests/integration/test_membership.py grows 3 -> 5 and shrinks back
            # under load with the same once-per-slot check in every run of the suite.
            smoke=False,
        ),
        Scenario(
            "member-change-leader-kill",
            "SIGKILL the leader the moment a joining node's addition committed (3 -> 4), then "
            "0-50 ms after AddMember was sent to it or when it appended the entry (4 -> 5); "
            "restart, members must agree on every node (no Raft proxies)",
            member_change_leader_kill,
            raft_proxies=False,
            smoke_duration=10.0,
        ),
        Scenario(
            "power-loss-majority",
            "power model on every node, Raft log compacted every 100 entries or 4 s: "
            "a majority (the leader and a follower, then the followers) loses power at once right after "
            "acknowledged writes, twice or more; nothing acknowledged may be lost (F17)",
            scenarios_power.power_loss_majority,
            setup=scenarios_power.setup_compacting,
            smoke_duration=10.0,
        ),
        Scenario(
            "power-loss-all",
            "power model on every node: every node loses power at once right after "
            "acknowledged writes, twice or more; nothing acknowledged may be lost (F17)",
            scenarios_power.power_loss_all,
            setup=scenarios_power.setup,
            smoke_duration=10.0,
        ),
        Scenario(
            "control-power-loss-unsafe",
            "negative control: power-loss-all with --unsafe-no-fsync, three cuts; "
            "the checker must report lost acknowledged writes (P4)",
            scenarios_power.control_power_loss_unsafe,
            setup=scenarios_power.setup_unsafe,
            demonstrates=("P4",),
            smoke_duration=10.0,
        ),
    ]
}

SMOKE = [s for s in SCENARIOS.values() if s.smoke]


@dataclass
class Outcome:
    scenario: Scenario
    report: checker.Report
    seconds: float
    skipped: str = ""  # why the scenario could not run here

    @property
    def passed(self) -> bool:
        if self.skipped:
            return True
        if self.scenario.control or self.scenario.demonstrates:
            # A control passes only on the failure it exists for, in a run that went through.
            if any(v.startswith("scenario error") for v in self.report.violations):
                return False
            if self.scenario.control:
                return self.report.duplicates > 0
            return any(v.startswith(self.scenario.demonstrates) for v in self.report.violations)
        return self.report.ok


def run(
    name: str, seed: int = 1, duration: float = 20.0, nodes: int = 3, out_root: str = OUT_ROOT
) -> Outcome:
    sc = SCENARIOS[name]
    out = os.path.join(out_root, f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-n{nodes}-s{seed}")
    t0 = time.monotonic()
    h = Harness(out, nodes=nodes, seed=seed, fencing=sc.fencing, raft_proxies=sc.raft_proxies)
    if sc.setup is not None:
        try:
            sc.setup(h)
        except Skip as e:
            h.h.write("skipped", reason=str(e))
            h.stop()
            return _skipped(sc, out, str(e), time.monotonic() - t0, seed, duration, nodes)
        except Exception:
            h.stop()
            rep = checker.Report(out=out)
            rep.violations.append(
                f"scenario setup failed: {traceback.format_exc().strip().splitlines()[-1]}"
            )
            return Outcome(sc, rep, time.monotonic() - t0)
    error = ""
    try:
        try:
            h.start()
            h.create_workload()
            h.start_crud()
            time.sleep(WARMUP_S)
            t_body = time.monotonic()
            sc.body(h, duration)
            time.sleep(
                max(0.0, duration - (time.monotonic() - t_body))
            )  # the rest of the fault phase
        except Exception:
            error = traceback.format_exc()
            h.h.write("scenario_error", error=error)
        h.quiesce_and_drain()
        h.collect_final()
    except Exception:
        error += traceback.format_exc()
    finally:
        h.stop()
    try:
        rep = checker.check(out)
    except Exception:
        rep = checker.Report(out=out)
        rep.violations.append(f"checker could not run: {traceback.format_exc()}")
    if error:
        rep.violations.insert(
            0, f"scenario error: {error.strip().splitlines()[-1]} (see {out}/history.jsonl)"
        )
    outcome = Outcome(sc, rep, time.monotonic() - t0)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(
            {
                "scenario": name,
                "seed": seed,
                "duration": duration,
                "nodes": nodes,
                "control": sc.control,
                "passed": outcome.passed,
                "seconds": round(outcome.seconds, 1),
                **rep.to_dict(),
            },
            f,
            indent=1,
        )
    return outcome


def _skipped(
    sc: Scenario, out: str, why: str, seconds: float, seed: int, duration: float, nodes: int
) -> Outcome:
    outcome = Outcome(sc, checker.Report(out=out), seconds, skipped=why)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(
            {
                "scenario": sc.name,
                "seed": seed,
                "duration": duration,
                "nodes": nodes,
                "skipped": why,
                "passed": True,
            },
            f,
            indent=1,
        )
    return outcome


HEADER = (
    "scenario",
    "nodes",
    "faults",
    "expected",
    "delivered",
    "effective",
    "dups",
    "lost",
    "fenced",
    "failover p50/p99/max s",
    "result",
)


def row(o: Outcome, nodes: int) -> tuple[str, ...]:
    r = o.report
    fo = r.failover_stats()
    fo_s = "-" if fo is None else "/".join(f"{x:.1f}" for x in fo)
    if o.skipped:
        return (o.scenario.name, str(nodes), *["-"] * 8, "SKIP")
    if o.scenario.control:
        result = "PASS (dups seen)" if o.passed else "FAIL (no dups)"
    elif o.scenario.demonstrates:
        seen = "/".join(o.scenario.demonstrates)
        result = f"PASS ({seen} seen)" if o.passed else f"FAIL (no {seen})"
    else:
        result = "PASS" if o.passed else f"FAIL ({len(r.violations)})"
    return (
        o.scenario.name,
        str(nodes),
        str(r.faults),
        str(r.expected),
        str(r.delivered),
        str(r.effective),
        str(r.duplicates),
        str(r.lost),
        str(r.fenced),
        fo_s,
        result,
    )


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(x[i]) for x in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) + " |" for x in rows
    ]
    return "\n".join(lines)
