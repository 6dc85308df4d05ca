from schedd.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResumeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESUME_LEGACY: _ClassVar[ResumeMode]
    RESUME_MISFIRE: _ClassVar[ResumeMode]
    RESUME_SKIP_MISSED: _ClassVar[ResumeMode]
RESUME_LEGACY: ResumeMode
RESUME_MISFIRE: ResumeMode
RESUME_SKIP_MISSED: ResumeMode

class CreateJobCmd(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ...) -> None: ...

class DeleteJobCmd(_message.Message):
    __slots__ = ("name", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class PauseJobCmd(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeJobCmd(_message.Message):
    __slots__ = ("name", "next_due_ms", "mode", "missed_first_ms", "from_due_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIRST_MS_FIELD_NUMBER: _ClassVar[int]
    FROM_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    next_due_ms: int
    mode: ResumeMode
    missed_first_ms: int
    from_due_ms: int
    def __init__(self, name: _Optional[str] = ..., next_due_ms: _Optional[int] = ..., mode: _Optional[_Union[ResumeMode, str]] = ..., missed_first_ms: _Optional[int] = ..., from_due_ms: _Optional[int] = ...) -> None: ...

class TriggerJobCmd(_message.Message):
    __slots__ = ("name", "overlap")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    name: str
    overlap: _types_pb2.OverlapPolicy
    def __init__(self, name: _Optional[str] = ..., overlap: _Optional[_Union[_types_pb2.OverlapPolicy, str]] = ...) -> None: ...

class UpdateJobCmd(_message.Message):
    __slots__ = ("job", "expect_version")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXPECT_VERSION_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    expect_version: int
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ..., expect_version: _Optional[int] = ...) -> None: ...

class UpstreamMatch(_message.Message):
    __slots__ = ("job", "uid", "slots_ms", "records")
    JOB_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_MS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    job: str
    uid: int
    slots_ms: _containers.RepeatedScalarFieldContainer[int]
    records: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[str] = ..., uid: _Optional[int] = ..., slots_ms: _Optional[_Iterable[int]] = ..., records: _Optional[_Iterable[str]] = ...) -> None: ...

class BackfillCmd(_message.Message):
    __slots__ = ("name", "uid", "slots_ms", "overlap", "spacing_ms", "upstream", "isolate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_MS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    SPACING_MS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    ISOLATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: int
    slots_ms: _containers.RepeatedScalarFieldContainer[int]
    overlap: _types_pb2.OverlapPolicy
    spacing_ms: int
    upstream: _containers.RepeatedCompositeFieldContainer[UpstreamMatch]
    isolate: bool
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[int] = ..., slots_ms: _Optional[_Iterable[int]] = ..., overlap: _Optional[_Union[_types_pb2.OverlapPolicy, str]] = ..., spacing_ms: _Optional[int] = ..., upstream: _Optional[_Iterable[_Union[UpstreamMatch, _Mapping]]] = ..., isolate: _Optional[bool] = ...) -> None: ...

class FireItem(_message.Message):
    __slots__ = ("name", "uid", "from_due_ms", "slots_ms", "next_due_ms", "policy", "dues_ms", "dropped_first_ms", "dropped_last_ms", "dropped_count", "late_first_ms", "late_last_ms", "late_count", "dst_gap_ms", "upstream", "lease_to")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    FROM_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_MS_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DUES_MS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIRST_MS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_LAST_MS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    LATE_FIRST_MS_FIELD_NUMBER: _ClassVar[int]
    LATE_LAST_MS_FIELD_NUMBER: _ClassVar[int]
    LATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DST_GAP_MS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    LEASE_TO_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: int
    from_due_ms: int
    slots_ms: _containers.RepeatedScalarFieldContainer[int]
    next_due_ms: int
    policy: bool
    dues_ms: _containers.RepeatedScalarFieldContainer[int]
    dropped_first_ms: int
    dropped_last_ms: int
    dropped_count: int
    late_first_ms: int
    late_last_ms: int
    late_count: int
    dst_gap_ms: _containers.RepeatedScalarFieldContainer[int]
    upstream: _containers.RepeatedCompositeFieldContainer[UpstreamMatch]
    lease_to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[int] = ..., from_due_ms: _Optional[int] = ..., slots_ms: _Optional[_Iterable[int]] = ..., next_due_ms: _Optional[int] = ..., policy: _Optional[bool] = ..., dues_ms: _Optional[_Iterable[int]] = ..., dropped_first_ms: _Optional[int] = ..., dropped_last_ms: _Optional[int] = ..., dropped_count: _Optional[int] = ..., late_first_ms: _Optional[int] = ..., late_last_ms: _Optional[int] = ..., late_count: _Optional[int] = ..., dst_gap_ms: _Optional[_Iterable[int]] = ..., upstream: _Optional[_Iterable[_Union[UpstreamMatch, _Mapping]]] = ..., lease_to: _Optional[_Iterable[str]] = ...) -> None: ...

class FireDueCmd(_message.Message):
    __slots__ = ("items", "catchup_spacing_ms")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_SPACING_MS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FireItem]
    catchup_spacing_ms: int
    def __init__(self, items: _Optional[_Iterable[_Union[FireItem, _Mapping]]] = ..., catchup_spacing_ms: _Optional[int] = ...) -> None: ...

class GrantItem(_message.Message):
    __slots__ = ("run_id", "attempt", "worker_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    worker_id: str
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class GrantLeasesCmd(_message.Message):
    __slots__ = ("items", "lease_ttl_ms")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[GrantItem]
    lease_ttl_ms: int
    def __init__(self, items: _Optional[_Iterable[_Union[GrantItem, _Mapping]]] = ..., lease_ttl_ms: _Optional[int] = ...) -> None: ...

class ExpireItem(_message.Message):
    __slots__ = ("run_id", "fence", "reason", "released", "worker_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    fence: int
    reason: str
    released: bool
    worker_id: str
    def __init__(self, run_id: _Optional[str] = ..., fence: _Optional[int] = ..., reason: _Optional[str] = ..., released: _Optional[bool] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ExpireLeasesCmd(_message.Message):
    __slots__ = ("items", "retry_backoff_ms", "dead_letter")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ExpireItem]
    retry_backoff_ms: int
    dead_letter: bool
    def __init__(self, items: _Optional[_Iterable[_Union[ExpireItem, _Mapping]]] = ..., retry_backoff_ms: _Optional[int] = ..., dead_letter: _Optional[bool] = ...) -> None: ...

class CompleteItem(_message.Message):
    __slots__ = ("run_id", "fence", "success", "error", "exit_code", "worker_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    fence: int
    success: bool
    error: str
    exit_code: int
    worker_id: str
    def __init__(self, run_id: _Optional[str] = ..., fence: _Optional[int] = ..., success: _Optional[bool] = ..., error: _Optional[str] = ..., exit_code: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class CompleteRunsCmd(_message.Message):
    __slots__ = ("items", "retry_backoff_ms", "dead_letter")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CompleteItem]
    retry_backoff_ms: int
    dead_letter: bool
    def __init__(self, items: _Optional[_Iterable[_Union[CompleteItem, _Mapping]]] = ..., retry_backoff_ms: _Optional[int] = ..., dead_letter: _Optional[bool] = ...) -> None: ...

class DispatchTimeoutItem(_message.Message):
    __slots__ = ("run_id", "attempt")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class DispatchTimeoutCmd(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[DispatchTimeoutItem]
    def __init__(self, items: _Optional[_Iterable[_Union[DispatchTimeoutItem, _Mapping]]] = ...) -> None: ...

class DependencyTimeoutCmd(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PruneRunsCmd(_message.Message):
    __slots__ = ("run_ids", "request_ids", "request_ttl_ms")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    request_ttl_ms: int
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., request_ids: _Optional[_Iterable[str]] = ..., request_ttl_ms: _Optional[int] = ...) -> None: ...

class RetryRunCmd(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class BarrierCmd(_message.Message):
    __slots__ = ("node_id", "term")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    term: int
    def __init__(self, node_id: _Optional[str] = ..., term: _Optional[int] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class CreateTokenCmd(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: _types_pb2.Token
    def __init__(self, token: _Optional[_Union[_types_pb2.Token, _Mapping]] = ...) -> None: ...

class RevokeTokenCmd(_message.Message):
    __slots__ = ("name", "revoked_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    revoked_by: str
    def __init__(self, name: _Optional[str] = ..., revoked_by: _Optional[str] = ...) -> None: ...

class SetNamespaceCmd(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: _types_pb2.Namespace
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ...) -> None: ...

class CancelRunCmd(_message.Message):
    __slots__ = ("run_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportFeaturesCmd(_message.Message):
    __slots__ = ("node_id", "supported")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    supported: int
    def __init__(self, node_id: _Optional[str] = ..., supported: _Optional[int] = ...) -> None: ...

class SetFeatureLevelCmd(_message.Message):
    __slots__ = ("level",)
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    level: int
    def __init__(self, level: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("version", "now_ms", "request_id", "principal", "request_hash", "create_job", "delete_job", "pause_job", "resume_job", "trigger_job", "retry_run", "update_job", "backfill", "fire_due", "grant_leases", "expire_leases", "complete_runs", "dispatch_timeout", "prune_runs", "barrier", "batch", "create_token", "revoke_token", "set_namespace", "cancel_run", "report_features", "set_feature_level", "dependency_timeout")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATE_JOB_FIELD_NUMBER: _ClassVar[int]
    DELETE_JOB_FIELD_NUMBER: _ClassVar[int]
    PAUSE_JOB_FIELD_NUMBER: _ClassVar[int]
    RESUME_JOB_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_JOB_FIELD_NUMBER: _ClassVar[int]
    RETRY_RUN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_JOB_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    FIRE_DUE_FIELD_NUMBER: _ClassVar[int]
    GRANT_LEASES_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_LEASES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_RUNS_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PRUNE_RUNS_FIELD_NUMBER: _ClassVar[int]
    BARRIER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CREATE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SET_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_RUN_FIELD_NUMBER: _ClassVar[int]
    REPORT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    SET_FEATURE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    version: int
    now_ms: int
    request_id: str
    principal: str
    request_hash: bytes
    create_job: CreateJobCmd
    delete_job: DeleteJobCmd
    pause_job: PauseJobCmd
    resume_job: ResumeJobCmd
    trigger_job: TriggerJobCmd
    retry_run: RetryRunCmd
    update_job: UpdateJobCmd
    backfill: BackfillCmd
    fire_due: FireDueCmd
    grant_leases: GrantLeasesCmd
    expire_leases: ExpireLeasesCmd
    complete_runs: CompleteRunsCmd
    dispatch_timeout: DispatchTimeoutCmd
    prune_runs: PruneRunsCmd
    barrier: BarrierCmd
    batch: Batch
    create_token: CreateTokenCmd
    revoke_token: RevokeTokenCmd
    set_namespace: SetNamespaceCmd
    cancel_run: CancelRunCmd
    report_features: ReportFeaturesCmd
    set_feature_level: SetFeatureLevelCmd
    dependency_timeout: DependencyTimeoutCmd
    def __init__(self, version: _Optional[int] = ..., now_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., principal: _Optional[str] = ..., request_hash: _Optional[bytes] = ..., create_job: _Optional[_Union[CreateJobCmd, _Mapping]] = ..., delete_job: _Optional[_Union[DeleteJobCmd, _Mapping]] = ..., pause_job: _Optional[_Union[PauseJobCmd, _Mapping]] = ..., resume_job: _Optional[_Union[ResumeJobCmd, _Mapping]] = ..., trigger_job: _Optional[_Union[TriggerJobCmd, _Mapping]] = ..., retry_run: _Optional[_Union[RetryRunCmd, _Mapping]] = ..., update_job: _Optional[_Union[UpdateJobCmd, _Mapping]] = ..., backfill: _Optional[_Union[BackfillCmd, _Mapping]] = ..., fire_due: _Optional[_Union[FireDueCmd, _Mapping]] = ..., grant_leases: _Optional[_Union[GrantLeasesCmd, _Mapping]] = ..., expire_leases: _Optional[_Union[ExpireLeasesCmd, _Mapping]] = ..., complete_runs: _Optional[_Union[CompleteRunsCmd, _Mapping]] = ..., dispatch_timeout: _Optional[_Union[DispatchTimeoutCmd, _Mapping]] = ..., prune_runs: _Optional[_Union[PruneRunsCmd, _Mapping]] = ..., barrier: _Optional[_Union[BarrierCmd, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., create_token: _Optional[_Union[CreateTokenCmd, _Mapping]] = ..., revoke_token: _Optional[_Union[RevokeTokenCmd, _Mapping]] = ..., set_namespace: _Optional[_Union[SetNamespaceCmd, _Mapping]] = ..., cancel_run: _Optional[_Union[CancelRunCmd, _Mapping]] = ..., report_features: _Optional[_Union[ReportFeaturesCmd, _Mapping]] = ..., set_feature_level: _Optional[_Union[SetFeatureLevelCmd, _Mapping]] = ..., dependency_timeout: _Optional[_Union[DependencyTimeoutCmd, _Mapping]] = ...) -> None: ...
