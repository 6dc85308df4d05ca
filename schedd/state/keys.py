"""Key layout of the replicated state (LMDB named databases). Pure encoding helpers.

=============  ==============================================  ==========================
database       key                                             value
=============  ==============================================  ==========================
jobs           job name                                        types_pb2.Job
due            be64(next_due_ms) + job name                    empty
runs           run id                                          types_pb2.Run
runs_by_job    job name + 0x00 + be64(scheduled_ms) + run id   empty
pending        be64(not_before_ms) + run id                    empty   (PENDING runs)
pending_q      queue + 0x00 + be64(not_before_ms) + run id     empty   (PENDING runs, per queue)
leases         run id                                          be64(fence) + worker id (LEASED runs)
active         job + 0x00 + be64(uid) + be64(scheduled) + id  empty   (PENDING/LEASED runs)
tokens         token name                                      types_pb2.Token (a hash only)
audit          be64(log index)                                 types_pb2.AuditRecord
namespaces     namespace name                                  types_pb2.Namespace (quotas)
requests       0x00 + principal + 0x00 + client request id    JSON result of the first apply
               (entries before scoping: the bare request id)   (with the request's hash)
dep_wait       upstream job + 0x00 + be64(uid) + be64(slot)    empty   (a WAITING run of a job
               + run id of the waiting downstream run                   with depends_on waits
                                                                        for that upstream slot)
dep_failed     upstream run id + 0x00 + downstream run id      empty   (skipped upstream_failed
                                                                        by that dead run)
dep_waiting    downstream job + 0x00 + run id                  be64(deadline) (its WAITING runs)
dep_deadline   be64(dependency deadline) + run id              empty   (WAITING runs with one)
dep_skips      job + 0x00 + be64(uid) + be64(last slot) + id   be64(first slot) (skip records of
                                                                        jobs others depend on)
meta           applied_index / next_fence / schema             be64 or text
=============  ==============================================  ==========================

Ordering matters: ``due`` and ``pending`` sort by time, so the dispatcher's scan costs O(due).
"""

from __future__ import annotations

import struct

DBS = (
    "jobs",
    "due",
    "runs",
    "runs_by_job",
    "pending",
    "pending_q",
    "leases",
    "active",
    "requests",
    "meta",
    "tokens",
    "audit",
    "namespaces",
    "dep_wait",
    "dep_failed",
    "dep_waiting",
    "dep_deadline",
    "dep_skips",
)

#: Databases added after the first release, hashed into the state digest only when not empty.
OPTIONAL_DBS = frozenset({"dep_wait", "dep_failed", "dep_waiting", "dep_deadline", "dep_skips"})

APPLIED_INDEX = b"applied_index"
NEXT_FENCE = b"next_fence"
CATCHUP_NEXT = b"catchup_next"  # earliest not_before of the next paced catch-up run
AUDIT_COUNT = b"audit_count"  # records in the audit database (capped)
TOKENS_VERSION = b"tokens_version"  # grows with every token change (authenticators reload)
MEMBERS = b"members"  # the member list, JSON (schedd.raft.membership); absent: the flags' list
FEATURE_LEVEL = b"feature_level"  # the cluster's feature level (apply.features); absent: 0
NODE_FEATURES = b"node_features"  # JSON {node_id: highest level its version supports}
SCHEMA = b"schema"
SCHEMA_VERSION = b"1"

_BE = struct.Struct(">Q")


def be64(n: int) -> bytes:
    return _BE.pack(max(0, n))


def from_be64(b: bytes) -> int:
    return _BE.unpack(b[:8])[0]


def run_id(job: str, uid: int, scheduled_ms: int) -> str:
    """Stable run id: job name, the job's uid (create index) and the scheduled instant.

    Job names cannot contain ':', so the id parses back unambiguously.
    """
    return f"{job}:{uid}:{scheduled_ms}"


def manual_run_id(job: str, uid: int, at_ms: int) -> str:
    """Id of a run created by a trigger or a chain at ``at_ms``: the ``m`` suffix keeps manual
    runs out of the slots' id space, so a trigger landing on a slot's exact millisecond cannot
    take the id the scheduled firing of that slot needs."""
    return f"{job}:{uid}:{at_ms}m"


def time_key(ms: int, ident: str) -> bytes:
    """Key of a time-ordered index (``due``: job name; ``pending``: run id)."""
    return _BE.pack(max(0, ms)) + ident.encode()  # (be64, inlined: several per firing)


def split_time_key(key: bytes) -> tuple[int, str]:
    return from_be64(key), key[8:].decode()


due_key = time_key  # be64(next_due_ms) + job name
pending_key = time_key  # be64(not_before_ms) + run id
split_due_key = split_time_key
split_pending_key = split_time_key


def by_job_prefix(job: str) -> bytes:
    return job.encode() + b"\x00"


def by_job_key(job: str, scheduled_ms: int, rid: str) -> bytes:
    # by_job_prefix(job) + be64(scheduled_ms) + rid, inlined (one per new run)
    return job.encode() + b"\x00" + _BE.pack(max(0, scheduled_ms)) + rid.encode()


def request_key(principal: str, request_id: str) -> bytes:
    """A client request id scoped to the caller that sent it. Request ids never contain control
    characters (validation), so no scoped key equals an unscoped one from older entries."""
    return b"\x00" + principal.encode() + b"\x00" + request_id.encode()


def lease_value(fence: int, worker_id: str) -> bytes:
    return be64(fence) + worker_id.encode()


def split_lease_value(value: bytes) -> tuple[int, str]:
    return from_be64(value), value[8:].decode()


def active_prefix(job: str, uid: int) -> bytes:
    """Prefix of one job incarnation's active runs (overlap policies count and cancel them)."""
    return job.encode() + b"\x00" + be64(uid)


_BE2 = struct.Struct(">QQ")


def active_key(job: str, uid: int, scheduled_ms: int, rid: str) -> bytes:
    return job.encode() + b"\x00" + _BE2.pack(max(0, uid), max(0, scheduled_ms)) + rid.encode()


def uid_of_run_id(rid: str) -> int:
    """The job uid inside a run id (``job:uid:scheduled``); 0 if it does not parse."""
    parts = rid.rsplit(":", 2)
    try:
        return int(parts[1]) if len(parts) == 3 else 0
    except ValueError:
        return 0


def queue_pending_prefix(queue: str) -> bytes:
    return queue.encode() + b"\x00"


def queue_pending_key(queue: str, not_before_ms: int, rid: str) -> bytes:
    # queue_pending_prefix(queue) + be64(not_before_ms) + rid, inlined (two per firing)
    return queue.encode() + b"\x00" + _BE.pack(max(0, not_before_ms)) + rid.encode()


def rid_of_queue_pending_key(key: bytes) -> bytes:
    """The run id in a :func:`queue_pending_key` (a queue name holds no NUL)."""
    return key[key.index(b"\x00") + 9 :]


# ---- dependencies (depends_on; schedd.state.apply.deps) ------------------------------------


def dep_wait_prefix(job: str, uid: int) -> bytes:
    """Prefix of the waits on one upstream job incarnation's slots, in slot order."""
    return job.encode() + b"\x00" + be64(uid)


def dep_wait_key(job: str, uid: int, slot_ms: int, waiting_rid: str) -> bytes:
    return dep_wait_prefix(job, uid) + be64(slot_ms) + waiting_rid.encode()


def split_run_id(rid: str) -> tuple[str, int, int]:
    """(job, uid, ms) of a run id: the slot of a scheduled run, the instant of a manual one
    (its ``m`` dropped). (rid, 0, 0) when it does not parse."""
    parts = rid.rsplit(":", 2)
    if len(parts) != 3:
        return rid, 0, 0
    try:
        return parts[0], int(parts[1]), int(parts[2].removesuffix("m"))
    except ValueError:
        return rid, 0, 0


def dep_failed_prefix(upstream_rid: str) -> bytes:
    return upstream_rid.encode() + b"\x00"


def dep_waiting_prefix(job: str) -> bytes:
    return job.encode() + b"\x00"
