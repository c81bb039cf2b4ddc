"""The catalogue: a small Milvus collection recording which pipeline version (and checkpoint) embedded each
collection.

It lives beside the collections it describes, so it survives restarts and is shared by every server on
the same Milvus. Every change is flushed before it returns: the catalogue is what the next start trusts
when it reconciles the collections on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

CATALOGUE = "crossmodal_catalogue"


@dataclass(frozen=True)
class Embedder:
    """What made a collection's vectors: the pipeline version, and the checkpoint its towers come from
    ("" when they do not say, and for collections catalogued before checkpoints were recorded)."""

    pipeline: str
    version: int
    dimension: int
    checkpoint: str = ""


class Catalogue:
    def __init__(self, client) -> None:
        self._client = client
        self._ensure()

    def get(self, name: str) -> Embedder | None:
        found = self._client.query(CATALOGUE, ids=[name], output_fields=["info"])
        if not found:
            return None
        info = found[0]["info"]
        checkpoint = str(info.get("checkpoint", ""))
        return Embedder(info["pipeline"], int(info["version"]), int(info["dimension"]), checkpoint)

    def put(self, name: str, embedder: Embedder) -> None:
        info = {
            "pipeline": embedder.pipeline,
            "version": embedder.version,
            "dimension": embedder.dimension,
            "checkpoint": embedder.checkpoint,
        }
        self._client.upsert(CATALOGUE, [{"id": name, "vector": [1.0, 0.0], "info": info}])
        self._client.flush(CATALOGUE)

    def remove(self, names: list[str]) -> None:
        if names:
            self._client.delete(CATALOGUE, ids=names)
            self._client.flush(CATALOGUE)

    def names(self) -> list[str]:
        rows = self._client.query(CATALOGUE, filter='id != ""', output_fields=["id"])
        return sorted(row["id"] for row in rows)

    def _ensure(self) -> None:
        """Creates the catalogue, or finishes creating it: a crash between making the collection and
        indexing it leaves one that cannot be loaded."""
        from pymilvus import DataType

        index = self._client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        if not self._client.has_collection(CATALOGUE):
            schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; unused
            schema.add_field("info", DataType.JSON)
            self._client.create_collection(CATALOGUE, schema=schema, index_params=index)
        elif not self._client.list_indexes(CATALOGUE):
            self._client.create_index(CATALOGUE, index)
        self._client.load_collection(CATALOGUE)
