"""Leader-only dispatch loop.

Each tick, in one Raft entry (a Batch command stamped with the leader's ``now_ms``):
completions received since the last tick, lease expiries, due firings (FireDue: every due slot
up to now, many jobs per entry) and lease grants for pending runs (GrantLeases). Only after
that entry is committed does the leader send the granted firings down the worker streams: a
deposed leader cannot commit, so it cannot hand out work.

Run timeouts: a job's ``run_timeout_ms`` is enforced here, on the leader, because it needs a
clock: a lease held past ``started_ms + run_timeout_ms`` (leader wall-clock time) is expired
through the same committed ExpireLeases command as a missed heartbeat, with the reason "run
timeout", so apply counts it as a failed attempt and stays pure. The deadlines live in memory
(``_deadlines``): added when a grant commits, rebuilt from LMDB on becoming leader and after any
proposal whose outcome is unknown, pruned against the committed leases on every reconcile.

Leadership: on becoming leader the loop commits a Barrier, then rebuilds its memory (leases
from LMDB, each with one fresh lease period) and starts. On losing leadership it stops at once,
forgets its leases and closes every worker stream with a leader hint.

Failure contract: when a tick's entry does not commit (timeout, lost leadership) nothing from it
is sent; completions are answered UNAVAILABLE (the agent resends them), and the lease table is
reconciled with LMDB before the next tick, because the entry may still commit later.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schedd.clock import Clock
from schedd.errors import SchedError, Unavailable
from schedd.pb import api_pb2, command_pb2, types_pb2
from schedd.sched import retention
from schedd.sched.explain import WorkerView
from schedd.sched.schedule import Schedule, compile_schedule, format_duration
from schedd.server import planner, validate
from schedd.server.leases import LeaseTable, completion_verdict
from schedd.server.pending import PendingIndex
from schedd.server.workers import Registry, WorkerSession
from schedd.state.apply import Result, Revoked, encode, features

if TYPE_CHECKING:
    from schedd.raft.adapter import RaftNode
    from schedd.server.metrics import NodeMetrics
    from schedd.state.store import Store

log = logging.getLogger("schedd.dispatcher")

#: compiled schedules the leader keeps (a tick plans at most max_fires_per_tick jobs)
SCHEDULE_CACHE = 8192


@dataclass(frozen=True)
class DispatchSettings:
    lease_ttl_s: float = 10.0
    heartbeat_interval_s: float = 2.0
    retry_backoff_ms: int = 1000
    catchup_window_ms: int = 3600_000  # jobs from before misfire policies: older slots are dropped
    # Cluster-wide pacing of catch-up runs (missed slots fired late, backfills): at most one per
    # this many ms in not_before time, across all jobs (10 ms = 100 catch-up runs per second).
    catchup_spacing_ms: int = 10
    # Slots of jobs that fire ahead (planner.fires_ahead) are committed and leased this long
    # before they are due, to workers that wait for Firing.start_at_ms (feature level 5).
    fire_ahead_ms: int = 100
    max_slots_per_job: int = 100  # per tick; the rest come next tick
    # Bounds on one tick's Raft entry: a smaller entry commits (and reaches workers) sooner;
    # the next tick follows at once while work remains.
    max_fires_per_tick: int = 500
    max_grants_per_tick: int = 1000
    # With the caps below, every list of one tick's entry is bounded, and so is the entry: its
    # worst case stays under the Raft entry limit (tests/unit/test_dispatch_bounds.py).
    max_completion_bytes_per_tick: int = 256 << 10
    max_releases_per_tick: int = 500
    max_timeouts_per_tick: int = 1000
    propose_timeout_s: float = 5.0
    idle_tick_s: float = 0.05
    # Completions that arrive while the loop has nothing else to commit wait up to this long
    # for company (the next fire or grant, or more completions) instead of costing a Raft entry
    # each. Their worker's slot is free at once (the lease table releases it on arrival); only
    # the acknowledgement waits. 0: each wakes the loop.
    completion_linger_s: float = 0.05
    # Queued completions past this count are committed at once, lingering or not.
    completion_linger_max: int = 256
    reconcile_every_s: float = 1.0
    housekeeping_every_s: float = 5.0  # dispatch timeouts and retention
    # Retention visits the job table prune_jobs_per_pass jobs at a time, in name order, for up
    # to prune_budget_s of each housekeeping pass (at least one slice), so that a full pass
    # over the table grows with its size at a bounded cost: about 0.4 % of the leader's time.
    # (A fixed 200 jobs per pass took 7 hours per full pass at a million jobs.)
    prune_jobs_per_pass: int = 200
    prune_budget_s: float = 0.02
    prune_runs_per_entry: int = 1000
    request_ttl_ms: int = 86_400_000  # client request ids dedupe retries for this long
    prune_requests_per_pass: int = 2000


def run_verdict(
    run: types_pb2.Run, completion: api_pb2.Completion, worker_id: str
) -> tuple[str, str] | None:
    """:func:`~schedd.server.leases.completion_verdict` of ``completion`` from ``worker_id``
    against the committed ``run`` (the worker stream's check and CompleteRun's)."""
    return completion_verdict(
        run.state == types_pb2.RUN_STATE_LEASED,
        run.state == types_pb2.RUN_STATE_SUCCEEDED,
        run.fence,
        run.worker_id,
        completion.fence,
        completion.outcome == api_pb2.OUTCOME_SUCCEEDED,
        worker_id,
    )


CompletionCallback = Callable[[str, str], None]  # (status code name, message)


class Dispatcher:
    def __init__(
        self,
        *,
        node_id: str,
        store: Store,
        raft: RaftNode,
        clock: Clock,
        registry: Registry,
        leader_hint: Callable[[], str],
        settings: DispatchSettings | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.node_id = node_id
        self.metrics = metrics  # None: metrics off (no --metrics)
        self.store = store
        self.raft = raft
        self.clock = clock
        self.registry = registry
        self.leader_hint = leader_hint
        self.settings = settings or DispatchSettings()
        self.leases = LeaseTable(self.settings.lease_ttl_s)
        self._lock = threading.Lock()  # guards leases, _completions, _active
        self._wake = threading.Condition(self._lock)
        self._completions: list[tuple[command_pb2.CompleteItem, CompletionCallback]] = []
        self._released: list[command_pb2.ExpireItem] = []  # leases workers gave back (next tick)
        self._active = False
        self.active_since = 0.0  # monotonic time this node started dispatching (as leader)
        self._term = -1
        self._stop = threading.Event()
        self._held = threading.Event()  # hold(): handing leadership over, propose nothing
        self._thread: threading.Thread | None = None
        self._last_reconcile = 0.0
        self._need_reconcile = False
        # compiled schedules by serialized Schedule, the most recently used SCHEDULE_CACHE
        self._schedules: OrderedDict[bytes, Schedule] = OrderedDict()
        self._rr_cursor: dict[str, int] = defaultdict(int)
        # run id -> (fence, deadline ms, timeout ms) of leases whose job has a run timeout
        self._deadlines: dict[str, tuple[int, int, int]] = {}
        self._last_housekeeping = 0.0
        self._prune_cursor = ""
        # (monotonic start, jobs visited, housekeeping passes) of the current full retention pass
        self._prune_pass = (0.0, 0, 0)
        self._request_cursor = ""
        self._level = 0  # the cluster's feature level as last read (it is never lowered)
        self._completions_since = 0.0  # monotonic arrival of the oldest queued completion
        # PENDING runs in grant order, in memory while this node leads (built in the background
        # on activation; the planner reads LMDB until it is ready)
        self.pending = PendingIndex(store)
        self._pending_retry_at = 0.0  # monotonic: rebuild a switched-off index after this

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            # A tick blocked on a proposal that cannot commit (no quorum left) would hold us for
            # the proposal timeout; nothing it could still do matters once we stop.
            self._thread.join(timeout=1.0)
        self._deactivate("node stopping")

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def hold(self) -> None:
        """Propose nothing more (the node is handing leadership over before it stops: a log
        that keeps growing keeps the peers from being caught up, which the transfer needs).
        Streams stay open; :meth:`stop` ends them with the new leader's address."""
        self._held.set()
        self.wake()

    @property
    def active(self) -> bool:
        return self._active

    # ---- inputs from worker streams and RPCs -------------------------------------------------

    def attach(
        self,
        session: WorkerSession,
        running: list[api_pb2.Lease],
        *,
        per_principal: int = 0,
        total: int = 0,
    ) -> tuple[list[api_pb2.Lease], list[api_pb2.Lease]]:
        """Register a worker stream (see ``Registry.attach`` for the identity rule and the
        limits); re-attach the leases it still holds: same fence, granted to its worker id."""
        if not self._active:
            raise Unavailable("this node is not dispatching (not the leader)")
        self.registry.attach(session, per_principal=per_principal, total=total)
        committed = self.store.leases()
        reattached, lost = [], []
        now = self.clock.monotonic()
        with self._lock:
            for lease in running:
                held = committed.get(lease.run_id)
                if held is not None and held == (lease.fence, session.worker_id):
                    self.leases.add(lease.run_id, lease.fence, session.worker_id, now)
                    reattached.append(lease)
                else:
                    lost.append(lease)
        self.wake()
        return reattached, lost

    def detach(self, session: WorkerSession) -> None:
        # Its leases stay until they expire: the worker may reconnect and re-attach them.
        self.registry.detach(session)

    def heartbeat(self, session: WorkerSession, leases: list[api_pb2.Lease]) -> list[api_pb2.Lease]:
        """Renew the leases this session's worker holds (and keep each one's progress text,
        ``Lease.progress``, cut to ``validate.MAX_PROGRESS_BYTES``); return those it does not
        hold (expired, re-granted, finished, or held by another worker)."""
        now = self.clock.monotonic()
        lost = []
        with self._lock:
            for lease in leases:
                if not self.leases.renew(
                    lease.run_id,
                    lease.fence,
                    session.worker_id,
                    now,
                    validate.clip_text(lease.progress, validate.MAX_PROGRESS_BYTES),
                ):
                    lost.append(lease)
        return lost

    def applied(self, result: Result) -> None:
        """Hook for every applied entry (any proposer): tell workers about leases the entry
        revoked (overlap REPLACE, CancelRun), so their handlers stop now rather than at the next
        heartbeat. Wakes the loop on the leader (a follower's loop only watches for becoming
        leader: waking it for every entry cost a thread switch per entry)."""
        if not self._active:
            return
        if result.revoked:
            self._revoke(list(result.revoked))
        self.wake()

    def _revoke(self, revoked: list[Revoked]) -> None:
        with self._lock:
            for r in revoked:
                self.leases.release(r.run_id, r.fence)
                self._deadlines.pop(r.run_id, None)
        self._tell_lost(revoked)
        if self.metrics is not None:
            cancelled = sum(1 for r in revoked if r.reason.startswith("cancelled"))
            self.metrics.lease_expired("cancelled", cancelled)
            self.metrics.lease_expired("replaced", len(revoked) - cancelled)
        log.info(
            "event=leases_revoked runs=%s reason=%r",
            ",".join(f"{r.run_id}@{r.worker_id}" for r in revoked),
            revoked[0].reason,
        )

    def release(
        self, session: WorkerSession, leases: list[api_pb2.Lease], reason: str, *, drain: bool
    ) -> int:
        """The worker gives these leases back (drain timeout, or firings it will not start:
        stopping, or no handler for the job). With ``drain`` (the worker is stopping) the
        session is marked draining: it gets no new grants; without it the stream keeps getting
        new work (a Release of some leases is not a goodbye).
        Each one held under exactly that fence leaves the lease table now and is queued for the
        next tick's ExpireLeases command as a *released* item: apply makes the run PENDING at
        once without using an attempt, and the fence stale. Returns how many were queued.
        Leases not held by this session's worker (already expired, re-granted, completed, or
        another worker's) are ignored: nothing to give back. If the tick's entry does not commit, the lease is back in the table at the next
        reconcile and expires as usual (later, but never lost)."""
        if drain:
            session.draining = True
        why = f"released by worker {session.worker_id}" + (
            f": {validate.clip_text(reason, validate.MAX_RELEASE_REASON_BYTES)}" if reason else ""
        )
        queued = 0
        with self._wake:
            if not self._active:
                return 0
            for lease in leases:
                held = self.leases.get(lease.run_id)
                if held is None or held.fence != lease.fence:
                    continue
                if held.worker_id != session.worker_id:
                    continue
                self.leases.release(lease.run_id, lease.fence)
                self._deadlines.pop(lease.run_id, None)
                self._released.append(
                    command_pb2.ExpireItem(
                        run_id=lease.run_id,
                        fence=lease.fence,
                        reason=why,
                        released=True,
                        worker_id=session.worker_id,
                    )
                )
                queued += 1
            if queued:
                self._wake.notify_all()
        return queued

    def held_by_worker(self) -> dict[str, list[str]]:
        """Run ids of the leases each worker holds now (leader memory; empty on a follower)."""
        with self._lock:
            return self.leases.by_worker()

    def progress_of(self, run_id: str) -> str:
        """The last progress text heartbeated for the run's current lease ('' when none, or when
        this node is not the leader: progress lives in the leader's memory only)."""
        with self._lock:
            lease = self.leases.get(run_id)
            return lease.progress if lease is not None else ""

    def submit_completions(
        self,
        items: list[api_pb2.Completion],
        callback: Callable[[api_pb2.Completion, str, str], None],
        worker_id: str,
    ) -> None:
        """Queue validated, fenced completions from the session of ``worker_id`` for the next
        tick; ``callback(item, code, message)`` is called once per item after the tick's entry
        commits (or fails). Checked first against the committed run, without proposing
        anything: an unknown run is NOT_FOUND, a stale fence ABORTED, a lease held by another
        worker PERMISSION_DENIED. Each queued item carries ``worker_id``; apply checks it
        against the lease's holder again."""
        answers: list[tuple[api_pb2.Completion, str, str]] = []
        with self._wake:
            for c in items:
                if not self._active:
                    answers.append((c, "UNAVAILABLE", "not the leader; resend to the new leader"))
                    continue
                held = self.leases.get(c.run_id)
                if held is None or held.fence != c.fence or held.worker_id != worker_id:
                    # The table holds no lease LMDB does not (leases.py): one it holds for this
                    # fence and worker is the run's committed lease, and the common case skips
                    # reading and parsing the run. Any other answer comes from the run.
                    run = self.store.get_run(c.run_id)
                    if run is None:
                        answers.append((c, "NOT_FOUND", f"run_id: no run {c.run_id!r}"))
                        continue
                    verdict = run_verdict(run, c, worker_id)
                    if verdict is not None:
                        answers.append((c, *verdict))
                        continue
                # The worker freed its slot when it sent this; stop counting the lease against it.
                self.leases.release(c.run_id, c.fence, worker_id)
                item = command_pb2.CompleteItem(
                    run_id=c.run_id,
                    fence=c.fence,
                    success=c.outcome == api_pb2.OUTCOME_SUCCEEDED,
                    error=validate.clip_text(c.error, validate.MAX_ERROR_BYTES),
                    worker_id=worker_id,
                )
                if c.HasField("exit_code"):
                    item.exit_code = c.exit_code
                if not self._completions:
                    self._completions_since = self.clock.monotonic()
                self._completions.append((item, functools.partial(callback, c)))
            if not self._lingering(self.clock.monotonic()):
                self._wake.notify_all()
        for c, code, message in answers:
            callback(c, code, message)

    # ---- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                leader = self.raft.is_leader()
                term = self.raft.raftCurrentTerm
                if not leader or term != self._term:
                    if self._active:
                        self._deactivate("lost leadership" if not leader else "term changed")
                    if leader:
                        self._activate(term)
                    else:
                        self._sleep(self.settings.idle_tick_s)
                    continue
                if self._held.is_set():
                    self._stop.wait(0.01)
                    continue
                self._tick()
            except Exception:  # keep dispatching; a bug here must not silently stop firings
                log.exception("event=dispatch_tick_failed")
                self._need_reconcile = True
                self._sleep(0.2)

    def _sleep(self, seconds: float) -> None:
        with self._wake:
            if self._released:
                return
            if self._completions:
                left = self._linger_left(self.clock.monotonic())
                if left <= 0:
                    return
                seconds = min(seconds, left)
            self._wake.wait(timeout=max(0.0, seconds))

    def _linger_left(self, mono: float) -> float:
        """Seconds the queued completions may still wait for company (<= 0: commit them now).
        Caller holds the lock."""
        s = self.settings
        if len(self._completions) >= s.completion_linger_max:
            return 0.0
        return self._completions_since + s.completion_linger_s - mono

    def _lingering(self, mono: float) -> bool:
        return bool(self._completions) and self._linger_left(mono) > 0

    def _activate(self, term: int) -> None:
        try:
            cmd = command_pb2.Command(
                now_ms=self.clock.now_ms(),
                barrier=command_pb2.BarrierCmd(node_id=self.node_id, term=term),
            )
            self.raft.propose(encode(cmd), self.settings.propose_timeout_s)
        except SchedError as e:
            log.warning("event=barrier_failed term=%d error=%r", term, e.message)
            self._sleep(0.2)
            return
        deadlines = self.store.lease_deadlines()
        with self._lock:
            self.leases.clear()
            self.leases.reconcile(self.store.leases(), self.clock.monotonic())
            self._deadlines = deadlines
            self._term = term
            self._active = True
            self.active_since = self.clock.monotonic()
        self.pending.start()
        log.info(
            "event=dispatch_started node=%s term=%d leases=%d", self.node_id, term, len(self.leases)
        )

    def _deactivate(self, reason: str) -> None:
        self.pending.stop()  # (takes the store's apply lock: not under ours)
        with self._lock:
            was = self._active
            self._active = False
            self._term = -1
            self.leases.clear()
            self._deadlines = {}
            completions, self._completions = self._completions, []
            self._released = []  # the new leader re-attaches or expires those leases
        for _, cb in completions:
            cb("UNAVAILABLE", "leader changed before the completion committed; resend it")
        hint = self.leader_hint()
        self.registry.close_all(f"{self.node_id} stopped leading: {reason}", hint)
        if was:
            log.info(
                "event=dispatch_stopped node=%s reason=%r leader_hint=%s",
                self.node_id,
                reason,
                hint or "-",
            )

    def _tick(self) -> None:
        s = self.settings
        now_ms = self.clock.now_ms()
        mono = self.clock.monotonic()
        if self._need_reconcile or mono - self._last_reconcile >= s.reconcile_every_s:
            committed = self.store.leases()
            # After an unknown outcome a grant may have committed unseen: rebuild the deadlines.
            deadlines = self.store.lease_deadlines() if self._need_reconcile else None
            with self._lock:
                self.leases.reconcile(committed, mono)
                if deadlines is None:
                    deadlines = {
                        r: d
                        for r, d in self._deadlines.items()
                        if committed.get(r, (None, ""))[0] == d[0]
                    }
                self._deadlines = deadlines
            self._last_reconcile = mono
            self._need_reconcile = False

        with self._lock:
            released = self._released[: s.max_releases_per_tick]
            del self._released[: s.max_releases_per_tick]
            for r in released:  # a reconcile above may have put them back; they are given up
                self.leases.release(r.run_id, r.fence)
            expired = self.leases.take_expired(mono)
            for e in expired:
                self._deadlines.pop(e.run_id, None)
            timed_out = self._take_timeouts(now_ms, s.max_timeouts_per_tick)
        chores: list[command_pb2.Command] = []
        if mono - self._last_housekeeping >= s.housekeeping_every_s:
            self._last_housekeeping = mono
            chores = self._housekeeping(now_ms)
            self._restart_pending_index(mono)
        expiries = list(released)
        expiries += [
            command_pb2.ExpireItem(
                run_id=e.run_id,
                fence=e.fence,
                reason=f"lease expired (worker {e.worker_id} sent no heartbeat for {s.lease_ttl_s:g}s)",
            )
            for e in expired
        ]
        expiries += [
            command_pb2.ExpireItem(run_id=t.run_id, fence=t.fence, reason=t.reason)
            for t in timed_out
        ]
        settings = self._plan_settings
        if self.pending.ready:
            self.pending.drain()  # parse what the last entries made PENDING (off the Raft thread)
        plan = planner.plan_tick(
            self.store,
            now_ms,
            settings,
            completions=[],
            expiries=expiries,
            workers=self._free_workers(),
            cursor=self._rr_cursor,
            schedule_of=self._schedule,
            chores=chores,
            pending=self.pending if self.pending.ready else None,
        )
        with self._lock:
            # Completions ride with this tick's other work; alone, they may linger a little
            # for company (completion_linger_s) instead of costing an entry each.
            linger = not plan.commands and self._lingering(self.clock.monotonic())
            completions = [] if linger else self._take_completions()
        plan = planner.add_completions(plan, [i for i, _ in completions], settings)
        if not plan.commands:
            self._sleep(self._idle_wait(now_ms, mono))
            return
        try:
            result = self.raft.propose(encode(plan.batch()), s.propose_timeout_s)
        except SchedError as e:
            log.warning(
                "event=dispatch_propose_failed error=%r completions=%d expiries=%d timeouts=%d fires=%d grants=%d",
                e.message,
                len(completions),
                len(expired),
                len(timed_out),
                plan.fires,
                plan.grants,
            )
            for _, cb in completions:
                cb("UNAVAILABLE", f"completion not committed ({e.message}); resend it")
            self._need_reconcile = True
            self._sleep(0.1)
            return
        try:
            outbox = planner.after_commit(plan, result)
        except planner.NotThisPlan as e:
            # Not this batch's own result (e.g. SKIPPED: the local state was already past this
            # log index, which only a rolled-back journal can cause). Treat it as unknown.
            log.error("event=dispatch_unexpected_result %s", e)
            for _, cb in completions:
                cb("UNAVAILABLE", "completion outcome unknown; resend it")
            self._need_reconcile = True
            self._sleep(0.1)
            return
        m = self.metrics
        if m is not None:
            m.tick_committed(plan, self.clock.now_ms())
        self._execute(outbox, completions)
        self._tell_lost(timed_out)
        if m is not None:
            m.lease_expired("released", len(released))
            m.lease_expired("heartbeat", len(expired))
            m.lease_expired("run_timeout", len(timed_out))

    def _take_completions(self) -> list[tuple[command_pb2.CompleteItem, CompletionCallback]]:
        """The queued completions that fit this tick's byte budget, oldest first (caller holds
        the lock); the rest wait for the next tick."""
        budget = self.settings.max_completion_bytes_per_tick
        n = 0
        for item, _ in self._completions:
            budget -= item.ByteSize() + 8
            if budget < 0 and n:
                break
            n += 1
        taken = self._completions[:n]
        del self._completions[:n]
        return taken

    def _take_timeouts(self, now_ms: int, limit: int) -> list[Revoked]:
        """Remove and return up to ``limit`` leases past their run timeout (caller holds the
        lock). A lease the table no longer holds under that fence (a completion in flight, a
        heartbeat expiry) is dropped: if that completion does not commit, the reconcile rebuilds
        its deadline."""
        out: list[Revoked] = []
        for rid, (fence, deadline, timeout) in list(self._deadlines.items()):
            if len(out) >= limit:
                break
            if deadline > now_ms:
                continue
            del self._deadlines[rid]
            lease = self.leases.get(rid)
            if lease is None or lease.fence != fence:
                continue
            self.leases.release(rid, fence)
            out.append(
                Revoked(
                    rid,
                    fence,
                    lease.worker_id,
                    f"run timeout: still running {format_duration(timeout)} after it started",
                )
            )
        return out

    def _tell_lost(self, lost: list[Revoked]) -> None:
        """Tell each worker at once that these leases are gone (run timeout, overlap replace),
        so its handler (the shell worker's child) is cancelled now, not at the next heartbeat."""
        by_worker: dict[str, list[Revoked]] = defaultdict(list)
        for t in lost:
            by_worker[t.worker_id].append(t)
        for worker_id, items in by_worker.items():
            session = self.registry.get(worker_id)
            if session is not None:
                session.send(
                    api_pb2.ServerMessage(
                        lost=api_pb2.LeasesLost(
                            leases=[api_pb2.Lease(run_id=t.run_id, fence=t.fence) for t in items],
                            reason=items[0].reason,
                        )
                    )
                )

    def _idle_wait(self, now_ms: int, mono: float) -> float:
        wait = self.settings.idle_tick_s
        ahead = self._plan_settings.fire_ahead_ms
        # Wake when a slot is half the window ahead, and fire everything due in the window:
        # slots due within a few ms of each other share an entry and a stream message, and
        # each still has at least half the window to commit and reach its worker.
        lead = ahead - ahead // 2
        for t in (self.store.next_due_ms(), self.store.next_pending_ms()):
            # A time already past is work this tick could not do (no worker with a free slot
            # serves that queue): a worker attaching or finishing wakes the loop, so do not spin.
            if t is not None and t - lead > now_ms:
                wait = min(wait, (t - lead - now_ms) / 1000)
            elif t is not None and t > now_ms:
                # inside the fire-ahead window but not fired (a job that fires once due, or
                # no waiting worker): wake at the due time itself
                wait = min(wait, (t - now_ms) / 1000)
        with self._lock:
            exp = self.leases.next_expiry()
            deadline = min((d for _, d, _ in self._deadlines.values()), default=None)
            if self._completions:
                wait = min(wait, self._linger_left(mono))
        if exp is not None:
            wait = min(wait, exp - mono)
        if deadline is not None:
            wait = min(wait, (deadline - now_ms) / 1000)
        return max(0.001, wait)

    def _execute(
        self,
        outbox: planner.Outbox,
        completions: list[tuple[command_pb2.CompleteItem, CompletionCallback]],
    ) -> None:
        """Carry out what the committed tick decided: answer each completion, hold each granted
        lease (and its run-timeout deadline), send each worker its firings."""
        with self._lock:  # a reconcile may have re-added these while they were in flight
            for (item, _), (code, _msg) in zip(completions, outbox.answers, strict=True):
                if code == "OK":
                    self.leases.release(item.run_id, item.fence)
        for (_, cb), (code, msg) in zip(completions, outbox.answers, strict=True):
            cb(code, msg)
        if not outbox.granted:
            return
        mono = self.clock.monotonic()
        with self._lock:
            for g in outbox.granted:
                self.leases.add(g.firing.run_id, g.firing.fence, g.worker_id, mono)
                if g.deadline_ms:
                    self._deadlines[g.firing.run_id] = (g.firing.fence, g.deadline_ms, g.timeout_ms)
        for worker_id, firings in outbox.firings_by_worker().items():
            session = self.registry.get(worker_id)
            if session is None:
                continue  # gone since the grant: the lease expires and the run is retried
            session.send(api_pb2.ServerMessage(firings=api_pb2.Firings(firings=firings)))
        if self.metrics is not None:
            self.metrics.dispatched(outbox.granted, self.clock.now_ms())

    # ---- planning (reads committed state; decisions are re-checked by apply) -----------------

    def _schedule(self, schedule: types_pb2.Schedule) -> Schedule:
        """Compiled schedules, cached by content, the ``SCHEDULE_CACHE`` most recently used (every
        one-shot job has a schedule of its own: a cache without a bound grew by about 300 bytes
        per job ever fired). One that does not compile (a bug in validation, or stored by an
        older version) is logged and skipped by the planner."""
        key = schedule.SerializeToString(deterministic=True)
        cache = self._schedules
        compiled = cache.get(key)
        if compiled is not None:
            cache.move_to_end(key)
            return compiled
        try:
            compiled = cache[key] = compile_schedule(schedule)
        except SchedError:
            log.error("event=bad_schedule schedule=%r", schedule)
            raise
        if len(cache) > SCHEDULE_CACHE:
            cache.popitem(last=False)
        return compiled

    @property
    def _plan_settings(self) -> planner.PlanSettings:
        s = self.settings
        return planner.PlanSettings(
            max_slots_per_job=s.max_slots_per_job,
            max_fires_per_tick=s.max_fires_per_tick,
            max_grants_per_tick=s.max_grants_per_tick,
            catchup_window_ms=s.catchup_window_ms,
            catchup_spacing_ms=s.catchup_spacing_ms,
            retry_backoff_ms=s.retry_backoff_ms,
            lease_ttl_ms=int(s.lease_ttl_s * 1000),
            fire_ahead_ms=self._fire_ahead_ms(),
            lease_in_fire=self._lease_in_fire(),
        )

    def _cluster_at(self, level: int) -> bool:
        """Whether the cluster runs at feature ``level`` or above; read from the store until it
        does (a feature level is never lowered, so a level reached stays reached)."""
        if self._level < level:
            self._level = self.store.feature_level()
        return self._level >= level

    def _lease_in_fire(self) -> bool:
        """Whether ticks lease the runs they fire in the FireItem: once the cluster runs at
        FIRE_AND_LEASE (every replica then honours ``FireItem.lease_to``)."""
        return self._cluster_at(features.FIRE_AND_LEASE)

    def _fire_ahead_ms(self) -> int:
        """The configured fire-ahead once the cluster runs at the level that revokes early
        runs on pause, delete and update (every replica then does); 0 before."""
        if not self.settings.fire_ahead_ms or not self._cluster_at(features.FIRE_AHEAD):
            return 0
        return self.settings.fire_ahead_ms

    def worker_views(self) -> list[WorkerView]:
        """Every attached worker as plain data for ``job explain`` (draining and silent ones
        too, marked), with the leases it holds now."""
        horizon = self._live_horizon()
        sessions = self.registry.attached()
        with self._lock:
            return [
                WorkerView(
                    w.worker_id,
                    w.queues,
                    w.concurrency,
                    self.leases.count_for(w.worker_id),
                    dict(w.tags),
                    w.jobs,
                    live=not w.closed.is_set() and w.last_seen >= horizon,
                    draining=w.draining,
                )
                for w in sessions
            ]

    def _live_horizon(self) -> float:
        """Workers last heard from before this monotonic time get no new work (below)."""
        return self.clock.monotonic() - 2 * self.settings.heartbeat_interval_s - 0.5

    def _free_workers(self) -> list[planner.FreeWorker]:
        """The workers that may get new work now, with their free slots. Only workers heard from
        within two heartbeat intervals: a frozen worker (SIGSTOP, GC pause, cut link) keeps its
        stream open but would let every retry of a run expire in its hands until the attempts
        are used up."""
        horizon = self._live_horizon()
        sessions = [
            w for w in self.registry.all() if not w.closed.is_set() and w.last_seen >= horizon
        ]
        with self._lock:
            return [
                planner.FreeWorker(
                    w.worker_id,
                    tuple(w.queues),
                    dict(w.tags),
                    w.concurrency - self.leases.count_for(w.worker_id),
                    w.jobs,
                    early=w.waits_for_start,
                )
                for w in sessions
            ]

    # ---- housekeeping: dispatch timeouts, retention ------------------------------------------

    def _restart_pending_index(self, mono: float) -> None:
        """Rebuild the pending index a minute after it switched itself off (a backlog past its
        bound), in case the backlog has shrunk; each attempt reads the backlog once."""
        if not self.pending.overflowed:
            self._pending_retry_at = 0.0
        elif not self._pending_retry_at:
            self._pending_retry_at = mono + 60.0
        elif mono >= self._pending_retry_at:
            self._pending_retry_at = 0.0
            self.pending.start()

    def _housekeeping(self, now_ms: int) -> list[command_pb2.Command]:
        cmds: list[command_pb2.Command] = []
        if self.pending.ready:
            late = [
                command_pb2.DispatchTimeoutItem(run_id=rid, attempt=attempt)
                for rid, attempt in self.pending.dispatch_expired(now_ms, limit=1000)
            ]
        else:
            # Only the 5,000 runs that became ready first are looked at: a run with a deadline
            # behind a longer backlog waits for the index (or for the backlog to shrink).
            late = [
                command_pb2.DispatchTimeoutItem(run_id=r.run_id, attempt=r.attempt)
                for r in self.store.pending_until(now_ms, limit=5000)
                if r.dispatch_deadline_ms and r.dispatch_deadline_ms <= now_ms
            ]
        if late:
            cmds.append(
                command_pb2.Command(
                    dispatch_timeout=command_pb2.DispatchTimeoutCmd(items=late[:1000])
                )
            )
        cmds += planner.plan_dependency_timeouts(self.store, now_ms, limit=1000)
        prune = self._plan_prune(now_ms)
        requests = self._plan_prune_requests(now_ms)
        if prune or requests:
            cmds.append(
                command_pb2.Command(
                    prune_runs=command_pb2.PruneRunsCmd(
                        run_ids=prune,
                        request_ids=requests,
                        request_ttl_ms=self.settings.request_ttl_ms,
                    )
                )
            )
        return cmds

    def _plan_prune_requests(self, now_ms: int) -> list[str]:
        """Request ids recorded more than request_ttl_ms ago, a slice of the table per pass."""
        s = self.settings
        if s.request_ttl_ms <= 0:
            return []
        got = self.store.requests_after(self._request_cursor, s.prune_requests_per_pass)
        self._request_cursor = got[-1][0] if len(got) == s.prune_requests_per_pass else ""
        return [rid for rid, at in got if 0 < at < now_ms - s.request_ttl_ms]

    def _plan_prune(self, now_ms: int) -> list[str]:
        """Finished runs past their job's retention: slices of ``prune_jobs_per_pass`` jobs
        from where the last pass stopped, until ``prune_budget_s`` is spent, the entry is full
        (``prune_runs_per_entry``) or the table ends (the next pass starts it again; a full pass
        is logged as ``event=retention_pass``). Every slice advances the cursor or ends the
        table, so a pass always ends."""
        s = self.settings
        started = self.clock.monotonic()
        if not self._prune_cursor and not self._prune_pass[1]:
            self._prune_pass = (started, 0, 0)
        began, visited, calls = self._prune_pass
        self._prune_pass = (began, visited, calls + 1)
        out: list[str] = []
        while True:
            jobs = self.store.list_jobs(self._prune_cursor, s.prune_jobs_per_pass)
            self._prune_cursor = jobs[-1].name if len(jobs) == s.prune_jobs_per_pass else ""
            for job in jobs:
                if not (job.keep_runs or job.keep_for_ms):
                    continue
                runs = self.store.finished_runs_newest_first(job.name)
                try:
                    out.extend(
                        retention.expired(job, runs, now_ms, s.prune_runs_per_entry - len(out))
                    )
                finally:
                    runs.close()
                if len(out) >= s.prune_runs_per_entry:
                    break
            began, visited, calls = self._prune_pass
            self._prune_pass = (began, visited + len(jobs), calls)
            if not self._prune_cursor:
                # once per full pass; a table done in one housekeeping pass is not worth a line
                (log.info if calls > 1 else log.debug)(
                    "event=retention_pass jobs=%d housekeeping_passes=%d s=%.1f",
                    visited + len(jobs),
                    calls,
                    self.clock.monotonic() - began,
                )
                self._prune_pass = (0.0, 0, 0)
                return out
            if (
                len(out) >= s.prune_runs_per_entry
                or self.clock.monotonic() - started >= s.prune_budget_s
            ):
                return out
