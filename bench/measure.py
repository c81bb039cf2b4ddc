"""Timing utilities: percentiles, repeated latencies, best-batch throughput, concurrent throughput."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks, as numpy's default does."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latencies(call: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of `repeats` sequential calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


def summarise(seconds: Sequence[float]) -> dict[str, float]:
    """Milliseconds: median, p10, p90, min, and the count."""
    return {
        "median_ms": statistics.median(seconds) * 1e3,
        "p10_ms": percentile(seconds, 10) * 1e3,
        "p90_ms": percentile(seconds, 90) * 1e3,
        "min_ms": min(seconds) * 1e3,
        "repeats": len(seconds),
    }


def throughput(run: Callable[[], object], items_per_run: int, min_seconds: float, min_runs: int = 3) -> float:
    """Items per second of back-to-back runs, after one untimed run (first-run allocations)."""
    run()
    runs = 0
    started = time.perf_counter()
    while True:
        run()
        runs += 1
        elapsed = time.perf_counter() - started
        if runs >= min_runs and elapsed >= min_seconds:
            return runs * items_per_run / elapsed


@dataclass(frozen=True)
class BatchSweep:
    per_batch: dict[int, float]  # batch size -> items per second

    @property
    def best_batch(self) -> int:
        return max(self.per_batch, key=self.per_batch.__getitem__)

    @property
    def best(self) -> float:
        return self.per_batch[self.best_batch]

    def as_dict(self, unit: str) -> dict:
        return {
            f"best_{unit}_per_s": self.best,
            "best_batch": self.best_batch,
            f"{unit}_per_s_by_batch": {str(b): v for b, v in self.per_batch.items()},
        }


def sweep_batches(
    make_run: Callable[[int], Callable[[], object]],
    batch_sizes: Sequence[int],
    min_seconds: float,
    progress: Callable[[str], None] = lambda _line: None,
) -> BatchSweep:
    """Throughput at each batch size; `make_run(b)` prepares the inputs and returns the call to time."""
    per_batch = {}
    for batch in batch_sizes:
        per_batch[batch] = throughput(make_run(batch), batch, min_seconds)
        progress(f"batch {batch:>3}: {per_batch[batch]:9.1f}/s")
    return BatchSweep(per_batch)


@dataclass(frozen=True)
class LoadResult:
    items_per_s: float
    requests: int
    seconds: float
    latency_ms: dict[str, float]

    def as_dict(self, unit: str) -> dict:
        return {
            f"{unit}_per_s": self.items_per_s,
            "requests": self.requests,
            "seconds": self.seconds,
            "request_latency_ms": self.latency_ms,
        }


async def closed_loop(
    call: Callable[[int], Awaitable[object]],
    items_per_call: int,
    concurrency: int,
    seconds: float,
    warmup_seconds: float,
) -> LoadResult:
    """`concurrency` callers each issue `call(i)` back to back, first for the warm-up, then for `seconds`.

    A caller starts no call after the deadline, and the window ends when the last call returns, so every
    counted item was served inside the window and the in-flight tail is not lost.
    """
    if warmup_seconds > 0:
        await _callers(call, concurrency, warmup_seconds)
    started = time.perf_counter()
    timings = await _callers(call, concurrency, seconds)
    elapsed = time.perf_counter() - started
    return LoadResult(
        items_per_s=len(timings) * items_per_call / elapsed,
        requests=len(timings),
        seconds=elapsed,
        latency_ms={
            "p50": percentile(timings, 50) * 1e3,
            "p90": percentile(timings, 90) * 1e3,
            "p99": percentile(timings, 99) * 1e3,
        },
    )


async def _callers(call: Callable[[int], Awaitable[object]], concurrency: int, seconds: float) -> list[float]:
    deadline = time.perf_counter() + seconds
    timings: list[float] = []
    counter = iter(range(1 << 62))

    async def caller() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call(next(counter))
            timings.append(time.perf_counter() - started)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return timings
