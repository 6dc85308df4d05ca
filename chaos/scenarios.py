"""The fault scenarios and the runner that turns one into a checked history and a table row.

Every scenario runs the same workload (``harness.WORKLOAD``: second-level cron jobs, flaky and
slow handlers, three workers of two kinds, job create/delete with request ids), injects its
faults for ``duration`` seconds, heals everything, pauses every workload job (the quiesce
point), drains, fetches the final state, tears the processes down and runs the checker.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from chaos import checker, history
from chaos.harness import LEASE_TTL_S, Harness
from schedd.pb import api_grpc, api_pb2, types_pb2

OUT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
WARMUP_S = 4.0
ELECTION_MAX_S = 2.0  # schedd's RaftSettings.election_max_s


@dataclass(frozen=True)
class Scenario:
    name: str
    desc: str
    body: Callable[[Harness, float], None]
    fencing: bool = True
    control: bool = False  # negative control: passes when the checker reports duplicates
    smoke: bool = True


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
            if e["op"] == "handler" and e["type"] == "end" and e["run_id"] == run_id and e["fence"] == fence:
                return True
        time.sleep(0.2)
    return False


def _wait_newer_apply(h: Harness, run_id: str, fence: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in history.read(h.history_path):
            if e["op"] == "sink" and e["type"] == "apply" and e["run_id"] == run_id and e["fence"] > fence:
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
            h.nemesis.write("kill_worker", worker=wid, by="handler after its effect", run_id=claim["run_id"])
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


def _raw_call(h: Harness, leader: str, method: str, req: object, tag: str, key: str, name: str,
              fault: Callable[[], None]) -> None:
    """Send one write straight to ``leader`` through its gRPC proxy, run ``fault`` right after
    it was sent, and record the outcome (usually ``info``: the reply was lost)."""
    ch = grpc.insecure_channel(h.cluster.grpc_links[leader].listen)
    try:
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = api_grpc.JobServiceStub(ch)
        stub.ListJobs(api_pb2.ListJobsRequest(limit=1), timeout=5)  # the HTTP/2 connection is up
        link = h.cluster.grpc_links[leader]
        link.cut("back")  # the request reaches the leader; its reply will not reach us
        h.nemesis.write("cut_client_reply", node=leader, link=link.name, request_id=key)
        h.faults += 1
        h.clienth.write(method, "invoke", key=key, name=name, request_id=key, raw=True, tag=tag)
        fut = getattr(stub, method.title().replace("_", "")).future(req, timeout=2)
        fault()
        status, code = _raw_outcome(fut)
        extra: dict[str, object] = {}
        if status == "ok":
            res = fut.result()
            extra = {"job": _job(res.job)} if method == "create_job" else {"run": _run(res.run)}
        h.clienth.write(method, status, key=key, name=name, request_id=key, raw=True, error=code, tag=tag, **extra)
    finally:
        ch.close()
        h.heal()


def _ambiguous(h: Harness, tag: str, fault: Callable[[str], None], after: Callable[[], None]) -> None:
    """A create and then a trigger, each sent to the leader whose reply is lost (and ``fault``
    applied right after sending), then retried through the SDK with the same request id."""
    name, rid_c, rid_t = f"amb-{tag}", f"amb-{tag}-create", f"amb-{tag}-trigger"
    c = h.client()
    leader = h.leader()
    req = api_pb2.CreateJobRequest(name=name, schedule=types_pb2.Schedule(
        kind=types_pb2.SCHEDULE_KIND_CRON, cron="0 0 1 1 *", timezone="UTC"), queue="default",
        request_id=rid_c, max_attempts=20)
    _raw_call(h, leader, "create_job", req, tag, rid_c, name, lambda: fault(leader))
    after()
    for _ in range(10):
        st, _ = h.call("create_job", lambda: c.create_job(name, cron="0 0 1 1 *", max_attempts=20,
                                                          request_id=rid_c), name=name, request_id=rid_c)
        if st == "ok":
            break
    h.expect("one_job", name=name, request_id=rid_c)
    leader = h.leader()
    _raw_call(h, leader, "trigger_job", api_pb2.TriggerJobRequest(name=name, request_id=rid_t), tag, rid_t, name,
              lambda: fault(leader))
    after()
    for _ in range(10):
        st, _ = h.call("trigger_job", lambda: c.trigger_job(name, request_id=rid_t), name=name, request_id=rid_t)
        if st == "ok":
            break
    h.expect("one_run", job=name, request_id=rid_t, count=1)


def _job(j: types_pb2.Job) -> dict[str, object]:
    return {"name": j.name, "uid": j.uid, "next_due_ms": j.next_due_ms, "state": int(j.state), "cron": j.schedule.cron}


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


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("leader-kill", "SIGKILL the leader, restart it 5 s later; repeat (F1)", leader_kill),
    Scenario("leader-pause", "SIGSTOP the leader past the election and lease timeouts, SIGCONT (F5)", leader_pause),
    Scenario("leader-isolated", "black-hole every Raft link of the leader in its proxies for 8 s (F6)", leader_isolated),
    Scenario("worker-pause-past-lease", "SIGSTOP a worker mid-handler for 2x lease TTL; its late write must be fenced (F10)",
             worker_pause_past_lease),
    Scenario("worker-killed-after-effect", "SIGKILL the worker after its sink write, before Complete (F11)",
             worker_killed_after_effect),
    Scenario("ambiguous-client-write", "reply lost / leader killed right after a create or trigger; retried with "
             "the same request id (F18)", ambiguous_client_write),
    Scenario("leader-one-way", "drop everything the leader sends on its Raft links for 8 s (F7)", leader_one_way,
             smoke=False),
    Scenario("flaky-network", "30 ms delay and 2% connection resets per chunk on every Raft link (F9)",
             flaky_network, smoke=False),
    Scenario("worker-pause-long", "SIGSTOP one agent worker for 20 s (about 6 lease periods) while another "
             "worker of the same queues is idle", worker_pause_long, smoke=False),
    Scenario("full-cluster-restart", "SIGKILL every node, restart them staggered (F4)", full_cluster_restart, smoke=False),
    Scenario("follower-kill-catch-up", "SIGKILL a follower under load, restart it, check it converges (F2)",
             follower_kill_catch_up, smoke=False),
    Scenario("control-no-fencing", "negative control: worker-pause-past-lease with CHAOS_FENCING=off; the "
             "checker must report duplicates", worker_pause_past_lease, fencing=False, control=True),
]}

SMOKE = [s for s in SCENARIOS.values() if s.smoke]


@dataclass
class Outcome:
    scenario: Scenario
    report: checker.Report
    seconds: float

    @property
    def passed(self) -> bool:
        if self.scenario.control:
            return self.report.duplicates > 0
        return self.report.ok


def run(name: str, seed: int = 1, duration: float = 20.0, nodes: int = 3, out_root: str = OUT_ROOT) -> Outcome:
    sc = SCENARIOS[name]
    out = os.path.join(out_root, f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-n{nodes}-s{seed}")
    t0 = time.monotonic()
    h = Harness(out, nodes=nodes, seed=seed, fencing=sc.fencing)
    error = ""
    try:
        try:
            h.start()
            h.create_workload()
            h.start_crud()
            time.sleep(WARMUP_S)
            t_body = time.monotonic()
            sc.body(h, duration)
            time.sleep(max(0.0, duration - (time.monotonic() - t_body)))  # the rest of the fault phase
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
        rep.violations.insert(0, f"scenario error: {error.strip().splitlines()[-1]} (see {out}/history.jsonl)")
    outcome = Outcome(sc, rep, time.monotonic() - t0)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"scenario": name, "seed": seed, "duration": duration, "nodes": nodes, "control": sc.control,
                   "passed": outcome.passed, "seconds": round(outcome.seconds, 1), **rep.to_dict()}, f, indent=1)
    return outcome


HEADER = ("scenario", "nodes", "faults", "expected", "delivered", "effective", "dups", "lost", "fenced",
          "failover p50/p99/max s", "result")


def row(o: Outcome, nodes: int) -> tuple[str, ...]:
    r = o.report
    fo = r.failover_stats()
    fo_s = "-" if fo is None else "/".join(f"{x:.1f}" for x in fo)
    if o.scenario.control:
        result = "PASS (dups seen)" if o.passed else "FAIL (no dups)"
    else:
        result = "PASS" if o.passed else f"FAIL ({len(r.violations)})"
    return (o.scenario.name, str(nodes), str(r.faults), str(r.expected), str(r.delivered), str(r.effective),
            str(r.duplicates), str(r.lost), str(r.fenced), fo_s, result)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(x[i]) for x in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) + " |" for x in rows]
    return "\n".join(lines)

