#!/usr/bin/env python3
"""Time for a new node to join a running 3-node cluster holding N jobs and catch up.

    python bench/join.py [--jobs 100000] [--case default --case entries --case snapshot]
                         [--joins 1] [--settle 5] [--out bench/results/join.json] [--keep]

Each case starts a fresh secure 3-node ``LocalCluster`` (product defaults otherwise), creates N
jobs (:mod:`populate`, one ``CreateJob`` and one Raft entry each), then adds a node with
``LocalCluster.add_node`` (``schedd run --join``: it asks the leader to add it, then starts Raft
and catches up). The clock runs from ``add_node`` until

* ``applied_s``: the new node's applied index (``GetNodeStatus``) is at least the leader's
  commit index, read right after it; and
* ``caught_up_s``: also ``Client.list_members()`` shows it connected, a voter, and its match
  index within 5 entries of the highest one (the leader's).

Cases (how the Raft log is compacted on the 3 original nodes):

* ``default``: the product's 50,000 entries or 10 minutes; pysyncobj compacts a node only in its
  own slice of each 10-minute period (``logCompactionSplit``), so whether the leader has
  compacted when the node joins depends on the clock: the result says which path was taken.
* ``entries``: compaction off (10^9 entries or seconds): the new node gets every entry.
* ``snapshot``: compaction every 30 s; the node is added once the leader's snapshot covers its
  commit index, so it is sent the snapshot (a leader's log then holds only what came after).

``path`` is ``snapshot`` when the new node's ``node.log`` has "restored state from snapshot",
else ``entries``. For the new node: CPU seconds (user + system, /proc/PID/stat) at catch-up and
peak RSS (``VmHWM`` of /proc/PID/status, read just before it is stopped); for the original
nodes, their CPU seconds during the catch-up window. The node log's timestamps split the time
into phases (``event=joining``, ``event=joined``, ``event=node_started``, the snapshot restore).
The highest Raft term the leader or the new node reported during the catch-up, and for
``--settle`` seconds after it every node's role and term, are kept (an election the join caused
shows as a higher term than at the add), the original nodes' ``event=dispatch_stopped`` and
``event=leader_changed`` lines during the catch-up are counted (``old_nodes_churn``), and the new
node's log lines saying it saw no leader or was not a member are kept
(``new_node_log_warnings``).
With ``--joins K`` the node is removed again (``remove_member``) and another one added, K times
per case. Everything binds to 127.0.0.1; temp dirs are deleted unless ``--keep`` or a case failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

from common import CpuMeter, load_average, process_cpu_s, progress
from compaction_node import CompactionCluster
from populate import create_jobs
from run import _git_commit

import schedd
from schedd import errors
from schedd.client import Client
from schedd.state.store import Store
from schedd.testing import LocalCluster

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Case:
    """How the original nodes compact their Raft log (None: schedd's own settings)."""

    name: str
    compact_entries: int | None
    compact_seconds: float | None
    wait_for_snapshot: bool = False


CASES = {
    "default": Case("default", None, None),
    "entries": Case("entries", 10**9, 1e9),
    "snapshot": Case("snapshot", 50_000, 30.0, wait_for_snapshot=True),
}


def proc_status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (``VmHWM``: peak RSS, ``VmRSS``), None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


_TS = re.compile(r"^ts=(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def log_events(path: str, markers: dict[str, str]) -> dict[str, float]:
    """Wall-clock time (epoch seconds) of the first line of ``path`` holding each marker."""
    out: dict[str, float] = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                for name, marker in markers.items():
                    if name not in out and marker in line:
                        m = _TS.match(line)
                        if m:
                            base = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                            out[name] = base + int(m.group(2)) / 1000
    except OSError:
        pass
    return out


PHASES = {
    "joining": "event=joining",
    "joined": "event=joined",
    "node_started": "event=node_started",
    "snapshot_restored": "restored state from snapshot",
}


#: lines of the new node's log worth a look: leadership lost or unknown, membership surprises
WATCHED = ("leader=- ", "event=removed_from_cluster", "event=not_a_member", "level=ERROR")


def log_lines(path: str, markers: tuple[str, ...], limit: int = 10) -> list[str]:
    """The first ``limit`` lines of ``path`` holding any of ``markers``."""
    out: list[str] = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if any(m in line for m in markers):
                    out.append(line.strip()[:300])
                    if len(out) >= limit:
                        break
    except OSError:
        pass
    return out


def count_lines(path: str, marker: str, since: float, until: float) -> int:
    """Lines of ``path`` holding ``marker`` stamped within [since, until] (epoch seconds)."""
    n = 0
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if marker in line and (m := _TS.match(line)):
                    ts = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                    n += since <= ts + int(m.group(2)) / 1000 <= until
    except OSError:
        pass
    return n


def leadership_churn(
    cluster: LocalCluster, nodes: list[str], since: float, until: float
) -> dict[str, dict[str, int]]:
    """How often the original nodes' dispatchers stopped (lost leadership or a new term) and
    how many leader changes they logged between ``since`` and ``until`` (epoch seconds)."""
    out: dict[str, dict[str, int]] = {}
    for node_id in nodes:
        path = cluster.spec(node_id).log_path
        out[node_id] = {
            "dispatch_stopped": count_lines(path, "event=dispatch_stopped", since, until),
            "leader_changed": count_lines(path, "event=leader_changed", since, until),
        }
    return out


def settle(cluster: LocalCluster, seconds: float) -> dict[str, Any]:
    """Watch every node's role and term for ``seconds`` after the catch-up: the highest term
    seen, each node's last (role, term, leader) and whether any node saw no leader."""
    deadline = time.monotonic() + seconds
    last: dict[str, list[Any]] = {}
    max_term = 0
    leaderless: set[str] = set()
    while time.monotonic() < deadline:
        for spec in cluster.specs:
            st = cluster.status(spec.node_id, timeout=1.0)
            if st is None:
                continue
            last[spec.node_id] = [st.role, st.term, st.leader_id]
            max_term = max(max_term, st.term)
            if not st.leader_id:
                leaderless.add(spec.node_id)
        time.sleep(0.25)
    return {"max_term": max_term, "last": last, "saw_no_leader": sorted(leaderless)}


def snapshot_index(cluster: LocalCluster, node_id: str) -> int:
    """The last log index the node's Raft snapshot file covers (0: none yet)."""
    return Store.snapshot_last_index(os.path.join(cluster.spec(node_id).data_dir, "raft.snapshot"))


def file_bytes(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def make_cluster(case: Case, root: str) -> LocalCluster:
    if case.compact_entries is None or case.compact_seconds is None:
        return LocalCluster(root, nodes=3)
    return CompactionCluster(
        root, nodes=3, entries=case.compact_entries, seconds=case.compact_seconds
    )


def _member_caught_up(client: Client, node_id: str) -> bool:
    try:
        members = client.list_members()
    except errors.SchedError:
        return False
    me = next((m for m in members if m.node_id == node_id), None)
    if me is None or not (me.connected and me.voter):
        return False
    return max(m.match_index for m in members) - me.match_index <= 5


def measure_join(
    cluster: LocalCluster, client: Client, node_id: str, timeout_s: float, settle_s: float
) -> dict[str, Any]:
    """Add ``node_id`` and time its catch-up (see the module docstring)."""
    leader = cluster.wait_for_leader(timeout=60)
    st = cluster.status(leader)
    assert st is not None
    res: dict[str, Any] = {
        "node": node_id,
        "leader": leader,
        "leader_commit_at_add": st.commit_index,
        "term_at_add": st.term,
        "leader_snapshot_index_at_add": snapshot_index(cluster, leader),
        "leader_journal_bytes": file_bytes(
            os.path.join(cluster.spec(leader).data_dir, "raft.journal")
        ),
        "leader_snapshot_bytes": file_bytes(
            os.path.join(cluster.spec(leader).data_dir, "raft.snapshot")
        ),
        "load_average_at_add": load_average(),
    }
    old = {
        f"{s.node_id}{' (leader)' if s.node_id == leader else ''}": cluster.procs[s.node_id].pid
        for s in cluster.specs
        if cluster.alive(s.node_id)
    }
    meter = CpuMeter(old)
    meter.start()
    wall0, t0 = time.time(), time.monotonic()
    cluster.add_node(node_id)
    pid = cluster.procs[node_id].pid
    first_answer = applied_at = caught_at = None
    cpu: float | None = None
    hwm: int | None = None
    applied = commit = 0
    max_term = st.term
    last_report = t0
    while time.monotonic() - t0 < timeout_s:
        cpu = process_cpu_s(pid) or cpu
        hwm = proc_status_kib(pid, "VmHWM") or hwm
        if not cluster.alive(node_id):
            raise RuntimeError(f"{node_id} exited; see {cluster.spec(node_id).log_path}")
        mine = cluster.status(node_id, timeout=2.0)
        now = time.monotonic()
        if mine is not None:
            first_answer = first_answer or now
            applied = mine.applied_index
            lead = cluster.status(leader, timeout=2.0)
            if lead is None or lead.role != "leader":
                leader = cluster.wait_for_leader(timeout=60)
                lead = cluster.status(leader, timeout=2.0)
            commit = lead.commit_index if lead is not None else commit
            max_term = max(max_term, lead.term if lead is not None else 0, mine.term)
            if applied_at is None and lead is not None and applied >= commit:
                applied_at = now
                res["commit_at_applied"] = commit
        if applied_at is not None and _member_caught_up(client, node_id):
            caught_at = time.monotonic()
            cpu = process_cpu_s(pid) or cpu
            break
        if now - last_report >= 5.0:
            last_report = now
            progress(f"{node_id}: applied {applied} of the leader's commit index {commit}")
        time.sleep(0.1)
    meter.stop()
    res["cpu_old_nodes_s"] = meter.cpu_s
    res["max_term_during_catch_up"] = max_term
    res["window_s"] = meter.wall_s
    if caught_at is None:
        res["error"] = (
            f"{node_id} not caught up within {timeout_s:.0f} s (applied {applied}/{commit})"
        )
        return res
    res["old_nodes_churn"] = leadership_churn(
        cluster, [k.split()[0] for k in old], wall0, wall0 + (caught_at - t0)
    )
    res["first_status_answer_s"] = round((first_answer or t0) - t0, 2)
    res["applied_s"] = round((applied_at or t0) - t0, 2)
    res["caught_up_s"] = round(caught_at - t0, 2)
    res["new_node_cpu_s"] = cpu
    res["after_settle"] = settle(cluster, settle_s)
    res["new_node_cpu_s_after_settle"] = process_cpu_s(pid)
    res["new_node_peak_rss_mib"] = round((proc_status_kib(pid, "VmHWM") or hwm or 0) / 1024, 1)
    res["new_node_rss_mib"] = round((proc_status_kib(pid, "VmRSS") or 0) / 1024, 1)
    res["leader_rss_mib"] = round(
        (proc_status_kib(cluster.procs[leader].pid, "VmRSS") or 0) / 1024, 1
    )
    events = log_events(cluster.spec(node_id).log_path, PHASES)
    res["phases_s"] = {name: round(ts - wall0, 2) for name, ts in events.items()}
    res["path"] = "snapshot" if "snapshot_restored" in events else "entries"
    res["new_node_log_warnings"] = log_lines(cluster.spec(node_id).log_path, WATCHED)
    res["applied_at_end"] = applied
    return res


def run_case(
    case: Case, jobs: int, joins: int, timeout_s: float, settle_s: float, keep: bool
) -> dict[str, Any]:
    """One fresh cluster: populate, then ``joins`` measured joins (each removed again after)."""
    root = tempfile.mkdtemp(prefix=f"schedd-join-bench-{case.name}-")
    result: dict[str, Any] = {
        "case": case.name,
        "compaction": {"entries": case.compact_entries, "seconds": case.compact_seconds}
        if case.compact_entries is not None
        else "schedd default (50000 entries or 600 s, split between nodes)",
        "tmp_dir": root,
    }
    cluster = make_cluster(case, root)
    ok = False
    try:
        progress(f"{case.name}: starting 3 nodes in {root}")
        cluster.start()
        cluster.wait_for_leader(timeout=60)
        with cluster.client(timeout=30.0, retry_for=120.0) as client:
            pids = {s.node_id: cluster.procs[s.node_id].pid for s in cluster.specs}
            result["populate"] = create_jobs(client, jobs, pids=pids)
            if case.wait_for_snapshot:
                leader = cluster.wait_for_leader(timeout=60)
                st = cluster.status(leader)
                target = st.commit_index if st is not None else 0
                t0 = time.monotonic()
                progress(f"{case.name}: waiting for {leader}'s snapshot to reach index {target}")
                while snapshot_index(cluster, leader) < target:
                    if time.monotonic() - t0 > 120:
                        raise TimeoutError(f"{leader} wrote no snapshot at index {target}")
                    time.sleep(0.5)
                result["snapshot_wait_s"] = round(time.monotonic() - t0, 1)
            result["joins"] = []
            for i in range(joins):
                node_id = f"n{4 + i}"
                progress(f"{case.name}: adding {node_id}")
                res = measure_join(cluster, client, node_id, timeout_s, settle_s)
                result["joins"].append(res)
                if "error" in res:
                    raise RuntimeError(res["error"])
                progress(
                    f"{case.name}: {node_id} caught up in {res['caught_up_s']} s by {res['path']} "
                    f"(CPU {res['new_node_cpu_s']} s, peak RSS {res['new_node_peak_rss_mib']} MiB)"
                )
                client.remove_member(node_id)
                cluster.forget_node(node_id)
        ok = True
    except Exception as e:  # report and go on with the next case
        result["error"] = repr(e)
        result["traceback"] = traceback.format_exc()
        progress(f"{case.name}: FAILED: {e!r}")
    finally:
        cluster.stop()
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
            result["tmp_dir"] = None
        else:
            progress(f"{case.name}: kept {root}")
    return result


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} [{min(values):.1f}–{max(values):.1f}]"


def print_table(cases: list[dict[str, Any]]) -> None:
    headers = [
        "case",
        "path",
        "entries",
        "caught up s",
        "applied s",
        "new node CPU s",
        "peak RSS MiB",
        "leader CPU s",
        "term add→catch-up→settled",
        "dispatch stops",
    ]
    rows = []
    for c in cases:
        for j in c.get("joins", []):
            if "error" in j:
                rows.append([c["case"], "FAILED", "", j["error"], "", "", "", "", "", ""])
                continue
            leader_cpu = next(
                (v for k, v in j["cpu_old_nodes_s"].items() if k.endswith("(leader)")), None
            )
            rows.append(
                [
                    c["case"],
                    j["path"],
                    f"{j['leader_commit_at_add']:,}",
                    f"{j['caught_up_s']:.1f}",
                    f"{j['applied_s']:.1f}",
                    f"{j['new_node_cpu_s']:.1f}",
                    f"{j['new_node_peak_rss_mib']:.0f}",
                    "n/a" if leader_cpu is None else f"{leader_cpu:.1f}",
                    f"{j['term_at_add']}→{j['max_term_during_catch_up']}→"
                    f"{j['after_settle']['max_term']}",
                    str(sum(v["dispatch_stopped"] for v in j["old_nodes_churn"].values())),
                ]
            )
        if "error" in c and not c.get("joins"):
            rows.append([c["case"], "FAILED", "", c["error"], "", "", "", "", "", ""])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    print(
        "\nterm: the Raft term at the add, the highest during the catch-up, the highest in the "
        "settle window after it;\ndispatch stops: event=dispatch_stopped lines of the original "
        "nodes during the catch-up (each is a leadership loss or a new term on the leader)."
    )
    for c in cases:
        times = [j["caught_up_s"] for j in c.get("joins", []) if "caught_up_s" in j]
        pop = c.get("populate", {})
        print(
            f"\n{c['case']}: caught up {_spread(times)} s over {len(times)} join(s); "
            f"{pop.get('jobs', '?')} jobs created in {pop.get('create_s', '?')} s "
            f"({pop.get('create_per_s', '?')}/s)"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="default, entries, snapshot (repeatable; default: all three in that order)",
    )
    ap.add_argument("--joins", type=int, default=1, help="measured joins per case")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a catch-up")
    ap.add_argument(
        "--settle", type=float, default=5.0, help="seconds to watch roles and terms afterwards"
    )
    ap.add_argument("--out", default=os.path.join(HERE, "results", "join.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (node logs)")
    args = ap.parse_args(argv)
    names = args.case or ["default", "entries", "snapshot"]
    started = time.monotonic()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "git": _git_commit(),
        "cpu_count": os.cpu_count(),
        "schedd_imported_from": os.path.dirname(schedd.__file__),
        "load_average_at_start": load_average(),
        "cases": [],
    }
    for name in names:
        report["cases"].append(
            run_case(
                CASES[name], args.jobs, max(1, args.joins), args.timeout, args.settle, args.keep
            )
        )
    report["wall_s"] = round(time.monotonic() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print_table(report["cases"])
    print(f"\nraw numbers: {args.out}  (total {report['wall_s']:.0f} s)")
    return 1 if any("error" in c for c in report["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
