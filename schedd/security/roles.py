"""Who may call what: principals, roles and the one table from RPC to required role.

Pure (no grpc, no I/O): the server's auth layer (:mod:`schedd.server.auth`) turns a call's
credentials into a :class:`Principal` and asks :func:`authorize`; the decision is unit-tested
here without a network.

The model (docs/security.md):

* Roles per namespace: ``reader`` (read jobs, runs, status), ``writer`` (reader + create, change,
  trigger, retry), ``admin`` (writer in that namespace), ``worker`` (take and complete firings of
  the granted queues; nothing else); and ``cluster-admin`` (every namespace, plus membership,
  leadership and tokens). Default deny: a principal without a matching grant is refused.
* A grant names a namespace or ``*`` (every namespace).
* Certificates carry their identity in a SPIFFE URI SAN, mapped by :func:`from_spiffe`:
  ``spiffe://schedd/node/<id>`` and ``spiffe://schedd/admin/<name>`` → cluster-admin;
  ``spiffe://schedd/ns/<ns>/<role>/<name>`` → ``<role>`` in ``<ns>``. Anything else authenticates
  (the CA signed it) but grants nothing.

Invariant: :data:`METHOD_ROLES` lists every RPC of every schedd service; a method missing from it
is refused (tests/unit/test_roles.py checks the table against the generated service descriptors).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "ANY_NAMESPACE",
    "ANY_PRINCIPAL",
    "DEFAULT_NAMESPACE",
    "METHOD_ROLES",
    "NAMESPACE_IN_STREAM",
    "PUBLIC_PREFIXES",
    "Decision",
    "Grant",
    "Principal",
    "Role",
    "authorize",
    "from_spiffe",
    "parse_grant",
]

ANY_NAMESPACE = "*"
#: the SPIFFE trust domain whose ids carry grants (others authenticate but grant nothing)
TRUST_DOMAIN = "schedd"
DEFAULT_NAMESPACE = "default"


class Role(enum.Enum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"
    WORKER = "worker"
    CLUSTER_ADMIN = "cluster-admin"


#: role held -> roles it implies (itself included)
_IMPLIES: dict[Role, frozenset[Role]] = {
    Role.READER: frozenset({Role.READER}),
    Role.WRITER: frozenset({Role.READER, Role.WRITER}),
    Role.ADMIN: frozenset({Role.READER, Role.WRITER, Role.ADMIN}),
    Role.WORKER: frozenset({Role.WORKER}),
    Role.CLUSTER_ADMIN: frozenset(Role),
}


@dataclass(frozen=True)
class Grant:
    """``role`` in ``namespace`` (``*`` = every namespace)."""

    role: Role
    namespace: str = DEFAULT_NAMESPACE

    def __str__(self) -> str:
        if self.role is Role.CLUSTER_ADMIN:
            return self.role.value
        return f"{self.namespace}:{self.role.value}"


def parse_grant(text: str) -> Grant:
    """``"cluster-admin"``, ``"ROLE"`` (namespace ``default``) or ``"NAMESPACE:ROLE"``.

    Raises ``ValueError`` naming the accepted roles."""
    ns, _, role_text = text.strip().rpartition(":")
    try:
        role = Role(role_text.strip().lower())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a role; use one of {', '.join(r.value for r in Role)}, "
            "optionally as NAMESPACE:ROLE"
        ) from None
    if role is Role.CLUSTER_ADMIN:
        return Grant(role, ANY_NAMESPACE)
    return Grant(role, ns.strip() or DEFAULT_NAMESPACE)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``name`` is what logs and the audit trail show
    (``token:<name>``, a SPIFFE id, or ``anonymous`` on an ``--insecure`` node)."""

    name: str
    grants: tuple[Grant, ...] = ()
    #: queues a worker principal may take firings from; empty = every queue of its namespaces
    queues: tuple[str, ...] = ()
    kind: str = "certificate"

    def holds(self, role: Role, namespace: str | None = DEFAULT_NAMESPACE) -> bool:
        """Does a grant give ``role`` in ``namespace`` (``None``: in some namespace)?"""
        return any(
            role in _IMPLIES[g.role]
            and (namespace is None or g.namespace in (namespace, ANY_NAMESPACE))
            for g in self.grants
        )

    @property
    def is_cluster_admin(self) -> bool:
        return any(g.role is Role.CLUSTER_ADMIN for g in self.grants)

    def may_serve(self, queue: str) -> bool:
        return not self.queues or queue in self.queues or self.is_cluster_admin


#: the principal of every call on a node started with --insecure: it may do everything
INSECURE = Principal("anonymous", (Grant(Role.CLUSTER_ADMIN, ANY_NAMESPACE),), kind="insecure")


def from_spiffe(uri: str) -> Principal:
    """The principal a certificate's SPIFFE id stands for (see the module docstring)."""
    parts = uri.removeprefix("spiffe://").split("/")
    if not uri.startswith("spiffe://") or parts[0] != TRUST_DOMAIN:
        return Principal(uri)
    if len(parts) == 3 and parts[1] in ("node", "admin") and parts[2]:
        return Principal(uri, (Grant(Role.CLUSTER_ADMIN, ANY_NAMESPACE),))
    if len(parts) == 5 and parts[1] == "ns" and parts[2] and parts[4]:
        try:
            role = Role(parts[3])
        except ValueError:
            return Principal(uri)
        if role is not Role.CLUSTER_ADMIN:
            return Principal(uri, (Grant(role, parts[2]),))
    return Principal(uri)


SERVICE = "schedd.v1."

#: full method name -> role required in the call's namespace. Every schedd RPC is listed.
METHOD_ROLES: dict[str, Role] = {
    f"/{SERVICE}JobService/CreateJob": Role.WRITER,
    f"/{SERVICE}JobService/CreateJobs": Role.WRITER,
    f"/{SERVICE}JobService/GetJob": Role.READER,
    f"/{SERVICE}JobService/ListJobs": Role.READER,
    f"/{SERVICE}JobService/DeleteJob": Role.WRITER,
    f"/{SERVICE}JobService/UpdateJob": Role.WRITER,
    f"/{SERVICE}JobService/PauseJob": Role.WRITER,
    f"/{SERVICE}JobService/ResumeJob": Role.WRITER,
    f"/{SERVICE}JobService/TriggerJob": Role.WRITER,
    f"/{SERVICE}JobService/BackfillJob": Role.WRITER,
    f"/{SERVICE}JobService/ExplainJob": Role.READER,
    f"/{SERVICE}JobService/GetDependencies": Role.READER,
    f"/{SERVICE}RunService/ListRuns": Role.READER,
    f"/{SERVICE}RunService/GetRun": Role.READER,
    f"/{SERVICE}RunService/CompleteRun": Role.WORKER,
    f"/{SERVICE}RunService/RetryRun": Role.WRITER,
    f"/{SERVICE}RunService/CancelRun": Role.WRITER,
    f"/{SERVICE}WorkerService/Connect": Role.WORKER,
    f"/{SERVICE}WorkerService/ListWorkers": Role.READER,
    f"/{SERVICE}ClusterService/GetNodeStatus": Role.READER,
    f"/{SERVICE}ClusterService/TransferLeadership": Role.CLUSTER_ADMIN,
    f"/{SERVICE}ClusterService/ListAudit": Role.CLUSTER_ADMIN,
    f"/{SERVICE}ClusterService/SetNamespaceQuota": Role.CLUSTER_ADMIN,
    f"/{SERVICE}ClusterService/GetNamespace": Role.READER,
    f"/{SERVICE}ClusterService/ListNamespaces": Role.CLUSTER_ADMIN,
    # the whole state, every namespace and the token hashes included
    f"/{SERVICE}ClusterService/SaveSnapshot": Role.CLUSTER_ADMIN,
    f"/{SERVICE}ClusterService/ListMembers": Role.READER,
    f"/{SERVICE}ClusterService/AddMember": Role.CLUSTER_ADMIN,
    f"/{SERVICE}ClusterService/RemoveMember": Role.CLUSTER_ADMIN,
    f"/{SERVICE}TokenService/CreateToken": Role.CLUSTER_ADMIN,
    f"/{SERVICE}TokenService/ListTokens": Role.CLUSTER_ADMIN,
    f"/{SERVICE}TokenService/RevokeToken": Role.CLUSTER_ADMIN,
}

#: methods every authenticated principal may call, whatever its roles: a node's own status. The
#: worker agent probes the liveness of its stream's node with it every heartbeat interval; a
#: worker that could not would tear its stream down again and again.
ANY_PRINCIPAL = frozenset({f"/{SERVICE}ClusterService/GetNodeStatus"})

#: method prefixes every caller may use, authenticated or not: health checks (load balancers,
#: Kubernetes probes) and reflection (grpcurl discovering the API; it reveals no data)
PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: for a refusal: the message, naming what the caller lacks and how to get it
    reason: str = ""
    #: True when the refusal is for missing credentials (UNAUTHENTICATED), not missing rights
    unauthenticated: bool = False
    details: dict[str, str] = field(default_factory=dict)


#: streaming methods whose namespace arrives in the stream's first message: the interceptor only
#: checks that the role is held in some namespace; the handler checks the one named
NAMESPACE_IN_STREAM = frozenset({f"/{SERVICE}WorkerService/Connect"})


def authorize(
    method: str, principal: Principal | None, namespace: str | None = DEFAULT_NAMESPACE
) -> Decision:
    """May ``principal`` call ``method`` in ``namespace`` (``None``: in some namespace, for
    :data:`NAMESPACE_IN_STREAM`)? ``principal`` ``None``: no credentials at all."""
    if method.startswith(PUBLIC_PREFIXES):
        return Decision(True)
    if principal is None:
        return Decision(
            False,
            "no credentials: pass a token (SCHEDD_TOKEN or SCHEDD_TOKEN_FILE, schedctl --token-file) "
            "or a client certificate (SCHEDD_CERT and SCHEDD_KEY)",
            unauthenticated=True,
        )
    need = METHOD_ROLES.get(method)
    if need is None:
        return Decision(False, f"{method} is not an allowed method")
    if method in ANY_PRINCIPAL:
        return Decision(True)
    if principal.holds(need, namespace):
        return Decision(True)
    short = method.rsplit("/", 1)[-1]
    scope = (
        "the cluster"
        if need is Role.CLUSTER_ADMIN
        else "any namespace"
        if namespace is None
        else f"namespace {namespace!r}"
    )
    held = ", ".join(str(g) for g in principal.grants) or "no roles"
    return Decision(
        False,
        f"{principal.name} may not call {short}: it needs the {need.value} role in {scope} "
        f"(it holds {held}); ask a cluster admin for a token with that role "
        "(schedctl token create)",
    )
