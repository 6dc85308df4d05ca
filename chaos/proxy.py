"""A userspace TCP proxy the chaos harness controls, one ``Link`` per (listen → target) pair.

Stdlib only (asyncio in one daemon thread). Every link can be:

* **cut** both ways or one way (``cut("fwd")``: client → target bytes are dropped,
  ``cut("back")``: target → client bytes are dropped). ``mode="blackhole"`` (default) keeps the
  TCP connections open and silently discards the bytes, as a partitioned network does; new
  connections are accepted and black-holed too. ``mode="reset"`` closes every connection and
  refuses new ones (an immediate, visible failure).
* **healed**: connections that lost bytes are closed (their byte stream is no longer
  intact, so the endpoints must reconnect, exactly as after a real partition ends with timeouts).
* **flaky**: ``delay_s`` added to every chunk in both directions (order kept) and
  ``reset_p``, the probability that a chunk resets the connection. Dropping single chunks would
  corrupt the TCP stream (TCP cannot lose bytes in the middle), so "drop" is modelled as resets.

``Link.upstream_ports()`` lists the local ports of the proxy's own connections to the target;
the harness uses it to prove that every Raft connection goes through a proxy.
"""

from __future__ import annotations

import asyncio
import random
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHUNK = 64 * 1024


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    upstream_port: int = 0
    dirty: bool = False  # bytes were dropped: the stream is broken, close it on heal
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def close(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                try:
                    w.transport.abort()
                except Exception:
                    pass
        for t in self.tasks:
            t.cancel()


class Link:
    """One listening address forwarding to one target. Control methods are thread-safe."""

    def __init__(self, hub: ProxyHub, name: str, listen: str, target: str) -> None:
        self.hub = hub
        self.name = name
        self.listen = listen
        self.target = target
        self.fwd_cut = False
        self.back_cut = False
        self.mode = "blackhole"
        self.delay_s = 0.0
        self.reset_p = 0.0
        self.accepted = 0
        self.bytes = [0, 0]  # forwarded client→target, target→client
        self.dropped = [0, 0]
        self.conns: set[_Conn] = set()
        self._server: asyncio.base_events.Server | None = None
        self._rng = random.Random(zlib.crc32(name.encode()))

    # ---- control (any thread) ----------------------------------------------------------------

    def cut(self, direction: str = "both", mode: str = "blackhole") -> None:
        """Cut ``both`` directions, or only ``fwd`` (client → target) or ``back``."""
        if direction not in ("both", "fwd", "back") or mode not in ("blackhole", "reset"):
            raise ValueError(f"bad cut {direction}/{mode}")

        def do() -> None:
            self.mode = mode
            self.fwd_cut = self.fwd_cut or direction in ("both", "fwd")
            self.back_cut = self.back_cut or direction in ("both", "back")
            if mode == "reset":
                self._close_all(lambda c: True)

        self.hub.call(do)

    def heal(self) -> None:
        def do() -> None:
            was_cut = self.fwd_cut or self.back_cut
            self.fwd_cut = self.back_cut = False
            self.delay_s = 0.0
            self.reset_p = 0.0
            if was_cut:
                self._close_all(lambda c: c.dirty or c.upstream is None)

        self.hub.call(do)

    def flaky(self, delay_s: float = 0.0, reset_p: float = 0.0) -> None:
        def do() -> None:
            self.delay_s, self.reset_p = delay_s, reset_p

        self.hub.call(do)

    def upstream_ports(self) -> set[int]:
        return self.hub.call(lambda: {c.upstream_port for c in self.conns if c.upstream_port})

    def connected(self) -> int:
        return self.hub.call(lambda: sum(1 for c in self.conns if c.upstream is not None))

    @property
    def is_cut(self) -> bool:
        return self.fwd_cut or self.back_cut

    # ---- loop side ---------------------------------------------------------------------------

    def _close_all(self, which: Callable[[_Conn], bool]) -> None:
        for c in [c for c in self.conns if which(c)]:
            self.conns.discard(c)
            c.close()

    async def _start(self) -> None:
        host, port = self.listen.rsplit(":", 1)
        self._server = await asyncio.start_server(
            self._on_client, host, int(port), reuse_address=True
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all(lambda c: True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = _Conn(client=writer)
        self.conns.add(conn)
        if self.mode == "reset" and self.is_cut:
            self.conns.discard(conn)
            conn.close()
            return
        if self.fwd_cut and self.back_cut:  # black hole: accept, read, discard; never connect
            conn.dirty = True
            await self._drain_forever(reader, conn)
            return
        host, port = self.target.rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), 3.0
            )
        except (TimeoutError, OSError):
            self.conns.discard(conn)
            conn.close()
            return
        conn.upstream = up_writer
        conn.upstream_port = up_writer.get_extra_info("sockname")[1]
        if conn not in self.conns:  # closed while connecting
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.tasks = [
            loop.create_task(self._pump(reader, up_writer, conn, 0)),
            loop.create_task(self._pump(up_reader, writer, conn, 1)),
        ]

    async def _drain_forever(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        try:
            while conn in self.conns:
                data = await reader.read(CHUNK)
                if not data:
                    break
                self.dropped[0] += len(data)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self.conns.discard(conn)
            conn.close()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn, d: int
    ) -> None:
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                if self.fwd_cut if d == 0 else self.back_cut:
                    conn.dirty = True
                    self.dropped[d] += len(data)
                    continue
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self.reset_p and self._rng.random() < self.reset_p:
                    break
                dst.write(data)
                self.bytes[d] += len(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self.conns.discard(conn)
            conn.close()


class ProxyHub:
    """Owns the asyncio loop thread and every link."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: dict[str, Link] = {}
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the loop thread and return its result."""

        async def wrap() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def add(self, name: str, listen: str, target: str) -> Link:
        link = Link(self, name, listen, target)
        asyncio.run_coroutine_threadsafe(link._start(), self.loop).result(10)
        self.links[name] = link
        return link

    def heal_all(self) -> None:
        for link in self.links.values():
            link.heal()

    def close(self) -> None:
        for link in self.links.values():
            try:
                asyncio.run_coroutine_threadsafe(link._stop(), self.loop).result(5)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
