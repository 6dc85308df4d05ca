"""What the agent's threads share: the lease book, the running handlers, the current stream.

:class:`schedd.agent.worker.Worker` builds one :class:`Shared` and hands it to the stream
(:mod:`schedd.agent.stream`: the stream thread, gRPC's request consumer, the ticker) and to the
handler runner (:mod:`schedd.agent.runner`: the pool threads). Locking: one lock,
``Shared.lock`` (``Shared.changed`` is a condition on it), guards ``book``, ``active``,
``session`` and ``hb_ms``; no I/O and no user code runs under it, so no thread ever waits on
the network or on a handler while holding it. The events need no lock.

Private module: nothing here is part of the public API.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schedd.agent.core import Context, LeaseBook, LeaseKey

#: Heartbeat interval assumed until the first Welcome says otherwise.
DEFAULT_HB_MS = 2000


class Intent(enum.Enum):
    """What a session's request generator is asked to write next. Queued as intents, not as
    messages, so every message carries the state of the moment it is written."""

    HEARTBEAT = "heartbeat"  # renew every live lease (with each handler's progress)
    FLUSH = "flush"  # send the completions not yet written on this stream
    RELEASE = "release"  # give leases back; an empty Release announces a drain
    CLOSE = "close"  # half-close the stream


class Session:
    """One Connect stream. The outgoing queue holds :class:`Intent` values; the request generator
    (:meth:`schedd.agent.stream.Stream.requests`) turns them into messages when gRPC asks for the
    next one. The fields are written by the stream thread, the ticker and the probe callback;
    ``kick`` and ``close`` may be called from any thread."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.q: queue.SimpleQueue[Intent] = queue.SimpleQueue()
        self.welcomed = False
        self.closed = False
        self.hb_interval_s = DEFAULT_HB_MS / 1000.0
        self.next_hb = 0.0
        self.call: Any = None
        self.probe: Callable[[], Any] | None = None  # starts a liveness probe; None = unsupported
        self.probe_inflight = False
        self.next_probe = 0.0
        self.started_at = 0.0
        self.node_id = ""
        self.hint = ""  # a leader address learnt outside the stream (probe)
        self.unresponsive = False  # the probe found the node frozen or cut off
        self.drain_announced = False  # a Release (maybe empty) was written on this stream

    def abort(self) -> None:
        """Tear the stream down from outside the stream thread (dead peer, no Welcome)."""
        call = self.call
        if call is not None:
            call.cancel()

    def kick(self, intent: Intent) -> None:
        """Ask the request generator to write ``intent`` (ignored once closed)."""
        if not self.closed:
            self.q.put(intent)

    def close(self) -> None:
        """End the request stream (a half-close: the server then ends the call)."""
        if not self.closed:
            self.closed = True
            self.q.put(Intent.CLOSE)


@dataclass
class Active:
    """A handler that was started and has not returned."""

    ctx: Context
    reason: list[str] = field(default_factory=list)  # why ctx.cancelled was set (first wins)


class Shared:
    """The agent's shared state; see the module docstring for the locking rule.

    ``draining``: no new firings are started. ``closing``: the stream loop and the ticker must
    end. ``force``: a second signal, cancel everything now. ``wake``: wakes the ticker early
    (something changed that it should act on)."""

    def __init__(self, clock: Callable[[], float], log: logging.Logger) -> None:
        self.clock = clock
        self.log = log
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when handlers end, acks come
        self.book = LeaseBook(clock)
        self.active: dict[LeaseKey, Active] = {}
        self.session: Session | None = None
        self.hb_ms = DEFAULT_HB_MS
        self.draining = threading.Event()
        self.closing = threading.Event()
        self.force = threading.Event()
        self.wake = threading.Event()

    def kick_locked(self, intent: Intent) -> None:
        """Queue ``intent`` on the current stream if it was welcomed (before Welcome nothing but
        Hello may be written). The caller holds ``lock``."""
        sess = self.session
        if sess is not None and sess.welcomed:
            sess.kick(intent)
