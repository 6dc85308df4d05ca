"""Apply a node's own Raft journal again, in process: what apply costs per firing on the entries a
cluster really wrote, and which writes it does per firing.

``bench/apply_cost.py`` applies entries it builds itself (one-shot jobs, one worker). A cluster
under a real workload writes other entries: cron jobs whose due index moves at every firing,
runs fired without a free slot (written PENDING, granted by a later entry), completions in
entries of their own. This tool takes those entries from a node's journal and applies them, in
log order, to a fresh LMDB store in a temp dir, as a replica does (the same
``Store.apply_entry``), timing each with the process's CPU clock. The journal is copied first;
the node's files are only read. Prints:

* the items of each command kind in the log (FireDue slots, grants, completions, ...);
* apply CPU per firing (all entries of the Batch kind, the ticks, divided by their FireDue
  slots), median of ``--repeat`` replays;
* with ``--writes``: LMDB puts and deletes per firing, by database.

Get a journal from a workload with ``bench/sustained.py --keep`` (it prints where the nodes'
directories were kept), then::

    python bench/replay_journal.py <kept dir>/n2              # a node's data dir, or
    python bench/replay_journal.py <kept dir>/n2/raft.journal --repeat 3 --writes

The journal must still start at log index 1: a node that compacted its log holds the earlier
state in a snapshot, and replaying from the middle would apply entries to a state they were
not written for (the tool says so and stops).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from pysyncobj.syncobj import _COMMAND_TYPE

import schedd.state.store as store_module
from schedd.pb import command_pb2
from schedd.raft.journal import DurableJournal
from schedd.raft.wire import loads
from schedd.state.store import Store

_REGULAR = bytes([_COMMAND_TYPE.REGULAR])


def read_entries(path: str) -> list[tuple[int, bytes]]:
    """``(log index, Command bytes)`` of every schedd entry in the journal at ``path`` (a file,
    or a node's data dir holding ``raft.journal``), read from a copy. Raises ValueError when
    the journal does not start at log index 1."""
    if os.path.isdir(path):
        path = os.path.join(path, "raft.journal")
    tmp = tempfile.mkdtemp(prefix="schedd-replay-")
    try:
        copy = os.path.join(tmp, "raft.journal")
        shutil.copyfile(path, copy)
        journal = DurableJournal(copy, fsync=False)
        if not len(journal):
            raise ValueError(f"{path}: the journal holds no entries")
        first = journal[0][1]
        if first != 1:
            raise ValueError(
                f"{path}: the journal starts at log index {first}, not 1 (the node compacted its "
                "log); take a journal from a shorter run, or one with fewer jobs"
            )
        out: list[tuple[int, bytes]] = []
        for i in range(len(journal)):
            command, index, _term = journal[i]
            if command[:1] != _REGULAR:  # NO_OP, membership, version: not schedd's state
                continue
            # pysyncobj's REGULAR entry: (method id, args, kwargs); schedd has one method
            _method, args, _kwargs = loads(command[1:])
            out.append((index, args[0]))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_TICK_KINDS = frozenset({"fire_due", "grant_leases", "complete_runs", "expire_leases"})


def census(entries: list[tuple[int, bytes]]) -> tuple[Counter[str], set[int]]:
    """Items per command kind (a Batch's commands counted by their items; FireDue by its slots)
    and the log indexes of the ticks: Batch entries that fire, grant, complete or expire (a bulk
    create is a Batch too, of CreateJob commands only)."""
    kinds: Counter[str] = Counter()
    batches: set[int] = set()
    for index, data in entries:
        cmd = command_pb2.Command.FromString(data)
        body = cmd.WhichOneof("body") or "?"
        if body != "batch":
            kinds[body] += 1
            continue
        for sub in cmd.batch.commands:
            kind = sub.WhichOneof("body") or "?"
            if kind in _TICK_KINDS:
                batches.add(index)
            msg = getattr(sub, kind, None)
            if kind == "fire_due":
                kinds[kind] += sum(len(item.slots_ms) for item in sub.fire_due.items)
            elif msg is not None and hasattr(msg, "items"):
                kinds[kind] += len(msg.items)
            else:
                kinds[kind] += 1
    return kinds, batches


@contextmanager
def counting_writes(puts: Counter[str], deletes: Counter[str]) -> Iterator[None]:
    """Count the writes ``Store.apply_entry`` executes, by database, while inside."""
    real = store_module.apply_writes

    def spy(reader, data, index):  # type: ignore[no-untyped-def]
        writes, result = real(reader, data, index)
        for (db, _key), value in writes:
            (deletes if value is None else puts)[db] += 1
        return writes, result

    store_module.apply_writes = spy  # type: ignore[assignment]
    try:
        yield
    finally:
        store_module.apply_writes = real


def replay(
    entries: list[tuple[int, bytes]], batches: set[int], store_root: str | None = None
) -> float:
    """Apply ``entries`` to a fresh store (in ``store_root``, kept, when given; else in a temp
    dir, removed); CPU seconds spent on the ticks' entries (``batches``)."""
    root = store_root or tempfile.mkdtemp(prefix="schedd-replay-store-")
    store = Store(root)
    cpu = 0.0
    try:
        for index, data in entries:
            c0 = time.process_time()
            store.apply_entry(data, index)
            if index in batches:
                cpu += time.process_time() - c0
        return cpu
    finally:
        store.close()
        if store_root is None:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", help="a node's data dir, or its raft.journal")
    p.add_argument("--repeat", type=int, default=3, help="replays (the median is printed)")
    p.add_argument("--writes", action="store_true", help="also LMDB writes per firing, by db")
    a = p.parse_args()
    try:
        entries = read_entries(a.path)
    except (OSError, ValueError) as e:
        print(f"replay_journal: {e}", file=sys.stderr)
        sys.exit(2)
    kinds, batches = census(entries)
    firings = kinds.get("fire_due", 0)
    print(f"{len(entries)} entries, {len(batches)} of them ticks; items: {dict(kinds)}")
    if not firings:
        print("no FireDue slots in this journal: nothing to divide by")
        return
    cpu = [replay(entries, batches) for _ in range(max(1, a.repeat))]
    per = statistics.median(cpu) / firings * 1e6
    print(
        f"apply per firing: {per:.1f} µs of CPU (the ticks / their {firings} FireDue "
        f"slots), median of {len(cpu)} replays: "
        + ", ".join(f"{c / firings * 1e6:.1f}" for c in cpu)
    )
    if a.writes:
        puts: Counter[str] = Counter()
        deletes: Counter[str] = Counter()
        with counting_writes(puts, deletes):
            replay(entries, batches)
        total = sum(puts.values()) + sum(deletes.values())
        print(f"LMDB writes per firing: {total / firings:.2f}, all entries")
        for db in sorted(set(puts) | set(deletes), key=lambda d: -(puts[d] + deletes[d])):
            print(f"  {db:<12} put {puts[db] / firings:5.2f}  delete {deletes[db] / firings:5.2f}")


if __name__ == "__main__":
    main()
