"""Worker sessions: one per attached WorkerService.Connect stream (leader only).

A session is a mailbox: the dispatcher puts ServerMessages on it, the stream's response
generator takes them off. Closing a session ends its stream, optionally with a leader hint.

A worker id belongs to the principal (``schedd.server.identity``) that attached it: a new stream
with the same worker id and the same principal replaces the old one (a reconnect); another
principal is refused (ALREADY_EXISTS). Leases are held by a worker id, and only the *current*
session of that id may heartbeat, release or complete them (``Registry.current``).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

from schedd.errors import AlreadyExists, ResourceExhausted
from schedd.pb import api_pb2

#: Messages queued for one worker stream before it is closed as not reading.
MAX_OUTBOUND = 10_000


@dataclass
class WorkerSession:
    worker_id: str
    queues: frozenset[str]
    concurrency: int
    outbound: queue.SimpleQueue[api_pb2.ServerMessage | None] = field(
        default_factory=queue.SimpleQueue
    )
    closed: threading.Event = field(default_factory=threading.Event)
    close_reason: str = ""
    leader_hint: str | None = None  # set when closed because this node stopped leading
    last_seen: float = 0.0  # monotonic time of the last message from the worker
    tags: dict[str, str] = field(default_factory=dict)  # Hello.tags: what this worker offers
    # The worker sent a Release: it is stopping and takes no new firings on this stream
    # (Registry.all leaves it out, so no grant goes to it); heartbeats and completions still flow.
    draining: bool = False
    principal: str = "anonymous"  # the authenticated identity that attached it
    secret: str = ""  # Welcome.session: proves a unary CompleteRun comes from this session
    # Hello.jobs as stored (namespace-qualified) job names: only these jobs' firings are granted
    # to it. None: any job (it announced none, or a default handler "*").
    jobs: frozenset[str] | None = None
    namespace: str = "default"  # Hello.namespace
    # Hello.waits_for_start: it starts no handler before Firing.start_at_ms, so it may be given
    # firings before they are due (--fire-ahead)
    waits_for_start: bool = False
    connected_ms: int = 0  # wall-clock time the stream was attached (for listing)
    last_seen_ms: int = 0  # wall-clock time of the last message from the worker (for listing)

    def seen(self, now: float, now_ms: int = 0) -> None:
        self.last_seen = now
        self.last_seen_ms = now_ms

    def send(self, msg: api_pb2.ServerMessage) -> None:
        if self.closed.is_set():
            return
        if self.outbound.qsize() >= MAX_OUTBOUND:
            # A worker that does not read its stream (while it keeps writing, e.g. heartbeats
            # for leases it does not hold, each answered) must not grow the leader's memory.
            self.close(f"the worker does not read its stream ({MAX_OUTBOUND} messages queued)")
            return
        self.outbound.put(msg)

    def close(self, reason: str, leader_hint: str | None = None) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.leader_hint = leader_hint
        self.closed.set()
        self.outbound.put(None)


class Registry:
    """Attached sessions by worker id; a reconnect with the same id replaces the old session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, WorkerSession] = {}

    def attach(self, session: WorkerSession, *, per_principal: int = 0, total: int = 0) -> None:
        """Register ``session``, replacing an older session of the same worker id and principal.
        Raises AlreadyExists when another principal holds the worker id, ResourceExhausted when
        the principal already has ``per_principal`` streams or the node ``total`` (0: no limit)."""
        with self._lock:
            old = self._sessions.get(session.worker_id)
            if old is not None and old.principal != session.principal:
                raise AlreadyExists(
                    f"hello.worker_id: worker id {session.worker_id!r} is attached by another "
                    "identity; give this worker its own worker_id, or stop the other worker "
                    "first (its stream must end before the id can change hands)"
                )
            others = [s for s in self._sessions.values() if s is not old]
            mine = sum(1 for s in others if s.principal == session.principal)
            if per_principal and mine >= per_principal:
                raise ResourceExhausted(
                    f"worker streams: {session.principal!r} already has {mine} worker streams "
                    f"on this node (the limit is {per_principal}); stop some workers, or raise "
                    "--max-worker-streams on the nodes"
                )
            if total and len(others) >= total:
                raise ResourceExhausted(
                    f"worker streams: this node already serves {len(others)} worker streams "
                    f"(the limit is {total}); stop some workers, or raise --worker-streams on the "
                    "nodes"
                )
            self._sessions[session.worker_id] = session
        if old is not None and old is not session:
            old.close("replaced by a new connection from the same worker id")

    def current(self, session: WorkerSession) -> bool:
        """Whether ``session`` is the attached session of its worker id (not replaced, not
        detached): only it may act on the worker's leases."""
        with self._lock:
            return self._sessions.get(session.worker_id) is session and not session.closed.is_set()

    def detach(self, session: WorkerSession) -> None:
        with self._lock:
            if self._sessions.get(session.worker_id) is session:
                del self._sessions[session.worker_id]

    def get(self, worker_id: str) -> WorkerSession | None:
        with self._lock:
            return self._sessions.get(worker_id)

    def attached(self) -> list[WorkerSession]:
        """Every attached session, draining ones too, by worker id (for listing)."""
        with self._lock:
            return sorted(self._sessions.values(), key=lambda s: s.worker_id)

    def all(self) -> list[WorkerSession]:
        """The sessions that take new firings: attached and not draining."""
        with self._lock:
            return sorted(
                (s for s in self._sessions.values() if not s.draining), key=lambda s: s.worker_id
            )

    def close_all(self, reason: str, leader_hint: str | None) -> None:
        with self._lock:
            sessions = list(self._sessions.values())  # draining ones too
        for session in sessions:
            session.close(reason, leader_hint)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
