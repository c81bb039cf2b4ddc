"""Transport security and caller authentication: TLS/mTLS credentials and a bearer-token interceptor."""

from __future__ import annotations

import hmac
import ssl
from pathlib import Path

import grpc

from server.core.config import TlsFiles
from server.core.errors import StartupError

# Health checks stay open: load balancers and orchestrators probe without credentials.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Credentials from files checked first: gRPC itself reports a bad certificate or key only as a
    failed bind, so each file is read and parsed here and a problem names the file and the reason."""
    cert, key = _read("--tls-cert", tls.cert), _read("--tls-key", tls.key)
    client_ca = _read("--tls-client-ca", tls.client_ca) if tls.client_ca else None
    _check_pem(tls, cert, key, client_ca)
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _read(flag: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StartupError(f"cannot read {flag} {path}: {error.strerror}") from error


def _check_pem(tls: TlsFiles, cert: bytes, key: bytes, client_ca: bytes | None) -> None:
    """The certificate and key must be PEM, parse, and belong together; the client CA must be PEM."""
    for flag, path, data, marker in (
        ("--tls-cert", tls.cert, cert, b"-----BEGIN CERTIFICATE-----"),
        ("--tls-key", tls.key, key, b"PRIVATE KEY-----"),
        ("--tls-client-ca", tls.client_ca, client_ca or b"", b"-----BEGIN CERTIFICATE-----"),
    ):
        if path is not None and marker not in data:
            raise StartupError(f"{flag} {path}: not a PEM file (no '{marker.decode().strip('-')}' block)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert, tls.key)
        if client_ca is not None:
            context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
    except ssl.SSLError as error:
        raise StartupError(
            f"--tls-cert {tls.cert} / --tls-key {tls.key}"
            + (f" / --tls-client-ca {tls.client_ca}" if tls.client_ca else "")
            + f": unusable ({error.reason or error}; is the key the certificate's own?)"
        ) from error


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
    """A handler that answers UNAUTHENTICATED without reading the request.

    It is a request-streaming handler whatever the method's kind: gRPC then reads request messages only
    when the handler asks for them, which this one never does, so a refused caller's body is neither
    buffered whole nor parsed (a unary handler would get it read and deserialized first)."""

    async def refuse(request_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_streaming(request_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator, as response streams are

    codec = {"request_deserializer": _unread, "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_streaming, **codec)
    return grpc.stream_unary_rpc_method_handler(refuse, **codec)


def _unread(raw: bytes) -> None:
    """Never called with a body (the refusal reads none); parses nothing if it were."""
    return None
