"""Indexing a folder of images (and a file of captions) into a collection, in resumable batches.

Every entry has a stable id (the image's path relative to the folder, or `caption:<line number>`), and
batches are sent with skip_existing, so running the same indexing again embeds only what the collection
does not hold yet: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.v1 import crossmodal_pb2 as pb

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")
DEFAULT_BATCH_SIZE = 32
# Half the default 64 MiB message limit: a batch of large photos is cut short instead of being refused
# whole. An image larger than this travels alone and the server judges it against its own limit.
MAX_BATCH_BYTES = 32 * 1024 * 1024
# A caption's metadata keeps its start only: servers bound metadata size, and the id finds the whole line.
MAX_METADATA_TEXT = 256
# Reported for an entry that could not be read here; the others are the server's status code names.
UNREADABLE = "UNREADABLE"


@dataclass(frozen=True)
class Entry:
    """One item to index; its content is read only when its batch is sent."""

    id: str
    size: int  # bytes it adds to a request, for cutting batches
    metadata: dict[str, str]
    load: Callable[[], pb.Item]


@dataclass(frozen=True)
class ItemFailure:
    id: str
    code: str  # a gRPC status code name, or UNREADABLE
    message: str


@dataclass
class IndexSummary:
    """Running totals of an indexing run."""

    total: int
    indexed: int = 0
    skipped: int = 0
    failures: list[ItemFailure] = field(default_factory=list)
    collection_size: int = 0

    @property
    def done(self) -> int:
        return self.indexed + self.skipped + len(self.failures)

    def as_dict(self, collection: str) -> dict:
        """The totals under IndexResponse's field names."""
        return {
            "collection": collection,
            "indexed": self.indexed,
            "skipped": self.skipped,
            "errors": [{"id": f.id, "code": f.code, "message": f.message} for f in self.failures],
            "collection_size": self.collection_size,
        }


def parse_extensions(value: str) -> tuple[str, ...]:
    """Extensions from a comma-separated list: 'jpg, .PNG' -> ("jpg", "png")."""
    extensions = tuple(part.strip().lstrip(".").lower() for part in value.split(",") if part.strip())
    if not extensions:
        raise ValueError(f"no file extensions in {value!r}")
    return extensions


def image_files(root: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[tuple[str, Path]]:
    """(id, path) of every file under `root` with one of the extensions (any case), sorted by id.

    The id is the path relative to `root` with '/' separators, so it is the same on every platform and
    on every run, which is what makes re-running resumable."""
    wanted = {e.lower() for e in extensions}
    found = []
    for folder, _subfolders, names in os.walk(root):
        for name in names:
            _stem, dot, extension = name.rpartition(".")
            if dot and extension.lower() in wanted:
                path = Path(folder, name)
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def image_entries(root: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Entry]:
    entries = []
    for item_id, path in image_files(root, extensions):
        size = path.stat().st_size
        metadata = {"path": item_id, "bytes": str(size)}
        entries.append(Entry(item_id, size, metadata, lambda path=path: pb.Item(image=path.read_bytes())))
    return entries


def caption_entries(path: Path) -> list[Entry]:
    """One text entry per non-blank line of a UTF-8 file, with id `caption:<line number>` (from 1)."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text:  # the server refuses empty texts; a blank line is no caption
            continue
        metadata = {"text": text[:MAX_METADATA_TEXT], "file": path.name, "line": str(number)}
        item = pb.Item(text=text)
        entries.append(Entry(f"caption:{number}", len(text.encode()), metadata, lambda item=item: item))
    return entries


def batches(
    entries: Sequence[Entry], batch_size: int, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[list[Entry]]:
    """Consecutive batches of at most `batch_size` entries and (unless one entry alone is larger)
    `max_bytes` bytes."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        if batch and (len(batch) == batch_size or size + entry.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry.size
    if batch:
        yield batch


def index_in_batches(
    client,
    collection: str,
    entries: Sequence[Entry],
    summary: IndexSummary,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model: str = "",
    version: int = 0,
) -> Iterator[tuple[int, list[ItemFailure]]]:
    """Sends the entries in batches with skip_existing, adding each response to `summary`; yields
    (entries in the batch, the batch's failures) after each batch.

    An item that fails alone is a failure of that item; a failed call (grpc.RpcError) ends the run, with
    `summary` counting what was done before it."""
    for batch in batches(entries, batch_size):
        failures = _send(client, collection, batch, summary, model, version)
        summary.failures += failures
        yield len(batch), failures


def _send(client, collection, batch, summary, model, version) -> list[ItemFailure]:
    items, ids, metadata, failures = _load(batch)
    if not items:
        return failures
    response = client.index(collection, items, ids, metadata, model, version, skip_existing=True)
    summary.indexed += response.indexed
    summary.skipped += response.skipped
    summary.collection_size = response.collection_size
    for error in response.errors:
        item_id = error.id or (ids[error.index] if 0 <= error.index < len(ids) else "?")
        failures.append(ItemFailure(item_id, error.code, error.message))
    return failures


def _load(batch: list[Entry]) -> tuple[list[pb.Item], list[str], list[dict[str, str]], list[ItemFailure]]:
    """The batch's items; a file that cannot be read (gone, no permission) fails alone."""
    items, ids, metadata, failures = [], [], [], []
    for entry in batch:
        try:
            items.append(entry.load())
        except OSError as error:
            failures.append(ItemFailure(entry.id, UNREADABLE, error.strerror or str(error)))
            continue
        ids.append(entry.id)
        metadata.append(entry.metadata)
    return items, ids, metadata, failures
