"""A daily report job whose write is fenced: however often a firing is delivered, the report of
a day is written by the newest attempt only, and a stale attempt's write is refused.

    python examples/daily_report.py --endpoints 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053
    python examples/daily_report.py --endpoints ... --trigger      # also run one now

It creates the job ``daily-report`` (06:00 Europe/Berlin every day; already there is fine),
then runs a worker for the queue ``reports`` until Ctrl-C or SIGTERM (which drains). Reports go
to the SQLite database ``--db`` (default ``reports.db``): table ``reports(day, body, fence)``.
``--once`` stops the worker after the first report (used by the tests).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import threading
from pathlib import Path

try:
    import schedd  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.errors import AlreadyExists
from schedd.fencing import StaleFence, fenced_sqlite

JOB = "daily-report"
QUEUE = "reports"


def connect(db: str) -> sqlite3.Connection:
    # isolation_level=None: fenced_sqlite opens (and commits) the transaction itself.
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS reports(day TEXT PRIMARY KEY, body TEXT, fence INTEGER)"
    )
    return conn


def build_report(ctx: Context) -> str:
    """Stand-in for the real work (queries, rendering); reports progress as it goes."""
    sections = ["sales", "signups", "errors"]
    for i, name in enumerate(sections, 1):
        if ctx.cancelled.is_set():  # lease lost or worker stopping: no point going on
            raise RuntimeError("cancelled while building the report")
        ctx.heartbeat(f"{i}/{len(sections)} sections: {name}")
    return f"report for {ctx.scheduled_at:%Y-%m-%d} (run {ctx.run_id}, attempt {ctx.attempt})"


def make_worker(endpoints: str, db: str, done: threading.Event | None = None) -> Worker:
    worker = Worker(endpoints, queues=[QUEUE], concurrency=2, drain_timeout=30)

    @worker.handler(JOB)
    def daily_report(ctx: Context) -> None:
        body = build_report(ctx)
        day = f"{ctx.scheduled_at:%Y-%m-%d}"
        conn = connect(db)
        try:
            # The resource is the day: whichever attempt holds the newest fence owns that report.
            with fenced_sqlite(conn, f"report:{day}", ctx.fence):
                conn.execute(
                    "INSERT OR REPLACE INTO reports(day, body, fence) VALUES (?, ?, ?)",
                    (day, body, ctx.fence),
                )
        except StaleFence as e:
            logging.warning("stale attempt, report not written: %s", e)
            raise  # the attempt fails; the newer attempt's report stands
        finally:
            conn.close()
        print(f"wrote {day} with fence {ctx.fence}", flush=True)
        if done is not None:
            done.set()

    return worker


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--endpoints",
        default=os.environ.get("SCHEDD_ENDPOINTS", ""),
        help="host:port,... of the cluster (default: $SCHEDD_ENDPOINTS)",
    )
    ap.add_argument("--db", default="reports.db", help="SQLite file for the reports")
    ap.add_argument("--trigger", action="store_true", help="also run the job once now")
    ap.add_argument("--once", action="store_true", help="stop after the first report")
    args = ap.parse_args()
    if not args.endpoints:
        ap.error("--endpoints (or SCHEDD_ENDPOINTS) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    with Client(args.endpoints) as client:
        try:
            client.create_job(
                JOB,
                cron="0 6 * * *",
                tz="Europe/Berlin",
                queue=QUEUE,
                retry={"max_attempts": 3, "initial_backoff_ms": 30_000},
                run_timeout_ms=15 * 60_000,
            )
            print(f"created job {JOB!r}", flush=True)
        except AlreadyExists:
            pass
        if args.trigger:
            print(f"triggered run {client.trigger_job(JOB).run_id}", flush=True)

    done = threading.Event() if args.once else None
    worker = make_worker(args.endpoints, args.db, done)
    if done is None:
        worker.run()  # until Ctrl-C / SIGTERM
        return 0
    worker.start()
    ok = done.wait(60)
    worker.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
