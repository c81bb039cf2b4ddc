"""How long and how hard each measurement runs: the full run and the quick `--tiny` one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchSettings:
    serve_seconds: float  # measured window of each load test through gRPC
    serve_warmup_seconds: float  # same load, untimed, first: batcher, thread pools and caches settle
    sweep_seconds: float  # per batch size of an in-process throughput sweep
    translate_repeats: int  # timed calls per translation engine and batch (median reported)
    overhead_repeats: int  # timed Compare calls each over gRPC and in process
    concurrency: int = 32  # concurrent calls in flight in the load tests
    texts_per_request: int = 8
    image_batches: tuple[int, ...] = (1, 8, 16, 32)
    photo_batches: tuple[int, ...] = (1, 4, 8, 16)  # p6 baselines: a batch of 12 MP photos is seconds
    photos_per_size: int = 0  # p6: distinct photos of each size; 0: bench.photos' defaults
    text_batches: tuple[int, ...] = (8, 32, 64)
    index_images: int = 500  # p5: JPEG images indexed, timed
    search_vectors: int = 10_000  # p5: collection size for the Search latency (images + captions)
    search_queries: int = 200  # p5: timed Search calls

    def __post_init__(self) -> None:
        if min(self.serve_seconds, self.sweep_seconds) <= 0 or self.serve_warmup_seconds < 0:
            raise ValueError("durations must be positive (warm-up: not negative)")
        if min(self.translate_repeats, self.overhead_repeats, self.concurrency, self.texts_per_request) < 1:
            raise ValueError("repeats, concurrency and texts per request must be at least 1")
        if min(self.index_images, self.search_vectors, self.search_queries) < 1:
            raise ValueError("retrieval images, vectors and queries must be at least 1")


FULL = BenchSettings(
    serve_seconds=15.0, serve_warmup_seconds=5.0, sweep_seconds=4.0, translate_repeats=7, overhead_repeats=300
)
TINY = BenchSettings(
    serve_seconds=2.0,
    serve_warmup_seconds=0.5,
    sweep_seconds=0.3,
    translate_repeats=3,
    overhead_repeats=40,
    photo_batches=(1, 2),
    photos_per_size=2,
    index_images=40,
    search_vectors=500,
    search_queries=20,
)
