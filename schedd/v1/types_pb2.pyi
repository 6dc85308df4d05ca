from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScheduleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_KIND_UNSPECIFIED: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_CRON: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_AT: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_INTERVAL: _ClassVar[ScheduleKind]

class DstGap(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DST_GAP_UNSPECIFIED: _ClassVar[DstGap]
    DST_GAP_SHIFT: _ClassVar[DstGap]
    DST_GAP_SKIP: _ClassVar[DstGap]

class DstRepeat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DST_REPEAT_UNSPECIFIED: _ClassVar[DstRepeat]
    DST_REPEAT_ONCE: _ClassVar[DstRepeat]
    DST_REPEAT_TWICE: _ClassVar[DstRepeat]

class MisfirePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MISFIRE_POLICY_UNSPECIFIED: _ClassVar[MisfirePolicy]
    MISFIRE_POLICY_SKIP: _ClassVar[MisfirePolicy]
    MISFIRE_POLICY_FIRE_ONCE: _ClassVar[MisfirePolicy]
    MISFIRE_POLICY_FIRE_ALL: _ClassVar[MisfirePolicy]

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_POLICY_UNSPECIFIED: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_ALLOW: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_FORBID: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_BUFFER_ONE: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_REPLACE: _ClassVar[OverlapPolicy]

class SkipReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SKIP_REASON_UNSPECIFIED: _ClassVar[SkipReason]
    SKIP_REASON_MISFIRE: _ClassVar[SkipReason]
    SKIP_REASON_COALESCED: _ClassVar[SkipReason]
    SKIP_REASON_CATCHUP_WINDOW: _ClassVar[SkipReason]
    SKIP_REASON_CATCHUP_LIMIT: _ClassVar[SkipReason]
    SKIP_REASON_OVERLAP: _ClassVar[SkipReason]
    SKIP_REASON_BUFFER_FULL: _ClassVar[SkipReason]
    SKIP_REASON_PAUSED: _ClassVar[SkipReason]
    SKIP_REASON_MAX_RUNS: _ClassVar[SkipReason]
    SKIP_REASON_DST_GAP: _ClassVar[SkipReason]
    SKIP_REASON_QUOTA: _ClassVar[SkipReason]
    SKIP_REASON_UPSTREAM_FAILED: _ClassVar[SkipReason]
    SKIP_REASON_DEPENDENCY_TIMEOUT: _ClassVar[SkipReason]

class RunOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_ORIGIN_UNSPECIFIED: _ClassVar[RunOrigin]
    RUN_ORIGIN_SCHEDULE: _ClassVar[RunOrigin]
    RUN_ORIGIN_CATCHUP: _ClassVar[RunOrigin]
    RUN_ORIGIN_TRIGGER: _ClassVar[RunOrigin]
    RUN_ORIGIN_BACKFILL: _ClassVar[RunOrigin]
    RUN_ORIGIN_CHAIN: _ClassVar[RunOrigin]
    RUN_ORIGIN_DEPENDENCY: _ClassVar[RunOrigin]

class TriggerRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_RULE_UNSPECIFIED: _ClassVar[TriggerRule]
    TRIGGER_RULE_ALL_SUCCEEDED: _ClassVar[TriggerRule]
    TRIGGER_RULE_ALL_DONE: _ClassVar[TriggerRule]
    TRIGGER_RULE_ANY_SUCCEEDED: _ClassVar[TriggerRule]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_ACTIVE: _ClassVar[JobState]
    JOB_STATE_PAUSED: _ClassVar[JobState]
    JOB_STATE_FINISHED: _ClassVar[JobState]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_PENDING: _ClassVar[RunState]
    RUN_STATE_LEASED: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_CANCELLED: _ClassVar[RunState]
    RUN_STATE_DEAD: _ClassVar[RunState]
    RUN_STATE_SKIPPED: _ClassVar[RunState]
    RUN_STATE_WAITING: _ClassVar[RunState]
SCHEDULE_KIND_UNSPECIFIED: ScheduleKind
SCHEDULE_KIND_CRON: ScheduleKind
SCHEDULE_KIND_AT: ScheduleKind
SCHEDULE_KIND_INTERVAL: ScheduleKind
DST_GAP_UNSPECIFIED: DstGap
DST_GAP_SHIFT: DstGap
DST_GAP_SKIP: DstGap
DST_REPEAT_UNSPECIFIED: DstRepeat
DST_REPEAT_ONCE: DstRepeat
DST_REPEAT_TWICE: DstRepeat
MISFIRE_POLICY_UNSPECIFIED: MisfirePolicy
MISFIRE_POLICY_SKIP: MisfirePolicy
MISFIRE_POLICY_FIRE_ONCE: MisfirePolicy
MISFIRE_POLICY_FIRE_ALL: MisfirePolicy
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
OVERLAP_POLICY_ALLOW: OverlapPolicy
OVERLAP_POLICY_FORBID: OverlapPolicy
OVERLAP_POLICY_BUFFER_ONE: OverlapPolicy
OVERLAP_POLICY_REPLACE: OverlapPolicy
SKIP_REASON_UNSPECIFIED: SkipReason
SKIP_REASON_MISFIRE: SkipReason
SKIP_REASON_COALESCED: SkipReason
SKIP_REASON_CATCHUP_WINDOW: SkipReason
SKIP_REASON_CATCHUP_LIMIT: SkipReason
SKIP_REASON_OVERLAP: SkipReason
SKIP_REASON_BUFFER_FULL: SkipReason
SKIP_REASON_PAUSED: SkipReason
SKIP_REASON_MAX_RUNS: SkipReason
SKIP_REASON_DST_GAP: SkipReason
SKIP_REASON_QUOTA: SkipReason
SKIP_REASON_UPSTREAM_FAILED: SkipReason
SKIP_REASON_DEPENDENCY_TIMEOUT: SkipReason
RUN_ORIGIN_UNSPECIFIED: RunOrigin
RUN_ORIGIN_SCHEDULE: RunOrigin
RUN_ORIGIN_CATCHUP: RunOrigin
RUN_ORIGIN_TRIGGER: RunOrigin
RUN_ORIGIN_BACKFILL: RunOrigin
RUN_ORIGIN_CHAIN: RunOrigin
RUN_ORIGIN_DEPENDENCY: RunOrigin
TRIGGER_RULE_UNSPECIFIED: TriggerRule
TRIGGER_RULE_ALL_SUCCEEDED: TriggerRule
TRIGGER_RULE_ALL_DONE: TriggerRule
TRIGGER_RULE_ANY_SUCCEEDED: TriggerRule
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_ACTIVE: JobState
JOB_STATE_PAUSED: JobState
JOB_STATE_FINISHED: JobState
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_PENDING: RunState
RUN_STATE_LEASED: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_CANCELLED: RunState
RUN_STATE_DEAD: RunState
RUN_STATE_SKIPPED: RunState
RUN_STATE_WAITING: RunState

class Schedule(_message.Message):
    __slots__ = ("kind", "cron", "timezone", "at_ms", "every_ms", "anchor_ms", "start_ms", "end_ms", "jitter_ms", "dst_gap", "dst_repeat")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    EVERY_MS_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_MS_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    JITTER_MS_FIELD_NUMBER: _ClassVar[int]
    DST_GAP_FIELD_NUMBER: _ClassVar[int]
    DST_REPEAT_FIELD_NUMBER: _ClassVar[int]
    kind: ScheduleKind
    cron: str
    timezone: str
    at_ms: int
    every_ms: int
    anchor_ms: int
    start_ms: int
    end_ms: int
    jitter_ms: int
    dst_gap: DstGap
    dst_repeat: DstRepeat
    def __init__(self, kind: _Optional[_Union[ScheduleKind, str]] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., at_ms: _Optional[int] = ..., every_ms: _Optional[int] = ..., anchor_ms: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., jitter_ms: _Optional[int] = ..., dst_gap: _Optional[_Union[DstGap, str]] = ..., dst_repeat: _Optional[_Union[DstRepeat, str]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff_ms", "multiplier", "max_backoff_ms", "non_retryable_exit_codes", "non_retryable_errors")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_EXIT_CODES_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff_ms: int
    multiplier: float
    max_backoff_ms: int
    non_retryable_exit_codes: _containers.RepeatedScalarFieldContainer[int]
    non_retryable_errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff_ms: _Optional[int] = ..., multiplier: _Optional[float] = ..., max_backoff_ms: _Optional[int] = ..., non_retryable_exit_codes: _Optional[_Iterable[int]] = ..., non_retryable_errors: _Optional[_Iterable[str]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("name", "schedule", "queue", "payload", "state", "next_due_ms", "created_ms", "uid", "max_attempts", "retry", "run_timeout_ms", "misfire", "misfire_grace_ms", "catchup_window_ms", "max_catchup", "overlap", "max_concurrent", "dispatch_timeout_ms", "on_success", "on_failure", "priority", "tags", "keep_runs", "keep_for_ms", "version", "paused_ms", "max_runs", "fired_runs", "buffered_run", "updated_ms", "open_skip", "resumed_ms", "namespace", "depends_on", "trigger_rule", "dependency_timeout_ms", "dependents", "gathering_run")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    RUN_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_CATCHUP_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ON_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    KEEP_RUNS_FIELD_NUMBER: _ClassVar[int]
    KEEP_FOR_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAUSED_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    FIRED_RUNS_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_RUN_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_SKIP_FIELD_NUMBER: _ClassVar[int]
    RESUMED_MS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_RULE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DEPENDENTS_FIELD_NUMBER: _ClassVar[int]
    GATHERING_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    schedule: Schedule
    queue: str
    payload: str
    state: JobState
    next_due_ms: int
    created_ms: int
    uid: int
    max_attempts: int
    retry: RetryPolicy
    run_timeout_ms: int
    misfire: MisfirePolicy
    misfire_grace_ms: int
    catchup_window_ms: int
    max_catchup: int
    overlap: OverlapPolicy
    max_concurrent: int
    dispatch_timeout_ms: int
    on_success: str
    on_failure: str
    priority: int
    tags: _containers.ScalarMap[str, str]
    keep_runs: int
    keep_for_ms: int
    version: int
    paused_ms: int
    max_runs: int
    fired_runs: int
    buffered_run: str
    updated_ms: int
    open_skip: str
    resumed_ms: int
    namespace: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    trigger_rule: TriggerRule
    dependency_timeout_ms: int
    dependents: _containers.RepeatedScalarFieldContainer[str]
    gathering_run: str
    def __init__(self, name: _Optional[str] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., queue: _Optional[str] = ..., payload: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., next_due_ms: _Optional[int] = ..., created_ms: _Optional[int] = ..., uid: _Optional[int] = ..., max_attempts: _Optional[int] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., run_timeout_ms: _Optional[int] = ..., misfire: _Optional[_Union[MisfirePolicy, str]] = ..., misfire_grace_ms: _Optional[int] = ..., catchup_window_ms: _Optional[int] = ..., max_catchup: _Optional[int] = ..., overlap: _Optional[_Union[OverlapPolicy, str]] = ..., max_concurrent: _Optional[int] = ..., dispatch_timeout_ms: _Optional[int] = ..., on_success: _Optional[str] = ..., on_failure: _Optional[str] = ..., priority: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., keep_runs: _Optional[int] = ..., keep_for_ms: _Optional[int] = ..., version: _Optional[int] = ..., paused_ms: _Optional[int] = ..., max_runs: _Optional[int] = ..., fired_runs: _Optional[int] = ..., buffered_run: _Optional[str] = ..., updated_ms: _Optional[int] = ..., open_skip: _Optional[str] = ..., resumed_ms: _Optional[int] = ..., namespace: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., trigger_rule: _Optional[_Union[TriggerRule, str]] = ..., dependency_timeout_ms: _Optional[int] = ..., dependents: _Optional[_Iterable[str]] = ..., gathering_run: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "job", "scheduled_ms", "state", "attempt", "fence", "worker_id", "not_before_ms", "started_ms", "finished_ms", "error", "queue", "manual", "exit_code", "attempt_base", "origin", "skip_reason", "skipped_until_ms", "skipped_count", "note", "priority", "tags", "dispatch_deadline_ms", "caused_by", "progress", "namespace", "upstream_runs", "waiting_for", "dependency_deadline_ms", "isolated")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_BASE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    CAUSED_BY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_RUNS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    ISOLATED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job: str
    scheduled_ms: int
    state: RunState
    attempt: int
    fence: int
    worker_id: str
    not_before_ms: int
    started_ms: int
    finished_ms: int
    error: str
    queue: str
    manual: bool
    exit_code: int
    attempt_base: int
    origin: RunOrigin
    skip_reason: SkipReason
    skipped_until_ms: int
    skipped_count: int
    note: str
    priority: int
    tags: _containers.ScalarMap[str, str]
    dispatch_deadline_ms: int
    caused_by: str
    progress: str
    namespace: str
    upstream_runs: _containers.RepeatedScalarFieldContainer[str]
    waiting_for: _containers.RepeatedScalarFieldContainer[str]
    dependency_deadline_ms: int
    isolated: bool
    def __init__(self, run_id: _Optional[str] = ..., job: _Optional[str] = ..., scheduled_ms: _Optional[int] = ..., state: _Optional[_Union[RunState, str]] = ..., attempt: _Optional[int] = ..., fence: _Optional[int] = ..., worker_id: _Optional[str] = ..., not_before_ms: _Optional[int] = ..., started_ms: _Optional[int] = ..., finished_ms: _Optional[int] = ..., error: _Optional[str] = ..., queue: _Optional[str] = ..., manual: _Optional[bool] = ..., exit_code: _Optional[int] = ..., attempt_base: _Optional[int] = ..., origin: _Optional[_Union[RunOrigin, str]] = ..., skip_reason: _Optional[_Union[SkipReason, str]] = ..., skipped_until_ms: _Optional[int] = ..., skipped_count: _Optional[int] = ..., note: _Optional[str] = ..., priority: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., dispatch_deadline_ms: _Optional[int] = ..., caused_by: _Optional[str] = ..., progress: _Optional[str] = ..., namespace: _Optional[str] = ..., upstream_runs: _Optional[_Iterable[str]] = ..., waiting_for: _Optional[_Iterable[str]] = ..., dependency_deadline_ms: _Optional[int] = ..., isolated: _Optional[bool] = ...) -> None: ...

class Firing(_message.Message):
    __slots__ = ("run_id", "job", "scheduled_ms", "attempt", "fence", "payload", "queue", "lease_ttl_ms", "namespace", "start_at_ms")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    START_AT_MS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job: str
    scheduled_ms: int
    attempt: int
    fence: int
    payload: str
    queue: str
    lease_ttl_ms: int
    namespace: str
    start_at_ms: int
    def __init__(self, run_id: _Optional[str] = ..., job: _Optional[str] = ..., scheduled_ms: _Optional[int] = ..., attempt: _Optional[int] = ..., fence: _Optional[int] = ..., payload: _Optional[str] = ..., queue: _Optional[str] = ..., lease_ttl_ms: _Optional[int] = ..., namespace: _Optional[str] = ..., start_at_ms: _Optional[int] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("name", "secret_sha256", "grants", "queues", "created_ms", "expires_ms", "created_by", "revoked_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_SHA256_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    secret_sha256: bytes
    grants: _containers.RepeatedScalarFieldContainer[str]
    queues: _containers.RepeatedScalarFieldContainer[str]
    created_ms: int
    expires_ms: int
    created_by: str
    revoked_ms: int
    def __init__(self, name: _Optional[str] = ..., secret_sha256: _Optional[bytes] = ..., grants: _Optional[_Iterable[str]] = ..., queues: _Optional[_Iterable[str]] = ..., created_ms: _Optional[int] = ..., expires_ms: _Optional[int] = ..., created_by: _Optional[str] = ..., revoked_ms: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("index", "at_ms", "principal", "action", "target", "code", "message", "request_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    at_ms: int
    principal: str
    action: str
    target: str
    code: str
    message: str
    request_id: str
    def __init__(self, index: _Optional[int] = ..., at_ms: _Optional[int] = ..., principal: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ("name", "max_jobs", "max_runs", "jobs", "runs", "updated_ms", "updated_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_jobs: int
    max_runs: int
    jobs: int
    runs: int
    updated_ms: int
    updated_by: str
    def __init__(self, name: _Optional[str] = ..., max_jobs: _Optional[int] = ..., max_runs: _Optional[int] = ..., jobs: _Optional[int] = ..., runs: _Optional[int] = ..., updated_ms: _Optional[int] = ..., updated_by: _Optional[str] = ...) -> None: ...
