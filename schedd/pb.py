"""The generated protobuf/gRPC modules, under short names.

``from schedd.pb import types_pb2, api_pb2, api_grpc, command_pb2``
"""

from __future__ import annotations

from schedd._protogen import ensure_generated

ensure_generated()

from schedd.v1 import api_pb2, command_pb2, types_pb2  # noqa: E402
from schedd.v1 import api_pb2_grpc as api_grpc  # noqa: E402

__all__ = ["api_grpc", "api_pb2", "command_pb2", "types_pb2"]
