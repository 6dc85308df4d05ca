"""Many connected workers: does the leader's API stay responsive while they heartbeat?

A fresh 3-node cluster (mutual TLS, product defaults plus ``--node-arg`` flags), then
``--workers`` worker streams opened to the leader from ``--procs`` separate processes: each
speaks the worker protocol as the agent does (Hello, then a Heartbeat every 2 s, the default
interval; identity from the worker certificate), on one asyncio loop per process, so the client
side stays light on a box it shares with the cluster (1,000 agent ``Worker`` objects, with
their threads and liveness probes, starved the nodes of CPU here). With them connected, a client calls ``GetJob`` (a read answered by the leader) and
``TriggerJob`` (a write committed through Raft) in a loop for ``--seconds`` and reports p50/p99
of each, the same with no worker connected first (the same run's baseline), how many streams
the leader attached, and the leader's threads, RSS and CPU while the workers were connected.

    python bench/many_workers.py --workers 1000
    python bench/many_workers.py --workers 200 --procs 2 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import latency_summary_ms, process_cpu_s, progress  # noqa: E402

from schedd.testing import LocalCluster  # noqa: E402

# Run in each worker process: N simulated workers, each a Connect stream exactly as the agent
# speaks it (Hello, then a Heartbeat every 2 s), all on one asyncio loop over a few channels, so
# the client side costs little CPU on a box it shares with the cluster. Prints "ready N" once N
# streams were welcomed (or the time ran out), then heartbeats until stdin closes.
CHILD = r"""
import asyncio, os, sys
import grpc
from schedd.pb import api_grpc, api_pb2
from schedd.sdk.credentials import Credentials

n, prefix = int(sys.argv[1]), sys.argv[2]
creds = Credentials.from_env()
target = sys.argv[3]

async def main():
    def read(p):
        with open(p, "rb") as f:
            return f.read()
    ch_creds = grpc.ssl_channel_credentials(
        read(creds.ca), read(creds.key), read(creds.cert)
    )
    channels = [grpc.aio.secure_channel(target, ch_creds) for _ in range(max(1, n // 100))]
    welcomed = 0
    ready = asyncio.Event()
    stop = asyncio.Event()

    async def worker(i):
        nonlocal welcomed
        stub = api_grpc.WorkerServiceStub(channels[i % len(channels)])
        out = asyncio.Queue()
        await out.put(api_pb2.WorkerMessage(hello=api_pb2.Hello(
            worker_id=f"{prefix}-{i}", queues=["many"], concurrency=1)))

        async def requests():
            while True:
                msg = await out.get()
                if msg is None:
                    return
                yield msg

        call = stub.Connect(requests())
        async def beat():
            while not stop.is_set():
                await asyncio.sleep(2.0)
                await out.put(api_pb2.WorkerMessage(heartbeat=api_pb2.Heartbeat()))
        hb = None
        try:
            async for msg in call:
                if msg.WhichOneof("body") == "welcome" and hb is None:
                    welcomed += 1
                    if welcomed == n:
                        ready.set()
                    hb = asyncio.ensure_future(beat())
        except grpc.aio.AioRpcError as e:
            print(f"stream {i}: {e.code().name} {e.details()}", file=sys.stderr, flush=True)
        finally:
            if hb:
                hb.cancel()

    tasks = [asyncio.ensure_future(worker(i)) for i in range(n)]
    try:
        await asyncio.wait_for(ready.wait(), 120)
    except asyncio.TimeoutError:
        pass
    print(f"ready {welcomed}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    for t in tasks:
        t.cancel()
    for c in channels:
        await c.close()

asyncio.run(main())
"""


def _proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("Threads", "VmRSS"):
                    out[key] = int(val.split()[0])
    except OSError:
        pass
    return out


def _latencies(client: Any, seconds: float) -> dict[str, Any]:
    reads: list[float] = []
    writes: list[float] = []
    errors: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            client.get_job("probe")
            reads.append(time.perf_counter() - t0)
        except Exception as e:  # recorded, not fatal: the figure is what the API gives
            errors.append(repr(e)[:200])
        t0 = time.perf_counter()
        try:
            client.trigger_job("probe")
            writes.append(time.perf_counter() - t0)
        except Exception as e:
            errors.append(repr(e)[:200])

    return {
        "get_job": latency_summary_ms(reads),
        "trigger_job": latency_summary_ms(writes),
        "errors": errors[:5],
    }


def run(workers: int, procs: int, seconds: float, node_args: list[str], keep: bool) -> dict:
    root = tempfile.mkdtemp(prefix="schedd-bench-workers-")
    cluster = LocalCluster(root, nodes=3, extra_args=node_args)
    children: list[subprocess.Popen[str]] = []
    result: dict[str, Any] = {"workers": workers, "procs": procs, "node_args": node_args}
    ok = False
    try:
        progress(f"workers: starting 3 nodes in {root}")
        cluster.start()
        leader = cluster.wait_for_leader(timeout=30)
        pid = cluster.procs[leader].pid
        client = cluster.client(timeout=10, retry_for=30)
        client.create_job("probe", cron="0 0 1 1 *", queue="nobody")
        progress(f"workers: baseline, no worker, {seconds:g} s")
        result["baseline"] = _latencies(client, seconds)
        env = dict(os.environ, **cluster.worker_env)
        per = [workers // procs + (1 if i < workers % procs else 0) for i in range(procs)]
        t0 = time.monotonic()
        for i, n in enumerate(per):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(n), f"p{i}", cluster.spec(leader).grpc],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        ready = [c.stdout.readline().strip() if c.stdout else "" for c in children]
        result["connect_s"] = round(time.monotonic() - t0, 1)
        result["children"] = ready
        attached = len(client.list_workers())
        result["attached"] = attached
        progress(f"workers: {attached} attached in {result['connect_s']} s ({ready})")
        cpu0, w0 = process_cpu_s(pid), time.monotonic()
        result["loaded"] = _latencies(client, seconds)
        cpu1, w1 = process_cpu_s(pid), time.monotonic()
        result["leader"] = {
            **_proc_status(pid),
            "cpu_cores": round((cpu1 - cpu0) / (w1 - w0), 2) if cpu0 is not None and cpu1 else None,
        }
        client.close()
        ok = True
    finally:
        for c in children:
            if c.stdin:
                c.stdin.close()
        for c in children:
            try:
                c.wait(timeout=60)
            except subprocess.TimeoutExpired:
                c.kill()
        cluster.stop()
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            progress(f"workers: logs kept in {root}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--procs", type=int, default=2, help="processes the workers run in")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--node-arg", action="append", default=[], help="extra `schedd run` flag")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    r = run(a.workers, a.procs, a.seconds, a.node_arg, a.keep)
    b, lo = r["baseline"], r["loaded"]
    print(
        f"{r['attached']}/{a.workers} workers attached in {r['connect_s']} s; GetJob p50/p99 "
        f"{b['get_job'].get('p50_ms')}/{b['get_job'].get('p99_ms')} ms without workers, "
        f"{lo['get_job'].get('p50_ms')}/{lo['get_job'].get('p99_ms')} ms with them; TriggerJob "
        f"{b['trigger_job'].get('p50_ms')}/{b['trigger_job'].get('p99_ms')} -> "
        f"{lo['trigger_job'].get('p50_ms')}/{lo['trigger_job'].get('p99_ms')} ms; leader "
        f"{r['leader']}; errors {lo['errors']}"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
