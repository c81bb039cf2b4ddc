"""p5: retrieval on the committed demo models: how fast images are indexed, how long a search takes.

Indexing goes the way `crossmodal index` goes (the client's resumable batch indexer: Index calls of 32
images, one after another), so the figure is what someone indexing a folder sees. The collection is then
filled with captions (Index calls of 256 texts) to the wanted size, and sequential Search calls with
English caption queries are timed; a few Chinese queries, translated before they are embedded, are timed
too and kept among the raw numbers. Neither figure has a target.

The server stores its vectors in a Milvus Lite file in a temporary folder, or wherever the extra server
arguments say (e.g. --milvus-uri); the collection it uses is dropped before and after.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.data import chinese_sentences, english_captions, jpeg_images
from bench.figures import Figure
from bench.measure import latencies, percentile
from bench.serving import serving
from bench.settings import BenchSettings
from tools.local_server import ROOT

DEMO_REPOSITORY = ROOT / "model_repository"
COLLECTION = "crossmodal_bench"
INDEX_BATCH = 32  # what `crossmodal index` sends by default
FILL_BATCH = 256
TOP_K = 10
CHINESE_QUERIES = 24  # translation makes these slower; a few show by how much
SEARCH_QUERY_WORDS = (3, 8)  # people search with short phrases, not whole captions


def measure(
    settings: BenchSettings,
    say: Callable[[str], None],
    server_args: Sequence[str] = (),
    repository: Path = DEMO_REPOSITORY,
) -> list[Figure]:
    from crossmodal import CrossModalClient

    with (
        tempfile.TemporaryDirectory(prefix="crossmodal-bench-index-") as folder,
        serving(repository, store_arguments(server_args, Path(folder))) as address,
        CrossModalClient(address, timeout=600) as client,
    ):
        _drop_if_there(client)
        try:
            indexed = index_images(client, settings.index_images, say)
            filled = fill(client, settings.search_vectors, say)
            searched = search(client, settings.search_queries, say)
        finally:
            _drop_if_there(client)
    index_raw = {**indexed, "repository": str(repository)}
    search_raw = {**searched, **filled}
    return [
        Figure("p5_index_images_per_s", indexed["images_per_s"], index_raw),
        Figure("p5_search_p50_ms", searched["english_ms"]["p50"], search_raw),
    ]


def store_arguments(server_args: Sequence[str], folder: Path) -> list[str]:
    """The extra server arguments, plus a Milvus Lite file in `folder` unless they name a Milvus server."""
    if any(arg.startswith("--milvus-uri") for arg in server_args):
        return list(server_args)
    return [*server_args, "--index-path", str(folder / "index.db")]


def _drop_if_there(client) -> None:
    if COLLECTION in {c.name for c in client.list_collections().collections}:
        client.delete(COLLECTION, drop_collection=True)


def index_images(client, count: int, say: Callable[[str], None]) -> dict:
    """Images per second of indexing `count` distinct JPEGs, after one untimed call (which creates the
    collection and opens the store)."""
    from crossmodal.indexing import Entry, IndexSummary
    from crossmodal.v1 import crossmodal_pb2 as pb

    images = jpeg_images(count + 1, seed=0)
    entries = [
        Entry(f"images/{i:06d}.jpg", len(data), {}, lambda data=data: pb.Item(image=data))
        for i, data in enumerate(images)
    ]
    warmup, timed = entries[:1], entries[1:]
    _index_all(client, warmup, IndexSummary(total=1))
    say(f"indexing {count} JPEG images in calls of {INDEX_BATCH}")
    summary = IndexSummary(total=count)
    started = time.perf_counter()
    _index_all(client, timed, summary)
    seconds = time.perf_counter() - started
    say(f"{count / seconds:.1f} images/s ({seconds:.1f} s)")
    return {
        "images": count,
        "image_bytes_mean": sum(e.size for e in timed) / count,
        "batch": INDEX_BATCH,
        "seconds": seconds,
        "images_per_s": count / seconds,
    }


def _index_all(client, entries, summary) -> None:
    from crossmodal.indexing import index_in_batches

    for _count, _failures in index_in_batches(client, COLLECTION, entries, summary, INDEX_BATCH):
        pass
    if summary.failures or summary.indexed != len(entries):
        failure = summary.failures[0] if summary.failures else None
        raise RuntimeError(f"indexing for the benchmark failed: {summary.indexed} indexed; {failure}")


def fill(client, size: int, say: Callable[[str], None]) -> dict:
    """Adds captions until the collection holds `size` vectors."""
    have = _size(client)
    missing = max(0, size - have)
    say(f"filling the collection from {have} to {have + missing} vectors with captions")
    captions = english_captions(missing, seed=1)
    started = time.perf_counter()
    for start in range(0, missing, FILL_BATCH):
        batch = captions[start : start + FILL_BATCH]
        ids = [f"caption:{start + i}" for i in range(len(batch))]
        response = client.index(COLLECTION, batch, ids)
        if response.errors:
            raise RuntimeError(f"indexing captions for the benchmark failed: {response.errors[0]}")
    seconds = time.perf_counter() - started
    return {
        "collection_size": _size(client),
        "captions_added": missing,
        "captions_per_s": missing / seconds if missing else None,
    }


def _size(client) -> int:
    sizes = {c.name: c.size for c in client.list_collections().collections}
    return sizes.get(COLLECTION, 0)


def search(client, repeats: int, say: Callable[[str], None]) -> dict:
    """Latencies of sequential Search calls: `repeats` English queries, then a few Chinese ones."""
    english = itertools.cycle(english_captions(repeats, seed=2, words=SEARCH_QUERY_WORDS))
    chinese = itertools.cycle(chinese_sentences(CHINESE_QUERIES))
    say(f"{repeats} sequential Search calls (English text, top {TOP_K})")
    english_s = latencies(lambda: client.search(COLLECTION, next(english), TOP_K), repeats)
    chinese_repeats = min(repeats, CHINESE_QUERIES)
    chinese_s = latencies(lambda: client.search(COLLECTION, next(chinese), TOP_K), chinese_repeats)
    english_ms, chinese_ms = _spread(english_s), _spread(chinese_s)
    say(f"p50 {english_ms['p50']:.2f} ms (Chinese queries, translated first: {chinese_ms['p50']:.2f} ms)")
    return {"top_k": TOP_K, "english_ms": english_ms, "chinese_ms": chinese_ms, "calls": len(english_s)}


def _spread(seconds: list[float]) -> dict[str, float]:
    return {f"p{q}": percentile(seconds, q) * 1e3 for q in (10, 50, 90, 99)}
