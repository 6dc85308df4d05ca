"""Baseline (c): raw pysyncobj, 3 processes on 127.0.0.1, with the settings schedd uses.

Same ``SyncObjConf`` as ``schedd.raft.RaftNode`` (password, ``appendEntriesUseBatch=False``,
``journalFile`` + ``fullDumpFile``, the same timers from ``RaftSettings``), default serializer,
and one trivial ``@replicated`` method that counts calls (each call carries a 200-byte payload,
the record size used in ``research/perf-limits.md``).

``run()`` (called by ``bench/run.py``) starts 3 ``python bench/raw_raft.py node ...`` processes.
Each node waits for a leader; the node that *is* the leader runs the load (so calls are not
forwarded) and writes its figures to a JSON file, then every node exits when the parent stops
it. Figures, measured on the leader:

* commits/s: a closed loop keeps ``inflight`` asynchronous calls outstanding (each callback
  issues the next call) for ``duration`` seconds after a short warm-up; a commit is a callback
  with ``FAIL_REASON.SUCCESS`` (i.e. committed on a majority and applied on the leader);
* one synchronous call: ``sync_calls`` sequential ``sync=True`` calls, latency p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

PAYLOAD = b"x" * 200


def _conf(journal_dir: str, password: str) -> Any:
    """Exactly schedd's settings, minus its LMDB snapshot hooks (the counter has no state)."""
    from schedd.raft.settings import RaftSettings, sync_obj_conf

    return sync_obj_conf(RaftSettings(), password, journal_dir)


def _node_main(args: argparse.Namespace) -> int:
    from pysyncobj import FAIL_REASON, SyncObj, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self, self_addr: str, partners: list[str], conf: Any) -> None:
            self.value = 0
            super().__init__(self_addr, partners, conf)

        @replicated
        def incr(self, payload: bytes) -> int:
            self.value += 1
            return self.value

    with open(args.password_file) as f:
        password = f.read().strip()
    os.makedirs(args.dir, exist_ok=True)
    node = Counter(args.self_addr, args.partner, _conf(args.dir, password))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    deadline = time.monotonic() + 30
    while node._getLeader() is None and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.02)
    if node._getLeader() is None:
        print("no leader within 30 s", file=sys.stderr)
        node.destroy()
        return 1
    if not node._isLeader():
        stop.wait(args.duration + 60)
        node.destroy()
        return 0

    # --- the leader runs the load ---
    lock = threading.Lock()
    ok = 0
    errors: dict[str, int] = {}
    running = True

    def callback(_result: Any, err: Any) -> None:
        nonlocal ok
        with lock:
            if err == FAIL_REASON.SUCCESS:
                ok += 1
            else:
                errors[str(err)] = errors.get(str(err), 0) + 1
        if running:
            node.incr(PAYLOAD, callback=callback)

    term0 = node.raftCurrentTerm
    for _ in range(args.inflight):
        node.incr(PAYLOAD, callback=callback)
    time.sleep(args.warmup)
    with lock:
        ok0 = ok
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    time.sleep(args.duration)
    with lock:
        ok1 = ok
    elapsed = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    running = False
    # let the in-flight calls drain before the latency part
    drain_deadline = time.monotonic() + 10
    while time.monotonic() < drain_deadline:
        with lock:
            if ok + sum(errors.values()) >= ok1 + args.inflight - 1:
                break
        time.sleep(0.02)
    time.sleep(0.2)

    lat: list[float] = []
    sync_errors = 0
    for _ in range(args.sync_calls):
        t = time.perf_counter()
        try:
            node.incr(PAYLOAD, sync=True, timeout=5.0)
        except Exception:
            sync_errors += 1
            continue
        lat.append(time.perf_counter() - t)
    lat.sort()

    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    out = {
        "leader": args.self_addr,
        "inflight": args.inflight,
        "duration_s": round(elapsed, 3),
        "commits": ok1 - ok0,
        "commits_per_s": round((ok1 - ok0) / elapsed, 1),
        "errors": errors,
        "leader_cpu_cores": round(cpu_s / elapsed, 3),
        "term_changed": node.raftCurrentTerm != term0 or not node._isLeader(),
        "sync_calls": len(lat),
        "sync_errors": sync_errors,
        "sync_p50_ms": round(lat[len(lat) // 2] * 1000, 3) if lat else None,
        "sync_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3)
        if lat
        else None,
        "payload_bytes": len(PAYLOAD),
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, args.out)
    stop.wait(60)
    node.destroy()
    return 0


def run(
    duration_s: float = 5.0,
    inflight: int = 2000,
    sync_calls: int = 300,
    warmup_s: float = 1.0,
    keep: bool = False,
) -> dict[str, Any]:
    """Start 3 raw pysyncobj processes, wait for the leader's figures, stop all three."""
    from common import load_average, progress, stop_processes

    from schedd.testing import free_ports

    root = tempfile.mkdtemp(prefix="schedd-bench-raw-raft-")
    ports = free_ports(3)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    pw = os.path.join(root, "password")
    with open(pw, "w") as f:
        f.write(os.urandom(16).hex())
    out = os.path.join(root, "result.json")
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"inflight": inflight, "tmp_dir": root}
    ok = False
    try:
        progress(
            f"raw pysyncobj: 3 processes, {inflight} calls in flight for {duration_s:g} s, "
            f"then {sync_calls} sync calls"
        )
        for i, addr in enumerate(addrs):
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "node",
                "--self",
                addr,
                "--dir",
                os.path.join(root, f"n{i + 1}"),
                "--password-file",
                pw,
                "--out",
                out,
                "--duration",
                str(duration_s),
                "--warmup",
                str(warmup_s),
                "--inflight",
                str(inflight),
                "--sync-calls",
                str(sync_calls),
            ]
            for other in addrs:
                if other != addr:
                    cmd += ["--partner", other]
            log = open(os.path.join(root, f"n{i + 1}.log"), "ab")
            procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            log.close()
        deadline = time.monotonic() + 30 + warmup_s + duration_s + 30
        while not os.path.exists(out):
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw pysyncobj gave no result; logs in {root}/n*.log")
            if all(p.poll() is not None for p in procs):
                raise RuntimeError(
                    f"raw pysyncobj nodes exited without a result; logs in {root}/n*.log"
                )
            time.sleep(0.1)
        with open(out) as f:
            result.update(json.load(f))
        result["load_average"] = load_average()
        ok = not result.get("term_changed") and not result.get("errors")
        result["valid"] = ok
    finally:
        stop_processes(procs)
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
            result["tmp_dir"] = None
        else:
            progress(f"raw pysyncobj: logs kept in {root}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    node = sub.add_parser("node", help="run one node (started by run())")
    node.add_argument("--self", dest="self_addr", required=True)
    node.add_argument("--partner", action="append", default=[])
    node.add_argument("--dir", required=True)
    node.add_argument("--password-file", required=True)
    node.add_argument("--out", required=True)
    node.add_argument("--duration", type=float, default=5.0)
    node.add_argument("--warmup", type=float, default=1.0)
    node.add_argument("--inflight", type=int, default=2000)
    node.add_argument("--sync-calls", type=int, default=300)
    bench = sub.add_parser("bench", help="run the whole baseline and print its JSON")
    bench.add_argument("--duration", type=float, default=5.0)
    bench.add_argument("--inflight", type=int, default=2000)
    args = parser.parse_args()
    if args.cmd == "node":
        return _node_main(args)
    print(json.dumps(run(args.duration, args.inflight), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
