"""Request bodies that do not parse answer INVALID_ARGUMENT, on every service, with one log line at most.

gRPC parses a request with the method's deserializer before any servicer code runs; a DecodeError there
(random bytes, invalid UTF-8 in a string field) would answer UNKNOWN and log a traceback per call. This
interceptor wraps the deserializer of each unary-request method so a body that does not parse becomes an
`Undecodable` value, which the wrapped method answers with INVALID_ARGUMENT "request is not a valid <type>".
Such calls are counted in the metrics; the log says so at most once per interval, with the count.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from server.metrics import ServerMetrics

log = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class Undecodable:
    """What the wrapped deserializer returns for a body that does not parse."""

    message_type: str
    reason: str


class RateLimitedLog:
    """At most one warning per interval; the next one says how many were left out in between."""

    def __init__(self, interval_seconds: float = LOG_INTERVAL_SECONDS) -> None:
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._left_out = 0

    def warning(self, message: str, *args) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._interval:
                self._left_out += 1
                return
            left_out, self._left_out, self._last = self._left_out, 0, now
        suffix = f" ({left_out} more since the last such line)" if left_out else ""
        log.warning(message + suffix, *args)


def _message_type(deserializer) -> str:
    """The protobuf type a generated deserializer (`Message.FromString`) parses."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "request message"


def tolerant(deserializer):
    """`deserializer`, returning Undecodable instead of raising for a body that does not parse."""
    message_type = _message_type(deserializer)

    def deserialize(raw: bytes):
        try:
            return deserializer(raw)
        except (DecodeError, UnicodeDecodeError) as error:
            return Undecodable(message_type, str(error).split(": ", 1)[-1] or type(error).__name__)

    return deserialize


class UndecodableRequestInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, metrics: ServerMetrics | None = None, log_interval_seconds: float = LOG_INTERVAL_SECONDS
    ):
        self._metrics = metrics
        self._log = RateLimitedLog(log_interval_seconds)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.request_streaming
            or handler.response_streaming
            or handler.request_deserializer is None
            or not inspect.iscoroutinefunction(handler.unary_unary)
        ):
            return handler  # streaming methods (reflection) keep gRPC's own handling
        rpc = handler_call_details.method.rsplit("/", 1)[-1]
        behaviour = handler.unary_unary

        async def refuse_undecodable(request, context: grpc.aio.ServicerContext):
            if isinstance(request, Undecodable):
                await self._refuse(rpc, request, context)
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            refuse_undecodable,
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    async def _refuse(self, rpc: str, request: Undecodable, context: grpc.aio.ServicerContext) -> None:
        if self._metrics is not None:
            self._metrics.undecodable_requests.labels(rpc).inc()
            self._metrics.requests.labels(rpc, grpc.StatusCode.INVALID_ARGUMENT.name).inc()
        self._log.warning(
            "%s: a request body did not parse (%s) from %s", rpc, request.reason, context.peer()
        )
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request is not a valid {request.message_type}: {request.reason}",
        )
