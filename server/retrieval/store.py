"""Vector storage on Milvus through pymilvus: Milvus Lite in a file by default, or a Milvus server.

One Milvus collection per crossmodal collection (id, vector, modality, metadata), searched by inner product
over L2-normalised vectors (= cosine). The catalogue beside them records which pipeline version embedded
each one.

Crash safety: creating writes the Milvus collection first and the catalogue entry second; dropping removes
the catalogue entry first and the collection second. So a collection without a catalogue entry never holds
acknowledged rows (an interrupted create or drop left it), and the store drops it: on start for Milvus
Lite (whose file only this server uses), when the name is created again for a Milvus server (which others
may share). A catalogue entry without its collection is removed when seen. Every write is flushed before it
returns, so an acknowledged row is in a committed segment: a later disk error cannot take it away.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.core.errors import InvalidInput, ModelNotFound, NotAllowed
from server.retrieval.catalogue import CATALOGUE, Catalogue, Embedder
from server.retrieval.crash_points import crash_point
from server.retrieval.lite import LiteServer, is_lite_uri

__all__ = ["CATALOGUE", "Embedder", "Hit", "Row", "VectorStore", "check_collection_name"]

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
MAX_ID_CHARS = 1024
TIMEOUT = 60.0  # seconds for any one Milvus call: a hung store must not hold a worker thread for ever
MODALITIES = ("image", "text")
DISK_ERROR = re.compile(r"\[Errno \d+\]|No space left|Read-only file system|Input/output error")
FIELDS = ("key", "id", "vector", "modality", "metadata")  # what a collection made by this server holds


def row_key(item_id: str) -> str:
    """The primary key of an item: a digest of the caller's id. Milvus builds filter expressions from
    primary keys as text, so any id (quotes, backslashes, any script) must never reach one as it is."""
    return hashlib.sha256(item_id.encode("utf-8")).hexdigest()


class CorruptIndex(NotAllowed):
    """A collection's files cannot be trusted; it is refused until restored or dropped."""


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

        self.location = uri
        self._lite = LiteServer(Path(uri)) if is_lite_uri(uri) else None
        try:
            self._client = (
                MilvusClient(uri=self._lite.uri, token="") if self._lite else MilvusClient(uri, token=token)
            )
            self._corrupt: dict[str, str] = dict(self._lite.corrupt) if self._lite else {}
            if CATALOGUE in self._corrupt:
                raise CorruptIndex(f"vector store catalogue refused: {self._corrupt[CATALOGUE]}")
            self._catalogue = Catalogue(self._client)
            self._lock = threading.Lock()  # creating and dropping collections
            self._loaded: set[str] = {CATALOGUE}
            self._reconcile()
        except BaseException:
            self.close()
            raise
        log.info("vector store on %s", uri)

    def close(self) -> None:
        if getattr(self, "_client", None) is not None:
            self._client.close()
        if self._lite is not None:
            self._lite.close()

    def failure(self, error: Exception) -> str:
        """What the caller is told when the store fails: where it is, and for a disk error, how full."""
        reason = getattr(error, "message", None) or str(error)
        text = f"vector store {self.location}: {reason}"
        if self._lite is not None and DISK_ERROR.search(reason):
            free = shutil.disk_usage(self._lite.data_dir.parent).free
            text += (
                f" (disk error writing {self._lite.data_dir}, {free} bytes free there; this call's rows may "
                "be stored or not, rows acknowledged before are kept)"
            )
        return text

    # -- collections -------------------------------------------------------------------------------------

    def embedder(self, name: str) -> Embedder | None:
        if name in self._corrupt:
            raise CorruptIndex(
                f"collection '{name}' refused: {self._corrupt[name]}; restore the file (the previous "
                "version is beside it) and restart, or drop the collection"
            )
        return self._catalogue.get(name)

    def create(self, name: str, embedder: Embedder) -> Embedder:
        """Creates the collection for `embedder`, unless it exists; returns the embedder it really has
        (two first Index calls may race: the second must check against what the first created)."""
        from pymilvus import DataType

        with self._lock:
            existing = self.embedder(name)
            if existing is not None:
                return existing
            self._clear_leftovers(name)
            schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=embedder.dimension)
            schema.add_field("modality", DataType.VARCHAR, max_length=16)
            schema.add_field("metadata", DataType.JSON)
            index = self._client.prepare_index_params()
            index.add_index("vector", index_type="FLAT", metric_type="IP")  # exact search: results are stable
            self._client.create_collection(name, schema=schema, index_params=index)
            crash_point("create:collection_made")
            self._catalogue.put(name, embedder)
            crash_point("create:catalogued")
            log.info("collection %s created for %s version %d", name, embedder.pipeline, embedder.version)
            return embedder

    def drop(self, name: str) -> int:
        """Drops a collection (a corrupt one too: dropping is how it is given up); returns its size."""
        with self._lock:
            corrupt = name in self._corrupt
            if not corrupt and self._catalogue.get(name) is None:
                raise self._not_found(name)
            size = 0 if corrupt else self.size(name)
            self._catalogue.remove([name])
            crash_point("drop:uncatalogued")
            if corrupt and self._lite is not None:
                self._lite.discard_refused(name)  # set aside: the library does not hold it
            else:
                self._client.drop_collection(name)
            crash_point("drop:dropped")
            self._loaded.discard(name)
            self._corrupt.pop(name, None)
        return size

    def names(self) -> list[str]:
        """The catalogued collections; entries whose collection is gone are removed on the way."""
        catalogued = self._catalogue.names()
        present = set(self._client.list_collections())
        present |= set(self._corrupt)  # set aside, refused by name until restored or dropped
        missing = [name for name in catalogued if name not in present]
        if missing:
            log.warning("catalogue entries without a collection removed: %s", missing)
            self._catalogue.remove(missing)
        return [name for name in catalogued if name in present]

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
        """Returns once the rows are committed to disk (flushed), so they survive any later failure."""
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
            self._client.flush(name, timeout=TIMEOUT)

    def delete(self, name: str, ids: list[str]) -> int:
        present = self.existing_ids(name, ids)
        if present:
            self._client.delete(name, ids=sorted(row_key(i) for i in present), timeout=TIMEOUT)
            self._client.flush(name, timeout=TIMEOUT)
        return len(present)

    def search(self, name: str, vector: np.ndarray, top_k: int, modality: str = "") -> list[Hit]:
        self.require(name)
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
            raise self._not_found(name)
        self._load(name)
        return embedder

    def _not_found(self, name: str) -> ModelNotFound:
        return ModelNotFound(f"no collection named '{name}' (collections: {self._catalogue.names()})")

    def _load(self, name: str) -> None:
        """Collections opened from an earlier run are stored but not in memory: queries need them loaded."""
        if name not in self._loaded:
            self._client.load_collection(name)
            self._loaded.add(name)

    # -- repair ------------------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Brings the catalogue and the collections back into agreement after a crash."""
        self.names()  # removes catalogue entries without a collection
        if self._lite is None:
            return  # on a shared Milvus another server may be half-way through a create right now
        catalogued = set(self._catalogue.names())
        for name in sorted(set(self._client.list_collections()) - catalogued - {CATALOGUE}):
            log.warning("collection %s has no catalogue entry (an interrupted create or drop): dropped", name)
            self._client.drop_collection(name)
            self._corrupt.pop(name, None)

    def _clear_leftovers(self, name: str) -> None:
        """Before creating `name`: what an interrupted create or drop of it left behind goes."""
        if self._lite is not None:
            self._lite.remove_unfinished(name)
        if not self._client.has_collection(name):
            return
        fields = [f["name"] for f in self._client.describe_collection(name)["fields"]]
        if tuple(fields) != FIELDS:
            raise NotAllowed(
                f"collection '{name}': Milvus holds a collection of that name that this server did not "
                f"make (fields {fields}); choose another name"
            )
        log.warning("collection %s has no catalogue entry (an interrupted create or drop): dropped", name)
        self._client.drop_collection(name)
        self._loaded.discard(name)
