"""Does a snapshot copy at a lower CPU priority keep the Raft thread on time on a busy box?

At ten million jobs, leaders changed while two nodes copied 2.6 GB snapshots at once: vmstat
showed both cores busy (0 % idle, 40-60 % system time, up to 18 runnable threads), so a Raft
thread waited for a core longer than the 0.4 s election timeout (bench/README.md). This bench
reproduces that shape in one process:

* an LMDB state of ``--mib`` MiB (built once in ``--dir``);
* ``--burners`` processes spinning on the CPU (the other nodes, apply, gRPC);
* a *tick* thread that does 1 ms of work and sleeps 5 ms, over and over, and records how long
  each round took beyond that (it stands for pysyncobj's tick thread, which heartbeats);
* a *copy* thread running ``Environment.copyfd(compact=True)`` of the state into a file, then
  fdatasync, at nice 0 or at a lower priority (``--nice``, on that thread only).

Rounds alternate the two; reported per mode: the copy's time, the tick's delay p99 and max, and
the delays over 400 ms (the shortest election timeout).

    python bench/copy_priority.py --mib 1024 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time

import lmdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import latency_summary_ms, progress, save_json  # noqa: E402


def build(path: str, mib: int) -> None:
    if os.path.exists(os.path.join(path, "done")):
        return
    env = lmdb.open(path, map_size=(mib * 3) << 20)
    value = os.urandom(300)
    n = (mib << 20) // 400
    for first in range(0, n, 100_000):
        with env.begin(write=True) as txn:
            for i in range(first, min(n, first + 100_000)):
                txn.put(f"job-{i:09d}".encode(), value)
    env.sync(True)
    env.close()
    open(os.path.join(path, "done"), "w").close()


def burn() -> None:
    while True:
        pass


def tick(stop: threading.Event, delays: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        end = t + 0.001
        while time.perf_counter() < end:  # a tick's work
            pass
        time.sleep(0.005)
        delays.append(time.perf_counter() - t - 0.006)


def copy(env: lmdb.Environment, out: str, nice: int) -> float:
    if nice:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    t = time.perf_counter()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with env.begin() as txn:
            env.copyfd(fd, compact=True, txn=txn)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    took = time.perf_counter() - t
    os.unlink(out)
    return took


def one(env: lmdb.Environment, out: str, nice: int) -> dict[str, object]:
    stop = threading.Event()
    delays: list[float] = []
    t = threading.Thread(target=tick, args=(stop, delays))
    t.start()
    took: list[float] = []
    c = threading.Thread(target=lambda: took.append(copy(env, out, nice)))
    c.start()
    c.join()
    stop.set()
    t.join()
    return {
        "nice": nice,
        "copy_s": round(took[0], 2),
        "tick_delay": latency_summary_ms(delays),
        "delays_over_400ms": sum(1 for d in delays if d > 0.4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--burners", type=int, default=3)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "schedd-copy-priority"))
    p.add_argument("--json", dest="out")
    a = p.parse_args()
    state = os.path.join(a.dir, f"state-{a.mib}")
    os.makedirs(state, exist_ok=True)
    progress(f"building a {a.mib} MiB LMDB state in {state} (once)")
    build(state, a.mib)
    env = lmdb.open(state, map_size=(a.mib * 3) << 20, readonly=True, lock=False)
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(a.burners)]
    for b in burners:
        b.start()
    results = []
    try:
        for r in range(a.rounds):
            for nice in (0, a.nice) if r % 2 == 0 else (a.nice, 0):
                res = one(env, os.path.join(a.dir, "copy.tmp"), nice)
                d = res["tick_delay"]
                progress(
                    f"round {r + 1} nice {nice}: copy {res['copy_s']} s, tick delay p99 "
                    f"{d.get('p99_ms')} ms max {d.get('max_ms')} ms, "  # type: ignore[union-attr]
                    f"over 400 ms: {res['delays_over_400ms']}"
                )
                results.append(res)
    finally:
        for b in burners:
            b.terminate()
    print(json.dumps(results, indent=1))
    save_json(a.out, results)


if __name__ == "__main__":
    main()
