"""An agent in process for the agent benchmarks: a real Stream and Runner over one Shared,
attached to a session a leader has welcomed, with no network (the benchmark feeds the stream
the messages a leader would send, built by :func:`firings_message`). Used by ``agent_hotpath.py``
and ``agent_ahead.py``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from schedd.agent.runner import Runner
from schedd.agent.shared import Session, Shared
from schedd.agent.stream import Stream
from schedd.pb import api_pb2, types_pb2


def attached_agent(
    concurrency: int,
    logger: logging.Logger,
    handler: Callable[[Any], Any],
    lease_ttl_ms: int = 10_000,
) -> tuple[Shared, Runner, Stream, Session]:
    """A started Runner of ``concurrency`` threads running ``handler`` for every job, and its
    Stream, welcomed on a current session (heartbeats every 2 s, leases of ``lease_ttl_ms``)."""
    shared = Shared(time.monotonic, logger)
    runner = Runner(shared, worker_id="w1", concurrency=concurrency)
    runner.add_default(handler)
    runner.start()
    stream = Stream(
        shared,
        runner,
        endpoints=["127.0.0.1:1"],
        worker_id="w1",
        queues=["q"],
        concurrency=concurrency,
        tags={},
    )
    sess = Session("127.0.0.1:1")
    sess.started_at = time.monotonic()
    with shared.lock:
        shared.book.start_session()
        shared.session = sess
    stream.on_welcome(
        sess,
        api_pb2.Welcome(node_id="n1", lease_ttl_ms=lease_ttl_ms, heartbeat_interval_ms=2000),
    )
    return shared, runner, stream, sess


def firings_message(
    jobs: range,
    scheduled_ms: int,
    first_fence: int,
    *,
    start_at_ms: int = 0,
    lease_ttl_ms: int = 10_000,
) -> api_pb2.ServerMessage:
    """A leader's ``Firings`` message: a first attempt of job ``job-{i}`` for each ``i`` in
    ``jobs``, scheduled at ``scheduled_ms`` (to start at ``start_at_ms``: 0, once received),
    with fences from ``first_fence`` on."""
    msg = api_pb2.ServerMessage()
    add = msg.firings.firings.append
    for fence, i in enumerate(jobs, first_fence):
        add(
            types_pb2.Firing(
                run_id=f"job-{i}@{scheduled_ms}",
                job=f"job-{i}",
                scheduled_ms=scheduled_ms,
                attempt=1,
                fence=fence,
                queue="q",
                lease_ttl_ms=lease_ttl_ms,
                start_at_ms=start_at_ms,
            )
        )
    return msg
