"""A web service that embeds the worker agent: the HTTP server is the main thing, and firings
of the job ``cache-refresh`` run in background threads of the same process.

    python examples/web_service.py --endpoints 127.0.0.1:50051,... --port 8080
    curl localhost:8080/            # how many refreshes ran, the last one's time and fence
    curl localhost:8080/healthz     # 200 while the worker is running, 503 once it stopped

It creates the job ``cache-refresh`` (every 30 s; already there is fine). SIGTERM or Ctrl-C
drains the worker (running refreshes finish, up to 10 s, then their leases are released) and
then stops the HTTP server. ``--port 0`` picks a free port (printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    import schedd  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schedd.agent import Context, Worker
from schedd.client import Client
from schedd.errors import AlreadyExists

JOB = "cache-refresh"
QUEUE = "web"


class AppState:
    """What the handler updates and the HTTP side reads (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refreshes = 0
        self.last: dict[str, Any] = {}

    def record(self, ctx: Context) -> None:
        with self.lock:
            self.refreshes += 1
            self.last = {
                "run_id": ctx.run_id,
                "fence": ctx.fence,
                "attempt": ctx.attempt,
                "scheduled_at": ctx.scheduled_at.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
            }

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"refreshes": self.refreshes, "last": self.last}


def make_app(state: AppState, worker: Worker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                code, body = (
                    (503, {"worker": "stopped"}) if worker.stopped else (200, {"worker": "running"})
                )
            elif self.path == "/":
                code, body = 200, {"worker_id": worker.worker_id, **state.snapshot()}
            else:
                code, body = 404, {"error": f"no page {self.path}"}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet access log
            logging.getLogger("web").debug(format, *args)

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--endpoints",
        default=os.environ.get("SCHEDD_ENDPOINTS", ""),
        help="host:port,... of the cluster (default: $SCHEDD_ENDPOINTS)",
    )
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--every-ms", type=int, default=30_000, help="refresh interval of the job")
    args = ap.parse_args()
    if not args.endpoints:
        ap.error("--endpoints (or SCHEDD_ENDPOINTS) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    with Client(args.endpoints) as client:
        try:
            client.create_job(JOB, every_ms=args.every_ms, queue=QUEUE, overlap="forbid")
        except AlreadyExists:
            pass

    state = AppState()
    worker = Worker(args.endpoints, queues=[QUEUE], concurrency=1, tags={"service": "web"})

    @worker.handler(JOB)
    def refresh(ctx: Context) -> None:
        ctx.heartbeat("refreshing")
        state.record(ctx)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_app(state, worker))
    worker.start()  # background threads; the HTTP server owns the main thread

    def shutdown(signum: int, frame: Any) -> None:
        # Not in the signal handler itself: stop() blocks while the worker drains.
        def run() -> None:
            worker.stop()  # drain first: no new firings, running ones finish
            server.shutdown()  # then stop serving

        threading.Thread(target=run, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print(
        f"serving on http://127.0.0.1:{server.server_address[1]}/ (worker {worker.worker_id})",
        flush=True,
    )
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
