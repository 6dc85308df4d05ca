"""A paused worker's late write is rejected by the fence.

    python examples/paused_worker.py --endpoints 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053

What it does, with real processes:

1. creates a job on a fresh queue and triggers one run;
2. starts worker **A** (a subprocess running this file with ``--role worker``). A receives the
   firing, and its handler is about to write the result into a SQLite database (``--db``);
3. freezes A with SIGSTOP right then, as a long GC pause, a stopped VM or a laptop lid would;
4. A sends no heartbeats: its lease expires at the leader, which hands the run to worker **B**
   with a newer fence; B writes its result (fenced) and completes the run;
5. resumes A with SIGCONT. A's handler goes on with its write, with its old fence:
   ``fenced_sqlite`` finds the newer fence already recorded and raises ``StaleFence``; nothing
   is written. (The leader also rejects A's completion: ABORTED, stale fence.)

Exit code 0 when the database holds exactly B's write and A's write was rejected, 1 otherwise.
It takes about one lease TTL plus a few seconds (the lease TTL is the cluster's, 10 s by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

try:
    import schedd  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.fencing import StaleFence, fenced_sqlite
from schedd.pb import types_pb2

#: Longest time A's handler "works" before its write (it is released earlier by the demo).
WORK_S = 120.0


# ---- the worker side (a subprocess) ----------------------------------------------------------


def event(path: str, **fields: object) -> None:
    """Append one JSON line to the shared events file (the demo's own record of what happened)."""
    with open(path, "a") as f:
        f.write(json.dumps(fields) + "\n")


def run_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    worker = Worker(
        args.endpoints, queues=[args.queue], worker_id=f"worker-{args.name}-{os.getpid()}"
    )

    @worker.handler(args.job)
    def handle(ctx: Context) -> None:
        event(
            args.events,
            worker=args.name,
            pid=os.getpid(),
            what="got_firing",
            fence=ctx.fence,
            attempt=ctx.attempt,
            run_id=ctx.run_id,
        )
        if args.name == "A":
            # "Work" until the demo says the pause is over (a file appears), so the pause always
            # lands before the write however slow the machine is. Like a real handler in the
            # middle of its work, it does not look at ctx.cancelled again before writing.
            deadline = time.monotonic() + WORK_S
            while not os.path.exists(args.events + ".resumed") and time.monotonic() < deadline:
                time.sleep(0.02)
        conn = sqlite3.connect(args.db, isolation_level=None, timeout=30)
        try:
            with fenced_sqlite(conn, f"result:{ctx.run_id}", ctx.fence):
                conn.execute(
                    "INSERT INTO results(run_id, fence, worker) VALUES (?, ?, ?)",
                    (ctx.run_id, ctx.fence, args.name),
                )
        except StaleFence as e:
            event(
                args.events, worker=args.name, what="write_rejected", fence=ctx.fence, error=str(e)
            )
            raise
        finally:
            conn.close()
        event(args.events, worker=args.name, what="wrote", fence=ctx.fence)

    worker.run()  # until SIGTERM from the demo
    return 0


# ---- the demo (orchestrator) -------------------------------------------------------------------


def read_events(path: str) -> list[dict[str, object]]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_event(path: str, timeout: float, waiting_for: str, **match: object) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in read_events(path):
            if all(e.get(k) == v for k, v in match.items()):
                return e
        time.sleep(0.01)
    raise SystemExit(f"FAILED: timed out after {timeout:g}s waiting for {waiting_for}")


def spawn(
    args: argparse.Namespace, name: str, queue: str, job: str, log_dir: str
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--role",
        "worker",
        "--name",
        name,
        "--endpoints",
        args.endpoints,
        "--queue",
        queue,
        "--job",
        job,
        "--db",
        args.db,
        "--events",
        args.events,
    ]
    log = open(os.path.join(log_dir, f"worker-{name}.log"), "ab")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def run_demo(args: argparse.Namespace) -> int:
    work = tempfile.mkdtemp(prefix="schedd-paused-worker-")
    args.db = args.db or os.path.join(work, "results.db")
    args.events = os.path.join(work, "events.jsonl")
    conn = sqlite3.connect(args.db, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS results(run_id TEXT, fence INTEGER, worker TEXT)")
    conn.close()
    tag = uuid.uuid4().hex[:8]
    queue, job = f"fence-demo-{tag}", f"fence-demo-{tag}"
    print(f"working directory: {work} (worker logs, events, database)")

    procs: list[subprocess.Popen[bytes]] = []
    with Client(args.endpoints, retry_for=30) as client:
        # Due once, a week from now: it never fires by itself during the demo (an hourly job
        # did, when the demo ran across the top of an hour); we trigger one run.
        client.create_job(
            job,
            at_ms=int(time.time() * 1000) + 7 * 24 * 3600_000,
            queue=queue,
            retry={"max_attempts": 5, "initial_backoff_ms": 0},
        )
        try:
            a = spawn(args, "A", queue, job, work)
            procs.append(a)
            run = client.trigger_job(job)
            print(f"triggered run {run.run_id}")
            got_a = wait_event(
                args.events, 30, "worker A to get the firing", worker="A", what="got_firing"
            )
            os.kill(a.pid, signal.SIGSTOP)
            print(f"worker A (pid {a.pid}) got the firing with fence {got_a['fence']}: SIGSTOP")

            b = spawn(args, "B", queue, job, work)
            procs.append(b)
            print("worker B started; waiting for A's lease to expire and B to get the run...")
            got_b = wait_event(
                args.events,
                120,
                "worker B to get the re-dispatched run",
                worker="B",
                what="got_firing",
            )
            wait_event(args.events, 30, "worker B's write", worker="B", what="wrote")
            print(
                f"worker B got it with fence {got_b['fence']} (attempt {got_b['attempt']}) and wrote its result"
            )
            done = client.get_run(run.run_id)
            deadline = time.monotonic() + 30
            while done.state != types_pb2.RUN_STATE_SUCCEEDED and time.monotonic() < deadline:
                time.sleep(0.05)
                done = client.get_run(run.run_id)

            Path(args.events + ".resumed").touch()  # A's work is done once it runs again
            os.kill(a.pid, signal.SIGCONT)
            print("SIGCONT to worker A: it goes on with its write, holding the old fence...")
            rejected = wait_event(
                args.events,
                30,
                "worker A's late write to be rejected",
                worker="A",
                what="write_rejected",
            )
            print(f"worker A's write was REJECTED: {rejected['error']}")
        finally:
            for p in procs:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
            try:
                client.delete_job(job)
            except Exception:  # best effort: the demo's job is not needed any more
                pass

    conn = sqlite3.connect(args.db)
    rows = conn.execute("SELECT run_id, fence, worker FROM results ORDER BY rowid").fetchall()
    conn.close()
    print(f"rows in the database: {rows}")
    ok = (
        rows == [(run.run_id, got_b["fence"], "B")]
        and int(str(got_b["fence"])) > int(str(got_a["fence"]))
        and done.state == types_pb2.RUN_STATE_SUCCEEDED
        and done.fence == got_b["fence"]
    )
    print("OK: only the newer attempt's effect was applied" if ok else "FAILED: unexpected result")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--endpoints",
        default=os.environ.get("SCHEDD_ENDPOINTS", ""),
        help="host:port,... of the cluster (default: $SCHEDD_ENDPOINTS)",
    )
    ap.add_argument("--db", default="", help="SQLite file for the results (default: a temp dir)")
    ap.add_argument("--role", choices=["demo", "worker"], default="demo", help=argparse.SUPPRESS)
    ap.add_argument("--name", default="A", help=argparse.SUPPRESS)
    ap.add_argument("--queue", default="", help=argparse.SUPPRESS)
    ap.add_argument("--job", default="", help=argparse.SUPPRESS)
    ap.add_argument("--events", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.endpoints:
        ap.error("--endpoints (or SCHEDD_ENDPOINTS) is required")
    return run_worker(args) if args.role == "worker" else run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
