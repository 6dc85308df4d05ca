"""Scenarios for pysyncobj's follower truncation: the bug turned into lost committed writes.

Each round: one follower (the *laggard*) is SIGSTOPped, so the leader's commits rest on the
other follower's acknowledgements alone; 16 client threads create jobs with 20 KB payloads as
fast as they can (many entries in flight, so the leader pipelines and re-sends tails, which is
what makes pysyncobj truncate). Every node runs ``chaos.trap_node``: when the remaining follower's
log ends below what it has acknowledged, it stops listening to that leader at once and says
so. The round then kills the leader and wakes the laggard: the two survivors elect a leader that
lacks entries the old one committed and acknowledged. Without the trap (the fix on), the leader
is killed anyway after a few seconds of load: the same failover at a busy moment.

* ``raft-truncation``: schedd's Raft; must pass every check (the trap never springs).
* ``control-raft-truncation``: ``CHAOS_RAFT_FIX=off`` (pysyncobj's own replication); passes only
  when the checker reports lost acknowledged writes (P4), diverged replicas (C7) or pysyncobj's
  own "truncating already-applied" line (C10): proof that the scenario and checker can see the
  bug. Which of them shows depends on timing (a follower that applied the lost entries keeps
  them in its state, and then the loss shows as C10 rather than P4).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from chaos.history import History

if TYPE_CHECKING:
    from chaos.harness import Harness

PAYLOAD = json.dumps({"pad": "x" * 20_000})  # payloads must be JSON
LOAD_THREADS = 16
ROUND_LOAD_S = 6.0
ROUNDS = 3


def trap_setup(fix: bool) -> Callable[[Harness], None]:
    """Every node runs ``chaos.trap_node``, with the replication fix on or off."""

    def setup(h: Harness) -> None:
        for spec in h.cluster.specs:
            h.cluster.node_module[spec.node_id] = "chaos.trap_node"
            h.cluster.node_env[spec.node_id] = {
                "CHAOS_RAFT_FIX": "on" if fix else "off",
                "CHAOS_TRAP_MIN_DEPTH": "1" if fix else "4",
            }

    return setup


class _LogWatch:
    """New lines of one node log since the watch started."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0

    def find(self, needle: str) -> str | None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read().decode(errors="replace")
        except OSError:
            return None
        for line in data.splitlines():
            if needle in line:
                return line
        return None


def _load(h: Harness, round_no: int, stop: threading.Event) -> list[threading.Thread]:
    def worker(t: int) -> None:
        hist = History(h.history_path, f"load-{round_no}-{t}")
        with h.cluster.client(timeout=2, retry_for=4, endpoints=h.cluster.proxy_endpoints) as c:
            i = 0
            while not stop.is_set():
                i += 1
                name, rid = f"big-{round_no}-{t}-{i}", f"big-{h.seed}-{round_no}-{t}-{i}"
                h.call(
                    "create_job",
                    lambda n=name, r=rid: c.create_job(
                        n, cron="0 0 1 1 *", payload=PAYLOAD, request_id=r
                    ),
                    hist=hist,
                    name=name,
                    request_id=rid,
                )

    threads = [
        threading.Thread(target=worker, args=(t,), daemon=True, name=f"chaos-load-{t}")
        for t in range(LOAD_THREADS)
    ]
    for th in threads:
        th.start()
    return threads


def _committed_past(h: Harness, leader: str, line: str, within_s: float = 3.0) -> int | None:
    """Wait (bounded) until the leader has committed and applied what the witness acknowledged
    and then lost, and has had a moment to answer its clients: killing the leader before it
    counts the acknowledgements loses nothing committed, and killing it before it answers loses
    nothing acknowledged (the checker's P4 looks for acknowledged writes). The witness stopped
    listening to this leader when the trap sprang and the laggard is paused, so nothing later
    can reach a majority meanwhile. The leader's commit index, or None."""
    acked = int(line.split("acked=")[1].split()[0])
    deadline = time.monotonic() + within_s
    commit = None
    while time.monotonic() < deadline:
        st = h.cluster.status(leader, timeout=0.5)
        commit = None if st is None else st.commit_index
        if commit is not None and commit >= acked and st is not None and st.applied_index >= acked:
            time.sleep(0.3)  # the replies to the clients whose entries are about to be lost
            break
        time.sleep(0.01)
    return commit


def raft_truncation(h: Harness, duration: float) -> None:
    """Up to ROUNDS rounds, as many as start within ``duration`` (at least one). Once the trap
    has sprung (the control), one more round proves nothing: stop there. The control keeps
    going past ``duration`` until the trap springs (up to ROUNDS): the truncation is a race, and
    on a loaded machine one round of load does not always hit it."""
    deadline = time.monotonic() + duration
    control = any(env.get("CHAOS_RAFT_FIX") == "off" for env in h.cluster.node_env.values())
    for round_no in range(ROUNDS):
        if round_no and time.monotonic() > deadline and not control:
            break
        leader = h.leader()
        followers = [s.node_id for s in h.cluster.specs if s.node_id != leader]
        laggard, witness = followers[0], followers[1]
        watch = _LogWatch(h.cluster.spec(witness).log_path)
        h.pause_node(laggard)
        stop = threading.Event()
        threads = _load(h, round_no, stop)
        sprung = None
        end = time.monotonic() + ROUND_LOAD_S
        while time.monotonic() < end and sprung is None:
            time.sleep(0.01)
            sprung = watch.find("event=trap_regression")
        committed = _committed_past(h, leader, sprung) if sprung else None
        h.nemesis.write(
            "trap",
            round=round_no,
            sprung=sprung is not None,
            line=sprung or "",
            leader=leader,
            witness=witness,
            laggard=laggard,
            leader_commit=committed,
        )
        h.kill_node(leader, leader_fault=True)
        h.resume_node(laggard)
        stop.set()
        for th in threads:
            th.join(timeout=15)
        h.leader(timeout=30)
        h.restart_node(leader)
        time.sleep(3)
        if sprung:
            break
