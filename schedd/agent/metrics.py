"""The agent's Prometheus metrics, on a registry you pass in (``Worker(metrics_registry=...)``).

``prometheus_client`` is imported only by this module, and this module only when a registry is
given: an SDK-only install without ``prometheus-client`` runs workers as before. To serve the
figures, mount the registry where your service already serves metrics, or start an endpoint::

    from prometheus_client import CollectorRegistry, start_http_server
    from schedd.agent import Worker

    registry = CollectorRegistry()
    worker = Worker("127.0.0.1:50051", metrics_registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    server.shutdown()

Labels: ``handler`` is the name the handler was registered under (a job name, or ``*`` for
the default handler; ``none`` when no handler matched), ``outcome`` is ``succeeded`` or
``failed``. No payload, run id or error text becomes a label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: handlers: from milliseconds to an hour
DURATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: scheduled time to handler start (first attempts)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class AgentMetrics:
    """The instruments of one :class:`~schedd.agent.Worker`, registered on ``registry``
    (one Worker per registry: the names would collide)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = Histogram(
            "schedd_agent_handler_duration_seconds",
            "Time a handler ran, by handler name and outcome.",
            ["handler", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "schedd_agent_handlers_in_flight",
            "Handlers running now.",
            registry=registry,
        )
        self.waiting = Gauge(
            "schedd_agent_firings_waiting",
            "Firings the leader committed ahead of their start instant (--fire-ahead) that "
            "wait for it in the waiting room: leased, no handler running yet.",
            registry=registry,
        )
        self.lease_losses = Counter(
            "schedd_agent_lease_losses_total",
            "Leases the leader or this worker declared lost (expired without a confirmed "
            "heartbeat, revoked, run timeout); a handler holding one is cancelled.",
            registry=registry,
        )
        self.start_lag = Histogram(
            "schedd_agent_handler_start_lag_seconds",
            "First attempts: from the slot's scheduled time to the handler's start, by this "
            "machine's wall clock (includes the leader's jitter and any catch-up delay).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._bound: dict[tuple[str, str], Histogram] = {}
        self._lock = threading.Lock()

    def started(self, scheduled_ms: int, attempt: int) -> None:
        """A handler starts now for a firing scheduled at ``scheduled_ms``."""
        self.in_flight.inc()
        if attempt == 1 and scheduled_ms > 0:
            self.start_lag.observe(max(0.0, time.time() - scheduled_ms / 1000))

    def finished(self, handler: str, outcome: str, seconds: float) -> None:
        """The handler started by the matching :meth:`started` ended."""
        self.in_flight.dec()
        key = (handler, outcome)
        child = self._bound.get(key)
        if child is None:
            with self._lock:
                child = self._bound.setdefault(key, self._duration.labels(handler, outcome))
        child.observe(seconds)

    def watch_waiting(self, count: Callable[[], int]) -> None:
        """Read the waiting firings from ``count`` at each scrape."""
        self.waiting.set_function(count)

    def lease_lost(self, n: int = 1) -> None:
        self.lease_losses.inc(n)
