"""The chaos checker on hand-written histories: it must see every kind of violation it claims
to check (no processes; milliseconds)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chaos import checker, sink
from chaos.history import History

pytestmark = pytest.mark.chaos

T0 = (int(time.time()) // 60 * 60 - 600) * 1000  # a whole minute, ten minutes ago, in ms
# (handler records carry the real wall clock: slots in the past keep them from looking early)


def make(
    tmp_path,
    *,
    runs: list[dict[str, Any]] | None = None,
    applies: list[tuple[str, int]] = (),
    extra: list[tuple[str, str, dict[str, Any]]] = (),
    nodes: dict[str, Any] | None = None,
) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = str(tmp_path)
    sink.init(f"{out}/sink.db")
    s = sink.Sink(f"{out}/sink.db", fencing=False)
    for rid, fence in applies:
        s.write(rid, fence, "w1")
    s.close()
    h = History(f"{out}/history.jsonl", "harness")
    h.write("start", lease_ttl_s=3.0)
    c = History(f"{out}/history.jsonl", "client")
    c.write(
        "create_job",
        "ok",
        name="j",
        workload=True,
        job={"name": "j", "uid": 7, "next_due_ms": T0, "cron": "* * * * * *"},
    )
    c.write(
        "pause_job",
        "ok",
        name="j",
        quiesce=True,
        job={"name": "j", "uid": 7, "next_due_ms": T0 + 3000},
    )
    for proc, op, fields in extra:
        History(f"{out}/history.jsonl", proc).write(op, **fields)
    if runs is None:
        runs = [
            {
                "run_id": f"j:7:{T0 + i * 1000}",
                "job": "j",
                "scheduled_ms": T0 + i * 1000,
                "state": "SUCCEEDED",
                "attempt": 1,
                "fence": i + 1,
                "worker_id": "w1",
                "manual": False,
            }
            for i in range(3)
        ]
    final = {
        "jobs": [{"name": "j", "uid": 7, "state": 2, "next_due_ms": T0 + 3000}],
        "runs": runs,
        "nodes": nodes
        or {"n1": {"applied_index": 9, "digest": "d"}, "n2": {"applied_index": 9, "digest": "d"}},
        "converged": {"applied_index": 9, "digest": "d"},
    }
    with open(f"{out}/final.json", "w") as f:
        json.dump(final, f)
    return out


ALL = [(f"j:7:{T0 + i * 1000}", i + 1) for i in range(3)]


def test_clean_history_passes(tmp_path) -> None:
    rep = checker.check(make(tmp_path, applies=ALL))
    assert rep.ok, rep.violations
    assert (rep.expected, rep.effective, rep.lost, rep.duplicates) == (3, 3, 0, 0)


def test_lost_firing_and_missing_effect(tmp_path) -> None:
    runs = [
        {
            "run_id": f"j:7:{T0}",
            "job": "j",
            "scheduled_ms": T0,
            "state": "SUCCEEDED",
            "attempt": 1,
            "fence": 1,
            "worker_id": "w1",
            "manual": False,
        }
    ]
    rep = checker.check(make(tmp_path, runs=runs, applies=ALL[:1]))
    assert rep.lost == 2 and any(v.startswith("P1: lost firing") for v in rep.violations)


def test_duplicate_effect(tmp_path) -> None:
    rep = checker.check(make(tmp_path, applies=[*ALL, (ALL[0][0], 9)]))
    assert rep.duplicates == 1 and any(v.startswith("P2") for v in rep.violations)


def test_stale_apply_and_unexpected_firing(tmp_path) -> None:
    extra_run = {
        "run_id": f"j:7:{T0 + 5000}",
        "job": "j",
        "scheduled_ms": T0 + 5000,
        "state": "SUCCEEDED",
        "attempt": 1,
        "fence": 8,
        "worker_id": "w1",
        "manual": False,
    }
    runs = [
        {
            "run_id": rid,
            "job": "j",
            "scheduled_ms": T0 + i * 1000,
            "state": "SUCCEEDED",
            "attempt": 1,
            "fence": f,
            "worker_id": "w1",
            "manual": False,
        }
        for i, (rid, f) in enumerate(ALL)
    ]
    rep = checker.check(make(tmp_path, runs=[*runs, extra_run], applies=[(ALL[0][0], 5), *ALL]))
    assert any(v.startswith("C2: unexpected firing") for v in rep.violations)
    assert any(v.startswith("C3: sink applied") for v in rep.violations)


def test_two_live_leases(tmp_path) -> None:
    rid = ALL[0][0]
    ev = [
        (
            "worker:w1",
            "handler",
            {"type": "start", "run_id": rid, "fence": 1, "worker": "w1", "scheduled_ms": T0},
        ),
        (
            "worker:w2",
            "handler",
            {"type": "start", "run_id": rid, "fence": 4, "worker": "w2", "scheduled_ms": T0},
        ),
        (
            "worker:w1",
            "handler",
            {
                "type": "end",
                "run_id": rid,
                "fence": 1,
                "worker": "w1",
                "ok": True,
                "cancelled": False,
                "scheduled_ms": T0,
            },
        ),
    ]
    rep = checker.check(make(tmp_path, applies=ALL, extra=ev))
    assert any("two live leases" in v for v in rep.violations), rep.violations
    ev[2][2]["cancelled"] = (
        True  # the agent knew it had lost the lease: fencing's job, not a violation
    )
    runs = [
        {
            "run_id": r,
            "job": "j",
            "scheduled_ms": T0 + i * 1000,
            "state": "SUCCEEDED",
            "attempt": 1,
            "fence": 4 if i == 0 else f,
            "worker_id": "w1",
            "manual": False,
        }
        for i, (r, f) in enumerate(ALL)
    ]
    rep = checker.check(make(tmp_path / "b", runs=runs, applies=ALL, extra=ev))
    assert rep.ok, rep.violations


def test_lost_acknowledged_create_and_divergence(tmp_path) -> None:
    ev = [
        ("client", "create_job", {"type": "ok", "name": "gone", "job": {"name": "gone", "uid": 3}})
    ]
    nodes = {"n1": {"applied_index": 9, "digest": "d"}, "n2": {"applied_index": 9, "digest": "e"}}
    rep = checker.check(make(tmp_path, applies=ALL, extra=ev, nodes=nodes))
    assert any(v.startswith("P4: acknowledged create of gone") for v in rep.violations)
    assert any(v.startswith("C7") for v in rep.violations)


def _start(rid: str, slot_ms: int, *, t: float, fence: int = 1) -> tuple[str, str, dict[str, Any]]:
    return (
        "worker:w1",
        "handler",
        {
            "type": "start",
            "run_id": rid,
            "fence": fence,
            "worker": "w1",
            "scheduled_ms": slot_ms,
            "t": t,
        },
    )


def test_early_firing_bounded_by_the_largest_clock_offset(tmp_path) -> None:
    rid, slot = ALL[1][0], T0 + 1000
    early = [_start(rid, slot, t=slot / 1000 - 20)]  # started 20 s before its slot
    rep = checker.check(make(tmp_path / "a", applies=ALL, extra=early))
    assert any(v.startswith(f"C2: {rid} started 20.0s before its slot") for v in rep.violations), (
        rep.violations
    )
    jump = [("nemesis", "clock_jump", {"node": "n1", "offset_s": 60.0, "step_s": 60.0})]
    rep = checker.check(make(tmp_path / "b", applies=ALL, extra=[*jump, *early]))
    assert rep.ok, rep.violations  # a leader 60 s ahead may fire up to 60 s early
    rep = checker.check(
        make(tmp_path / "c", applies=ALL, extra=[*jump, _start(rid, slot, t=slot / 1000 - 61)])
    )
    assert any(v.startswith(f"C2: {rid} started 61.0s") for v in rep.violations), rep.violations


def test_disk_full_exit_contract(tmp_path) -> None:
    def expect(rc: int | None, log: list[str]) -> tuple[str, str, dict[str, Any]]:
        return (
            "harness",
            "expect",
            {"what": "disk_full_exit", "node": "n3", "rc": rc, "log": log, "lag": 40, "wait_s": 30},
        )

    ok = expect(
        70,
        [
            "ts=... level=CRITICAL logger=schedd.state.store LMDB failed at /d applying log index 9: ..."
        ],
    )
    assert checker.check(make(tmp_path / "a", applies=ALL, extra=[ok])).ok
    for i, bad in enumerate([expect(-7, []), expect(None, []), expect(1, ["Traceback ..."])]):
        rep = checker.check(make(tmp_path / f"b{i}", applies=ALL, extra=[bad]))
        assert any(v.startswith("F14: n3") for v in rep.violations), rep.violations


def test_truncated_applied_entries_in_a_node_log(tmp_path) -> None:
    out = make(tmp_path, applies=ALL)
    assert checker.check(out).ok
    log = tmp_path / "cluster" / "n2" / "node.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "ts=... level=CRITICAL logger=pysyncobj.syncobj truncating already-applied log entries from "
        "index 79 (last applied: 84) - state machine may have diverged from other cluster members\n"
    )
    rep = checker.check(out)
    assert [v[:35] for v in rep.violations] == ["C10: n2 truncated applied Raft entr"]


RAFT = {"n3": "127.0.0.1:40003", "n4": "127.0.0.1:40004", "n5": "127.0.0.1:40005"}


def _membership_run(
    tmp_path, nodes: dict[str, Any], logs: dict[str, str], voter: bool = True
) -> str:
    """A run whose scenario expects members n3, n4, n5 (``RAFT``): nodes' final statuses,
    the leader's member list and the node logs as given."""
    ev = [("harness", "expect", {"what": "members", "members": RAFT})]
    full = {
        n: {"applied_index": 9, "digest": "d", "term": 2, "commit_index": 9, **st}
        for n, st in nodes.items()
    }
    out = make(tmp_path, applies=ALL, extra=ev, nodes=full)
    with open(f"{out}/final.json") as f:
        final = json.load(f)
    final["members"] = {
        "leader": "n5",
        "commit_index": 9,
        "members": [
            {
                "node_id": n,
                "raft_address": a,
                "grpc_address": "",
                "leader": n == "n5",
                "voter": voter,
                "connected": True,
                "match_index": 9,
            }
            for n, a in RAFT.items()
        ],
    }
    with open(f"{out}/final.json", "w") as f:
        json.dump(final, f)
    for n, text in logs.items():
        (tmp_path / "cluster" / n).mkdir(parents=True, exist_ok=True)
        (tmp_path / "cluster" / n / "node.log").write_text(text)
    return out


def _log(node: str, peers: str, voters: str | None = None) -> str:
    ts = "ts=2026-01-01 00:00:00,000 level=INFO"
    text = f"{ts} logger=schedd.node event=node_started node={node} raft=x grpc=y peers={peers}\n"
    if voters is not None:
        text += f"{ts} logger=schedd.raft event=raft_members_changed op=remove address=z reverse=False voters={voters}\n"
    return text


AGREE = {
    "n3": {"role": "follower", "leader_id": "n5", "peers": ["n4", "n5"]},
    "n4": {"role": "follower", "leader_id": "n5", "peers": ["n3", "n5"]},
    "n5": {"role": "leader", "leader_id": "n5", "peers": ["n3", "n4"]},
}
LOGS = {
    "n3": _log("n3", "n1,n2", f"{RAFT['n4']},{RAFT['n5']}"),  # started 3 -> changed
    "n4": _log("n4", "n3,n5"),
    "n5": _log("n5", "n3,n4"),
}


def test_membership_agreement(tmp_path) -> None:
    rep = checker.check(_membership_run(tmp_path / "ok", AGREE, LOGS))
    assert rep.ok, rep.violations

    alone = {**AGREE, "n4": {"role": "leader", "leader_id": "n4", "peers": []}}
    rep = checker.check(_membership_run(tmp_path / "alone", alone, LOGS))
    assert "C11: 2 nodes lead at the end: ['n4', 'n5']" in rep.violations, rep.violations
    assert any("n4 lists members ['n4'] (a cluster of one)" in v for v in rep.violations)

    lost = {**AGREE, "n3": {"role": "candidate", "leader_id": "", "peers": ["n4", "n5"]}}
    rep = checker.check(_membership_run(tmp_path / "lost", lost, LOGS))
    assert rep.violations == ["C11: n3 follows no one, the leader is n5"], rep.violations

    stale = {**LOGS, "n3": _log("n3", "n1,n2", f"127.0.0.1:40001,{RAFT['n4']},{RAFT['n5']}")}
    rep = checker.check(_membership_run(tmp_path / "stale", AGREE, stale))
    assert [v[:30] for v in rep.violations] == ["C11: n3 runs Raft with peers ["], rep.violations

    rep = checker.check(_membership_run(tmp_path / "nonvoter", AGREE, LOGS, voter=False))
    assert any("outside its Raft configuration" in v for v in rep.violations), rep.violations

    extra = {**AGREE, "n1": {"role": "follower", "leader_id": "n5", "peers": ["n3", "n4", "n5"]}}
    rep = checker.check(_membership_run(tmp_path / "extra", extra, LOGS))
    assert any(v.startswith("C11: nodes running at the end") for v in rep.violations)


# ---- the DAG workload's checks (dag scenarios) ----------------------------------------------


def _dag_history(down_state: str, up_state: str, gather: list[str]) -> tuple[list, dict]:
    def created(name: str, uid: int, cron: str, ups: list[str]) -> dict[str, Any]:
        return {
            "op": "create_job",
            "type": "ok",
            "t": (T0 - 60_000) / 1000,
            "name": name,
            "dag": True,
            "depends_on": ups,
            "trigger_rule": "all_succeeded" if ups else "",
            "job": {"name": name, "uid": uid, "next_due_ms": T0 if cron else 0, "cron": cron},
        }

    events = [
        created("up", 1, "*/2 * * * * *", []),
        created("down", 2, "*/2 * * * * *", ["up"]),
        created("after", 3, "", ["down"]),
        *(
            {
                "op": "pause_job",
                "type": "ok",
                "name": n,
                "dag": True,
                "job": {"next_due_ms": T0 + 2000},
            }
            for n in ("up", "down", "after")
        ),
    ]

    def run(rid: str, job: str, state: str, **kw: Any) -> dict[str, Any]:
        slot = int(rid.rsplit(":", 1)[1].rstrip("m"))
        return {
            "run_id": rid,
            "job": job,
            "scheduled_ms": slot,
            "state": state,
            "manual": rid.endswith("m"),
            "origin": kw.pop("origin", "SCHEDULE"),
            "skip_reason": kw.pop("skip_reason", "UNSPECIFIED"),
            "upstream_runs": kw.pop("upstream_runs", []),
            "finished_ms": T0 + 500,
        }

    runs = [
        run(f"up:1:{T0}", "up", up_state),
        run(
            f"down:2:{T0}",
            "down",
            down_state,
            upstream_runs=[f"up:1:{T0}"],
            skip_reason="UPSTREAM_FAILED" if down_state == "SKIPPED" else "UNSPECIFIED",
        ),
        *(
            run(
                f"after:3:{T0 + 600 + i}m",
                "after",
                "SUCCEEDED",
                origin="DEPENDENCY",
                upstream_runs=[u],
            )
            for i, u in enumerate(gather)
        ),
    ]
    return events, {r["run_id"]: r for r in runs}


def test_the_dag_check_passes_a_correct_dag() -> None:
    rep = checker.Report(out="")
    checker._check_dag(rep, *_dag_history("SUCCEEDED", "SUCCEEDED", [f"down:2:{T0}"]))
    assert rep.ok, rep.violations
    assert rep.dag_runs == 1
    rep = checker.Report(out="")
    checker._check_dag(rep, *_dag_history("SKIPPED", "DEAD", []))
    assert rep.ok, rep.violations


def test_the_dag_check_sees_a_wrong_rule_a_doubled_and_a_missed_downstream_run() -> None:
    rep = checker.Report(out="")
    checker._check_dag(rep, *_dag_history("SUCCEEDED", "DEAD", [f"down:2:{T0}"]))
    assert any("say skip" in v for v in rep.violations), rep.violations  # ran after a dead upstream
    rep = checker.Report(out="")
    checker._check_dag(rep, *_dag_history("SUCCEEDED", "SUCCEEDED", [f"down:2:{T0}"] * 2))
    assert any("started both" in v for v in rep.violations), rep.violations
    rep = checker.Report(out="")
    checker._check_dag(rep, *_dag_history("SUCCEEDED", "SUCCEEDED", []))
    assert any("never ran" in v for v in rep.violations), rep.violations
    events, runs = _dag_history("SUCCEEDED", "SUCCEEDED", [f"down:2:{T0}"])
    del runs[f"down:2:{T0}"]
    rep = checker.Report(out="")
    checker._check_dag(rep, events, runs)
    assert any("has no record" in v for v in rep.violations), rep.violations
