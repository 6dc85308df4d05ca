"""One error root for schedd, and the one table that maps it to gRPC status codes.

Exception tree::

    SchedError
    ├── InvalidArgument     bad input; the message names the field          INVALID_ARGUMENT
    │                       (also a ValueError)
    ├── NotFound            no such job or run                               NOT_FOUND
    ├── AlreadyExists       a job with that name exists                      ALREADY_EXISTS
    ├── StaleFence          the fence is not the run's current lease         ABORTED
    ├── FailedPrecondition  the object is not in a state that allows it      FAILED_PRECONDITION
    ├── PermissionDenied    the caller lacks the role the call needs, or     PERMISSION_DENIED
    │                       acts for another (a lease another session holds)
    ├── ResourceExhausted   a limit was reached (streams, storage, rate);     RESOURCE_EXHAUSTED
    │                       the message names the limit and the flag to raise
    ├── Unavailable         no leader / not the leader / node unreachable    UNAVAILABLE
    │   ├── NotLeader       this node is a follower; ``leader`` says where   UNAVAILABLE
    │   └── Unreachable     no node could be reached: nothing was sent       UNAVAILABLE
    ├── OutcomeUnknown      the write may or may not have committed          DEADLINE_EXCEEDED
    ├── Unauthenticated     no, unknown, revoked or expired credentials      UNAUTHENTICATED
    └── Internal            a bug or a local failure; see the node's log     INTERNAL

``InvalidArgument`` is also a ``ValueError``, so callers that expect the Python convention for
bad arguments (the worker agent documents "bad arguments raise ValueError") catch it too.

This module is pure: the table holds status-code *names* so the core never imports grpc.
"""

from __future__ import annotations


class SchedError(Exception):
    """Root of every error schedd raises on purpose. ``code`` is a gRPC status-code name."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SchedError, ValueError):
    """Bad input; ``field`` names it. Also a ``ValueError`` (see the module docstring)."""

    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(SchedError):
    """No such job or run."""

    code = "NOT_FOUND"


class AlreadyExists(SchedError):
    """A job with that name exists already."""

    code = "ALREADY_EXISTS"


class StaleFence(SchedError):
    """The fence is not the run's current lease: another attempt owns it; do not apply the effect."""

    code = "ABORTED"


class FailedPrecondition(SchedError):
    """The object is not in a state that allows the operation (or the client is closed)."""

    code = "FAILED_PRECONDITION"


class PermissionDenied(SchedError):
    """The caller may not do this: it lacks the role (or queue grant) the call needs, or it acts
    for another (a completion, heartbeat or release for a lease that another worker session
    holds; a worker id attached under another identity)."""

    code = "PERMISSION_DENIED"


class ResourceExhausted(SchedError):
    """A limit was reached (worker streams per identity, storage, a rate); retrying at once will
    not help. The message names the limit and how to raise it."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(SchedError):
    """No leader could be reached (after retrying for ``retry_for``), or a node is unreachable."""

    code = "UNAVAILABLE"


class NotLeader(Unavailable):
    """This node is a follower; ``leader`` is the leader's gRPC address ("" when unknown)."""

    def __init__(self, message: str, leader: str = "") -> None:
        super().__init__(message)
        self.leader = leader


class Unreachable(Unavailable):
    """No configured node could be reached at all (connection refused, unknown host, a TLS
    handshake that failed, no connection within the deadline): the request was never sent, so
    a write was not applied. The message names the endpoints and what failed with each."""


class OutcomeUnknown(SchedError):
    """A write timed out without a request id: it may or may not have committed."""

    code = "DEADLINE_EXCEEDED"


class Unauthenticated(SchedError):
    """No credentials, or unknown, revoked or expired ones: the message says what to pass."""

    code = "UNAUTHENTICATED"


class Internal(SchedError):
    """A bug or a local failure (also a gRPC status outside the table); see the node's log."""

    code = "INTERNAL"


#: status-code name -> exception class, used to turn a gRPC status back into a typed error.
BY_CODE: dict[str, type[SchedError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "ABORTED": StaleFence,
    "FAILED_PRECONDITION": FailedPrecondition,
    "PERMISSION_DENIED": PermissionDenied,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": OutcomeUnknown,
    "UNAUTHENTICATED": Unauthenticated,
    "INTERNAL": Internal,
}


#: gRPC status-code names by number (the numbers are fixed by the gRPC specification), for
#: codes carried inside a message (``CreateJobResult.code``).
STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


def status_name(number: int) -> str:
    """The status-code name of a gRPC status number (``CODE_<n>`` when unknown)."""
    return STATUS_NAMES[number] if 0 <= number < len(STATUS_NAMES) else f"CODE_{number}"


def from_code(code: str, message: str) -> SchedError:
    """Build the typed error for a status-code name (unknown names become ``Internal``)."""
    cls = BY_CODE.get(code, Internal)
    if cls is InvalidArgument:
        field, _, problem = message.partition(": ")
        return InvalidArgument(field, problem) if problem else InvalidArgument("request", message)
    err = cls.__new__(cls)
    SchedError.__init__(err, message)
    if cls is NotLeader:
        err.leader = ""  # type: ignore[attr-defined]
    return err
