"""How long a Raft journal's syncs wait while a big file is written beside it (a snapshot copy
of a large state), with and without write-back pacing, and at a limited rate.

On the way to ten million jobs, while nodes' snapshot copies of 1.5-2.6 GB ran, ``perf trace``
saw the Raft threads wait 0.3-1 s in fdatasync and rename, and leaders changed
(bench/README.md). The guess was ext4's ordered mode (a file's new data is written before the
filesystem journal commits, so one big fsync holds every other one): pacing the copy's
write-out should then shorten the journal's waits. This bench tests that guess.

Two threads in one process, on the disk of ``--dir``:

* the *journal*: every 5 ms it appends 64 KiB to a file and fdatasyncs it, and every second it
  replaces a small metadata file (write, fdatasync, rename, directory fsync), as schedd's
  durable journal does; every operation is timed;
* the *copy*: writes ``--mib`` MiB in 1 MiB chunks as fast as it can, then fdatasyncs once, as
  LMDB's copy of a large state does; ``paced`` starts the write-out every 0.1 s meanwhile
  (:class:`Pacer`); ``--rate R`` (repeatable) adds a copy limited to R MiB/s that writes out
  and waits every 8 MiB, as schedd's snapshot copy does (``--snapshot-copy-rate``).

Each round runs every mode, in alternating order; the journal's latencies are reported per mode.

    python bench/fsync_stall.py --mib 2048 --rounds 2
    python bench/fsync_stall.py --mib 2048 --rounds 2 --rate 64 --rate 160
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import latency_summary_ms, progress, save_json  # noqa: E402

from schedd.state import disk  # noqa: E402

_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4  # sync_file_range flags


def _sync_file_range() -> Callable[[int, int, int, int], int]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fn = libc.sync_file_range
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return fn  # type: ignore[no-any-return]


class Pacer:
    """Every 0.1 s, start the write-out of what the copy wrote so far without waiting for it
    (Linux ``sync_file_range``, after the previous write-out ended): what RocksDB's
    ``bytes_per_sync`` does, so that the final fsync has little left."""

    def __init__(self, fd: int) -> None:
        self.fd, self.stop = fd, threading.Event()
        self.fn = _sync_file_range()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.fn(self.fd, 0, 0, _WAIT_BEFORE | _WRITE)


def journal(d: str, stop: threading.Event, syncs: list[float], renames: list[float]) -> None:
    path = os.path.join(d, "raft.journal")
    fd = disk.open_file(path)
    block = os.urandom(64 << 10)
    offset = 0
    next_meta = time.monotonic() + 1.0
    try:
        while not stop.is_set():
            t = time.perf_counter()
            disk.pwrite(fd, path, block, offset)
            offset += len(block)
            disk.fdatasync(fd, path)
            syncs.append(time.perf_counter() - t)
            if time.monotonic() >= next_meta:
                next_meta += 1.0
                t = time.perf_counter()
                disk.write_file(os.path.join(d, "raft.journal.meta.json"), b'{"term": 1}')
                renames.append(time.perf_counter() - t)
            # the tick's pace: a group commit every few milliseconds
            time.sleep(0.005)
    finally:
        os.close(fd)


def copy(d: str, mib: int, paced: bool, rate: float = 0.0) -> float:
    path = os.path.join(d, "snapshot.tmp")
    chunk = os.urandom(1 << 20)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        pacer = Pacer(fd) if paced else None
        if pacer is not None:
            pacer.thread.start()
        srf = _sync_file_range() if rate else None
        try:
            for i in range(mib):
                os.write(fd, chunk)
                if srf is not None:
                    if (i + 1) % 8 == 0:  # write out what was written, wait for it
                        srf(fd, 0, 0, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
                    ahead = t + (i + 1) / rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
        finally:
            if pacer is not None:
                pacer.stop.set()
                pacer.thread.join()
        os.fdatasync(fd)
    finally:
        os.close(fd)
    took = time.perf_counter() - t
    os.unlink(path)
    return took


def one(root: str, mib: int, paced: bool, rate: float = 0.0) -> dict[str, object]:
    d = tempfile.mkdtemp(prefix="stall-", dir=root)
    stop = threading.Event()
    syncs: list[float] = []
    renames: list[float] = []
    j = threading.Thread(target=journal, args=(d, stop, syncs, renames))
    j.start()
    # a quiet second first, then the copy; the journal runs a second past its end
    time.sleep(1.0)
    took = copy(d, mib, paced, rate)
    time.sleep(1.0)
    stop.set()
    j.join()
    shutil.rmtree(d, ignore_errors=True)
    return {
        "mode": f"rate {rate:g} MiB/s" if rate else "paced" if paced else "plain",
        "copy_s": round(took, 2),
        "journal_fdatasync": latency_summary_ms(syncs),
        "meta_replace": latency_summary_ms(renames),
        "journal_ops_over_300ms": sum(1 for x in syncs + renames if x > 0.3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=2048, help="size of the big write")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dir", default=tempfile.gettempdir(), help="a directory on the disk to test")
    p.add_argument("--json", dest="out")
    p.add_argument(
        "--rate",
        type=float,
        action="append",
        default=[],
        help="also a copy limited to this many MiB/s, written out every 8 MiB (repeatable)",
    )
    a = p.parse_args()
    results = []
    for r in range(a.rounds):
        modes = [(False, 0.0), (True, 0.0)] + [(False, x) for x in a.rate]
        for paced, rate in modes if r % 2 == 0 else modes[::-1]:
            res = one(a.dir, a.mib, paced, rate)
            progress(
                f"round {r + 1} {res['mode']}: copy {res['copy_s']} s, journal fdatasync "
                f"p99 {res['journal_fdatasync'].get('p99_ms')} ms max "  # type: ignore[union-attr]
                f"{res['journal_fdatasync'].get('max_ms')} ms, meta replace max "  # type: ignore[union-attr]
                f"{res['meta_replace'].get('max_ms')} ms"  # type: ignore[union-attr]
            )
            results.append(res)
    print(json.dumps(results, indent=1))
    save_json(a.out, results)


if __name__ == "__main__":
    main()
