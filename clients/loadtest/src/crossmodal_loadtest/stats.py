"""Latency and throughput statistics, reusable outside the load generator (benchmarks use them too)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

PERCENTILES = (50, 90, 95, 99)
ERROR_SAMPLES_PER_CODE = 3
ALL_OPERATIONS = "all"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ascending values, interpolating linearly between the two nearest
    ranks: the same definition as numpy.percentile's default, so figures agree with other tools."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    position = (len(sorted_values) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


@dataclass(frozen=True)
class LatencySummary:
    """Latency distribution in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float

    @classmethod
    def from_seconds(cls, latencies: Iterable[float]) -> LatencySummary | None:
        """The summary of latencies given in seconds; None when there are none."""
        values = sorted(latency * 1000.0 for latency in latencies)
        if not values:
            return None
        p50, p90, p95, p99 = (percentile(values, q) for q in PERCENTILES)
        return cls(
            count=len(values),
            mean_ms=math.fsum(values) / len(values),
            p50_ms=p50,
            p90_ms=p90,
            p95_ms=p95,
            p99_ms=p99,
            max_ms=values[-1],
            min_ms=values[0],
        )


@dataclass(frozen=True)
class OperationStats:
    """What one operation (or `all` of them) did during one measured window. Latencies and throughput
    cover successful requests; failed ones are counted by gRPC status code name."""

    operation: str
    requests: int
    succeeded: int
    items: int
    elapsed_s: float
    latency: LatencySummary | None
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.requests - self.succeeded

    @property
    def requests_per_second(self) -> float:
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            failed=self.failed,
            requests_per_second=self.requests_per_second,
            items_per_second=self.items_per_second,
        )
        return data


class OperationRecorder:
    """Accumulates the outcomes of one operation's requests."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.requests = 0
        self.items = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.error_samples: dict[str, list[str]] = {}

    def record(self, items: int, latency_s: float, error_code: str | None = None, message: str = "") -> None:
        self.requests += 1
        if error_code is None:
            self.items += items
            self.latencies.append(latency_s)
            return
        self.errors[error_code] += 1
        # A few messages per code are enough to diagnose; keeping all would grow without bound.
        samples = self.error_samples.setdefault(error_code, [])
        if len(samples) < ERROR_SAMPLES_PER_CODE and message not in samples:
            samples.append(message)

    def merge(self, other: OperationRecorder) -> None:
        self.requests += other.requests
        self.items += other.items
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        for code, messages in other.error_samples.items():
            samples = self.error_samples.setdefault(code, [])
            samples.extend(m for m in messages if m not in samples)
            del samples[ERROR_SAMPLES_PER_CODE:]

    def stats(self, elapsed_s: float) -> OperationStats:
        return OperationStats(
            operation=self.operation,
            requests=self.requests,
            succeeded=len(self.latencies),
            items=self.items,
            elapsed_s=elapsed_s,
            latency=LatencySummary.from_seconds(self.latencies),
            errors=dict(sorted(self.errors.items())),
            error_samples={code: list(self.error_samples[code]) for code in sorted(self.error_samples)},
        )


class StageRecorder:
    """Outcomes of one stage's measured requests, per operation, and the measured window."""

    def __init__(self, operations: Sequence[str]) -> None:
        self.operations = {name: OperationRecorder(name) for name in operations}
        self.last_completion: float | None = None
        self.send_lags: list[float] = []

    def record(
        self,
        operation: str,
        items: int,
        latency_s: float,
        completed_at: float,
        error_code: str | None = None,
        message: str = "",
    ) -> None:
        self.operations[operation].record(items, latency_s, error_code, message)
        if self.last_completion is None or completed_at > self.last_completion:
            self.last_completion = completed_at

    def record_send_lag(self, lag_s: float) -> None:
        """How late a scheduled request actually went out: large lags mean the generator, not the
        server, limited the offered rate."""
        self.send_lags.append(max(lag_s, 0.0))

    def stats(self, measure_start: float | None) -> tuple[list[OperationStats], OperationStats]:
        """Per-operation stats (those that sent anything) and the stats of all of them together."""
        elapsed = 0.0
        if measure_start is not None and self.last_completion is not None:
            elapsed = max(self.last_completion - measure_start, 0.0)
        total = OperationRecorder(ALL_OPERATIONS)
        for recorder in self.operations.values():
            total.merge(recorder)
        per_operation = [r.stats(elapsed) for r in self.operations.values() if r.requests]
        return per_operation, total.stats(elapsed)
