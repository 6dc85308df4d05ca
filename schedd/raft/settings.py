"""Raft settings and the pysyncobj configuration built from them (also used by the
raw-pysyncobj baseline in ``bench/``, so the baseline runs with exactly the same options)."""

from __future__ import annotations

from dataclasses import dataclass

from pysyncobj import SyncObjConf

from schedd.raft.compaction import CompactionPolicy


@dataclass(frozen=True)
class RaftSettings:
    """Raft timing, durability and limits.

    * ``leader_fallback_s`` bounds how long a cut-off leader believes it leads.
    * ``fsync``: every entry is durable (group commit) before it counts towards a commit.
      False is ``--unsafe-no-fsync``: acknowledged writes survive a process crash but not a
      power cut (the journal is synced once a second, before LMDB).
    * ``replication_fix``: the fix of pysyncobj's follower truncation (``schedd.raft.replication``).
      False only in tests, as a negative control.
    * ``max_entry_bytes`` < ``append_batch_bytes``: no single entry ever needs pysyncobj's
      chunked transfer. 4 MiB messages kept pysyncobj's quadratic buffer copies (its receive
      buffer grew by concatenation) to a few tens of milliseconds when a follower catches up;
      schedd's transport (:mod:`schedd.raft.transport`) now buffers in linear time. Note that
      pysyncobj's chunking test counts the *pickled* command, up to twice ``max_entry_bytes``
      (docs/design.md, "Entries never exceed a message").
    """

    # Measured (python bench/failover.py, bench/sustained.py): with 0.4-1.0 s a leader SIGKILL
    # was followed by the first firing under the new leader in p99 1.46 s over 10 kills
    # (2.26-2.75 s with 0.8-2.0 s), and a 60 s burst above capacity caused no election.
    election_min_s: float = 0.4
    election_max_s: float = 1.0
    heartbeat_s: float = 0.1
    connection_timeout_s: float = 3.5
    leader_fallback_s: float = 3.0
    # Log compaction (schedd.raft.compaction.CompactionPolicy): once the journal holds
    # compaction_min_entries entries or compaction_min_bytes bytes, or every compaction_min_time_s when it holds any; never
    # more often than compaction_min_interval_s, nor than keeps the time spent compacting
    # under compaction_max_share; nodes staggered.
    compaction_min_entries: int = 50_000
    compaction_min_bytes: int = 256 << 20
    compaction_min_time_s: float = 600.0
    compaction_min_interval_s: float = 30.0
    compaction_max_share: float = 0.05
    # The snapshot copy in a background thread (schedd.raft.snapshots); False copies in the
    # tick thread as pysyncobj does (a negative control for tests and bench/compaction.py).
    background_snapshots: bool = True
    # The background copy's pace, MiB/s (0: none). Unpaced, a multi-gigabyte copy left so much
    # dirty that the journal's fdatasync waited up to 0.85 s behind it (bench/README.md, "Ten
    # million jobs"); at 64-160 MiB/s a journal's sync beside a 2 GiB copy waited at most
    # 49-80 ms, unpaced 181-384 ms (python bench/fsync_stall.py --rate 64 --rate 160).
    # Backup images (schedctl snapshot save) are paced the same.
    snapshot_copy_mib_s: float = 100.0
    max_in_flight: int = 256
    fsync: bool = True
    replication_fix: bool = True
    append_batch_bytes: int = 4 << 20
    max_entry_bytes: int = 3 << 20


#: pysyncobj's compaction thresholds, set out of reach (schedd decides: schedd.raft.compaction)
NEVER_ENTRIES = 1 << 62
NEVER_S = 1e12


def compaction_policy(s: RaftSettings) -> CompactionPolicy:
    return CompactionPolicy(
        min_entries=s.compaction_min_entries,
        min_bytes=s.compaction_min_bytes,
        max_interval_s=s.compaction_min_time_s,
        min_interval_s=s.compaction_min_interval_s,
        max_share=s.compaction_max_share,
    )


def sync_obj_conf(s: RaftSettings, password: str, journal_dir: str, **extra: object) -> SyncObjConf:
    """schedd's pysyncobj configuration. ``extra`` adds options such as the snapshot serializer
    hooks and the bind address."""
    return SyncObjConf(
        password=password,
        journalFile=f"{journal_dir}/raft.journal",
        fullDumpFile=f"{journal_dir}/raft.snapshot",
        appendEntriesUseBatch=False,  # ~1 ms commits; we batch ourselves (many items per entry)
        appendEntriesPeriod=s.heartbeat_s,
        appendEntriesBatchSizeBytes=s.append_batch_bytes,
        raftMinTimeout=s.election_min_s,
        raftMaxTimeout=s.election_max_s,
        connectionTimeout=max(s.connection_timeout_s, s.election_max_s),
        # a node that was down (or has just been added) is dialled again within a second, not
        # pysyncobj's 5 s: it is sent what it missed that much sooner
        connectionRetryTime=1.0,
        leaderFallbackTimeout=s.leader_fallback_s,
        commandsWaitLeader=False,
        # pysyncobj's own trigger never fires: schedd.raft.adapter asks for each compaction
        # (schedd.raft.compaction). Its "split" slots would hold a compaction back for up to
        # logCompactionMinTime whatever the write rate.
        logCompactionMinEntries=NEVER_ENTRIES,
        logCompactionMinTime=NEVER_S,
        logCompactionSplit=False,
        dynamicMembershipChange=True,  # one member at a time: schedd.raft.membership
        **extra,
    )
