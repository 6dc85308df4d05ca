"""Typed, immutable results of the SDK: frozen dataclasses mirroring the protobuf records.

    run = client.get_run(run_id)
    if run.state is RunState.SUCCEEDED:          # an IntEnum: also == types_pb2.RUN_STATE_SUCCEEDED
        print(run.scheduled_at.isoformat())     # datetime in UTC, from run.scheduled_ms

Contract (pinned by tests/unit/test_models.py against the .proto descriptors):

* Every record has exactly the fields of its protobuf message, under the **same names**, so code
  written against the messages keeps working: ``job.next_due_ms``, ``run.state``, ...
* Enum-valued fields are :class:`ProtoEnum` (``IntEnum``) members whose values are the protobuf
  numbers; a number this SDK does not know (a newer server) becomes a pseudo-member named
  ``UNKNOWN_<n>`` instead of failing.
* ``repeated`` fields are tuples, ``map`` fields are dicts, a ``proto3 optional`` scalar is
  ``None`` when unset, and so is a nested record whose presence means something
  (``Job.retry``: ``None`` = the cluster's fixed backoff). ``Job.schedule`` is always a record
  (an unset one reads as an empty ``Schedule()``, which ``to_pb`` leaves unset).
* ``from_pb(msg)`` / ``to_pb()`` round-trip losslessly; ``to_dict()`` is JSON-ready: protobuf
  field names in field-number order, every field present, enums by their full protobuf name
  (``"RUN_STATE_SUCCEEDED"``), tuples as lists, unset optionals as ``None``.
* Timestamps are ``*_ms`` integers (ms since the Unix epoch, UTC, 0 = none) as in the protocol;
  each has a ``*_at`` property giving an aware ``datetime`` in UTC, or ``None`` for 0.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NamedTuple, Self

from google.protobuf.message import Message

from schedd import rules
from schedd.errors import InvalidArgument, SchedError, from_code
from schedd.pb import api_pb2, types_pb2

__all__ = [
    "AuditRecord",
    "BackfillResult",
    "DependencyNode",
    "DstGap",
    "DstRepeat",
    "Explanation",
    "Job",
    "JobCreateResult",
    "JobState",
    "Member",
    "MisfirePolicy",
    "Namespace",
    "NewToken",
    "NodeReport",
    "NodeStatus",
    "Outcome",
    "OverlapPolicy",
    "ProtoEnum",
    "Record",
    "RetryPolicy",
    "Run",
    "RunOrigin",
    "RunState",
    "Schedule",
    "ScheduleKind",
    "SkipReason",
    "Token",
    "TriggerRule",
    "WorkerInfo",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ms: int) -> datetime | None:
    """``ms`` since the epoch as an aware UTC datetime; ``None`` for 0 (the protocol's "none")."""
    return _EPOCH + timedelta(milliseconds=ms) if ms else None


# ---- enums ---------------------------------------------------------------------------------


class ProtoEnum(enum.IntEnum):
    """Base of the enums: an ``IntEnum`` whose values are the protobuf enum numbers.

    Members compare equal to the generated constants (``RunState.DEAD == types_pb2.RUN_STATE_DEAD``).
    ``word`` is the short lowercase name (``"dead"``), ``proto_name`` the full protobuf name
    (``"RUN_STATE_DEAD"``). An unknown number yields a pseudo-member ``UNKNOWN_<n>``.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        # A newer server may send a value this SDK does not know: keep the number, do not fail.
        if isinstance(value, int) and not isinstance(value, bool):
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value}"
            member._value_ = value
            return member
        return None

    @property
    def word(self) -> str:
        """The short lowercase name, as schedctl prints it (``"succeeded"``)."""
        return self.name.lower()

    @property
    def proto_name(self) -> str:
        """The full protobuf name (``"RUN_STATE_SUCCEEDED"``); the number for unknown values."""
        pb = _PB_ENUMS.get(type(self))
        if pb is not None and int(self) in pb.values():
            return str(pb.Name(int(self)))
        return str(int(self))

    @classmethod
    def parse(cls, value: str | int) -> Self:
        """A member from itself, its number, its short name (``"dead"``, case-insensitive) or
        its protobuf name. Raises :class:`schedd.errors.InvalidArgument` (a ``ValueError``)."""
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "_")
            pb = _PB_ENUMS.get(cls)
            prefix = pb.Name(0).removesuffix("UNSPECIFIED") if pb is not None else ""
            key = key.removeprefix(prefix) if prefix else key
            if key in cls.__members__ and key != "UNSPECIFIED":
                return cls.__members__[key]
            words = ", ".join(m.word for m in cls if m.name != "UNSPECIFIED")
            raise InvalidArgument(cls.__name__, f"{value!r} is not one of: {words}")
        if isinstance(value, bool) or value not in cls._value2member_map_:
            raise InvalidArgument(cls.__name__, f"{value!r} is not a {cls.__name__} value")
        return cls(value)


class ScheduleKind(ProtoEnum):
    """``schedd.v1.ScheduleKind``: how a schedule produces slots."""

    UNSPECIFIED = 0
    CRON = 1
    AT = 2
    INTERVAL = 3


class DstGap(ProtoEnum):
    """``schedd.v1.DstGap``: a cron slot in a local time that does not exist."""

    UNSPECIFIED = 0
    SHIFT = 1
    SKIP = 2


class DstRepeat(ProtoEnum):
    """``schedd.v1.DstRepeat``: a cron slot in a local time that happens twice."""

    UNSPECIFIED = 0
    ONCE = 1
    TWICE = 2


class MisfirePolicy(ProtoEnum):
    """``schedd.v1.MisfirePolicy``: what happens to slots that were not fired on time."""

    UNSPECIFIED = 0
    SKIP = 1
    FIRE_ONCE = 2
    FIRE_ALL = 3


class OverlapPolicy(ProtoEnum):
    """``schedd.v1.OverlapPolicy``: what happens when a slot is due while runs are active."""

    UNSPECIFIED = 0
    ALLOW = 1
    FORBID = 2
    BUFFER_ONE = 3
    REPLACE = 4


class SkipReason(ProtoEnum):
    """``schedd.v1.SkipReason``: why a SKIPPED run record did not fire."""

    UNSPECIFIED = 0
    MISFIRE = 1
    COALESCED = 2
    CATCHUP_WINDOW = 3
    CATCHUP_LIMIT = 4
    OVERLAP = 5
    BUFFER_FULL = 6
    PAUSED = 7
    MAX_RUNS = 8
    DST_GAP = 9
    QUOTA = 10
    UPSTREAM_FAILED = 11
    DEPENDENCY_TIMEOUT = 12


class RunOrigin(ProtoEnum):
    """``schedd.v1.RunOrigin``: where a run came from."""

    UNSPECIFIED = 0
    SCHEDULE = 1
    CATCHUP = 2
    TRIGGER = 3
    BACKFILL = 4
    CHAIN = 5
    DEPENDENCY = 6


class TriggerRule(ProtoEnum):
    """``schedd.v1.TriggerRule``: when a job with depends_on runs (docs/dependencies.md)."""

    UNSPECIFIED = 0
    ALL_SUCCEEDED = 1
    ALL_DONE = 2
    ANY_SUCCEEDED = 3


class JobState(ProtoEnum):
    """``schedd.v1.JobState``."""

    UNSPECIFIED = 0
    ACTIVE = 1
    PAUSED = 2
    FINISHED = 3


class RunState(ProtoEnum):
    """``schedd.v1.RunState``. ``final`` says whether the run can change state by itself."""

    UNSPECIFIED = 0
    PENDING = 1
    LEASED = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    DEAD = 6
    SKIPPED = 7
    WAITING = 8

    @property
    def final(self) -> bool:
        """True for SUCCEEDED, FAILED, CANCELLED, DEAD and SKIPPED (only RetryRun revives a
        DEAD or FAILED run); False for PENDING, LEASED, WAITING and unknown values."""
        return self in _FINAL_RUN_STATES


_FINAL_RUN_STATES = frozenset(RunState(s) for s in rules.FINAL_RUN_STATES)


class Outcome(ProtoEnum):
    """``schedd.v1.Outcome`` of a completion."""

    UNSPECIFIED = 0
    SUCCEEDED = 1
    FAILED = 2


_PB_ENUMS: dict[type[ProtoEnum], Any] = {
    ScheduleKind: types_pb2.ScheduleKind,
    DstGap: types_pb2.DstGap,
    DstRepeat: types_pb2.DstRepeat,
    MisfirePolicy: types_pb2.MisfirePolicy,
    OverlapPolicy: types_pb2.OverlapPolicy,
    SkipReason: types_pb2.SkipReason,
    RunOrigin: types_pb2.RunOrigin,
    TriggerRule: types_pb2.TriggerRule,
    JobState: types_pb2.JobState,
    RunState: types_pb2.RunState,
    Outcome: api_pb2.Outcome,
}
_ENUM_BY_PROTO: dict[str, type[ProtoEnum]] = {
    pb.DESCRIPTOR.full_name: cls for cls, pb in _PB_ENUMS.items()
}


# ---- records -------------------------------------------------------------------------------

# How one field converts; computed once per record class from the message descriptor.
(
    _SCALAR,
    _OPTIONAL,
    _ENUM,
    _MESSAGE,
    _OPT_MESSAGE,
    _REPEATED,
    _REPEATED_ENUM,
    _REPEATED_MESSAGE,
    _MAP,
) = range(9)


class Record:
    """Base of the records: conversion between a frozen dataclass and its protobuf message
    (``from_pb``, ``to_pb``, ``to_dict``; see the module docstring)."""

    _pb: ClassVar[type[Message]]
    _plan_cache: ClassVar[tuple[tuple[str, int, Any], ...]]
    _convert_cache: ClassVar[Callable[[Message], Any]]

    @classmethod
    def _conversion(cls) -> tuple[tuple[str, int, Any], ...]:
        plan = cls.__dict__.get("_plan_cache")
        if plan is not None:
            return plan  # type: ignore[no-any-return]
        desc = cls._pb.DESCRIPTOR
        steps: list[tuple[str, int, Any]] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            fd = desc.fields_by_name[f.name]
            msg_type = fd.message_type
            if msg_type is not None and msg_type.GetOptions().map_entry:
                steps.append((f.name, _MAP, None))
            elif msg_type is not None:
                record = _RECORD_BY_PROTO[msg_type.full_name]
                if fd.is_repeated:
                    steps.append((f.name, _REPEATED_MESSAGE, record))
                else:
                    steps.append((f.name, _OPT_MESSAGE if f.default is None else _MESSAGE, record))
            elif fd.enum_type is not None:
                enum_cls = _ENUM_BY_PROTO[fd.enum_type.full_name]
                steps.append((f.name, _REPEATED_ENUM if fd.is_repeated else _ENUM, enum_cls))
            elif fd.is_repeated:
                steps.append((f.name, _REPEATED, None))
            elif fd.has_presence:
                steps.append((f.name, _OPTIONAL, None))
            else:
                steps.append((f.name, _SCALAR, None))
        result = tuple(steps)
        type.__setattr__(cls, "_plan_cache", result)
        return result

    @classmethod
    def from_pb(cls, msg: Message) -> Self:
        """The record holding the values of ``msg`` (a message of this record's protobuf type)."""
        if not isinstance(msg, cls._pb):
            raise TypeError(
                f"{cls.__name__}.from_pb wants a {cls._pb.DESCRIPTOR.full_name}, "
                f"got {type(msg).__name__}"
            )
        convert = cls.__dict__.get("_convert_cache") or cls._converter()
        return convert(msg)  # type: ignore[no-any-return]

    @classmethod
    def _converter(cls) -> Callable[[Message], Any]:
        """:meth:`from_pb`'s conversion compiled for this class from its plan: one straight
        line of attribute reads per field, written into a new instance's ``__dict__``, instead
        of a loop over the plan and the frozen ``__init__`` (a ``Job`` in under half the time,
        a ``Run`` in a quarter: listing a million jobs spent most of its time here). It does exactly what
        :meth:`_from_pb_reference` does (a hypothesis test compares them); a record with a
        ``__post_init__`` or ``__slots__`` would need its ``__init__``, so it keeps the plan."""
        plan = cls._conversion()
        if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
            convert: Callable[[Message], Any] = cls._from_pb_reference
        else:
            env: dict[str, Any] = {"_new": object.__new__, "cls": cls}
            body = [
                "def convert(msg):",
                "    has = msg.HasField",
                "    o = _new(cls)",
                "    d = o.__dict__",
            ]
            for i, (name, kind, sub) in enumerate(plan):
                a, key, s = f"msg.{name}", repr(name), f"s{i}"  # fields are identifiers
                env[s] = sub
                if kind == _SCALAR:
                    body.append(f"    d[{key}] = {a}")
                elif kind == _ENUM:
                    # a known number: its member; an unknown one: the enum's UNKNOWN_<n>
                    env[f"m{i}"] = sub._value2member_map_
                    body.append(f"    v = {a}")
                    body.append(f"    e = m{i}.get(v)")
                    body.append(f"    d[{key}] = e if e is not None else {s}(v)")
                elif kind == _OPTIONAL:
                    body.append(f"    d[{key}] = {a} if has({key}) else None")
                elif kind == _MESSAGE:
                    body.append(f"    d[{key}] = {s}.from_pb({a})")
                elif kind == _OPT_MESSAGE:
                    body.append(f"    d[{key}] = {s}.from_pb({a}) if has({key}) else None")
                elif kind == _REPEATED:
                    body.append(f"    d[{key}] = tuple({a})")
                elif kind == _REPEATED_ENUM:
                    body.append(f"    d[{key}] = tuple({s}(x) for x in {a})")
                elif kind == _REPEATED_MESSAGE:
                    body.append(f"    d[{key}] = tuple({s}.from_pb(x) for x in {a})")
                else:
                    body.append(f"    d[{key}] = dict({a})")
            body.append("    return o")
            exec("\n".join(body), env)  # noqa: S102 (code built from the descriptor, no input)
            convert = env["convert"]
        type.__setattr__(cls, "_convert_cache", convert)
        return convert

    @classmethod
    def _from_pb_reference(cls, msg: Message) -> Self:
        """:meth:`from_pb` by interpreting the conversion plan field by field: the reference
        the compiled conversion is tested against."""
        values: dict[str, Any] = {}
        for name, kind, sub in cls._conversion():
            v = getattr(msg, name)
            if kind == _SCALAR:
                values[name] = v
            elif kind == _ENUM:
                values[name] = sub(v)
            elif kind == _OPTIONAL:
                values[name] = v if msg.HasField(name) else None
            elif kind == _MESSAGE:
                values[name] = sub.from_pb(v)
            elif kind == _OPT_MESSAGE:
                values[name] = sub.from_pb(v) if msg.HasField(name) else None
            elif kind == _REPEATED:
                values[name] = tuple(v)
            elif kind == _REPEATED_ENUM:
                values[name] = tuple(sub(x) for x in v)
            elif kind == _REPEATED_MESSAGE:
                values[name] = tuple(sub.from_pb(x) for x in v)
            else:
                values[name] = dict(v)
        return cls(**values)

    def to_pb(self) -> Any:
        """This record as its protobuf message (a new message each call)."""
        msg = self._pb()
        for name, kind, _ in self._conversion():
            v = getattr(self, name)
            if v is None:
                continue
            if kind in (_SCALAR, _OPTIONAL):
                setattr(msg, name, v)
            elif kind == _ENUM:
                setattr(msg, name, int(v))
            elif kind == _OPT_MESSAGE:
                getattr(msg, name).CopyFrom(v.to_pb())
            elif kind == _MESSAGE:
                if v != type(v)():  # an always-present record left empty was unset: keep it so
                    getattr(msg, name).CopyFrom(v.to_pb())
            elif kind == _REPEATED:
                getattr(msg, name).extend(v)
            elif kind == _REPEATED_ENUM:
                getattr(msg, name).extend(int(x) for x in v)
            elif kind == _REPEATED_MESSAGE:
                getattr(msg, name).extend(x.to_pb() for x in v)
            else:
                getattr(msg, name).update(v)
        return msg

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: every field by its protobuf name, in field-number order; enums by
        their full protobuf name; nested records as dicts; tuples as lists; unset as ``None``."""
        return {name: _jsonable(getattr(self, name)) for name, _, _ in self._conversion()}

    def HasField(self, name: str) -> bool:  # noqa: N802 -- the protobuf spelling, on purpose
        """Protobuf-style presence test, so code written against the messages keeps working:
        True when the optional field ``name`` is set (not ``None``). Raises ``ValueError`` for
        a field without presence, as protobuf does."""
        for field_name, kind, _ in self._conversion():
            if field_name == name and kind in (_OPTIONAL, _OPT_MESSAGE):
                return getattr(self, name) is not None
            if field_name == name and kind == _MESSAGE:
                value = getattr(self, name)
                return bool(value != type(value)())
        raise ValueError(f"{type(self).__name__} has no optional field {name!r}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, ProtoEnum):
        pb = _PB_ENUMS.get(type(v))
        return v.proto_name if pb is not None and int(v) in pb.values() else int(v)
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class Schedule(Record):
    """When a job fires (``schedd.v1.Schedule``; docs/schedules.md). Exactly one of ``cron``
    (with ``timezone``), ``at_ms`` or ``every_ms`` applies, per ``kind``. ``anchor_ms`` is
    ``None`` when unset (then ``start_ms``, else the epoch)."""

    _pb: ClassVar[type[Message]] = types_pb2.Schedule

    kind: ScheduleKind = ScheduleKind.UNSPECIFIED
    cron: str = ""
    timezone: str = ""
    at_ms: int = 0
    every_ms: int = 0
    anchor_ms: int | None = None
    start_ms: int = 0
    end_ms: int = 0
    jitter_ms: int = 0
    dst_gap: DstGap = DstGap.UNSPECIFIED
    dst_repeat: DstRepeat = DstRepeat.UNSPECIFIED

    @property
    def at(self) -> datetime | None:
        """``at_ms`` as a UTC datetime (``None`` when 0)."""
        return _utc(self.at_ms)

    @property
    def start_at(self) -> datetime | None:
        """``start_ms`` as a UTC datetime (``None``: no lower bound)."""
        return _utc(self.start_ms)

    @property
    def end_at(self) -> datetime | None:
        """``end_ms`` as a UTC datetime (``None``: no upper bound)."""
        return _utc(self.end_ms)


@dataclass(frozen=True)
class RetryPolicy(Record):
    """What happens when an attempt fails (``schedd.v1.RetryPolicy``; docs/retries.md).
    ``initial_backoff_ms`` is ``None`` when unset (only in requests: stored policies are
    explicit)."""

    _pb: ClassVar[type[Message]] = types_pb2.RetryPolicy

    max_attempts: int = 0
    initial_backoff_ms: int | None = None
    multiplier: float = 0.0
    max_backoff_ms: int = 0
    non_retryable_exit_codes: tuple[int, ...] = ()
    non_retryable_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job(Record):
    """A job as the cluster stores it (``schedd.v1.Job``). ``retry`` is ``None`` when the job has
    no retry policy (it retries after the cluster's fixed backoff). ``version`` is what
    :meth:`schedd.client.Client.update_job`'s ``expect_version`` compares with."""

    _pb: ClassVar[type[Message]] = types_pb2.Job

    name: str = ""
    schedule: Schedule = field(default_factory=Schedule)
    queue: str = ""
    payload: str = ""
    state: JobState = JobState.UNSPECIFIED
    next_due_ms: int = 0
    created_ms: int = 0
    uid: int = 0
    max_attempts: int = 0
    retry: RetryPolicy | None = None
    run_timeout_ms: int = 0
    misfire: MisfirePolicy = MisfirePolicy.UNSPECIFIED
    misfire_grace_ms: int = 0
    catchup_window_ms: int = 0
    max_catchup: int = 0
    overlap: OverlapPolicy = OverlapPolicy.UNSPECIFIED
    max_concurrent: int = 0
    dispatch_timeout_ms: int = 0
    on_success: str = ""
    on_failure: str = ""
    priority: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    keep_runs: int = 0
    keep_for_ms: int = 0
    version: int = 0
    paused_ms: int = 0
    max_runs: int = 0
    fired_runs: int = 0
    buffered_run: str = ""
    updated_ms: int = 0
    open_skip: str = ""
    resumed_ms: int = 0
    namespace: str = ""
    depends_on: tuple[str, ...] = ()
    trigger_rule: TriggerRule = TriggerRule.UNSPECIFIED
    dependency_timeout_ms: int = 0
    dependents: tuple[str, ...] = ()
    gathering_run: str = ""

    @property
    def next_due_at(self) -> datetime | None:
        """When the next firing is due, in UTC (``None``: nothing is due)."""
        return _utc(self.next_due_ms)

    @property
    def created_at(self) -> datetime | None:
        """When the job was created, in UTC."""
        return _utc(self.created_ms)

    @property
    def updated_at(self) -> datetime | None:
        """When the job was last updated, in UTC (``None``: never)."""
        return _utc(self.updated_ms)

    @property
    def paused_at(self) -> datetime | None:
        """When the job was paused, in UTC (``None``: not paused)."""
        return _utc(self.paused_ms)

    @property
    def paused(self) -> bool:
        """Whether the job is paused."""
        return self.state == JobState.PAUSED


@dataclass(frozen=True)
class Run(Record):
    """One run of a job: one slot (``scheduled_ms``), all its attempts (``schedd.v1.Run``).
    ``run_id`` is derived from the job and the slot, so it is stable across retries and
    failovers."""

    _pb: ClassVar[type[Message]] = types_pb2.Run

    run_id: str = ""
    job: str = ""
    scheduled_ms: int = 0
    state: RunState = RunState.UNSPECIFIED
    attempt: int = 0
    fence: int = 0
    worker_id: str = ""
    not_before_ms: int = 0
    started_ms: int = 0
    finished_ms: int = 0
    error: str = ""
    queue: str = ""
    manual: bool = False
    exit_code: int = 0
    attempt_base: int = 0
    origin: RunOrigin = RunOrigin.UNSPECIFIED
    skip_reason: SkipReason = SkipReason.UNSPECIFIED
    skipped_until_ms: int = 0
    skipped_count: int = 0
    note: str = ""
    priority: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    dispatch_deadline_ms: int = 0
    caused_by: str = ""
    progress: str = ""
    namespace: str = ""
    upstream_runs: tuple[str, ...] = ()
    waiting_for: tuple[str, ...] = ()
    dependency_deadline_ms: int = 0
    isolated: bool = False

    @property
    def scheduled_at(self) -> datetime | None:
        """The slot this run is for, in UTC."""
        return _utc(self.scheduled_ms)

    @property
    def not_before_at(self) -> datetime | None:
        """Earliest dispatch time while PENDING, in UTC (``None``: none)."""
        return _utc(self.not_before_ms)

    @property
    def started_at(self) -> datetime | None:
        """When the last lease was granted, in UTC (``None``: never)."""
        return _utc(self.started_ms)

    @property
    def finished_at(self) -> datetime | None:
        """When the run finished, in UTC (``None``: not finished)."""
        return _utc(self.finished_ms)

    @property
    def skipped_until_at(self) -> datetime | None:
        """End of the range of slots a skip record stands for, in UTC (``None``: one slot)."""
        return _utc(self.skipped_until_ms)

    @property
    def dispatch_deadline_at(self) -> datetime | None:
        """When a PENDING run becomes DEAD, in UTC (``None``: never)."""
        return _utc(self.dispatch_deadline_ms)

    @property
    def done(self) -> bool:
        """Whether the run is in a final state (see :attr:`RunState.final`)."""
        return RunState(self.state).final


@dataclass(frozen=True)
class NodeStatus(Record):
    """One node's view of the cluster (``schedd.v1.NodeStatus``); ``state_digest`` only when
    asked for ``with_digest``; ``workers`` counts on the leader only."""

    _pb: ClassVar[type[Message]] = api_pb2.NodeStatus

    node_id: str = ""
    role: str = ""
    term: int = 0
    commit_index: int = 0
    applied_index: int = 0
    leader_id: str = ""
    leader_grpc: str = ""
    grpc_address: str = ""
    raft_address: str = ""
    has_quorum: bool = False
    state_digest: str = ""
    workers: int = 0
    peers: tuple[str, ...] = ()
    unsafe_no_fsync: bool = False
    pid: int = 0
    started_ms: int = 0
    feature_level: int = 0
    features_supported: int = 0
    not_serving: bool = False
    not_serving_reason: str = ""

    @property
    def started_at(self) -> datetime | None:
        """When the node process started, in UTC (``None``: a node that does not say)."""
        return _utc(self.started_ms)

    @property
    def is_leader(self) -> bool:
        """Whether this node says it is the leader."""
        return self.role == "leader"


@dataclass(frozen=True)
class Token(Record):
    """An API token as the API shows it (``schedd.v1.Token``, never its secret or hash)."""

    _pb: ClassVar[type[Message]] = types_pb2.Token

    name: str = ""
    grants: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    created_ms: int = 0
    expires_ms: int = 0
    created_by: str = ""
    revoked_ms: int = 0

    @property
    def revoked(self) -> bool:
        """Whether the token was revoked (every node refuses it)."""
        return self.revoked_ms != 0


@dataclass(frozen=True)
class AuditRecord(Record):
    """One change made through the API (``schedd.v1.AuditRecord``): who, what, which object,
    when (``at_ms``, the leader's clock), the outcome, at log index ``index``."""

    _pb: ClassVar[type[Message]] = types_pb2.AuditRecord

    index: int = 0
    at_ms: int = 0
    principal: str = ""
    action: str = ""
    target: str = ""
    code: str = ""
    message: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Namespace(Record):
    """A namespace's quotas and usage (``schedd.v1.Namespace``): ``max_jobs`` and ``max_runs``
    (0 = no limit), and the jobs and stored runs apply has counted since the quota was set."""

    _pb: ClassVar[type[Message]] = types_pb2.Namespace

    name: str = ""
    max_jobs: int = 0
    max_runs: int = 0
    jobs: int = 0
    runs: int = 0
    updated_ms: int = 0
    updated_by: str = ""


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``secret`` is shown this once (only its hash is stored)."""

    token: Token
    secret: str


@dataclass(frozen=True)
class JobCreateResult:
    """The outcome of one job of a bulk create (``Client.create_jobs``), in the order given.

    ``code`` is a gRPC status-code name: ``"OK"`` (``job`` is the job created), or what apply
    decided for this job alone, e.g. ``"ALREADY_EXISTS"`` or ``"RESOURCE_EXHAUSTED"`` (a
    quota), with ``message`` naming the field as a single create's error would. A retried call
    (the same request ids) gets the first outcome of each job again. ``error`` is that outcome
    as the typed exception a single ``create_job`` would raise (``None`` when OK)."""

    index: int
    name: str
    code: str = "OK"
    message: str = ""
    job: Job | None = None

    @property
    def ok(self) -> bool:
        """Whether the job was created (or, for a retried call, had been)."""
        return self.code == "OK"

    @property
    def error(self) -> SchedError | None:
        """The typed error a single ``create_job`` would have raised; ``None`` when OK."""
        return None if self.ok else from_code(self.code, self.message)


@dataclass(frozen=True)
class BackfillResult(Record):
    """The answer to one backfill call (``schedd.v1.BackfillResponse``). Call again from
    ``next_from_ms`` until it is 0 (``done``)."""

    _pb: ClassVar[type[Message]] = api_pb2.BackfillResponse

    created: int = 0
    existing: int = 0
    next_from_ms: int = 0
    total_slots: int = 0
    downstream_created: int = 0

    @property
    def done(self) -> bool:
        """Whether the requested range is complete."""
        return self.next_from_ms == 0


@dataclass(frozen=True)
class Explanation(Record):
    """Why a job ran or did not at a time (``schedd.v1.ExplainResponse``): a one-word
    ``verdict``, a sentence, the slot concerned and the run or skip records that decided it."""

    _pb: ClassVar[type[Message]] = api_pb2.ExplainResponse

    verdict: str = ""
    explanation: str = ""
    slot_ms: int = 0
    runs: tuple[Run, ...] = ()
    previous_slot_ms: int = 0
    next_slot_ms: int = 0
    pending_cause: str = ""
    upstream: tuple[Run, ...] = ()

    @property
    def slot_at(self) -> datetime | None:
        """The slot the answer is about, in UTC (``None``: none)."""
        return _utc(self.slot_ms)

    @property
    def previous_slot_at(self) -> datetime | None:
        """The slot before the time asked about, in UTC (``None``: none)."""
        return _utc(self.previous_slot_ms)

    @property
    def next_slot_at(self) -> datetime | None:
        """The slot after the time asked about, in UTC (``None``: none)."""
        return _utc(self.next_slot_ms)


@dataclass(frozen=True)
class DependencyNode(Record):
    """One job of :meth:`schedd.client.Client.dependencies` (``schedd.v1.DependencyNode``):
    the job, its newest run record (``None``: none) and its runs waiting for upstreams."""

    _pb: ClassVar[type[Message]] = api_pb2.DependencyNode

    job: Job = field(default_factory=Job)
    last: Run | None = None
    waiting: tuple[Run, ...] = ()


@dataclass(frozen=True)
class WorkerInfo(Record):
    """A worker stream attached to the leader (``schedd.v1.WorkerInfo``): who attached it, what
    it serves (bare queue names of ``namespace``; ``jobs`` empty: any job), the leases it holds
    (``leases``; ``run_ids`` lists at most 100) and when it connected and was last heard from
    (the leader's clock)."""

    _pb: ClassVar[type[Message]] = api_pb2.WorkerInfo

    worker_id: str = ""
    principal: str = ""
    namespace: str = ""
    queues: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    concurrency: int = 0
    leases: int = 0
    run_ids: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    connected_ms: int = 0
    last_seen_ms: int = 0
    draining: bool = False

    @property
    def connected_at(self) -> datetime | None:
        """When the stream attached, in UTC."""
        return _utc(self.connected_ms)

    @property
    def last_seen_at(self) -> datetime | None:
        """When the worker was last heard from, in UTC."""
        return _utc(self.last_seen_ms)


@dataclass(frozen=True)
class Member(Record):
    """A member of the cluster as the leader sees it (``schedd.v1.Member``): whether it is in
    the Raft configuration (``voter``), connected, and how far its log is known to match
    (``match_index``; the leader's own is the commit index)."""

    _pb: ClassVar[type[Message]] = api_pb2.Member

    node_id: str = ""
    raft_address: str = ""
    grpc_address: str = ""
    leader: bool = False
    voter: bool = False
    connected: bool = False
    match_index: int = 0


_RECORD_BY_PROTO: dict[str, type[Record]] = {
    cls._pb.DESCRIPTOR.full_name: cls
    for cls in (
        Schedule,
        RetryPolicy,
        Job,
        Run,
        NodeStatus,
        BackfillResult,
        Explanation,
        DependencyNode,
        WorkerInfo,
        Member,
    )
}


def _hashable(v: Any) -> Any:
    return frozenset(v.items()) if isinstance(v, dict) else v


def _record_hash(self: Record) -> int:
    # The generated dataclass hash fails on the dict of a map field; hash its items instead,
    # so equal records (dataclass equality) hash alike and records can go into sets.
    fields = dataclasses.fields(self)  # type: ignore[arg-type]
    return hash((type(self),) + tuple(_hashable(getattr(self, f.name)) for f in fields))


for _cls in _RECORD_BY_PROTO.values():
    _cls.__hash__ = _record_hash  # type: ignore[method-assign,assignment]


class NodeReport(NamedTuple):
    """One node's answer in :meth:`schedd.client.Client.cluster_status`: its ``status``, or
    ``None`` and the reason (``error``) when it did not answer. A tuple, so
    ``for endpoint, status, error in client.cluster_status()`` works."""

    endpoint: str
    status: NodeStatus | None
    error: str

    @property
    def ok(self) -> bool:
        """Whether the node answered."""
        return self.status is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"endpoint", "status" (dict or None), "error"}``."""
        return {
            "endpoint": self.endpoint,
            "status": self.status.to_dict() if self.status is not None else None,
            "error": self.error,
        }
