"""The replicated state machine: ``apply(reader, data, index) -> (mutations, Result)``
(``apply_writes``: the same mutations as plain ``((db, key), value)`` pairs).

Contract (every replica relies on it):

* **Deterministic.** The output depends only on the state read through ``reader``, the command
  bytes and the log index. No clock, randomness, environment, time-zone data or I/O: the leader
  stamps ``now_ms`` and every computed due time into the command.
* **Idempotent by log index.** The mutations always include ``meta.applied_index = index``; an
  entry at or below the stored applied index returns ``SKIPPED`` with no mutations (pysyncobj
  re-applies its journal on every restart).
* **Never raises.** Domain rejections (not found, stale fence, duplicate) are results, identical
  on every replica. Only the caller's storage failures (disk full) escape, and they stop the
  process before the entry is recorded.
* **A command it does not understand stops the node.** An undecodable entry, an unknown envelope
  version or a command type this version does not know (a newer version's new oneof field reads
  as *no* body) is answered ``UNSUPPORTED`` (status UNIMPLEMENTED), also inside a batch; the
  store then stops the process before the entry is recorded, rather than skip it and diverge
  from replicas that understood it.
* **Compare-and-set everywhere the leader acted on a read.** FireDue, grants, expiries and
  completions carry what the leader saw (due time, attempt, fence) and are no-ops when the state
  has moved on, so a late or duplicated proposal (a deposed leader's entry committed after all)
  cannot fire a slot twice or revive an old lease.
* **A command's meaning never changes.** A failed attempt is retried after the job's
  RetryPolicy backoff (``schedd.sched.retry``: exact arithmetic, no libm) or, for a job without one,
  the fixed backoff in the command. A run that ends failing becomes DEAD only when the command
  carries ``dead_letter``; entries written before dead letters existed still end in FAILED.

The caller executes the mutations in one storage transaction.

Modules: :mod:`~schedd.state.apply.txn` (vocabulary), :mod:`~schedd.state.apply.runs`
(run lifecycle), :mod:`~schedd.state.apply.jobs`, :mod:`~schedd.state.apply.firing`,
:mod:`~schedd.state.apply.leases`, :mod:`~schedd.state.apply.retention` (the command handlers);
this module is the envelope: decoding, versions, request ids, batches, dispatch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf.message import DecodeError

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply import audit, deps, features, quotas
from schedd.state.apply.firing import _fire_due
from schedd.state.apply.jobs import (
    _backfill,
    _create_job,
    _delete_job,
    _pause_job,
    _resume_job,
    _trigger_job,
    _update_job,
)
from schedd.state.apply.leases import (
    _cancel_run,
    _complete_runs,
    _dispatch_timeout,
    _expire_leases,
    _grant_leases,
    _retry_run,
)
from schedd.state.apply.retention import _prune_runs
from schedd.state.apply.runs import FINISHED_STATES
from schedd.state.apply.tokens import _create_token, _revoke_token
from schedd.state.apply.txn import (
    COMMAND_VERSION,
    SKIPPED,
    Delete,
    Granted,
    Mutation,
    Put,
    Reader,
    Result,
    Revoked,
    Tally,
    Txn,
    Writes,
    encode,
    request_record,
    request_recorded_at,
)


def apply(reader: Reader, data: bytes, index: int) -> tuple[list[Mutation], Result]:
    """Apply one log entry. See the module docstring for the contract."""
    writes, result = apply_writes(reader, data, index)
    return [Delete(db, key) if v is None else Put(db, key, v) for (db, key), v in writes], result


def apply_writes(reader: Reader, data: bytes, index: int) -> tuple[Writes, Result]:
    """:func:`apply`, with the mutations as ``((db, key), value)`` pairs, ``None`` for a
    delete, in the same order: what the LMDB store executes, without building a ``Put`` or
    ``Delete`` per write (10-15 of them per firing on every replica)."""
    txn = Txn(reader)
    if index <= txn.counter(keys.APPLIED_INDEX, 0):
        return [], SKIPPED
    try:
        cmd = command_pb2.Command.FromString(data)
    except (DecodeError, ValueError) as e:
        result = Result(UNSUPPORTED, f"command: undecodable entry ({type(e).__name__})")
    else:
        if cmd.version != COMMAND_VERSION:
            result = Result(
                UNSUPPORTED,
                f"command.version: {cmd.version} is not supported (want {COMMAND_VERSION})",
            )
        else:
            result = _apply_with_request_id(txn, cmd, index, cmd.now_ms)
            if result.code != UNSUPPORTED:
                audit.record(txn, cmd, index, result)
    if txn.revoked:
        result = replace(result, revoked=tuple(txn.revoked))
    tally = txn.tally()
    if tally is not None:
        result = replace(result, tally=tally)
    txn.put("meta", keys.APPLIED_INDEX, keys.be64(index))
    return txn.writes(), result


def _apply_with_request_id(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """Client request ids. A command stamped with ``request_hash`` (every one from this
    version's services) is keyed by (``principal``, request id), both stamped by the service
    from the authenticated caller, and remembers the hash of its request: the same id from the
    same caller with another request is refused, so nobody can take over someone else's id and
    no client gets an answer that belongs to another request. Commands without the hash (older
    entries) keep the old, unscoped key."""
    rid = cmd.request_id
    key = b""
    digest = cmd.request_hash.hex()
    if rid:
        key = keys.request_key(cmd.principal, rid) if cmd.request_hash else rid.encode()
        seen = txn.get("requests", key)
        if seen is not None:
            record = json.loads(seen)
            if cmd.request_hash and record.get("hash") != digest:
                return Result(
                    "FAILED_PRECONDITION",
                    f"request_id: {rid!r} was already used for a different request; "
                    "use a new request id for a new request (reuse one only to retry the "
                    "same request)",
                )
            return _replay_result(txn, record)
    result = _dispatch(txn, cmd, index, now)
    if rid:
        record = request_record(
            result.code,
            result.message,
            now,
            result.job.name if result.job is not None else "",
            result.run.run_id if result.run is not None else "",
            digest if cmd.request_hash else "",
        )
        txn.put("requests", key, record)
    return result


def _replay_result(txn: Txn, record: dict[str, Any]) -> Result:
    """The answer to a retried request: the first outcome, with the objects as they are now."""
    job = txn.job(record["job"]) if record.get("job") else None
    run = txn.run(record["run"]) if record.get("run") else None
    return Result(record["code"], record["message"], job=job, run=run)


def _dispatch(txn: Txn, cmd: command_pb2.Command, index: int, now_ms: int) -> Result:
    kind = cmd.WhichOneof("body")
    handler = _HANDLERS.get(kind or "")
    if handler is None:
        return Result(UNSUPPORTED, f"command.body: unknown command type {kind!r}")
    return handler(txn, cmd, index, cmd.now_ms or now_ms)


def _barrier(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    return Result(message=f"barrier {cmd.barrier.node_id} term {cmd.barrier.term}")


def _batch(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    """Each sub-command in order, each with its own result. A client's sub-command (a bulk
    create: it carries a principal) keeps what it would have alone: its request id (a retried
    item returns its first outcome) and its audit record, the n-th under the entry's index
    (``audit.record``'s ``position``). The dispatcher's sub-commands carry neither, as every
    batch did before feature level 3 (``features.BULK_CREATE``): those apply as they always did."""
    subs = []
    audited = 0
    for sub in cmd.batch.commands:
        if sub.WhichOneof("body") == "batch":
            subs.append(Result("INVALID_ARGUMENT", "command.batch: batches do not nest"))
            continue
        if sub.request_id:
            subs.append(_apply_with_request_id(txn, sub, index, sub.now_ms or now))
        else:
            subs.append(_dispatch(txn, sub, index, sub.now_ms or now))
        if subs[-1].code == UNSUPPORTED:
            return subs[-1]  # the whole entry is not understood
        if sub.principal and audit.record(txn, sub, index, subs[-1], position=audited, trim=False):
            audited += 1
    if audited:
        audit.trim_oldest(txn)
    return Result(sub=tuple(subs))


#: The result code of an entry this version does not understand: the store stops the node.
UNSUPPORTED = "UNIMPLEMENTED"


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
    "cancel_run": _cancel_run,
    "barrier": _barrier,
    "batch": _batch,
    "create_token": _create_token,
    "revoke_token": _revoke_token,
    "set_namespace": quotas.set_namespace,
    "report_features": features.report,
    "set_feature_level": features.set_level,
    "dependency_timeout": deps.timeout,
}


@dataclass
class MemoryState:
    """A dict-backed replica for tests and models: the same apply, no LMDB."""

    data: dict[str, dict[bytes, bytes]] = field(
        default_factory=lambda: {
            **{db: {} for db in keys.DBS},
            "meta": {keys.SCHEMA: keys.SCHEMA_VERSION},
        }
    )

    def get(self, db: str, key: bytes) -> bytes | None:
        return self.data[db].get(key)

    def scan(self, db: str, prefix: bytes, limit: int, start: bytes = b"") -> list[bytes]:
        return sorted(k for k in self.data[db] if k.startswith(prefix) and k >= start)[:limit]

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

    def digest(self, audit: bool = True) -> str:
        """The state digest; ``audit=False`` leaves the audit trail out (what a refused command
        may add: the record of the attempt) to compare the rest."""
        dbs = [db for db in keys.DBS if audit or db != "audit"]
        return state_digest(
            ((db, sorted(self.data[db].items())) for db in dbs),
            skip_meta=() if audit else (keys.AUDIT_COUNT,),
        )

    # The planner's reads (schedd.server.planner.PlanView), as the LMDB store answers them.

    def get_job(self, name: str) -> types_pb2.Job | None:
        raw = self.data["jobs"].get(name.encode())
        return None if raw is None else types_pb2.Job.FromString(raw)

    def get_jobs(self, names: Sequence[str]) -> list[types_pb2.Job | None]:
        return [self.get_job(name) for name in names]

    def due_until(self, now_ms: int, limit: int) -> list[tuple[int, str]]:
        out = [keys.split_time_key(k) for k in sorted(self.data["due"])]
        return [(t, name) for t, name in out if t <= now_ms][:limit]

    def pending_in_queue(self, queue: str, now_ms: int, limit: int) -> list[types_pb2.Run]:
        prefix = keys.queue_pending_prefix(queue)
        out: list[types_pb2.Run] = []
        for k in sorted(k for k in self.data["pending_q"] if k.startswith(prefix)):
            if keys.from_be64(k[len(prefix) :]) > now_ms or len(out) >= limit:
                break
            raw = self.data["runs"].get(k[len(prefix) + 8 :])
            if raw is not None:
                out.append(types_pb2.Run.FromString(raw))
        return out

    def runs_at_or_before(self, job: str, uid: int, at_ms: int, limit: int) -> list[types_pb2.Run]:
        prefix = keys.by_job_prefix(job)
        out: list[types_pb2.Run] = []
        for k in sorted(
            (k for k in self.data["runs_by_job"] if k.startswith(prefix)), reverse=True
        ):
            if keys.from_be64(k[len(prefix) : len(prefix) + 8]) > at_ms:
                continue
            rid = k[len(prefix) + 8 :].decode()
            raw = self.data["runs"].get(rid.encode())
            if raw is not None and keys.uid_of_run_id(rid) == uid:
                out.append(types_pb2.Run.FromString(raw))
                if len(out) >= limit:
                    break
        return out

    def dependency_deadlines_until(self, now_ms: int, limit: int) -> list[str]:
        out = [keys.split_time_key(k) for k in sorted(self.data["dep_deadline"])]
        return [rid for t, rid in out if t <= now_ms][:limit]


def state_digest(dbs: object, skip_meta: tuple[bytes, ...] = ()) -> str:
    """SHA-256 over every (db, key, value) in key order, leaving out ``meta.applied_index``
    (a position in the log, not state). ``dbs`` yields (db name, iterable of (key, value))."""
    import hashlib
    import itertools

    h = hashlib.sha256()
    for db, items in dbs:  # type: ignore[attr-defined]
        it = iter(items)
        if db in keys.OPTIONAL_DBS:
            # named only when it holds something: a state without dependencies has the digest
            # it had before these databases existed (replicas of two versions compare equal)
            first = next(it, None)
            if first is None:
                continue
            it = itertools.chain([first], it)
        h.update(db.encode() + b"\x00")
        for k, v in it:
            if db == "meta" and (k == keys.APPLIED_INDEX or k in skip_meta):
                continue
            h.update(keys.be64(len(k)) + k + keys.be64(len(v)) + v)
    return h.hexdigest()


__all__ = [
    "COMMAND_VERSION",
    "FINISHED_STATES",
    "SKIPPED",
    "UNSUPPORTED",
    "Delete",
    "Granted",
    "MemoryState",
    "Mutation",
    "Put",
    "Reader",
    "Result",
    "Revoked",
    "Tally",
    "Txn",
    "Writes",
    "apply",
    "apply_writes",
    "encode",
    "request_recorded_at",
    "state_digest",
]
