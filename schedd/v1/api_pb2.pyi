from schedd.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_SUCCEEDED: _ClassVar[Outcome]
    OUTCOME_FAILED: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_SUCCEEDED: Outcome
OUTCOME_FAILED: Outcome

class CreateJobRequest(_message.Message):
    __slots__ = ("name", "schedule", "queue", "payload", "max_attempts", "request_id", "retry", "run_timeout_ms", "misfire", "misfire_grace_ms", "catchup_window_ms", "max_catchup", "overlap", "max_concurrent", "dispatch_timeout_ms", "on_success", "on_failure", "priority", "tags", "keep_runs", "keep_for_ms", "max_runs", "allow_past", "namespace", "depends_on", "trigger_rule", "dependency_timeout_ms")
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
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
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
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PAST_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_RULE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    schedule: _types_pb2.Schedule
    queue: str
    payload: str
    max_attempts: int
    request_id: str
    retry: _types_pb2.RetryPolicy
    run_timeout_ms: int
    misfire: _types_pb2.MisfirePolicy
    misfire_grace_ms: int
    catchup_window_ms: int
    max_catchup: int
    overlap: _types_pb2.OverlapPolicy
    max_concurrent: int
    dispatch_timeout_ms: int
    on_success: str
    on_failure: str
    priority: int
    tags: _containers.ScalarMap[str, str]
    keep_runs: int
    keep_for_ms: int
    max_runs: int
    allow_past: bool
    namespace: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    trigger_rule: _types_pb2.TriggerRule
    dependency_timeout_ms: int
    def __init__(self, name: _Optional[str] = ..., schedule: _Optional[_Union[_types_pb2.Schedule, _Mapping]] = ..., queue: _Optional[str] = ..., payload: _Optional[str] = ..., max_attempts: _Optional[int] = ..., request_id: _Optional[str] = ..., retry: _Optional[_Union[_types_pb2.RetryPolicy, _Mapping]] = ..., run_timeout_ms: _Optional[int] = ..., misfire: _Optional[_Union[_types_pb2.MisfirePolicy, str]] = ..., misfire_grace_ms: _Optional[int] = ..., catchup_window_ms: _Optional[int] = ..., max_catchup: _Optional[int] = ..., overlap: _Optional[_Union[_types_pb2.OverlapPolicy, str]] = ..., max_concurrent: _Optional[int] = ..., dispatch_timeout_ms: _Optional[int] = ..., on_success: _Optional[str] = ..., on_failure: _Optional[str] = ..., priority: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., keep_runs: _Optional[int] = ..., keep_for_ms: _Optional[int] = ..., max_runs: _Optional[int] = ..., allow_past: _Optional[bool] = ..., namespace: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., trigger_rule: _Optional[_Union[_types_pb2.TriggerRule, str]] = ..., dependency_timeout_ms: _Optional[int] = ...) -> None: ...

class CreateJobsRequest(_message.Message):
    __slots__ = ("jobs", "namespace")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[CreateJobRequest]
    namespace: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[CreateJobRequest, _Mapping]]] = ..., namespace: _Optional[str] = ...) -> None: ...

class CreateJobResult(_message.Message):
    __slots__ = ("code", "message", "job")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    job: _types_pb2.Job
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ...) -> None: ...

class CreateJobsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CreateJobResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CreateJobResult, _Mapping]]] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("name", "namespace", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class UpdateJobRequest(_message.Message):
    __slots__ = ("job", "expect_version")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXPECT_VERSION_FIELD_NUMBER: _ClassVar[int]
    job: CreateJobRequest
    expect_version: int
    def __init__(self, job: _Optional[_Union[CreateJobRequest, _Mapping]] = ..., expect_version: _Optional[int] = ...) -> None: ...

class ResumeJobRequest(_message.Message):
    __slots__ = ("name", "skip_missed", "namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SKIP_MISSED_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    skip_missed: bool
    namespace: str
    def __init__(self, name: _Optional[str] = ..., skip_missed: _Optional[bool] = ..., namespace: _Optional[str] = ...) -> None: ...

class BackfillRequest(_message.Message):
    __slots__ = ("name", "from_ms", "to_ms", "limit", "overlap", "namespace", "with_downstream")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    WITH_DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    from_ms: int
    to_ms: int
    limit: int
    overlap: _types_pb2.OverlapPolicy
    namespace: str
    with_downstream: bool
    def __init__(self, name: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., limit: _Optional[int] = ..., overlap: _Optional[_Union[_types_pb2.OverlapPolicy, str]] = ..., namespace: _Optional[str] = ..., with_downstream: _Optional[bool] = ...) -> None: ...

class BackfillResponse(_message.Message):
    __slots__ = ("created", "existing", "next_from_ms", "total_slots", "downstream_created")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    NEXT_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SLOTS_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_CREATED_FIELD_NUMBER: _ClassVar[int]
    created: int
    existing: int
    next_from_ms: int
    total_slots: int
    downstream_created: int
    def __init__(self, created: _Optional[int] = ..., existing: _Optional[int] = ..., next_from_ms: _Optional[int] = ..., total_slots: _Optional[int] = ..., downstream_created: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("name", "at_ms", "namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    at_ms: int
    namespace: str
    def __init__(self, name: _Optional[str] = ..., at_ms: _Optional[int] = ..., namespace: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("verdict", "explanation", "slot_ms", "runs", "previous_slot_ms", "next_slot_ms", "pending_cause", "upstream")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    SLOT_MS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SLOT_MS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SLOT_MS_FIELD_NUMBER: _ClassVar[int]
    PENDING_CAUSE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    explanation: str
    slot_ms: int
    runs: _containers.RepeatedCompositeFieldContainer[_types_pb2.Run]
    previous_slot_ms: int
    next_slot_ms: int
    pending_cause: str
    upstream: _containers.RepeatedCompositeFieldContainer[_types_pb2.Run]
    def __init__(self, verdict: _Optional[str] = ..., explanation: _Optional[str] = ..., slot_ms: _Optional[int] = ..., runs: _Optional[_Iterable[_Union[_types_pb2.Run, _Mapping]]] = ..., previous_slot_ms: _Optional[int] = ..., next_slot_ms: _Optional[int] = ..., pending_cause: _Optional[str] = ..., upstream: _Optional[_Iterable[_Union[_types_pb2.Run, _Mapping]]] = ...) -> None: ...

class JobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("limit", "after_name", "namespace")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after_name: str
    namespace: str
    def __init__(self, limit: _Optional[int] = ..., after_name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_types_pb2.Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[_types_pb2.Job, _Mapping]]] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ("unlinked",)
    UNLINKED_FIELD_NUMBER: _ClassVar[int]
    unlinked: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unlinked: _Optional[_Iterable[str]] = ...) -> None: ...

class DependencyNode(_message.Message):
    __slots__ = ("job", "last", "waiting")
    JOB_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    last: _types_pb2.Run
    waiting: _containers.RepeatedCompositeFieldContainer[_types_pb2.Run]
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ..., last: _Optional[_Union[_types_pb2.Run, _Mapping]] = ..., waiting: _Optional[_Iterable[_Union[_types_pb2.Run, _Mapping]]] = ...) -> None: ...

class DependenciesResponse(_message.Message):
    __slots__ = ("nodes", "truncated")
    NODES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[DependencyNode]
    truncated: bool
    def __init__(self, nodes: _Optional[_Iterable[_Union[DependencyNode, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class TriggerJobRequest(_message.Message):
    __slots__ = ("name", "request_id", "overlap", "namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    overlap: _types_pb2.OverlapPolicy
    namespace: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ..., overlap: _Optional[_Union[_types_pb2.OverlapPolicy, str]] = ..., namespace: _Optional[str] = ...) -> None: ...

class TriggerJobResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _types_pb2.Run
    def __init__(self, run: _Optional[_Union[_types_pb2.Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("job", "limit", "state", "namespace", "page_token")
    JOB_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job: str
    limit: int
    state: _types_pb2.RunState
    namespace: str
    page_token: bytes
    def __init__(self, job: _Optional[str] = ..., limit: _Optional[int] = ..., state: _Optional[_Union[_types_pb2.RunState, str]] = ..., namespace: _Optional[str] = ..., page_token: _Optional[bytes] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[_types_pb2.Run]
    next_page_token: bytes
    def __init__(self, runs: _Optional[_Iterable[_Union[_types_pb2.Run, _Mapping]]] = ..., next_page_token: _Optional[bytes] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RetryRunRequest(_message.Message):
    __slots__ = ("run_id", "request_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    request_id: str
    def __init__(self, run_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _types_pb2.Run
    def __init__(self, run: _Optional[_Union[_types_pb2.Run, _Mapping]] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id", "request_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    request_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("run_id", "fence", "outcome", "error", "exit_code", "session")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    fence: int
    outcome: Outcome
    error: str
    exit_code: int
    session: str
    def __init__(self, run_id: _Optional[str] = ..., fence: _Optional[int] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., error: _Optional[str] = ..., exit_code: _Optional[int] = ..., session: _Optional[str] = ...) -> None: ...

class CompleteRunResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Lease(_message.Message):
    __slots__ = ("run_id", "fence", "progress")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    fence: int
    progress: str
    def __init__(self, run_id: _Optional[str] = ..., fence: _Optional[int] = ..., progress: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("worker_id", "queues", "concurrency", "running", "tags", "namespace", "jobs", "waits_for_start")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    WAITS_FOR_START_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    running: _containers.RepeatedCompositeFieldContainer[Lease]
    tags: _containers.ScalarMap[str, str]
    namespace: str
    jobs: _containers.RepeatedScalarFieldContainer[str]
    waits_for_start: bool
    def __init__(self, worker_id: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., running: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., namespace: _Optional[str] = ..., jobs: _Optional[_Iterable[str]] = ..., waits_for_start: _Optional[bool] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("leases", "reason", "drain")
    LEASES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    reason: str
    drain: bool
    def __init__(self, leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., reason: _Optional[str] = ..., drain: _Optional[bool] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    def __init__(self, leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ...) -> None: ...

class Completions(_message.Message):
    __slots__ = ("completions",)
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    def __init__(self, completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "completions", "release")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    completions: Completions
    release: Release
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., completions: _Optional[_Union[Completions, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("node_id", "lease_ttl_ms", "heartbeat_interval_ms", "reattached", "lost", "session")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    REATTACHED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    lease_ttl_ms: int
    heartbeat_interval_ms: int
    reattached: _containers.RepeatedCompositeFieldContainer[Lease]
    lost: _containers.RepeatedCompositeFieldContainer[Lease]
    session: str
    def __init__(self, node_id: _Optional[str] = ..., lease_ttl_ms: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ..., reattached: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., lost: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., session: _Optional[str] = ...) -> None: ...

class Firings(_message.Message):
    __slots__ = ("firings",)
    FIRINGS_FIELD_NUMBER: _ClassVar[int]
    firings: _containers.RepeatedCompositeFieldContainer[_types_pb2.Firing]
    def __init__(self, firings: _Optional[_Iterable[_Union[_types_pb2.Firing, _Mapping]]] = ...) -> None: ...

class CompletionAck(_message.Message):
    __slots__ = ("run_id", "fence", "code", "message")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    fence: int
    code: int
    message: str
    def __init__(self, run_id: _Optional[str] = ..., fence: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CompletionAcks(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[CompletionAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[CompletionAck, _Mapping]]] = ...) -> None: ...

class LeasesLost(_message.Message):
    __slots__ = ("leases", "reason")
    LEASES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    reason: str
    def __init__(self, leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "firings", "acks", "lost")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    FIRINGS_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    firings: Firings
    acks: CompletionAcks
    lost: LeasesLost
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., firings: _Optional[_Union[Firings, _Mapping]] = ..., acks: _Optional[_Union[CompletionAcks, _Mapping]] = ..., lost: _Optional[_Union[LeasesLost, _Mapping]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "principal", "namespace", "queues", "tags", "concurrency", "leases", "run_ids", "jobs", "connected_ms", "last_seen_ms", "draining")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    principal: str
    namespace: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.ScalarMap[str, str]
    concurrency: int
    leases: int
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    jobs: _containers.RepeatedScalarFieldContainer[str]
    connected_ms: int
    last_seen_ms: int
    draining: bool
    def __init__(self, worker_id: _Optional[str] = ..., principal: _Optional[str] = ..., namespace: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., concurrency: _Optional[int] = ..., leases: _Optional[int] = ..., run_ids: _Optional[_Iterable[str]] = ..., jobs: _Optional[_Iterable[str]] = ..., connected_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., draining: _Optional[bool] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class NodeStatusRequest(_message.Message):
    __slots__ = ("with_digest",)
    WITH_DIGEST_FIELD_NUMBER: _ClassVar[int]
    with_digest: bool
    def __init__(self, with_digest: _Optional[bool] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "role", "term", "commit_index", "applied_index", "leader_id", "leader_grpc", "grpc_address", "raft_address", "has_quorum", "state_digest", "workers", "peers", "unsafe_no_fsync", "pid", "started_ms", "feature_level", "features_supported", "not_serving", "not_serving_reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HAS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    UNSAFE_NO_FSYNC_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    NOT_SERVING_FIELD_NUMBER: _ClassVar[int]
    NOT_SERVING_REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: str
    term: int
    commit_index: int
    applied_index: int
    leader_id: str
    leader_grpc: str
    grpc_address: str
    raft_address: str
    has_quorum: bool
    state_digest: str
    workers: int
    peers: _containers.RepeatedScalarFieldContainer[str]
    unsafe_no_fsync: bool
    pid: int
    started_ms: int
    feature_level: int
    features_supported: int
    not_serving: bool
    not_serving_reason: str
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., leader_id: _Optional[str] = ..., leader_grpc: _Optional[str] = ..., grpc_address: _Optional[str] = ..., raft_address: _Optional[str] = ..., has_quorum: _Optional[bool] = ..., state_digest: _Optional[str] = ..., workers: _Optional[int] = ..., peers: _Optional[_Iterable[str]] = ..., unsafe_no_fsync: _Optional[bool] = ..., pid: _Optional[int] = ..., started_ms: _Optional[int] = ..., feature_level: _Optional[int] = ..., features_supported: _Optional[int] = ..., not_serving: _Optional[bool] = ..., not_serving_reason: _Optional[str] = ...) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("to_node_id",)
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    to_node_id: str
    def __init__(self, to_node_id: _Optional[str] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Member(_message.Message):
    __slots__ = ("node_id", "raft_address", "grpc_address", "leader", "voter", "connected", "match_index")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_address: str
    grpc_address: str
    leader: bool
    voter: bool
    connected: bool
    match_index: int
    def __init__(self, node_id: _Optional[str] = ..., raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., leader: _Optional[bool] = ..., voter: _Optional[bool] = ..., connected: _Optional[bool] = ..., match_index: _Optional[int] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members", "commit_index")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    commit_index: int
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., commit_index: _Optional[int] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("node_id", "raft_address", "grpc_address", "features_supported")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_address: str
    grpc_address: str
    features_supported: int
    def __init__(self, node_id: _Optional[str] = ..., raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., features_supported: _Optional[int] = ...) -> None: ...

class AddMemberResponse(_message.Message):
    __slots__ = ("added", "members")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    added: bool
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, added: _Optional[bool] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class RemoveMemberResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("limit", "before_index", "principal", "target")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    limit: int
    before_index: int
    principal: str
    target: str
    def __init__(self, limit: _Optional[int] = ..., before_index: _Optional[int] = ..., principal: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("records", "next_before_index")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_types_pb2.AuditRecord]
    next_before_index: int
    def __init__(self, records: _Optional[_Iterable[_Union[_types_pb2.AuditRecord, _Mapping]]] = ..., next_before_index: _Optional[int] = ...) -> None: ...

class SetNamespaceQuotaRequest(_message.Message):
    __slots__ = ("namespace", "max_jobs", "max_runs")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    max_jobs: int
    max_runs: int
    def __init__(self, namespace: _Optional[str] = ..., max_jobs: _Optional[int] = ..., max_runs: _Optional[int] = ...) -> None: ...

class GetNamespaceRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[_types_pb2.Namespace]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[_types_pb2.Namespace, _Mapping]]] = ...) -> None: ...

class SaveSnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotInfo(_message.Message):
    __slots__ = ("format_version", "cluster_id", "node_ids", "applied_index", "created_ms", "size_bytes", "sha256", "leader_id", "next_fence", "jobs", "runs")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_FENCE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    cluster_id: str
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    applied_index: int
    created_ms: int
    size_bytes: int
    sha256: str
    leader_id: str
    next_fence: int
    jobs: int
    runs: int
    def __init__(self, format_version: _Optional[int] = ..., cluster_id: _Optional[str] = ..., node_ids: _Optional[_Iterable[str]] = ..., applied_index: _Optional[int] = ..., created_ms: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., leader_id: _Optional[str] = ..., next_fence: _Optional[int] = ..., jobs: _Optional[int] = ..., runs: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("info", "data")
    INFO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    info: SnapshotInfo
    data: bytes
    def __init__(self, info: _Optional[_Union[SnapshotInfo, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("name", "grants", "queues", "ttl_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    grants: _containers.RepeatedScalarFieldContainer[str]
    queues: _containers.RepeatedScalarFieldContainer[str]
    ttl_s: int
    def __init__(self, name: _Optional[str] = ..., grants: _Optional[_Iterable[str]] = ..., queues: _Optional[_Iterable[str]] = ..., ttl_s: _Optional[int] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "secret")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    token: _types_pb2.Token
    secret: str
    def __init__(self, token: _Optional[_Union[_types_pb2.Token, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ("include_revoked",)
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    include_revoked: bool
    def __init__(self, include_revoked: _Optional[bool] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[_types_pb2.Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[_types_pb2.Token, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: _types_pb2.Token
    def __init__(self, token: _Optional[_Union[_types_pb2.Token, _Mapping]] = ...) -> None: ...
