"""Membership changes: who the cluster's members are, and whether a change may be made. Pure.

The member set is replicated. A change is one pysyncobj MEMBERSHIP log entry (single-server
change: one member added or removed per entry), whose payload schedd writes as plain data:

    [op, raft_address, node_id, grpc_address, members_after]

``op`` is ``"add"`` or ``"rem"``; ``members_after`` is the whole member list after the change,
as ``[[node_id, raft_address, grpc_address], ...]``. pysyncobj reads the first two fields (its
own format is ``[op, address]``); the rest is schedd's. Applying the entry writes
``members_after`` into LMDB, so every node (and every snapshot) holds the complete list with ids
and gRPC addresses, and a node that restarts starts from it (pysyncobj would start from its
command line's partner list).

Invariants the planner (:func:`plan_add`, :func:`plan_remove`) keeps, before a change is
proposed:

* one change at a time (the caller holds a lock; pysyncobj also refuses while one is
  uncommitted);
* the cluster keeps a working majority *without* the member being added (it has no log yet: it
  votes and counts as soon as its add entry is appended, pysyncobj having no non-voting stage),
  and without the member being removed;
* node ids and Raft addresses stay unique; the leader never removes itself (it hands leadership
  over first: pysyncobj refuses a leader's own removal).

Raised errors are domain errors (:mod:`schedd.errors`) naming the field or saying what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schedd.errors import FailedPrecondition, InvalidArgument, NotFound

ADD = "add"
REMOVE = "rem"


@dataclass(frozen=True, order=True)
class Member:
    """A voting member: its id, where peers reach its Raft port, where clients reach it."""

    node_id: str
    raft: str
    grpc: str


@dataclass(frozen=True)
class PeerState:
    """What the leader knows of one member right now: connected, and how far its log matches."""

    connected: bool
    match_index: int


@dataclass(frozen=True)
class Change:
    """One membership entry to propose."""

    op: str
    member: Member
    members_after: tuple[Member, ...]

    def payload(self) -> list[object]:
        return [
            self.op,
            self.member.raft,
            self.member.node_id,
            self.member.grpc,
            [[m.node_id, m.raft, m.grpc] for m in self.members_after],
        ]


#: a connected member whose log is at most this many entries behind the leader's commit index
#: counts as able to take part in commits (under load a healthy follower is a few entries behind;
#: one catching up from a snapshot or a long outage is thousands behind)
CAUGHT_UP_SLACK = 1000


def majority(n: int) -> int:
    return n // 2 + 1


def decode_payload(request: Sequence[object]) -> tuple[str, str, tuple[Member, ...] | None]:
    """``(op, raft address, members_after)`` of a MEMBERSHIP entry; ``members_after`` is None
    for an entry in pysyncobj's own two-field format. ValueError for anything else (the node
    stops: it was not written by a schedd node)."""
    if len(request) < 2 or request[0] not in (ADD, REMOVE) or not isinstance(request[1], str):
        raise ValueError(f"not a membership change: {request!r:.120}")
    if len(request) < 5:
        return str(request[0]), request[1], None
    after = request[4]
    if not isinstance(after, list) or not all(
        isinstance(m, list) and len(m) == 3 and all(isinstance(x, str) for x in m) for m in after
    ):
        raise ValueError(f"malformed member list in a membership change: {after!r:.120}")
    return str(request[0]), request[1], tuple(Member(*m) for m in after)


def to_json(members: Iterable[Member]) -> bytes:
    return json.dumps([[m.node_id, m.raft, m.grpc] for m in sorted(members)]).encode()


def from_json(data: bytes) -> tuple[Member, ...]:
    return tuple(Member(*m) for m in json.loads(data))


def _healthy(
    members: Sequence[Member], leader: Member, peers: dict[str, PeerState], commit_index: int
) -> list[Member]:
    """Members that could take part in a commit right now: the leader, and every connected
    member whose log is within :data:`CAUGHT_UP_SLACK` entries of the commit index."""
    return [
        m
        for m in members
        if m == leader
        or (
            (p := peers.get(m.raft)) is not None
            and p.connected
            and p.match_index + CAUGHT_UP_SLACK >= commit_index
        )
    ]


def plan_add(
    members: Sequence[Member],
    leader: Member,
    peers: dict[str, PeerState],
    commit_index: int,
    new: Member,
) -> Change | None:
    """The change that adds ``new``; None when it is already a member with the same addresses
    (adding is idempotent: a node that restarts with ``--join`` asks again)."""
    for m in members:
        if m == new:
            return None
        if m.node_id == new.node_id:
            raise InvalidArgument(
                "node_id",
                f"{new.node_id!r} is already a member with Raft address {m.raft} and gRPC "
                f"address {m.grpc}; remove it first to give it new addresses",
            )
        if m.raft == new.raft:
            raise InvalidArgument(
                "raft_address", f"{new.raft} is already the Raft address of member {m.node_id!r}"
            )
    healthy = _healthy(members, leader, peers, commit_index)
    need = majority(len(members) + 1)
    if len(healthy) < need:
        down = sorted(m.node_id for m in members if m not in healthy)
        raise FailedPrecondition(
            f"adding {new.node_id} would make {len(members) + 1} members, of which {need} must "
            f"commit every write, but only {len(healthy)} are connected and caught up (behind or "
            f"unreachable: {', '.join(down)}); bring them back (or remove a dead one) first"
        )
    after = tuple(sorted((*members, new)))
    return Change(ADD, new, after)


def plan_remove(
    members: Sequence[Member],
    leader: Member,
    peers: dict[str, PeerState],
    commit_index: int,
    node_id: str,
) -> Change:
    """The change that removes member ``node_id``. Raises NotFound for a node that is not a
    member, FailedPrecondition for the leader itself (hand leadership over first), for the last
    member, and when the members left could not commit."""
    target = next((m for m in members if m.node_id == node_id), None)
    if target is None:
        known = ", ".join(sorted(m.node_id for m in members))
        raise NotFound(f"node_id: {node_id!r} is not a member (members: {known})")
    if len(members) == 1:
        raise FailedPrecondition(f"{node_id} is the only member; a cluster needs one")
    if target == leader:
        raise FailedPrecondition(
            f"{node_id} is the leader; leadership must move to another member before it is removed"
        )
    rest = [m for m in members if m != target]
    healthy = _healthy(rest, leader, peers, commit_index)
    need = majority(len(rest))
    if len(healthy) < need:
        down = sorted(m.node_id for m in rest if m not in healthy)
        raise FailedPrecondition(
            f"removing {node_id} would leave {len(rest)} members, of which {need} must commit "
            f"every write, but only {len(healthy)} of them are connected and caught up (behind "
            f"or unreachable: {', '.join(down)}); bring them back first"
        )
    return Change(REMOVE, target, tuple(sorted(rest)))


__all__ = [
    "ADD",
    "CAUGHT_UP_SLACK",
    "REMOVE",
    "Change",
    "Member",
    "PeerState",
    "decode_payload",
    "from_json",
    "majority",
    "plan_add",
    "plan_remove",
    "to_json",
]
