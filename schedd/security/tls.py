"""TLS material for the gRPC port and its clients: loading, checking, and reloading on rotation.

Server side, :func:`server_credentials` builds ``grpc.dynamic_ssl_server_credentials`` whose
fetcher re-reads the certificate, key and CA files when any of their modification times
changes; gRPC calls the fetcher before each new handshake, so a rotated certificate (written by
cert-manager, Vault agent or ``schedd dev``) is served to the next connection without a
restart, and existing connections keep theirs. A rotation that leaves a broken pair (a new
certificate with the old key, a half-written file) is logged and the last good material stays in
use: rotation can never take a node off the air.

Client side, :func:`channel_credentials` builds ``grpc.ssl_channel_credentials`` (plus the
client certificate for mutual TLS).

Failure contract: :func:`load_server_material` and :func:`channel_credentials` raise
:class:`TLSConfigError` naming the file and what to do; nothing here logs secrets.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

log = logging.getLogger("schedd.tls")

__all__ = [
    "ServerTLS",
    "TLSConfigError",
    "channel_credentials",
    "load_server_material",
    "server_credentials",
]


class TLSConfigError(ValueError):
    """A certificate, key or CA file is missing, unreadable or does not fit; ``flag`` names the
    option (or variable) that pointed at it."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag
        self.message = message


@dataclass(frozen=True)
class ServerTLS:
    """The node's certificate and key; ``ca``: the CA client certificates must chain to
    (given: every connection must present one, i.e. mutual TLS)."""

    cert: str
    key: str
    ca: str = ""


def _read(path: str, what: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TLSConfigError(flag, f"cannot read the {what} {path}: {e.strerror}") from None
    if b"-----BEGIN" not in data:
        raise TLSConfigError(flag, f"{path} is not a PEM file (no -----BEGIN line)")
    return data


def _check_pair(cert: bytes, key: bytes, cert_path: str) -> None:
    """Refuse a key that does not belong to the certificate (a half-done rotation)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        c = x509.load_pem_x509_certificate(cert)
        k = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        raise TLSConfigError("--tls-cert", f"cannot parse {cert_path}: {e}") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if c.public_key().public_bytes(enc, pub) != k.public_key().public_bytes(enc, pub):
        raise TLSConfigError(
            "--tls-key",
            f"the key does not belong to the certificate {cert_path}; install the matching pair",
        )


def load_server_material(tls: ServerTLS) -> tuple[bytes, bytes, bytes | None]:
    """(certificate chain, private key, client CA or None), read and checked."""
    cert = _read(tls.cert, "certificate", "--tls-cert")
    key = _read(tls.key, "private key", "--tls-key")
    _check_pair(cert, key, tls.cert)
    ca = _read(tls.ca, "CA certificate", "--tls-ca") if tls.ca else None
    return cert, key, ca


def _stamp(tls: ServerTLS) -> tuple[float, ...]:
    out = []
    for path in (tls.cert, tls.key, tls.ca):
        try:
            out.append(os.stat(path).st_mtime) if path else out.append(0.0)
        except OSError:
            out.append(-1.0)
    return tuple(out)


def server_credentials(
    tls: ServerTLS, on_reload: Callable[[], None] | None = None
) -> grpc.ServerCredentials:
    """Credentials for ``server.add_secure_port`` that follow certificate rotation (see the
    module docstring). Raises :class:`TLSConfigError` if the initial material is bad."""
    cert, key, ca = load_server_material(tls)
    require = ca is not None

    def config(c: bytes, k: bytes, a: bytes | None) -> Any:
        return grpc.ssl_server_certificate_configuration([(k, c)], root_certificates=a)

    lock = threading.Lock()
    state = {"stamp": _stamp(tls)}

    def fetch() -> Any:
        stamp = _stamp(tls)
        with lock:
            if stamp == state["stamp"]:
                return None
            state["stamp"] = stamp
        try:
            c, k, a = load_server_material(tls)
        except TLSConfigError as e:
            log.error("event=tls_reload_failed error=%r (the previous certificate stays in use)", e)
            return None
        if (a is not None) == require:
            log.info("event=tls_reloaded cert=%s", tls.cert)
            if on_reload is not None:
                on_reload()
            return config(c, k, a)
        log.error("event=tls_reload_failed error='the CA file appeared or vanished; restart'")
        return None

    return grpc.dynamic_ssl_server_credentials(
        config(cert, key, ca), fetch, require_client_authentication=require
    )


def channel_credentials(
    ca: str | bytes | None = None,
    cert: str | bytes | None = None,
    key: str | bytes | None = None,
) -> grpc.ChannelCredentials:
    """TLS channel credentials: ``ca`` (PEM bytes or a path; None = the system's roots) and,
    for mutual TLS, the client ``cert`` and ``key`` (both or neither)."""

    def load(v: str | bytes | None, what: str, var: str) -> bytes | None:
        if v is None or v == "":
            return None
        if isinstance(v, bytes):
            return v
        return _read(v, what, var)

    if bool(cert) != bool(key):
        raise TLSConfigError(
            "SCHEDD_CERT", "give both the client certificate and its key (SCHEDD_KEY), or neither"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=load(ca, "CA certificate", "SCHEDD_CA"),
        private_key=load(key, "client key", "SCHEDD_KEY"),
        certificate_chain=load(cert, "client certificate", "SCHEDD_CERT"),
    )
