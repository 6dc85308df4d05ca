"""Authentication and authorisation of every gRPC call, in one place.

:class:`AuthInterceptor` wraps each schedd method handler (unary and streaming alike). Before the
handler runs it works out the caller's :class:`~schedd.security.roles.Principal`:

1. a bearer token (``authorization: Bearer <secret>`` metadata): its SHA-256 is looked up in the
   replicated token table (:class:`TokenTable`); revoked or expired tokens are refused;
2. else the client certificate's SPIFFE id (mutual TLS), from ``context.auth_context()``:
   interceptors cannot see the certificate, which is why this wraps the handler rather than
   deciding in ``intercept_service``;
3. else nobody: ``UNAUTHENTICATED``.

then asks :func:`schedd.security.roles.authorize` (``PERMISSION_DENIED`` with a message naming the
missing role). Health checks and reflection pass without credentials. The principal is available
to the handler through :func:`current_principal` (the worker stream checks queue grants with it).

On a node started with ``--insecure`` every call is the :data:`~schedd.security.roles.INSECURE`
principal, which may do everything: the operator chose that, and the node says so in its log.

Every mutating call (every method that does not only need ``reader``) leaves one structured
``event=audit`` log line: who, which method, the outcome code and the time taken.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from schedd import namespaces
from schedd.pb import types_pb2
from schedd.sdk.endpoints import LEADER_METADATA_KEY
from schedd.security.roles import (
    INSECURE,
    METHOD_ROLES,
    NAMESPACE_IN_STREAM,
    Grant,
    Principal,
    Role,
    authorize,
    from_spiffe,
    parse_grant,
)
from schedd.server import identity
from schedd.state import keys

log = logging.getLogger("schedd.audit")

__all__ = ["AuthInterceptor", "TokenTable", "current_principal", "secret_hash"]

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "schedd_principal", default=None
)


def call_principal() -> Principal | None:
    """The principal the interceptor established for the call this thread is serving (None
    outside an intercepted call)."""
    return _PRINCIPAL.get()


#: the caller of a method open to everyone (health, reflection) that brought no credentials
NOBODY = Principal("unauthenticated", (), kind="none")


def current_principal() -> Principal:
    """The principal of the call this thread is serving (INSECURE outside a call)."""
    return _PRINCIPAL.get() or INSECURE


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def token_principal(tok: types_pb2.Token) -> Principal:
    grants: list[Grant] = []
    for g in tok.grants:
        try:
            grants.append(parse_grant(g))
        except ValueError:
            continue  # validated on create; an unknown role from a newer version grants nothing
    return Principal(f"token:{tok.name}", tuple(grants), tuple(tok.queues), kind="token")


class TokenTable:
    """The replicated tokens by secret hash, reloaded when ``meta.tokens_version`` moves.

    ``read_version()`` and ``read_all()`` read the node's committed state (LMDB); a revocation
    therefore takes effect on a node as soon as it has applied the entry.
    """

    def __init__(
        self,
        read_version: Callable[[], int],
        read_all: Callable[[], list[types_pb2.Token]],
        now_ms: Callable[[], int],
    ) -> None:
        self._read_version = read_version
        self._read_all = read_all
        self._now_ms = now_ms
        self._version = -1
        self._by_hash: dict[bytes, types_pb2.Token] = {}
        self._revoked: set[bytes] = set()
        self._lock = threading.Lock()
        self._bootstrap: types_pb2.Token | None = None

    def accept_bootstrap(self, tok: types_pb2.Token) -> None:
        """Accept this node's bootstrap token at once, before the leader has recorded it, and
        until a token named like it is revoked in the replicated state."""
        self._bootstrap = tok
        self._version = -1

    def _refresh(self) -> None:
        version = self._read_version()
        if version == self._version:
            return
        with self._lock:
            if version == self._version:
                return
            every = self._read_all()
            by_hash = {t.secret_sha256: t for t in every if not t.revoked_ms}
            self._revoked = {t.secret_sha256 for t in every if t.revoked_ms}
            boot = self._bootstrap
            if boot is not None and not any(t.name == boot.name for t in every):
                by_hash.setdefault(boot.secret_sha256, boot)
            self._by_hash = by_hash
            self._version = version

    def lookup(self, secret: str) -> tuple[Principal | None, str]:
        """(principal, "") for a valid token, else (None, why)."""
        self._refresh()
        digest = secret_hash(secret)
        tok = self._by_hash.get(digest)
        if tok is None:
            if digest in self._revoked:
                return None, "the token was revoked; create a new one (schedctl token create)"
            return None, UNKNOWN_TOKEN
        if tok.expires_ms and tok.expires_ms <= self._now_ms():
            return None, f"the token {tok.name!r} has expired; create a new one"
        return token_principal(tok), ""


def _metadata_token(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, secret = value.partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    return None


def _certificate_principal(context: grpc.ServicerContext) -> Principal | None:
    """The certificate's principal: its SPIFFE id's grants (schedd.security.roles.from_spiffe),
    named as schedd.server.identity names it; None without a verified certificate."""
    name = identity.principal_from_auth(context.auth_context() or {})
    if name == identity.ANONYMOUS:
        return None
    if name.startswith("spiffe://"):
        return from_spiffe(name)
    return Principal(name)  # authenticated by the CA, no SPIFFE id: an identity without grants


UNKNOWN_TOKEN = "the token is unknown; create one (schedctl token create)"


class AuthInterceptor(grpc.ServerInterceptor):
    """See the module docstring. ``tokens``: None on an ``--insecure`` node.

    ``leader_hint``: None when this node leads, else the leader's gRPC address ("" unknown). A
    token this node does not know may be one the leader has just created and this node has not
    applied yet, so a follower answers it UNAVAILABLE with the leader's address (clients follow
    it); only the leader, which answered CreateToken after applying it, says UNAUTHENTICATED."""

    def __init__(
        self,
        tokens: TokenTable | None,
        insecure: bool = False,
        leader_hint: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._tokens = tokens
        self._insecure = insecure
        self._leader_hint = leader_hint

    def principal(self, context: grpc.ServicerContext) -> tuple[Principal | None, str]:
        if self._insecure:
            return INSECURE, ""
        secret = _metadata_token(context)
        if secret is not None and self._tokens is not None:
            return self._tokens.lookup(secret)
        return _certificate_principal(context), ""

    def _check(self, method: str, context: grpc.ServicerContext, request: Any = None) -> Principal:
        principal, why = self.principal(context)
        if principal is None and why == UNKNOWN_TOKEN:
            hint = self._leader_hint()
            if hint is not None:
                context.set_trailing_metadata(((LEADER_METADATA_KEY, hint),))
                context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "this node does not know the token (a token created a moment ago reaches "
                    "every node within a heartbeat); ask the leader"
                    + (f" at {hint}" if hint else ""),
                )
        if principal is None and why:
            log.info("event=denied method=%s reason=%r", method, why)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        ns = None if method in NAMESPACE_IN_STREAM else request_namespace(request)
        decision = authorize(method, principal, ns)
        if not decision.allowed:
            code = (
                grpc.StatusCode.UNAUTHENTICATED
                if decision.unauthenticated
                else grpc.StatusCode.PERMISSION_DENIED
            )
            log.info(
                "event=denied method=%s principal=%s code=%s",
                method,
                principal.name if principal else "-",
                code.name,
            )
            context.abort(code, decision.reason)
        # allowed without credentials (health checks, reflection): a principal with no grants
        return principal if principal is not None else NOBODY

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        audited = METHOD_ROLES.get(method, Role.READER) is not Role.READER
        check = self._check

        def audit(principal: Principal, started: float, code: str) -> None:
            if audited:
                log.info(
                    "event=audit principal=%s method=%s code=%s ms=%.1f",
                    principal.name,
                    method.rsplit("/", 1)[-1],
                    code,
                    (time.monotonic() - started) * 1000,
                )

        def outcome(context: Any, exc: BaseException | None) -> str:
            code = getattr(context, "code", lambda: None)()
            if code is not None:
                return getattr(code, "name", str(code))
            return "OK" if exc is None else "ERROR"

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: Any) -> Any:
                principal = check(method, context, request)
                token = _PRINCIPAL.set(principal)
                started = time.monotonic()
                try:
                    response = inner_uu(request, context)
                except BaseException as e:
                    audit(principal, started, outcome(context, e))
                    raise
                finally:
                    _PRINCIPAL.reset(token)
                audit(principal, started, outcome(context, None))
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            inner_ss = handler.stream_stream

            def stream_stream(request_iterator: Any, context: Any) -> Iterator[Any]:
                principal = check(method, context)
                token = _PRINCIPAL.set(principal)
                started = time.monotonic()
                try:
                    yield from inner_ss(request_iterator, context)
                finally:
                    _PRINCIPAL.reset(token)
                    audit(principal, started, outcome(context, None))

            return grpc.stream_stream_rpc_method_handler(
                stream_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: Any) -> Iterator[Any]:
                principal = check(method, context, request)
                token = _PRINCIPAL.set(principal)
                try:
                    yield from inner_us(request, context)
                finally:
                    _PRINCIPAL.reset(token)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner_su = handler.stream_unary

        def stream_unary(request_iterator: Any, context: Any) -> Any:
            principal = check(method, context)
            token = _PRINCIPAL.set(principal)
            try:
                return inner_su(request_iterator, context)
            finally:
                _PRINCIPAL.reset(token)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def request_namespace(request: Any) -> str:
    """The namespace a request acts in, for authorisation: its ``namespace`` field (an
    UpdateJob's ``job.namespace``), else the namespace its ``run_id`` names, else ``default``.
    Not validated here: a malformed namespace is granted to nobody but a cluster admin, and the
    handler then answers INVALID_ARGUMENT naming the field."""
    holder = namespaces.carrier(request)
    if holder is not None:
        return str(holder.namespace) or namespaces.DEFAULT
    # no request, one that did not decode (schedd.server.decode), or one naming a run
    if "run_id" in getattr(getattr(request, "DESCRIPTOR", None), "fields_by_name", ()):
        return namespaces.of_run_id(str(request.run_id))
    return namespaces.DEFAULT


def bootstrap_token(
    secret: str, name: str = "bootstrap"
) -> types_pb2.Token:  # the record proposed by a leader that finds no tokens
    return types_pb2.Token(
        name=name,
        secret_sha256=secret_hash(secret),
        grants=[str(Grant(Role.CLUSTER_ADMIN, "*"))],
        created_by="bootstrap",
    )


def read_tokens_version(get: Callable[[str, bytes], bytes | None]) -> int:
    raw = get("meta", keys.TOKENS_VERSION)
    return 0 if raw is None else keys.from_be64(raw)
