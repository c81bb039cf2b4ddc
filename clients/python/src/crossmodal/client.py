"""Client library: one method per RPC, taking plain Python values and returning the response messages.

Items may be given as `str` (a text), `bytes` (an encoded image), `pathlib.Path` (an image file) or a
ready `crossmodal.v1.Item`. Errors surface as `grpc.RpcError` with the server's status code and message.

Both clients take their requests from `crossmodal.calls`; the blocking one waits on each call, the asyncio
one awaits it. Nothing else differs but their channels.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import MethodType, ModuleType
from typing import Any, get_args

import grpc

from crossmodal import calls
from crossmodal.calls import Call
from crossmodal.items import ItemLike, image_item, make_item, text_item
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc

__all__ = [
    "DEFAULT_MESSAGE_BYTES",
    "AsyncCrossModalClient",
    "CrossModalClient",
    "ItemLike",
    "Security",
    "image_item",
    "make_item",
    "text_item",
]

DEFAULT_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Security:
    """How to reach a server that uses TLS, mTLS or a bearer token (all optional)."""

    token: str | None = None  # sent as "authorization: Bearer <token>"
    tls: bool = False  # TLS with the system's trusted CAs (implied by any PEM below)
    root_certificates: bytes | None = None  # PEM CA that signed the server's certificate
    private_key: bytes | None = None  # client key and certificate, for mTLS
    certificate_chain: bytes | None = None

    @property
    def uses_tls(self) -> bool:
        return self.tls or any((self.root_certificates, self.private_key, self.certificate_chain))

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)


def _open_channel(transport: ModuleType, target: str, security: Security, max_message_bytes: int):
    """A channel from `transport`: `grpc` (blocking) or `grpc.aio`, which take the same arguments."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if security.uses_tls:
        return transport.secure_channel(target, security.credentials(), options=options)
    return transport.insecure_channel(target, options=options)


def _named_after(build: Callable[..., Call], method: Callable, owner: type) -> Callable:
    """`method` shows its builder's name, docstring and parameters (after `self`) to help() and inspect,
    and the builder's response type as what it returns."""
    signature = inspect.signature(build, eval_str=True)
    (response,) = get_args(signature.return_annotation)
    receiver = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__name__ = build.__name__
    method.__qualname__ = f"{owner.__qualname__}.{build.__name__}"
    method.__module__ = owner.__module__
    method.__doc__ = build.__doc__
    method.__signature__ = signature.replace(
        parameters=[receiver, *signature.parameters.values()], return_annotation=response
    )
    return method


class _RpcMethod:
    """A client method written once, as its request builder in `crossmodal.calls`; each client class makes it
    its own kind of method (`_method_from`: blocking, or a coroutine function)."""

    def __init__(self, build: Callable[..., Call]) -> None:
        self._build = build
        self._methods: dict[type, Callable] = {}

    def __get__(self, instance: object, owner: type) -> Callable:
        method = self._methods.get(owner)
        if method is None:
            method_from = getattr(owner, "_method_from", None)
            if method_from is None:  # the shared base class has no calls to make
                return self
            method = self._methods[owner] = _named_after(self._build, method_from(self._build), owner)
        return method if instance is None else MethodType(method, instance)


class _Client:
    """What both clients share: the stub over their channel, the deadline and metadata of every call, and
    one method per RPC. A client class says how its methods wait for a call: `_method_from(build)`."""

    def __init__(self, channel: Any, security: Security, timeout: float | None) -> None:
        self._channel = channel
        self._stub = pb_grpc.CrossModalStub(channel)
        self._metadata = security.metadata()
        self.timeout = timeout

    def _start(self, call: Call) -> Any:
        """Makes `call` on the stub: the response (blocking channel) or an awaitable of it (grpc.aio)."""
        return getattr(self._stub, call.rpc)(call.request, timeout=self.timeout, metadata=self._metadata)

    encode = _RpcMethod(calls.encode)
    compare = _RpcMethod(calls.compare)
    classify = _RpcMethod(calls.classify)
    translate = _RpcMethod(calls.translate)
    repository_index = _RpcMethod(calls.repository_index)
    load_model = _RpcMethod(calls.load_model)
    unload_model = _RpcMethod(calls.unload_model)
    index = _RpcMethod(calls.index)
    search = _RpcMethod(calls.search)
    delete = _RpcMethod(calls.delete)
    list_collections = _RpcMethod(calls.list_collections)


class CrossModalClient(_Client):
    """Blocking client. Use as a context manager, or call close()."""

    def __init__(
        self,
        target: str = "127.0.0.1:8001",
        timeout: float | None = 60.0,
        channel: grpc.Channel | None = None,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
        security: Security | None = None,
    ) -> None:
        security = security or Security()
        if channel is None:
            channel = _open_channel(grpc, target, security, max_message_bytes)
        super().__init__(channel, security, timeout)

    def __enter__(self) -> CrossModalClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Returns once the channel is connected; raises grpc.FutureTimeoutError after `timeout` seconds."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    @staticmethod
    def _method_from(build: Callable[..., Call]) -> Callable:
        def method(self: CrossModalClient, *args, **kwargs):
            return self._start(build(*args, **kwargs))

        return method


class AsyncCrossModalClient(_Client):
    """asyncio client (grpc.aio): the blocking client's methods as coroutines. Use with `async with`, or
    await close()."""

    def __init__(
        self,
        target: str = "127.0.0.1:8001",
        timeout: float | None = 60.0,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
        security: Security | None = None,
    ) -> None:
        security = security or Security()
        super().__init__(_open_channel(grpc.aio, target, security, max_message_bytes), security, timeout)

    async def __aenter__(self) -> AsyncCrossModalClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Returns once the channel is connected; raises grpc.FutureTimeoutError after `timeout` seconds,
        as the blocking client does."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError as timed_out:
            raise grpc.FutureTimeoutError(f"channel not ready within {timeout} s") from timed_out

    @staticmethod
    def _method_from(build: Callable[..., Call]) -> Callable:
        async def method(self: AsyncCrossModalClient, *args, **kwargs):
            return await self._start(build(*args, **kwargs))

        return method
