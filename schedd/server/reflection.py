"""gRPC server reflection under both service names, ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection (1.85) ships only ``grpc_reflection.v1alpha``; current tools (grpcurl, Postman,
grpc-js based ones) ask for ``grpc.reflection.v1.ServerReflection`` first. The two protocols are
the same messages, field for field, under another package name, so the v1alpha servicer answers
v1 requests as they are on the wire: it is registered a second time under the v1 service name.
Reflection reveals the API's shape, not data; the auth layer lets every caller use it
(``schedd.security.roles.PUBLIC_PREFIXES``).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1 = "grpc.reflection.v1.ServerReflection"


def enable(server: grpc.Server, service_names: Sequence[str]) -> None:
    """Serve reflection of ``service_names`` (and of both reflection services) on ``server``."""
    names = [*service_names, V1ALPHA, V1]
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
