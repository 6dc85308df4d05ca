"""schedd: a Raft-replicated job scheduler.

Public façades: :mod:`schedd.client` (``Client``, the synchronous SDK), :mod:`schedd.aio`
(``AsyncClient``), :mod:`schedd.models` (the typed results), :mod:`schedd.errors` (one root,
``SchedError``, re-exported here), :mod:`schedd.agent` (the worker agent) and
:mod:`schedd.testing` (a local cluster for tests; :mod:`schedd.pytest_plugin` has the
``schedd_cluster`` fixture). Everything else is private to the daemon.

``schedd.Client`` and ``schedd.AsyncClient`` are imported on first use, so ``import schedd``
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schedd.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    NotLeader,
    OutcomeUnknown,
    PermissionDenied,
    ResourceExhausted,
    SchedError,
    StaleFence,
    Unavailable,
    Unreachable,
)

if TYPE_CHECKING:
    from schedd.aio import AsyncClient
    from schedd.client import Client

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "NotLeader",
    "OutcomeUnknown",
    "PermissionDenied",
    "ResourceExhausted",
    "SchedError",
    "StaleFence",
    "Unavailable",
    "Unreachable",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Lazy: the clients import grpc and the generated protobuf modules.
    if name == "Client":
        from schedd.client import Client

        return Client
    if name == "AsyncClient":
        from schedd.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'schedd' has no attribute {name!r}")
