"""Pins the public API of the SDK: the public names of schedd.client, schedd.aio, schedd.models,
schedd.errors, schedd.testing, schedd.pytest_plugin, the package itself and the agent's Worker,
with their signatures. An accidental rename, removal or signature change fails here; a deliberate
one updates EXPECTED in the same commit (print the new value with
``python -c "from tests.unit.test_public_api import snapshot; import pprint; pprint.pprint(snapshot(), width=100)"``).

Also: every public name has a docstring, and ``py.typed`` ships with the package.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import os
import re
import tomllib
from typing import Any

MODULES = (
    "schedd",
    "schedd.client",
    "schedd.aio",
    "schedd.models",
    "schedd.errors",
    "schedd.testing",
    "schedd.pytest_plugin",
)
# Worker is the agent's façade; the rest of schedd.agent belongs to the agent's own tests.
EXTRA = {"schedd.agent": ("Worker",)}
_DUNDERS = ("__init__", "__enter__", "__exit__", "__aenter__", "__aexit__")


def _public_names(mod: Any) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(mod).items()
            if not n.startswith("_")
            and getattr(v, "__module__", mod.__name__) == mod.__name__
            and (inspect.isclass(v) or inspect.isfunction(v))
        ]
    return sorted(names)


def _sig(obj: Any) -> str:
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(?)"
    return re.sub(r" at 0x[0-9a-f]+", "", text)  # default values printed with their address


def _describe_class(cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    if issubclass(cls, enum.Enum):
        out["members"] = ", ".join(f"{m.name}={m.value}" for m in cls)
    own = [k for k in cls.__mro__ if k.__module__.startswith("schedd")]
    for klass in reversed(own):
        for name, value in vars(klass).items():
            if name.startswith("_") and name not in _DUNDERS:
                continue
            if isinstance(value, enum.Enum) or name in getattr(cls, "__members__", {}):
                continue
            if isinstance(value, property):
                out[name] = "property"
            elif isinstance(value, (classmethod, staticmethod)):
                out[name] = f"{type(value).__name__}{_sig(getattr(cls, name))}"
            elif inspect.isfunction(value):
                out[name] = f"def{_sig(value)}"
            elif name in getattr(cls, "__dataclass_fields__", {}) or name in getattr(
                cls, "_fields", ()
            ):
                continue  # fields are pinned through __init__ / __new__
            elif not callable(value):
                out[name] = f"attribute {type(value).__name__}"
    if hasattr(cls, "_fields"):  # a NamedTuple
        out["fields"] = ", ".join(cls._fields)  # type: ignore[attr-defined]
    return out


def _describe(obj: Any) -> Any:
    if inspect.isclass(obj):
        bases = ", ".join(b.__name__ for b in obj.__bases__)
        return {"class": bases, **_describe_class(obj)}
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return f"def{_sig(obj)}"
    if callable(obj):  # e.g. a pytest fixture object
        return "callable"
    return f"value {type(obj).__name__}"


def snapshot() -> dict[str, dict[str, Any]]:
    """The public API as plain data."""
    api: dict[str, dict[str, Any]] = {}
    for name in MODULES:
        mod = importlib.import_module(name)
        if name == "schedd":  # re-exports only: their details are pinned in their own modules
            api[name] = {n: "exported" for n in _public_names(mod)}
            continue
        api[name] = {n: _describe(getattr(mod, n)) for n in _public_names(mod)}
    for name, names in EXTRA.items():
        mod = importlib.import_module(name)
        api[name] = {n: _describe(getattr(mod, n)) for n in names}
    return api


def test_public_api_is_pinned() -> None:
    got = snapshot()
    for module in EXPECTED:
        assert got.get(module) == EXPECTED[module], f"the public API of {module} changed"
    assert set(got) == set(EXPECTED)


def test_every_public_name_has_a_docstring() -> None:
    # The agent's docstrings are checked by the agent's own tests.
    missing: list[str] = []
    for module in MODULES:
        mod = importlib.import_module(module)
        for n in _public_names(mod):
            obj = getattr(mod, n)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(f"{module}.{n}")
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, value in vars(obj).items():
                    if attr.startswith("_") or isinstance(value, enum.Enum):
                        continue
                    fn = (
                        value.fget
                        if isinstance(value, property)
                        else getattr(value, "__func__", value)
                    )
                    if inspect.isfunction(fn) and not (fn.__doc__ or "").strip():
                        missing.append(f"{module}.{n}.{attr}")
    assert missing == []


def test_py_typed_ships_with_the_package() -> None:
    import schedd

    root = os.path.dirname(os.path.dirname(schedd.__file__))
    assert os.path.isfile(os.path.join(os.path.dirname(schedd.__file__), "py.typed"))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["schedd"]
    assert project["project"]["entry-points"]["pytest11"]["schedd"] == "schedd.pytest_plugin"


EXPECTED: dict[str, dict[str, Any]] = {
    "schedd": {
        "AlreadyExists": "exported",
        "AsyncClient": "exported",
        "Client": "exported",
        "FailedPrecondition": "exported",
        "Internal": "exported",
        "InvalidArgument": "exported",
        "NotFound": "exported",
        "NotLeader": "exported",
        "OutcomeUnknown": "exported",
        "PermissionDenied": "exported",
        "ResourceExhausted": "exported",
        "SchedError": "exported",
        "StaleFence": "exported",
        "Unavailable": "exported",
        "Unreachable": "exported",
        "__version__": "exported",
    },
    "schedd.agent": {
        "Worker": {
            "__init__": "def(self, endpoints: 'str | Sequence[str]', *, queues: "
            "'Sequence[str]' = ('default',), tags: 'Mapping[str, str] "
            "| None' = None, concurrency: 'int' = 1, worker_id: 'str "
            "| None' = None, drain_timeout: 'float' = 10.0, logger: "
            "'logging.Logger | None' = None, clock: 'Callable[[], "
            "float]' = <built-in function monotonic>, credentials: "
            "'Credentials | None' = None, namespace: 'str | None' = "
            "None, metrics_registry: 'CollectorRegistry | None' = "
            "None) -> 'None'",
            "class": "object",
            "default_handler": "def(self, fn: 'Handler') -> 'Handler'",
            "handler": "def(self, job: 'str') -> 'Callable[[Handler], Handler]'",
            "run": "def(self) -> 'None'",
            "start": "def(self) -> 'None'",
            "stop": "def(self, drain_timeout: 'float | None' = None) -> 'None'",
            "stopped": "property",
        }
    },
    "schedd.aio": {
        "AsyncClient": {
            "__aenter__": "def(self) -> 'AsyncClient'",
            "__aexit__": "def(self, *exc_info: 'object') -> 'None'",
            "__init__": "def(self, endpoints: 'str | Sequence[str]', *, "
            "timeout: 'float' = 5.0, retry_for: 'float' = 20.0, "
            "wait_for: 'float' = 0.0, clock: 'Clock | None' = "
            "None, sleep: 'Callable[[float], Awaitable[None]]' = "
            "<function sleep>, credentials: 'Credentials | None' = "
            "None, namespace: 'str | None' = None) -> 'None'",
            "add_member": "def(self, node_id: 'str', raft_address: 'str', "
            "grpc_address: 'str') -> 'list[Member]'",
            "backfill": "def(self, name: 'str', from_ms: 'int', to_ms: 'int', "
            "*, chunk: 'int' = 1000, overlap: 'str | int' = 0, "
            "with_downstream: 'bool' = False) -> "
            "'AsyncIterator[BackfillResult]'",
            "backfill_job": "def(self, name: 'str', from_ms: 'int', to_ms: "
            "'int', *, limit: 'int' = 1000, overlap: 'str | "
            "int' = 0, with_downstream: 'bool' = False) -> "
            "'BackfillResult'",
            "cancel_run": "def(self, run_id: 'str', reason: 'str' = '', "
            "request_id: 'str | None' = None) -> 'Run'",
            "class": "object",
            "close": "def(self) -> 'None'",
            "cluster_status": "def(self, with_digest: 'bool' = False, timeout: "
            "'float | None' = None) -> 'list[NodeReport]'",
            "complete_run": "def(self, run_id: 'str', fence: 'int', success: "
            "'bool', error: 'str' = '', exit_code: 'int | "
            "None' = None, *, session: 'str' = '') -> 'None'",
            "create_job": "def(self, name: 'str', *, cron: 'str | None' = "
            "None, tz: 'str' = 'UTC', at_ms: 'int | None' = "
            "None, every_ms: 'int | None' = None, jitter_ms: "
            "'int' = 0, queue: 'str' = 'default', payload: 'str' "
            "= '', max_attempts: 'int' = 0, request_id: 'str | "
            "None' = None, retry: 'RetrySpec | None' = None, "
            "run_timeout_ms: 'int' = 0, **policies: 'Any') -> "
            "'Job'",
            "create_jobs": "def(self, specs: 'Iterable[JobSpec]') -> 'list[JobCreateResult]'",
            "create_token": "def(self, name: 'str', grants: 'Sequence[str]', "
            "*, queues: 'Sequence[str]' = (), ttl_s: 'int' = "
            "0) -> 'NewToken'",
            "delete_job": "def(self, name: 'str', *, force: 'bool' = False) -> 'list[str]'",
            "dependencies": "def(self, name: 'str') -> 'list[DependencyNode]'",
            "endpoints": "property",
            "explain_job": "def(self, name: 'str', at_ms: 'int') -> 'Explanation'",
            "get_job": "def(self, name: 'str') -> 'Job'",
            "get_namespace": "def(self, namespace: 'str' = '') -> 'Namespace'",
            "get_run": "def(self, run_id: 'str') -> 'Run'",
            "leader": "property",
            "list_audit": "def(self, limit: 'int' = 100, *, principal: 'str' = "
            "'', target: 'str' = '', before_index: 'int' = 0) -> "
            "'tuple[list[AuditRecord], int]'",
            "list_jobs": "def(self, limit: 'int | None' = 1000, *, after: "
            "'str' = '') -> 'list[Job]'",
            "list_members": "def(self) -> 'list[Member]'",
            "list_namespaces": "def(self) -> 'list[Namespace]'",
            "list_runs": "def(self, job: 'str' = '', limit: 'int' = 100, "
            "state: 'int | str | None' = None) -> 'list[Run]'",
            "list_tokens": "def(self, include_revoked: 'bool' = False) -> 'list[Token]'",
            "list_workers": "def(self, namespace: 'str' = '') -> 'list[WorkerInfo]'",
            "namespace": "property",
            "node_status": "def(self, endpoint: 'str', with_digest: 'bool' = "
            "False, timeout: 'float' = 2.0) -> 'NodeStatus'",
            "pause_job": "def(self, name: 'str') -> 'Job'",
            "remove_member": "def(self, node_id: 'str') -> 'list[Member]'",
            "resume_job": "def(self, name: 'str', *, skip_missed: 'bool' = False) -> 'Job'",
            "retry_run": "def(self, run_id: 'str', request_id: 'str | None' = None) -> 'Run'",
            "revoke_token": "def(self, name: 'str') -> 'Token'",
            "set_namespace_quota": "def(self, namespace: 'str', *, max_jobs: "
            "'int' = 0, max_runs: 'int' = 0) -> "
            "'Namespace'",
            "transfer_leadership": "def(self, to_node_id: 'str' = '') -> 'None'",
            "trigger_job": "def(self, name: 'str', request_id: 'str | None' = "
            "None, *, overlap: 'str | int' = 0) -> 'Run'",
            "update_job": "def(self, name: 'str', *, expect_version: 'int' = "
            "0, request_id: 'str | None' = None, **definition: "
            "'Any') -> 'Job'",
        }
    },
    "schedd.client": {
        "Client": {
            "__enter__": "def(self) -> 'Client'",
            "__exit__": "def(self, *exc_info: 'object') -> 'None'",
            "__init__": "def(self, endpoints: 'str | Sequence[str]', *, timeout: "
            "'float' = 5.0, retry_for: 'float' = 20.0, wait_for: "
            "'float' = 0.0, clock: 'Clock | None' = None, sleep: "
            "'Callable[[float], None]' = <built-in function sleep>, "
            "credentials: 'Credentials | None' = None, namespace: "
            "'str | None' = None) -> 'None'",
            "add_member": "def(self, node_id: 'str', raft_address: 'str', "
            "grpc_address: 'str') -> 'list[Member]'",
            "backfill": "def(self, name: 'str', from_ms: 'int', to_ms: 'int', *, "
            "chunk: 'int' = 1000, overlap: 'str | int' = 0, "
            "with_downstream: 'bool' = False) -> "
            "'Iterator[BackfillResult]'",
            "backfill_job": "def(self, name: 'str', from_ms: 'int', to_ms: "
            "'int', *, limit: 'int' = 1000, overlap: 'str | int' "
            "= 0, with_downstream: 'bool' = False) -> "
            "'BackfillResult'",
            "cancel_run": "def(self, run_id: 'str', reason: 'str' = '', "
            "request_id: 'str | None' = None) -> 'Run'",
            "class": "object",
            "close": "def(self) -> 'None'",
            "cluster_status": "def(self, with_digest: 'bool' = False, timeout: "
            "'float | None' = None) -> 'list[NodeReport]'",
            "complete_run": "def(self, run_id: 'str', fence: 'int', success: "
            "'bool', error: 'str' = '', exit_code: 'int | None' "
            "= None, *, session: 'str' = '') -> 'None'",
            "create_job": "def(self, name: 'str', *, cron: 'str | None' = None, "
            "tz: 'str' = 'UTC', at_ms: 'int | None' = None, "
            "every_ms: 'int | None' = None, jitter_ms: 'int' = 0, "
            "queue: 'str' = 'default', payload: 'str' = '', "
            "max_attempts: 'int' = 0, request_id: 'str | None' = "
            "None, retry: 'RetrySpec | None' = None, "
            "run_timeout_ms: 'int' = 0, **policies: 'Any') -> "
            "'Job'",
            "create_jobs": "def(self, specs: 'Iterable[JobSpec]') -> 'list[JobCreateResult]'",
            "create_token": "def(self, name: 'str', grants: 'Sequence[str]', *, "
            "queues: 'Sequence[str]' = (), ttl_s: 'int' = 0) -> "
            "'NewToken'",
            "delete_job": "def(self, name: 'str', *, force: 'bool' = False) -> 'list[str]'",
            "dependencies": "def(self, name: 'str') -> 'list[DependencyNode]'",
            "endpoints": "property",
            "explain_job": "def(self, name: 'str', at_ms: 'int') -> 'Explanation'",
            "get_job": "def(self, name: 'str') -> 'Job'",
            "get_namespace": "def(self, namespace: 'str' = '') -> 'Namespace'",
            "get_run": "def(self, run_id: 'str') -> 'Run'",
            "leader": "property",
            "list_audit": "def(self, limit: 'int' = 100, *, principal: 'str' = "
            "'', target: 'str' = '', before_index: 'int' = 0) -> "
            "'tuple[list[AuditRecord], int]'",
            "list_jobs": "def(self, limit: 'int | None' = 1000, *, after: 'str' "
            "= '') -> 'list[Job]'",
            "list_members": "def(self) -> 'list[Member]'",
            "list_namespaces": "def(self) -> 'list[Namespace]'",
            "list_runs": "def(self, job: 'str' = '', limit: 'int' = 100, state: "
            "'int | str | None' = None) -> 'list[Run]'",
            "list_tokens": "def(self, include_revoked: 'bool' = False) -> 'list[Token]'",
            "list_workers": "def(self, namespace: 'str' = '') -> 'list[WorkerInfo]'",
            "namespace": "property",
            "node_status": "def(self, endpoint: 'str', with_digest: 'bool' = "
            "False, timeout: 'float' = 2.0) -> 'NodeStatus'",
            "pause_job": "def(self, name: 'str') -> 'Job'",
            "remove_member": "def(self, node_id: 'str') -> 'list[Member]'",
            "resume_job": "def(self, name: 'str', *, skip_missed: 'bool' = False) -> 'Job'",
            "retry_run": "def(self, run_id: 'str', request_id: 'str | None' = None) -> 'Run'",
            "revoke_token": "def(self, name: 'str') -> 'Token'",
            "save_snapshot": "def(self, path: 'str', *, progress: "
            "'Callable[[int, int], None] | None' = None, "
            "timeout: 'float' = 3600.0) -> 'BackupHeader'",
            "set_namespace_quota": "def(self, namespace: 'str', *, max_jobs: "
            "'int' = 0, max_runs: 'int' = 0) -> "
            "'Namespace'",
            "transfer_leadership": "def(self, to_node_id: 'str' = '') -> 'None'",
            "trigger_job": "def(self, name: 'str', request_id: 'str | None' = "
            "None, *, overlap: 'str | int' = 0) -> 'Run'",
            "update_job": "def(self, name: 'str', *, expect_version: 'int' = 0, "
            "request_id: 'str | None' = None, **definition: 'Any') "
            "-> 'Job'",
        },
        "NodeReport": {
            "class": "tuple",
            "fields": "endpoint, status, error",
            "ok": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
        },
        "new_request_id": "def() -> 'str'",
        "parse_endpoints": "def(endpoints: 'str | Sequence[str]', field: 'str' = "
        "'endpoints') -> 'list[str]'",
        "retry_policy": "def(*, max_attempts: 'int' = 0, initial_backoff_ms: 'int | "
        "None' = None, multiplier: 'float' = 0.0, max_backoff_ms: 'int' "
        "= 0, non_retryable_exit_codes: 'Iterable[int]' = (), "
        "non_retryable_errors: 'Iterable[str]' = ()) -> "
        "'types_pb2.RetryPolicy'",
    },
    "schedd.errors": {
        "AlreadyExists": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "FailedPrecondition": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "Internal": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "InvalidArgument": {
            "__init__": "def(self, field: 'str', problem: 'str') -> 'None'",
            "class": "SchedError, ValueError",
            "code": "attribute str",
        },
        "NotFound": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "NotLeader": {
            "__init__": "def(self, message: 'str', leader: 'str' = '') -> 'None'",
            "class": "Unavailable",
            "code": "attribute str",
        },
        "OutcomeUnknown": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "PermissionDenied": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "ResourceExhausted": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "SchedError": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "Exception",
            "code": "attribute str",
        },
        "StaleFence": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "Unauthenticated": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "Unavailable": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "SchedError",
            "code": "attribute str",
        },
        "Unreachable": {
            "__init__": "def(self, message: 'str') -> 'None'",
            "class": "Unavailable",
            "code": "attribute str",
        },
        "from_code": "def(code: 'str', message: 'str') -> 'SchedError'",
        "status_name": "def(number: 'int') -> 'str'",
    },
    "schedd.models": {
        "AuditRecord": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, index: 'int' = 0, at_ms: 'int' = 0, "
            "principal: 'str' = '', action: 'str' = '', target: "
            "'str' = '', code: 'str' = '', message: 'str' = '', "
            "request_id: 'str' = '') -> None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "BackfillResult": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, created: 'int' = 0, existing: 'int' = "
            "0, next_from_ms: 'int' = 0, total_slots: 'int' "
            "= 0, downstream_created: 'int' = 0) -> None",
            "class": "Record",
            "done": "property",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "DependencyNode": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, job: 'Job' = <factory>, last: 'Run | "
            "None' = None, waiting: 'tuple[Run, ...]' = ()) "
            "-> None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "DstGap": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, SHIFT=1, SKIP=2",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "DstRepeat": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, ONCE=1, TWICE=2",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "Explanation": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, verdict: 'str' = '', explanation: 'str' "
            "= '', slot_ms: 'int' = 0, runs: 'tuple[Run, ...]' "
            "= (), previous_slot_ms: 'int' = 0, next_slot_ms: "
            "'int' = 0, pending_cause: 'str' = '', upstream: "
            "'tuple[Run, ...]' = ()) -> None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "next_slot_at": "property",
            "previous_slot_at": "property",
            "slot_at": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "Job": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, name: 'str' = '', schedule: 'Schedule' = "
            "<factory>, queue: 'str' = '', payload: 'str' = '', state: "
            "'JobState' = <JobState.UNSPECIFIED: 0>, next_due_ms: 'int' "
            "= 0, created_ms: 'int' = 0, uid: 'int' = 0, max_attempts: "
            "'int' = 0, retry: 'RetryPolicy | None' = None, "
            "run_timeout_ms: 'int' = 0, misfire: 'MisfirePolicy' = "
            "<MisfirePolicy.UNSPECIFIED: 0>, misfire_grace_ms: 'int' = "
            "0, catchup_window_ms: 'int' = 0, max_catchup: 'int' = 0, "
            "overlap: 'OverlapPolicy' = <OverlapPolicy.UNSPECIFIED: 0>, "
            "max_concurrent: 'int' = 0, dispatch_timeout_ms: 'int' = 0, "
            "on_success: 'str' = '', on_failure: 'str' = '', priority: "
            "'int' = 0, tags: 'dict[str, str]' = <factory>, keep_runs: "
            "'int' = 0, keep_for_ms: 'int' = 0, version: 'int' = 0, "
            "paused_ms: 'int' = 0, max_runs: 'int' = 0, fired_runs: "
            "'int' = 0, buffered_run: 'str' = '', updated_ms: 'int' = "
            "0, open_skip: 'str' = '', resumed_ms: 'int' = 0, "
            "namespace: 'str' = '', depends_on: 'tuple[str, ...]' = (), "
            "trigger_rule: 'TriggerRule' = <TriggerRule.UNSPECIFIED: "
            "0>, dependency_timeout_ms: 'int' = 0, dependents: "
            "'tuple[str, ...]' = (), gathering_run: 'str' = '') -> None",
            "class": "Record",
            "created_at": "property",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "next_due_at": "property",
            "paused": "property",
            "paused_at": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
            "updated_at": "property",
        },
        "JobCreateResult": {
            "__init__": "def(self, index: 'int', name: 'str', code: "
            "'str' = 'OK', message: 'str' = '', job: 'Job | "
            "None' = None) -> None",
            "class": "object",
            "error": "property",
            "ok": "property",
        },
        "JobState": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, ACTIVE=1, PAUSED=2, FINISHED=3",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "Member": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, node_id: 'str' = '', raft_address: 'str' = "
            "'', grpc_address: 'str' = '', leader: 'bool' = False, "
            "voter: 'bool' = False, connected: 'bool' = False, "
            "match_index: 'int' = 0) -> None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "MisfirePolicy": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, SKIP=1, FIRE_ONCE=2, FIRE_ALL=3",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "Namespace": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, name: 'str' = '', max_jobs: 'int' = 0, "
            "max_runs: 'int' = 0, jobs: 'int' = 0, runs: 'int' = "
            "0, updated_ms: 'int' = 0, updated_by: 'str' = '') -> "
            "None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "NewToken": {
            "__init__": "def(self, token: 'Token', secret: 'str') -> None",
            "class": "object",
        },
        "NodeReport": {
            "class": "tuple",
            "fields": "endpoint, status, error",
            "ok": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
        },
        "NodeStatus": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, node_id: 'str' = '', role: 'str' = '', "
            "term: 'int' = 0, commit_index: 'int' = 0, "
            "applied_index: 'int' = 0, leader_id: 'str' = '', "
            "leader_grpc: 'str' = '', grpc_address: 'str' = '', "
            "raft_address: 'str' = '', has_quorum: 'bool' = "
            "False, state_digest: 'str' = '', workers: 'int' = "
            "0, peers: 'tuple[str, ...]' = (), unsafe_no_fsync: "
            "'bool' = False, pid: 'int' = 0, started_ms: 'int' = "
            "0, feature_level: 'int' = 0, features_supported: "
            "'int' = 0, not_serving: 'bool' = False, "
            "not_serving_reason: 'str' = '') -> None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "is_leader": "property",
            "started_at": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "Outcome": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, SUCCEEDED=1, FAILED=2",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "OverlapPolicy": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, ALLOW=1, FORBID=2, BUFFER_ONE=3, REPLACE=4",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "ProtoEnum": {
            "class": "IntEnum",
            "members": "",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "Record": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "class": "object",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "RetryPolicy": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, max_attempts: 'int' = 0, "
            "initial_backoff_ms: 'int | None' = None, "
            "multiplier: 'float' = 0.0, max_backoff_ms: 'int' = "
            "0, non_retryable_exit_codes: 'tuple[int, ...]' = "
            "(), non_retryable_errors: 'tuple[str, ...]' = ()) "
            "-> None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "Run": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, run_id: 'str' = '', job: 'str' = '', "
            "scheduled_ms: 'int' = 0, state: 'RunState' = "
            "<RunState.UNSPECIFIED: 0>, attempt: 'int' = 0, fence: "
            "'int' = 0, worker_id: 'str' = '', not_before_ms: 'int' = "
            "0, started_ms: 'int' = 0, finished_ms: 'int' = 0, error: "
            "'str' = '', queue: 'str' = '', manual: 'bool' = False, "
            "exit_code: 'int' = 0, attempt_base: 'int' = 0, origin: "
            "'RunOrigin' = <RunOrigin.UNSPECIFIED: 0>, skip_reason: "
            "'SkipReason' = <SkipReason.UNSPECIFIED: 0>, "
            "skipped_until_ms: 'int' = 0, skipped_count: 'int' = 0, "
            "note: 'str' = '', priority: 'int' = 0, tags: 'dict[str, "
            "str]' = <factory>, dispatch_deadline_ms: 'int' = 0, "
            "caused_by: 'str' = '', progress: 'str' = '', namespace: "
            "'str' = '', upstream_runs: 'tuple[str, ...]' = (), "
            "waiting_for: 'tuple[str, ...]' = (), "
            "dependency_deadline_ms: 'int' = 0, isolated: 'bool' = "
            "False) -> None",
            "class": "Record",
            "dispatch_deadline_at": "property",
            "done": "property",
            "finished_at": "property",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "not_before_at": "property",
            "scheduled_at": "property",
            "skipped_until_at": "property",
            "started_at": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "RunOrigin": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, SCHEDULE=1, CATCHUP=2, TRIGGER=3, "
            "BACKFILL=4, CHAIN=5, DEPENDENCY=6",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "RunState": {
            "class": "ProtoEnum",
            "final": "property",
            "members": "UNSPECIFIED=0, PENDING=1, LEASED=2, SUCCEEDED=3, "
            "FAILED=4, CANCELLED=5, DEAD=6, SKIPPED=7, WAITING=8",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "Schedule": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, kind: 'ScheduleKind' = "
            "<ScheduleKind.UNSPECIFIED: 0>, cron: 'str' = '', "
            "timezone: 'str' = '', at_ms: 'int' = 0, every_ms: "
            "'int' = 0, anchor_ms: 'int | None' = None, start_ms: "
            "'int' = 0, end_ms: 'int' = 0, jitter_ms: 'int' = 0, "
            "dst_gap: 'DstGap' = <DstGap.UNSPECIFIED: 0>, "
            "dst_repeat: 'DstRepeat' = <DstRepeat.UNSPECIFIED: 0>) "
            "-> None",
            "at": "property",
            "class": "Record",
            "end_at": "property",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "start_at": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "ScheduleKind": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, CRON=1, AT=2, INTERVAL=3",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "SkipReason": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, MISFIRE=1, COALESCED=2, "
            "CATCHUP_WINDOW=3, CATCHUP_LIMIT=4, OVERLAP=5, "
            "BUFFER_FULL=6, PAUSED=7, MAX_RUNS=8, DST_GAP=9, "
            "QUOTA=10, UPSTREAM_FAILED=11, DEPENDENCY_TIMEOUT=12",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "Token": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, name: 'str' = '', grants: 'tuple[str, ...]' = "
            "(), queues: 'tuple[str, ...]' = (), created_ms: 'int' = "
            "0, expires_ms: 'int' = 0, created_by: 'str' = '', "
            "revoked_ms: 'int' = 0) -> None",
            "class": "Record",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "revoked": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
        "TriggerRule": {
            "class": "ProtoEnum",
            "members": "UNSPECIFIED=0, ALL_SUCCEEDED=1, ALL_DONE=2, ANY_SUCCEEDED=3",
            "parse": "classmethod(value: 'str | int') -> 'Self'",
            "proto_name": "property",
            "word": "property",
        },
        "WorkerInfo": {
            "HasField": "def(self, name: 'str') -> 'bool'",
            "__init__": "def(self, worker_id: 'str' = '', principal: 'str' = "
            "'', namespace: 'str' = '', queues: 'tuple[str, "
            "...]' = (), tags: 'dict[str, str]' = <factory>, "
            "concurrency: 'int' = 0, leases: 'int' = 0, run_ids: "
            "'tuple[str, ...]' = (), jobs: 'tuple[str, ...]' = "
            "(), connected_ms: 'int' = 0, last_seen_ms: 'int' = "
            "0, draining: 'bool' = False) -> None",
            "class": "Record",
            "connected_at": "property",
            "from_pb": "classmethod(msg: 'Message') -> 'Self'",
            "last_seen_at": "property",
            "to_dict": "def(self) -> 'dict[str, Any]'",
            "to_pb": "def(self) -> 'Any'",
        },
    },
    "schedd.pytest_plugin": {
        "pytest_configure": "def(config: 'pytest.Config') -> 'None'",
        "schedd_cluster": "callable",
    },
    "schedd.testing": {
        "FAST_ARGS": "value tuple",
        "LocalCluster": {
            "__enter__": "def(self) -> 'LocalCluster'",
            "__exit__": "def(self, *exc: 'object') -> 'None'",
            "__init__": "def(self, root: 'str', nodes: 'int' = 3, "
            "base_port: 'int | None' = None, extra_args: "
            "'Sequence[str]' = (), env: 'dict[str, str] | "
            "None' = None, secure: 'bool' = True, metrics: "
            "'bool' = False, http: 'bool' = False, "
            "http_plaintext: 'bool' = False) -> 'None'",
            "add_node": "def(self, node_id: 'str | None' = None, "
            "join_via: 'str | None' = None) -> 'NodeSpec'",
            "alive": "def(self, node_id: 'str') -> 'bool'",
            "async_client": "def(self, **options: 'Any') -> 'AsyncClient'",
            "class": "object",
            "client": "def(self, endpoints: 'Sequence[str] | None' = "
            "None, **options: 'Any') -> 'Client'",
            "client_env": "property",
            "command": "def(self, spec: 'NodeSpec') -> 'list[str]'",
            "credentials": "attribute cached_property",
            "dashboard_login_url": "def(self, node_id: 'str') -> 'str'",
            "dashboard_url": "def(self, node_id: 'str') -> 'str'",
            "endpoints": "property",
            "endpoints_env": "property",
            "forget_node": "def(self, node_id: 'str') -> 'None'",
            "kill_leader": "def(self, sig: 'int' = <Signals.SIGKILL: 9>, "
            "timeout: 'float' = 30.0) -> 'str'",
            "kill_node": "def(self, node_id: 'str', sig: 'int' = <Signals.SIGKILL: 9>) -> 'None'",
            "leader": "def(self) -> 'str | None'",
            "metrics_url": "def(self, node_id: 'str') -> 'str'",
            "security_args": "def(self, spec: 'NodeSpec') -> 'list[str]'",
            "spec": "def(self, node_id: 'str') -> 'NodeSpec'",
            "start": "def(self) -> 'LocalCluster'",
            "start_node": "def(self, node_id: 'str') -> 'None'",
            "status": "def(self, node_id: 'str', with_digest: 'bool' = "
            "False, timeout: 'float' = 2.0) -> "
            "'api_pb2.NodeStatus | None'",
            "stop": "def(self) -> 'None'",
            "stop_node": "def(self, node_id: 'str', timeout: 'float' = 15.0) -> 'int | None'",
            "wait_converged": "def(self, timeout: 'float' = 30.0) -> 'tuple[int, str]'",
            "wait_for_leader": "def(self, timeout: 'float' = 30.0, "
            "exclude: 'str | None' = None) -> 'str'",
            "worker_credentials": "attribute cached_property",
            "worker_env": "property",
            "write_env": "def(self, path: 'str | None' = None) -> 'str'",
        },
        "NodeSpec": {
            "__init__": "def(self, node_id: 'str', raft: 'str', grpc: 'str', "
            "data_dir: 'str', log_path: 'str', metrics: 'str' = "
            "'', join: 'str' = '', http: 'str' = '') -> None",
            "class": "object",
        },
        "RunningCluster": {
            "__init__": "def(self, cluster: 'LocalCluster', client: 'Client') -> None",
            "async_client": "def(self, **options: 'Any') -> 'AsyncClient'",
            "class": "object",
            "client_env": "property",
            "credentials": "property",
            "endpoints": "property",
            "endpoints_env": "property",
            "kill_leader": "def(self, sig: 'int' = <Signals.SIGKILL: 9>) -> 'str'",
            "root": "property",
            "wait_converged": "def(self, timeout: 'float' = 30.0) -> 'tuple[int, str]'",
            "wait_for_leader": "def(self, timeout: 'float' = 30.0, "
            "exclude: 'str | None' = None) -> 'str'",
        },
        "free_ports": "def(n: 'int') -> 'list[int]'",
        "local_cluster": "def(nodes: 'int' = 3, *, root: 'str | None' = None, "
        "extra_args: 'Sequence[str]' = ('--lease-ttl', '3s', "
        "'--heartbeat-interval', '500ms', '--retry-backoff', "
        "'200ms'), timeout: 'float' = 30.0, client_timeout: 'float' = "
        "5.0, retry_for: 'float' = 30.0) -> "
        "'Iterator[RunningCluster]'",
    },
}
