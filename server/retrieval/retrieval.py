"""Index, Search, Delete and list collections: the engine embeds, the vector store keeps and searches.

Operations are coroutines, like the engine's: the engine's embedding is awaited, and every call into the
vector store (blocking: Milvus Lite, or a Milvus server over the network) runs on a worker thread.

A collection remembers the pipeline and version that embedded it, and the checkpoint its towers come from.
Vectors of different checkpoints are not comparable, so indexing into or searching a collection is
accepted with a pipeline whose towers are the collection's checkpoint (its own pipeline version, or one
serving a variant of that checkpoint, such as an int8 image tower) and refused with any other. A variant's
vectors are within its measured cosine bound of the fp32 ones (README, "int8 variants": cosine with the
fp32 vector of the same input min >= 0.99, mean >= 0.995), so mixing them in one collection costs at most
that: no stored or query vector is further from the one the fp32 towers would have made.
Where either side names no checkpoint (a collection catalogued before checkpoints were recorded, or towers
whose files do not say), only the collection's own pipeline version is accepted. Requests that name no
model use the collection's own pipeline and version, so a collection keeps working when a newer version
is loaded.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from server.core.errors import CrossModalError, InvalidInput, LimitExceeded, NotAllowed, Unavailable
from server.core.types import ImageInput, Input, ModelRef, TextOutcome
from server.engine import Engine
from server.retrieval.store import (
    MAX_ID_CHARS,
    MODALITIES,
    Embedder,
    Hit,
    Row,
    VectorStore,
    check_collection_name,
)

DEFAULT_TOP_K = 10
MAX_TOP_K = 1024
MAX_METADATA_CHARS = 4096


@dataclass(frozen=True)
class IndexEntry:
    id: str
    item: Input
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexOutcome:
    indexed: int
    skipped: int
    errors: list[tuple[int, str, CrossModalError]]  # (position, id, why)
    collection_size: int
    models: list[tuple[str, int]]


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    query_text: TextOutcome | None
    models: list[tuple[str, int]]


@dataclass(frozen=True)
class CollectionSummary:
    name: str
    size: int
    embedder: Embedder


def store_errors(method):
    """The vector store not answering, or its disk failing, is UNAVAILABLE for the caller, with the
    store's location and reason."""

    @functools.wraps(method)
    async def guarded(self, *args, **kwargs):
        from pymilvus.exceptions import MilvusException  # here: importing pymilvus takes half a second

        try:
            return await method(self, *args, **kwargs)
        except (MilvusException, OSError) as error:
            store = self._store
            raise Unavailable(store.failure(error) if store else f"vector store: {error}") from error

    return guarded


class Retrieval:
    def __init__(self, engine: Engine, open_store: Callable[[], VectorStore]) -> None:
        self._engine = engine
        self._open_store = open_store
        self._store: VectorStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> VectorStore:
        """Opened on first use: a server that never indexes does not start Milvus Lite."""
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    async def _in_store(self, function, *args):
        """A blocking vector-store call, on a worker thread of the current call."""
        return await self._engine.offload(function, *args)

    async def _opened(self) -> VectorStore:
        return await self._in_store(lambda: self.store)

    @store_errors
    async def index(
        self, collection: str, entries: list[IndexEntry], ref: ModelRef, skip_existing: bool
    ) -> IndexOutcome:
        check_collection_name(collection)
        problems = self._check_entries(entries)
        store = await self._opened()
        embedder = await self._in_store(store.embedder, collection)
        ref = self._model_for(collection, ref, embedder)
        errors = [(position, entries[position].id, error) for position, error in sorted(problems.items())]
        valid = [(position, e) for position, e in enumerate(entries) if position not in problems]
        skipped: set[str] = set()
        if skip_existing and embedder is not None:
            skipped = await self._in_store(store.existing_ids, collection, [e.id for _, e in valid])
        todo = [(position, e) for position, e in valid if e.id not in skipped]
        models: list[tuple[str, int]] = []
        if todo:
            made, ref = self._embedder_of(ref)
            if embedder is not None:  # refused before any item is embedded
                self._check_embedder(collection, embedder, made)
            item_errors: dict[int, CrossModalError] = {}
            result = await self._engine.encode(ref, [e.item for _, e in todo], item_errors)
            models = result.models
            self._check_embedder(collection, await self._in_store(store.create, collection, made), made)
            rows = []
            for row, (position, entry) in enumerate(todo):
                if row in item_errors:
                    errors.append((position, entry.id, item_errors[row]))
                    continue
                modality = "image" if isinstance(entry.item, ImageInput) else "text"
                rows.append(Row(entry.id, result.embeddings[row], modality, entry.metadata))
            await self._in_store(store.upsert, collection, rows)
        exists = embedder is not None or bool(todo)  # any embedding run created the collection
        size = await self._in_store(store.size, collection) if exists else 0
        indexed = len(todo) - (len(errors) - len(problems))
        return IndexOutcome(indexed, len(skipped), sorted(errors, key=lambda e: e[0]), size, models)

    @store_errors
    async def search(
        self, collection: str, query: Input, top_k: int, modality: str, ref: ModelRef
    ) -> SearchOutcome:
        check_collection_name(collection)
        if not 0 <= top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be 0 (default {DEFAULT_TOP_K}) to {MAX_TOP_K}, got {top_k}")
        if modality not in ("", *MODALITIES):
            raise InvalidInput(f"modality must be '', 'image' or 'text', got {modality!r}")
        store = await self._opened()
        embedder = await self._in_store(store.require, collection)
        made, ref = self._embedder_of(self._model_for(collection, ref, embedder))
        self._check_embedder(collection, embedder, made)
        result = await self._engine.encode(ref, [query], field="query")
        vector = result.embeddings[0]
        hits = await self._in_store(
            store.search, collection, np.asarray(vector), top_k or DEFAULT_TOP_K, modality
        )
        return SearchOutcome(hits, result.texts[0] if result.texts else None, result.models)

    @store_errors
    async def delete(self, collection: str, ids: list[str], drop_collection: bool) -> int:
        check_collection_name(collection)
        if drop_collection:
            if ids:
                raise InvalidInput("give either ids or drop_collection, not both")
            return await self._in_store(lambda: self.store.drop(collection))
        if not ids:
            raise InvalidInput("ids: empty; name the items to delete, or set drop_collection")
        return await self._in_store(lambda: self.store.delete(collection, ids))

    @store_errors
    async def collections(self) -> list[CollectionSummary]:
        return await self._in_store(self._summaries)

    def _summaries(self) -> list[CollectionSummary]:
        store = self.store
        summaries = []
        for name in store.names():
            embedder = store.embedder(name)
            if embedder is not None:
                summaries.append(CollectionSummary(name, store.size(name), embedder))
        return summaries

    def _model_for(self, collection: str, ref: ModelRef, embedder: Embedder | None) -> ModelRef:
        """The request's model, or the collection's own pipeline and version when the request names none."""
        if embedder is None:
            return ref
        name = ref.name or embedder.pipeline
        version = ref.version or (embedder.version if name == embedder.pipeline else 0)
        return ModelRef(name, version)

    def _embedder_of(self, ref: ModelRef) -> tuple[Embedder, ModelRef]:
        """What the pipeline version `ref` resolves to now would record, and `ref` pinned to that version:
        the embedding must run on the version the collection was checked against."""
        pipeline = self._engine.pipeline(ref)
        made = Embedder(pipeline.name, pipeline.version, pipeline.embedding_dim, pipeline.checkpoint)
        return made, ModelRef(made.pipeline, made.version)

    @staticmethod
    def _check_embedder(collection: str, have: Embedder, made: Embedder) -> None:
        if not comparable(have, made):
            raise NotAllowed(
                f"collection '{collection}' holds vectors of pipeline '{have.pipeline}' version "
                f"{have.version} ({_described(have)}); this request embeds with '{made.pipeline}' version "
                f"{made.version} ({_described(made)}): index into a new collection, or use that version "
                "or a pipeline of the same checkpoint"
            )

    def _check_entries(self, entries: list[IndexEntry]) -> dict[int, CrossModalError]:
        """Request-level problems raise; an entry's own problem (id, metadata) only fails that entry, so
        a folder with one odd file still indexes, and resumes, past it."""
        if not entries:
            raise InvalidInput("items: empty; send at least one")
        if len(entries) > self._engine.limits.max_items:
            raise LimitExceeded(
                f"items: {len(entries)} given; the limit is {self._engine.limits.max_items} per request"
            )
        problems: dict[int, CrossModalError] = {}
        seen: set[str] = set()
        for position, entry in enumerate(entries):
            size = sum(len(k) + len(v) for k, v in entry.metadata.items())
            if not entry.id or len(entry.id) > MAX_ID_CHARS:
                problems[position] = InvalidInput(
                    f"items[{position}]: id must have 1 to {MAX_ID_CHARS} characters"
                )
            elif entry.id in seen:
                problems[position] = InvalidInput(
                    f"items[{position}]: id {entry.id!r} appears twice in the request"
                )
            elif size > MAX_METADATA_CHARS:
                problems[position] = InvalidInput(
                    f"items[{position}]: metadata has {size} characters; at most {MAX_METADATA_CHARS}"
                )
            seen.add(entry.id)
        return problems


def comparable(have: Embedder, made: Embedder) -> bool:
    """Whether vectors `made` may join (or search) a collection of vectors `have`: the same size, and the
    same checkpoint where both name one, else the same pipeline version."""
    if have.dimension != made.dimension:
        return False
    if have.checkpoint and made.checkpoint:
        return have.checkpoint == made.checkpoint
    return (have.pipeline, have.version) == (made.pipeline, made.version)


def _described(embedder: Embedder) -> str:
    checkpoint = f", checkpoint '{embedder.checkpoint}'" if embedder.checkpoint else ""
    return f"{embedder.dimension} dimensions{checkpoint}"
