"""The gRPC side of the call runner, shared by both gRPC services (crossmodal.v1 and KServe): the
protocol-neutral statuses as gRPC codes, and servicer methods answered through the CallRunner."""

from __future__ import annotations

import functools

import grpc

from server.core.errors import Status, status_of
from server.protocols.common import CallFailed

GRPC_CODES = {status: grpc.StatusCode[status.value] for status in Status}  # the same canonical names


def status_code(error: BaseException) -> grpc.StatusCode:
    """The gRPC code a caller gets for `error`."""
    return GRPC_CODES[status_of(error)]


def grpc_handler(method):
    """A gRPC servicer method answered through its service's CallRunner (`self._runner`): errors abort
    the call with their gRPC status code and message."""
    rpc = method.__name__

    @functools.wraps(method)
    async def handler(self, request, context: grpc.aio.ServicerContext):
        try:
            return await self._runner.answer(rpc, lambda: method(self, request, context))
        except CallFailed as failure:
            await context.abort(GRPC_CODES[failure.status], failure.details)

    return handler
