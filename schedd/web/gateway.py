"""The dashboard's way into the cluster: SDK clients that carry the signed-in user's own token.

The dashboard never acts with an identity of its own. Each request is made by a
:class:`schedd.client.Client` (which follows the Raft leader like any SDK user) whose bearer
token is the user's; the node's gRPC servicers therefore apply exactly the validation, role
checks, namespaces, rate limits and audit records they apply to ``schedctl`` and the SDK.

With mutual TLS (``--tls-ca``) every gRPC client must present a certificate, so the channel
presents the node's own certificate. That certificate alone would be a cluster-admin identity,
which is why a token is REQUIRED here on a secure node: the server takes a call's bearer token
before its certificate, and :meth:`Gateway.client` refuses to build a client without one (no
call is ever sent on the certificate alone). On an ``--insecure`` node there is no
authentication at all, and the clients carry no token.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from schedd import errors
from schedd.client import Client
from schedd.sdk.credentials import Credentials

__all__ = ["ClusterAccess", "Gateway"]


@dataclass(frozen=True)
class ClusterAccess:
    """How the dashboard reaches the cluster: the nodes' gRPC addresses (this node first) and
    the TLS files of this node (``ca``: the CA the nodes' certificates chain to; ``cert`` and
    ``key``: presented for mutual TLS), or ``insecure`` for plaintext."""

    endpoints: tuple[str, ...]
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False


class Gateway:
    """SDK clients by (token, namespace), kept for reuse (at most ``keep`` of them; the least
    recently used one is closed first). Thread-safe."""

    def __init__(
        self, access: ClusterAccess, keep: int = 32, timeout: float = 5.0, retry_for: float = 8.0
    ) -> None:
        if not access.endpoints:
            raise errors.InvalidArgument("endpoints", "the dashboard needs at least one node")
        self.access = access
        self._keep = keep
        self._timeout = timeout
        self._retry_for = retry_for
        self._clients: OrderedDict[tuple[str, str], Client] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def needs_login(self) -> bool:
        """Whether callers must sign in with a token (every node but an ``--insecure`` one)."""
        return not self.access.insecure

    def _credentials(self, token: str | None) -> Credentials:
        a = self.access
        if a.insecure:
            return Credentials(insecure=True)
        if not token or not token.strip():
            # never send a call on the node certificate alone: see the module docstring
            raise errors.Unauthenticated("sign in with a token first")
        return Credentials(ca=a.ca, cert=a.cert, key=a.key, token=token.strip())

    def client(self, token: str | None, namespace: str = "") -> Client:
        """The client acting as ``token`` in ``namespace`` ("" = default). Raises
        Unauthenticated without a token on a secure node."""
        creds = self._credentials(token)
        key = (hashlib.sha256((creds.token or "").encode()).hexdigest(), namespace)
        with self._lock:
            got = self._clients.get(key)
            if got is not None:
                self._clients.move_to_end(key)
                return got
            got = Client(
                list(self.access.endpoints),
                credentials=creds,
                namespace=namespace or None,
                timeout=self._timeout,
                retry_for=self._retry_for,
            )
            self._clients[key] = got
            old = []
            while len(self._clients) > self._keep:
                old.append(self._clients.popitem(last=False)[1])
        for c in old:
            c.close()
        return got

    def check_token(self, token: str) -> str:
        """ "" when some node accepts ``token`` (GetNodeStatus: any authenticated caller), else
        the reason it was refused, for the login page."""
        try:
            client = self.client(token)
        except errors.SchedError as e:
            return e.message
        reasons: list[str] = []
        for ep in self.access.endpoints:
            try:
                client.node_status(ep, timeout=self._timeout)
                return ""
            except errors.Unauthenticated as e:
                reasons.append(e.message)
            except errors.SchedError as e:
                reasons.append(f"{ep}: {e.message}")
        self.forget(token)
        return reasons[0] if reasons else "no node answered"

    def forget(self, token: str | None) -> None:
        """Close the clients of ``token`` (sign-out, or a token a node refused)."""
        digest = hashlib.sha256((token or "").strip().encode()).hexdigest()
        with self._lock:
            gone = [k for k in self._clients if k[0] == digest]
            clients = [self._clients.pop(k) for k in gone]
        for c in clients:
            c.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for c in clients:
            c.close()


def endpoints_of(own: str, peers: Sequence[str]) -> tuple[str, ...]:
    """This node's address first (asked first; it follows leader hints), then the peers'."""
    out = [own]
    out.extend(p for p in peers if p and p not in out)
    return tuple(out)
