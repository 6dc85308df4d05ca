"""Offline checker: reads a run directory (``history.jsonl``, ``sink.db``, ``final.json``) and
reports violations of P1–P4 plus convergence. ``python -m chaos check DIR`` runs it alone.

Checks (ids as in ``research/reliability.md`` §5.1):

* **P1 lost firings (C1) / unexpected firings (C2).** For every workload job whose create was
  acknowledged and which was paused at the quiesce point, every slot of its cron schedule from
  its first due time up to (excluding) its ``next_due_ms`` at the pause must have a SUCCEEDED
  run and exactly one sink apply; so must every acknowledged manual trigger. A scheduled run of
  a workload job at any other instant is unexpected.
* **P2 duplicate effects (C3).** No run id has more than one ``apply`` in the sink log.
* **Fences (C3/C4).** Per run, handler attempts start with strictly increasing fences; a fence
  never belongs to two runs; every sink apply carries a fence >= every fence the sink saw
  before for that run; a SUCCEEDED run's fence is its highest delivered fence. **No two live
  leases:** when attempt f2 of a run starts while attempt f1 still runs, f1 must end cancelled
  (its agent knew the lease was lost) or its worker must have been paused/killed in between.
* **P4 acknowledged writes (C6).** The last acknowledged create/delete of every job name holds
  in the final state (unless a later operation's outcome is unknown); a create retried with
  its request id never reports ALREADY_EXISTS.
* **Convergence (C7).** Every node reports the same applied index and state digest.
* **Raft log safety (C10).** No node log holds pysyncobj's CRITICAL "truncating already-applied
  log entries": a node deleting entries it had applied means committed entries were dropped.
* **Membership (C11)**, when the scenario expects a member set (``expect`` ``members``, after
  nodes joined or left): the running nodes are exactly the members; exactly one leads and every
  other follows it; every node's member list (``GetNodeStatus.peers`` and itself) is the
  expected one, so none thinks it is a cluster of one; the leader's ``ListMembers`` lists them
  at their Raft addresses, each a voter and connected; and the Raft configuration each node
  runs with (pysyncobj's, from its log: the last ``raft_members_changed`` since the node
  process started, else the peers it started with) is the other members' Raft addresses.
* **P3 failover (C8).** For each leader fault: time from the fault to the first handler that
  completed successfully for a firing scheduled after the fault (a new leader must have fired
  and granted it). p50/p99/max are reported; a fault with no such firing is a violation.
* **Expectations** the scenario wrote (``expect`` records): the paused worker's late write was
  rejected, a killed worker's run was redelivered with one effect, an ambiguous create or
  trigger retried with its request id made exactly one job or run.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from chaos import history
from chaos.sink import read_log

P3_BOUND_S = 30.0


@dataclass
class Report:
    out: str
    faults: int = 0
    expected: int = 0
    delivered: int = 0
    effective: int = 0
    duplicates: int = 0
    lost: int = 0
    fenced: int = 0
    dag_runs: int = 0  # slots of the DAG workload's downstream jobs checked (dag scenarios)
    failover: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def failover_stats(self) -> tuple[float, float, float] | None:
        if not self.failover:
            return None
        xs = sorted(self.failover)
        return percentile(xs, 50), percentile(xs, 99), xs[-1]

    def to_dict(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k)
            for k in (
                "out",
                "faults",
                "expected",
                "delivered",
                "effective",
                "duplicates",
                "lost",
                "fenced",
                "dag_runs",
                "failover",
                "violations",
                "notes",
            )
        }
        d["ok"] = self.ok
        return d


def percentile(sorted_xs: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(1, math.ceil(p / 100 * len(sorted_xs)))
    return sorted_xs[k - 1]


def cron_slots(expr: str, first_ms: int, end_ms: int) -> list[int]:
    """Slots of a UTC cron (5 fields, or 6 with seconds first) in [first_ms, end_ms)."""
    six = len(expr.split()) == 6
    start = datetime.fromtimestamp((first_ms - 1) / 1000, tz=UTC)
    it = croniter(expr, start, second_at_beginning=six)
    out = []
    while True:
        ms = int(round(it.get_next(float) * 1000))
        if ms >= end_ms:
            return out
        if ms >= first_ms:
            out.append(ms)


def check(out: str, p3_bound_s: float = P3_BOUND_S) -> Report:
    events = list(history.read(os.path.join(out, "history.jsonl")))
    sink_log = read_log(os.path.join(out, "sink.db"))
    with open(os.path.join(out, "final.json")) as f:
        final = json.load(f)
    rep = Report(out=out)
    start = next((e for e in events if e["op"] == "start" and e["proc"] == "harness"), {})
    ttl = float(start.get("lease_ttl_s", 3.0))
    runs = {r["run_id"]: r for r in final.get("runs", [])}
    applies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sink_log:
        if s["result"] == "apply":
            applies[s["run_id"]].append(s)
        else:
            rep.fenced += 1
    starts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ends: dict[tuple[str, int], dict[str, Any]] = {}
    for e in events:
        if e["op"] == "handler":
            if e["type"] == "start":
                starts[e["run_id"]].append(e)
            else:
                ends[(e["run_id"], e["fence"])] = e
    nemesis = [e for e in events if e["proc"] == "nemesis"]
    rep.faults = sum(
        1
        for e in nemesis
        if e["op"]
        not in (
            "heal",
            "restart_node",
            "resume_node",
            "resume_worker",
            "disk_freed",
            "disk_full_outcome",
            "trap",
        )
    )
    rep.faults += sum(
        1 for e in events if e["op"] == "armed" and e.get("what") == "kill_after_effect"
    )

    _check_p1(rep, events, runs, applies, starts)
    _check_p2(rep, applies)
    _check_fences(rep, events, runs, sink_log, starts, ends, ttl)
    _check_p4(rep, events, final)
    _check_raft_logs(rep, out)
    _check_convergence(rep, final)
    _check_p3(rep, events, p3_bound_s)
    _check_expectations(rep, events, final, sink_log, applies, starts)
    _check_members(rep, events, final, out)
    _check_punctuality(rep, events, runs, starts)
    _check_dag(rep, events, runs)
    return rep


#: outcomes of runs that ended, as the trigger rules see them (docs/dependencies.md)
_ENDED = {"SUCCEEDED", "DEAD", "FAILED", "CANCELLED", "SKIPPED", "MISSING"}


def ref_rule(rule: str, outcomes: list[str]) -> str:
    """The trigger rules (docs/dependencies.md), on final outcomes: run / skip / wait."""
    ok = sum(1 for o in outcomes if o == "SUCCEEDED")
    ended = sum(1 for o in outcomes if o in _ENDED)
    if rule == "all_done":
        return "run" if ended == len(outcomes) else "wait"
    if rule == "any_succeeded":
        return "run" if ok or not outcomes else ("skip" if ended == len(outcomes) else "wait")
    if ended > ok:
        return "skip"
    return "run" if ok == len(outcomes) else "wait"


def _check_dag(rep: Report, events: list[dict[str, Any]], runs: dict[str, Any]) -> None:
    """The DAG workload (dag scenarios): every slot of a scheduled downstream job has exactly
    one record, matched to each upstream's record of its latest slot at or before it, and
    decided as its trigger rule says from the upstream outcomes; a downstream job without a
    schedule ran once per upstream run that ended (none twice, none missed)."""
    jobs = {
        e["name"]: {
            **e["job"],
            "depends_on": e["depends_on"],
            "rule": e["trigger_rule"],
            "created_ms": int(e["t"] * 1000),
        }
        for e in events
        if e["op"] == "create_job" and e["type"] == "ok" and e.get("dag")
    }
    if not jobs:
        return
    paused = {
        e["name"]: e["job"]["next_due_ms"]
        for e in events
        if e["op"] == "pause_job" and e["type"] == "ok" and e.get("dag")
    }

    def outcome(up: str, slot: int) -> tuple[str, str]:
        u = jobs[up]
        rid = f"{up}:{u['uid']}:{slot}"
        r = runs.get(rid)
        if r is not None:
            return rid, r["state"]
        return rid, "MISSING" if slot < u["next_due_ms"] else "NONE"

    checked = 0
    for name, job in jobs.items():
        if not job["depends_on"]:
            continue
        mine = {rid: r for rid, r in runs.items() if r["job"] == name}
        if not job["cron"]:
            _check_gathering(rep, name, job, mine, runs)
            continue
        if name not in paused:
            rep.violations.append(f"DAG: job {name} was never paused at the quiesce point")
            continue
        for slot in cron_slots(job["cron"], job["next_due_ms"], paused[name]):
            rid = f"{name}:{job['uid']}:{slot}"
            r = runs.get(rid)
            if r is None:
                rep.violations.append(f"DAG: slot {rid} has no record (lost downstream run)")
                continue
            checked += 1
            want = []
            outs = []
            for up in job["depends_on"]:
                latest = cron_slots(jobs[up]["cron"], slot - 60_000, slot + 1)
                urid, state = outcome(up, latest[-1] if latest else 0)
                want.append(urid)
                outs.append(state)
            if sorted(r.get("upstream_runs", [])) != sorted(want):
                rep.violations.append(
                    f"DAG: {rid} waited for {r.get('upstream_runs')}, expected {want}"
                )
            verdict = ref_rule(job["rule"], outs)
            state, reason = r["state"], r.get("skip_reason", "")
            if state == "SKIPPED" and reason == "UPSTREAM_FAILED":
                ok = verdict == "skip"
            elif state in ("SUCCEEDED", "DEAD"):
                ok = verdict == "run"
            else:
                ok = False
            if not ok:
                rep.violations.append(
                    f"DAG: {rid} ({job['rule']}) ended {state} {reason} but its upstream "
                    f"outcomes {dict(zip(want, outs, strict=True))} say {verdict}"
                )
        extra = [
            rid for rid, r in mine.items() if not r["manual"] and r["scheduled_ms"] >= paused[name]
        ]
        if extra:
            rep.violations.append(f"DAG: {name} fired past its quiesce point: {extra[:5]}")
    rep.dag_runs = checked


def _check_gathering(
    rep: Report, name: str, job: dict[str, Any], mine: dict[str, Any], runs: dict[str, Any]
) -> None:
    """A job without a schedule and one upstream: one run per upstream run that ended
    (succeeded or dead) after it existed; succeeded -> it ran, dead -> skipped upstream_failed."""
    (up,) = job["depends_on"]
    fed: dict[str, str] = {}
    for rid, r in mine.items():
        ups = r.get("upstream_runs", [])
        if r["origin"] != "DEPENDENCY":
            continue
        if len(ups) != 1:
            rep.violations.append(f"DAG: {rid} names {ups}, expected one run of {up}")
            continue
        if ups[0] in fed:
            rep.violations.append(f"DAG: {ups[0]} started both {fed[ups[0]]} and {rid}")
        fed[ups[0]] = rid
        u = runs.get(ups[0])
        ustate = u["state"] if u else "NONE"
        want = "run" if ustate == "SUCCEEDED" else "skip"
        got = "skip" if r["state"] == "SKIPPED" else "run"
        if r["state"] not in ("SUCCEEDED", "DEAD", "SKIPPED") or want != got:
            rep.violations.append(
                f"DAG: {rid} ended {r['state']} {r.get('skip_reason')} for {ups[0]} ({ustate})"
            )
    for rid, r in runs.items():
        if (
            r["job"] == up
            and r["state"] in ("SUCCEEDED", "DEAD")
            and r.get("finished_ms", 0) >= job.get("created_ms", 0)
            and rid not in fed
        ):
            rep.violations.append(f"DAG: {rid} of {up} ended {r['state']} but {name} never ran")


#: a firing may start this much before its slot with every clock true (the workers and the
#: checker read the same system clock as the nodes; this only absorbs rounding)
EARLY_TOLERANCE_S = 0.5


def _check_punctuality(
    rep: Report,
    events: list[dict[str, Any]],
    runs: dict[str, Any],
    starts: dict[str, list[dict[str, Any]]],
) -> None:
    """C2 (early firings): no scheduled firing starts before its slot by more than the largest
    wall-clock offset any node had (``clock_jump`` records; 0 without clock faults) plus
    EARLY_TOLERANCE_S: a leader whose clock is ahead by S fires up to S early, never more.
    Lateness is reported, not judged: a leader whose clock is behind by S fires S late, an
    election or a paused worker adds more, and P1 is about every slot being delivered."""
    skew = max(
        (abs(e.get("offset_s", 0.0)) for e in events if e["op"] == "clock_jump"), default=0.0
    )
    bound = skew + EARLY_TOLERANCE_S
    early: list[tuple[float, str]] = []
    late: list[float] = []
    for rid, xs in starts.items():
        r = runs.get(rid)
        if r is None or r.get("manual"):
            continue  # a manual run's scheduled_ms is when it was triggered, not a slot
        first = min(xs, key=lambda e: e["t"])
        delta = first["t"] - first["scheduled_ms"] / 1000
        if delta < 0:
            early.append((-delta, rid))
        else:
            late.append(delta)
    too_early = sorted((x for x in early if x[0] > bound), reverse=True)
    for d, rid in too_early[:20]:
        rep.violations.append(
            f"C2: {rid} started {d:.1f}s before its slot (allowed: {bound:.1f}s = largest "
            f"clock offset {skew:g}s + {EARLY_TOLERANCE_S:g}s)"
        )
    if len(too_early) > 20:
        rep.violations.append(f"C2: ... {len(too_early) - 20} more firings started too early")
    if early or skew:
        rep.notes.append(
            f"early firings: {len(early)}, max {max((d for d, _ in early), default=0.0):.1f}s "
            f"(bound {bound:.1f}s)"
        )
    jumps = sorted(
        (e["t"], f"{e['node']} ({e.get('role', '?')}) at {e['offset_s']:+g}s")
        for e in events
        if e["op"] == "clock_jump"
    )
    if jumps:  # per clock phase: how early / late first attempts started
        firsts = [
            min(xs, key=lambda e: e["t"])
            for rid, xs in starts.items()
            if rid in runs and not runs[rid].get("manual")
        ]
        bounds = [(-math.inf, "before the first jump"), *jumps, (math.inf, "")]
        for (t0, name), (t1, _) in zip(bounds, bounds[1:], strict=False):
            ds = [e["t"] - e["scheduled_ms"] / 1000 for e in firsts if t0 <= e["t"] < t1]
            if ds:
                rep.notes.append(
                    f"clock phase {name}: {len(ds)} firings, max early {max(0.0, -min(ds)):.1f}s, "
                    f"max late {max(0.0, max(ds)):.1f}s"
                )
    if late:
        late.sort()
        rep.notes.append(
            f"first attempt lateness: p50 {percentile(late, 50):.2f}s, p99 {percentile(late, 99):.2f}s, "
            f"max {late[-1]:.1f}s over {len(late)} firings"
        )


def _check_p1(
    rep: Report,
    events: list[dict[str, Any]],
    runs: dict[str, Any],
    applies: dict[str, list[Any]],
    starts: dict[str, list[Any]],
) -> None:
    created = {
        e["name"]: e["job"]
        for e in events
        if e["op"] == "create_job" and e["type"] == "ok" and e.get("workload")
    }
    paused = {
        e["name"]: e["job"]["next_due_ms"]
        for e in events
        if e["op"] == "pause_job" and e["type"] == "ok" and e.get("quiesce")
    }
    expected: list[str] = []
    for name, job in created.items():
        if name not in paused:
            rep.violations.append(
                f"P1: workload job {name} was never paused at the quiesce point; cannot bound it"
            )
            continue
        slots = cron_slots(job["cron"], job["next_due_ms"], paused[name])
        want = {f"{name}:{job['uid']}:{t}" for t in slots}
        expected.extend(sorted(want))
        for rid, r in runs.items():
            if r["job"] == name and not r["manual"] and rid not in want:
                rep.violations.append(f"C2: unexpected firing {rid} (state {r['state']})")
    for e in events:  # acknowledged manual triggers must run too
        if e["op"] == "trigger_job" and e["type"] == "ok":
            expected.append(e["run"]["run_id"])
    expected = list(dict.fromkeys(expected))
    rep.expected = len(expected)
    lost = []
    for rid in expected:
        if starts.get(rid):
            rep.delivered += 1
        if applies.get(rid):
            rep.effective += 1
        r = runs.get(rid)
        if r is None or r["state"] != "SUCCEEDED" or not applies.get(rid):
            lost.append(rid)
            why = "no run" if r is None else f"run {r['state']}"
            rep.violations.append(
                f"P1: lost firing {rid}: {why}, {len(applies.get(rid, []))} sink applies"
            )
    rep.lost = len(lost)


def _check_p2(rep: Report, applies: dict[str, list[dict[str, Any]]]) -> None:
    for rid, xs in sorted(applies.items()):
        if len(xs) > 1:
            rep.duplicates += 1
            detail = ", ".join(f"fence {a['fence']} by {a['worker']}" for a in xs)
            rep.violations.append(f"P2: duplicate effect for {rid}: {len(xs)} applies ({detail})")


def _check_fences(
    rep: Report,
    events: list[dict[str, Any]],
    runs: dict[str, Any],
    sink_log: list[dict[str, Any]],
    starts: dict[str, list[dict[str, Any]]],
    ends: dict[tuple[str, int], dict[str, Any]],
    ttl: float,
) -> None:
    paused: dict[str, list[tuple[float, float]]] = defaultdict(list)  # worker -> SIGSTOP intervals
    for e in events:
        if e["op"] == "pause_worker":
            paused[e["worker"]].append((e["mono"], math.inf))
        elif e["op"] == "resume_worker" and paused.get(e["worker"]):
            paused[e["worker"]][-1] = (paused[e["worker"]][-1][0], e["mono"])
    owner: dict[int, str] = {}
    for rid, xs in starts.items():
        xs.sort(key=lambda e: e["mono"])
        for a, b in zip(xs, xs[1:], strict=False):
            # A worker that was SIGSTOPped when the newer attempt started may run an older
            # firing it received before or during the pause afterwards: that is the late,
            # stale delivery fencing exists for, not a grant out of order.
            frozen = any(t0 <= a["mono"] <= t1 for t0, t1 in paused.get(b["worker"], ()))
            if b["fence"] <= a["fence"] and not frozen:
                rep.violations.append(
                    f"C4: {rid} attempt started with fence {b['fence']} after fence {a['fence']}"
                )
        for x in xs:
            if owner.setdefault(x["fence"], rid) != rid:
                rep.violations.append(
                    f"C4: fence {x['fence']} used by two runs: {owner[x['fence']]} and {rid}"
                )
        r = runs.get(rid)
        if r is not None and r["state"] == "SUCCEEDED" and r["fence"] < max(x["fence"] for x in xs):
            rep.violations.append(
                f"C4: {rid} SUCCEEDED under fence {r['fence']} but fence "
                f"{max(x['fence'] for x in xs)} was delivered later"
            )
    seen: dict[str, int] = {}
    for s in sink_log:
        if s["result"] == "apply" and s["fence"] < seen.get(s["run_id"], 0):
            rep.violations.append(
                f"C3: sink applied {s['run_id']} under fence {s['fence']} after seeing "
                f"fence {seen[s['run_id']]}"
            )
        seen[s["run_id"]] = max(seen.get(s["run_id"], 0), s["fence"])
    # No two live leases: an overlapped attempt must have known it lost its lease, or its worker
    # must have been unable to know (paused or killed).
    worker_faults: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e["op"] in ("pause_worker", "resume_worker", "kill_worker"):
            worker_faults[e["worker"]].append(e["mono"])
        if e["op"] == "armed":
            worker_faults[e["worker"]].append(e["mono"])
    for rid, xs in starts.items():
        by_fence = sorted(xs, key=lambda e: e["fence"])  # grant order
        for a, b in zip(by_fence, by_fence[1:], strict=False):
            end = ends.get((rid, a["fence"]))
            if end is None or end["mono"] <= b["mono"]:
                continue  # finished before the next attempt started (or never ended: killed/torn down)
            if end.get("cancelled"):
                continue
            since = min(a["mono"], b["mono"]) - 1
            if any(since <= t <= end["mono"] for t in worker_faults.get(a["worker"], ())):
                continue  # its worker was paused or killed meanwhile: a late, stale attempt
            rep.violations.append(
                f"C4: two live leases for {rid}: fence {a['fence']} on {a['worker']} ran until "
                f"{end['mono'] - b['mono']:.2f}s after fence {b['fence']} started on {b['worker']}, "
                "and was never told its lease was lost"
            )


def _check_p4(rep: Report, events: list[dict[str, Any]], final: dict[str, Any]) -> None:
    jobs = {j["name"]: j for j in final.get("jobs", [])}
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rids: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["op"] in ("create_job", "delete_job") and e["type"] in ("ok", "info", "fail"):
            by_name[e["name"]].append(e)
        if e["op"] == "create_job" and e["type"] == "invoke":
            rids[e["name"]].add(e.get("request_id", ""))
    for name, ops in by_name.items():
        ops.sort(key=lambda e: e["mono"])
        for e in ops:
            if (
                e["op"] == "create_job"
                and e["type"] == "fail"
                and "AlreadyExists" in e.get("error", "")
                and len(rids[name]) == 1
            ):
                rep.violations.append(
                    f"P4: create of {name} retried with its request id said ALREADY_EXISTS"
                )
        oks = [i for i, e in enumerate(ops) if e["type"] == "ok"]
        if not oks:
            continue
        last = ops[oks[-1]]
        if any(e["type"] == "info" for e in ops[oks[-1] + 1 :]):
            continue  # a later operation may or may not have happened
        if last["op"] == "create_job":
            j = jobs.get(name)
            if j is None:
                rep.violations.append(
                    f"P4: acknowledged create of {name} is missing after recovery"
                )
            elif j["uid"] != last["job"]["uid"]:
                rep.violations.append(
                    f"P4: job {name} has uid {j['uid']}, acknowledged create said {last['job']['uid']}"
                )
        elif name in jobs:
            rep.violations.append(f"P4: acknowledged delete of {name} is undone after recovery")


def _check_raft_logs(rep: Report, out: str) -> None:
    cluster = os.path.join(out, "cluster")
    for node in sorted(os.listdir(cluster)) if os.path.isdir(cluster) else []:
        path = os.path.join(cluster, node, "node.log")
        try:
            with open(path, errors="replace") as f:
                hits = [line.strip() for line in f if "truncating already-applied" in line]
        except OSError:
            continue
        if hits:
            rep.violations.append(
                f"C10: {node} truncated applied Raft entries {len(hits)} times "
                f"(first: {hits[0][:160]})"
            )


def _check_convergence(rep: Report, final: dict[str, Any]) -> None:
    nodes = final.get("nodes", {})
    down = [n for n, st in nodes.items() if st is None]
    if down:
        rep.violations.append(f"C7: nodes not answering at the end: {down}")
    states = {(st["applied_index"], st["digest"]) for st in nodes.values() if st is not None}
    if final.get("converged") is None or len(states) != 1:
        rep.violations.append(
            f"C7: replicas did not converge: {nodes} {final.get('converge_error', '')}"
        )


def _check_members(
    rep: Report, events: list[dict[str, Any]], final: dict[str, Any], out: str
) -> None:
    for e in events:
        if e["op"] == "node_exited":
            rep.notes.append(
                f"{e['node']} exited by itself (rc {e['rc']}) and was restarted: {e.get('error', '')}"
            )
        if e["op"] == "member_removed" and e.get("handovers", 0) > 1:
            rep.notes.append(
                f"removing leader {e['node']} took {e['handovers']} handovers (leadership came "
                f"back to it {e['handovers'] - 1} times), {e['seconds']}s"
            )
    expects = [e for e in events if e["op"] == "expect" and e.get("what") == "members"]
    if not expects:
        return
    want: dict[str, str] = expects[-1]["members"]  # node id -> Raft address
    ids = set(want)
    nodes: dict[str, Any] = final.get("nodes", {})
    if set(nodes) != ids:
        rep.violations.append(
            f"C11: nodes running at the end {sorted(nodes)} are not the members {sorted(ids)}"
        )
    leaders = sorted(n for n, st in nodes.items() if st is not None and st["role"] == "leader")
    if len(leaders) != 1:
        rep.violations.append(f"C11: {len(leaders)} nodes lead at the end: {leaders}")
    for n, st in sorted(nodes.items()):
        if st is None or "peers" not in st:
            continue  # C7 reports a node that does not answer
        listed = {n, *st["peers"]}
        if listed != ids:
            alone = " (a cluster of one)" if listed == {n} else ""
            rep.violations.append(
                f"C11: {n} lists members {sorted(listed)}{alone}, want {sorted(ids)}"
            )
        if len(leaders) == 1 and st.get("leader_id") != leaders[0]:
            rep.violations.append(
                f"C11: {n} follows {st.get('leader_id') or 'no one'}, the leader is {leaders[0]}"
            )
    view = final.get("members")
    if view is None:
        rep.violations.append("C11: no leader answered ListMembers at the end")
    else:
        got = {m["node_id"]: m for m in view["members"]}
        if {i: m["raft_address"] for i, m in got.items()} != want:
            rep.violations.append(
                f"C11: the leader {view['leader']} lists "
                f"{sorted((i, m['raft_address']) for i, m in got.items())}, want {sorted(want.items())}"
            )
        bad = sorted(i for i, m in got.items() if not (m["voter"] and m["connected"]))
        if bad:
            rep.violations.append(
                f"C11: the leader {view['leader']} has {bad} outside its Raft configuration "
                f"or not connected: {[got[i] for i in bad]}"
            )
    for n in sorted(ids & set(nodes)):
        voters = raft_voters(out, n, events, want)
        if voters is None:
            rep.notes.append(f"{n}: no node_started line in its log since its last start")
        elif voters != {want[m] for m in ids if m != n}:
            rep.violations.append(
                f"C11: {n} runs Raft with peers {sorted(voters)}, want "
                f"{sorted(want[m] for m in ids if m != n)}"
            )


_LOG_TS = re.compile(r"^ts=(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def raft_voters(
    out: str, node: str, events: list[dict[str, Any]], addresses: dict[str, str]
) -> set[str] | None:
    """The Raft addresses of the peers node ``node`` runs pysyncobj with at the end of the run,
    from its log: the last ``raft_members_changed`` (whose ``voters=`` is the whole set after
    the change) since its process last started, else the ``peers=`` it started with (node ids,
    mapped by ``addresses``). None without a start line."""
    since = max(
        (
            e["t"]
            for e in events
            if e["proc"] == "nemesis"
            and e["op"] in ("restart_node", "add_node")
            and e.get("node") == node
        ),
        default=0.0,
    )
    started: set[str] | None = None
    changed: set[str] | None = None
    try:
        with open(os.path.join(out, "cluster", node, "node.log"), errors="replace") as f:
            for line in f:
                m = _LOG_TS.match(line)
                if m is None:
                    continue
                t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                if t + int(m.group(2)) / 1000 < since:
                    continue
                fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                if f"event=node_started node={node} " in line:
                    peers = fields.get("peers", "-")
                    started = {
                        addresses.get(p, f"?{p}") for p in peers.split(",") if p and p != "-"
                    }
                elif "event=raft_members_changed " in line:
                    voters = fields.get("voters", "-")
                    changed = {v for v in voters.split(",") if v and v != "-"}
    except OSError:
        return None
    if started is None:
        return None
    return changed if changed is not None else started


def _check_p3(rep: Report, events: list[dict[str, Any]], bound_s: float) -> None:
    faults = [e for e in events if e["proc"] == "nemesis" and e.get("leader_fault")]
    done = sorted(
        (e for e in events if e["op"] == "handler" and e["type"] == "end" and e.get("ok")),
        key=lambda e: e["t"],
    )
    for f in faults:
        t_ms = f["t"] * 1000
        first = next((e for e in done if e["t"] >= f["t"] and e["scheduled_ms"] >= t_ms), None)
        if first is None:
            rep.violations.append(
                f"P3: no firing completed after the {f['op']} of {f['node']} at {f['t']:.3f}"
            )
            continue
        dt = first["t"] - f["t"]
        rep.failover.append(round(dt, 3))
        if dt > bound_s:
            rep.violations.append(
                f"P3: firings resumed {dt:.1f}s after the {f['op']} of {f['node']} (bound {bound_s:g}s)"
            )


def _check_expectations(
    rep: Report,
    events: list[dict[str, Any]],
    final: dict[str, Any],
    sink_log: list[dict[str, Any]],
    applies: dict[str, list[Any]],
    starts: dict[str, list[Any]],
) -> None:
    jobs = {j["name"]: j for j in final.get("jobs", [])}
    for x in (e for e in events if e["op"] == "expect"):
        what = x["what"]
        if what == "sink_reject":
            mine = [s for s in sink_log if s["run_id"] == x["run_id"] and s["fence"] == x["fence"]]
            if not mine:
                rep.violations.append(
                    f"expect: the paused worker's write for {x['run_id']} fence {x['fence']} never reached the sink"
                )
            elif any(s["result"] == "apply" for s in mine):
                if len(applies.get(x["run_id"], [])) > 1:
                    rep.notes.append(
                        f"the paused worker's late write for {x['run_id']} fence {x['fence']} was applied"
                    )
                else:
                    rep.violations.append(
                        f"expect: the paused worker's late write for {x['run_id']} fence {x['fence']} "
                        "was applied (it should have been fenced off)"
                    )
        elif what == "redelivered":
            later = [s for s in starts.get(x["run_id"], []) if s["fence"] > x["fence"]]
            if not later:
                rep.violations.append(
                    f"expect: {x['run_id']} was not redelivered after its worker died"
                )
            if len(applies.get(x["run_id"], [])) != 1:
                rep.violations.append(
                    f"expect: {x['run_id']} has {len(applies.get(x['run_id'], []))} effects, want 1"
                )
        elif what == "one_job":
            oks = [
                e
                for e in events
                if e["op"] == "create_job"
                and e["type"] == "ok"
                and e.get("request_id") == x["request_id"]
            ]
            uids = {e["job"]["uid"] for e in oks}
            j = jobs.get(x["name"])
            if not oks or len(uids) != 1 or j is None or j["uid"] not in uids:
                rep.violations.append(
                    f"expect: ambiguous create {x['name']} (request {x['request_id']}): acknowledged "
                    f"uids {sorted(uids)}, final job {j}"
                )
        elif what == "one_run":
            oks = {
                e["run"]["run_id"]
                for e in events
                if e["op"] == "trigger_job"
                and e["type"] == "ok"
                and e.get("request_id") == x["request_id"]
            }
            manual = [r for r in final.get("runs", []) if r["job"] == x["job"] and r["manual"]]
            if len(oks) != 1 or len(manual) != x["count"]:
                rep.violations.append(
                    f"expect: ambiguous trigger {x['request_id']}: acknowledged runs {sorted(oks)}, "
                    f"{len(manual)} manual runs of {x['job']} (want {x['count']})"
                )
        elif what == "disk_full_exit":
            # F14: the node whose disk filled must stop by itself with exit code 70 and a
            # CRITICAL line saying what to do (schedd/state/store.py fatal()); dying from a signal or
            # running on (wedged or not) breaks the contract even when no data is harmed.
            rc, lines = x.get("rc"), x.get("log", [])
            critical = [ln for ln in lines if "CRITICAL" in ln]
            if rc is None:
                rep.violations.append(
                    f"F14: {x['node']} still ran {x.get('wait_s')}s after its disk filled "
                    f"(applied index {x.get('lag')} behind the leader's commit)"
                )
            elif rc != 70 or not critical:
                how = f"signal {-rc}" if rc < 0 else f"exit {rc}"
                rep.violations.append(
                    f"F14: {x['node']} stopped with {how} on a full disk, want exit 70 and a "
                    f"CRITICAL line; its log: {lines[-3:] or 'nothing'}"
                )
            else:
                rep.notes.append(f"{x['node']} stopped with exit 70: {critical[-1][-200:]}")
        elif what != "members":  # members: _check_members
            rep.notes.append(f"unknown expectation {what}")
