"""Vector storage on Milvus through pymilvus: Milvus Lite in a file by default, or a Milvus server.

One Milvus collection per crossmodal collection (id, vector, modality, metadata), searched by inner product
over L2-normalised vectors (= cosine). Which pipeline version embedded a collection is kept in a small
catalogue collection beside them, so it survives restarts and is shared by every server on the same Milvus.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass

import numpy as np

from server.errors import InvalidInput, ModelNotFound

log = logging.getLogger(__name__)

CATALOGUE = "crossmodal_catalogue"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
MAX_ID_CHARS = 1024
TIMEOUT = 60.0  # seconds for any one Milvus call: a hung store must not hold a worker thread for ever
MODALITIES = ("image", "text")


def row_key(item_id: str) -> str:
    """The primary key of an item: a digest of the caller's id. Milvus builds filter expressions from
    primary keys as text, so any id (quotes, backslashes, any script) must never reach one as it is."""
    return hashlib.sha256(item_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Embedder:
    """What made a collection's vectors: only vectors of the same pipeline version are comparable."""

    pipeline: str
    version: int
    dimension: int


@dataclass(frozen=True)
class Row:
    id: str
    vector: np.ndarray
    modality: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    modality: str
    metadata: dict[str, str]


def check_collection_name(name: str) -> str:
    if not NAME.fullmatch(name) or name == CATALOGUE:
        raise InvalidInput(
            f"collection name {name!r}: use letters, digits and '_' (not starting with a digit), at most 200"
        )
    return name


class VectorStore:
    def __init__(self, uri: str, token: str = "") -> None:
        from pymilvus import MilvusClient  # imported here: servers that never index do not start Milvus Lite

        self._client = MilvusClient(uri=uri, token=token)
        self._lock = threading.Lock()  # creating and dropping collections
        self._loaded: set[str] = set()
        self._unsealed: set[str] = set()  # written since their last flush
        self._ensure_catalogue()
        log.info("vector store on %s", uri)

    def close(self) -> None:
        self._client.close()

    # -- collections -------------------------------------------------------------------------------------

    def embedder(self, name: str) -> Embedder | None:
        self._load(CATALOGUE)
        found = self._client.query(CATALOGUE, ids=[name], output_fields=["info"])
        if not found:
            return None
        info = found[0]["info"]
        return Embedder(info["pipeline"], int(info["version"]), int(info["dimension"]))

    def create(self, name: str, embedder: Embedder) -> Embedder:
        """Creates the collection for `embedder`, unless it exists; returns the embedder it really has
        (two first Index calls may race: the second must check against what the first created)."""
        from pymilvus import DataType

        with self._lock:
            existing = self.embedder(name)
            if existing is not None:
                return existing
            schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=embedder.dimension)
            schema.add_field("modality", DataType.VARCHAR, max_length=16)
            schema.add_field("metadata", DataType.JSON)
            index = self._client.prepare_index_params()
            index.add_index("vector", index_type="FLAT", metric_type="IP")  # exact search: results are stable
            self._client.create_collection(name, schema=schema, index_params=index)
            info = {
                "pipeline": embedder.pipeline,
                "version": embedder.version,
                "dimension": embedder.dimension,
            }
            self._client.upsert(CATALOGUE, [{"id": name, "vector": [1.0, 0.0], "info": info}])
            log.info("collection %s created for %s version %d", name, embedder.pipeline, embedder.version)
            return embedder

    def drop(self, name: str) -> int:
        with self._lock:
            size = self.size(name)
            self._client.drop_collection(name)
            self._client.delete(CATALOGUE, ids=[name])
            self._loaded.discard(name)
            self._unsealed.discard(name)
        return size

    def names(self) -> list[str]:
        self._load(CATALOGUE)
        return sorted(
            row["id"] for row in self._client.query(CATALOGUE, filter='id != ""', output_fields=["id"])
        )

    def size(self, name: str) -> int:
        self.require(name)
        return int(self._client.get_collection_stats(name)["row_count"])

    # -- rows --------------------------------------------------------------------------------------------

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        self.require(name)
        if not ids:
            return set()
        keys = [row_key(i) for i in ids]
        return {
            row["id"] for row in self._client.query(name, ids=keys, output_fields=["id"], timeout=TIMEOUT)
        }

    def upsert(self, name: str, rows: list[Row]) -> None:
        self.require(name)
        if rows:
            data = [
                {
                    "key": row_key(r.id),
                    "id": r.id,
                    "vector": r.vector.tolist(),
                    "modality": r.modality,
                    "metadata": r.metadata,
                }
                for r in rows
            ]
            self._client.upsert(name, data, timeout=TIMEOUT)
            self._unsealed.add(name)

    def delete(self, name: str, ids: list[str]) -> int:
        present = self.existing_ids(name, ids)
        if present:
            self._client.delete(name, ids=sorted(row_key(i) for i in present), timeout=TIMEOUT)
            self._unsealed.add(name)
        return len(present)

    def search(self, name: str, vector: np.ndarray, top_k: int, modality: str = "") -> list[Hit]:
        self.require(name)
        self._seal(name)
        found = self._client.search(
            name,
            data=[vector.tolist()],
            limit=top_k,
            filter=f'modality == "{modality}"' if modality else "",
            output_fields=["id", "modality", "metadata"],
            timeout=TIMEOUT,
            search_params={"metric_type": "IP"},
        )[0]
        return [
            Hit(
                hit["entity"]["id"],
                float(hit["distance"]),
                hit["entity"]["modality"],
                dict(hit["entity"]["metadata"] or {}),
            )
            for hit in found
        ]

    def require(self, name: str) -> Embedder:
        """The collection's embedder, the collection loaded for use; NOT_FOUND naming those there are."""
        embedder = self.embedder(name)
        if embedder is None:
            raise ModelNotFound(f"no collection named '{name}' (collections: {self.names()})")
        self._load(name)
        return embedder

    def _seal(self, name: str) -> None:
        """Flushes fresh writes before a search: Milvus scans unflushed rows one by one (10,000 of them
        cost ~75 ms a search here, ~7 ms once flushed), so indexing stays cheap and searching fast."""
        with self._lock:
            if name in self._unsealed:
                self._client.flush(name)
                self._unsealed.discard(name)

    def _load(self, name: str) -> None:
        """Collections opened from an earlier run are stored but not in memory: queries need them loaded."""
        if name not in self._loaded:
            self._client.load_collection(name)
            self._loaded.add(name)

    def _ensure_catalogue(self) -> None:
        from pymilvus import DataType

        if self._client.has_collection(CATALOGUE):
            return
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; unused
        schema.add_field("info", DataType.JSON)
        index = self._client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        self._client.create_collection(CATALOGUE, schema=schema, index_params=index)
