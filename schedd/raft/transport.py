"""schedd's Raft transport: pysyncobj's TCP transport with bounded frames, a pickle that cannot
run code, and optional mutual TLS between node certificates.

pysyncobj 0.3.17's ``TcpConnection`` buffers a frame of whatever length its 4-byte prefix claims,
growing the buffer by concatenation (quadratic copying) and reading until the socket is empty,
all in the Raft tick thread; then it ``pickle.loads`` the frame. Measured on a 3-node cluster:
one outsider connection per node with a 2 GiB prefix and a stream of bytes stopped every write
for the whole 10 s attack and 20 s after (no write committed), and a crafted pickle encrypted
with the password created a file on every node (``tests/integration/test_raft_port.py``).

:class:`RaftConnection` implements the interface pysyncobj's ``TCPTransport`` uses (connect,
send, disconnect, state, the three callbacks, the Fernet attributes) and differs where it
matters:

* The length prefix is checked as soon as its 4 bytes arrive. Over the limit (a few KiB until
  the peer has proved it knows the password, :class:`~schedd.raft.wire.WireLimits` after), the
  connection is closed; nothing of the frame is buffered. Buffers are ``bytearray``: appending
  and consuming cost linear time.
* A frame is Fernet-decrypted (as before), decompressed with an output cap and unpickled by
  :func:`schedd.raft.wire.loads`, which resolves no global but the two protocol 2 uses for
  bytes. A frame that fails any step closes the connection and is logged (pysyncobj closed
  silently).
* With TLS (:class:`RaftTls`), every connection is wrapped in TLS before its first frame: the
  node that connects verifies the other's certificate against the cluster CA and the address it
  dialled, the node that accepts requires a client certificate from the same CA, and a peer's
  claim to be node ``HOST:PORT`` is accepted only if ``HOST`` is a subject alternative name of
  its certificate. Node certificates therefore need both serverAuth and clientAuth.

:class:`RaftTransport` is pysyncobj's ``TCPTransport`` with these connections. It also refuses
what schedd never uses and what a password holder could abuse: pysyncobj's utility commands on
the Raft port (``status`` reveals the cluster's state, ``transfer`` moves leadership at will)
and read-only nodes (they receive the whole log); and it closes incoming connections that have not
said which node they are within ``connectionTimeout``, keeping at most ``MAX_UNIDENTIFIED``.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import socket
import ssl
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.monotonic import monotonic
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, _getAddrType, set_keepalive
from pysyncobj.transport import TCPTransport

from schedd.raft import wire
from schedd.raft.wire import WireLimits

log = logging.getLogger("schedd.raft.transport")

_PREFIX = struct.Struct("i")  # pysyncobj's: native int32
MAX_UNIDENTIFIED = 64  # incoming connections that have not yet said which node they are
_READ = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
_READ_WRITE = _READ | POLL_EVENT_TYPE.WRITE


class TlsConfigError(Exception):
    """The TLS files cannot be used (missing, unreadable, not a certificate or key, mismatch).
    ``flag`` names the option, ``problem`` what is wrong with it."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag
        self.problem = problem


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: this node's certificate (chain) and key, and the CA that signs node
    certificates."""

    cert: str
    key: str
    ca: str


class RaftTls:
    """The two TLS contexts of a node's Raft port (accepting and connecting), TLS 1.2 or later,
    certificates required and verified on both sides."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.server = self._context(ssl.PROTOCOL_TLS_SERVER)
        self.client = self._context(ssl.PROTOCOL_TLS_CLIENT)

    def _context(self, protocol: int) -> ssl.SSLContext:
        ctx = ssl.SSLContext(protocol)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        f = self.files
        try:
            ctx.load_verify_locations(cafile=f.ca)
        except (OSError, ssl.SSLError) as e:
            raise TlsConfigError("--tls-ca", f"cannot load {f.ca}: {e}") from None
        try:
            ctx.load_cert_chain(f.cert, f.key)
        except (OSError, ssl.SSLError) as e:
            raise TlsConfigError(
                "--tls-cert/--tls-key", f"cannot load {f.cert} with {f.key}: {e}"
            ) from None
        return ctx


def cert_names(peer_cert: dict[str, Any] | None) -> set[str]:
    """The DNS names and IP addresses (normalized) a verified peer certificate names."""
    names: set[str] = set()
    for kind, value in (peer_cert or {}).get("subjectAltName", ()):
        if kind == "DNS":
            names.add(value.lower())
        elif kind == "IP Address":
            try:
                names.add(str(ipaddress.ip_address(value.strip())))
            except ValueError:
                continue
    return names


def host_in(host: str, names: set[str]) -> bool:
    host = host.strip("[]")
    try:
        return str(ipaddress.ip_address(host)) in names
    except ValueError:
        return host.lower() in names


class _Quiet:
    """Logs a refused frame or handshake at most once per ``every`` seconds per reason: an
    attacker must not be able to fill the disk with log lines."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last: dict[str, float] = {}
        self.dropped: dict[str, int] = {}

    def warn(self, reason: str, peer: str, detail: str) -> None:
        now = monotonic()
        if now - self.last.get(reason, -self.every) < self.every:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            return
        self.last[reason] = now
        more = self.dropped.pop(reason, 0)
        log.warning(
            'event=raft_connection_refused reason=%s peer=%s detail="%s"%s',
            reason,
            peer,
            detail.replace('"', "'"),
            f" suppressed={more}" if more else "",
        )


_quiet = _Quiet()


class RaftConnection:
    """One Raft TCP connection (pysyncobj's ``TcpConnection`` interface; see the module doc).

    Runs in the tick thread only, driven by pysyncobj's poller."""

    def __init__(
        self,
        poller: Any,
        *,
        limits: WireLimits,
        timeout: float,
        send_buffer: int,
        recv_buffer: int,
        keepalive: Any = None,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        # pysyncobj's TCPTransport reads and writes these four
        self.sendRandKey: bytes | None = None
        self.recvRandKey: bytes | None = None
        self.recvLastTimestamp = 0
        self.encryptor: Any = None
        self.created = monotonic()
        self.peer_cert: dict[str, Any] | None = None
        self.trusted = False  # a frame decrypted with the password (no password: decoded)
        self._poller = poller
        self._limits = limits
        self._timeout = timeout
        self._send_buffer = send_buffer
        self._recv_buffer = recv_buffer
        self._keepalive = keepalive
        self._tls = tls
        self._server_hostname = server_hostname
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._wpos = 0
        self._last_read = monotonic()
        #: when the first frame of the current exchange went out without an answer since (None:
        #: nothing unanswered), and when the last frame went out (see _stale)
        self._awaiting: float | None = None
        self._last_send = 0.0
        self._handshaking = False
        self._peer = "?"
        self._on_message: Callable[[Any], None] | None = None
        self._on_connected: Callable[[], None] | None = None
        self._on_disconnected: Callable[[], None] | None = None
        self._sock: socket.socket | None = None
        self._fileno: int | None = None
        self._state = CONNECTION_STATE.DISCONNECTED
        if sock is not None:  # accepted by the server
            self._peer = _peer_name(sock)
            self._sock = sock
            self._fileno = sock.fileno()
            self._state = CONNECTION_STATE.CONNECTED
            self._set_keepalive()
            if tls is not None:
                self._sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                self._handshaking = True
            self._poller.subscribe(self._fileno, self._on_event, _READ_WRITE)

    # ---- pysyncobj's interface ---------------------------------------------------------------

    @property
    def state(self) -> int:
        return self._state

    def fileno(self) -> int | None:
        return self._fileno

    def setOnConnectedCallback(self, cb: Callable[[], None] | None) -> None:  # noqa: N802
        self._on_connected = cb

    def setOnMessageReceivedCallback(self, cb: Callable[[Any], None] | None) -> None:  # noqa: N802
        self._on_message = cb

    def setOnDisconnectedCallback(self, cb: Callable[[], None] | None) -> None:  # noqa: N802
        self._on_disconnected = cb

    def getSendBufferSize(self) -> int:  # noqa: N802
        return len(self._wbuf) - self._wpos

    def connect(self, host: str | None, port: int) -> bool:
        if host is None:
            return False
        self._reset()
        sock = socket.socket(_getAddrType(host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock
        self._set_keepalive()
        self._peer = f"{host}:{port}"
        try:
            sock.connect((host, port))
        except OSError as e:
            if e.errno not in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                sock.close()
                self._sock = None
                return False
        self._fileno = sock.fileno()
        self._state = CONNECTION_STATE.CONNECTING
        self.created = monotonic()
        self._last_read = monotonic()
        self._poller.subscribe(self._fileno, self._on_event, _READ_WRITE)
        return True

    def send(self, message: Any) -> None:
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        data = zlib.compress(wire.dumps(message), 3)
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, int(monotonic()))
        self._wbuf += _PREFIX.pack(len(data))
        self._wbuf += data
        now = monotonic()
        if self._awaiting is None or now - self._last_send > self._timeout:
            self._awaiting = now  # a new exchange after a quiet link
        self._last_send = now
        self._try_send()

    def disconnect(self) -> None:
        call = self._on_disconnected is not None and self._state != CONNECTION_STATE.DISCONNECTED
        self.sendRandKey = None
        self.recvRandKey = None
        self.recvLastTimestamp = 0
        self._reset()
        if call and self._on_disconnected is not None:
            self._on_disconnected()

    # ---- internals -------------------------------------------------------------------------

    def _reset(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._wpos = 0
        self._awaiting = None
        self._handshaking = False
        self.peer_cert = None
        self.trusted = False
        self._state = CONNECTION_STATE.DISCONNECTED

    def _set_keepalive(self) -> None:
        if self._sock is not None and self._keepalive is not None:
            set_keepalive(self._sock, *self._keepalive)

    def _refuse(self, reason: str, detail: str) -> None:
        _quiet.warn(reason, self._peer, detail)
        self.disconnect()

    def _on_event(self, descr: int, event: int) -> None:
        if descr != self._fileno:
            self._poller.unsubscribe(descr)
            return
        if event & POLL_EVENT_TYPE.ERROR:
            self.disconnect()
            return
        if self._stale():
            self.disconnect()
            return
        sock = self._sock
        assert sock is not None
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.disconnect()
            return
        if self._state == CONNECTION_STATE.CONNECTING and not self._handshaking:
            # the TCP connect completed
            self._last_read = monotonic()
            if self._tls is None:
                self._connected()
                return
            self._sock = self._tls.wrap_socket(
                sock, server_hostname=self._server_hostname, do_handshake_on_connect=False
            )
            self._handshaking = True
        if self._handshaking and not self._handshake():
            return
        if self._wpos < len(self._wbuf):
            self._try_send()
            if self._state == CONNECTION_STATE.DISCONNECTED:
                return
        tls_sock = self._sock
        if event & POLL_EVENT_TYPE.READ or (
            isinstance(tls_sock, ssl.SSLSocket) and tls_sock.pending()
        ):
            self._read()
        if self._fileno is not None:
            want = _READ_WRITE if self._wpos < len(self._wbuf) else _READ
            self._poller.subscribe(self._fileno, self._on_event, want)

    def _connected(self) -> None:
        if self._on_connected is not None:
            self._on_connected()
        if self._state == CONNECTION_STATE.DISCONNECTED:
            return
        self._state = CONNECTION_STATE.CONNECTED
        self._last_read = monotonic()
        self._try_send()

    def _handshake(self) -> bool:
        """Advance the TLS handshake; True once it is done and the connection is usable."""
        sock = self._sock
        assert isinstance(sock, ssl.SSLSocket) and self._fileno is not None
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._poller.subscribe(self._fileno, self._on_event, _READ)
            return False
        except ssl.SSLWantWriteError:
            self._poller.subscribe(self._fileno, self._on_event, _READ_WRITE)
            return False
        except (ssl.SSLError, OSError) as e:
            self._refuse("tls_handshake", str(e)[:200])
            return False
        self._handshaking = False
        self.peer_cert = sock.getpeercert()
        self.trusted = True  # a node certificate from the cluster CA
        self._last_read = monotonic()
        if self._state == CONNECTION_STATE.CONNECTING:
            self._connected()
            if self._state == CONNECTION_STATE.DISCONNECTED:
                return False
        return True

    def _stale(self) -> bool:
        """Whether the peer is presumed gone: it has not answered for longer than the timeout
        while this side waited: for the connect and TLS handshake, or, once connected, while
        this side keeps sending (a leader's heartbeats) and nothing came back since the first
        of those frames. A link that is merely quiet is not stale, however long: followers send
        each other nothing between elections, and some frames are never answered (a vote, an
        acknowledgement to a deposed leader). pysyncobj's rule (nothing read for the timeout)
        closed such a link at its next frame, in either direction, and dropped that frame: the
        vote requests of a leadership transfer or an election, so on 4 or 5 nodes the
        transfer's target could not win (tests/integration/test_transfer.py). A peer that is
        gone while nothing is sent is found by TCP keepalive."""
        now = monotonic()
        if self._handshaking or self._state != CONNECTION_STATE.CONNECTED:
            return now - self._last_read > self._timeout
        return (
            self._awaiting is not None
            and now - self._last_send <= self._timeout
            and now - max(self._awaiting, self._last_read) > self._timeout
        )

    def _try_send(self) -> None:
        if self._state == CONNECTION_STATE.DISCONNECTED:
            return
        if self._handshaking or self._state != CONNECTION_STATE.CONNECTED:
            return
        if self._stale():
            self.disconnect()
            return
        sock = self._sock
        assert sock is not None
        while self._wpos < len(self._wbuf):
            try:
                with memoryview(self._wbuf)[self._wpos :] as chunk:
                    n = sock.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                break
            except OSError:
                self.disconnect()
                return
            if n <= 0:
                break
            self._wpos += n
        if self._wpos >= len(self._wbuf):
            self._wbuf = bytearray()
            self._wpos = 0
        elif self._wpos > (1 << 20) and self._wpos * 2 > len(self._wbuf):
            del self._wbuf[: self._wpos]
            self._wpos = 0
        if self._fileno is not None and self._wpos < len(self._wbuf):
            self._poller.subscribe(self._fileno, self._on_event, _READ_WRITE)

    def _read(self) -> None:
        sock = self._sock
        # a callback may close the connection and open a new one (pysyncobj reconnects from
        # its disconnect callback): stop reading when the socket is no longer this one
        while sock is not None and self._sock is sock:
            try:
                incoming = sock.recv(self._recv_buffer)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except OSError:
                self.disconnect()
                return
            if not incoming:
                self.disconnect()
                return
            self._last_read = monotonic()
            self._awaiting = None
            self._rbuf += incoming
            if not self._parse():
                return

    def _parse(self) -> bool:
        """Deliver every complete frame; False when the connection was closed."""
        buf = self._rbuf
        while len(buf) >= 4:
            (length,) = _PREFIX.unpack_from(buf)
            # Without a password and without TLS nothing can be proved (schedd always has a
            # password; pysyncobj allows none): then every frame may be full size.
            open_port = self.encryptor is None and self._tls is None
            limit = (
                self._limits.frame if self.trusted or open_port else self._limits.handshake_frame
            )
            if not 0 < length <= limit:
                self._refuse(
                    "frame_size",
                    f"length prefix {length}, limit {limit} (authenticated: {self.trusted})",
                )
                return False
            if len(buf) < 4 + length:
                return True
            data = bytes(buf[4 : 4 + length])
            del buf[: 4 + length]
            message = self._decode(data)
            if self._state == CONNECTION_STATE.DISCONNECTED:
                return False
            if self._on_message is not None:
                self._on_message(message)
            if self._state == CONNECTION_STATE.DISCONNECTED:
                return False
            buf = self._rbuf  # a callback may have reset the connection
        return True

    def _decode(self, data: bytes) -> Any:
        try:
            if self.encryptor:
                stamp = self.encryptor.extract_timestamp(data)  # verifies the token's HMAC
                if stamp < self.recvLastTimestamp:
                    raise wire.FrameRefused("timestamp went backwards (a replayed frame?)")
                self.recvLastTimestamp = stamp
                data = self.encryptor.decrypt(data)
            self.trusted = True
            message = wire.loads(wire.decompress(data, self._limits.message))
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise wire.FrameRefused("wrong connection key (a replayed frame?)")
        except Exception as e:  # anything a hostile frame can raise
            reason = "decrypt" if type(e).__name__ == "InvalidToken" else "decode"
            self._refuse(reason, type(e).__name__)
            return None
        return message


def _peer_name(sock: socket.socket) -> str:
    try:
        name = sock.getpeername()
    except OSError:
        return "?"
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name) or "?"


class RaftServer:
    """pysyncobj's ``TcpServer`` accepting :class:`RaftConnection` s."""

    def __init__(
        self,
        poller: Any,
        host: str,
        port: int,
        on_new_connection: Callable[[RaftConnection], None],
        make: Callable[[socket.socket], RaftConnection],
        send_buffer: int,
        recv_buffer: int,
    ) -> None:
        self._poller = poller
        self._host = host
        self._port = int(port)
        self._on_new = on_new_connection
        self._make = make
        self._send_buffer = send_buffer
        self._recv_buffer = recv_buffer
        self._sock: socket.socket | None = None
        self._fileno: int | None = None

    def bind(self) -> None:
        sock = socket.socket(_getAddrType(self._host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        try:
            sock.bind((self._host, self._port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._fileno = sock.fileno()
        self._poller.subscribe(self._fileno, self._on_accept, _READ)

    def unbind(self) -> None:
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _on_accept(self, descr: int, event: int) -> None:
        if event & POLL_EVENT_TYPE.READ and self._sock is not None:
            try:
                sock, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:
                _quiet.warn("accept_failed", "?", str(e))
                return  # e.g. EMFILE: keep listening (pysyncobj unbound the port for good)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                self._on_new(self._make(sock))
            except OSError:
                sock.close()
        if event & POLL_EVENT_TYPE.ERROR:
            self.unbind()


class RaftTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's ``TCPTransport`` over :class:`RaftConnection`. Construct it through
    :func:`transport_class`, which binds the limits and TLS."""

    def __init__(
        self,
        syncObj: Any,  # noqa: N803 (pysyncobj's signature)
        selfNode: Any,  # noqa: N803
        otherNodes: Any,  # noqa: N803
        *,
        limits: WireLimits,
        tls: RaftTls | None,
    ) -> None:
        self._limits = limits
        self._tls = tls
        super().__init__(syncObj, selfNode, otherNodes)

    def _connection(self, **kw: Any) -> RaftConnection:
        conf = self._syncObj.conf
        return RaftConnection(
            self._syncObj._poller,
            limits=self._limits,
            timeout=conf.connectionTimeout,
            send_buffer=conf.sendBufferSize,
            recv_buffer=conf.recvBufferSize,
            keepalive=conf.tcp_keepalive,
            **kw,
        )

    def _createServer(self) -> None:  # noqa: N802
        conf = self._syncObj.conf
        bind = conf.bindAddress or self._selfNode.address
        host, port = bind.rsplit(":", 1)
        if conf.bindAddress is None:
            host = "::" if ":" in host else "0.0.0.0"
        if host not in ("0.0.0.0", "::"):
            host = globalDnsResolver().resolve(host)
        server_ctx = self._tls.server if self._tls else None
        self._server = RaftServer(
            self._syncObj._poller,
            host,
            int(port),
            self._onNewIncomingConnection,
            lambda sock: self._connection(sock=sock, tls=server_ctx),
            conf.sendBufferSize,
            conf.recvBufferSize,
        )

    def addNode(self, node: Any) -> None:  # noqa: N802
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conn = self._connection(
                tls=self._tls.client if self._tls else None, server_hostname=node.host
            )
            conn.encryptor = self._syncObj.encryptor
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn

    def _onNewIncomingConnection(self, conn: RaftConnection) -> None:  # noqa: N802
        # Connections that have not said which node they are cost a descriptor each until
        # connectionTimeout: keep at most MAX_UNIDENTIFIED, closing the oldest, so a flood of
        # idle connections cannot use up the process's descriptors (a peer reconnects anyway).
        while len(self._unknownConnections) >= MAX_UNIDENTIFIED:
            oldest = min(self._unknownConnections, key=lambda c: c.created)
            self._drop(oldest, "too_many_unidentified", f"over {MAX_UNIDENTIFIED} connections")
        super()._onNewIncomingConnection(conn)

    def _onIncomingMessageReceived(self, conn: RaftConnection, message: Any) -> None:  # noqa: N802
        if self._syncObj.encryptor and not conn.sendRandKey:
            if not (isinstance(message, bytes) and len(message) == 32):
                return self._drop(conn, "handshake", "first message is not a connection key")
            return super()._onIncomingMessageReceived(conn, message)
        if not isinstance(message, str) or message not in self._nodeAddrToNode:
            # pysyncobj's utility commands (lists) and read-only nodes ('readonly') included
            return self._drop(conn, "unknown_node", repr(message)[:80])
        if self._tls is not None:
            host = message.rsplit(":", 1)[0]
            if not host_in(host, cert_names(conn.peer_cert)):
                return self._drop(
                    conn, "identity", f"claims {message} but its certificate does not name {host}"
                )
        return super()._onIncomingMessageReceived(conn, message)

    def _drop(self, conn: RaftConnection, reason: str, detail: str) -> None:
        _quiet.warn(reason, conn._peer, detail)
        self._unknownConnections.discard(conn)
        conn.disconnect()

    def _onTick(self) -> None:  # noqa: N802
        super()._onTick()
        deadline = monotonic() - self._syncObj.conf.connectionTimeout
        for conn in [c for c in self._unknownConnections if c.created < deadline]:
            self._drop(conn, "handshake_timeout", "did not say which node it is in time")


def transport_class(limits: WireLimits, tls: RaftTls | None) -> Callable[..., RaftTransport]:
    """What :class:`~schedd.raft.adapter.RaftNode` hands pysyncobj as its ``transportClass``."""
    return functools.partial(RaftTransport, limits=limits, tls=tls)


def read_secret_file(path: str) -> str:
    """A secret file's content, stripped; raises ``PermissionError`` naming the fix when group
    or others may read it (the check ``schedd run`` applies to the Raft password file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{path} is readable by group or others (mode {mode:04o}); run: chmod 600 {path}"
            )
        with os.fdopen(fd, "r", closefd=False) as f:
            return f.read().strip()
    finally:
        os.close(fd)


__all__ = [
    "RaftConnection",
    "RaftTls",
    "RaftTransport",
    "TlsConfigError",
    "TlsFiles",
    "read_secret_file",
    "transport_class",
]
