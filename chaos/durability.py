"""Durability measurements behind ``docs/durability.md``.

    python -m chaos.durability fsyncs [--seconds 10]   # which files a node fsyncs (strace)
    python -m chaos.durability fsyncs --durable          # the same with chaos.durable_node
    python -m chaos.durability journal-cost [--n 2000]   # what an fsynced Raft journal would cost
    python -m chaos.durability throughput [--seconds 10] # creates/s, schedd vs chaos.durable_node

``fsyncs`` starts a real 3-node cluster (``schedd.testing.LocalCluster``), drives job creates for
a few seconds and attaches ``strace -f -y -e trace=fsync,fdatasync,msync,sync_file_range,syncfs``
to the leader and a follower: it counts sync calls per file, so "the Raft journal is never
fsynced" is a measurement, not a reading of pysyncobj's source.

``journal-cost`` appends entries to pysyncobj's own ``FileJournal`` on the disk under
``chaos/out`` three ways: as schedd runs it (no flush), with ``flush()`` (msync) after every
append, and with one ``flush()`` per batch of 10 appends (group commit). The difference is what a
durable mode would add to every committed entry on this disk.
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


def _cluster(root: str, durable: bool):  # type: ignore[no-untyped-def]
    from schedd.testing import LocalCluster

    class Cluster(LocalCluster):
        def command(self, spec):  # type: ignore[no-untyped-def]
            cmd = super().command(spec)
            return [cmd[0], "-m", "chaos.durable_node", *cmd[3:]] if durable else cmd

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    return Cluster(os.path.join(root, "cluster"), nodes=3, env=env)


def fsyncs(seconds: float, durable: bool = False) -> int:
    from schedd.client import Client

    if shutil.which("strace") is None:
        print("strace not found: apt-get install -y strace", file=sys.stderr)
        return 2
    os.makedirs(OUT, exist_ok=True)
    root = tempfile.mkdtemp(prefix="durability-", dir=OUT)
    cluster = _cluster(root, durable)
    traces: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    creates = 0
    try:
        cluster.start()
        leader = cluster.wait_for_leader(timeout=30)
        follower = next(s.node_id for s in cluster.specs if s.node_id != leader)
        for role, node in (("leader", leader), ("follower", follower)):
            out = os.path.join(root, f"strace-{role}.txt")
            traces[role] = subprocess.Popen(["strace", "-f", "-y", "-qq", "-e", f"trace={SYNC_CALLS}", "-o", out,
                                             "-p", str(cluster.procs[node].pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # strace attached to every thread

        def load() -> None:
            nonlocal creates
            with Client(cluster.endpoints, timeout=3) as c:
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
        print(f"{creates} acknowledged creates in {seconds:g}s (each one Raft entry, committed on a majority)")
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
                    elif " msync(" in line:  # no fd: in a schedd node only the journal is mmapped
                        counts["msync (raft.journal mmap)"] += 1
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
    """Acknowledged creates per second and their latency, schedd as it is vs chaos.durable_node."""
    import statistics

    from schedd.client import Client

    os.makedirs(OUT, exist_ok=True)
    print(f"{clients} client threads creating jobs for {seconds:g}s against a 3-node cluster "
          f"(data under {OUT}, {_fs_of(OUT)}):\n")
    print("| journal | creates/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for durable in (False, True):
        root = tempfile.mkdtemp(prefix="throughput-", dir=OUT)
        cluster = _cluster(root, durable)
        lat: list[float] = []
        stop = threading.Event()
        try:
            cluster.start()
            cluster.wait_for_leader(timeout=30)

            def load(k: int, cluster=cluster, stop=stop, lat=lat) -> None:  # type: ignore[no-untyped-def]
                i = 0
                with Client(cluster.endpoints, timeout=5) as c:
                    while not stop.is_set():
                        t0 = time.perf_counter()
                        c.create_job(f"t{k}-{i}", cron="0 0 1 1 *")
                        lat.append(time.perf_counter() - t0)
                        i += 1

            threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(clients)]
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
            print(f"| {'msync per append (chaos.durable_node)' if durable else 'no sync (schedd today)'} | "
                  f"{n / dt:,.0f} | {statistics.median(xs) * 1000:.1f} | {p99 * 1000:.1f} |")
        finally:
            stop.set()
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
    return 0


def journal_cost(n: int) -> int:
    from pysyncobj.journal import FileJournal

    os.makedirs(OUT, exist_ok=True)
    payload = os.urandom(300)  # about one schedd dispatch batch
    print(f"{n} appends of {len(payload)} bytes to pysyncobj's FileJournal under {OUT} "
          f"({_fs_of(OUT)}):\n")
    print("| mode | appends/s | µs per append |")
    print("|---|---|---|")
    for mode, every in (("no flush (schedd today)", 0), ("flush (msync) after every append", 1),
                        ("flush once per 10 appends (group commit)", 10)):
        d = tempfile.mkdtemp(prefix="journal-", dir=OUT)
        try:
            j = FileJournal(os.path.join(d, "raft.journal"))
            t0 = time.perf_counter()
            for i in range(n):
                j.add(payload, i + 1, 1)
                if every and (i + 1) % every == 0:
                    j.flush()
            dt = time.perf_counter() - t0
            j._destroy()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        print(f"| {mode} | {n / dt:,.0f} | {dt / n * 1e6:,.0f} |")
    return 0


def _fs_of(path: str) -> str:
    try:
        out = subprocess.run(["df", "--output=source,fstype", path], capture_output=True, text=True).stdout
        return " ".join(out.splitlines()[-1].split())
    except (OSError, IndexError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.durability", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    fs = sub.add_parser("fsyncs")
    fs.add_argument("--seconds", type=float, default=10.0)
    fs.add_argument("--durable", action="store_true", help="nodes run chaos.durable_node")
    sub.add_parser("journal-cost").add_argument("--n", type=int, default=2000)
    tp = sub.add_parser("throughput")
    tp.add_argument("--seconds", type=float, default=10.0)
    tp.add_argument("--clients", type=int, default=8)
    args = p.parse_args(argv)
    if args.cmd == "fsyncs":
        return fsyncs(args.seconds, args.durable)
    if args.cmd == "throughput":
        return throughput(args.seconds, args.clients)
    return journal_cost(args.n)


if __name__ == "__main__":
    sys.exit(main())
