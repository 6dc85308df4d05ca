"""A live in-process agent for unit tests: the real Stream and Runner with its own pool, real
threads, welcomed by a fake leader that never answers. No network."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from schedd.agent.core import Context, Handler
from schedd.agent.metrics import AgentMetrics
from schedd.agent.runner import Runner
from schedd.agent.shared import Session, Shared
from schedd.agent.stream import Stream
from schedd.pb import api_pb2, types_pb2


def now_ms() -> int:
    return int(time.time() * 1000)


def ctx(run_id: str, at: int, fence: int = 1) -> Context:
    """A bare context starting at ``at`` (epoch ms)."""
    return Context(
        run_id=run_id,
        job="j",
        scheduled_at=datetime.fromtimestamp(at / 1000, UTC),
        scheduled_ms=at,
        attempt=1,
        fence=fence,
        payload="",
        queue="q",
        worker_id="w1",
        start_at_ms=at,
    )


def handler_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("schedd-handler")]


class Agent:
    """A Stream and a Runner with its own pool over one Shared, welcomed by a leader.

    ``handler`` runs every firing (default: one that records its start in :attr:`starts`)."""

    def __init__(
        self,
        concurrency: int = 100,
        metrics: AgentMetrics | None = None,
        handler: Handler | None = None,
    ) -> None:
        log = logging.getLogger(f"test.agent.{id(self)}")
        self.shared = Shared(time.monotonic, log)
        self.runner = Runner(self.shared, worker_id="w1", concurrency=concurrency, metrics=metrics)
        self.runner.start()
        self.stream = Stream(
            self.shared,
            self.runner,
            endpoints=["127.0.0.1:1"],
            worker_id="w1",
            queues=["q"],
            concurrency=concurrency,
            tags={},
        )
        sess = Session("127.0.0.1:1")
        sess.started_at = time.monotonic()
        with self.shared.lock:
            self.shared.book.start_session()
            self.shared.session = sess
        self.stream.on_welcome(
            sess, api_pb2.Welcome(node_id="n1", lease_ttl_ms=60_000, heartbeat_interval_ms=2000)
        )
        self.lock = threading.Lock()
        self.starts: list[tuple[str, float]] = []

        def record(ctx: Context) -> None:
            with self.lock:
                self.starts.append((ctx.run_id, time.time() * 1000))

        self.runner.add_default(handler or record)

    def fire(self, run_id: str, fence: int, start_at_ms: int = 0, job: str = "j") -> None:
        """A firing of ``job`` arrives (``start_at_ms``: committed ahead, to start then)."""
        self.stream.on_firing(
            types_pb2.Firing(
                run_id=run_id,
                job=job,
                scheduled_ms=start_at_ms or now_ms(),
                attempt=1,
                fence=fence,
                queue="q",
                lease_ttl_ms=60_000,
                start_at_ms=start_at_ms,
            )
        )

    def finished(self, n: int, timeout: float = 20.0) -> list:
        """Wait until ``n`` outcomes are in the lease book; returns them."""
        deadline = time.monotonic() + timeout
        with self.shared.changed:
            while len(self.shared.book.pending()) < n and time.monotonic() < deadline:
                self.shared.changed.wait(0.05)
            return list(self.shared.book.pending())
