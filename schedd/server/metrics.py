"""A node's Prometheus metrics: the instruments, what the hot paths record, the HTTP endpoint.

One :class:`NodeMetrics` per node, on a ``CollectorRegistry`` of its own (never the global
one), so several nodes in one process (tests that start nodes in-process) keep separate
figures. The registry also holds the process,
platform and GC collectors, the scrape-time gauges (:mod:`schedd.server.metrics_state`) and
the gRPC figures (:mod:`schedd.server.metrics_grpc`).

Where each figure comes from, and why there:

* Counters of runs created, slots skipped, runs finished, attempts retried: from the
  :class:`~schedd.state.apply.Tally` on each applied entry's result, in the store's
  ``on_applied`` hook on **every** node. Apply only counts (it reads no clock for it); the
  shell turns the counts into metrics. Every replica therefore reports the same totals for the
  entries it applied since it started.
* Lags: on the leader, in the dispatcher: due time to the commit of the FireDue entry, and a
  run's ready time (``not_before_ms``) to the firing being written to its worker's stream.
  The time a handler starts is known only to the worker: the agent reports it
  (``schedd_agent_handler_start_lag_seconds``, :mod:`schedd.agent.metrics`).
* Raft propose latency and journal fsync latency: hooks on the Raft adapter and the journal.

Invariants: no label carries a job payload, an error text or a run id; labels come from
closed sets (enum names, outcomes, gRPC method names registered on the server, queue names
capped by :data:`schedd.server.metrics_state.MAX_QUEUES`). Recording is cheap: label children
are bound once, histograms take their lock once per batch (:class:`Histogram`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from schedd.errors import InvalidArgument
from schedd.pb import types_pb2
from schedd.server import gc_tuning
from schedd.server.histogram import Series

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from schedd.server.planner import GrantedLease, TickPlan
    from schedd.state.apply import Result

#: due → commit, ready → dispatch, handler start: from a few ms to minutes late (a catch-up)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: handlers: from ms to an hour
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: one write + fdatasync of the journal: 0.1 ms (idle SSD) to a stalled disk
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: a Raft proposal (commit + apply) and a unary RPC
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram(Collector):
    """A histogram family with fixed label names, registered on ``registry``; ``child(*values)``
    returns the :class:`Series` of one label set (bind it once on a hot path)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        bounds: Sequence[float],
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(bounds))
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Series] = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self._children[()] = Series(self.bounds)
        if registry is not None:
            registry.register(self)

    def child(self, *values: str) -> Series:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: labels {self.labelnames}, got {values!r}")
        got = self._children.get(values)
        if got is None:
            with self._lock:
                got = self._children.setdefault(values, Series(self.bounds))
        return got

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            children = list(self._children.items())
        for values, series in children:
            buckets, total = series.snapshot()
            family.add_metric(list(values), buckets, total)
        yield family


class _GcPauses(Collector):
    """``schedd_gc_pause_seconds``: the process's garbage collections by generation, as the
    daemon's :class:`schedd.server.gc_tuning.PauseWatch` timed them (no samples in a process
    that installed none, e.g. tests running nodes in process)."""

    NAME = "schedd_gc_pause_seconds"
    DOC = (
        "Garbage collections of this node's process, by generation (0-2), and how long each "
        "held the interpreter: every thread, Raft heartbeats included, waited that long."
    )

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.NAME, self.DOC, labels=["generation"])]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.NAME, self.DOC, labels=["generation"])
        watch = gc_tuning.WATCH
        if watch is not None:
            for gen, (buckets, total) in sorted(watch.snapshot().items()):
                family.add_metric([str(gen)], buckets, total)
        yield family


def enum_label(name: str, prefix: str) -> str:
    """``SKIP_REASON_CATCHUP_WINDOW`` -> ``catchup_window``: a protobuf enum value as a label."""
    return name.removeprefix(prefix).lower()


#: the final run states a Tally reports, as outcome labels
_FINAL = {
    types_pb2.RUN_STATE_SUCCEEDED: "succeeded",
    types_pb2.RUN_STATE_FAILED: "failed",
    types_pb2.RUN_STATE_DEAD: "dead",
    types_pb2.RUN_STATE_CANCELLED: "cancelled",
}

#: why the leader expired a lease (schedd_lease_expirations_total's reason label)
EXPIRY_REASONS = ("heartbeat", "run_timeout", "released", "replaced", "cancelled")

#: a proposal's outcome (schedd.raft.adapter.RaftNode.propose); everything but "ok" failed
PROPOSE_OUTCOMES = ("ok", "timeout", "not_leader", "not_applied", "unknown", "overloaded")


@dataclass(frozen=True)
class _Labels:
    created: dict[int, Counter]
    skipped: dict[int, Counter]
    finished: dict[int, Counter]
    durations: dict[int, Series]


class NodeMetrics:
    """Every instrument a node records into, on the node's own ``registry``.

    Thread safety: every method may be called from any thread (pysyncobj's tick thread, the
    dispatcher, gRPC threads). The scrape-time collector is added by the node
    (:class:`schedd.server.metrics_state.NodeCollector`), which needs the node itself."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        if GC_COLLECTOR is not None:
            GCCollector(registry=reg)
        reg.register(_GcPauses())

        created = Counter(
            "schedd_runs_created_total",
            "Runs created PENDING, by origin: schedule (a slot fired on time), catchup (a missed "
            "slot fired late), trigger, backfill, chain. Counted by every node as it applies.",
            ["origin"],
            registry=reg,
        )
        skipped = Counter(
            "schedd_slots_skipped_total",
            "Slots that did not fire, by reason (misfire, coalesced, catchup_window, "
            "catchup_limit, overlap, buffer_full, paused, max_runs, dst_gap); a range too long "
            "to count counts once.",
            ["reason"],
            registry=reg,
        )
        finished = Counter(
            "schedd_runs_finished_total",
            "Runs that reached a final state, by outcome: succeeded, failed, dead (a dead letter), "
            "cancelled.",
            ["outcome"],
            registry=reg,
        )
        self.retried = Counter(
            "schedd_run_attempts_retried_total",
            "Failed or expired attempts that will be retried after their backoff.",
            registry=reg,
        )
        self.run_duration = Histogram(
            "schedd_run_duration_seconds",
            "From the grant of a run's last attempt to its end (leader timestamps), by outcome.",
            RUN_BUCKETS,
            ["outcome"],
            registry=reg,
        )
        self.fire_commit_lag = Histogram(
            "schedd_fire_commit_lag_seconds",
            "Leader: per job fired, from its due time (the earliest slot due) to the commit of "
            "the FireDue entry that decided it (fired it, or skipped it by its misfire policy).",
            LAG_BUCKETS,
            registry=reg,
        ).child()
        self.dispatch_lag = Histogram(
            "schedd_dispatch_lag_seconds",
            "Leader: from a run's ready time (due, or the end of its retry backoff or catch-up "
            "pacing) to its firing being sent to a worker.",
            LAG_BUCKETS,
            registry=reg,
        ).child()
        self._counted = (created, finished)
        expirations = Counter(
            "schedd_lease_expirations_total",
            "Leader: leases taken back, by reason: heartbeat (none for a lease period), "
            "run_timeout, released (the worker gave it back), replaced (overlap policy).",
            ["reason"],
            registry=reg,
        )
        self.expirations = {r: expirations.labels(r) for r in EXPIRY_REASONS}
        self.propose_seconds = Histogram(
            "schedd_raft_propose_duration_seconds",
            "Raft proposals made by this node, from the call to the applied result (or failure).",
            RPC_BUCKETS,
            registry=reg,
        ).child()
        failed = Counter(
            "schedd_raft_proposals_failed_total",
            "Raft proposals that did not return a result, by reason: timeout and unknown (the "
            "entry may still commit), not_leader, not_applied, overloaded.",
            ["reason"],
            registry=reg,
        )
        self.proposals_failed = {r: failed.labels(r) for r in PROPOSE_OUTCOMES if r != "ok"}
        self.fsync_seconds = Histogram(
            "schedd_journal_fsync_duration_seconds",
            "One group commit of the Raft journal: the write of the buffered records and "
            "fdatasync.",
            FSYNC_BUCKETS,
            registry=reg,
        ).child()

        origins = {
            v.number: created.labels(enum_label(v.name, "RUN_ORIGIN_"))
            for v in types_pb2.RunOrigin.DESCRIPTOR.values
            if v.number  # UNSPECIFIED: only runs recorded before origins existed
        }
        reasons = {
            v.number: skipped.labels(enum_label(v.name, "SKIP_REASON_"))
            for v in types_pb2.SkipReason.DESCRIPTOR.values
            if v.number
        }
        self._labels = _Labels(
            created=origins,
            skipped=reasons,
            finished={s: finished.labels(o) for s, o in _FINAL.items()},
            durations={s: self.run_duration.child(o) for s, o in _FINAL.items()},
        )

    def totals(self) -> dict[str, float]:
        """The totals the dashboard's cluster view turns into rates (schedd.web.figures), read
        from the same series ``/metrics`` exposes: ``runs_created``, ``finished_<outcome>``,
        ``fire_commit_lag_sum`` and ``fire_commit_lag_count`` (leader only). Cheap: no
        scrape-time collector runs."""
        out: dict[str, float] = {"runs_created": 0.0}
        created, finished = self._counted
        for family in created.collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    out["runs_created"] += s.value
        for family in finished.collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    key = "finished_" + s.labels.get("outcome", "")
                    out[key] = out.get(key, 0.0) + s.value
        buckets, total = self.fire_commit_lag.snapshot()
        out["fire_commit_lag_sum"] = total
        out["fire_commit_lag_count"] = buckets[-1][1] if buckets else 0.0
        return out

    # ---- recording (hot paths) -----------------------------------------------------------

    def applied(self, result: Result) -> None:
        """Count what one applied entry did (the store's on_applied hook, tick thread)."""
        tally = result.tally
        if tally is None:
            return
        labels = self._labels
        for origin, n in tally.created:
            c = labels.created.get(origin)
            if c is not None:
                c.inc(n)
        for reason, n in tally.skipped:
            c = labels.skipped.get(reason)
            if c is not None:
                c.inc(n)
        if tally.retried:
            self.retried.inc(tally.retried)
        if tally.finished:
            # one counter increment and one histogram lock per state, not per run
            by_state: dict[int, list[float]] = {}
            for state, ms in tally.finished:
                got = by_state.get(state)
                if got is None:
                    got = by_state[state] = []
                got.append(ms)
            for state, took in by_state.items():
                c = labels.finished.get(state)
                if c is None:
                    continue
                c.inc(len(took))
                labels.durations[state].observe_many(ms / 1000 for ms in took if ms >= 0)

    def tick_committed(self, plan: TickPlan, commit_ms: int) -> None:
        """Leader: the tick's entry committed at ``commit_ms``: the lag of every job it fired,
        from the job's due time (its earliest slot, jitter included). Per job, not per slot:
        reading every slot of a protobuf repeated field cost more than the rest together. A job
        fired ahead of its due time (--fire-ahead) counts as 0, not as a negative lag."""
        if not plan.fires:
            return
        for cmd in plan.commands:
            if cmd.WhichOneof("body") == "fire_due":
                self.fire_commit_lag.observe_many(
                    [max(0, commit_ms - item.from_due_ms) / 1000 for item in cmd.fire_due.items]
                )

    def dispatched(self, granted: Sequence[GrantedLease], sent_ms: int) -> None:
        """Leader: these firings were written to their workers' streams at ``sent_ms`` (one
        sent ahead of its time counts as 0)."""
        self.dispatch_lag.observe_many(
            max(0, sent_ms - g.ready_ms) / 1000 for g in granted if g.ready_ms > 0
        )

    def lease_expired(self, reason: str, n: int = 1) -> None:
        if n:
            self.expirations[reason].inc(n)

    def propose(self, seconds: float, outcome: str) -> None:
        """The Raft adapter's ``on_propose`` hook."""
        self.propose_seconds.observe(seconds)
        failed = self.proposals_failed.get(outcome)
        if failed is not None:
            failed.inc()

    def fsync(self, seconds: float) -> None:
        """The journal's ``on_sync`` hook (tick thread)."""
        self.fsync_seconds.observe(seconds)


# ---- the HTTP endpoint ---------------------------------------------------------------------


def parse_listen(text: str, flag: str = "--metrics") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6; port 0: any free port) -> (host, port).
    InvalidArgument naming ``flag`` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (sep and host and port.isdigit() and 0 <= int(port) < 65536):
        raise InvalidArgument(flag, f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9100)")
    return host, int(port)


class MetricsServer:
    """``/metrics`` of ``registry`` over plain HTTP on ``listen`` (``HOST:PORT``), in a daemon
    thread. :attr:`port` is the bound port (useful with port 0). InvalidArgument naming
    ``--metrics`` when the address cannot be bound."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, port = parse_listen(listen)
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as e:
            raise InvalidArgument("--metrics", f"cannot listen on {listen}: {e.strerror}") from None
        self._server: WSGIServer = server
        self._thread = thread
        self.host = host
        self.port: int = server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)
