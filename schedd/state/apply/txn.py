"""The vocabulary of apply: the state view it reads (``Reader``), the write overlay (``Txn``), the
mutations it returns (``Put``, ``Delete``), and its ``Result``. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str
from typing import NamedTuple, Protocol

from schedd.pb import command_pb2, types_pb2
from schedd.state import keys

COMMAND_VERSION = 1


Job = types_pb2.Job


Run = types_pb2.Run


class Reader(Protocol):
    """Read access to committed state: ``get(db, key)`` (None when absent) and ``scan(db,
    prefix, limit, start)``: the first ``limit`` keys starting with ``prefix``, in key order,
    from ``start`` on (a seek; b"": from the first)."""

    def get(self, db: str, key: bytes) -> bytes | None: ...

    def scan(self, db: str, prefix: bytes, limit: int, start: bytes = b"") -> list[bytes]: ...


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

#: An entry's writes as ``((db, key), value)``, ``None`` for a delete, in first-write order.
Writes = Collection[tuple[tuple[str, bytes], bytes | None]]


class Granted(NamedTuple):
    """A lease granted by this entry: the leader sends ``run`` to ``run.worker_id``.
    ``run_timeout_ms`` is the job's (0 = none): the leader expires the lease at
    ``run.started_ms + run_timeout_ms``.

    A named tuple, not a frozen dataclass: every replica makes one per firing, and the
    dataclass took about three times as long to build."""

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
    existing: int = 0  # BackfillCmd: slots that already had a record
    #: on the entry's top-level result: what the entry did, counted for the node's metrics
    #: (:class:`Tally`); never stored, never read back by apply
    tally: Tally | None = None

    @property
    def ok(self) -> bool:
        return self.code == "OK"


@dataclass(frozen=True)
class Tally:
    """Counts of what one entry did to runs, for metrics only (``schedd.server.metrics``).

    Invariant: apply only ever adds to a tally; nothing in apply reads it, and it is not part
    of any mutation, so it cannot change state. It is deterministic like everything else in
    apply (every replica counts the same for the same entry).

    ``created``: (RunOrigin, runs) of new PENDING runs; ``skipped``: (SkipReason, slots) of
    skip records written or extended (a range too long to count counts as one);
    ``finished``: (final RunState, ms from the last attempt's start to the end; -1 when the
    run never started) per run that reached a final state; ``retried``: failed attempts that
    will be retried."""

    created: tuple[tuple[int, int], ...] = ()
    skipped: tuple[tuple[int, int], ...] = ()
    finished: tuple[tuple[int, int], ...] = ()
    retried: int = 0


SKIPPED = Result(code="SKIPPED", message="entry at or below the applied index")


class Txn:
    """A write overlay over a Reader: reads see earlier writes; the last write of each key
    becomes its mutation.

    Only each key's final value is emitted (:attr:`mutations`), in the order keys were first
    written: the storage transaction ends in the same state as if every write were executed in
    order (writes to different keys commute), without executing the ones a later write of the
    same entry overrides (a run created and granted in one entry: its pending-index entries
    come and go, its record is written once)."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._read = reader.get
        self._writes: dict[tuple[str, bytes], bytes | None] = {}
        # What the reader answered, per key: the reader's state does not change while the entry
        # applies (its writes are executed after it), so a key read again (a namespace's quota
        # record, once or twice per new run; a counter) is not looked up in storage again.
        self._reads: dict[tuple[str, bytes], bytes | None] = {}
        self.revoked: list[Revoked] = []
        # metrics only (see Tally): written here, never read by apply
        self.created: dict[int, int] = {}
        self.skipped: dict[int, int] = {}
        self.finished: list[tuple[int, int]] = []
        self.retried = 0

    def get(self, db: str, key: bytes) -> bytes | None:
        k = (db, key)
        if k in self._writes:
            return self._writes[k]
        reads = self._reads
        if k in reads:
            return reads[k]
        value = reads[k] = self._read(db, key)
        return value

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self._writes[(db, key)] = value

    def delete(self, db: str, key: bytes) -> None:
        self._writes[(db, key)] = None

    def writes(self) -> Writes:
        """The entry's writes, one per key (its final value; None: delete), in the order keys
        were first written (:func:`schedd.state.apply.apply` turns them into ``Put`` and
        ``Delete``)."""
        return self._writes.items()

    def scan(self, db: str, prefix: bytes, limit: int, start: bytes = b"") -> list[bytes]:
        """Keys with ``prefix`` in key order from ``start`` on, earlier writes of this entry
        included."""
        if start:
            found = set(self._reader.scan(db, prefix, limit + len(self._writes), start))
        else:  # (the call every reader has always answered)
            found = set(self._reader.scan(db, prefix, limit + len(self._writes)))
        for (d, k), v in self._writes.items():
            if d == db and k.startswith(prefix) and k >= start:
                if v is None:
                    found.discard(k)
                else:
                    found.add(k)
        return sorted(found)[:limit]

    def tally(self) -> Tally | None:
        """What this entry counted (None: nothing)."""
        if not (self.created or self.skipped or self.finished or self.retried):
            return None
        return Tally(
            tuple(self.created.items()),
            tuple(self.skipped.items()),
            tuple(self.finished),
            self.retried,
        )

    def count_finished(self, run: Run) -> None:
        """Count ``run`` (just saved in a final state) for metrics."""
        took = run.finished_ms - run.started_ms if run.started_ms else -1
        self.finished.append((run.state, took))

    # typed helpers -------------------------------------------------------------------------

    def job(self, name: str) -> Job | None:
        raw = self.get("jobs", name.encode())
        return None if raw is None else Job.FromString(raw)

    def put_job(self, job: Job) -> None:
        self._writes[("jobs", job.name.encode())] = job.SerializeToString(deterministic=True)

    def run(self, rid: str) -> Run | None:
        raw = self.get("runs", rid.encode())
        return None if raw is None else Run.FromString(raw)

    def put_run(self, run: Run) -> None:
        self._writes[("runs", run.run_id.encode())] = run.SerializeToString(deterministic=True)

    def counter(self, key: bytes, default: int) -> int:
        raw = self.get("meta", key)
        return default if raw is None else keys.from_be64(raw)


def encode(cmd: command_pb2.Command) -> bytes:
    if not cmd.version:
        cmd.version = COMMAND_VERSION
    return cmd.SerializeToString(deterministic=True)


def request_record(code: str, message: str, at: int, job: str, run: str, digest: str) -> bytes:
    """A client request's record (``requests`` db): byte for byte what
    ``json.dumps(record, sort_keys=True)`` writes for it (the format every version has stored;
    ``digest`` "" leaves ``hash`` out), built directly: json.dumps took ~4.4 µs per request, a
    large part of a bulk create's apply per job. Strings go through json's own C escaper."""
    out = f'{{"at": {int(at)}, "code": {_json_str(code)}'
    if digest:
        out += f', "hash": {_json_str(digest)}'
    out += f', "job": {_json_str(job)}, "message": {_json_str(message)}, "run": {_json_str(run)}}}'
    return out.encode()


def request_recorded_at(raw: bytes) -> int:
    """When a request record was written (``now_ms`` of its entry); 0 if unknown (records
    from before the time was stored, or unreadable)."""
    try:
        return int(json.loads(raw).get("at", 0))
    except (ValueError, TypeError, AttributeError):
        return 0
