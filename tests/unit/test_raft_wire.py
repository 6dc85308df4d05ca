"""The Raft port's decoding rules (schedd.raft.wire) and its connection's frame checks
(schedd.raft.transport.RaftConnection) over a local socket pair, without a cluster."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
import zlib
from typing import Any

import pytest
from pysyncobj.encryptor import getEncryptor
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE

from schedd.raft import wire
from schedd.raft.transport import RaftConnection, cert_names, host_in, read_secret_file
from schedd.raft.wire import FrameRefused, WireLimits

MESSAGES: list[Any] = [
    {
        "type": "append_entries",
        "term": 7,
        "commit_index": 41,
        "prevLogIdx": 40,
        "prevLogTerm": 7,
        "entries": [(b"\x01" + bytes(range(256)), 41, 7), (b"", 42, 7)],
    },
    {"type": "next_node_idx", "next_node_idx": 43, "reset": False, "success": True},
    {"type": "request_vote", "term": 8, "last_log_index": 42, "last_log_term": 7},
    {"type": "apply_command_response", "request_id": 12, "error": None, "log_idx": 3},
    {"type": "append_entries", "transmission": "finish", "data": b"\xff" * 10, "x": 1.5},
    # fixed bytes, not os.urandom: test ids must be the same in every collection (pytest-xdist)
    (bytes(range(200, 232)), {"type": "response_vote", "term": -1, "vote": True, "big": 2**80}),
    "127.0.0.1:7101",
    (3, (b"\x00\x80\xff",), {}),  # a replicated call as pysyncobj stores it in the log
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: str(m)[:30])
def test_pysyncobj_messages_round_trip(message: Any) -> None:
    assert wire.loads(wire.dumps(message)) == message
    assert wire.loads(pickle.dumps(message, 2)) == message  # what pysyncobj itself writes


class _Call:
    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.fn, self.args)


@pytest.mark.parametrize(
    "payload",
    [
        _Call(open, "/tmp/never", "w"),
        _Call(os.remove, "/nonexistent"),
        _Call(eval, "1"),
        _Call(bytes, 10**9),  # bytes(n): a gigabyte from a few bytes
        _Call(__import__("_codecs").encode, "x", "zlib_codec"),
        {"entries": [_Call(os.getcwd)]},
    ],
    ids=["open", "remove", "eval", "bytes_n", "codecs_other", "nested"],
)
def test_anything_but_plain_data_is_refused(payload: Any) -> None:
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        with pytest.raises(pickle.UnpicklingError):
            wire.loads(pickle.dumps(payload, protocol))


def test_log_entries_are_unpickled_by_the_restricted_loads() -> None:
    import pysyncobj.syncobj as syncobj

    import schedd.raft.adapter  # noqa: F401  (installs it)

    assert syncobj.pickle is wire.PickleShim
    with pytest.raises(pickle.UnpicklingError):
        syncobj.pickle.loads(pickle.dumps(_Call(os.remove, "/nonexistent"), 2))
    assert syncobj.pickle.loads(syncobj.pickle.dumps((1, (b"x",)))) == (1, (b"x",))


def test_decompression_is_capped() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)  # ~64 KiB that inflate to 64 MiB
    with pytest.raises(FrameRefused):
        wire.decompress(bomb, 1 << 20)
    with pytest.raises(FrameRefused):
        wire.decompress(zlib.compress(b"abc" * 1000)[:-8], 1 << 20)  # cut short
    assert wire.decompress(zlib.compress(b"abc"), 3) == b"abc"


def _stored(data: bytes) -> bytes:
    """A log entry's command as pysyncobj stores it: type byte + pickle((method, (data,)))."""
    return b"\x00" + pickle.dumps((0, (data,)), 2)


def test_the_largest_message_pysyncobj_sends_fits_the_limits() -> None:
    """A full AppendEntries batch (stored commands just under 4 MiB) plus one more entry of
    3 MiB, all bytes >= 0x80 (protocol 2 doubles them, twice: once stored, once sent),
    Fernet-encrypted."""
    batch, entry = 4 << 20, 3 << 20
    limits = WireLimits.for_batches(batch, entry)
    high = bytes(b | 0x80 for b in os.urandom(entry))  # incompressible, all >= 0x80
    first = _stored(high[: batch // 2 - 64])
    assert len(first) < batch
    entries = [(first, 1, 1), (_stored(high), 2, 1)]
    message = (os.urandom(32), {"type": "append_entries", "entries": entries, "term": 1})
    pickled = wire.dumps(message)
    frame = getEncryptor("p" * 32).encrypt_at_time(zlib.compress(pickled, 3), 1)
    assert len(pickled) <= limits.message
    assert len(frame) <= limits.frame


# ---- the connection, over a socket pair ----------------------------------------------------


class Peer:
    """One RaftConnection (the node's side) and the raw socket of whoever talks to it."""

    def __init__(self, password: str | None = "p" * 32) -> None:
        self.poller = createPoller("poll")
        node_side, self.sock = socket.socketpair()
        node_side.setblocking(False)
        self.received: list[Any] = []
        self.closed = False
        self.conn = RaftConnection(
            self.poller,
            limits=WireLimits(handshake_frame=4096, frame=1 << 20, message=2 << 20),
            timeout=5.0,
            send_buffer=1 << 16,
            recv_buffer=1 << 16,
            sock=node_side,
        )
        self.encryptor = getEncryptor(password) if password else None
        self.conn.encryptor = self.encryptor
        self.conn.setOnMessageReceivedCallback(self.received.append)
        self.conn.setOnDisconnectedCallback(lambda: setattr(self, "closed", True))

    def frame(self, message: Any) -> bytes:
        data = zlib.compress(pickle.dumps(message, 2), 3)
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, 1)
        return struct.pack("i", len(data)) + data

    def pump(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            self.poller.poll(0.01)


def test_a_huge_length_prefix_closes_the_connection_before_buffering() -> None:
    p = Peer()
    p.sock.sendall(struct.pack("i", 2**31 - 1) + b"\x00" * 60000)
    p.pump()
    assert p.closed and p.conn.state == CONNECTION_STATE.DISCONNECTED
    assert len(p.conn._rbuf) == 0


def test_before_the_password_is_proved_frames_are_small() -> None:
    p = Peer()
    p.sock.sendall(struct.pack("i", 5000))  # over the 4 KiB handshake limit
    p.pump()
    assert p.closed


def test_after_the_password_is_proved_large_frames_pass() -> None:
    p = Peer()
    p.sock.sendall(p.frame(os.urandom(32)))
    big = {"type": "append_entries", "entries": [(os.urandom(500_000), 1, 1)]}
    sender = threading.Thread(target=p.sock.sendall, args=(p.frame(big),), daemon=True)
    sender.start()  # more than the socket buffers: the node must read while it is sent
    for _ in range(500):
        p.pump(1)
        if len(p.received) == 2 or p.closed:
            break
    sender.join(5)
    assert not p.closed
    assert len(p.received) == 2 and p.received[1] == big


def test_a_frame_without_the_password_closes_the_connection() -> None:
    p = Peer()
    p.sock.sendall(Peer(password="q" * 32).frame(os.urandom(32)))
    p.pump()
    assert p.closed and p.received == []


def test_a_pickle_with_the_password_closes_the_connection(tmp_path) -> None:
    p = Peer()
    mark = tmp_path / "pwned"
    p.sock.sendall(p.frame(_Call(open, str(mark), "w")))
    p.pump()
    assert p.closed and p.received == [] and not mark.exists()


def test_certificate_names_match_hosts() -> None:
    cert = {
        "subjectAltName": (
            ("DNS", "Node1.example"),
            ("IP Address", "127.0.0.1"),
            ("IP Address", "0:0:0:0:0:0:0:1\n"),
        )
    }
    names = cert_names(cert)
    assert host_in("node1.example", names)
    assert host_in("127.0.0.1", names) and host_in("::1", names) and host_in("[::1]", names)
    assert not host_in("127.0.0.2", names) and not host_in("node2.example", names)
    assert cert_names(None) == set()


def test_secret_files_readable_by_others_are_refused(tmp_path) -> None:
    path = tmp_path / "pw"
    path.write_text("  secret-secret-secret \n")
    os.chmod(path, 0o640)
    with pytest.raises(PermissionError, match=f"chmod 600 {path}"):
        read_secret_file(str(path))
    os.chmod(path, 0o600)
    assert read_secret_file(str(path)) == "secret-secret-secret"


# ---- an entry that is not schedd's, on a real RaftNode ---------------------------------------


def test_an_entry_that_is_not_schedds_stops_the_node(tmp_path, monkeypatch) -> None:
    """A peer that may send frames (password, certificate) places a pickle in the log: the
    follower neither runs it nor retries it for ever; it stops, naming the entry."""
    from schedd.raft import adapter
    from schedd.raft.settings import RaftSettings
    from schedd.state.store import Store
    from tests.unit.test_raft_replication import LEADER, OTHER, SELF, RecordingTransport

    stops: list[str] = []

    def fatal(message: str) -> None:
        stops.append(message)
        raise SystemExit(70)

    monkeypatch.setattr(adapter, "fatal", fatal)
    store = Store(str(tmp_path / "state"), map_size=16 << 20)
    node = adapter.RaftNode(
        SELF,
        [LEADER.address, OTHER],
        store,
        str(tmp_path),
        "p" * 32,
        RaftSettings(),
        transport_class=RecordingTransport,
        auto_tick=False,
    )
    mark = tmp_path / "pwned"
    evil = b"\x00" + pickle.dumps(_Call(open, str(mark), "w"), 2)
    try:
        node._SyncObj__onMessageReceived(  # type: ignore[attr-defined]
            LEADER,
            {
                "type": "append_entries",
                "term": 1,
                "commit_index": 2,
                "prevLogIdx": 1,
                "prevLogTerm": 0,
                "entries": [(evil, 2, 1)],
            },
        )
        with pytest.raises(SystemExit):
            for _ in range(5):
                node.doTick(0.0)
    finally:
        node.destroy()
        store.close()
    assert not mark.exists()
    assert stops and "Raft log entry 2 cannot be decoded safely" in stops[0]
