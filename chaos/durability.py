"""Durability measurements behind ``docs/durability.md``.

    python -m chaos.durability fsyncs [--seconds 10]     # which files a node syncs, how often (strace)
    python -m chaos.durability fsyncs --unsafe           # the same with --unsafe-no-fsync
    python -m chaos.durability journal-cost [--n 2000]   # the journal's cost per append, by sync mode
    python -m chaos.durability throughput [--seconds 10] # creates/s: durable vs --unsafe-no-fsync

``fsyncs`` starts a real 3-node cluster (``schedd.testing.LocalCluster``), drives job creates for
a few seconds and attaches ``strace -f -y -e trace=fsync,fdatasync,msync,sync_file_range,syncfs``
to the leader and a follower: it counts sync calls per file, so "one fdatasync of the journal per
group of entries" is a measurement, not a reading of the code.

``journal-cost`` appends entries to schedd's ``DurableJournal`` on the disk under ``chaos/out``:
without a sync, with a sync after every append, and with one sync per 10 appends (group commit),
next to pysyncobj's own unsynced ``FileJournal``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
SYNC_CALLS = "fsync,fdatasync,msync,sync_file_range,syncfs,sync"


def _cluster(root: str, unsafe: bool):  # type: ignore[no-untyped-def]
    from schedd.testing import LocalCluster

    return LocalCluster(
        os.path.join(root, "cluster"), nodes=3, extra_args=["--unsafe-no-fsync"] if unsafe else []
    )


def fsyncs(seconds: float, unsafe: bool = False) -> int:

    if shutil.which("strace") is None:
        print("strace not found: apt-get install -y strace", file=sys.stderr)
        return 2
    os.makedirs(OUT, exist_ok=True)
    root = tempfile.mkdtemp(prefix="durability-", dir=OUT)
    cluster = _cluster(root, unsafe)
    traces: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    creates = 0
    try:
        cluster.start()
        leader = cluster.wait_for_leader(timeout=30)
        follower = next(s.node_id for s in cluster.specs if s.node_id != leader)
        for role, node in (("leader", leader), ("follower", follower)):
            out = os.path.join(root, f"strace-{role}.txt")
            traces[role] = subprocess.Popen(
                [
                    "strace",
                    "-f",
                    "-y",
                    "-qq",
                    "-e",
                    f"trace={SYNC_CALLS}",
                    "-o",
                    out,
                    "-p",
                    str(cluster.procs[node].pid),
                ],
                stderr=subprocess.DEVNULL,
            )
        time.sleep(1.0)  # strace attached to every thread

        def load() -> None:
            nonlocal creates
            with cluster.client(timeout=3) as c:
                while not stop.is_set():
                    c.create_job(f"d-{creates}", cron="*/1 * * * * *")
                    creates += 1

        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(seconds)
        stop.set()
        t.join(timeout=10)
        for p in traces.values():
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)
        print(
            f"{creates} acknowledged creates in {seconds:g}s (each one Raft entry, committed on a majority)"
        )
        print(f"sync calls per file while they ran (strace {SYNC_CALLS}):\n")
        print("| node | file | calls |")
        print("|---|---|---|")
        for role in traces:
            counts: collections.Counter[str] = collections.Counter()
            with open(os.path.join(root, f"strace-{role}.txt")) as f:
                for line in f:
                    m = re.search(r"(\w+)\((\d+)<([^>]*)>", line)
                    if m:
                        counts[f"{m.group(1)} {os.path.relpath(m.group(3), cluster.root)}"] += 1
                    elif " msync(" in line:
                        counts["msync (an mmap)"] += 1
            if not counts:
                print(f"| {role} | (none) | 0 |")
            for what, n in sorted(counts.items()):
                print(f"| {role} | `{what}` | {n} |")
        print(f"\nraw traces: {root}/strace-*.txt")
    finally:
        stop.set()
        for p in traces.values():
            if p.poll() is None:
                p.kill()
        cluster.stop()
    return 0


def throughput(seconds: float, clients: int) -> int:
    """Acknowledged creates per second and their latency, durable vs --unsafe-no-fsync."""
    import statistics

    os.makedirs(OUT, exist_ok=True)
    print(
        f"{clients} client threads creating jobs for {seconds:g}s against a 3-node cluster "
        f"(data under {OUT}, {_fs_of(OUT)}):\n"
    )
    print("| journal | creates/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for unsafe in (False, True):
        root = tempfile.mkdtemp(prefix="throughput-", dir=OUT)
        cluster = _cluster(root, unsafe)
        lat: list[float] = []
        stop = threading.Event()
        try:
            cluster.start()
            cluster.wait_for_leader(timeout=30)

            def load(k: int, cluster=cluster, stop=stop, lat=lat) -> None:  # type: ignore[no-untyped-def]
                i = 0
                with cluster.client(timeout=5) as c:
                    while not stop.is_set():
                        t0 = time.perf_counter()
                        c.create_job(f"t{k}-{i}", cron="0 0 1 1 *")
                        lat.append(time.perf_counter() - t0)
                        i += 1

            threads = [
                threading.Thread(target=load, args=(k,), daemon=True) for k in range(clients)
            ]
            for t in threads:
                t.start()
            time.sleep(2)  # warm-up
            lat.clear()
            t0 = time.perf_counter()
            time.sleep(seconds)
            n, dt = len(lat), time.perf_counter() - t0
            stop.set()
            for t in threads:
                t.join(timeout=10)
            xs = sorted(lat[:n])
            p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
            print(
                f"| {'--unsafe-no-fsync (synced once a second)' if unsafe else 'durable (group commit)'} | "
                f"{n / dt:,.0f} | {statistics.median(xs) * 1000:.1f} | {p99 * 1000:.1f} |"
            )
        finally:
            stop.set()
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
    return 0


def journal_cost(n: int) -> int:
    from pysyncobj.journal import FileJournal

    from schedd.raft.journal import DurableJournal

    os.makedirs(OUT, exist_ok=True)
    payload = os.urandom(300)  # about one small schedd entry
    print(f"{n} appends of {len(payload)} bytes under {OUT} ({_fs_of(OUT)}):\n")
    print("| journal | appends/s | µs per append |")
    print("|---|---|---|")
    modes = (
        ("pysyncobj FileJournal, never synced (schedd before)", None, 0),
        ("DurableJournal, no fdatasync (--unsafe-no-fsync)", False, 1),
        ("DurableJournal, fdatasync after every append", True, 1),
        ("DurableJournal, one fdatasync per 10 appends (group commit)", True, 10),
    )
    for mode, fsync, every in modes:
        d = tempfile.mkdtemp(prefix="journal-", dir=OUT)
        try:
            path = os.path.join(d, "raft.journal")
            j = FileJournal(path) if fsync is None else DurableJournal(path, fsync=fsync)
            t0 = time.perf_counter()
            for i in range(n):
                j.add(payload, i + 1, 1)
                if every and (i + 1) % every == 0:
                    j.sync()  # type: ignore[union-attr]
            dt = time.perf_counter() - t0
            j._destroy()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        print(f"| {mode} | {n / dt:,.0f} | {dt / n * 1e6:,.0f} |")
    return 0


def _fs_of(path: str) -> str:
    try:
        out = subprocess.run(
            ["df", "--output=source,fstype", path], capture_output=True, text=True
        ).stdout
        return " ".join(out.splitlines()[-1].split())
    except (OSError, IndexError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m chaos.durability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    fs = sub.add_parser("fsyncs")
    fs.add_argument("--seconds", type=float, default=10.0)
    fs.add_argument("--unsafe", action="store_true", help="nodes run with --unsafe-no-fsync")
    sub.add_parser("journal-cost").add_argument("--n", type=int, default=2000)
    tp = sub.add_parser("throughput")
    tp.add_argument("--seconds", type=float, default=10.0)
    tp.add_argument("--clients", type=int, default=8)
    args = p.parse_args(argv)
    if args.cmd == "fsyncs":
        return fsyncs(args.seconds, args.unsafe)
    if args.cmd == "throughput":
        return throughput(args.seconds, args.clients)
    return journal_cost(args.n)


if __name__ == "__main__":
    sys.exit(main())
