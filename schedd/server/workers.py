"""Worker sessions: one per attached WorkerService.Connect stream (leader only).

A session is a mailbox: the dispatcher puts ServerMessages on it, the stream's response
generator takes them off. Closing a session ends its stream, optionally with a leader hint.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

from schedd.pb import api_pb2


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

    def seen(self, now: float) -> None:
        self.last_seen = now

    def send(self, msg: api_pb2.ServerMessage) -> None:
        if not self.closed.is_set():
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

    def attach(self, session: WorkerSession) -> None:
        with self._lock:
            old = self._sessions.get(session.worker_id)
            self._sessions[session.worker_id] = session
        if old is not None and old is not session:
            old.close("replaced by a new connection from the same worker id")

    def detach(self, session: WorkerSession) -> None:
        with self._lock:
            if self._sessions.get(session.worker_id) is session:
                del self._sessions[session.worker_id]

    def get(self, worker_id: str) -> WorkerSession | None:
        with self._lock:
            return self._sessions.get(worker_id)

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
