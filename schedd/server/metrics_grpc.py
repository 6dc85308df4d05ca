"""gRPC server metrics: every call counted by method and status code, unary calls timed.

:class:`MetricsInterceptor` goes first in the server's interceptor list, so it also counts
the calls the authentication interceptor refuses (UNAUTHENTICATED, PERMISSION_DENIED).
Method labels are the full method names the server has handlers for
(``/schedd.v1.JobService/CreateJob``); a call to a method the server does not know is not
counted, so a client cannot mint label values. Streaming responses (the workers' Connect
stream, which lives for hours) are counted when they end but not timed: their durations
would only fill the histogram's last bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter

from schedd.server.metrics import RPC_BUCKETS, Histogram, Series


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts ``schedd_grpc_handled_total{method, code}`` and times unary responses in
    ``schedd_grpc_handling_seconds{method, code}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._handled = Counter(
            "schedd_grpc_handled_total",
            "gRPC calls completed on this node, by full method name and status code.",
            ["method", "code"],
            registry=registry,
        )
        self._seconds = Histogram(
            "schedd_grpc_handling_seconds",
            "Time to answer a unary-response gRPC call, by method and status code.",
            RPC_BUCKETS,
            ["method", "code"],
            registry=registry,
        )
        # (method, code) -> bound children: .labels() takes a lock and builds a tuple per call
        self._bound: dict[tuple[str, str], tuple[Any, Series]] = {}
        self._lock = threading.Lock()

    def _record(self, method: str, code: str, seconds: float | None) -> None:
        got = self._bound.get((method, code))
        if got is None:
            with self._lock:
                got = self._bound.setdefault(
                    (method, code),
                    (self._handled.labels(method, code), self._seconds.child(method, code)),
                )
        got[0].inc()
        if seconds is not None:
            got[1].observe(seconds)

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        record = self._record

        if handler.unary_unary is not None or handler.stream_unary is not None:
            unary_in = handler.unary_unary is not None
            inner = handler.unary_unary if unary_in else handler.stream_unary

            def unary(request: Any, context: Any) -> Any:
                started = time.perf_counter()
                try:
                    response = inner(request, context)
                except BaseException:
                    record(method, _code(context, "UNKNOWN"), time.perf_counter() - started)
                    raise
                record(method, _code(context, "OK"), time.perf_counter() - started)
                return response

            make = (
                grpc.unary_unary_rpc_method_handler
                if unary_in
                else grpc.stream_unary_rpc_method_handler
            )
            return make(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        unary_req = handler.unary_stream is not None
        inner_stream = handler.unary_stream if unary_req else handler.stream_stream

        def streaming(request: Any, context: Any) -> Iterator[Any]:
            unset = "UNKNOWN"  # raised without setting a code: what gRPC sends
            try:
                yield from inner_stream(request, context)
                unset = "OK"
            except GeneratorExit:  # the client went away (gRPC closes the generator)
                unset = "CANCELLED"
                raise
            finally:
                record(method, _code(context, unset), None)

        make_stream = (
            grpc.unary_stream_rpc_method_handler
            if unary_req
            else grpc.stream_stream_rpc_method_handler
        )
        return make_stream(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _code(context: Any, unset: str) -> str:
    """The call's status code name: the one the handler set (``context.abort``,
    ``set_code``), else ``unset``."""
    code = context.code()
    if code is not None:
        return str(getattr(code, "name", code))
    return unset
