"""Signed-in browsers: a random session id in an HttpOnly, SameSite=Strict cookie, mapped in
this process's memory to the user's token, a CSRF token and pending messages.

The token itself never goes into a cookie, a URL the dashboard links to, or a page: a stolen
cookie is worth a session of this node only, and signing out (or restarting the node) ends it.
Sessions expire after ``ttl_s`` without use.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["COOKIE", "Session", "Sessions"]

#: the session cookie's name
COOKIE = "schedd_session"


@dataclass
class Session:
    sid: str
    token: str | None  # None on an --insecure node (no authentication)
    csrf: str
    last_used: float
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) to show once

    def csrf_ok(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf.encode())

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append((kind, text))
        del self.flashes[:-10]

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


class Sessions:
    """The sessions of this dashboard (thread-safe); at most ``max_sessions`` (the least
    recently used goes first)."""

    def __init__(
        self,
        ttl_s: float = 12 * 3600,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_sessions
        self._clock = clock
        self._by_sid: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, token: str | None) -> Session:
        s = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), self._clock())
        with self._lock:
            self._by_sid[s.sid] = s
            if len(self._by_sid) > self._max:
                oldest = min(self._by_sid.values(), key=lambda x: x.last_used)
                del self._by_sid[oldest.sid]
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            s = self._by_sid.get(sid)
            if s is None:
                return None
            if now - s.last_used > self._ttl:
                del self._by_sid[sid]
                return None
            s.last_used = now
            return s

    def drop(self, sid: str) -> Session | None:
        with self._lock:
            return self._by_sid.pop(sid, None)
