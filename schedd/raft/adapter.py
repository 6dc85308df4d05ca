"""The one place that touches pysyncobj: a ``SyncObj`` whose state machine is the LMDB store.

* One replicated entry point, ``_apply_entry(data: bytes)``, taking an encoded
  ``schedd.v1.Command``: method ids in pysyncobj are positional, so a second ``@replicated``
  method would re-map old log entries. Never add one.
* The entry's log index is ``raftLastApplied + 1`` (apply runs in log order in the tick thread).
* Snapshots go through the store's serializer (an LMDB image plus Raft metadata in one file),
  never pysyncobj's fork-and-pickle default (unsafe with gRPC threads), and are copied in a
  background thread (:mod:`schedd.raft.snapshots`): the tick thread keeps heartbeating.
* ``propose`` always has a timeout. A timeout, LEADER_CHANGED or UNKNOWN_OUTCOME means the
  outcome is unknown (the entry may still commit): callers retry only with the same request id.

What this class changes in pysyncobj 0.3.17, and why (each relies on its internals, so the
version is pinned and checked at import):

* **Durable journal, group commit.** The log lives in :class:`~schedd.raft.journal.DurableJournal`.
  At the start of every tick the journal is synced once (one write, one ``fdatasync``) *before*
  pysyncobj counts the leader itself towards a commit, and a follower's acknowledgements
  (``next_node_idx``) are held back until that sync: an entry counts towards a commit only
  once it is on a majority of disks. Applying happens after that sync too, so LMDB is never
  ahead of the journal.
* **Replication fix** (:mod:`schedd.raft.replication`): a follower never truncates entries that
  match the leader's and acknowledges only what a message proves; a leader never moves a
  follower's ``nextIndex`` backwards on a success acknowledgement.
* **Probe fix** (always on): a leader ignores a reset that answers a message pipelined after a
  lower reset, so it walks back towards a diverged follower instead of livelocking
  (:meth:`RaftNode._stale_reset`).
* **No chunked entries.** Entries are capped at ``max_entry_bytes`` (refused in :meth:`propose`),
  below pysyncobj's ``appendEntriesBatchSizeBytes``, so pysyncobj's chunked "transmission" path
  for one oversized entry (which can cut a pickle short) is never taken.
* **The Raft port** (:mod:`schedd.raft.transport`, :mod:`schedd.raft.wire`): frames are
  size-checked before they are buffered, never unpickled into anything but plain data, and
  optionally carried over mutual TLS between node certificates. pysyncobj's own ``pickle.loads``
  of log entries (at apply, and of a chunked entry) is replaced by the same restricted one, so
  no peer can place a pickle in the log that runs code on the others.
* **Membership** (:mod:`schedd.raft.membership`): pysyncobj's single-server changes, with the
  entry's payload extended by the node's id, gRPC address and the whole member list, which apply
  writes into LMDB (:meth:`Store.apply_members`). pysyncobj applies a change when it is
  appended (leader) or received (follower) but, after a restart, only when the entry is applied
  again; Raft uses the latest configuration in the log, committed or not, so the changes in the
  journal after the last applied entry are replayed at the first tick (:meth:`_replay_membership`).
  A snapshot without a member set (``schedd restore`` writes one) keeps the configured members.
* A crash between pysyncobj renaming a new snapshot into place and compacting the journal left
  a journal that does not start at the snapshot; pysyncobj then cleared the journal *including
  entries after the snapshot*. The journal is aligned with the snapshot first instead.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj import FAIL_REASON, SyncObj, SyncObjException, replicated
from pysyncobj.monotonic import monotonic
from pysyncobj.syncobj import _COMMAND_TYPE
from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION

from schedd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotLeader,
    OutcomeUnknown,
    Unavailable,
)
from schedd.raft import membership, replication
from schedd.raft import transport as raft_transport
from schedd.raft.compaction import CompactionClock, CompactionCounts
from schedd.raft.journal import DurableJournal
from schedd.raft.quorum import QuorumView
from schedd.raft.settings import RaftSettings, compaction_policy, sync_obj_conf
from schedd.raft.snapshots import FAILED, KEPT, OUTCOMES, BackgroundSnapshots
from schedd.raft.transport import RaftTls
from schedd.raft.wire import PickleShim, WireLimits
from schedd.raft.wire import dumps as wire_dumps
from schedd.state.apply import Result
from schedd.state.store import SnapshotSource, Store, fatal

log = logging.getLogger("schedd.raft")

SUPPORTED_PYSYNCOBJ = "0.3.17"
if PYSYNCOBJ_VERSION != SUPPORTED_PYSYNCOBJ:  # the fixes below read and override its internals
    raise ImportError(
        f"schedd's Raft adapter needs pysyncobj {SUPPORTED_PYSYNCOBJ} exactly (found "
        f"{PYSYNCOBJ_VERSION}): reinstall schedd to get the pinned version"
    )


class StateAheadOfJournal(Exception):
    """LMDB has applied entries that the journal and snapshot no longer hold."""


# SyncObj.__init__ creates its journal by calling the module-level createJournal(path). A
# RaftNode registers the journal it opened under that path just before; anything else (the
# raw-pysyncobj benchmark) gets pysyncobj's own.
_stock_create_journal = _syncobj.createJournal
_prepared: dict[str, DurableJournal] = {}
_prepared_lock = threading.Lock()


def _create_journal(path: str | None = None) -> Any:
    with _prepared_lock:
        journal = _prepared.pop(path, None) if path else None
    return journal if journal is not None else _stock_create_journal(path)


_syncobj.createJournal = _create_journal

# pysyncobj unpickles log entries when it applies them (and a chunked entry when it arrives):
# with its own pickle module, an entry a peer placed in the log could run code on every node.
# Its module-level name is rebound to the restricted unpickler (schedd.raft.wire).
_syncobj.pickle = PickleShim


class RaftNode(SyncObj):
    """A pysyncobj node whose state machine is ``store``.

    Raises :class:`~schedd.raft.journal.JournalCorrupt` or :class:`StateAheadOfJournal` when
    the data directory cannot be trusted (the caller stops with exit 70)."""

    def __init__(
        self,
        self_addr: str,
        partners: list[str],
        store: Store,
        journal_dir: str,
        password: str,
        settings: RaftSettings | None = None,
        *,
        tls: RaftTls | None = None,
        transport_class: Callable[..., Any] | None = None,
        auto_tick: bool = True,
    ) -> None:
        if not password:
            raise ValueError("a Raft password is required")
        s = settings or RaftSettings()
        if s.max_entry_bytes >= s.append_batch_bytes:
            raise ValueError(
                "max_entry_bytes must be below append_batch_bytes (no chunked entries)"
            )
        # Attributes set before SyncObj.__init__ are left out of pysyncobj's own pickling.
        self._store = store
        self._settings = s
        self._in_flight = threading.BoundedSemaphore(s.max_in_flight)
        self._tick_actions: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._deferred_acks: list[tuple[Any, dict[str, Any]]] = []
        self._ack_override: int | None = None
        self._probe_floor: dict[
            Any, int
        ] = {}  # leader: lowest reset per follower since its last success
        self._snapshot_path = f"{journal_dir}/raft.snapshot"
        self._snapshot_entries = 0  # the journal's length when the last snapshot copy began
        self._snapshot_index = 0  # and the last log index it holds
        #: membership entries up to this index were replayed at start (their apply skips them)
        self._membership_replayed_to: int | None = None
        #: called after a membership entry is applied (tick thread): (index, members after)
        self.on_members: Callable[[int, tuple[membership.Member, ...]], None] | None = None
        # Observability (schedd.server.metrics binds these; None costs one comparison):
        # on_propose(seconds, outcome) after every propose; leader_changes counts the changes
        # of the known leader this node saw (tick thread), no leader in between included.
        self.on_propose: Callable[[float, str], None] | None = None
        self.leader_changes = 0
        #: log compactions by outcome and the seconds they took (read by the metrics)
        self.compactions = CompactionCounts(by_outcome=dict.fromkeys(OUTCOMES, 0))
        self._seen_leader: Any = None
        conf = sync_obj_conf(
            s,
            password,
            journal_dir,
            bindAddress=self_addr,
            autoTick=auto_tick,
            serializer=self._write_snapshot,
            deserializer=self._read_snapshot,
        )
        self._compaction_policy = compaction_policy(s)
        self._compaction = CompactionClock(last_end=monotonic())
        self._journal = DurableJournal(conf.journalFile, fsync=s.fsync, on_io_error=fatal)
        self._check_state_not_ahead()
        with _prepared_lock:
            _prepared[conf.journalFile] = self._journal
        if transport_class is None:
            limits = WireLimits.for_batches(s.append_batch_bytes, s.max_entry_bytes)
            transport_class = raft_transport.transport_class(limits, tls)
        try:
            super().__init__(self_addr, partners, conf, transportClass=transport_class)
        finally:
            with _prepared_lock:
                _prepared.pop(conf.journalFile, None)
        if self._SyncObj__raftLog is not self._journal:
            raise RuntimeError(
                "pysyncobj did not take schedd's journal (createJournal hook not used)"
            )
        self._snapshots: BackgroundSnapshots | None = None
        if s.background_snapshots:
            self._snapshots = BackgroundSnapshots(
                conf.fullDumpFile,
                conf.logCompactionBatchSize,
                self._read_snapshot,
                self._open_snapshot,
                self._snapshot_done,
                rate_bytes_s=s.snapshot_copy_mib_s * (1 << 20),
            )
            self._SyncObj__serializer = self._snapshots
        self.addOnTickCallback(self._run_tick_actions)

    # ---- log compaction (schedd.raft.compaction) -----------------------------------------------

    def _write_snapshot(self, filename: str, raft_meta: Any) -> None:
        """pysyncobj's serializer hook, used only with ``background_snapshots`` off: the
        store's snapshot, copied in the tick thread (which stalls meanwhile)."""
        started = monotonic()
        self._snapshot_began(raft_meta)
        ok = False
        try:
            self._store.write_snapshot(filename, raft_meta)
            ok = True
        finally:
            self._snapshot_done(started, monotonic(), KEPT if ok else FAILED)

    def _open_snapshot(self, raft_meta: tuple[Any, Any, Any]) -> SnapshotSource:
        """Hold the state for a background copy (tick thread, between applies)."""
        self._snapshot_began(raft_meta)
        self._store.make_room_for_copy()
        return self._store.snapshot_source(raft_meta)

    def _snapshot_began(self, raft_meta: tuple[Any, Any, Any]) -> None:
        # for the log line once it ends: the journal's length now, the snapshot's last index
        self._snapshot_entries = len(self._journal)
        self._snapshot_index = int(raft_meta[0][1])

    def _snapshot_done(
        self, started: float, ended: float, outcome: str, paused_s: float = 0.0
    ) -> None:
        """A snapshot copy ended (tick thread); if ``KEPT``, pysyncobj compacts the journal
        next. Timed for the compaction policy's cost bound either way: the time the copy
        worked, not the time it waited for its pace (a paced copy costs no more for taking
        longer). Counted in :attr:`compactions`."""
        self._compaction.finished(started + paused_s, ended)
        self.compactions.record(outcome, ended - started, paused_s)
        if outcome != KEPT:
            return
        log.info(
            "event=log_compacted ms=%d paused_ms=%d entries=%d journal_bytes=%d index=%d "
            "background=%d",
            (ended - started) * 1000,
            paused_s * 1000,
            self._snapshot_entries,
            self._journal.size_bytes,
            self._snapshot_index,
            self._snapshots is not None,
        )

    def destroy_synchronous(self) -> None:
        """Stop the tick thread, then wait for a snapshot copy still running (its read
        transaction must end before the store may close)."""
        super().destroy_synchronous()
        snapshots = self._snapshots
        if snapshots is not None and snapshots.copying:
            log.info("event=waiting_for_snapshot_copy: cancelled; the node stops once it ends")
            if not snapshots.wait(timeout_s=120.0):
                log.warning("event=snapshot_copy_still_running: stopping without it")

    def _maybe_compact(self) -> None:
        """Ask pysyncobj for a compaction when the policy says so (pysyncobj's own trigger is
        set out of reach; it still skips one that would cover nothing new)."""
        policy, clock = self._compaction_policy, self._compaction
        since = monotonic() - clock.last_end
        entries, size = len(self._journal), self._journal.size_bytes
        forced: bool = getattr(self, "_SyncObj__forceLogCompaction", False)
        if self._snapshots is not None and self._snapshots.copying:
            # one at a time; and a request made now would start the next copy the tick after
            # this one ends, whatever the policy's interval and share say
            return
        if forced or not policy.may_be_due(
            entries=entries, since_s=since, journal_bytes=size, last_took_s=clock.last_took_s
        ):
            return  # (the cheap answer of most ticks)
        me_node: Any = getattr(self, "_SyncObj__selfNode")  # noqa: B009 (pysyncobj's private name)
        others: Any = getattr(self, "_SyncObj__otherNodes")  # noqa: B009
        ids = sorted(str(getattr(n, "id", n)) for n in (*others, me_node))
        me = str(getattr(me_node, "id", me_node))
        if policy.due(
            entries=entries,
            journal_bytes=size,
            since_s=since,
            last_took_s=clock.last_took_s,
            rank=ids.index(me) if me in ids else 0,
            members=len(ids),
            leader=self._isLeader(),
        ):
            self._SyncObj__forceLogCompaction = True

    def _check_state_not_ahead(self) -> None:
        applied = self._store.applied_index()
        held = max(self._journal.last_index, Store.snapshot_last_index(self._snapshot_path))
        if applied > held:
            raise StateAheadOfJournal(
                f"the state in {self._store.path} has applied log index {applied}, but the Raft journal "
                f"and snapshot in {os.path.dirname(self._snapshot_path)} end at {held}: they lost entries "
                "the state had applied (a power cut with --unsafe-no-fsync, or files copied by hand). "
                f"Move {self._store.path} aside and restart the node: it rebuilds its state from the "
                "journal and snapshot, then catches up from the leader"
            )

    @replicated
    def _apply_entry(self, data: bytes) -> Result:
        if self._journal.dirty:  # never apply what the journal does not hold durably
            self._sync_journal()
        return self._store.apply_entry(data, self.raftLastApplied + 1)

    # ---- group commit ------------------------------------------------------------------------

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N803 (pysyncobj's signature)
        # Before pysyncobj counts this node towards a commit (as the leader) and before its held
        # acknowledgements go out (as a follower): everything appended since the last tick is
        # made durable with one sync.
        self._sync_journal()
        super()._onTick(timeToWait)

    def _SyncObj__applyLogEntries(self) -> bool:  # noqa: N802
        """pysyncobj applies every committed entry it holds in one go, in the Raft thread. A
        follower catching up (a joined node, one back from a long outage) can spend seconds
        there, longer than an election timeout, without reading its leader's messages; it then
        found its election deadline passed, became a candidate with a higher term and, with no
        pre-vote in pysyncobj, deposed a healthy leader every few seconds of its catch-up
        (measured: bench/join.py, bench/README.md). Time spent applying is not silence from the
        leader: a follower's election deadline moves on by it."""
        started = monotonic()
        sent: bool = SyncObj._SyncObj__applyLogEntries(self)  # type: ignore[attr-defined]
        busy = monotonic() - started
        if busy > 0.05 and not self._isLeader() and self._getLeader() is not None:
            self._SyncObj__raftElectionDeadline += busy
        return sent

    def _sync_journal(self) -> None:
        self._journal.sync()  # an I/O error stops the node (the journal's on_io_error)
        if self._deferred_acks:
            acks, self._deferred_acks = self._deferred_acks, []
            transport = self._SyncObj__transport
            for node, message in acks:
                transport.send(node, message)

    def _SyncObj__sendNextNodeIdx(
        self,
        node: Any,
        reset: bool = False,
        nextNodeIdx: int | None = None,  # noqa: N802,N803
        success: bool = False,
    ) -> None:
        """pysyncobj's only sender of follower acknowledgements. They wait for the journal
        sync (and keep their order); a success may carry the replication fix's index."""
        if nextNodeIdx is None:
            nextNodeIdx = self._SyncObj__raftLog[-1][1] + 1
        if success and self._ack_override is not None:
            nextNodeIdx = self._ack_override
        message = {
            "type": "next_node_idx",
            "next_node_idx": nextNodeIdx,
            "reset": reset,
            "success": success,
        }
        if self._deferred_acks or self._journal.dirty:
            self._deferred_acks.append((node, message))
        else:
            self._SyncObj__transport.send(node, message)

    def _SyncObj__onBecomeLeader(self) -> None:  # noqa: N802
        self._probe_floor.clear()
        SyncObj._SyncObj__onBecomeLeader(self)  # type: ignore[attr-defined]
        # Its NO_OP entry may be counted in this same tick (a one-node cluster): sync it now.
        self._sync_journal()

    # ---- entries that are not schedd's --------------------------------------------------------

    def _SyncObj__doApplyCommand(self, command: bytes) -> Any:  # noqa: N802
        """An entry whose pickle the restricted unpickler refuses was not written by a schedd
        node (a peer holding the password and, with TLS, a node certificate wrote it). pysyncobj
        would retry it every tick for ever; the node stops instead, naming the entry."""
        try:
            if command[:1] == bytes([_COMMAND_TYPE.MEMBERSHIP]):
                return self._apply_membership(command)
            return SyncObj._SyncObj__doApplyCommand(self, command)  # type: ignore[attr-defined]
        except pickle.UnpicklingError as e:
            fatal(
                f"Raft log entry {self.raftLastApplied + 1} cannot be decoded safely ({e}): it was "
                "not written by a schedd node. Find the peer that wrote it (the leader of that term; "
                "see event=raft_connection_refused lines) before restarting this node"
            )
            raise

    # ---- membership --------------------------------------------------------------------------

    def _SyncObj__doChangeCluster(self, request: Any, reverse: bool = False) -> bool:  # noqa: N802
        """pysyncobj's one place that changes the member set (on append, on receipt, on apply
        after a restart, and reversed when an entry is truncated): schedd's payload is cut to
        pysyncobj's ``[op, address]``."""
        try:
            op, address, _after = membership.decode_payload(request)
        except ValueError as e:
            fatal(
                f"a Raft membership entry cannot be read ({e}): it was not written by a schedd "
                "node. Find the peer that wrote it before restarting this node"
            )
            raise
        changed: bool = SyncObj._SyncObj__doChangeCluster(self, [op, address], reverse)  # type: ignore[attr-defined]
        if changed:
            log.info(
                "event=raft_members_changed op=%s address=%s reverse=%s voters=%s",
                "add" if op == membership.ADD else "remove",
                address,
                reverse,
                ",".join(sorted(str(n.id) for n in self._SyncObj__otherNodes)) or "-",
            )
        return changed

    def _replay_membership(self) -> None:
        """Raft's rule, which pysyncobj keeps only until a restart: a node uses the latest
        member set in its log. At the first tick (the snapshot loaded), every membership entry
        after the last applied one is applied to the member set in log order; their later
        apply does not repeat it (out of order with the entries after it)."""
        journal = self._journal
        last = journal[-1][1] if len(journal) else 0
        for command in self._membership_entries(self.raftLastApplied + 1, last):
            self._SyncObj__doChangeCluster(PickleShim.loads(command[1:]))
        self._membership_replayed_to = last

    def _apply_membership(self, command: bytes) -> None:
        index = self.raftLastApplied + 1
        request = PickleShim.loads(command[1:])
        replayed = self._membership_replayed_to
        if replayed is None or index > replayed:
            self._SyncObj__doChangeCluster(request)  # idempotent; as pysyncobj does at apply
        op, address, after = membership.decode_payload(request)
        if after is None:
            return
        if self._journal.dirty:
            self._sync_journal()
        if not self._store.apply_members(membership.to_json(after), index):
            return  # applied before this restart
        log.info(
            "event=member_change_applied index=%d op=%s address=%s members=%s",
            index,
            "add" if op == membership.ADD else "remove",
            address,
            ",".join(f"{m.node_id}@{m.raft}" for m in after),
        )
        hook = self.on_members
        if hook is not None and not self._later_membership_in_log(index):
            # a node catching up applies old changes too: its live member list (leader hints,
            # transfer targets) stays the newest one its log holds
            hook(index, after)

    def _later_membership_in_log(self, index: int) -> bool:
        """Whether the journal holds a *committed* membership entry after ``index`` (tick thread;
        runs only when a membership entry is applied, which is rare). An uncommitted one does not
        count: it may still be truncated, and the list applied now would then be the newest."""
        return any(True for _ in self._membership_entries(index + 1, int(self.raftCommitIndex)))

    def _membership_entries(self, start: int, end: int) -> Iterator[bytes]:
        """The membership entries the journal holds from log index ``start`` to ``end``
        (inclusive), in log order (tick thread)."""
        journal = self._journal
        if not len(journal):
            return
        first = journal[0][1]
        tag = bytes([_COMMAND_TYPE.MEMBERSHIP])
        for i in range(max(start, first) - first, min(end, journal[-1][1]) - first + 1):
            command = journal[i][0]
            if command[:1] == tag:
                yield command

    def propose_membership(self, change: membership.Change, timeout: float) -> int:
        """Replicate one membership change; return its log index once committed. Raises
        FailedPrecondition when pysyncobj refuses it (a change still uncommitted, or a leader
        that has not committed its first entry yet), NotLeader, and OutcomeUnknown on a
        timeout (the change may still commit: look at the member list)."""
        done = threading.Event()
        answer: list[Any] = []

        def callback(result: Any, error: Any) -> None:  # tick thread, before the index moves
            answer.append((error, self.raftLastApplied + 1))
            done.set()

        payload = wire_dumps(change.payload())
        self._applyCommand(payload, callback, _COMMAND_TYPE.MEMBERSHIP)
        if not done.wait(timeout):
            raise OutcomeUnknown(
                f"the membership change ({change.op} {change.member.node_id}) was not confirmed "
                f"within {timeout:g}s; it may still commit: check `schedctl member list`"
            )
        error, index = answer[0]
        if error == FAIL_REASON.SUCCESS:
            return int(index)
        if error == FAIL_REASON.REQUEST_DENIED:
            raise FailedPrecondition(
                "the leader refused the membership change: another change is not committed yet, "
                "or the leader was just elected; retry in a moment"
            )
        if error in (FAIL_REASON.NOT_LEADER, FAIL_REASON.MISSING_LEADER):
            raise NotLeader("this node is not the leader", self.leader_address())
        raise OutcomeUnknown(
            f"membership change outcome unknown ({_reason(error)}); check `schedctl member list`"
        )

    def in_tick(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` in the tick thread (where pysyncobj's state may be read safely) and return
        its result. Raises Unavailable when the tick thread does not get to it in time."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn()))
            except Exception as e:  # handed to the caller
                box.append((False, e))
            finally:
                done.set()

        self._tick_actions.put(run)
        if not done.wait(timeout):
            raise Unavailable("the Raft thread did not answer in time; retry")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def voters(self) -> set[str]:
        """The Raft addresses of the current member set, this node's included (tick thread)."""
        return {str(self._SyncObj__selfNode.id), *(str(n.id) for n in self._SyncObj__otherNodes)}

    def peer_states(self) -> dict[str, membership.PeerState]:
        """The leader's view of every other member (tick thread)."""
        connected = self._SyncObj__connectedNodes
        match = self._SyncObj__raftMatchIndex
        return {
            str(n.id): membership.PeerState(n in connected, int(match.get(n, 0)))
            for n in self._SyncObj__otherNodes
        }

    # ---- replication fix ---------------------------------------------------------------------

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        handle = SyncObj._SyncObj__onMessageReceived  # type: ignore[attr-defined]
        if not isinstance(message, dict):
            return handle(self, node, message)
        kind = message.get("type")
        if kind == "append_entries" and "transmission" in message:
            # pysyncobj's chunked entry: its reassembly unpickles (restricted) a buffer the peer
            # sent; a refused one is dropped here rather than raised through the poller.
            try:
                return handle(self, node, message)
            except pickle.UnpicklingError as e:
                log.error("event=raft_chunked_entry_refused peer=%s error=%s", node, e)
                return None
        if kind == "next_node_idx" and self._isLeader() and self._stale_reset(node, message):
            self._SyncObj__lastResponseTime[node] = monotonic()  # it still answered
            return None
        if not self._settings.replication_fix:
            return handle(self, node, message)
        if (
            kind == "append_entries"
            and "prevLogIdx" in message
            and "transmission" not in message
            and message["term"] >= self.raftCurrentTerm
        ):
            log_ = self._SyncObj__raftLog
            first = log_[0][1]
            plan = replication.plan_append(
                first,
                log_[-1][1],
                lambda i: log_[i - first][2],
                message["prevLogIdx"],
                message["prevLogTerm"],
                message.get("entries") or [],
                message["commit_index"],
            )
            if plan is None:
                return handle(self, node, message)
            rewritten = dict(
                message,
                prevLogIdx=plan.prev_idx,
                prevLogTerm=plan.prev_term,
                entries=plan.entries,
                commit_index=plan.commit_index,
            )
            self._ack_override = plan.ack_next
            try:
                return handle(self, node, rewritten)
            finally:
                self._ack_override = None
        if kind == "next_node_idx" and message.get("success") and not message.get("reset"):
            next_index = self._SyncObj__raftNextIndex
            before = next_index.get(node)
            handle(self, node, message)
            if before is not None and next_index.get(node, before) < before:
                next_index[node] = before  # an ack for an older message: do not re-send the tail
            return None
        return handle(self, node, message)

    def _stale_reset(self, node: Any, message: dict[str, Any]) -> bool:
        """Whether a follower's reset answers a message sent *after* the probe that set a lower
        ``nextIndex``: such a reset is stale and must not move ``nextIndex`` up again.

        pysyncobj's leader pipelines the whole tail after a reset (it advances ``nextIndex``
        optimistically message by message). Towards a follower whose log diverges, the first
        message fails on the term at ``prev`` (reset to ``prev``) and every later one on a
        missing ``prev`` (reset to the follower's end + 1, higher): the last reset wins, the probe
        never walks back, and the follower never catches up (measured: a returning old leader
        stuck for minutes). Raft walks back one probe at a time; here a reset is ignored while it
        is above the lowest one since the last success."""
        if message.get("success"):
            self._probe_floor.pop(node, None)
            return False
        if not message.get("reset"):
            return False
        floor = self._probe_floor.get(node)
        value = message["next_node_idx"]
        if floor is not None and value > floor:
            return True
        self._probe_floor[node] = value
        return False

    # ---- snapshots ---------------------------------------------------------------------------

    def _read_snapshot(self, filename: str) -> tuple[Any, Any, Any]:
        """pysyncobj's deserializer hook (start-up, and a snapshot received from the leader).

        The snapshot is made durable first (pysyncobj wrote a received one without syncing, and
        clears the journal right after this returns). Then, if the journal holds the snapshot's
        two entries but starts before them (a crash between the snapshot's rename and the
        compaction), it is compacted to start there, so pysyncobj keeps the entries after the
        snapshot instead of clearing them."""
        from schedd.state import disk

        if os.stat(filename).st_mode & 0o077:  # received from the leader: pysyncobj's mode
            os.chmod(filename, disk.FILE_MODE)
        if self._settings.fsync:
            disk.fsync_path(filename)
            disk.fsync_dir(os.path.dirname(os.path.abspath(filename)))
        meta = self._store.read_snapshot(filename)
        last, prev = meta[0], meta[1]
        if not meta[2]:
            # no member set (a snapshot `schedd restore` wrote): keep the configured one, else
            # pysyncobj would make this node a cluster of one
            meta = (last, prev, {self._SyncObj__selfNode, *self._SyncObj__otherNodes})
        entries = self._journal
        first = entries[0][1] if len(entries) else None
        if first is not None and first < prev[1] <= entries[-1][1]:
            at = prev[1] - first
            held = entries[at : at + 2]
            if len(held) == 2 and tuple(held[0]) == tuple(prev) and tuple(held[1]) == tuple(last):
                log.info("event=journal_aligned_with_snapshot index=%d dropped=%d", last[1], at)
                entries.deleteEntriesTo(at)
        return meta

    # ---- proposing ---------------------------------------------------------------------------

    def propose(self, data: bytes, timeout: float) -> Result:
        """Replicate ``data`` and return its apply result. Raises NotLeader / Unavailable when
        the entry was certainly not applied, OutcomeUnknown when it may have been, and
        InvalidArgument when it is larger than a Raft entry may be."""
        if len(data) > self._settings.max_entry_bytes:
            raise InvalidArgument(
                "request",
                f"{len(data)} bytes encoded is over the limit of "
                f"{self._settings.max_entry_bytes} bytes for one replicated entry",
            )
        t0 = time.perf_counter()
        outcome = "overloaded"
        if not self._in_flight.acquire(timeout=timeout):
            self._observe_propose(t0, outcome)
            raise Unavailable("node overloaded: too many writes in flight; retry with backoff")
        try:
            result: Result = self._apply_entry(data, sync=True, timeout=timeout)
            outcome = "ok"
            return result
        except SyncObjException as e:
            code = e.errorCode
            if code == "Timeout":
                outcome = "timeout"
                raise OutcomeUnknown(
                    "the write was not confirmed in time; it may still commit. "
                    "Retry with the same request id"
                ) from None
            if code in (FAIL_REASON.NOT_LEADER, FAIL_REASON.MISSING_LEADER):
                outcome = "not_leader"
                raise NotLeader("this node is not the leader", self.leader_address()) from None
            if code in (FAIL_REASON.QUEUE_FULL, FAIL_REASON.DISCARDED):
                outcome = "not_applied"
                raise Unavailable(f"write not applied ({_reason(code)}); retry") from None
            outcome = "unknown"
            raise OutcomeUnknown(
                f"write outcome unknown ({_reason(code)}); retry with the same request id"
            ) from None
        finally:
            self._in_flight.release()
            self._observe_propose(t0, outcome)

    def _observe_propose(self, t0: float, outcome: str) -> None:
        hook = self.on_propose
        if hook is not None:
            hook(time.perf_counter() - t0, outcome)

    def request_transfer(self, target: str | None, callback: Callable[[bool], None]) -> None:
        """Ask pysyncobj to hand leadership to ``target`` (None: the most caught-up peer).

        pysyncobj's transferLeadership touches its transport, so it runs in the tick thread via a
        one-shot tick callback. ``callback(sent)`` runs there too: False when refused (not the
        leader, or no peer fully caught up yet); True only means the request was sent.
        """

        self._tick_actions.put(
            lambda: self.transferLeadership(
                target, callback=lambda _r, err: callback(err == FAIL_REASON.SUCCESS)
            )
        )

    def _run_tick_actions(self) -> None:
        # Registered once: pysyncobj holds its callback lock while calling us, so a callback
        # must never add or remove tick callbacks itself.
        if self._membership_replayed_to is None:
            self._replay_membership()
        leader = self._getLeader()
        if leader != self._seen_leader:
            self._seen_leader = leader
            if leader is not None:
                self.leader_changes += 1
            log.info(
                "event=leader_changed leader=%s term=%d role=%s",
                "-" if leader is None else getattr(leader, "id", leader),
                self.raftCurrentTerm,
                "leader" if self._isLeader() else "follower",
            )
        self._maybe_compact()
        if self._journal.dirty:
            # pysyncobj runs tick callbacks after it appended and sent this tick's new entries
            # and before it waits for answers: the leader's sync now overlaps the followers'
            # round trip instead of following it (measured: +6-7 % burst throughput).
            self._sync_journal()
        while True:
            try:
                action = self._tick_actions.get_nowait()
            except queue.Empty:
                return
            try:
                action()
            except Exception:
                log.exception("event=tick_action_failed")

    def checkpoint(self) -> None:
        """Make LMDB durable up to what it has applied (the node calls this once a second).

        LMDB must never be on disk *ahead* of the journal: replay would skip entries the journal
        lost and the replicas would diverge. With fsync on, every applied entry is already in
        the synced journal, so LMDB is synced right here, in the caller's thread: its sync
        (tens of milliseconds at worst, without the GIL) no longer stalls the tick thread. With
        ``--unsafe-no-fsync`` the journal is synced first and then LMDB, both in the tick
        thread between applies (this is then the journal's only fsync).
        """
        if self._settings.fsync:
            self._store.sync()
            return
        done = threading.Event()

        def run() -> None:
            try:
                self._journal.sync(force=True)
                self._store.sync()
            finally:
                done.set()

        self._tick_actions.put(run)
        done.wait(5.0)

    # ---- status ------------------------------------------------------------------------------

    @property
    def journal(self) -> DurableJournal:
        return self._journal

    @property
    def snapshot_copying(self) -> bool:
        """True while a background snapshot copy runs."""
        # (getattr: pysyncobj's __init__ reads every attribute, before this one can be set)
        snapshots: BackgroundSnapshots | None = getattr(self, "_snapshots", None)
        return snapshots is not None and snapshots.copying

    def is_leader(self) -> bool:
        return self._isLeader()

    def leader_address(self) -> str:
        leader = self._getLeader()
        return "" if leader is None else str(getattr(leader, "id", leader))

    def leader_linked(self) -> bool:
        """Whether this node leads, or knows a leader and its Raft link to it is up (any
        thread; one read each of pysyncobj's state, no lock). Right after a leader dies its
        followers still name it until their election timeout: the closed link tells them
        apart from a live one."""
        if self._isLeader():
            return True
        leader = self._getLeader()
        return leader is not None and leader in self._SyncObj__connectedNodes  # type: ignore[attr-defined]

    def status(self) -> dict[str, object]:
        return self.getStatus()

    def quorum_view(self) -> QuorumView:
        """Whether this node is part of a working majority right now (any thread; each field is
        one read of pysyncobj's state, no lock). A follower "heard" its leader while pysyncobj's
        election deadline, pushed forward by every message from the leader, is in the future:
        an isolated follower keeps its stale leader for ever (pysyncobj starts no election
        without a connection), so knowing a leader is not enough."""
        leader = self._isLeader()
        heard = leader or (
            self._getLeader() is not None and monotonic() < self._SyncObj__raftElectionDeadline  # type: ignore[attr-defined]
        )
        return QuorumView(is_leader=leader, has_quorum=bool(self.hasQuorum), leader_heard=heard)


def _reason(code: object) -> str:
    names = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}
    return names.get(code, str(code))


__all__ = ["RaftNode", "StateAheadOfJournal"]
