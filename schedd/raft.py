"""The one place that touches pysyncobj.

* One replicated entry point, ``_apply_entry(data: bytes)``, taking an encoded
  ``schedd.v1.Command``: method ids in pysyncobj are positional, so a second ``@replicated``
  method would re-map old log entries. Never add one.
* The entry's log index is ``raftLastApplied + 1`` (apply runs in log order in the tick thread).
* Snapshots go through the store's serializer (an LMDB image plus Raft metadata in one file),
  never pysyncobj's fork-and-pickle default (unsafe with gRPC threads).
* ``propose`` always has a timeout. A timeout, LEADER_CHANGED or UNKNOWN_OUTCOME means the
  outcome is unknown (the entry may still commit): callers retry only with the same request id.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjException, replicated

from schedd.apply import Result
from schedd.errors import NotLeader, OutcomeUnknown, Unavailable
from schedd.store import Store

log = logging.getLogger("schedd.raft")


@dataclass(frozen=True)
class RaftSettings:
    """Raft timing. ``leader_fallback_s`` bounds how long a cut-off leader believes it leads."""

    election_min_s: float = 0.8
    election_max_s: float = 2.0
    heartbeat_s: float = 0.1
    connection_timeout_s: float = 3.5
    leader_fallback_s: float = 3.0
    compaction_min_entries: int = 50_000
    compaction_min_time_s: float = 600.0
    max_in_flight: int = 256


def sync_obj_conf(s: RaftSettings, password: str, journal_dir: str, **extra: object) -> SyncObjConf:
    """schedd's pysyncobj configuration (also used by the raw-Raft baseline in bench/, so the
    baseline runs with exactly the same settings). ``extra`` adds options such as the
    snapshot serializer hooks and the bind address."""
    return SyncObjConf(
        password=password,
        journalFile=f"{journal_dir}/raft.journal",
        fullDumpFile=f"{journal_dir}/raft.snapshot",
        appendEntriesUseBatch=False,  # ~1 ms commits; we batch ourselves (many items per entry)
        appendEntriesPeriod=s.heartbeat_s,
        raftMinTimeout=s.election_min_s,
        raftMaxTimeout=s.election_max_s,
        connectionTimeout=max(s.connection_timeout_s, s.election_max_s),
        leaderFallbackTimeout=s.leader_fallback_s,
        commandsWaitLeader=False,
        logCompactionMinEntries=s.compaction_min_entries,
        logCompactionMinTime=s.compaction_min_time_s,
        logCompactionSplit=True,
        dynamicMembershipChange=False,
        **extra,
    )


class RaftNode(SyncObj):
    """A pysyncobj node whose state machine is ``store``."""

    def __init__(self, self_addr: str, partners: list[str], store: Store, journal_dir: str,
                 password: str, settings: RaftSettings | None = None) -> None:
        if not password:
            raise ValueError("a Raft password is required")
        s = settings or RaftSettings()
        # Attributes set before SyncObj.__init__ are left out of pysyncobj's own pickling.
        self._store = store
        self._in_flight = threading.BoundedSemaphore(s.max_in_flight)
        self._tick_actions: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        conf = sync_obj_conf(s, password, journal_dir, bindAddress=self_addr,
                             serializer=store.write_snapshot, deserializer=store.read_snapshot)
        super().__init__(self_addr, partners, conf)
        self.addOnTickCallback(self._run_tick_actions)

    @replicated
    def _apply_entry(self, data: bytes) -> Result:
        return self._store.apply_entry(data, self.raftLastApplied + 1)

    # ---- proposing ---------------------------------------------------------------------------

    def propose(self, data: bytes, timeout: float) -> Result:
        """Replicate ``data`` and return its apply result. Raises NotLeader / Unavailable when
        the entry was certainly not applied, OutcomeUnknown when it may have been."""
        if not self._in_flight.acquire(timeout=timeout):
            raise Unavailable("node overloaded: too many writes in flight; retry with backoff")
        try:
            return self._apply_entry(data, sync=True, timeout=timeout)
        except SyncObjException as e:
            code = e.errorCode
            if code == "Timeout":
                raise OutcomeUnknown("the write was not confirmed in time; it may still commit. "
                                     "Retry with the same request id") from None
            if code in (FAIL_REASON.NOT_LEADER, FAIL_REASON.MISSING_LEADER):
                raise NotLeader("this node is not the leader", self.leader_address()) from None
            if code in (FAIL_REASON.QUEUE_FULL, FAIL_REASON.DISCARDED):
                raise Unavailable(f"write not applied ({_reason(code)}); retry") from None
            raise OutcomeUnknown(f"write outcome unknown ({_reason(code)}); retry with the same request id") from None
        finally:
            self._in_flight.release()

    def request_transfer(self, target: str | None, callback: Callable[[bool], None]) -> None:
        """Ask pysyncobj to hand leadership to ``target`` (None: the most caught-up peer).

        pysyncobj's transferLeadership touches its transport, so it runs in the tick thread via a
        one-shot tick callback. ``callback(sent)`` runs there too: False when refused (not the
        leader, or no peer fully caught up yet); True only means the request was sent.
        """

        self._tick_actions.put(lambda: self.transferLeadership(
            target, callback=lambda _r, err: callback(err == FAIL_REASON.SUCCESS)))

    def _run_tick_actions(self) -> None:
        # Registered once: pysyncobj holds its callback lock while calling us, so a callback
        # must never add or remove tick callbacks itself.
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
        """Flush the Raft journal, then fsync LMDB, in the tick thread (between applies).

        The order matters after a power cut: LMDB must never be on disk *ahead* of the journal,
        or replay would skip entries the journal lost and the replicas would diverge. Flushing
        the journal first guarantees every entry LMDB has applied is on disk in the journal too.
        """
        done = threading.Event()

        def run() -> None:
            try:
                journal = getattr(self, "_SyncObj__raftLog", None)  # pysyncobj 0.3.17 internals
                if journal is not None:
                    journal.flush()
                self._store.sync()
            finally:
                done.set()

        self._tick_actions.put(run)
        done.wait(5.0)

    # ---- status ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._isLeader()

    def leader_address(self) -> str:
        leader = self._getLeader()
        return "" if leader is None else str(getattr(leader, "id", leader))

    def status(self) -> dict[str, object]:
        return self.getStatus()


def _reason(code: object) -> str:
    names = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}
    return names.get(code, str(code))
