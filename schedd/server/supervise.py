"""``schedd dev``'s restart policy for its node processes, pure: the caller passes the time.

A node that exits is restarted after a backoff (1 s, doubling per exit within the window, at most
``max_backoff_s``), at most ``max_restarts`` times in any ``window_s`` (60 s); past that it stays
down and the caller says so, rather than restart a node that crashes at once forever (a corrupt
data directory, a port taken by another program).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    """Per-node restart decisions. ``exited(node, now)`` records an exit and returns when to
    restart it (a time, seconds on the caller's monotonic clock) or None: too many exits in the
    window, leave it down."""

    max_restarts: int = 5
    window_s: float = 60.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 16.0
    _exits: dict[str, deque[float]] = field(default_factory=dict)

    def exited(self, node_id: str, now: float) -> float | None:
        recent = self._exits.setdefault(node_id, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) >= self.max_restarts:
            return None
        recent.append(now)
        backoff = min(self.max_backoff_s, self.first_backoff_s * 2 ** (len(recent) - 1))
        return now + backoff

    def exits_in_window(self, node_id: str) -> int:
        """Exits recorded (and restarted) within the current window."""
        return len(self._exits.get(node_id, ()))


#: names of the signals that usually end a node (the rest print as their number)
_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}


def exit_text(code: int) -> str:
    """``exit code 3``, or ``killed by signal 9 (SIGKILL)`` for a negative Popen return code."""
    if code >= 0:
        return f"exit code {code}"
    return f"killed by signal {-code}" + (f" ({_SIGNALS[-code]})" if -code in _SIGNALS else "")
