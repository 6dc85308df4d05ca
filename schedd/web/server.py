"""Serving the dashboard from inside a node: uvicorn in a daemon thread of the node process.

The listening socket is bound when :class:`DashboardServer` is made, so a port in use is a
configuration error at start (exit 2 naming ``--http``), like ``--grpc`` and ``--metrics``.
uvicorn installs signal handlers only in the main thread (``Server.capture_signals``), so the
node's own SIGTERM handling (hand leadership over, then stop) is untouched, and ``log_config``
is None so uvicorn leaves the node's logging setup alone.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import uvicorn

from schedd.errors import InvalidArgument

log = logging.getLogger("schedd.web")

__all__ = ["DashboardServer", "parse_listen"]


def parse_listen(text: str, flag: str = "--http") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port); InvalidArgument naming ``flag``."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (sep and host and port.isdigit() and 0 <= int(port) < 65536):
        raise InvalidArgument(flag, f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class DashboardServer:
    """``app`` served on ``listen``: HTTPS with ``cert``/``key`` (PEM files), else plain HTTP."""

    def __init__(self, listen: str, app: Any, cert: str = "", key: str = "") -> None:
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise InvalidArgument("--http", f"cannot listen on {listen}: {e.strerror}") from None
        sock.listen(128)
        sock.set_inheritable(False)
        self._sock = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.https = bool(cert)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=cert or None,
            ssl_keyfile=key or None,
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}/"

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except Exception:
            log.exception("event=dashboard_stopped_on_error")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=3.0)
        self._sock.close()
