"""Transport security and caller authentication: TLS/mTLS credentials and a bearer-token interceptor."""

from __future__ import annotations

import hmac

import grpc

from server.config import TlsFiles

# Health checks stay open: load balancers and orchestrators probe without credentials.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    client_ca = tls.client_ca.read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <token>` with UNAUTHENTICATED (health stays open)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token.strip()}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        if hmac.compare_digest(given.encode() if isinstance(given, str) else given, self._expected):
            return handler
        reason = "missing bearer token" if not given else "wrong bearer token"
        return _refusal(handler, f"{reason}: send metadata 'authorization: Bearer <token>'")


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers UNAUTHENTICATED."""

    async def refuse(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_streaming(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator, as response streams are

    kind = (handler.request_streaming, handler.response_streaming)
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if kind == (False, False):
        return grpc.unary_unary_rpc_method_handler(refuse, **codec)
    if kind == (True, False):
        return grpc.stream_unary_rpc_method_handler(refuse, **codec)
    if kind == (False, True):
        return grpc.unary_stream_rpc_method_handler(refuse_streaming, **codec)
    return grpc.stream_stream_rpc_method_handler(refuse_streaming, **codec)
