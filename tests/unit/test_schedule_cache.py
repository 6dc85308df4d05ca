"""The leader's cache of compiled schedules (Dispatcher._schedule), without Raft or LMDB."""

from __future__ import annotations

from typing import Any, cast

from schedd.clock import FakeClock
from schedd.pb import types_pb2
from schedd.server.dispatcher import SCHEDULE_CACHE, Dispatcher
from schedd.server.workers import Registry

T0 = 1_700_000_000_000


def test_the_compiled_schedule_cache_is_bounded() -> None:
    """Every one-shot job has a schedule of its own, and a leader fires millions of them over
    its life: it kept every compiled one (about 300 bytes each). Now it keeps the most recently
    used ones. Fails on the unbounded dict."""
    d = Dispatcher(
        node_id="n1",
        store=cast(Any, None),
        raft=cast(Any, None),
        clock=FakeClock(),
        registry=Registry(),
        leader_hint=lambda: "",
    )
    shared = types_pb2.Schedule(
        kind=types_pb2.SCHEDULE_KIND_CRON, cron="*/5 * * * *", timezone="UTC"
    )
    first = d._schedule(shared)
    for i in range(SCHEDULE_CACHE + 2000):
        d._schedule(types_pb2.Schedule(kind=types_pb2.SCHEDULE_KIND_AT, at_ms=T0 + i))
        if i % 1000 == 0:
            assert d._schedule(shared) is first  # in use: kept, compiled once
    assert len(d._schedules) == SCHEDULE_CACHE
