"""Client library: one method per RPC, taking plain Python values and returning the response messages.

Items may be given as `str` (a text), `bytes` (an encoded image), `pathlib.Path` (an image file) or a
ready `crossmodal.v1.Item`. Errors surface as `grpc.RpcError` with the server's status code and message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc

ItemLike = str | bytes | Path | pb.Item
DEFAULT_MESSAGE_BYTES = 64 * 1024 * 1024


def text_item(text: str) -> pb.Item:
    return pb.Item(text=text)


def image_item(image: bytes | Path | str) -> pb.Item:
    """An image item from encoded bytes or a file path."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return pb.Item(image=data)


def make_item(value: ItemLike) -> pb.Item:
    if isinstance(value, pb.Item):
        return value
    if isinstance(value, str):
        return text_item(value)
    if isinstance(value, bytes | Path):
        return image_item(value)
    raise TypeError(f"cannot make an item of {type(value).__name__}; use str, bytes, Path or Item")


def _items(values: Iterable[ItemLike]) -> list[pb.Item]:
    return [make_item(v) for v in values]


def _spec(model: str, version: int) -> pb.ModelSpec:
    return pb.ModelSpec(name=model, version=version)


def _channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


class _Requests:
    """Builds request messages; shared by the blocking and the asyncio client."""

    @staticmethod
    def encode(items, model, version) -> pb.EncodeRequest:
        return pb.EncodeRequest(model=_spec(model, version), items=_items(items))

    @staticmethod
    def compare(queries, candidates, model, version) -> pb.CompareRequest:
        return pb.CompareRequest(
            model=_spec(model, version), queries=_items(queries), candidates=_items(candidates)
        )

    @staticmethod
    def classify(items, labels, prompt_template, top_k, model, version) -> pb.ClassifyRequest:
        return pb.ClassifyRequest(
            model=_spec(model, version),
            items=_items(items),
            labels=list(labels),
            prompt_template=prompt_template,
            top_k=top_k,
        )

    @staticmethod
    def translate(texts, num_beams, num_hypotheses, max_length, length_penalty, model, version):
        return pb.TranslateRequest(
            model=_spec(model, version),
            texts=list(texts),
            num_beams=num_beams,
            num_hypotheses=num_hypotheses,
            max_length=max_length,
            length_penalty=length_penalty,
        )

    @staticmethod
    def index(collection, items, ids, metadata, model, version, skip_existing) -> pb.IndexRequest:
        items, ids = list(items), list(ids)
        metadata = [{} for _ in ids] if metadata is None else list(metadata)
        # A silent zip would index items under the wrong ids; refuse before anything is sent.
        if not len(items) == len(ids) == len(metadata):
            raise ValueError(
                f"index: {len(items)} items, {len(ids)} ids and {len(metadata)} metadata entries; "
                "give one id (and one metadata mapping, when given) per item"
            )
        return pb.IndexRequest(
            collection=collection,
            items=[
                pb.IndexItem(id=i, item=make_item(item), metadata=_strings(meta))
                for item, i, meta in zip(items, ids, metadata, strict=True)
            ],
            model=_spec(model, version),
            skip_existing=skip_existing,
        )

    @staticmethod
    def search(collection, query, top_k, modality, model, version) -> pb.SearchRequest:
        return pb.SearchRequest(
            collection=collection,
            query=make_item(query),
            top_k=top_k,
            modality=modality,
            model=_spec(model, version),
        )

    @staticmethod
    def delete(collection, ids, drop_collection) -> pb.DeleteRequest:
        return pb.DeleteRequest(collection=collection, ids=list(ids), drop_collection=drop_collection)


def _strings(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """Metadata values travel as strings (proto map<string, string>); numbers are converted for the caller."""
    return {str(key): str(value) for key, value in (metadata or {}).items()}


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


class CrossModalClient:
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
        options = _channel_options(max_message_bytes)
        if channel is None:
            channel = (
                grpc.secure_channel(target, security.credentials(), options=options)
                if security.uses_tls
                else grpc.insecure_channel(target, options=options)
            )
        self._channel = channel
        self._stub = pb_grpc.CrossModalStub(self._channel)
        self._metadata = security.metadata()
        self.timeout = timeout

    def __enter__(self) -> CrossModalClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def encode(self, items: Sequence[ItemLike], model: str = "", version: int = 0) -> pb.EncodeResponse:
        return self._stub.Encode(
            _Requests.encode(items, model, version), timeout=self.timeout, metadata=self._metadata
        )

    def compare(
        self, queries: Sequence[ItemLike], candidates: Sequence[ItemLike], model: str = "", version: int = 0
    ) -> pb.CompareResponse:
        return self._stub.Compare(
            _Requests.compare(queries, candidates, model, version),
            timeout=self.timeout,
            metadata=self._metadata,
        )

    def classify(
        self,
        items: Sequence[ItemLike],
        labels: Sequence[str],
        prompt_template: str = "",
        top_k: int = 0,
        model: str = "",
        version: int = 0,
    ) -> pb.ClassifyResponse:
        request = _Requests.classify(items, labels, prompt_template, top_k, model, version)
        return self._stub.Classify(request, timeout=self.timeout, metadata=self._metadata)

    def translate(
        self,
        texts: Sequence[str],
        num_beams: int = 0,
        num_hypotheses: int = 0,
        max_length: int = 0,
        length_penalty: float = 0.0,
        model: str = "",
        version: int = 0,
    ) -> pb.TranslateResponse:
        request = _Requests.translate(
            texts, num_beams, num_hypotheses, max_length, length_penalty, model, version
        )
        return self._stub.Translate(request, timeout=self.timeout, metadata=self._metadata)

    def repository_index(self, ready_only: bool = False) -> pb.RepositoryIndexResponse:
        request = pb.RepositoryIndexRequest(ready_only=ready_only)
        return self._stub.RepositoryIndex(request, timeout=self.timeout, metadata=self._metadata)

    def load_model(self, name: str) -> pb.LoadModelResponse:
        request = pb.LoadModelRequest(name=name)
        return self._stub.LoadModel(request, timeout=self.timeout, metadata=self._metadata)

    def unload_model(self, name: str) -> pb.UnloadModelResponse:
        request = pb.UnloadModelRequest(name=name)
        return self._stub.UnloadModel(request, timeout=self.timeout, metadata=self._metadata)

    def index(
        self,
        collection: str,
        items: Sequence[ItemLike],
        ids: Sequence[str],
        metadata: Sequence[Mapping[str, object]] | None = None,
        model: str = "",
        version: int = 0,
        skip_existing: bool = False,
    ) -> pb.IndexResponse:
        """Adds items under the caller's ids (one metadata mapping per item, values sent as strings).

        Items that fail alone (e.g. a corrupt image) come back in `errors`; the others are indexed."""
        request = _Requests.index(collection, items, ids, metadata, model, version, skip_existing)
        return self._stub.Index(request, timeout=self.timeout, metadata=self._metadata)

    def search(
        self,
        collection: str,
        query: ItemLike,
        top_k: int = 10,
        modality: str = "",
        model: str = "",
        version: int = 0,
    ) -> pb.SearchResponse:
        """The `top_k` items nearest to `query`; `modality` "image" or "text" keeps only that kind."""
        request = _Requests.search(collection, query, top_k, modality, model, version)
        return self._stub.Search(request, timeout=self.timeout, metadata=self._metadata)

    def delete(
        self, collection: str, ids: Sequence[str] = (), drop_collection: bool = False
    ) -> pb.DeleteResponse:
        request = _Requests.delete(collection, ids, drop_collection)
        return self._stub.Delete(request, timeout=self.timeout, metadata=self._metadata)

    def list_collections(self) -> pb.ListCollectionsResponse:
        request = pb.ListCollectionsRequest()
        return self._stub.ListCollections(request, timeout=self.timeout, metadata=self._metadata)


class AsyncCrossModalClient:
    """asyncio client (grpc.aio). Use with `async with`, or await close()."""

    def __init__(
        self,
        target: str = "127.0.0.1:8001",
        timeout: float | None = 60.0,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
        security: Security | None = None,
    ) -> None:
        security = security or Security()
        options = _channel_options(max_message_bytes)
        self._channel = (
            grpc.aio.secure_channel(target, security.credentials(), options=options)
            if security.uses_tls
            else grpc.aio.insecure_channel(target, options=options)
        )
        self._stub = pb_grpc.CrossModalStub(self._channel)
        self._metadata = security.metadata()
        self.timeout = timeout

    async def __aenter__(self) -> AsyncCrossModalClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def encode(self, items: Sequence[ItemLike], model: str = "", version: int = 0) -> pb.EncodeResponse:
        return await self._stub.Encode(
            _Requests.encode(items, model, version), timeout=self.timeout, metadata=self._metadata
        )

    async def compare(
        self, queries: Sequence[ItemLike], candidates: Sequence[ItemLike], model: str = "", version: int = 0
    ) -> pb.CompareResponse:
        request = _Requests.compare(queries, candidates, model, version)
        return await self._stub.Compare(request, timeout=self.timeout, metadata=self._metadata)

    async def classify(
        self,
        items: Sequence[ItemLike],
        labels: Sequence[str],
        prompt_template: str = "",
        top_k: int = 0,
        model: str = "",
        version: int = 0,
    ) -> pb.ClassifyResponse:
        request = _Requests.classify(items, labels, prompt_template, top_k, model, version)
        return await self._stub.Classify(request, timeout=self.timeout, metadata=self._metadata)

    async def translate(
        self,
        texts: Sequence[str],
        num_beams: int = 0,
        num_hypotheses: int = 0,
        max_length: int = 0,
        length_penalty: float = 0.0,
        model: str = "",
        version: int = 0,
    ) -> pb.TranslateResponse:
        request = _Requests.translate(
            texts, num_beams, num_hypotheses, max_length, length_penalty, model, version
        )
        return await self._stub.Translate(request, timeout=self.timeout, metadata=self._metadata)

    async def repository_index(self, ready_only: bool = False) -> pb.RepositoryIndexResponse:
        request = pb.RepositoryIndexRequest(ready_only=ready_only)
        return await self._stub.RepositoryIndex(request, timeout=self.timeout, metadata=self._metadata)

    async def index(
        self,
        collection: str,
        items: Sequence[ItemLike],
        ids: Sequence[str],
        metadata: Sequence[Mapping[str, object]] | None = None,
        model: str = "",
        version: int = 0,
        skip_existing: bool = False,
    ) -> pb.IndexResponse:
        request = _Requests.index(collection, items, ids, metadata, model, version, skip_existing)
        return await self._stub.Index(request, timeout=self.timeout, metadata=self._metadata)

    async def search(
        self,
        collection: str,
        query: ItemLike,
        top_k: int = 10,
        modality: str = "",
        model: str = "",
        version: int = 0,
    ) -> pb.SearchResponse:
        request = _Requests.search(collection, query, top_k, modality, model, version)
        return await self._stub.Search(request, timeout=self.timeout, metadata=self._metadata)

    async def delete(
        self, collection: str, ids: Sequence[str] = (), drop_collection: bool = False
    ) -> pb.DeleteResponse:
        request = _Requests.delete(collection, ids, drop_collection)
        return await self._stub.Delete(request, timeout=self.timeout, metadata=self._metadata)

    async def list_collections(self) -> pb.ListCollectionsResponse:
        request = pb.ListCollectionsRequest()
        return await self._stub.ListCollections(request, timeout=self.timeout, metadata=self._metadata)
