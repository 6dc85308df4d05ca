"""The replicated state machine: ``apply(reader, data, index) -> (mutations, Result)``.

Contract (every replica relies on it):

* **Deterministic.** The output depends only on the state read through ``reader``, the command
  bytes and the log index. No clock, randomness, environment, time-zone data or I/O: the leader
  stamps ``now_ms`` and every computed due time into the command.
* **Idempotent by log index.** The mutations always include ``meta.applied_index = index``; an
  entry at or below the stored applied index returns ``SKIPPED`` with no mutations (pysyncobj
  re-applies its journal on every restart).
* **Never raises.** Garbage, unknown command types and domain rejections (not found, stale fence,
  duplicate) are results, identical on every replica. Only the caller's storage failures (disk
  full) escape, and they stop the process before the entry is recorded.
* **Compare-and-set everywhere the leader acted on a read.** FireDue, grants, expiries and
  completions carry what the leader saw (due time, attempt, fence) and are no-ops when the state
  has moved on, so a late or duplicated proposal (a deposed leader's entry committed after all)
  cannot fire a slot twice or revive an old lease.
* **A command's meaning never changes.** A failed attempt is retried after the job's
  RetryPolicy backoff (``schedd.sched.retry``: exact arithmetic, no libm) or, for a job without one,
  the fixed backoff in the command. A run that ends failing becomes DEAD only when the command
  carries ``dead_letter``; entries written before dead letters existed still end in FAILED.

The caller executes the mutations in one storage transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from google.protobuf.message import DecodeError

from schedd.pb import command_pb2, types_pb2
from schedd.sched import retry
from schedd.state import keys

COMMAND_VERSION = 1

Job = types_pb2.Job
Run = types_pb2.Run


class Reader(Protocol):
    """Read access to committed state: ``get(db, key)`` (None when absent) and ``scan(db,
    prefix, limit)``: the first ``limit`` keys starting with ``prefix``, in key order."""

    def get(self, db: str, key: bytes) -> bytes | None: ...

    def scan(self, db: str, prefix: bytes, limit: int) -> list[bytes]: ...


@dataclass(frozen=True)
class Put:
    db: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Delete:
    db: str
    key: bytes


Mutation = Put | Delete


@dataclass(frozen=True)
class Granted:
    """A lease granted by this entry: the leader sends ``run`` to ``run.worker_id``.
    ``run_timeout_ms`` is the job's (0 = none): the leader expires the lease at
    ``run.started_ms + run_timeout_ms``."""

    run: Run
    payload: str
    run_timeout_ms: int = 0


@dataclass(frozen=True)
class Revoked:
    """A lease this entry took away from a worker (overlap REPLACE): the leader tells it."""

    run_id: str
    fence: int
    worker_id: str
    reason: str


@dataclass(frozen=True)
class Result:
    """What an entry did. ``code`` is a gRPC status-code name (``OK``, ``NOT_FOUND``, ...)."""

    code: str = "OK"
    message: str = ""
    job: Job | None = None
    run: Run | None = None
    granted: tuple[Granted, ...] = ()
    items: tuple[tuple[str, str], ...] = ()  # per-item (code, message) for completions
    count: int = 0
    sub: tuple[Result, ...] = ()
    revoked: tuple[Revoked, ...] = ()  # on the entry's top-level result
    existing: int = 0                  # BackfillCmd: slots that already had a record

    @property
    def ok(self) -> bool:
        return self.code == "OK"


SKIPPED = Result(code="SKIPPED", message="entry at or below the applied index")


class Txn:
    """A write overlay over a Reader: reads see earlier writes; writes become mutations."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._writes: dict[tuple[str, bytes], bytes | None] = {}
        self.mutations: list[Mutation] = []
        self.revoked: list[Revoked] = []

    def get(self, db: str, key: bytes) -> bytes | None:
        k = (db, key)
        if k in self._writes:
            return self._writes[k]
        return self._reader.get(db, key)

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self._writes[(db, key)] = value
        self.mutations.append(Put(db, key, value))

    def delete(self, db: str, key: bytes) -> None:
        self._writes[(db, key)] = None
        self.mutations.append(Delete(db, key))

    def scan(self, db: str, prefix: bytes, limit: int) -> list[bytes]:
        """Keys with ``prefix`` in key order, earlier writes of this entry included."""
        found = set(self._reader.scan(db, prefix, limit + len(self._writes)))
        for (d, k), v in self._writes.items():
            if d == db and k.startswith(prefix):
                if v is None:
                    found.discard(k)
                else:
                    found.add(k)
        return sorted(found)[:limit]

    # typed helpers -------------------------------------------------------------------------

    def job(self, name: str) -> Job | None:
        raw = self.get("jobs", name.encode())
        return None if raw is None else Job.FromString(raw)

    def put_job(self, job: Job) -> None:
        self.put("jobs", job.name.encode(), job.SerializeToString(deterministic=True))

    def run(self, rid: str) -> Run | None:
        raw = self.get("runs", rid.encode())
        return None if raw is None else Run.FromString(raw)

    def put_run(self, run: Run) -> None:
        self.put("runs", run.run_id.encode(), run.SerializeToString(deterministic=True))

    def counter(self, key: bytes, default: int) -> int:
        raw = self.get("meta", key)
        return default if raw is None else keys.from_be64(raw)


def encode(cmd: command_pb2.Command) -> bytes:
    if not cmd.version:
        cmd.version = COMMAND_VERSION
    return cmd.SerializeToString(deterministic=True)


def apply(reader: Reader, data: bytes, index: int) -> tuple[list[Mutation], Result]:
    """Apply one log entry. See the module docstring for the contract."""
    txn = Txn(reader)
    if index <= txn.counter(keys.APPLIED_INDEX, 0):
        return [], SKIPPED
    try:
        cmd = command_pb2.Command.FromString(data)
    except (DecodeError, ValueError) as e:
        result = Result("INVALID_ARGUMENT", f"command: undecodable entry ({type(e).__name__})")
    else:
        if cmd.version != COMMAND_VERSION:
            result = Result("INVALID_ARGUMENT", f"command.version: {cmd.version} is not supported (want {COMMAND_VERSION})")
        else:
            result = _apply_with_request_id(txn, cmd, index)
    if txn.revoked:
        result = replace(result, revoked=tuple(txn.revoked))
    txn.put("meta", keys.APPLIED_INDEX, keys.be64(index))
    return txn.mutations, result


def _apply_with_request_id(txn: Txn, cmd: command_pb2.Command, index: int) -> Result:
    rid = cmd.request_id
    if rid:
        seen = txn.get("requests", rid.encode())
        if seen is not None:
            return _replay_result(txn, json.loads(seen))
    result = _dispatch(txn, cmd, index, cmd.now_ms)
    if rid:
        record = {"code": result.code, "message": result.message, "at": cmd.now_ms,
                  "job": result.job.name if result.job is not None else "",
                  "run": result.run.run_id if result.run is not None else ""}
        txn.put("requests", rid.encode(), json.dumps(record, sort_keys=True).encode())
    return result


def request_recorded_at(raw: bytes) -> int:
    """When a request record was written (``now_ms`` of its entry); 0 if unknown (records
    from before the time was stored, or unreadable)."""
    try:
        return int(json.loads(raw).get("at", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def _replay_result(txn: Txn, record: dict[str, Any]) -> Result:
    """The answer to a retried request: the first outcome, with the objects as they are now."""
    job = txn.job(record["job"]) if record.get("job") else None
    run = txn.run(record["run"]) if record.get("run") else None
    return Result(record["code"], record["message"], job=job, run=run)


def _dispatch(txn: Txn, cmd: command_pb2.Command, index: int, now_ms: int) -> Result:
    kind = cmd.WhichOneof("body")
    handler = _HANDLERS.get(kind or "")
    if handler is None:
        return Result("INVALID_ARGUMENT", f"command.body: unknown command type {kind!r}")
    return handler(txn, cmd, index, cmd.now_ms or now_ms)


# ---- jobs ------------------------------------------------------------------------------------

_ACTIVE_STATES = (types_pb2.RUN_STATE_PENDING, types_pb2.RUN_STATE_LEASED)
FINISHED_STATES = (types_pb2.RUN_STATE_SUCCEEDED, types_pb2.RUN_STATE_FAILED, types_pb2.RUN_STATE_CANCELLED,
                   types_pb2.RUN_STATE_DEAD, types_pb2.RUN_STATE_SKIPPED)
_MAX_CHAIN_WALK = 10_000


def _missing(name: str) -> Result:
    return Result("NOT_FOUND", f"name: no job named {name!r}")


def _chain_error(txn: Txn, name: str, on_success: str, on_failure: str) -> Result | None:
    """INVALID_ARGUMENT when a chain target is missing or the new edges close a cycle."""
    for fld, target in (("on_success", on_success), ("on_failure", on_failure)):
        if not target:
            continue
        if target == name:
            return Result("INVALID_ARGUMENT", f"{fld}: a job cannot chain to itself")
        if txn.job(target) is None:
            return Result("INVALID_ARGUMENT", f"{fld}: no job named {target!r}")
    for fld, target in (("on_success", on_success), ("on_failure", on_failure)):
        if not target:
            continue
        # Depth-first over the stored chain edges, looking for a way back to `name`.
        parent: dict[str, str] = {target: name}
        stack = [target]
        steps = 0
        while stack:
            cur = stack.pop()
            steps += 1
            if steps > _MAX_CHAIN_WALK:
                return Result("INVALID_ARGUMENT", f"{fld}: the chain from {target!r} is longer than "
                                                  f"{_MAX_CHAIN_WALK} jobs")
            job = txn.job(cur)
            if job is None:
                continue
            for nxt in (job.on_success, job.on_failure):
                if not nxt or nxt in parent:
                    continue
                parent[nxt] = cur
                if nxt == name:
                    path = [name]
                    while path[-1] != target:
                        path.append(parent[path[-1]])
                    path.append(name)
                    return Result("INVALID_ARGUMENT", f"{fld}: chaining to {target!r} makes a cycle: "
                                                      + " -> ".join(reversed(path)))
                stack.append(nxt)
    return None


def _create_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    job = Job()
    job.CopyFrom(cmd.create_job.job)
    if not job.name:
        return Result("INVALID_ARGUMENT", "name: is required")
    if txn.get("jobs", job.name.encode()) is not None:
        return Result("ALREADY_EXISTS", f"name: a job named {job.name!r} already exists")
    err = _chain_error(txn, job.name, job.on_success, job.on_failure)
    if err is not None:
        return err
    job.uid = index
    job.created_ms = now
    job.version = 1
    job.state = types_pb2.JOB_STATE_ACTIVE if job.next_due_ms else types_pb2.JOB_STATE_FINISHED
    if job.next_due_ms:
        txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
    txn.put_job(job)
    return Result(job=job)


def _update_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    new = Job()
    new.CopyFrom(cmd.update_job.job)
    job = txn.job(new.name)
    if job is None:
        return _missing(new.name)
    want = cmd.update_job.expect_version
    if want and max(job.version, 1) != want:
        return Result("FAILED_PRECONDITION", f"expect_version: job {job.name!r} is at version "
                                             f"{max(job.version, 1)}, not {want}; read it again and retry", job=job)
    err = _chain_error(txn, new.name, new.on_success, new.on_failure)
    if err is not None:
        return err
    same_schedule = (new.schedule.SerializeToString(deterministic=True)
                     == job.schedule.SerializeToString(deterministic=True))
    next_due = job.next_due_ms if same_schedule else new.next_due_ms
    if job.state == types_pb2.JOB_STATE_ACTIVE and job.next_due_ms:
        txn.delete("due", keys.due_key(job.next_due_ms, job.name))
    for f in ("uid", "created_ms", "state", "fired_runs", "buffered_run", "open_skip", "paused_ms", "resumed_ms"):
        setattr(new, f, getattr(job, f))
    if not same_schedule:
        new.open_skip = ""  # the new slot sequence starts its own skip records
    new.version = max(job.version, 1) + 1
    new.updated_ms = now
    new.next_due_ms = next_due
    if new.max_runs and new.fired_runs >= new.max_runs:
        new.next_due_ms = 0
    if new.state != types_pb2.JOB_STATE_PAUSED:
        new.state = types_pb2.JOB_STATE_ACTIVE if new.next_due_ms else types_pb2.JOB_STATE_FINISHED
    if new.state == types_pb2.JOB_STATE_ACTIVE:
        txn.put("due", keys.due_key(new.next_due_ms, new.name), b"")
    if new.buffered_run and new.overlap != types_pb2.OVERLAP_POLICY_BUFFER_ONE:
        _promote_buffered(txn, new, now)
    txn.put_job(new)
    return Result(job=new)


def _delete_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.delete_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    if job.next_due_ms and job.state == types_pb2.JOB_STATE_ACTIVE:
        txn.delete("due", keys.due_key(job.next_due_ms, name))
    if job.buffered_run:
        run = txn.run(job.buffered_run)
        if run is not None and run.state == types_pb2.RUN_STATE_WAITING:
            run.state = types_pb2.RUN_STATE_CANCELLED
            run.finished_ms = now
            run.error = "job was deleted"
            txn.put_run(run)
    txn.delete("jobs", name.encode())
    # Its PENDING runs are cancelled lazily, when the dispatcher tries to grant them.
    return Result(job=job)


def _pause_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.pause_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    if job.state == types_pb2.JOB_STATE_ACTIVE:
        if job.next_due_ms:
            txn.delete("due", keys.due_key(job.next_due_ms, name))
        job.state = types_pb2.JOB_STATE_PAUSED
        job.paused_ms = now
        job.resumed_ms = 0
        txn.put_job(job)
    return Result(job=job)


def _resume_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    body = cmd.resume_job
    job = txn.job(body.name)
    if job is None:
        return _missing(body.name)
    if job.state != types_pb2.JOB_STATE_PAUSED:
        return Result(job=job)
    if body.mode == command_pb2.RESUME_MISFIRE:
        pass  # keep next_due_ms: FireDue applies the misfire policy to the slots missed
    elif body.mode == command_pb2.RESUME_SKIP_MISSED:
        if job.next_due_ms != body.from_due_ms:
            return Result("FAILED_PRECONDITION", f"name: job {job.name!r} changed while resuming; retry", job=job)
        if body.missed_first_ms and body.missed_first_ms <= now:
            _skip(txn, job, body.missed_first_ms, types_pb2.SKIP_REASON_PAUSED, now, until=now, count=0, merge=False)
        job.next_due_ms = body.next_due_ms
    else:
        job.next_due_ms = body.next_due_ms
    job.resumed_ms = now or 1
    if job.max_runs and job.fired_runs >= job.max_runs:
        job.next_due_ms = 0
    if job.next_due_ms:
        job.state = types_pb2.JOB_STATE_ACTIVE
        txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
    else:
        job.state = types_pb2.JOB_STATE_FINISHED
    txn.put_job(job)
    return Result(job=job)


# ---- runs: creation, overlap, skip records, endings --------------------------------------------


def _job_of(txn: Txn, run: Run) -> Job | None:
    """The job incarnation ``run`` belongs to (None: deleted, or deleted and re-created)."""
    job = txn.job(run.job)
    if job is None or job.uid != keys.uid_of_run_id(run.run_id):
        return None
    return job


def _pend(txn: Txn, run: Run) -> None:
    """Index a PENDING run by due time, overall and per queue (the grant planner reads the
    queues its workers serve, so a queue nobody serves cannot starve the others)."""
    txn.put("pending", keys.pending_key(run.not_before_ms, run.run_id), b"")
    txn.put("pending_q", keys.queue_pending_key(run.queue, run.not_before_ms, run.run_id), b"")


def _unpend(txn: Txn, run: Run) -> None:
    txn.delete("pending", keys.pending_key(run.not_before_ms, run.run_id))
    txn.delete("pending_q", keys.queue_pending_key(run.queue, run.not_before_ms, run.run_id))


def _active_key(run: Run, uid: int | None = None) -> bytes:
    return keys.active_key(run.job, keys.uid_of_run_id(run.run_id) if uid is None else uid,
                           run.scheduled_ms, run.run_id)


def _rid(job: Job, slot_ms: int, origin: int) -> str:
    if origin in (types_pb2.RUN_ORIGIN_TRIGGER, types_pb2.RUN_ORIGIN_CHAIN):
        return keys.manual_run_id(job.name, job.uid, slot_ms)
    return keys.run_id(job.name, job.uid, slot_ms)


def _new_run(txn: Txn, job: Job, scheduled_ms: int, not_before_ms: int, manual: bool,
             origin: int = types_pb2.RUN_ORIGIN_SCHEDULE, caused_by: str = "") -> Run:
    job.open_skip = ""  # a later skip must not extend a record over this run's slot
    run = Run(run_id=_rid(job, scheduled_ms, origin), job=job.name,
              scheduled_ms=scheduled_ms, state=types_pb2.RUN_STATE_PENDING, attempt=1,
              not_before_ms=not_before_ms, queue=job.queue, manual=manual,
              origin=cast(Any, origin), priority=job.priority, caused_by=caused_by)
    if job.tags:
        run.tags.update(job.tags)
    if job.dispatch_timeout_ms:
        run.dispatch_deadline_ms = not_before_ms + job.dispatch_timeout_ms
    txn.put_run(run)
    txn.put("runs_by_job", keys.by_job_key(job.name, scheduled_ms, run.run_id), b"")
    _pend(txn, run)
    txn.put("active", _active_key(run, job.uid), b"")
    return run


def _skip(txn: Txn, job: Job, slot_ms: int, reason: int, now: int, *, until: int = 0, count: int = 1,
          merge: bool = True, origin: int = types_pb2.RUN_ORIGIN_SCHEDULE, note: str = "") -> Run | None:
    """Record that slots ``slot_ms .. until`` did not fire, and why. With ``merge``, a skip
    right after the job's open skip record with the same reason extends that record instead
    (a long overlap or outage makes one record, not thousands). The caller saves ``job``."""
    until = max(until, slot_ms)
    if merge and job.open_skip:
        rec = txn.run(job.open_skip)
        if (rec is not None and rec.state == types_pb2.RUN_STATE_SKIPPED and rec.skip_reason == reason
                and rec.skipped_until_ms < slot_ms):
            rec.skipped_until_ms = until
            rec.skipped_count = rec.skipped_count + count if rec.skipped_count and count else 0
            rec.finished_ms = now
            txn.put_run(rec)
            return rec
    rid = _rid(job, slot_ms, origin)
    while txn.get("runs", rid.encode()) is not None:
        # The first slot has its own record (a trigger at that millisecond, an earlier skip):
        # the range record starts just after it, so the rest of the range is still covered.
        slot_ms += 1
        if slot_ms > until:
            return None
        rid = _rid(job, slot_ms, origin)
    rec = Run(run_id=rid, job=job.name, scheduled_ms=slot_ms, state=types_pb2.RUN_STATE_SKIPPED,
              skip_reason=cast(Any, reason), skipped_until_ms=until, skipped_count=count, finished_ms=now,
              queue=job.queue, origin=cast(Any, origin), note=note)
    txn.put_run(rec)
    txn.put("runs_by_job", keys.by_job_key(job.name, slot_ms, rid), b"")
    job.open_skip = rid if merge else ""
    return rec


def _cancel_active(txn: Txn, run: Run, now: int, why: str) -> None:
    """End an active run as CANCELLED: its lease (if any) is revoked and its fence is stale."""
    if run.state == types_pb2.RUN_STATE_LEASED:
        txn.delete("leases", run.run_id.encode())
        txn.revoked.append(Revoked(run.run_id, run.fence, run.worker_id, why))
    elif run.state == types_pb2.RUN_STATE_PENDING:
        _unpend(txn, run)
    run.state = types_pb2.RUN_STATE_CANCELLED
    run.finished_ms = now
    run.note = why
    txn.put_run(run)
    txn.delete("active", _active_key(run))


RUN, BUFFER = 0, -1


def _admit(txn: Txn, job: Job, now: int, override: int, new_rid: str) -> int:
    """The overlap decision for a new run of ``job``: RUN, BUFFER, or a SkipReason. REPLACE
    cancels the oldest active runs here."""
    policy = override or job.overlap or types_pb2.OVERLAP_POLICY_ALLOW
    limit = job.max_concurrent
    if override == types_pb2.OVERLAP_POLICY_ALLOW:
        limit = 0  # an explicit "allow" on a trigger or backfill runs regardless
    elif policy != types_pb2.OVERLAP_POLICY_ALLOW and limit == 0:
        limit = 1
    if limit == 0:
        return RUN
    prefix = keys.active_prefix(job.name, job.uid)
    active = txn.scan("active", prefix, limit + 64)
    if len(active) < limit:
        return RUN
    if policy == types_pb2.OVERLAP_POLICY_BUFFER_ONE:
        return BUFFER if not job.buffered_run else types_pb2.SKIP_REASON_BUFFER_FULL
    if policy == types_pb2.OVERLAP_POLICY_REPLACE:
        for key in active[:len(active) - limit + 1]:
            old = txn.run(key[len(prefix) + 8:].decode())
            if old is not None and old.state in _ACTIVE_STATES:
                _cancel_active(txn, old, now, f"replaced by run {new_rid} (overlap policy replace)")
            else:
                txn.delete("active", key)  # a stale entry; never expected
        return RUN
    return types_pb2.SKIP_REASON_OVERLAP


def _start_run(txn: Txn, job: Job, slot_ms: int, not_before_ms: int, now: int, *, origin: int,
               override: int = 0, manual: bool = False, caused_by: str = "", merge_skip: bool = True) -> Run | None:
    """A new run of ``job`` for ``slot_ms`` through its overlap policy: PENDING, WAITING
    (buffered) or a SKIPPED record. The caller saves ``job``."""
    rid = _rid(job, slot_ms, origin)
    decision = _admit(txn, job, now, override, rid)
    if decision == RUN:
        return _new_run(txn, job, slot_ms, not_before_ms, manual, origin, caused_by)
    if decision == BUFFER:
        run = Run(run_id=rid, job=job.name, scheduled_ms=slot_ms, state=types_pb2.RUN_STATE_WAITING,
                  attempt=1, not_before_ms=not_before_ms, queue=job.queue, manual=manual, origin=cast(Any, origin),
                  priority=job.priority, caused_by=caused_by)
        run.tags.update(job.tags)
        txn.put_run(run)
        txn.put("runs_by_job", keys.by_job_key(job.name, slot_ms, rid), b"")
        job.buffered_run = rid
        job.open_skip = ""
        return run
    return _skip(txn, job, slot_ms, decision, now, merge=merge_skip, origin=origin,
                 note=f"caused by run {caused_by}" if caused_by else "")


def _promote_buffered(txn: Txn, job: Job, now: int) -> None:
    """Move the job's buffered run into the queue (an active run just ended). Saves nothing:
    the caller saves ``job``."""
    rid, job.buffered_run = job.buffered_run, ""
    run = txn.run(rid)
    if run is None or run.state != types_pb2.RUN_STATE_WAITING:
        return
    run.state = types_pb2.RUN_STATE_PENDING
    run.not_before_ms = max(run.not_before_ms, now)
    if job.dispatch_timeout_ms:
        run.dispatch_deadline_ms = run.not_before_ms + job.dispatch_timeout_ms
    txn.put_run(run)
    _pend(txn, run)
    txn.put("active", _active_key(run), b"")


def _ended(txn: Txn, run: Run, now: int, *, success: bool | None) -> None:
    """Bookkeeping after an active run reached a final state (already saved): it stops counting
    for overlap, a buffered run moves up, and on_success / on_failure chains fire (``success``
    None: cancelled, no chain)."""
    txn.delete("active", _active_key(run))
    job = _job_of(txn, run)
    if job is None:
        return
    if job.buffered_run:
        _promote_buffered(txn, job, now)
        txn.put_job(job)
    target = "" if success is None else (job.on_success if success else job.on_failure)
    if target:
        _chain(txn, run, target, now, "on_success" if success else "on_failure")


def _chain(txn: Txn, run: Run, target: str, now: int, how: str) -> None:
    """Trigger ``target`` because ``run`` ended (ORIGIN_CHAIN, through its overlap policy)."""
    tj = txn.job(target)
    if tj is None:
        run.note = f"{how} job {target!r} does not exist; nothing was chained"
        txn.put_run(run)
        return
    slot = _free_slot(txn, tj, now)
    if tj.state == types_pb2.JOB_STATE_PAUSED:
        _skip(txn, tj, slot, types_pb2.SKIP_REASON_PAUSED, now, merge=False, origin=types_pb2.RUN_ORIGIN_CHAIN,
              note=f"caused by run {run.run_id}")
    else:
        _start_run(txn, tj, slot, now, now, origin=types_pb2.RUN_ORIGIN_CHAIN, manual=True,
                   caused_by=run.run_id, merge_skip=False)
    txn.put_job(tj)


def _free_slot(txn: Txn, job: Job, at_ms: int) -> int:
    # Two manual runs in the same millisecond still get distinct, deterministic run ids.
    while txn.get("runs", keys.manual_run_id(job.name, job.uid, at_ms).encode()) is not None:
        at_ms += 1
    return at_ms


def _trigger_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.trigger_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    slot = _free_slot(txn, job, now)
    run = _start_run(txn, job, slot, now, now, origin=types_pb2.RUN_ORIGIN_TRIGGER,
                     override=cmd.trigger_job.overlap, manual=True, merge_skip=False)
    txn.put_job(job)
    return Result(job=job, run=run)


def _backfill(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    body = cmd.backfill
    job = txn.job(body.name)
    if job is None or job.uid != body.uid:
        return _missing(body.name)
    created = existing = 0
    for slot in body.slots_ms:
        if txn.get("runs", keys.run_id(job.name, job.uid, slot).encode()) is not None:
            existing += 1
            continue
        run = _start_run(txn, job, slot, _paced(txn, now, body.spacing_ms), now,
                         origin=types_pb2.RUN_ORIGIN_BACKFILL,
                         override=body.overlap or types_pb2.OVERLAP_POLICY_ALLOW, merge_skip=False)
        created += run is not None
    txn.put_job(job)
    return Result(job=job, count=created, existing=existing)


def _paced(txn: Txn, now: int, spacing_ms: int) -> int:
    """not_before of the next catch-up run: cluster-wide, at least ``spacing_ms`` apart."""
    if spacing_ms <= 0:
        return now
    at = max(now, txn.counter(keys.CATCHUP_NEXT, 0))
    txn.put("meta", keys.CATCHUP_NEXT, keys.be64(at + spacing_ms))
    return at


# ---- dispatch --------------------------------------------------------------------------------


def _fire_due(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    fired = 0
    stale = 0
    for item in cmd.fire_due.items:
        job = txn.job(item.name)
        if (job is None or job.uid != item.uid or job.state != types_pb2.JOB_STATE_ACTIVE
                or job.next_due_ms != item.from_due_ms
                or (item.next_due_ms and item.next_due_ms <= item.from_due_ms)):
            stale += 1
            continue
        if item.policy and job.misfire:
            fired += _fire_with_policy(txn, job, item, now, cmd.fire_due.catchup_spacing_ms)
        else:
            for slot in item.slots_ms:
                if txn.get("runs", keys.run_id(job.name, job.uid, slot).encode()) is None:
                    _new_run(txn, job, slot, slot, manual=False)
                    fired += 1
        txn.delete("due", keys.due_key(job.next_due_ms, job.name))
        job.next_due_ms = item.next_due_ms
        if job.max_runs and job.fired_runs >= job.max_runs:
            job.next_due_ms = 0
        if job.next_due_ms:
            txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
        else:
            job.state = types_pb2.JOB_STATE_FINISHED
        txn.put_job(job)
    return Result(count=fired, message=f"{stale} stale" if stale else "")


_RANGE_REASON = {types_pb2.MISFIRE_POLICY_SKIP: types_pb2.SKIP_REASON_MISFIRE,
                 types_pb2.MISFIRE_POLICY_FIRE_ONCE: types_pb2.SKIP_REASON_COALESCED}


def is_late(job: Job, slot_ms: int, due_ms: int, now: int) -> bool:
    """A slot is missed (a misfire) when it is due more than the grace period before now, or
    when it fell while the job was paused (a resume never fires the paused slots as if on time).
    Lateness counts from the job's creation at the earliest: a one-shot created for a past time
    (allow_past) is not late."""
    return in_pause(job, slot_ms, now) or now - max(due_ms, job.created_ms) > job.misfire_grace_ms


def in_pause(job: Job, slot_ms: int, now: int) -> bool:
    """``slot_ms`` fell inside the job's last pause (``paused_ms`` .. ``resumed_ms``, or now)."""
    return bool(job.paused_ms) and job.paused_ms <= slot_ms < (job.resumed_ms or now + 1)


def _fire_with_policy(txn: Txn, job: Job, item: command_pb2.FireItem, now: int, spacing_ms: int) -> int:
    """Decide each slot of ``item`` by the job's misfire policy, then its overlap policy."""
    misfire = job.misfire

    def why(slot: int, default: int) -> int:
        return types_pb2.SKIP_REASON_PAUSED if in_pause(job, slot, now) else default

    if item.dropped_first_ms:
        _skip(txn, job, item.dropped_first_ms, why(item.dropped_first_ms, types_pb2.SKIP_REASON_CATCHUP_WINDOW),
              now, until=item.dropped_last_ms, count=int(item.dropped_count))
    if item.late_first_ms:
        range_reason = _RANGE_REASON.get(misfire, types_pb2.SKIP_REASON_CATCHUP_LIMIT)
        _skip(txn, job, item.late_first_ms, why(item.late_first_ms, range_reason), now,
              until=item.late_last_ms, count=int(item.late_count))
    for gap in item.dst_gap_ms:
        _skip(txn, job, gap, types_pb2.SKIP_REASON_DST_GAP, now, merge=False)
    slots = item.slots_ms
    dues = item.dues_ms if len(item.dues_ms) == len(slots) else slots
    late: list[int] = []
    fire: list[tuple[int, int, int]] = []  # (slot, not_before (-1: paced), origin)
    for s, d in zip(slots, dues, strict=True):
        if is_late(job, s, d, now):
            late.append(s)
        else:
            fire.append((s, d, types_pb2.RUN_ORIGIN_SCHEDULE))
    if late:
        if misfire == types_pb2.MISFIRE_POLICY_SKIP:
            for s in late:
                _skip(txn, job, s, why(s, types_pb2.SKIP_REASON_MISFIRE), now)
            catchup = []
        elif misfire == types_pb2.MISFIRE_POLICY_FIRE_ONCE:
            for s in late[:-1]:
                _skip(txn, job, s, types_pb2.SKIP_REASON_COALESCED, now)
            catchup = late[-1:]
        else:
            catchup = late
        fire = [(s, -1, types_pb2.RUN_ORIGIN_CATCHUP) for s in catchup] + fire
    fired = 0
    for slot, due, origin in fire:
        if job.max_runs and job.fired_runs >= job.max_runs:
            break
        if txn.get("runs", keys.run_id(job.name, job.uid, slot).encode()) is not None:
            job.open_skip = ""  # (a backfill's) record of its own: later skips start anew
            continue
        not_before = _paced(txn, now, spacing_ms) if due < 0 else due
        run = _start_run(txn, job, slot, not_before, now, origin=origin)
        if run is not None and run.state != types_pb2.RUN_STATE_SKIPPED:
            job.fired_runs += 1
            job.open_skip = ""
            fired += 1
    return fired


def _grant_leases(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    granted: list[Granted] = []
    ttl = cmd.grant_leases.lease_ttl_ms
    for item in cmd.grant_leases.items:
        run = txn.run(item.run_id)
        if run is None or run.state != types_pb2.RUN_STATE_PENDING or run.attempt != item.attempt:
            continue
        job = _job_of(txn, run)
        _unpend(txn, run)
        if job is None:
            run.state = types_pb2.RUN_STATE_CANCELLED
            run.finished_ms = now
            run.error = "job was deleted"
            txn.put_run(run)
            txn.delete("active", _active_key(run))
            continue
        fence = txn.counter(keys.NEXT_FENCE, 1)
        txn.put("meta", keys.NEXT_FENCE, keys.be64(fence + 1))
        run.state = types_pb2.RUN_STATE_LEASED
        run.fence = fence
        run.worker_id = item.worker_id
        run.started_ms = now
        txn.put_run(run)
        txn.put("leases", run.run_id.encode(), keys.lease_value(fence, item.worker_id))
        granted.append(Granted(run=run, payload=job.payload, run_timeout_ms=job.run_timeout_ms))
    del ttl  # the expiry lives in the leader's memory; renewals are not replicated
    return Result(granted=tuple(granted), count=len(granted))


def _fail_attempt(txn: Txn, run: Run, error: str, now: int, default_backoff_ms: int, *,
                  exit_code: int | None = None, dead_letter: bool = False) -> None:
    """End the current attempt as failed: retry after the job's backoff, or end the run when the
    failure is non-retryable or its attempts are used up: DEAD (a dead letter) when the command
    says so, FAILED for entries written before dead letters existed."""
    txn.delete("leases", run.run_id.encode())
    job = _job_of(txn, run)
    policy = retry.policy_of(job)
    failed = max(1, run.attempt - run.attempt_base)  # attempts since the last manual retry
    final = retry.non_retryable(policy, exit_code, error)
    run.error = error
    run.exit_code = exit_code or 0
    if not final and failed < retry.max_attempts(job) and job is not None:
        run.state = types_pb2.RUN_STATE_PENDING
        run.attempt += 1
        run.not_before_ms = now + retry.backoff_ms(policy, failed, default_backoff_ms)
        if job.dispatch_timeout_ms:
            run.dispatch_deadline_ms = run.not_before_ms + job.dispatch_timeout_ms
        _pend(txn, run)
        txn.put_run(run)
        return
    run.state = types_pb2.RUN_STATE_DEAD if dead_letter else types_pb2.RUN_STATE_FAILED
    run.finished_ms = now
    if final:
        run.error = f"{error} (not retried: {final})"
    txn.put_run(run)
    _ended(txn, run, now, success=False)


def _expire_leases(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    expired = 0
    for item in cmd.expire_leases.items:
        run = txn.run(item.run_id)
        if run is None or run.state != types_pb2.RUN_STATE_LEASED or run.fence != item.fence:
            continue
        if item.released:
            _release(txn, run, item.reason or "released by the worker", now)
            expired += 1
            continue
        _fail_attempt(txn, run, item.reason or "lease expired", now, cmd.expire_leases.retry_backoff_ms,
                      dead_letter=cmd.expire_leases.dead_letter)
        expired += 1
    return Result(count=expired)


def _release(txn: Txn, run: Run, reason: str, now: int) -> None:
    """The worker gave the lease back unfinished (drain): the run is PENDING again at once, at
    the next attempt number (so a new grant has a new attempt and fence), and ``attempt_base``
    moves with it, so the release does not use up an attempt of the retry policy."""
    txn.delete("leases", run.run_id.encode())
    run.state = types_pb2.RUN_STATE_PENDING
    run.attempt += 1
    run.attempt_base += 1
    run.not_before_ms = now
    run.error = reason
    txn.put_run(run)
    _pend(txn, run)


def _complete_runs(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    items: list[tuple[str, str]] = []
    for item in cmd.complete_runs.items:
        run = txn.run(item.run_id)
        if run is None:
            items.append(("NOT_FOUND", f"run_id: no run {item.run_id!r}"))
            continue
        if run.state != types_pb2.RUN_STATE_LEASED or run.fence != item.fence:
            if (run.fence == item.fence and item.success and run.state == types_pb2.RUN_STATE_SUCCEEDED):
                items.append(("OK", "already recorded"))  # a resend after a reconnect
                continue
            state = _state_word(run.state)
            items.append(("ABORTED", f"fence: {item.fence} is stale for run {item.run_id!r} "
                                     f"(current fence {run.fence}, state {state}); the result was discarded"))
            continue
        if item.success:
            txn.delete("leases", run.run_id.encode())
            run.state = types_pb2.RUN_STATE_SUCCEEDED
            run.finished_ms = now
            run.error = ""
            run.exit_code = 0
            txn.put_run(run)
            _ended(txn, run, now, success=True)
        else:
            _fail_attempt(txn, run, item.error or "failed", now, cmd.complete_runs.retry_backoff_ms,
                          exit_code=item.exit_code if item.HasField("exit_code") else None,
                          dead_letter=cmd.complete_runs.dead_letter)
        items.append(("OK", ""))
    return Result(items=tuple(items), count=sum(1 for c, _ in items if c == "OK"))


def _dispatch_timeout(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """PENDING runs nobody started before their dispatch deadline become DEAD (no retry: a
    retry would wait for the same missing worker). Compare-and-set on attempt and deadline."""
    n = 0
    for item in cmd.dispatch_timeout.items:
        run = txn.run(item.run_id)
        if (run is None or run.state != types_pb2.RUN_STATE_PENDING or run.attempt != item.attempt
                or not run.dispatch_deadline_ms or run.dispatch_deadline_ms > now):
            continue
        _unpend(txn, run)
        job = _job_of(txn, run)
        limit = job.dispatch_timeout_ms if job is not None else run.dispatch_deadline_ms - run.not_before_ms
        run.state = types_pb2.RUN_STATE_DEAD
        run.finished_ms = now
        run.error = (f"dispatch timeout: no worker (queue {run.queue!r}"
                     + (f", tags {dict(sorted(run.tags.items()))}" if run.tags else "")
                     + f") started it within {limit} ms of its due time")
        txn.put_run(run)
        _ended(txn, run, now, success=False)
        n += 1
    return Result(count=n)


def _prune_runs(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """Retention: delete finished runs (never an active or waiting one)."""
    n = 0
    for rid in cmd.prune_runs.run_ids:
        run = txn.run(rid)
        if run is None or run.state not in FINISHED_STATES:
            continue
        txn.delete("runs", rid.encode())
        txn.delete("runs_by_job", keys.by_job_key(run.job, run.scheduled_ms, rid))
        job = txn.job(run.job)
        if job is not None and job.open_skip == rid:
            job.open_skip = ""
            txn.put_job(job)
        n += 1
    ttl = cmd.prune_runs.request_ttl_ms
    for req in cmd.prune_runs.request_ids if ttl > 0 else ():
        raw = txn.get("requests", req.encode())
        if raw is None:
            continue
        at = request_recorded_at(raw)
        if 0 < at < now - ttl:
            txn.delete("requests", req.encode())
            n += 1
    return Result(count=n)


def _state_word(state: int) -> str:
    return types_pb2.RunState.Name(state).removeprefix("RUN_STATE_").lower() \
        if state in types_pb2.RunState.values() else str(state)


def _retry_run(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """An operator's replay of a dead letter: the run is PENDING again, due now, at the next
    attempt number, with a fresh set of attempts (``attempt_base``) under the job's policy."""
    rid = cmd.retry_run.run_id
    run = txn.run(rid)
    if run is None:
        return Result("NOT_FOUND", f"run_id: no run {rid!r}")
    if run.state not in (types_pb2.RUN_STATE_DEAD, types_pb2.RUN_STATE_FAILED):
        return Result("FAILED_PRECONDITION", f"run_id: run {rid!r} is {_state_word(run.state)}; "
                                             "only dead or failed runs can be retried", run=run)
    job = txn.job(run.job)
    if job is None or job.uid != keys.uid_of_run_id(run.run_id):
        return Result("FAILED_PRECONDITION", f"run_id: the job of run {rid!r} was deleted; "
                                             "it cannot be retried", run=run)
    run.state = types_pb2.RUN_STATE_PENDING
    run.attempt_base = run.attempt
    run.attempt += 1
    run.not_before_ms = now
    run.finished_ms = 0
    if job.dispatch_timeout_ms:
        run.dispatch_deadline_ms = now + job.dispatch_timeout_ms
    txn.put_run(run)
    _pend(txn, run)
    txn.put("active", _active_key(run), b"")
    return Result(job=job, run=run)


def _barrier(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    return Result(message=f"barrier {cmd.barrier.node_id} term {cmd.barrier.term}")


def _batch(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    subs = []
    for sub in cmd.batch.commands:
        if sub.WhichOneof("body") == "batch":
            subs.append(Result("INVALID_ARGUMENT", "command.batch: batches do not nest"))
            continue
        subs.append(_dispatch(txn, sub, index, sub.now_ms or now))
    return Result(sub=tuple(subs))


_Handler = Callable[[Txn, command_pb2.Command, int, int], Result]

_HANDLERS: dict[str, _Handler] = {
    "create_job": _create_job,
    "delete_job": _delete_job,
    "pause_job": _pause_job,
    "resume_job": _resume_job,
    "trigger_job": _trigger_job,
    "update_job": _update_job,
    "backfill": _backfill,
    "dispatch_timeout": _dispatch_timeout,
    "prune_runs": _prune_runs,
    "fire_due": _fire_due,
    "grant_leases": _grant_leases,
    "expire_leases": _expire_leases,
    "complete_runs": _complete_runs,
    "retry_run": _retry_run,
    "barrier": _barrier,
    "batch": _batch,
}


@dataclass
class MemoryState:
    """A dict-backed replica for tests and models: the same apply, no LMDB."""

    data: dict[str, dict[bytes, bytes]] = field(default_factory=lambda: {
        **{db: {} for db in keys.DBS}, "meta": {keys.SCHEMA: keys.SCHEMA_VERSION}})

    def get(self, db: str, key: bytes) -> bytes | None:
        return self.data[db].get(key)

    def scan(self, db: str, prefix: bytes, limit: int) -> list[bytes]:
        return sorted(k for k in self.data[db] if k.startswith(prefix))[:limit]

    def execute(self, mutations: list[Mutation]) -> None:
        for m in mutations:
            if isinstance(m, Put):
                self.data[m.db][m.key] = m.value
            else:
                self.data[m.db].pop(m.key, None)

    def apply(self, data: bytes, index: int) -> Result:
        mutations, result = apply(self, data, index)
        self.execute(mutations)
        return result

    def digest(self) -> str:
        return state_digest((db, sorted(self.data[db].items())) for db in keys.DBS)


def state_digest(dbs: object) -> str:
    """SHA-256 over every (db, key, value) in key order, leaving out ``meta.applied_index``
    (a position in the log, not state). ``dbs`` yields (db name, iterable of (key, value))."""
    import hashlib

    h = hashlib.sha256()
    for db, items in dbs:  # type: ignore[attr-defined]
        h.update(db.encode() + b"\x00")
        for k, v in items:
            if db == "meta" and k == keys.APPLIED_INDEX:
                continue
            h.update(keys.be64(len(k)) + k + keys.be64(len(v)) + v)
    return h.hexdigest()
