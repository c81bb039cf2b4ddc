"""What each RPC of the client sends: one function per client method, taking that method's parameters and
returning the `Call` to make (the stub method's name and its request). The blocking and the asyncio client
both build their requests here, so the two differ only in how they wait for the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from crossmodal.items import ItemLike, make_item, make_items
from crossmodal.v1 import crossmodal_pb2 as pb

Response = TypeVar("Response", bound=Message)


@dataclass(frozen=True)
class Call(Generic[Response]):
    """One unary call: `rpc` names the CrossModal stub method, whose `Response` the client returns as is."""

    rpc: str
    request: Message


def _spec(model: str, version: int) -> pb.ModelSpec:
    return pb.ModelSpec(name=model, version=version)


def _strings(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """Metadata values travel as strings (proto map<string, string>); numbers are converted for the caller."""
    return {str(key): str(value) for key, value in (metadata or {}).items()}


def encode(items: Sequence[ItemLike], model: str = "", version: int = 0) -> Call[pb.EncodeResponse]:
    return Call("Encode", pb.EncodeRequest(model=_spec(model, version), items=make_items(items)))


def compare(
    queries: Sequence[ItemLike], candidates: Sequence[ItemLike], model: str = "", version: int = 0
) -> Call[pb.CompareResponse]:
    request = pb.CompareRequest(
        model=_spec(model, version), queries=make_items(queries), candidates=make_items(candidates)
    )
    return Call("Compare", request)


def classify(
    items: Sequence[ItemLike],
    labels: Sequence[str],
    prompt_template: str = "",
    top_k: int = 0,
    model: str = "",
    version: int = 0,
) -> Call[pb.ClassifyResponse]:
    request = pb.ClassifyRequest(
        model=_spec(model, version),
        items=make_items(items),
        labels=list(labels),
        prompt_template=prompt_template,
        top_k=top_k,
    )
    return Call("Classify", request)


def translate(
    texts: Sequence[str],
    num_beams: int = 0,
    num_hypotheses: int = 0,
    max_length: int = 0,
    length_penalty: float = 0.0,
    model: str = "",
    version: int = 0,
) -> Call[pb.TranslateResponse]:
    """Each text's n-best English translations, best first; a beam setting of 0 means the model's default."""
    return Call(
        "Translate",
        pb.TranslateRequest(
            model=_spec(model, version),
            texts=list(texts),
            num_beams=num_beams,
            num_hypotheses=num_hypotheses,
            max_length=max_length,
            length_penalty=length_penalty,
        ),
    )


def repository_index(ready_only: bool = False) -> Call[pb.RepositoryIndexResponse]:
    return Call("RepositoryIndex", pb.RepositoryIndexRequest(ready_only=ready_only))


def load_model(name: str) -> Call[pb.LoadModelResponse]:
    return Call("LoadModel", pb.LoadModelRequest(name=name))


def unload_model(name: str) -> Call[pb.UnloadModelResponse]:
    return Call("UnloadModel", pb.UnloadModelRequest(name=name))


def index(
    collection: str,
    items: Sequence[ItemLike],
    ids: Sequence[str],
    metadata: Sequence[Mapping[str, object]] | None = None,
    model: str = "",
    version: int = 0,
    skip_existing: bool = False,
) -> Call[pb.IndexResponse]:
    """Adds items under the caller's ids (one metadata mapping per item, values sent as strings).

    Items that fail alone (e.g. a corrupt image) come back in `errors`; the others are indexed."""
    items, ids = list(items), list(ids)
    metadata = [{} for _ in ids] if metadata is None else list(metadata)
    # A silent zip would index items under the wrong ids; refuse before anything is sent.
    if not len(items) == len(ids) == len(metadata):
        raise ValueError(
            f"index: {len(items)} items, {len(ids)} ids and {len(metadata)} metadata entries; "
            "give one id (and one metadata mapping, when given) per item"
        )
    request = pb.IndexRequest(
        collection=collection,
        items=[
            pb.IndexItem(id=i, item=make_item(item), metadata=_strings(meta))
            for item, i, meta in zip(items, ids, metadata, strict=True)
        ],
        model=_spec(model, version),
        skip_existing=skip_existing,
    )
    return Call("Index", request)


def search(
    collection: str, query: ItemLike, top_k: int = 10, modality: str = "", model: str = "", version: int = 0
) -> Call[pb.SearchResponse]:
    """The `top_k` items nearest to `query`; `modality` "image" or "text" keeps only that kind."""
    request = pb.SearchRequest(
        collection=collection,
        query=make_item(query),
        top_k=top_k,
        modality=modality,
        model=_spec(model, version),
    )
    return Call("Search", request)


def delete(
    collection: str, ids: Sequence[str] = (), drop_collection: bool = False
) -> Call[pb.DeleteResponse]:
    request = pb.DeleteRequest(collection=collection, ids=list(ids), drop_collection=drop_collection)
    return Call("Delete", request)


def list_collections() -> Call[pb.ListCollectionsResponse]:
    return Call("ListCollections", pb.ListCollectionsRequest())
