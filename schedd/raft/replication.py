"""What a follower does with an AppendEntries message: Raft's rule, as a pure plan.

pysyncobj 0.3.17 deletes a follower's log after ``prevLogIdx`` on *every* AppendEntries, even
when the entries there match the leader's, then appends only what that message carries. A
re-sent, shorter message (the leader re-sends the tail while it pipelines, and cuts messages at
``appendEntriesBatchSizeBytes``) therefore leaves the follower *shorter than what it has already
acknowledged*, and the leader may have counted that acknowledgement towards a commit: a
committed entry can be lost if the leader dies before it re-sends (measured: 708 such
regressions in 8 s on this project's machine; ``docs/durability.md``).

Raft (Figure 2, AppendEntries receiver, steps 3-5) says instead: delete only on a conflict (same
index, different term), append only the entries not already present, and set the commit index to
``min(leaderCommit, index of the last new entry)``. :func:`plan_append` turns a message into the
message pysyncobj's own code then handles correctly:

* no entry at ``prev`` or a different term there: unchanged (pysyncobj answers with a reset);
* from the first missing or conflicting entry on: a message that starts there, so pysyncobj
  truncates only the conflict and appends the rest;
* every entry already present: an empty message at the follower's last entry (nothing is
  truncated), acknowledging only what the message proves (``prev + len(entries)``) and capping
  the commit index at that, since the follower's entries after it are not proven to match the
  leader's log.

The leader side of the fix is one rule, in the adapter: a success acknowledgement never moves
the leader's ``nextIndex`` for that follower backwards (pysyncobj sets it to the acknowledged
index even when the acknowledgement is for an older message, which re-sends the tail).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Entry = tuple[Any, int, int]  # pysyncobj's (command, index, term)


@dataclass(frozen=True)
class AppendPlan:
    """The AppendEntries message to hand to pysyncobj instead of the received one.

    ``ack_next``: the ``next_node_idx`` to acknowledge instead of the one pysyncobj computes
    (None: pysyncobj's own is right)."""

    prev_idx: int
    prev_term: int
    entries: list[Entry]
    commit_index: int
    ack_next: int | None


def plan_append(
    first_idx: int,
    last_idx: int,
    term_at: Callable[[int], int],
    prev_idx: int | None,
    prev_term: int | None,
    entries: Sequence[Entry],
    leader_commit: int,
) -> AppendPlan | None:
    """Plan for a follower whose log holds indexes ``first_idx..last_idx`` (``term_at(i)``: the
    term of entry ``i``) receiving AppendEntries(prev_idx, prev_term, entries, leader_commit).
    None: hand the message to pysyncobj unchanged (it rejects it, or it is not one this plan
    understands)."""
    if prev_idx is None or not first_idx <= prev_idx <= last_idx or term_at(prev_idx) != prev_term:
        return None
    k = 0
    for k, (_, idx, term) in enumerate(entries):  # noqa: B007 (k is used after the loop)
        if idx != prev_idx + 1 + k:
            return None  # not consecutive: not a message pysyncobj's leader sends
        if idx > last_idx or term_at(idx) != term:
            break
    else:
        k = len(entries)
    proven = prev_idx + len(entries)
    if k < len(entries):
        # From entries[k] on the follower's log is missing or conflicts. Start the message
        # there: pysyncobj deletes only from the conflict on, appends the rest, and its
        # acknowledgement (the last entry + 1 = proven + 1) and commit rule are then right.
        start = prev_idx + k
        start_term = prev_term if k == 0 else entries[k - 1][2]
        return AppendPlan(start, start_term, list(entries[k:]), leader_commit, None)
    return AppendPlan(last_idx, term_at(last_idx), [], min(leader_commit, proven), proven + 1)
