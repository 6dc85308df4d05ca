"""One ``MemoryState`` replica, its log and a fake clock: the base of the in-process tests that
drive apply through the leader's own planner (tests/unit/test_deps.py, test_fire_ahead.py)."""

from __future__ import annotations

from schedd.pb import command_pb2, types_pb2
from schedd.state.apply import MemoryState, Result, encode


class Replica:
    def __init__(self, now_ms: int) -> None:
        self.state = MemoryState()
        self.log: list[bytes] = []
        self.now = now_ms

    def apply(self, cmd: command_pb2.Command) -> Result:
        """Append ``cmd`` (stamped with the clock unless it carries a time) and apply it."""
        cmd.now_ms = cmd.now_ms or self.now
        self.log.append(encode(cmd))
        return self.state.apply(self.log[-1], len(self.log))

    def job(self, name: str) -> types_pb2.Job:
        job = self.state.get_job(name)
        assert job is not None
        return job

    def runs(self, job: str) -> list[types_pb2.Run]:
        """The job's records, by slot (then run id)."""
        out = [types_pb2.Run.FromString(v) for v in self.state.data["runs"].values()]
        return sorted((r for r in out if r.job == job), key=lambda r: (r.scheduled_ms, r.run_id))
