"""How long the Raft tick thread waits when a new snapshot replaces a large old one.

A rename over a file frees the old file's blocks inside the rename when that was its last
name: with a multi-gigabyte snapshot this ran in the tick thread, past the election timeout
(the ten-million-job run saw renames of up to 1.15 s). schedd now gives the old file a second
name first and frees it in a thread, in steps (``schedd.raft.snapshots``). This bench times
both ways on the disk of ``--dir``, with a journal-like thread beside them (append 64 KiB,
fdatasync, every 5 ms) whose sync latencies are reported too:

* ``plain``: ``rename(new, snapshot)`` over the old file (what schedd did);
* ``aside``: ``set_aside`` + ``rename`` in the caller, ``release`` of the old file in a thread.

The old file is written and synced before each round, then the page cache is flushed (``sync``)
and the journal runs for half a second before the replacement and a second after it.

    python bench/snapshot_replace.py --mib 3072 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import latency_summary_ms, progress, save_json  # noqa: E402

from schedd.raft import snapshots  # noqa: E402


def _write(path: str, mib: int) -> None:
    chunk = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(mib):
            os.write(fd, chunk)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _journal(path: str, stop: threading.Event, lat: list[float]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = os.urandom(64 << 10)
    try:
        while not stop.is_set():
            t = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
            time.sleep(0.005)  # the tick's pace
    finally:
        os.close(fd)


def one(root: str, mib: int, mode: str) -> dict[str, object]:
    d = tempfile.mkdtemp(prefix="replace-", dir=root)
    snap = os.path.join(d, "raft.snapshot")
    _write(snap, mib)
    _write(snap + ".tmp", 16)
    os.sync()
    stop, lat = threading.Event(), []  # type: ignore[var-annotated]
    j = threading.Thread(target=_journal, args=(os.path.join(d, "raft.journal"), stop, lat))
    j.start()
    time.sleep(0.5)
    t = time.perf_counter()
    aside = snapshots.set_aside(snap) if mode == "aside" else None
    os.rename(snap + ".tmp", snap)
    if aside is not None:
        snapshots.release(aside)
    caller_s = time.perf_counter() - t
    # until the old file is gone (aside: freed by the thread), then a second more
    while any(".old." in n for n in os.listdir(d)):
        time.sleep(0.01)
    time.sleep(1.0)
    stop.set()
    j.join()
    shutil.rmtree(d, ignore_errors=True)
    return {
        "mode": mode,
        "caller_ms": round(caller_s * 1000, 1),
        "journal_fdatasync": latency_summary_ms(lat),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=3072, help="size of the old snapshot")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dir", default=tempfile.gettempdir(), help="a directory on the disk to test")
    p.add_argument("--json", dest="out")
    a = p.parse_args()
    results = []
    for r in range(a.rounds):
        for mode in ("plain", "aside") if r % 2 == 0 else ("aside", "plain"):
            res = one(a.dir, a.mib, mode)
            js = res["journal_fdatasync"]
            progress(
                f"round {r + 1} {mode}: rename in the caller {res['caller_ms']} ms, journal "
                f"fdatasync p99 {js.get('p99_ms')} ms max {js.get('max_ms')} ms"  # type: ignore[union-attr]
            )
            results.append(res)
    print(json.dumps(results, indent=1))
    save_json(a.out, results)


if __name__ == "__main__":
    main()
