"""schedd on a real local 3-node cluster: (a) burst throughput and (b) lag at a steady rate.

Both parts start a fresh ``LocalCluster`` (3 ``schedd run`` processes on 127.0.0.1, random ports,
product defaults) in a temporary directory, attach one in-process agent ``Worker`` whose handler
does nothing, and always stop the worker and the cluster. The directory is deleted afterwards
unless the part failed or ``keep`` is set; then its path (with ``n*/node.log``) is in the result.

``unsafe_no_fsync=True`` starts every node with ``--unsafe-no-fsync`` (the Raft journal synced
once a second instead of before each commit); the default is the product default, a durable
journal (group commit). Each result says which in ``mode``. CPU figures per measured window:
``cpu_s`` (CPU seconds per process), ``cpu_cores`` (the same divided by the window's length) and
``cpu_us_per_firing`` / ``create_cpu_us_per_job`` (see :func:`cpu_us_per`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from common import CpuMeter, latency_summary_ms, load_average, progress

from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.pb import api_pb2, types_pb2
from schedd.testing import LocalCluster

BENCH_PROCESS = "bench process (worker, client)"
UNSAFE_ARGS = ["--unsafe-no-fsync"]


def mode_name(unsafe_no_fsync: bool, insecure: bool = False, metrics: bool = False) -> str:
    """``durable`` (the product default: durable journal, mutual TLS and a token, no
    metrics), ``unsafe-no-fsync``, ``insecure`` (plaintext, no authentication) or ``metrics``
    (the default plus ``--metrics`` on every node)."""
    if insecure:
        return "insecure"
    if metrics:
        return "metrics"
    return "unsafe-no-fsync" if unsafe_no_fsync else "durable"


def _suffix(unsafe_no_fsync: bool, insecure: bool, metrics: bool = False) -> str:
    if metrics:
        return "-metrics"
    return "-insecure" if insecure else ("-unsafe" if unsafe_no_fsync else "")


def cpu_us_per(cpu_s: dict[str, float | None], count: int) -> dict[str, float | None]:
    """CPU microseconds per item (firing, created job) spent in a measured window by ``nodes``
    (the 3 schedd processes together), by the ``leader`` alone, by the two ``followers``
    together, by the ``bench process`` (the in-process worker and client) and by ``all`` of
    them (the whole box's share of the work). None when a process's CPU time is unknown. The
    window also holds whatever else the processes did then (heartbeats, idle ticks)."""
    nodes = [v for name, v in cpu_s.items() if name != BENCH_PROCESS]
    leader = [v for name, v in cpu_s.items() if name.endswith("(leader)")]
    followers = [
        v for name, v in cpu_s.items() if name != BENCH_PROCESS and not name.endswith("(leader)")
    ]

    def per(values: list[float | None]) -> float | None:
        if count <= 0 or not values or any(v is None for v in values):
            return None
        return round(sum(v for v in values if v is not None) / count * 1e6, 1)

    return {
        "nodes": per(nodes),
        "leader": per(leader),
        "followers": per(followers),
        "bench_process": per([cpu_s.get(BENCH_PROCESS)]),
        "all": per(list(cpu_s.values())),
    }


class AgentEvents(logging.Handler):
    """Receives the agent's log records (``event=... key=value``) at INFO, the level a deployed
    worker logs at (one ``handler_finished`` line per firing), and keeps whether the worker is
    connected and every warning or error it logged. The last ``ring`` records are kept in
    memory and written to ``agent.log`` in the cluster's temp dir when it is kept (writing every
    record to a file during the run would add file I/O to the worker's hot path)."""

    def __init__(self, ring: int = 5000) -> None:
        super().__init__(logging.INFO)
        self.connected = threading.Event()
        self.problems: list[str] = []
        self.recent: deque[logging.LogRecord] = deque(maxlen=ring)

    def emit(self, record: logging.LogRecord) -> None:
        self.recent.append(record)
        msg = record.getMessage()
        if msg.startswith("event=connected"):
            self.connected.set()
        elif record.levelno >= logging.WARNING and len(self.problems) < 200:
            self.problems.append(f"{record.levelname} {msg}")

    def dump(self, path: str) -> None:
        fmt = logging.Formatter(
            "ts=%(asctime)s level=%(levelname)s thread=%(threadName)s %(message)s"
        )
        with open(path, "w") as f:
            for record in list(self.recent):
                f.write(fmt.format(record) + "\n")


def _agent_logger(name: str, events: AgentEvents) -> logging.Logger:
    logger = logging.getLogger(f"bench.agent.{name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(events)
    return logger


@dataclass
class Harness:
    """A running cluster plus one worker; created by ``running_cluster``."""

    cluster: LocalCluster
    client: Client
    worker: Worker
    events: AgentEvents
    leader: str
    started: list[tuple[float, Context]] = field(default_factory=list)

    def node_pids(self) -> dict[str, int]:
        return {node_id: proc.pid for node_id, proc in self.cluster.procs.items()}

    def acked(self) -> int:
        """Completions the leader has acknowledged (= committed through Raft): handlers started
        minus attempts still running or awaiting their ack. Read from the worker's lease book
        (a private attribute: counting ``completion_acked`` log lines instead would need DEBUG
        logging, three formatted lines per firing, and measure that instead of the agent)."""
        shared = self.worker._shared
        with shared.lock:
            return len(self.started) - shared.book.held_count() - shared.book.pending_count()

    def cpu_meter(self) -> CpuMeter:
        pids = {
            f"{nid}{' (leader)' if nid == self.leader else ''}": pid
            for nid, pid in self.node_pids().items()
        }
        pids[BENCH_PROCESS] = os.getpid()
        return CpuMeter(pids)


@contextmanager
def running_cluster(
    name: str,
    concurrency: int,
    keep: bool,
    result: dict[str, Any],
    extra_args: list[str] | None = None,
    server_path: str | None = None,
    secure: bool = True,
    metrics: bool = False,
) -> Iterator[Harness]:
    """Start a fresh 3-node cluster and a connected worker; stop both whatever happens.

    ``result`` receives ``tmp_dir``; the directory is deleted on success unless ``keep``.
    ``server_path`` is put first on the nodes' PYTHONPATH (to measure another tree's server).
    """
    root = tempfile.mkdtemp(prefix=f"schedd-bench-{name}-")
    result["tmp_dir"] = root
    env = dict(os.environ)
    if server_path:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.path.abspath(server_path), env.get("PYTHONPATH")) if p
        )
        env["PYTHONSAFEPATH"] = (
            "1"  # `python -m schedd` would otherwise put the cwd (maybe this repo) first
        )
        result["server_path"] = os.path.abspath(server_path)
    cluster = LocalCluster(
        root, nodes=3, extra_args=extra_args or [], env=env, secure=secure, metrics=metrics
    )
    client: Client | None = None
    worker: Worker | None = None
    events = AgentEvents()
    ok = False
    try:
        progress(f"{name}: starting 3 schedd nodes in {root}")
        cluster.start()
        leader = cluster.wait_for_leader(timeout=30)
        client = cluster.client(timeout=10.0, retry_for=30.0)
        worker = Worker(
            cluster.endpoints,
            credentials=cluster.worker_credentials,
            concurrency=concurrency,
            worker_id=f"bench-{name}",
            logger=_agent_logger(name, events),
        )
        harness = Harness(cluster, client, worker, events, leader)

        @worker.handler("*")
        def _noop(ctx: Context) -> None:
            harness.started.append((time.time(), ctx))

        worker.start()
        if not events.connected.wait(30):
            raise TimeoutError(
                f"worker did not connect within 30 s; logs in {root}/agent.log and n*/node.log"
            )
        progress(f"{name}: leader {leader}, worker connected")
        result["leader"] = leader
        yield harness
        # the leader may have changed during the run; a change is worth knowing about
        result["leader_at_end"] = cluster.leader()
        ok = True
    finally:
        t0 = time.monotonic()
        if worker is not None:
            worker.stop(drain_timeout=2.0)
        if client is not None:
            client.close()
        t1 = time.monotonic()
        cluster.stop()
        result["teardown_s"] = {
            "worker": round(t1 - t0, 2),
            "cluster": round(time.monotonic() - t1, 2),
        }
        if not ok:
            result.setdefault("agent_warnings", events.problems[:20])
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
            result["tmp_dir"] = None
        else:
            events.dump(os.path.join(root, "agent.log"))
            progress(f"{name}: logs kept in {root} (agent.log, n*/node.log)")


def _create_jobs(client: Client, specs: list[tuple[str, dict[str, Any]]], threads: int) -> float:
    """Create every ``(name, kwargs)`` job with ``threads`` concurrent calls; returns seconds taken."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-create") as pool:
        futures = [
            pool.submit(client.create_job, name, request_id=f"bench-{name}", **kw)
            for name, kw in specs
        ]
        for f in futures:
            f.result()
    return time.monotonic() - t0


def _run_states(client: Client, limit: int, prefix: str) -> dict[str, int]:
    """How many of the newest ``limit`` runs of jobs named ``prefix*`` are in each state."""
    counts: dict[str, int] = {}
    for run in client.list_runs(limit=limit):
        if run.job.startswith(prefix):
            state = types_pb2.RunState.Name(run.state)
            counts[state] = counts.get(state, 0) + 1
    return counts


CALIBRATION_JOBS = 256


def _burst_lead(client: Client, jobs: int, threads: int, result: dict[str, Any]) -> float:
    """Seconds from now to the burst's due instant: long enough for all ``jobs`` to be created
    first. Creation speed on a shared machine varies 4x from one minute to the next, so it is
    measured first on this cluster: ``CALIBRATION_JOBS`` one-shot jobs (``cal-*``) due in a day
    (they never fire during the benchmark). The lead is 3 s + 1.5x the creation time that rate
    predicts, and at least the old fixed lead (3 s + N/600 s)."""
    n = min(CALIBRATION_JOBS, max(1, jobs // 10))
    far_ms = int((time.time() + 86400) * 1000)
    took = _create_jobs(client, [(f"cal-{i:04d}", {"at_ms": far_ms}) for i in range(n)], threads)
    rate = n / max(took, 1e-6)
    result["calibration"] = {"jobs": n, "create_s": round(took, 3), "create_per_s": round(rate, 1)}
    return max(3.0 + jobs / 600.0, 3.0 + 1.5 * jobs / rate)


def throughput(
    jobs: int,
    concurrency: int = 512,
    create_threads: int = 32,
    lead_s: float | None = None,
    keep: bool = False,
    timeout_s: float | None = None,
    server_path: str | None = None,
    unsafe_no_fsync: bool = False,
    insecure: bool = False,
    metrics: bool = False,
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    """(a) ``jobs`` one-shot jobs due at one instant; time from that instant until the leader has
    acknowledged (committed) the last completion. Completion times are counted from the agent's
    ``completion_acked`` events; ``list_runs`` confirms the final states afterwards. The due
    instant is ``lead_s`` ahead, by default measured on the cluster (:func:`_burst_lead`).
    ``unsafe_no_fsync``: every node runs with ``--unsafe-no-fsync``; ``insecure``: with
    ``--insecure`` (plaintext, no tokens) instead of mutual TLS and a token. ``extra_args``:
    more ``schedd run`` flags for every node (e.g. ``--fire-ahead 0``)."""
    node_args = (list(UNSAFE_ARGS) if unsafe_no_fsync else []) + list(extra_args)
    result: dict[str, Any] = {
        "mode": mode_name(unsafe_no_fsync, insecure, metrics),
        "node_args": node_args,
        "jobs": jobs,
        "worker_concurrency": concurrency,
        "create_threads": create_threads,
        "measured_by": "agent completion acks (sent by the leader after the completion "
        "entry committed); final states checked with list_runs",
    }
    timeout = timeout_s if timeout_s is not None else 60.0 + jobs / 50.0
    name = "throughput" + _suffix(unsafe_no_fsync, insecure, metrics)
    with running_cluster(
        name,
        concurrency,
        keep,
        result,
        extra_args=node_args,
        server_path=server_path,
        secure=not insecure,
        metrics=metrics,
    ) as h:
        lead = lead_s if lead_s is not None else _burst_lead(h.client, jobs, create_threads, result)
        result["lead_s"] = round(lead, 2)
        due_ms = int((time.time() + lead) * 1000)
        specs = [(f"a-{i:06d}", {"at_ms": due_ms}) for i in range(jobs)]
        progress(
            f"{name}: creating {jobs} one-shot jobs due in {lead:.1f} s ({create_threads} threads)"
        )
        meter = h.cpu_meter()
        meter.start()
        create_s = _create_jobs(h.client, specs, create_threads)
        result["create_cpu_cores"] = meter.stop()
        result["create_cpu_s"] = meter.cpu_s
        result["create_cpu_us_per_job"] = cpu_us_per(meter.cpu_s, jobs)
        result["create_s"] = round(create_s, 3)
        result["create_per_s"] = round(jobs / create_s, 1)
        created_at = time.time()
        due = due_ms / 1000.0
        result["created_before_due_s"] = round(due - created_at, 3)
        result["valid"] = created_at < due
        if created_at >= due:
            progress(
                f"{name}: WARNING creation ended {created_at - due:.2f} s after the due instant"
            )
        progress(
            f"{name}: created in {create_s:.2f} s ({jobs / create_s:.0f}/s); waiting for the due instant"
        )
        meter = h.cpu_meter()
        time.sleep(max(0.0, due - time.time() - 0.05))
        meter.start()
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        acked, acked_at = 0, 0.0
        while acked < jobs and time.monotonic() < deadline:
            time.sleep(0.002)  # the last ack's time to within 2 ms
            if (n := h.acked()) > acked:
                acked, acked_at = n, time.time()
            if time.monotonic() - last_report >= 2.0:
                last_report = time.monotonic()
                progress(f"{name}: {acked}/{jobs} completions committed")
        result["cpu_cores"] = meter.stop()
        result["cpu_s"] = meter.cpu_s
        result["cpu_window_s"] = meter.wall_s
        result["cpu_us_per_firing"] = cpu_us_per(meter.cpu_s, min(jobs, acked))
        result["load_average"] = load_average()
        started = sorted(t for t, _ in h.started)
        result["completed"] = acked
        result["handler_starts"] = len(started)
        if acked:
            drain = acked_at - due
            result["due_to_last_completion_s"] = round(drain, 3)
            result["firings_per_s"] = round(min(jobs, acked) / drain, 1) if drain > 0 else None
            result["due_to_first_handler_ms"] = (
                round((started[0] - due) * 1000, 2) if started else None
            )
            result["due_to_last_handler_s"] = round(started[-1] - due, 3) if started else None
            lags = [t - ctx.scheduled_ms / 1000.0 for t, ctx in h.started]
            result["handler_start_lag"] = latency_summary_ms(lags)
        if acked < jobs:
            result["valid"] = False
            result["error"] = f"only {acked}/{jobs} completions committed within {timeout:.0f} s"
            progress(f"{name}: ERROR {result['error']}")
        time.sleep(0.3)  # the last completion is committed; let followers apply it too
        result["run_states"] = _run_states(h.client, jobs + 10, "a-")
        result["succeeded"] = result["run_states"].get("RUN_STATE_SUCCEEDED", 0)
        result["agent_warnings"] = h.events.problems[:20]
        result["agent_warning_count"] = len(h.events.problems)
        if result["succeeded"] != jobs:
            result["valid"] = False
    return result


def lag(
    jobs: int = 100,
    duration_s: float = 20.0,
    concurrency: int = 512,
    keep: bool = False,
    warmup_s: float = 2.0,
    grace_s: float = 3.0,
    server_path: str | None = None,
    unsafe_no_fsync: bool = False,
    insecure: bool = False,
    metrics: bool = False,
    spread: bool = False,
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    """(b) ``jobs`` cron jobs firing every second (``jobs`` firings/s) for ``duration_s``; lag is
    handler start (``time.time()``) minus the firing's scheduled time, per firing.
    ``spread``: instead, interval jobs of 1 s whose slots are spread evenly over the second
    (job i at i x 1000/jobs ms past each second), so firings come one at a time.
    ``extra_args``: more ``schedd run`` flags for every node (e.g. ``--fire-ahead 0``).
    ``unsafe_no_fsync``: every node runs with ``--unsafe-no-fsync``; ``insecure``: with
    ``--insecure`` (plaintext, no tokens) instead of mutual TLS and a token."""
    node_args = (list(UNSAFE_ARGS) if unsafe_no_fsync else []) + list(extra_args)
    result: dict[str, Any] = {
        "mode": mode_name(unsafe_no_fsync, insecure, metrics),
        "node_args": node_args,
        "jobs": jobs,
        "workload": "spread" if spread else "aligned",
        "cron": "" if spread else "* * * * * *",
        "duration_s": duration_s,
        "rate_per_s": jobs,
        "worker_concurrency": concurrency,
        "measured_by": "time.time() at handler start - ctx.scheduled_ms / 1000",
    }
    name = "lag" + _suffix(unsafe_no_fsync, insecure, metrics)
    with running_cluster(
        name,
        concurrency,
        keep,
        result,
        extra_args=node_args,
        server_path=server_path,
        secure=not insecure,
        metrics=metrics,
    ) as h:
        t0 = time.monotonic()
        if spread:
            step = 1000 // max(1, jobs)
            for first in range(0, jobs, 500):
                h.client.create_jobs(
                    [
                        api_pb2.CreateJobRequest(
                            name=f"lag-{i:04d}",
                            schedule=types_pb2.Schedule(
                                kind=types_pb2.SCHEDULE_KIND_INTERVAL,
                                every_ms=1000,
                                anchor_ms=i * step,
                            ),
                        )
                        for i in range(first, min(jobs, first + 500))
                    ]
                )
            create_s = time.monotonic() - t0
        else:
            specs = [(f"lag-{i:04d}", {"cron": "* * * * * *"}) for i in range(jobs)]
            create_s = _create_jobs(h.client, specs, 16)
        result["create_s"] = round(create_s, 3)
        start = math.ceil(time.time()) + warmup_s
        end = start + duration_s
        result["window"] = [start, end]
        progress(
            f"{name}: {jobs} jobs firing every second; measuring {duration_s:g} s after a {warmup_s:g} s warm-up"
        )
        meter = h.cpu_meter()
        time.sleep(max(0.0, start - time.time()))
        meter.start()
        while time.time() < end:
            time.sleep(min(2.0, max(0.0, end - time.time())))
            if time.time() < end:
                progress(f"{name}: {end - time.time():.0f} s left")
        result["cpu_cores"] = meter.stop()
        result["cpu_s"] = meter.cpu_s
        result["cpu_window_s"] = meter.wall_s
        result["load_average"] = load_average()
        time.sleep(grace_s)  # firings scheduled just before `end` may still be on their way
        in_window = [
            (t, ctx) for t, ctx in list(h.started) if start <= ctx.scheduled_ms / 1000.0 < end
        ]
        run_ids = [ctx.run_id for _, ctx in in_window]
        first: dict[str, float] = {}
        for t, ctx in in_window:
            first[ctx.run_id] = min(t, first.get(ctx.run_id, t))
        by_id = {ctx.run_id: ctx for _, ctx in in_window}
        lags = [first[rid] - by_id[rid].scheduled_ms / 1000.0 for rid in first]
        expected = int(round(jobs * duration_s))
        # the CPU window is the measuring window, which holds exactly the expected firings
        result["cpu_us_per_firing"] = cpu_us_per(result["cpu_s"], expected)
        result["expected_firings"] = expected
        result["firings"] = len(first)
        result["duplicate_deliveries"] = len(run_ids) - len(first)
        result["missing"] = expected - len(first)
        result["lag"] = latency_summary_ms(lags)
        result["agent_warnings"] = h.events.problems[:20]
        result["agent_warning_count"] = len(h.events.problems)
        result["valid"] = result["missing"] == 0
    return result
