"""Real Raft nodes: reproduces pysyncobj 0.3.17's follower truncation on real nodes, and shows the fix holds.

Three :class:`RaftNode` s (schedd's own configuration: journal, LMDB store, password) talk over
real TCP on 127.0.0.1; the leader is kept busy by many threads proposing ~20 KB entries, so it
pipelines AppendEntries and re-sends tails. An observer on each follower records the highest
index it has acknowledged and, after every message it handles, whether its log now ends below
that index: a *regression*, an acknowledged entry the follower no longer holds (which the
leader may already have counted towards a commit).

* With pysyncobj's behaviour (the fix off, 64 KiB messages as before) the observer must see
  regressions: the negative control that proves it can see the bug.
* With schedd's settings it must see none, pysyncobj must log no CRITICAL "truncating
  already-applied log entries", and the replicas must converge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from schedd.pb import command_pb2
from schedd.raft.adapter import RaftNode
from schedd.raft.settings import RaftSettings
from schedd.state.apply import encode
from schedd.state.store import Store
from schedd.testing import free_ports

pytestmark = pytest.mark.integration

ENTRY_BYTES = 20_000


def padded_entry(i: int) -> bytes:
    """A real command (a barrier: apply records nothing) padded with an unknown protobuf field
    (number 1000, ignored by apply) to ``ENTRY_BYTES``."""
    cmd = encode(
        command_pb2.Command(now_ms=1, barrier=command_pb2.BarrierCmd(node_id=f"load-{i}", term=1))
    )
    pad = ENTRY_BYTES - len(cmd)
    return cmd + b"\xc2\x3e" + _varint(pad) + b"x" * pad  # tag (1000 << 3 | 2), length, bytes


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@dataclass
class Observer:
    """Watches one follower: acknowledged indexes sent, log end after each message."""

    node: RaftNode
    max_acked: int = 0
    regressions: int = 0
    deepest: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        transport = self.node._SyncObj__transport  # type: ignore[attr-defined]
        send, receive = transport.send, transport._onMessageReceivedCallback
        journal = self.node._SyncObj__raftLog  # type: ignore[attr-defined]

        def observed_send(node: Any, message: Any) -> Any:
            if (
                isinstance(message, dict)
                and message.get("type") == "next_node_idx"
                and message.get("success")
            ):
                self.max_acked = max(self.max_acked, message["next_node_idx"] - 1)
            return send(node, message)

        def observed_receive(node: Any, message: Any) -> Any:
            out = receive(node, message)
            end = journal[-1][1]
            if end < self.max_acked:
                self.regressions += 1
                self.deepest = max(self.deepest, self.max_acked - end)
            return out

        transport.send = observed_send
        transport._onMessageReceivedCallback = observed_receive


class Criticals(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_cluster(
    settings: RaftSettings, seconds: float, stop_at_regressions: int = 0
) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="raft-trunc-")
    ports = free_ports(3)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    stores = [Store(os.path.join(root, f"n{i}", "state"), map_size=256 << 20) for i in range(3)]
    nodes = [
        RaftNode(
            a,
            [b for b in addrs if b != a],
            stores[i],
            os.path.join(root, f"n{i}"),
            "password",
            settings,
        )
        for i, a in enumerate(addrs)
    ]
    criticals = Criticals()
    logging.getLogger("pysyncobj").addHandler(criticals)
    try:
        deadline = time.monotonic() + 20
        while not any(n.is_leader() for n in nodes):
            assert time.monotonic() < deadline, "no leader elected"
            time.sleep(0.05)
        leader = next(n for n in nodes if n.is_leader())
        observers = [Observer(n) for n in nodes if n is not leader]
        for o in observers:
            o.install()
        stop = time.monotonic() + seconds
        counter = iter(range(10**9))
        committed = [0]

        def load() -> None:
            while time.monotonic() < stop:
                if (
                    stop_at_regressions
                    and sum(o.regressions for o in observers) >= stop_at_regressions
                ):
                    return
                try:
                    leader.propose(padded_entry(next(counter)), timeout=5)
                    committed[0] += 1
                except Exception:
                    time.sleep(0.01)

        threads = [threading.Thread(target=load) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Converged: every node applies the same entries to the same state.
        deadline = time.monotonic() + 30
        while (
            len({s.applied_index() for s in stores}) != 1
            or leader.raftCommitIndex != stores[0].applied_index()
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return {
            "regressions": sum(o.regressions for o in observers),
            "deepest": max(o.deepest for o in observers),
            "committed": committed[0],
            "criticals": criticals.messages,
            "applied": [s.applied_index() for s in stores],
            "digests": {s.digest() for s in stores},
        }
    finally:
        logging.getLogger("pysyncobj").removeHandler(criticals)
        for n in nodes:
            n.destroy_synchronous()
        for s in stores:
            s.close()
        shutil.rmtree(root, ignore_errors=True)


def test_negative_control_pysyncobj_alone_drops_acknowledged_entries() -> None:
    before = RaftSettings(
        replication_fix=False, append_batch_bytes=1 << 16, max_entry_bytes=(1 << 16) - 1
    )
    got = run_cluster(before, seconds=20, stop_at_regressions=5)
    assert got["regressions"] > 0, f"the observer saw no regression with the fix off: {got}"


def test_fixed_followers_never_drop_acknowledged_entries() -> None:
    got = run_cluster(RaftSettings(), seconds=5)
    assert got["committed"] > 100, got
    assert got["regressions"] == 0, got
    assert got["criticals"] == [], got["criticals"][:3]
    assert len(set(got["applied"])) == 1 and len(got["digests"]) == 1, got


@contextlib.contextmanager
def three_nodes(settings: RaftSettings) -> Iterator[tuple[RaftNode, list[Store], list[str]]]:
    """Three RaftNodes on 127.0.0.1; yields (leader, stores, messages the leader sent with
    pysyncobj's chunked "transmission" key)."""
    root = tempfile.mkdtemp(prefix="raft-big-")
    addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]
    stores = [Store(os.path.join(root, f"n{i}", "state"), map_size=256 << 20) for i in range(3)]
    nodes = [
        RaftNode(
            a,
            [b for b in addrs if b != a],
            stores[i],
            os.path.join(root, f"n{i}"),
            "password",
            settings,
        )
        for i, a in enumerate(addrs)
    ]
    chunked: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while not any(n.is_leader() for n in nodes):
            assert time.monotonic() < deadline, "no leader elected"
            time.sleep(0.05)
        leader = next(n for n in nodes if n.is_leader())
        transport = leader._SyncObj__transport  # type: ignore[attr-defined]
        send = transport.send

        def watched(node: Any, message: Any) -> Any:
            if isinstance(message, dict) and "transmission" in message:
                chunked.append(message["transmission"])
            return send(node, message)

        transport.send = watched
        yield leader, stores, chunked
        deadline = time.monotonic() + 20
        while len({s.applied_index() for s in stores}) != 1:
            assert time.monotonic() < deadline, [s.applied_index() for s in stores]
            time.sleep(0.05)
        assert len({s.digest() for s in stores}) == 1
    finally:
        for n in nodes:
            n.destroy_synchronous()
        for s in stores:
            s.close()
        shutil.rmtree(root, ignore_errors=True)


def test_largest_entry_replicates_whole_and_a_larger_one_is_refused() -> None:
    """An entry at the size limit goes out in one AppendEntries (never pysyncobj's chunked
    "transmission" path), and one byte more is refused before it reaches the log."""
    from schedd.errors import InvalidArgument

    settings = RaftSettings()
    with three_nodes(settings) as (leader, _stores, chunked):
        leader.propose(_pad_to(settings.max_entry_bytes), timeout=10)
        with pytest.raises(InvalidArgument, match="over the limit"):
            leader.propose(_pad_to(settings.max_entry_bytes + 1), timeout=10)
    assert chunked == []


def test_negative_control_an_entry_over_the_message_size_is_chunked() -> None:
    """The watcher sees pysyncobj's chunked path when an entry is larger than a message (the
    adapter's limit bypassed, pysyncobj's old 64 KiB messages)."""
    settings = RaftSettings(append_batch_bytes=1 << 16, max_entry_bytes=(1 << 16) - 1)
    with three_nodes(settings) as (leader, _stores, chunked):
        leader._apply_entry(_pad_to(200_000), sync=True, timeout=10)
    assert "start" in chunked and "finish" in chunked


def _pad_to(size: int) -> bytes:
    """A barrier command padded (unknown field 1000) to exactly ``size`` bytes."""
    cmd = encode(
        command_pb2.Command(now_ms=1, barrier=command_pb2.BarrierCmd(node_id="big", term=1))
    )
    for pad in range(size - len(cmd) - 12, size - len(cmd)):
        out = cmd + b"\xc2\x3e" + _varint(pad) + b"y" * pad
        if len(out) == size:
            return out
    raise AssertionError(f"cannot pad to {size}")


if (
    __name__ == "__main__"
):  # python tests/integration/test_raft_live.py: the figures in docs/durability.md
    import sys

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    cases = [
        (
            "pysyncobj's replication, 64 KiB messages",
            RaftSettings(
                replication_fix=False, append_batch_bytes=1 << 16, max_entry_bytes=(1 << 16) - 1
            ),
        ),
        ("pysyncobj's replication, 4 MiB messages", RaftSettings(replication_fix=False)),
        ("schedd (the fix, 4 MiB messages)", RaftSettings()),
    ]
    for label, settings in cases:
        got = run_cluster(settings, seconds=6)
        print(
            f"{label}: {got['committed']} entries committed in 6 s, {got['regressions']} regressions "
            f"(deepest {got['deepest']} entries), {len(got['criticals'])} CRITICAL truncation lines, "
            f"replicas converged: {len(got['digests']) == 1 and len(set(got['applied'])) == 1}",
            flush=True,
        )
