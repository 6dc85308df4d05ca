"""Gauges computed when Prometheus scrapes a node, from its state: nothing on a hot path.

:class:`NodeCollector` reads Raft's status and the LMDB store when ``/metrics`` is fetched.
Every node reports its Raft figures; only the node that is dispatching (the leader) reports
the queue, worker and lease figures, so a ``sum`` over the cluster counts each run once.

The queue figures scan the per-queue pending index and the lease table: O(pending + leased)
per scrape, capped at :data:`MAX_SCAN` keys each (``schedd_metrics_scan_truncated`` says when
the cap was hit, and the figures are then lower bounds). Queue names become label values, at
most :data:`MAX_QUEUES` of them; the rest are summed under ``queue="_other"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schedd.pb import types_pb2
from schedd.state import keys
from schedd.state.apply import features

if TYPE_CHECKING:
    from schedd.server.node import Node

#: queue label values reported at most; further queues are folded into OTHER
MAX_QUEUES = 100
OTHER = "_other"
#: index keys read per scrape at most (pending index, lease table)
MAX_SCAN = 200_000


@dataclass
class QueueBacklog:
    """PENDING runs of one queue: how many, and the ``not_before_ms`` of the oldest one that is
    ready (0: none is ready yet, e.g. all wait out a retry backoff)."""

    pending: int = 0
    oldest_ready_ms: int = 0


def queue_backlog(pending_q_keys: Iterable[bytes], now_ms: int) -> dict[str, QueueBacklog]:
    """Per queue, from keys of the ``pending_q`` index (``queue NUL be64(not_before) run_id``,
    sorted: within a queue the first key is the oldest). Pure."""
    out: dict[str, QueueBacklog] = {}
    for k in pending_q_keys:
        cut = k.find(b"\x00")
        if cut < 0:
            continue
        queue = k[:cut].decode(errors="replace")
        at = keys.from_be64(k[cut + 1 : cut + 9])
        b = out.get(queue)
        if b is None:
            b = out[queue] = QueueBacklog()
        b.pending += 1
        if at <= now_ms and (b.oldest_ready_ms == 0 or at < b.oldest_ready_ms):
            b.oldest_ready_ms = at
    return out


def cap_labels(values: dict[str, int], limit: int = MAX_QUEUES) -> dict[str, int]:
    """At most ``limit`` keys: the largest values keep their own label, the rest are summed
    under :data:`OTHER`. Pure."""
    if len(values) <= limit:
        return values
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[: limit - 1])
    kept[OTHER] = sum(v for _, v in ranked[limit - 1 :])
    return kept


class NodeCollector(Collector):
    """Scrape-time figures of ``node`` (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        st = node.raft.status()
        leader = node.raft.is_leader()
        commit = int(st.get("commit_idx", 0) or 0)  # type: ignore[call-overload]
        yield _gauge("schedd_raft_is_leader", "1 on the Raft leader, 0 elsewhere.", int(leader))
        yield _gauge(
            "schedd_raft_term",
            "This node's current Raft term.",
            int(st.get("raft_term", 0) or 0),  # type: ignore[call-overload]
        )
        yield _gauge(
            "schedd_raft_has_quorum",
            "1 when this node is the leader and hears from a majority (pysyncobj's has_quorum).",
            int(bool(st.get("has_quorum", False))),
        )
        yield _gauge("schedd_raft_commit_index", "The highest log index known committed.", commit)
        yield _gauge(
            "schedd_raft_applied_index",
            "The highest log index applied to this node's LMDB state; commit - applied is the "
            "apply backlog.",
            node.store.applied_index(),
        )
        used, map_size = node.store.usage()
        yield _gauge(
            "schedd_lmdb_used_bytes",
            "Bytes of the LMDB map in use by the state (pages of every table).",
            used,
        )
        yield _gauge(
            "schedd_lmdb_map_size_bytes",
            "The LMDB map's current size on this node; it grows online (event=map_grown).",
            map_size,
        )
        yield _gauge(
            "schedd_lmdb_map_max_bytes",
            "The LMDB map's ceiling (--max-map-size); client writes are refused at 90 % of it.",
            node.store.max_map_size,
        )
        yield _gauge(
            "schedd_cluster_members",
            "Members of the cluster as this node last applied them (schedctl member list).",
            len(node.members()),
        )
        yield _gauge(
            "schedd_cluster_feature_level",
            "The cluster's feature level as this node applied it; below "
            "schedd_node_features_supported on every node: a rolling upgrade is not finished.",
            node.store.feature_level(),
        )
        yield _gauge(
            "schedd_node_features_supported",
            "The highest feature level this node's version supports.",
            features.SUPPORTED,
        )
        changes = CounterMetricFamily(
            "schedd_raft_leader_changes",
            "Times this node saw the Raft leader change to a known leader (its first one included).",
        )
        changes.add_metric([], node.raft.leader_changes)
        yield changes
        yield from _compaction_figures(node)
        dispatching = node.dispatcher.active
        yield _gauge(
            "schedd_dispatcher_active",
            "1 on the node whose dispatcher runs (the leader, after its barrier).",
            int(dispatching),
        )
        if dispatching:
            yield from self._leader_figures()

    def _leader_figures(self) -> Iterator[Metric]:
        node = self._node
        now_ms = node.clock.now_ms()
        workers: dict[str, int] = {}
        for w in node.registry.all():
            if not w.closed.is_set():
                for q in w.queues:
                    workers[q] = workers.get(q, 0) + 1
        g = GaugeMetricFamily(
            "schedd_workers_connected",
            "Leader: worker streams attached, per queue they serve.",
            labels=["queue"],
        )
        for q, n in cap_labels(workers).items():
            g.add_metric([q], n)
        yield g

        truncated = 0
        store = node.store
        with store.read() as txn:
            cur = txn.cursor(db=store.db("pending_q"))
            scanned: list[bytes] = []
            for k in cur.iternext(keys=True, values=False):
                if len(scanned) >= MAX_SCAN:
                    truncated = 1
                    break
                scanned.append(bytes(k))
            backlog = queue_backlog(scanned, now_ms)
            leased: dict[str, int] = {}
            runs_db = store.db("runs")
            n = 0
            for k in txn.cursor(db=store.db("leases")).iternext(keys=True, values=False):
                n += 1
                if n > MAX_SCAN:
                    truncated = 1
                    break
                raw = txn.get(bytes(k), db=runs_db)
                if raw is not None:
                    q = types_pb2.Run.FromString(raw).queue
                    leased[q] = leased.get(q, 0) + 1
            catchup = txn.get(keys.CATCHUP_NEXT, db=store.db("meta"))

        pending = cap_labels({q: b.pending for q, b in backlog.items()})
        gp = GaugeMetricFamily(
            "schedd_runs_pending",
            "Leader: PENDING runs per queue (ready or waiting out a backoff).",
            labels=["queue"],
        )
        for q, v in pending.items():
            gp.add_metric([q], v)
        yield gp
        ages: dict[str, float] = {}
        for q, b in backlog.items():
            label = q if q in pending else OTHER
            age = (now_ms - b.oldest_ready_ms) / 1000 if b.oldest_ready_ms else 0.0
            ages[label] = max(ages.get(label, 0.0), age)
        ga = GaugeMetricFamily(
            "schedd_runs_oldest_pending_age_seconds",
            "Leader: per queue, how long the oldest ready PENDING run has waited for a worker "
            "(0: none ready).",
            labels=["queue"],
        )
        for q, age in ages.items():
            ga.add_metric([q], age)
        yield ga
        gl = GaugeMetricFamily(
            "schedd_runs_leased",
            "Leader: runs leased to a worker (running) per queue.",
            labels=["queue"],
        )
        for q, v in cap_labels(leased).items():
            gl.add_metric([q], v)
        yield gl
        next_ms = keys.from_be64(catchup) if catchup else 0
        yield _gauge(
            "schedd_catchup_backlog_seconds",
            "Leader: how far ahead catch-up pacing (--catchup-rate) has scheduled missed slots "
            "and backfills; above 0 means catch-up runs are being throttled.",
            max(0.0, (next_ms - now_ms) / 1000),
        )
        yield _gauge(
            "schedd_metrics_scan_truncated",
            f"1 when a queue figure stopped at {MAX_SCAN} index keys (then a lower bound).",
            truncated,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, documentation)
    g.add_metric([], value)
    return g


def _compaction_figures(node: Node) -> Iterator[Metric]:
    raft = node.raft
    yield _gauge(
        "schedd_raft_journal_bytes",
        "Size of this node's Raft journal (the entries since its last snapshot). The node "
        "holds it in memory too; a log compaction brings it down.",
        raft.journal.size_bytes,
    )
    yield _gauge(
        "schedd_raft_journal_entries",
        "Entries in this node's Raft journal.",
        len(raft.journal),
    )
    yield _gauge(
        "schedd_raft_snapshot_copying",
        "1 while this node copies its state into a snapshot for a log compaction.",
        int(raft.snapshot_copying),
    )
    counts = raft.compactions
    done = CounterMetricFamily(
        "schedd_raft_log_compactions",
        "Log compactions since the node started, by outcome: kept (the journal was compacted), "
        "failed (event=log_compaction_failed says which step and what to check), superseded (a "
        "snapshot from the leader came during the copy).",
        labels=["outcome"],
    )
    for outcome, n in sorted(counts.by_outcome.items()):
        done.add_metric([outcome], n)
    yield done
    took = CounterMetricFamily(
        "schedd_raft_log_compaction_seconds",
        "Seconds the log compactions' snapshot copies took, their pace's waits included.",
    )
    took.add_metric([], counts.seconds)
    yield took
    paused = CounterMetricFamily(
        "schedd_raft_log_compaction_paused_seconds",
        "Of those, the seconds the copies waited for their pace (--snapshot-copy-rate).",
    )
    paused.add_metric([], counts.paused_seconds)
    yield paused
