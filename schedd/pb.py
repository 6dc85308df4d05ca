"""The generated protobuf/gRPC modules, under short names.

``from schedd.pb import types_pb2, api_pb2, api_grpc, command_pb2``

They are committed in ``schedd/v1`` (generated from ``proto/schedd/v1`` by
``scripts/gen_protos.py``), so importing them needs only grpcio and protobuf: no code generator,
no write access to the install location.
"""

from __future__ import annotations

from schedd.v1 import api_pb2, command_pb2, types_pb2
from schedd.v1 import api_pb2_grpc as api_grpc

__all__ = ["api_grpc", "api_pb2", "command_pb2", "types_pb2"]
