"""Power-loss scenarios (F17): nodes run under the power-loss model (``chaos/powerloss.py``), so
a "power cut" is a SIGKILL followed by :func:`chaos.powerloss.cut`, which rolls the node's data
directory back to exactly what its syncs made durable.

Each cut lands right after acknowledged writes: a few job creates (and one delete) go through
the harness's client, recorded in the history like the CRUD thread's, and the victims are
SIGKILLed as soon as the last one is acknowledged. With fsync on, the checker must then find
every acknowledged write (P4), no fence reused (C3/C4), replicas converged (C7) and no lost
firing (P1). With ``--unsafe-no-fsync`` those writes are on no disk yet: the negative control
must see them lost.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable

from chaos import powerloss
from chaos.harness import Harness
from chaos.powerloss_node import ENV_COMPACTION

#: job creates made right before each cut (the last acknowledgement is followed by the SIGKILL)
CUT_WRITES = 5
#: Raft log compaction in power-loss-majority (schedd's default is 50,000 entries or 10 minutes)
COMPACTION = "100:4"
#: seconds one cut-and-recover cycle takes about (writes, cut, restart, election, settle, load)
CYCLE_S = 9.0


def setup(h: Harness, unsafe: bool = False, compaction: str = "") -> None:
    """Every node runs ``chaos.powerloss_node`` with its shadow under ``<out>/shadow/<node>``;
    ``unsafe`` adds ``--unsafe-no-fsync`` to every node; ``compaction`` ("<entries>:<seconds>")
    makes the nodes snapshot and compact their Raft log that often."""
    for spec in h.cluster.specs:
        env = {powerloss.ENV_SHADOW_DIR: powerloss.shadow_dir_for(h.out, spec.node_id)}
        if compaction:
            env[ENV_COMPACTION] = compaction
        h.cluster.node_module[spec.node_id] = "chaos.powerloss_node"
        h.cluster.node_env[spec.node_id] = env
    if unsafe:
        h.cluster.extra_args.append("--unsafe-no-fsync")
    h.h.write(
        "power_model",
        nodes=[s.node_id for s in h.cluster.specs],
        unsafe=unsafe,
        compaction=compaction,
    )


def setup_compacting(h: Harness) -> None:
    """The power model, and a Raft log compacted every 100 entries or 4 s: the cuts also hit
    snapshots being written, renamed into place and installed on followers that fell behind."""
    setup(h, compaction=COMPACTION)


def setup_unsafe(h: Harness) -> None:
    setup(h, unsafe=True)


def _writes(h: Harness, cycle: int, to_delete: list[str]) -> tuple[list[str], float | None]:
    """One delete (of a job acknowledged before the previous cut) and CUT_WRITES creates, one
    after the other; returns the acknowledged creates and the monotonic time of the last
    acknowledgement of any of them."""
    c = h.client()
    last_ack: float | None = None
    if to_delete:
        name = to_delete.pop(0)
        status, _ = h.call("delete_job", lambda: c.delete_job(name), name=name, before_cut=cycle)
        if status == "ok":
            last_ack = time.monotonic()
    acked = []
    for i in range(CUT_WRITES):
        name, rid = f"pl-{cycle}-{i}", f"pl-{h.seed}-{cycle}-{i}"
        status, _ = h.call(
            "create_job",
            functools.partial(c.create_job, name, cron="0 0 1 1 *", request_id=rid),
            name=name,
            request_id=rid,
            before_cut=cycle,
        )
        if status == "ok":
            acked.append(name)
            last_ack = time.monotonic()
    return acked, last_ack


Pick = Callable[[Harness, int, str], list[str]]  # (harness, cycle, leader) -> the nodes to cut


def _cut(h: Harness, cycle: int, pick: Pick, to_delete: list[str]) -> None:
    """Acknowledged writes, then the power cut of the nodes ``pick`` chooses (at one instant),
    their data dirs rolled back by the model, and their restart."""
    leader = h.leader()
    victims = pick(h, cycle, leader)
    terms = {
        n: h._term(n) for n in victims
    }  # before the writes: nothing between the last ack and the cut
    acked, last_ack = _writes(h, cycle, to_delete)
    procs = {n: h.cluster.procs[n] for n in victims}
    for p in procs.values():
        p.send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    for n in victims:
        h.nemesis.write("power_cut", node=n, leader_fault=n == leader, term=terms[n])
        h.faults += 1
    for p in procs.values():
        p.wait(timeout=30)
    restored = {}
    for n in victims:
        s = powerloss.cut(h.cluster.spec(n).data_dir, powerloss.shadow_dir_for(h.out, n))
        restored[n] = {
            "files": s.get("files"),
            "dropped": s.get("dropped"),
            "empty": s.get("empty"),
            "restored": s["restored"],
        }
    h.h.write(
        "power_cut_done",
        cycle=cycle,
        victims=victims,
        leader=leader,
        acked=acked,
        ack_to_kill_ms=None if last_ack is None else round((t_kill - last_ack) * 1000, 2),
        restored=restored,
    )
    to_delete.extend(acked[:1])
    for n in victims:
        h.restart_node(n)
    h.leader(timeout=60)


def _cycles(h: Harness, duration: float, min_cuts: int, pick: Pick) -> None:
    end = time.monotonic() + duration
    to_delete: list[str] = []
    cycle = 0
    while cycle < min_cuts or time.monotonic() + CYCLE_S <= end:
        _cut(h, cycle, pick, to_delete)
        cycle += 1
        time.sleep(3)  # the workload runs on the recovered cluster before the next cut


def _all_nodes(h: Harness, cycle: int, leader: str) -> list[str]:
    return [s.node_id for s in h.cluster.specs]


def _majority(h: Harness, cycle: int, leader: str) -> list[str]:
    """Alternately the leader with followers, and followers only (the leader survives alone):
    a majority either way."""
    others = [s.node_id for s in h.cluster.specs if s.node_id != leader]
    k = len(h.cluster.specs) // 2 + 1
    if cycle % 2 == 0 or len(others) < k:
        return [leader, *h.rng.sample(others, k - 1)]
    return h.rng.sample(others, k)


def power_loss_majority(h: Harness, duration: float) -> None:
    """Cut the power of a majority at once, right after acknowledged writes; at least twice."""
    _cycles(h, duration, 2, _majority)


def power_loss_all(h: Harness, duration: float) -> None:
    """Cut the power of every node at once, right after acknowledged writes; at least twice."""
    _cycles(h, duration, 2, _all_nodes)


def control_power_loss_unsafe(h: Harness, duration: float) -> None:
    """``power-loss-all`` with ``--unsafe-no-fsync``, three cuts: the writes right before a cut
    survive only if a node's once-a-second checkpoint fell between them and the cut."""
    _cycles(h, duration, 3, _all_nodes)
