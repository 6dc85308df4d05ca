"""``python -m chaos.trap_node run ...``: ``schedd run`` with a trap for the follower-truncation
bug of pysyncobj 0.3.17 (test tooling for the ``raft-truncation`` scenarios, never production).

The trap watches this node as a follower: the highest log index it has acknowledged to the
leader, and its log's last index after every message it handles. When the log ends *below* what
it acknowledged (the bug: the leader may already have counted those entries as committed), the
trap springs at that worst moment: it logs ``event=trap_regression`` and for ``CUT_S`` seconds
ignores every AppendEntries of that leader's term, as if the link had just been cut. The harness
sees the line, kills the leader and lets the cluster elect without it; the checker then finds
the writes that leader committed and acknowledged gone (P4) and its own state diverged (C7).
The cut heals by itself, so a trap that springs when nobody acts on it only delays the node.

``CHAOS_RAFT_FIX=off`` runs pysyncobj's own replication (the fix off, 64 KiB messages): the
negative control, where the trap springs. With the fix on (the default) it never should.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import schedd.server.node
from schedd.raft.adapter import RaftNode
from schedd.raft.settings import RaftSettings

log = logging.getLogger("chaos.trap")
CUT_S = 5.0
#: spring only when the log ends at least this many entries below the acknowledgements. The
#: control asks for 4 (CHAOS_TRAP_MIN_DEPTH): a one-entry regression often loses only a
#: dispatcher entry, which no client was waiting for, and then the checker has nothing to see.
#: With the fix on, any regression springs it (1).
MIN_DEPTH = int(os.environ.get("CHAOS_TRAP_MIN_DEPTH", "1"))


class TrapRaftNode(RaftNode):
    def __init__(
        self,
        self_addr: str,
        partners: list[str],
        store: Any,
        journal_dir: str,
        password: str,
        settings: RaftSettings | None = None,
        **kw: Any,
    ) -> None:
        s = settings or RaftSettings()
        if os.environ.get("CHAOS_RAFT_FIX", "on") == "off":
            s = dataclasses.replace(
                s, replication_fix=False, append_batch_bytes=1 << 16, max_entry_bytes=(1 << 16) - 1
            )
        self._trap_acked = 0
        self._trap_term: int | None = None  # while sprung: the term whose leader is ignored
        self._trap_until = 0.0
        super().__init__(self_addr, partners, store, journal_dir, password, s, **kw)
        transport = self._SyncObj__transport
        send = transport.send

        def watched_send(node: Any, message: Any) -> Any:
            if (
                isinstance(message, dict)
                and message.get("type") == "next_node_idx"
                and message.get("success")
            ):
                self._trap_acked = max(self._trap_acked, message["next_node_idx"] - 1)
            return send(node, message)

        transport.send = watched_send
        log.warning("event=trap_armed raft_fix=%s", os.environ.get("CHAOS_RAFT_FIX", "on"))

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        if self._trap_term is not None:
            if time.monotonic() > self._trap_until:
                log.warning("event=trap_healed term=%d", self._trap_term)
                self._trap_term = None
            elif (
                isinstance(message, dict)
                and message.get("type") == "append_entries"
                and message.get("term") == self._trap_term
            ):
                return None  # the cut link
        super()._SyncObj__onMessageReceived(node, message)
        if self._trap_term is None and not self._isLeader():
            end = self._SyncObj__raftLog[-1][1]
            if self._trap_acked - end >= MIN_DEPTH:
                self._trap_term = self.raftCurrentTerm
                self._trap_until = time.monotonic() + CUT_S
                log.warning(
                    "event=trap_regression acked=%d log_end=%d term=%d leader=%s",
                    self._trap_acked,
                    end,
                    self._trap_term,
                    getattr(node, "id", node),
                )
                self._trap_acked = end  # spring again only on a new regression
        return None


schedd.server.node.RaftNode = TrapRaftNode  # type: ignore[misc]

if __name__ == "__main__":
    from schedd.server.cmd import main

    main(prog_name="schedd")
