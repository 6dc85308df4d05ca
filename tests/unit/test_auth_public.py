"""Health checks and reflection need no credentials, also on a TLS port without client
certificates (a load balancer's probe), while every schedd method still refuses such a caller.
A real in-process gRPC server with TLS and the auth interceptor; no network beyond loopback."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from schedd.pb import api_grpc, api_pb2
from schedd.security.pki import DevPKI
from schedd.security.tls import ServerTLS, server_credentials
from schedd.server.auth import AuthInterceptor, TokenTable


class _Status(api_grpc.ClusterServiceServicer):
    def GetNodeStatus(self, request: object, context: object) -> api_pb2.NodeStatus:
        return api_pb2.NodeStatus(node_id="n1")


def test_health_needs_no_credentials_but_schedd_methods_do(tmp_path: Path) -> None:
    pki = DevPKI(str(tmp_path / "pki"))
    node = pki.node("n1")
    tokens = TokenTable(lambda: 0, lambda: [], lambda: 0)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[AuthInterceptor(tokens)]
    )
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    api_grpc.add_ClusterServiceServicer_to_server(_Status(), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(ServerTLS(node.cert, node.key)))
    server.start()
    try:
        ca = Path(pki.ca_path).read_bytes()
        with grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca)) as ch:
            answer = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as refused:
                api_grpc.ClusterServiceStub(ch).GetNodeStatus(
                    api_pb2.NodeStatusRequest(), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "token" in (refused.value.details() or "")
    finally:
        server.stop(0)
