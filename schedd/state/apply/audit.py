"""The audit trail: one record per change made through the API, written by apply.

A client command carries the caller's principal (stamped by the service, like its time);
apply records who, what, which object, when and the outcome under the entry's log index in the
``audit`` database. Every replica writes the same record, so the trail is the same on every node,
survives restarts and is in every snapshot and backup. It keeps the newest ``MAX_RECORDS``
(``meta.audit_count`` counts them; the oldest goes when a new one would exceed the cap).

Dispatcher entries (fires, grants, completions, expiries) carry no principal and are not
recorded: they are the scheduler's own work, visible as runs.
"""

from __future__ import annotations

from collections.abc import Callable

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys
from schedd.state.apply.txn import Result, Txn

#: records kept (about 200 bytes each: ~20 MB at the cap)
MAX_RECORDS = 100_000
MAX_MESSAGE = 200

#: the audited command kinds -> the object each names
TARGETS: dict[str, Callable[[command_pb2.Command], str]] = {
    "create_job": lambda c: c.create_job.job.name,
    "update_job": lambda c: c.update_job.job.name,
    "delete_job": lambda c: c.delete_job.name,
    "pause_job": lambda c: c.pause_job.name,
    "resume_job": lambda c: c.resume_job.name,
    "trigger_job": lambda c: c.trigger_job.name,
    "backfill": lambda c: c.backfill.name,
    "retry_run": lambda c: c.retry_run.run_id,
    "cancel_run": lambda c: c.cancel_run.run_id,
    "create_token": lambda c: c.create_token.token.name,
    "revoke_token": lambda c: c.revoke_token.name,
}


def record(
    txn: Txn,
    cmd: command_pb2.Command,
    index: int,
    result: Result,
    *,
    position: int | None = None,
    trim: bool = True,
) -> bool:
    """Record ``cmd``'s outcome if it is an audited client command (it has a principal); True
    when it was. ``position``: the n-th client sub-command of a batch (a bulk create), recorded
    under the key index + n (:func:`key`), so one entry holds one record per item. ``trim``:
    drop the oldest records over ``MAX_RECORDS`` now (a batch trims once, after its last)."""
    kind = cmd.WhichOneof("body") or ""
    target = TARGETS.get(kind)
    if target is None or not cmd.principal:
        return False
    rec = types_pb2.AuditRecord(
        index=index,
        at_ms=cmd.now_ms,
        principal=cmd.principal,
        action=kind,
        target=target(cmd),
        code=result.code,
        message=result.message[:MAX_MESSAGE],
        request_id=cmd.request_id,
    )
    txn.put("audit", key(index, position), rec.SerializeToString(deterministic=True))
    txn.put("meta", keys.AUDIT_COUNT, keys.be64(txn.counter(keys.AUDIT_COUNT, 0) + 1))
    if trim:
        trim_oldest(txn)
    return True


def key(index: int, position: int | None = None) -> bytes:
    """The audit key of a record: the entry's log index (big-endian, so key order is log order),
    plus the 4-byte position of a batch's n-th record. Readers take the index from the first 8
    bytes (``keys.from_be64``)."""
    return keys.be64(index) + (b"" if position is None else position.to_bytes(4, "big"))


def trim_oldest(txn: Txn) -> None:
    """Drop the oldest records until at most ``MAX_RECORDS`` are kept (one scan)."""
    count = txn.counter(keys.AUDIT_COUNT, 0)
    if count <= MAX_RECORDS:
        return
    oldest = txn.scan("audit", b"", count - MAX_RECORDS)
    for k in oldest:
        txn.delete("audit", k)
    txn.put("meta", keys.AUDIT_COUNT, keys.be64(count - len(oldest)))
