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
  RetryPolicy backoff (``schedd.retry``: exact arithmetic, no libm) or, for a job without one,
  the fixed backoff in the command. A run that ends failing becomes DEAD only when the command
  carries ``dead_letter``; entries written before dead letters existed still end in FAILED.

The caller executes the mutations in one storage transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import DecodeError

from schedd import keys, retry
from schedd.pb import command_pb2, types_pb2

COMMAND_VERSION = 1

Job = types_pb2.Job
Run = types_pb2.Run


class Reader(Protocol):
    """Read access to committed state: ``get(db, key)``, None when absent."""

    def get(self, db: str, key: bytes) -> bytes | None: ...


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
        record = {"code": result.code, "message": result.message,
                  "job": result.job.name if result.job is not None else "",
                  "run": result.run.run_id if result.run is not None else ""}
        txn.put("requests", rid.encode(), json.dumps(record, sort_keys=True).encode())
    return result


def _replay_result(txn: Txn, record: dict[str, str]) -> Result:
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


def _create_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    job = Job()
    job.CopyFrom(cmd.create_job.job)
    if not job.name:
        return Result("INVALID_ARGUMENT", "name: is required")
    if txn.get("jobs", job.name.encode()) is not None:
        return Result("ALREADY_EXISTS", f"name: a job named {job.name!r} already exists")
    job.uid = index
    job.created_ms = now
    job.state = types_pb2.JOB_STATE_ACTIVE if job.next_due_ms else types_pb2.JOB_STATE_FINISHED
    if job.next_due_ms:
        txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
    txn.put_job(job)
    return Result(job=job)


def _missing(name: str) -> Result:
    return Result("NOT_FOUND", f"name: no job named {name!r}")


def _delete_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.delete_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    if job.next_due_ms and job.state == types_pb2.JOB_STATE_ACTIVE:
        txn.delete("due", keys.due_key(job.next_due_ms, name))
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
        txn.put_job(job)
    return Result(job=job)


def _resume_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.resume_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    if job.state == types_pb2.JOB_STATE_PAUSED:
        job.next_due_ms = cmd.resume_job.next_due_ms
        if job.next_due_ms:
            job.state = types_pb2.JOB_STATE_ACTIVE
            txn.put("due", keys.due_key(job.next_due_ms, name), b"")
        else:
            job.state = types_pb2.JOB_STATE_FINISHED
        txn.put_job(job)
    return Result(job=job)


def _new_run(txn: Txn, job: Job, scheduled_ms: int, not_before_ms: int, manual: bool) -> Run:
    run = Run(run_id=keys.run_id(job.name, job.uid, scheduled_ms), job=job.name,
              scheduled_ms=scheduled_ms, state=types_pb2.RUN_STATE_PENDING, attempt=1,
              not_before_ms=not_before_ms, queue=job.queue, manual=manual)
    txn.put_run(run)
    txn.put("runs_by_job", keys.by_job_key(job.name, scheduled_ms, run.run_id), b"")
    txn.put("pending", keys.pending_key(not_before_ms, run.run_id), b"")
    return run


def _trigger_job(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    name = cmd.trigger_job.name
    job = txn.job(name)
    if job is None:
        return _missing(name)
    scheduled = now
    # Two triggers in the same millisecond still get distinct, deterministic run ids.
    while txn.get("runs", keys.run_id(name, job.uid, scheduled).encode()) is not None:
        scheduled += 1
    return Result(job=job, run=_new_run(txn, job, scheduled, now, manual=True))


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
        for slot in item.slots_ms:
            if txn.get("runs", keys.run_id(job.name, job.uid, slot).encode()) is None:
                _new_run(txn, job, slot, slot, manual=False)
                fired += 1
        txn.delete("due", keys.due_key(job.next_due_ms, job.name))
        job.next_due_ms = item.next_due_ms
        if job.next_due_ms:
            txn.put("due", keys.due_key(job.next_due_ms, job.name), b"")
        else:
            job.state = types_pb2.JOB_STATE_FINISHED
        txn.put_job(job)
    return Result(count=fired, message=f"{stale} stale" if stale else "")


def _grant_leases(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    granted: list[Granted] = []
    ttl = cmd.grant_leases.lease_ttl_ms
    for item in cmd.grant_leases.items:
        run = txn.run(item.run_id)
        if run is None or run.state != types_pb2.RUN_STATE_PENDING or run.attempt != item.attempt:
            continue
        job = txn.job(run.job)
        txn.delete("pending", keys.pending_key(run.not_before_ms, run.run_id))
        if job is None or keys.run_id(job.name, job.uid, run.scheduled_ms) != run.run_id:
            run.state = types_pb2.RUN_STATE_CANCELLED
            run.finished_ms = now
            run.error = "job was deleted"
            txn.put_run(run)
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
    job = txn.job(run.job)
    policy = retry.policy_of(job)
    failed = max(1, run.attempt - run.attempt_base)  # attempts since the last manual retry
    final = retry.non_retryable(policy, exit_code, error)
    run.error = error
    run.exit_code = exit_code or 0
    if not final and failed < retry.max_attempts(job) and job is not None:
        run.state = types_pb2.RUN_STATE_PENDING
        run.attempt += 1
        run.not_before_ms = now + retry.backoff_ms(policy, failed, default_backoff_ms)
        txn.put("pending", keys.pending_key(run.not_before_ms, run.run_id), b"")
    else:
        run.state = types_pb2.RUN_STATE_DEAD if dead_letter else types_pb2.RUN_STATE_FAILED
        run.finished_ms = now
        if final:
            run.error = f"{error} (not retried: {final})"
    txn.put_run(run)


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
    txn.put("pending", keys.pending_key(run.not_before_ms, run.run_id), b"")


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
        else:
            _fail_attempt(txn, run, item.error or "failed", now, cmd.complete_runs.retry_backoff_ms,
                          exit_code=item.exit_code if item.HasField("exit_code") else None,
                          dead_letter=cmd.complete_runs.dead_letter)
        items.append(("OK", ""))
    return Result(items=tuple(items), count=sum(1 for c, _ in items if c == "OK"))


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
    if job is None or keys.run_id(job.name, job.uid, run.scheduled_ms) != run.run_id:
        return Result("FAILED_PRECONDITION", f"run_id: the job of run {rid!r} was deleted; "
                                             "it cannot be retried", run=run)
    run.state = types_pb2.RUN_STATE_PENDING
    run.attempt_base = run.attempt
    run.attempt += 1
    run.not_before_ms = now
    run.finished_ms = 0
    txn.put_run(run)
    txn.put("pending", keys.pending_key(run.not_before_ms, run.run_id), b"")
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
