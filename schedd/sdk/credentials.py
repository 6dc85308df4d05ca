"""How a client proves who it is and checks whom it talks to: TLS roots, a client certificate,
a bearer token, or an explicit ``insecure``.

One :class:`Credentials` value is shared by the SDK (sync and asyncio), the worker agent, the
shell worker and ``schedctl``; :meth:`Credentials.from_env` reads the variables ``schedd dev``
writes into ``DIR/env``:

=====================  ==========================================================
``SCHEDD_CA``          PEM file of the CA that signed the nodes' certificates
``SCHEDD_CERT``        client certificate (mutual TLS), with ``SCHEDD_KEY``
``SCHEDD_KEY``         its private key
``SCHEDD_TOKEN``       a bearer token (or ``SCHEDD_TOKEN_FILE``: a file holding one)
``SCHEDD_INSECURE``    ``1``: plaintext, for a node started with ``--insecure``
=====================  ==========================================================

Secure by default: without any of these a client still speaks TLS and verifies the nodes
against the system's trusted roots; plaintext happens only when asked for by name.

The token travels as ``authorization: Bearer <token>`` metadata on every call (passed per call,
not as gRPC call credentials: those run a Python plugin on a helper thread for each call).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schedd import errors

__all__ = ["Credentials"]


def _token_from_file(path: str, var: str) -> str:
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as e:
        raise errors.InvalidArgument(var, f"cannot read {path}: {e.strerror}") from None
    if not token:
        raise errors.InvalidArgument(var, f"{path} is empty")
    return token


@dataclass(frozen=True)
class Credentials:
    """``ca``/``cert``/``key``: PEM bytes or file paths (None: system roots / no client
    certificate); ``token``: a bearer token; ``insecure``: plaintext (ignores the rest)."""

    ca: str | bytes | None = None
    cert: str | bytes | None = None
    key: str | bytes | None = None
    token: str | None = None
    insecure: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """The credentials the ``SCHEDD_*`` variables describe (see the module docstring).
        Raises :class:`schedd.errors.InvalidArgument` naming the variable when one is unusable."""
        env = os.environ if env is None else env
        insecure = env.get("SCHEDD_INSECURE", "").strip().lower()
        if insecure not in ("", "0", "1", "true", "false", "yes", "no"):
            raise errors.InvalidArgument("SCHEDD_INSECURE", f"{insecure!r} is not 1 or 0")
        token = env.get("SCHEDD_TOKEN", "").strip() or None
        if token is None and env.get("SCHEDD_TOKEN_FILE"):
            token = _token_from_file(env["SCHEDD_TOKEN_FILE"], "SCHEDD_TOKEN_FILE")
        return cls(
            ca=env.get("SCHEDD_CA") or None,
            cert=env.get("SCHEDD_CERT") or None,
            key=env.get("SCHEDD_KEY") or None,
            token=token,
            insecure=insecure in ("1", "true", "yes"),
        )

    @classmethod
    def resolve(cls, given: Credentials | None) -> Credentials:
        return given if given is not None else cls.from_env()

    def with_token_file(self, path: str) -> Credentials:
        from dataclasses import replace

        return replace(self, token=_token_from_file(path, "--token-file"))

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying the token (empty without one)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def _tls(self) -> Any:
        from schedd.security.tls import TLSConfigError, channel_credentials

        try:
            return channel_credentials(self.ca, self.cert, self.key)
        except TLSConfigError as e:
            raise errors.InvalidArgument(e.flag, e.message) from None

    def check(self) -> None:
        """Read the certificate files now: raises :class:`schedd.errors.InvalidArgument` naming
        the variable when one is missing or not PEM."""
        if not self.insecure:
            self._tls()

    def channel(self, target: str, options: Any = None) -> Any:
        """A ``grpc.Channel`` to ``target``: TLS (verifying the node) unless ``insecure``."""
        import grpc

        if self.insecure:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, self._tls(), options=options)

    def aio_channel(self, target: str, options: Any = None) -> Any:
        """The ``grpc.aio`` equivalent of :meth:`channel`."""
        import grpc

        if self.insecure:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self._tls(), options=options)
