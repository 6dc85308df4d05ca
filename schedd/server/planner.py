"""The leader's dispatch planner, pure: what one tick proposes and what to do once it commits.

``plan_tick(view, inputs, ...) -> TickPlan`` reads committed state through a :class:`PlanView`
(the LMDB store in the node; a dict replica in tests), decides the tick's Batch entry: the
completions and lease expiries handed in, FireDue for every due job (``plan_fires``) and grants
for due PENDING runs (``plan_grants``), and returns it. ``after_commit(plan, result) -> Outbox``
turns the committed entry's result into what the shell must do: answer each completion, add each
granted lease to the lease table, and send each worker its firings. The shell
(:class:`schedd.server.dispatcher.Dispatcher`) only gathers inputs, proposes and executes.

Every decision here is re-checked by apply (compare-and-set on due time, attempt, fence), so a
plan made from a state that has since moved on changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import NamedTuple, Protocol

from schedd import rules
from schedd.errors import SchedError
from schedd.namespaces import present_firing
from schedd.pb import command_pb2, types_pb2
from schedd.sched.firing import plan_fire
from schedd.sched.misfire import is_late
from schedd.sched.schedule import Schedule
from schedd.state import keys
from schedd.state.apply import Result


class PlanView(Protocol):
    """The committed state the planner reads."""

    def due_until(self, now_ms: int, limit: int) -> list[tuple[int, str]]:
        """(due ms, job name) with due ms <= now, earliest first."""
        ...

    def get_job(self, name: str) -> types_pb2.Job | None: ...

    def get_jobs(self, names: Sequence[str]) -> list[types_pb2.Job | None]:
        """``get_job`` of each name, in order (one read of the store for all)."""
        ...

    def pending_in_queue(self, queue: str, now_ms: int, limit: int) -> list[types_pb2.Run]:
        """PENDING runs of one queue whose not-before time has come, earliest first."""
        ...

    def runs_at_or_before(self, job: str, uid: int, at_ms: int, limit: int) -> list[types_pb2.Run]:
        """Records of one job incarnation scheduled at or before ``at_ms``, newest first."""
        ...


class PendingSource(Protocol):
    """The PENDING runs of a queue in grant order, from memory (schedd.server.pending)."""

    def candidates(self, queue: str, horizon_ms: int, limit: int) -> list[Candidate]:
        """Up to ``limit`` runs of ``queue`` ready at or before ``horizon_ms``: highest
        priority first, then oldest ready time, then run id."""
        ...


@dataclass(frozen=True)
class PlanSettings:
    """The planner's bounds (a subset of DispatchSettings)."""

    max_slots_per_job: int = 100
    max_fires_per_tick: int = 500
    max_grants_per_tick: int = 1000
    catchup_window_ms: int = 3600_000
    catchup_spacing_ms: int = 10
    retry_backoff_ms: int = 1000
    lease_ttl_ms: int = 10_000
    # How long before its due time a slot may be committed and leased to a worker that waits
    # for Firing.start_at_ms (FreeWorker.early); 0: only once due. See fires_ahead().
    fire_ahead_ms: int = 0
    # Lease the runs a tick fires in their FireItem (FireItem.lease_to) instead of a GrantItem
    # each: only once the cluster is at feature level FIRE_AND_LEASE.
    lease_in_fire: bool = False


@dataclass(frozen=True)
class FreeWorker:
    """A live worker as the grant planner sees it: ``free`` slots it can take now."""

    worker_id: str
    queues: tuple[str, ...]
    tags: Mapping[str, str]
    free: int
    # The stored (namespace-qualified) names of the jobs it has a handler for; None: any job.
    jobs: frozenset[str] | None = None
    # It honours Firing.start_at_ms (Hello.waits_for_start): it may get runs before they are due.
    early: bool = False


#: The tags of a run that has none (shared: a candidate's tags are never modified).
NO_TAGS: Mapping[str, str] = MappingProxyType({})


class Candidate(NamedTuple):
    """A PENDING run (or one this tick creates) the grant planner may lease out.

    A named tuple, not a dataclass: a tick under load makes one per pending run it looks at
    (hundreds), and a frozen dataclass took 4x as long to build."""

    run_id: str
    attempt: int
    queue: str
    priority: int = 0
    tags: Mapping[str, str] = NO_TAGS
    job: str = ""  # the stored job name ('' only in old tests: any worker may take it)
    ready_ms: int = 0  # its not-before time: the grant order's "oldest first"


def _tags(tags: Mapping[str, str]) -> Mapping[str, str]:
    """A plain copy of a protobuf map, or the shared empty one."""
    return dict(tags) if tags else NO_TAGS


def candidate_of(run: types_pb2.Run) -> Candidate:
    """The planner's view of a stored PENDING run."""
    return Candidate(
        run.run_id,
        run.attempt,
        run.queue,
        run.priority,
        _tags(run.tags),
        run.job,
        run.not_before_ms,
    )


@dataclass(frozen=True)
class TickPlan:
    """One tick's entry: ``commands`` go into one Batch stamped with ``now_ms``. ``completions``
    is the number of completion items at the front of the CompleteRuns command (answered in
    order by :func:`after_commit`)."""

    now_ms: int
    commands: tuple[command_pb2.Command, ...]
    completions: int = 0
    fires: int = 0
    grants: int = 0
    lease_ttl_ms: int = 0

    def batch(self) -> command_pb2.Command:
        return command_pb2.Command(
            now_ms=self.now_ms, batch=command_pb2.Batch(commands=list(self.commands))
        )


@dataclass(frozen=True)
class GrantedLease:
    """A lease the committed entry granted: the run to send, and its deadline when the job has
    a run timeout (``started_ms + run_timeout_ms``; 0: none)."""

    firing: types_pb2.Firing
    worker_id: str
    deadline_ms: int = 0
    timeout_ms: int = 0
    ready_ms: int = 0  # the run's not_before_ms: when it became ready to go (metrics)


@dataclass(frozen=True)
class Outbox:
    """What the shell does after the tick's entry committed."""

    answers: tuple[tuple[str, str], ...] = ()  # (code, message) per completion, in order
    granted: tuple[GrantedLease, ...] = ()

    def firings_by_worker(self) -> dict[str, list[types_pb2.Firing]]:
        out: dict[str, list[types_pb2.Firing]] = defaultdict(list)
        for g in self.granted:
            out[g.worker_id].append(g.firing)
        return dict(out)


ScheduleOf = Callable[[types_pb2.Schedule], Schedule]


def fires_ahead(job: types_pb2.Job) -> bool:
    """Whether ``job``'s slots may be committed before they are due (``fire_ahead_ms``).

    Only jobs whose firing decision cannot depend on what happens in the last moments before
    the slot: misfire-policy jobs with overlap ``allow``, no ``max_concurrent`` and no upstreams.
    For them, firing early decides exactly what firing on time would (a run per slot); what can
    still change in the window (pause, delete, update) revokes the early run in apply
    (:func:`schedd.state.apply.ahead.revoke_early`). Other jobs fire once due, as before."""
    return (
        bool(job.misfire)
        and job.overlap in (types_pb2.OVERLAP_POLICY_UNSPECIFIED, types_pb2.OVERLAP_POLICY_ALLOW)
        and not job.max_concurrent
        and not job.depends_on
    )


def plan_fires(
    view: PlanView, now_ms: int, s: PlanSettings, schedule_of: ScheduleOf
) -> tuple[list[command_pb2.FireItem], list[Candidate], set[str]]:
    """FireDue items for the jobs due now (at most ``max_fires_per_tick`` slots in all), the
    on-time runs they create, which the same tick may grant, and the jobs among them whose
    runs cannot be leased in their item (:func:`schedd.rules.leases_in_fire`). Jobs that :func:`fires_ahead`
    also fire their slots due up to ``fire_ahead_ms`` from now (lateness is still judged at
    ``now_ms``). A job whose schedule no longer compiles is left alone (its due entry stays;
    the error is the caller's to log)."""
    items: list[command_pb2.FireItem] = []
    new_runs: list[Candidate] = []
    no_lease: set[str] = set()
    budget = s.max_fires_per_tick
    horizon = now_ms + max(0, s.fire_ahead_ms)
    due = view.due_until(horizon, limit=s.max_fires_per_tick)
    for (due_ms, name), job in zip(due, view.get_jobs([name for _, name in due]), strict=True):
        if budget <= 0:
            break
        if job is None or job.next_due_ms != due_ms or job.state != types_pb2.JOB_STATE_ACTIVE:
            continue
        ahead = horizon > now_ms and fires_ahead(job)
        if due_ms > now_ms and not ahead:
            continue
        try:
            sched = schedule_of(job.schedule)
        except SchedError:
            continue
        if job.misfire:
            item = plan_fire(
                sched,
                job,
                due_ms,
                now_ms,
                max_slots=min(s.max_slots_per_job, budget),
                horizon_ms=horizon if ahead else None,
            )
            budget -= len(item.slots_ms)
            if job.depends_on:
                item.upstream.extend(match_upstreams(view, job, item.slots_ms, schedule_of))
            items.append(item)
            if job.depends_on:
                continue  # its runs wait for their upstreams: nothing to grant in this tick
            if not rules.leases_in_fire(job):
                no_lease.add(name)
            # Late (catch-up) runs are paced by apply: they wait for their not_before.
            tags = _tags(job.tags)
            new_runs.extend(
                Candidate(
                    keys.run_id(name, job.uid, t),
                    1,
                    job.queue,
                    job.priority,
                    tags,
                    name,
                    d,
                )
                for t, d in zip(item.slots_ms, item.dues_ms, strict=True)
                if not is_late(job, t, d, now_ms)
            )
            continue
        # A job from before misfire policies: every slot in the dispatcher's window fires.
        # With jitter, next_due_ms is the jittered due time; the run's identity is its slot.
        first: int | None = sched.slot_of_due(name, due_ms)
        if (
            job.schedule.kind != types_pb2.SCHEDULE_KIND_AT
            and due_ms < now_ms - s.catchup_window_ms
        ):
            first = sched.next_after(now_ms - s.catchup_window_ms - 1)
        slots: list[int] = []
        nxt = 0  # the schedule ended while nobody dispatched
        if first is not None:
            slots, nxt = sched.slots_due(name, first, now_ms, min(s.max_slots_per_job, budget))
        budget -= len(slots)
        items.append(
            command_pb2.FireItem(
                name=name, uid=job.uid, from_due_ms=due_ms, slots_ms=slots, next_due_ms=nxt
            )
        )
        tags = _tags(job.tags)
        new_runs.extend(
            Candidate(keys.run_id(name, job.uid, t), 1, job.queue, job.priority, tags, name, t)
            for t in slots
        )
    return items, new_runs, no_lease


#: how far back an upstream's slot is looked for (a yearly upstream still matches)
MATCH_BACK_MS = 400 * 86_400_000


def match_upstreams(
    view: PlanView, job: types_pb2.Job, slots: Sequence[int], schedule_of: ScheduleOf
) -> list[command_pb2.UpstreamMatch]:
    """For each upstream of ``job`` (which has depends_on), its latest slot at or before each
    of ``slots`` (0: none, or its schedule does not compile), and a skip record covering that
    slot when one is stored (docs/dependencies.md, "Which upstream run")."""
    out: list[command_pb2.UpstreamMatch] = []
    for up in job.depends_on:
        uj = view.get_job(up)
        m = command_pb2.UpstreamMatch(job=up, uid=uj.uid if uj is not None else 0)
        out.append(m)
        if uj is None:  # deleted: no slot (apply reads the outcome as missing)
            m.slots_ms.extend([0] * len(slots))
            m.records.extend([""] * len(slots))
            continue
        try:
            sched: Schedule | None = schedule_of(uj.schedule)
        except SchedError:
            sched = None
        for slot in slots:
            t = (sched.previous_slot(slot, MATCH_BACK_MS) if sched is not None else None) or 0
            m.slots_ms.append(t)
            m.records.append(covering_record(view, uj, t) if t else "")
    return out


def covering_record(view: PlanView, uj: types_pb2.Job, slot_ms: int) -> str:
    """The id of a skip record of ``uj`` covering ``slot_ms`` whose id is not the slot's own
    ("" when none): apply finds the slot's own record by id."""
    for rec in view.runs_at_or_before(uj.name, uj.uid, slot_ms, 1):
        if (
            rec.state == types_pb2.RUN_STATE_SKIPPED
            and rec.scheduled_ms < slot_ms <= rec.skipped_until_ms
        ):
            return rec.run_id
    return ""


def plan_dependency_timeouts(
    view: DeadlineView, now_ms: int, limit: int
) -> list[command_pb2.Command]:
    """A DependencyTimeoutCmd for the runs waiting for upstreams past their deadline."""
    late = view.dependency_deadlines_until(now_ms, limit)
    if not late:
        return []
    return [command_pb2.Command(dependency_timeout=command_pb2.DependencyTimeoutCmd(run_ids=late))]


class DeadlineView(Protocol):
    def dependency_deadlines_until(self, now_ms: int, limit: int) -> list[str]:
        """Run ids of WAITING runs whose dependency deadline is at or before ``now_ms``."""
        ...


def plan_grants(
    view: PlanView,
    now_ms: int,
    new_runs: Sequence[Candidate],
    workers: Sequence[FreeWorker],
    cursor: MutableMapping[str, int],
    s: PlanSettings,
    pending: PendingSource | None = None,
) -> list[command_pb2.GrantItem]:
    """Grants for due PENDING runs: highest priority first, then oldest (ties: run id); a run goes only to a
    worker of its queue that carries all of its tags, runs its job (``FreeWorker.jobs``) and has a
    free slot, round-robin over the
    queue's workers from ``cursor[queue]`` (advanced in place, kept across ticks so retries do
    not go back to the same worker).

    The stored runs come from ``pending`` (the leader's in-memory index, in grant order) when
    given, else from ``view``: the oldest ``max(4 × want, 200)`` of each queue by ready time,
    among which a higher priority still goes first (a high-priority run behind that many older
    ones waits; the index has no such horizon)."""
    free = {w.worker_id: w.free for w in workers}
    total_free = sum(max(0, f) for f in free.values())
    if total_free <= 0:
        return []
    by_queue: dict[str, list[FreeWorker]] = defaultdict(list)
    for w in workers:
        for q in w.queues:
            by_queue[q].append(w)
    candidates = list(new_runs)
    seen = {c.run_id for c in new_runs}
    want = min(s.max_grants_per_tick, total_free)
    # Runs due within fire_ahead_ms go early, but only to workers that wait for their time.
    horizon = now_ms + max(0, s.fire_ahead_ms) if any(w.early for w in workers) else now_ms
    # Per served queue (a queue without workers cannot starve the others), reading past
    # `want` so that priority and tags can choose among more due runs than free slots.
    limit = max(4 * want, 200)
    for q in by_queue:
        if pending is not None:
            candidates.extend(
                c for c in pending.candidates(q, horizon, limit) if c.run_id not in seen
            )
            continue
        for run in view.pending_in_queue(q, horizon, limit=limit):
            if run.run_id not in seen:
                candidates.append(candidate_of(run))
    # One order for stored runs and the ones this tick fires: a fired run is never older than
    # the backlog, so under overload the backlog still drains oldest first.
    candidates.sort(key=lambda c: (-c.priority, c.ready_ms, c.run_id))
    grants: list[command_pb2.GrantItem] = []
    for c in candidates:
        if len(grants) >= want:
            break
        pool = by_queue.get(c.queue)
        if not pool:
            continue
        early = c.ready_ms > now_ms
        for _ in range(len(pool)):
            w = pool[cursor[c.queue] % len(pool)]
            cursor[c.queue] += 1
            if (
                free[w.worker_id] > 0
                and (w.early or not early)
                and (not c.tags or carries(w.tags, c.tags))
                and (w.jobs is None or runs_job(w.jobs, c.job))
            ):
                free[w.worker_id] -= 1
                grants.append(
                    command_pb2.GrantItem(run_id=c.run_id, attempt=c.attempt, worker_id=w.worker_id)
                )
                break
    return grants


def carries(worker_tags: Mapping[str, str], required: Mapping[str, str]) -> bool:
    """A worker carries a run's tags when it has every one with the same value."""
    return all(worker_tags.get(k) == v for k, v in required.items())


def runs_job(jobs: frozenset[str] | None, job: str) -> bool:
    """A worker runs a job when it announced no job list (any job), or the job is in it."""
    return jobs is None or not job or job in jobs


def plan_tick(
    view: PlanView,
    now_ms: int,
    s: PlanSettings,
    *,
    completions: Sequence[command_pb2.CompleteItem],
    expiries: Sequence[command_pb2.ExpireItem],
    workers: Sequence[FreeWorker],
    cursor: MutableMapping[str, int],
    schedule_of: ScheduleOf,
    chores: Sequence[command_pb2.Command] = (),
    pending: PendingSource | None = None,
) -> TickPlan:
    """One tick's entry, in apply order: completions (they free slots and end runs), expiries,
    FireDue (creates runs), grants (may name runs the FireDue just created), then ``chores``
    (dispatch timeouts, retention). An empty plan has no commands."""
    fires, new_runs, no_lease = plan_fires(view, now_ms, s, schedule_of)
    grants = plan_grants(view, now_ms, new_runs, workers, cursor, s, pending) if workers else []
    granting = len(grants)
    if s.lease_in_fire and fires and grants:
        grants = lease_in_fire(fires, grants, no_lease)
    cmds: list[command_pb2.Command] = []
    if expiries:
        cmds.append(
            command_pb2.Command(
                expire_leases=command_pb2.ExpireLeasesCmd(
                    items=list(expiries), retry_backoff_ms=s.retry_backoff_ms, dead_letter=True
                )
            )
        )
    if fires:
        cmds.append(
            command_pb2.Command(
                fire_due=command_pb2.FireDueCmd(
                    items=fires, catchup_spacing_ms=s.catchup_spacing_ms
                )
            )
        )
    if grants:
        cmds.append(
            command_pb2.Command(
                grant_leases=command_pb2.GrantLeasesCmd(items=grants, lease_ttl_ms=s.lease_ttl_ms)
            )
        )
    cmds += chores
    plan = TickPlan(
        now_ms, tuple(cmds), fires=len(fires), grants=granting, lease_ttl_ms=s.lease_ttl_ms
    )
    return add_completions(plan, completions, s)


def lease_in_fire(
    fires: Sequence[command_pb2.FireItem],
    grants: Sequence[command_pb2.GrantItem],
    no_lease: Collection[str] = (),
) -> list[command_pb2.GrantItem]:
    """Move the grants of runs that ``fires`` creates into the items' ``lease_to`` (feature
    level FIRE_AND_LEASE: apply creates such a run LEASED, writing it once), except for the
    items of the jobs in ``no_lease``; returns the other grants, still GrantItems. Which run
    goes to which worker does not change."""
    where: dict[str, tuple[command_pb2.FireItem, int]] = {}
    for item in fires:
        if item.name in no_lease:
            continue
        for pos, slot in enumerate(item.slots_ms):
            where[keys.run_id(item.name, item.uid, slot)] = (item, pos)
    rest: list[command_pb2.GrantItem] = []
    for g in grants:
        hit = where.get(g.run_id) if g.attempt == 1 else None
        if hit is None:
            rest.append(g)
            continue
        item, pos = hit
        if not item.lease_to:
            item.lease_to.extend([""] * len(item.slots_ms))
        item.lease_to[pos] = g.worker_id
    return rest


def add_completions(
    plan: TickPlan, completions: Sequence[command_pb2.CompleteItem], s: PlanSettings
) -> TickPlan:
    """``plan`` with ``completions`` committed first (they free slots and end runs before the
    rest of the entry applies). The shell may plan a tick before it decides whether queued
    completions go into it."""
    if not completions:
        return plan
    cmd = command_pb2.Command(
        complete_runs=command_pb2.CompleteRunsCmd(
            items=list(completions), retry_backoff_ms=s.retry_backoff_ms, dead_letter=True
        )
    )
    return replace(
        plan,
        commands=(cmd, *plan.commands),
        completions=plan.completions + len(completions),
    )


class NotThisPlan(Exception):
    """The committed result is not this plan's entry's (only a rolled-back journal causes it):
    the caller treats the tick's outcome as unknown."""


def after_commit(plan: TickPlan, result: Result) -> Outbox:
    """What to do once ``plan``'s entry committed with ``result``. Raises :class:`NotThisPlan`
    when ``result`` does not match the plan's commands."""
    if not result.ok or len(result.sub) != len(plan.commands):
        raise NotThisPlan(f"{result.code}: {result.message}")
    subs = dict(zip((c.WhichOneof("body") for c in plan.commands), result.sub, strict=True))
    answers: tuple[tuple[str, str], ...] = ()
    comp = subs.get("complete_runs")
    if comp is not None:
        answers = tuple((code, msg) for code, msg in comp.items)
        if len(answers) != plan.completions:
            raise NotThisPlan(
                f"{len(answers)} completion results for {plan.completions} completions"
            )
    granted: list[GrantedLease] = []
    for kind in ("fire_due", "grant_leases"):  # (FireDue leases its runs from level 6 on)
        sub = subs.get(kind)
        if sub is None:
            continue
        for g in sub.granted:
            run = g.run
            deadline = run.started_ms + g.run_timeout_ms if g.run_timeout_ms > 0 else 0
            granted.append(
                GrantedLease(
                    present_firing(
                        types_pb2.Firing(
                            run_id=run.run_id,
                            job=run.job,
                            scheduled_ms=run.scheduled_ms,
                            attempt=run.attempt,
                            fence=run.fence,
                            payload=g.payload,
                            queue=run.queue,
                            lease_ttl_ms=plan.lease_ttl_ms,
                            # granted before it is due (fire_ahead_ms): the worker waits for it
                            start_at_ms=run.not_before_ms if run.not_before_ms > plan.now_ms else 0,
                        )
                    ),
                    run.worker_id,
                    deadline,
                    g.run_timeout_ms,
                    run.not_before_ms,
                )
            )
    return Outbox(answers, tuple(granted))
