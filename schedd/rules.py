"""Rules every layer shares, defined once: names, queues and tags (their syntax and limits),
worker ids, and which run states are final. Pure.

The server validates requests with these (``schedd.server.validate``), the worker agent checks
its own settings with them before it connects, and the chaos checker reads the final states
from here, so a limit or a state can never differ between them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from schedd.errors import InvalidArgument
from schedd.pb import types_pb2

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
MAX_TAG_VALUE_CHARS = 128
MAX_JOB_TAGS = 16  # what a job requires of a worker
MAX_WORKER_TAGS = 64  # what a worker carries
MAX_WORKER_ID_CHARS = 128
#: CreateJobs: jobs per call, and bytes per request (the replicated entry it becomes carries a
#: little more per job and must stay under the Raft entry cap of 3 MiB; gRPC's default message
#: limit is 4 MiB). The SDK checks them before sending; the server enforces them.
MAX_CREATE_JOBS = 1000
MAX_CREATE_JOBS_BYTES = 2 << 20

#: A run in one of these states is over: nothing will change it but retention or a replay.
FINAL_RUN_STATES = frozenset(
    {
        types_pb2.RUN_STATE_SUCCEEDED,
        types_pb2.RUN_STATE_FAILED,
        types_pb2.RUN_STATE_CANCELLED,
        types_pb2.RUN_STATE_DEAD,
        types_pb2.RUN_STATE_SKIPPED,
    }
)


def name(value: str, field: str = "name") -> str:
    """A job name: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit."""
    if not value:
        raise InvalidArgument(field, "is required")
    if not NAME_RE.match(value):
        raise InvalidArgument(
            field,
            f"{value[:40]!r} is not a valid job name "
            "(1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)",
        )
    return value


def queue(value: str, field: str = "queue") -> str:
    """A queue name (1-64 of A-Z a-z 0-9 . _ -); empty means ``default``."""
    value = value or "default"
    if not QUEUE_RE.match(value):
        raise InvalidArgument(
            field, f"{value[:40]!r} is not a valid queue name (1-64 of A-Z a-z 0-9 . _ -)"
        )
    return value


def tags(
    values: Mapping[str, str] | None, field: str = "tags", limit: int = MAX_JOB_TAGS
) -> dict[str, str]:
    """Tags (a job's requirements, or with ``limit=MAX_WORKER_TAGS`` what a worker carries):
    keys 1-63 of A-Z a-z 0-9 . _ / -, values up to 128 characters, both strings. The same rule
    on both sides, so every tag a worker may carry is one a job may require."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InvalidArgument(
            field, f"must be a mapping of str to str, got {type(values).__name__}"
        )
    if len(values) > limit:
        raise InvalidArgument(field, f"{len(values)} tags is over the limit of {limit}")
    out: dict[str, str] = {}
    for k, v in values.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgument(field, f"{k!r}={v!r}: keys and values must be strings")
        if not TAG_RE.match(k):
            raise InvalidArgument(
                field, f"key {k[:40]!r} is not a valid tag key (1-63 of A-Z a-z 0-9 . _ - /)"
            )
        if len(v) > MAX_TAG_VALUE_CHARS:
            raise InvalidArgument(
                field, f"the value of {k!r} is longer than {MAX_TAG_VALUE_CHARS} characters"
            )
        out[k] = v
    return out


def worker_tags(values: Mapping[str, str] | None, field: str = "tags") -> dict[str, str]:
    """What a worker carries: :func:`tags` with up to ``MAX_WORKER_TAGS``."""
    return tags(values, field, MAX_WORKER_TAGS)


def worker_id(value: str, field: str = "worker_id") -> str:
    """A worker id: 1-128 characters."""
    if not value or len(value) > MAX_WORKER_ID_CHARS:
        raise InvalidArgument(field, f"must be 1 to {MAX_WORKER_ID_CHARS} characters")
    return value


def leases_in_fire(job: types_pb2.Job) -> bool:
    """Whether a tick at feature level FIRE_AND_LEASE leases ``job``'s new runs in the FireItem
    that creates them: the leader's planner proposes it only then, and apply honours
    ``FireItem.lease_to`` only then. Not under overlap REPLACE: a later slot of the same item
    may cancel a run an earlier slot created, and a lease granted and revoked in one entry
    would still go to a worker. Such runs get a GrantItem, after the FireDue."""
    return job.overlap != types_pb2.OVERLAP_POLICY_REPLACE
