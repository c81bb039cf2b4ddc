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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from server.core.errors import LimitExceeded
from server.memory_budget import BUDGET_NAME, MemoryBudget, describe_bytes
from server.metrics import ServerMetrics

log = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 60.0
# Bodies below this are not worth a budget entry: max concurrent calls bounds what small ones hold.
MIN_BUDGETED_BODY_BYTES = 1 << 20
BODY_COPIES = 2  # the body gRPC holds and the message parsed from it


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


@dataclass(frozen=True)
class Decoded:
    """A parsed request and the size of the body it came from."""

    message: object
    body_bytes: int


def sized(deserialize):
    """`deserialize`, with the body's size kept beside what it returns."""

    def deserialize_sized(raw: bytes) -> Decoded:
        return Decoded(deserialize(raw), len(raw))

    return deserialize_sized


class UndecodableRequestInterceptor(grpc.aio.ServerInterceptor):
    """Also counts each large request body in the server's memory budget while its call runs: gRPC holds
    the body and the parsed message (about twice its size) until the call ends. A body that does not fit
    now is answered RESOURCE_EXHAUSTED naming the budget (the event loop never waits for memory)."""

    def __init__(
        self,
        metrics: ServerMetrics | None = None,
        budget: MemoryBudget | None = None,
        log_interval_seconds: float = LOG_INTERVAL_SECONDS,
    ):
        self._metrics = metrics
        self._budget = budget
        self._log = RateLimitedLog(log_interval_seconds)
        # Per method: the handler gRPC found and its wrapped one, made once rather than on every call
        # (a handler that differs from the one wrapped before is wrapped again).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.request_streaming
            or handler.response_streaming
            or handler.request_deserializer is None
        ):
            return handler  # streaming methods (reflection) keep gRPC's own handling
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        if not inspect.iscoroutinefunction(handler.unary_unary):
            return handler
        wrapped = self._wrap(method.rsplit("/", 1)[-1], handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, rpc: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` with its deserializer made tolerant and its body held in the memory budget."""
        behaviour = handler.unary_unary

        async def refuse_undecodable(decoded: Decoded, context: grpc.aio.ServicerContext):
            if isinstance(decoded.message, Undecodable):
                await self._refuse(rpc, decoded.message, context)
            with self._hold_body(rpc, decoded.body_bytes) as refusal:
                if refusal is not None:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
                return await behaviour(decoded.message, context)

        return grpc.unary_unary_rpc_method_handler(
            refuse_undecodable,
            request_deserializer=sized(tolerant(handler.request_deserializer)),
            response_serializer=handler.response_serializer,
        )

    @contextmanager
    def _hold_body(self, rpc: str, body_bytes: int) -> Iterator[str | None]:
        """Holds the body's memory in the budget for the call; yields why not when it does not fit."""
        if self._budget is None or body_bytes < MIN_BUDGETED_BODY_BYTES:
            yield None
            return
        what = f"{rpc}: request body of {describe_bytes(body_bytes)}"
        try:
            reservation = self._budget.try_reserve(BODY_COPIES * body_bytes, what)
        except LimitExceeded as error:
            yield str(error)
            return
        if reservation is None:
            yield (
                f"{what}: the server's {BUDGET_NAME} of {describe_bytes(self._budget.limit)} is in use "
                f"({describe_bytes(self._budget.used)}); retry later"
            )
            return
        with reservation:
            yield None

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
