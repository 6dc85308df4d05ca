"""Who is calling: the authenticated identity (principal) of a gRPC caller.

Every rule that keeps one caller from acting for another keys on this string: a worker id is
held by one principal at a time (``schedd.server.workers``), and client request ids are scoped
to the principal that sent them (``Command.principal``, stamped by the service, never read by
apply from anywhere else).

Today the identity comes from the peer's TLS client certificate, when the transport verified
one: its SPIFFE id (a ``spiffe://`` URI SAN) if it has one, else ``cn:`` and its common name.
gRPC fills these properties only for a certificate it verified (Python servers either require
and verify client certificates, ``require_client_auth=True``, or do not request one), so they
are never the caller's unchecked claim. A caller without a verified certificate is
``"anonymous"``: all such callers share one identity,
so on a cluster without client certificates these rules protect callers from mistakes, not from
each other (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

ANONYMOUS = "anonymous"

#: Longest principal kept; longer identities are cut (they still name one caller per certificate).
MAX_PRINCIPAL_CHARS = 256

_SPIFFE_KEYS = (
    "peer_spiffe_id",
    "x509_uri_subject_alternative_name",
    "x509_subject_alternative_name",
)
_CN_KEY = "x509_common_name"


class _HasAuthContext(Protocol):
    def auth_context(self) -> Mapping[str, Sequence[bytes]]: ...


def principal(context: _HasAuthContext) -> str:
    """The caller's authenticated identity, or ``"anonymous"``: the principal the auth
    interceptor established (``token:<name>`` for a bearer token, the certificate's identity
    otherwise), else the certificate's identity read here."""
    from schedd.server.auth import call_principal

    established = call_principal()
    if established is not None:
        return _clean(established.name)
    try:
        auth = context.auth_context() or {}
    except Exception:  # a context without transport security information
        return ANONYMOUS
    return principal_from_auth(auth)


def principal_from_auth(auth: Mapping[str, Sequence[bytes]]) -> str:
    """``principal`` over an auth context mapping (gRPC's: property name -> list of bytes)."""
    for key in _SPIFFE_KEYS:
        for value in auth.get(key, ()):
            text = _text(value)
            if text.startswith("spiffe://"):
                return _clean(text)
    for value in auth.get(_CN_KEY, ()):
        text = _text(value)
        if text:
            return _clean("cn:" + text)
    return ANONYMOUS


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _clean(text: str) -> str:
    """No control characters (principals are parts of LMDB keys and of log lines)."""
    return "".join("?" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)[
        :MAX_PRINCIPAL_CHARS
    ]


def principal_of_call() -> str:
    """The principal the auth interceptor established for the call being served, or
    ``"anonymous"`` (an ``--insecure`` node, or outside a call)."""
    from schedd.server.auth import call_principal

    p = call_principal()
    return ANONYMOUS if p is None else _clean(p.name)
