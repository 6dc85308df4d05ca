"""Requests that cannot be decoded are bad input: ``INVALID_ARGUMENT`` naming the field.

gRPC decodes a request before any schedd code runs, and answers a protobuf ``DecodeError``
(a ``string`` field that is not valid UTF-8, a truncated message) with ``INTERNAL: Exception
deserializing request!``, which reads as a server bug. :class:`DecodeInterceptor` wraps each
handler's deserializer: a request that does not decode becomes an :class:`Undecodable` marker,
and the handler answers ``INVALID_ARGUMENT`` instead, naming the field
(:func:`bad_utf8_field` finds it on the wire) before running anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

__all__ = ["DecodeInterceptor", "Undecodable", "bad_utf8_field"]

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Undecodable:
    """A request that did not decode; ``message`` is the INVALID_ARGUMENT text."""

    message: str


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def bad_utf8_field(data: bytes, desc: Descriptor, prefix: str = "") -> str:
    """The dotted name of the first ``string`` field of ``desc`` in the wire bytes ``data``
    (nested messages included) that is not valid UTF-8; ``""`` when there is none or the bytes
    are not a well-formed message."""
    i = 0
    try:
        while i < len(data):
            key, i = _varint(data, i)
            number, wire = key >> 3, key & 7
            if wire == _VARINT:
                _, i = _varint(data, i)
            elif wire == _I64:
                i += 8
            elif wire == _I32:
                i += 4
            elif wire == _LEN:
                size, i = _varint(data, i)
                chunk, i = data[i : i + size], i + size
                field = desc.fields_by_number.get(number)
                if field is None:
                    continue
                name = prefix + field.name
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return name
                elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type:
                    found = bad_utf8_field(chunk, field.message_type, name + ".")
                    if found:
                        return found
            else:  # groups: not used by schedd's messages
                return ""
    except IndexError:
        return ""
    return ""


def _tolerant(deserializer: Callable[[bytes], Any] | None, desc: Descriptor | None) -> Any:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            field = bad_utf8_field(data, desc) if desc is not None else ""
            if field:
                return Undecodable(f"{field}: is not valid UTF-8")
            return Undecodable(f"request: cannot be decoded as protobuf ({exc})")

    return decode


def _refuse(context: grpc.ServicerContext, bad: Undecodable) -> None:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad.message)


def _checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, Undecodable):
            _refuse(context, request)
        yield request


class DecodeInterceptor(grpc.ServerInterceptor):
    """See the module docstring. Handlers whose deserializer is not a protobuf ``FromString``
    (health, reflection) are wrapped the same way, without a field name."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        owner = getattr(handler.request_deserializer, "__self__", None)
        desc = getattr(owner, "DESCRIPTOR", None)
        decode = _tolerant(handler.request_deserializer, desc)
        common = {
            "request_deserializer": decode,
            "response_serializer": handler.response_serializer,
        }

        if handler.unary_unary is not None:
            uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, Undecodable):
                    _refuse(context, request)
                return uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **common)
        if handler.unary_stream is not None:
            us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                if isinstance(request, Undecodable):
                    _refuse(context, request)
                yield from us(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **common)
        if handler.stream_stream is not None:
            ss = handler.stream_stream

            def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                yield from ss(_checked(requests, context), context)

            return grpc.stream_stream_rpc_method_handler(stream_stream, **common)
        su = handler.stream_unary

        def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            return su(_checked(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **common)
