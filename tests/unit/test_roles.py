"""Who may call what (schedd.security.roles): the table covers every RPC, default deny, role
implication, namespaces and SPIFFE ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedd.pb import api_pb2
from schedd.security.roles import (
    ANY_PRINCIPAL,
    METHOD_ROLES,
    Grant,
    Principal,
    Role,
    authorize,
    from_spiffe,
    parse_grant,
)

ALL_METHODS = sorted(
    f"/{svc.full_name}/{m.name}"
    for svc in api_pb2.DESCRIPTOR.services_by_name.values()
    for m in svc.methods
)


def test_the_table_lists_every_rpc_and_nothing_else() -> None:
    assert sorted(METHOD_ROLES) == ALL_METHODS


def test_no_credentials_is_unauthenticated_except_health_and_reflection() -> None:
    for method in ALL_METHODS:
        d = authorize(method, None)
        assert not d.allowed and d.unauthenticated and "token" in d.reason
    assert authorize("/grpc.health.v1.Health/Check", None).allowed
    assert authorize("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None).allowed


def test_every_principal_may_ask_a_node_for_its_status() -> None:
    # the worker agent's liveness probe: a worker without it tore its stream down every
    # heartbeat interval (lag grew to seconds in the benchmark)
    worker = Principal("w", (Grant(Role.WORKER),))
    nobody = Principal("spiffe://elsewhere/x")
    for p in (worker, nobody):
        assert authorize("/schedd.v1.ClusterService/GetNodeStatus", p).allowed
    assert not authorize("/schedd.v1.ClusterService/GetNodeStatus", None).allowed


def test_an_unknown_method_is_refused_even_for_a_cluster_admin() -> None:
    admin = Principal("a", (Grant(Role.CLUSTER_ADMIN, "*"),))
    assert not authorize("/schedd.v1.JobService/DropEverything", admin).allowed


@pytest.mark.parametrize("held", list(Role))
def test_each_role_gets_exactly_the_methods_it_implies(held: Role) -> None:
    p = Principal("p", (Grant(held, "*" if held is Role.CLUSTER_ADMIN else "default"),))
    implied = {
        Role.READER: {Role.READER},
        Role.WRITER: {Role.READER, Role.WRITER},
        Role.ADMIN: {Role.READER, Role.WRITER, Role.ADMIN},
        Role.WORKER: {Role.WORKER},
        Role.CLUSTER_ADMIN: set(Role),
    }[held]
    for method in ALL_METHODS:
        d = authorize(method, p)
        expected = METHOD_ROLES[method] in implied or method in ANY_PRINCIPAL
        assert d.allowed == expected, (held, method)
        if not d.allowed:
            assert not d.unauthenticated
            assert METHOD_ROLES[method].value in d.reason and "p may not call" in d.reason


def test_grants_are_per_namespace() -> None:
    p = Principal("p", (Grant(Role.WRITER, "team-a"),))
    assert authorize("/schedd.v1.JobService/CreateJob", p, "team-a").allowed
    assert not authorize("/schedd.v1.JobService/CreateJob", p, "team-b").allowed
    assert not authorize("/schedd.v1.JobService/CreateJob", p).allowed  # "default"
    star = Principal("s", (Grant(Role.READER, "*"),))
    assert authorize("/schedd.v1.JobService/GetJob", star, "anything").allowed


@pytest.mark.parametrize(
    "text,grant",
    [
        ("reader", Grant(Role.READER, "default")),
        ("team-a:writer", Grant(Role.WRITER, "team-a")),
        ("cluster-admin", Grant(Role.CLUSTER_ADMIN, "*")),
        (" Worker ", Grant(Role.WORKER, "default")),
        ("*:reader", Grant(Role.READER, "*")),
    ],
)
def test_parse_grant(text: str, grant: Grant) -> None:
    assert parse_grant(text) == grant
    assert parse_grant(str(grant)) == grant


def test_parse_grant_refuses_unknown_roles_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="reader, writer, admin, worker, cluster-admin"):
        parse_grant("boss")


@pytest.mark.parametrize(
    "uri,grants",
    [
        ("spiffe://schedd/node/n1", (Grant(Role.CLUSTER_ADMIN, "*"),)),
        ("spiffe://schedd/admin/alice", (Grant(Role.CLUSTER_ADMIN, "*"),)),
        ("spiffe://schedd/ns/default/worker/w1", (Grant(Role.WORKER, "default"),)),
        ("spiffe://schedd/ns/team-a/reader/dash", (Grant(Role.READER, "team-a"),)),
        ("spiffe://schedd/ns/team-a/cluster-admin/x", ()),  # no escalation through a namespace
        ("spiffe://schedd/ns/team-a/boss/x", ()),
        ("spiffe://schedd/other", ()),
        ("spiffe://elsewhere/node/n1", ()),  # another trust domain grants nothing
        ("https://schedd/node/n1", ()),
        ("spiffe://schedd/node/", ()),
    ],
)
def test_spiffe_ids_map_to_grants(uri: str, grants: tuple[Grant, ...]) -> None:
    p = from_spiffe(uri)
    assert p.name == uri and p.grants == grants


def test_queue_grants_restrict_workers_only() -> None:
    w = Principal("w", (Grant(Role.WORKER),), queues=("reports",))
    assert w.may_serve("reports") and not w.may_serve("payments")
    assert Principal("any", (Grant(Role.WORKER),)).may_serve("payments")


@given(st.text(max_size=40))
def test_from_spiffe_never_raises_and_never_grants_cluster_admin_in_a_namespace(s: str) -> None:
    p = from_spiffe("spiffe://schedd/ns/" + s)
    assert all(g.role is not Role.CLUSTER_ADMIN for g in p.grants)
