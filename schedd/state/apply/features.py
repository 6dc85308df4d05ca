"""Feature levels: what lets a cluster be upgraded one node at a time. Pure.

A *feature level* names a set of behaviours of the replicated state machine (new command types,
new apply rules). Every version of schedd supports the levels up to :data:`SUPPORTED`; the
cluster runs at one level, ``meta.feature_level``, raised (never lowered) by the leader once
every member has reported, through the log, that its version supports the new level
(``ReportFeaturesCmd``). Until then a leader never proposes anything that needs the new level,
so old and new nodes apply every entry alike and the replicas cannot diverge.

Failure contract: a node that applies ``SetFeatureLevelCmd`` for a level its version does not
support gets UNSUPPORTED, and the store stops the node ("upgrade this node"), as for any command
it does not understand; a node whose state is at a level above its version's refuses to start
(:mod:`schedd.server.node`).

Levels:

1. the baseline: everything before feature levels existed;
2. online membership changes (``schedctl member add|remove``);
3. bulk job creation (``CreateJobs``): the sub-commands of a ``Batch`` keep their own request
   ids and audit records (:func:`schedd.state.apply._batch`). An older version would apply
   such a batch without them, so the replicas' request and audit tables would differ.
4. job dependencies (``Job.depends_on``, trigger rules, waiting runs, ``DeleteJobCmd.force``,
   ``DependencyTimeoutCmd``; :mod:`schedd.state.apply.deps`). An older version would store a
   job without its upstreams and run it on its schedule alone.
5. firing ahead of the due time (:mod:`schedd.state.apply.ahead`): pause, delete and update
   revoke the early leases.
6. a firing leased in the item that fires it (``FireItem.lease_to``): the run is written once,
   LEASED, and never indexed as pending. An older version would ignore the field and leave the
   run PENDING, so the replicas' runs and leases would differ.
7. a run skipped ``upstream_failed`` that a replay does not re-open (another upstream still
   fails it) is re-opened by the replay of that other upstream, and names it as the cause
   (:func:`schedd.state.apply.deps._reopen`). An older version would leave it skipped with
   every upstream running again, so the replicas' runs would differ.
"""

from __future__ import annotations

import json

from schedd.pb import command_pb2
from schedd.state import keys
from schedd.state.apply.txn import Result, Txn

BASELINE = 1
MEMBERSHIP = 2
BULK_CREATE = 3
DEPENDENCIES = 4
FIRE_AHEAD = 5
FIRE_AND_LEASE = 6
REOPEN_EVERY_FAILED = 7
#: the highest level this version supports (a module attribute, read when used)
SUPPORTED = REOPEN_EVERY_FAILED

NAMES = {
    BASELINE: "baseline",
    MEMBERSHIP: "membership changes",
    BULK_CREATE: "bulk job creation",
    DEPENDENCIES: "job dependencies",
    FIRE_AHEAD: "firing ahead of the due time",
    FIRE_AND_LEASE: "firings leased as they fire",
    REOPEN_EVERY_FAILED: "replays re-open runs skipped by several failed upstreams",
}


def level(txn: Txn) -> int:
    return txn.counter(keys.FEATURE_LEVEL, 0)


def node_levels(raw: bytes | None) -> dict[str, int]:
    return {} if raw is None else {str(k): int(v) for k, v in json.loads(raw).items()}


def report(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    r = cmd.report_features
    if not r.node_id:
        return Result("INVALID_ARGUMENT", "report_features.node_id: required")
    levels = node_levels(txn.get("meta", keys.NODE_FEATURES))
    levels[r.node_id] = r.supported  # the latest report: a node may have been downgraded
    txn.put("meta", keys.NODE_FEATURES, json.dumps(levels, sort_keys=True).encode())
    return Result(message=f"node {r.node_id} supports feature level {r.supported}")


def set_level(txn: Txn, cmd: command_pb2.Command, index: int, now: int) -> Result:
    want = cmd.set_feature_level.level
    if want > SUPPORTED:
        return Result(
            "UNIMPLEMENTED",
            f"feature level {want} ({NAMES.get(want, 'newer')}) is above the {SUPPORTED} this "
            "version supports",
        )
    current = level(txn)
    if want <= current:
        return Result(message=f"feature level {current} already")
    txn.put("meta", keys.FEATURE_LEVEL, keys.be64(want))
    return Result(message=f"feature level {current} -> {want}")


__all__ = [
    "BASELINE",
    "BULK_CREATE",
    "DEPENDENCIES",
    "FIRE_AHEAD",
    "MEMBERSHIP",
    "NAMES",
    "SUPPORTED",
    "level",
    "node_levels",
]
