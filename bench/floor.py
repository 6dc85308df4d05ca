"""The floor baseline: a minimal replicated dispatcher on schedd's own Raft layer.

What the architecture costs at the least, to compare schedd's burst with (``bench/run.py``
part (h)). Three ``python bench/floor.py node`` processes, each a :class:`schedd.raft.RaftNode`
(the same pysyncobj configuration as ``schedd run``: password, durable journal with group
commit, the replication fix, schedd's transport, unbatched appends) whose state machine is a
few lines over LMDB, one put per record:

* a *create* entry writes one record per job (``j`` + id → due time);
* a *work* entry writes one run record per firing (``r`` + id → leased at t) and one per
  completion (the same key → done at t), plus the applied index.

The leader keeps the due ids in memory. Its dispatcher thread commits, per Raft entry, the
completions received since the last entry and as many firings as the worker has free slots
(ids packed 8 bytes each, up to ``MAX_FIRINGS_PER_ENTRY``), then sends the fired ids to one
worker process in one message of a gRPC stream; the worker echoes each message back as the
completions. A worker slot is free again when its completion arrives (as in schedd).

Left out on purpose: validation, schedules, leases and fencing, retries, security beyond Raft's
password (the gRPC stream is plaintext), and snapshots (the log never reaches the compaction
threshold in one run; a compaction stops the node with an error rather than pretend).

Figures (as schedd's part (a)): ``jobs`` one-shot jobs due at one instant; ``firings_per_s`` is
``jobs`` over due → the last completion committed on the leader; ``cpu_us_per_firing`` is the
CPU of each process in that window, per firing (``/proc``)::

    python bench/floor.py bench --jobs 5000
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import deque
from typing import Any

HEADER = struct.Struct("<BQIII")  # kind, now_ms, creates, firings, completions
KIND_CREATE, KIND_WORK = 1, 2
MAX_FIRINGS_PER_ENTRY = 4096
SERVICE = "floor.Floor"


def _ids(raw: bytes | memoryview) -> array[int]:
    a = array("Q")
    a.frombytes(raw)
    return a


def encode(kind: int, now_ms: int, creates: Any = (), fired: Any = (), done: Any = ()) -> bytes:
    c, f, d = array("Q", creates), array("Q", fired), array("Q", done)
    return (
        HEADER.pack(kind, now_ms, len(c), len(f), len(d)) + c.tobytes() + f.tobytes() + d.tobytes()
    )


class FloorStore:
    """The state machine: LMDB, one put per record. Only what ``RaftNode`` calls."""

    def __init__(self, path: str) -> None:
        import lmdb

        self.path = path
        os.makedirs(path, exist_ok=True)
        # schedd's Store opens LMDB the same way: the journal is the durable copy
        self._env = lmdb.open(path, map_size=1 << 30, sync=False, metasync=False)

    def applied_index(self) -> int:
        with self._env.begin() as txn:
            raw = txn.get(b"applied")
        return 0 if raw is None else int.from_bytes(raw, "big")

    def apply_entry(self, data: bytes, index: int) -> int:
        kind, now_ms, nc, nf, nd = HEADER.unpack_from(data)
        if kind not in (KIND_CREATE, KIND_WORK):
            raise RuntimeError(f"unknown entry kind {kind}: stop rather than diverge")
        ids = _ids(memoryview(data)[HEADER.size :])
        stamp = now_ms.to_bytes(8, "big")
        with self._env.begin(write=True) as txn:
            put = txn.put
            for i in ids[:nc]:
                put(b"j" + i.to_bytes(8, "big"), stamp)
            leased, done = b"L" + stamp, b"D" + stamp
            for i in ids[nc : nc + nf]:
                put(b"r" + i.to_bytes(8, "big"), leased)
            for i in ids[nc + nf :]:
                put(b"r" + i.to_bytes(8, "big"), done)
            put(b"applied", index.to_bytes(8, "big"))
        return nc + nf + nd

    def sync(self) -> None:
        self._env.sync(True)

    def write_snapshot(self, filename: str, raft_meta: Any) -> None:
        raise RuntimeError("the floor baseline does not compact its log; keep runs short")

    def read_snapshot(self, filename: str) -> Any:
        raise RuntimeError("the floor baseline has no snapshots")

    def apply_members(self, members: Any, index: int) -> bool:
        raise RuntimeError("the floor baseline has fixed membership")


class Dispatcher:
    """The leader's loop: completions and due firings into one entry, then the stream."""

    def __init__(self, raft: Any, concurrency: int) -> None:
        self.raft = raft
        self.concurrency = concurrency
        self.cv = threading.Condition()
        self.due_ms = 0
        self.pending: deque[int] = deque()
        self.completions = array("Q")
        self.outstanding = 0
        self.worker_attached = False
        self.completed = 0
        self.last_commit = 0.0
        self.to_worker: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.next_id = 1
        self.errors = 0

    def load(self, n: int, due_ms: int) -> None:
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        for k in range(0, n, 20_000):
            self.raft.propose(encode(KIND_CREATE, due_ms, creates=ids[k : k + 20_000]), 30.0)
        with self.cv:
            self.pending.extend(ids)
            self.due_ms = due_ms
            self.cv.notify()

    def completed_ids(self, raw: bytes) -> None:
        ids = _ids(raw)
        with self.cv:
            self.completions.extend(ids)
            self.outstanding -= len(ids)
            self.cv.notify()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self.cv:
                while True:
                    now_ms = int(time.time() * 1000)
                    ready = bool(self.pending) and self.due_ms <= now_ms and self.worker_attached
                    free = self.concurrency - self.outstanding
                    if self.completions or (ready and free > 0) or stop.is_set():
                        break
                    wait = (
                        (self.due_ms - now_ms) / 1000
                        if self.pending and self.due_ms > now_ms
                        else 0.5
                    )
                    self.cv.wait(max(0.0005, wait))
                n = min(free, len(self.pending), MAX_FIRINGS_PER_ENTRY) if ready else 0
                fired = [self.pending.popleft() for _ in range(max(0, n))]
                self.outstanding += len(fired)
                done, self.completions = self.completions, array("Q")
            if not fired and not done:
                continue
            try:
                self.raft.propose(encode(KIND_WORK, now_ms, fired=fired, done=done), 10.0)
            except Exception as exc:  # a benchmark: count it, the parent marks the run invalid
                self.errors += 1
                print(f"propose failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            if done:
                with self.cv:
                    self.completed += len(done)
                    self.last_commit = time.time()
            if fired:
                self.to_worker.put(array("Q", fired).tobytes())


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _node_main(args: argparse.Namespace) -> int:
    import grpc

    from schedd.raft.adapter import RaftNode

    with open(args.password_file) as f:
        password = f.read().strip()
    os.makedirs(args.dir, exist_ok=True)
    store = FloorStore(os.path.join(args.dir, "lmdb"))
    raft = RaftNode(args.raft, args.partner, store, args.dir, password)  # type: ignore[arg-type]
    dispatcher = Dispatcher(raft, args.concurrency)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def status(_req: bytes, _ctx: Any) -> bytes:
        with dispatcher.cv:
            out = {
                "leader": raft.is_leader(),
                "completed": dispatcher.completed,
                "last_commit": dispatcher.last_commit,
                "errors": dispatcher.errors,
                "term": raft.raftCurrentTerm,
                # microsecond CPU accounting: a burst of the floor lasts tens of milliseconds,
                # a few clock ticks of /proc/PID/stat
                "cpu_s": _cpu_s(),
            }
        return json.dumps(out).encode()

    def load(req: bytes, _ctx: Any) -> bytes:
        n, due_ms = struct.unpack("<QQ", req)
        dispatcher.load(n, due_ms)
        return b"ok"

    def work(requests: Any, ctx: Any) -> Any:
        def read() -> None:
            for msg in requests:
                dispatcher.completed_ids(msg)

        threading.Thread(target=read, daemon=True).start()
        with dispatcher.cv:
            dispatcher.worker_attached = True
            dispatcher.cv.notify()
        while ctx.is_active() and not stop.is_set():
            try:
                yield dispatcher.to_worker.get(timeout=0.5)
            except queue.Empty:
                continue

    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Status": grpc.unary_unary_rpc_method_handler(status),
                    "Load": grpc.unary_unary_rpc_method_handler(load),
                    "Work": grpc.stream_stream_rpc_method_handler(work),
                },
            )
        ]
    )
    server.add_insecure_port(args.grpc)
    server.start()
    loop = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    loop.start()
    stop.wait()
    with dispatcher.cv:
        dispatcher.cv.notify()
    server.stop(0.5)
    raft.destroy()
    return 0


def _worker_main(args: argparse.Namespace) -> int:
    import grpc

    channel = grpc.insecure_channel(args.target)
    work = channel.stream_stream(f"/{SERVICE}/Work")
    back: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def replies() -> Any:
        while (msg := back.get()) is not None:
            yield msg

    signal.signal(signal.SIGTERM, lambda *_: back.put(None))
    try:
        for fired in work(replies()):
            back.put(fired)  # the echo: every fired id is reported done at once
    except grpc.RpcError:
        pass
    return 0


def _call(
    channels: dict[str, Any], target: str, method: str, req: bytes, timeout: float = 5.0
) -> bytes:
    """One unary call on the channel to ``target`` kept in ``channels`` (one connection per
    node for the whole run: the leader is polled every 10 ms during the measured window)."""
    import grpc

    ch = channels.get(target)
    if ch is None:
        ch = channels[target] = grpc.insecure_channel(target)
    out: bytes = ch.unary_unary(f"/{SERVICE}/{method}")(req, timeout=timeout)
    return out


def run(
    jobs: int = 5000, concurrency: int = 512, lead_s: float = 3.0, keep: bool = False
) -> dict[str, Any]:
    """Start 3 floor nodes and a worker, burst ``jobs`` firings, stop everything."""
    from common import CpuMeter, load_average, progress, stop_processes

    from schedd.testing import free_ports

    root = tempfile.mkdtemp(prefix="schedd-bench-floor-")
    ports = free_ports(6)
    raft = [f"127.0.0.1:{p}" for p in ports[:3]]
    rpc = [f"127.0.0.1:{p}" for p in ports[3:]]
    pw = os.path.join(root, "password")
    with open(pw, "w") as f:
        f.write(os.urandom(16).hex())
    procs: dict[str, subprocess.Popen[bytes]] = {}
    channels: dict[str, Any] = {}
    result: dict[str, Any] = {"jobs": jobs, "worker_concurrency": concurrency, "tmp_dir": root}
    ok = False

    def spawn(name: str, cmd: list[str]) -> None:
        with open(os.path.join(root, f"{name}.log"), "ab") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    try:
        progress(f"floor: 3 nodes and an echoing worker in {root}, {jobs} firings due at once")
        for i in range(3):
            cmd = [
                "node",
                "--raft",
                raft[i],
                "--grpc",
                rpc[i],
                "--dir",
                os.path.join(root, f"n{i + 1}"),
            ]
            cmd += ["--password-file", pw, "--concurrency", str(concurrency)]
            for other in raft:
                if other != raft[i]:
                    cmd += ["--partner", other]
            spawn(f"n{i + 1}", cmd)
        leader = None
        deadline = time.monotonic() + 30
        while leader is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"floor: no leader within 30 s; logs in {root}")
            for i, target in enumerate(rpc):
                try:
                    if json.loads(_call(channels, target, "Status", b"", 1.0))["leader"]:
                        leader = i
                except Exception:  # not up yet
                    pass
            # polled: the nodes start and elect within a second or two
            time.sleep(0.1)
        spawn("worker", ["worker", "--target", rpc[leader]])
        names = {
            f"n{i + 1}{' (leader)' if i == leader else ''}": procs[f"n{i + 1}"].pid
            for i in range(3)
        }
        names["worker"] = procs["worker"].pid
        first = json.loads(_call(channels, rpc[leader], "Status", b""))
        due_ms = int((time.time() + lead_s) * 1000)
        t0 = time.monotonic()
        _call(channels, rpc[leader], "Load", struct.pack("<QQ", jobs, due_ms), 60.0)
        result["create_s"] = round(time.monotonic() - t0, 3)
        due = due_ms / 1000
        result["valid"] = time.time() < due
        meter = CpuMeter(names)
        # sleeps until just before the due instant, where the CPU window starts
        time.sleep(max(0.0, due - time.time() - 0.05))
        cpu0 = {i: json.loads(_call(channels, rpc[i], "Status", b""))["cpu_s"] for i in range(3)}
        meter.start()
        deadline = time.monotonic() + 60 + jobs / 100
        st = first
        while time.monotonic() < deadline:
            # polled every 10 ms; the node stamps the last commit itself
            time.sleep(0.01)
            st = json.loads(_call(channels, rpc[leader], "Status", b""))
            if st["completed"] >= jobs:
                break
        meter.stop()
        cpu1 = {i: json.loads(_call(channels, rpc[i], "Status", b""))["cpu_s"] for i in range(3)}
        for i in range(3):  # the nodes' own accounting replaces /proc's clock ticks
            meter.cpu_s[f"n{i + 1}{' (leader)' if i == leader else ''}"] = round(
                cpu1[i] - cpu0[i], 6
            )
        result["cpu_s"] = meter.cpu_s
        result["cpu_window_s"] = meter.wall_s
        result["completed"] = st["completed"]
        result["load_average"] = load_average()
        if st["completed"] >= jobs:
            drain = st["last_commit"] - due
            result["due_to_last_completion_s"] = round(drain, 3)
            result["firings_per_s"] = round(jobs / drain, 1) if drain > 0 else None
        nodes = [v for k, v in meter.cpu_s.items() if k != "worker"]
        leader_cpu = [v for k, v in meter.cpu_s.items() if k.endswith("(leader)")]

        def per(values: list[float | None]) -> float | None:
            if not values or any(v is None for v in values):
                return None
            return round(sum(v for v in values if v is not None) / jobs * 1e6, 1)

        result["cpu_us_per_firing"] = {
            "nodes": per(nodes),
            "leader": per(leader_cpu),
            "followers": per(
                [
                    v
                    for k, v in meter.cpu_s.items()
                    if k not in ("worker",) and not k.endswith("(leader)")
                ]
            ),
            "worker": per([meter.cpu_s.get("worker")]),
            "all": per(list(meter.cpu_s.values())),
        }
        result["elections"] = st["term"] != first["term"]
        result["errors"] = st["errors"]
        ok = result["valid"] = bool(
            result["valid"]
            and st["completed"] >= jobs
            and not st["errors"]
            and not result["elections"]
        )
        progress(
            f"floor: {result.get('firings_per_s')} firings/s, "
            f"{result['cpu_us_per_firing']['all']} µs CPU per firing (all processes)"
        )
    finally:
        for ch in channels.values():
            ch.close()
        stop_processes(procs.values())
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
            result["tmp_dir"] = None
        else:
            progress(f"floor: logs kept in {root}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    node = sub.add_parser("node", help="one node (started by run())")
    node.add_argument("--raft", required=True)
    node.add_argument("--grpc", required=True)
    node.add_argument("--partner", action="append", default=[])
    node.add_argument("--dir", required=True)
    node.add_argument("--password-file", required=True)
    node.add_argument("--concurrency", type=int, default=512)
    worker = sub.add_parser("worker", help="the echoing worker (started by run())")
    worker.add_argument("--target", required=True)
    bench = sub.add_parser("bench", help="run the baseline once and print its JSON")
    bench.add_argument("--jobs", type=int, default=5000)
    bench.add_argument("--concurrency", type=int, default=512)
    args = parser.parse_args()
    if args.cmd == "node":
        return _node_main(args)
    if args.cmd == "worker":
        return _worker_main(args)
    print(json.dumps(run(args.jobs, args.concurrency), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
