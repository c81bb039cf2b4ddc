"""Every Prometheus metric of the server, in one place, served as text on --metrics-port.

Each server owns its registry (tests run several servers in one process). RPC metrics are recorded by the
gRPC adapter; model metrics by an observer attached to each model version's batcher once it serves;
model states are read from the repository at scrape time, so they can never be stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from server.core.cache import ResponseCache
from server.core.errors import StartupError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "crossmodal_requests",
            "RPCs finished, by method and gRPC status code",
            ["rpc", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "crossmodal_request_seconds",
            "RPC latency in the server",
            ["rpc"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.undecodable_requests = Counter(
            "crossmodal_undecodable_requests",
            "requests whose body did not parse as the method's message (answered INVALID_ARGUMENT)",
            ["rpc"],
            registry=r,
        )
        self.in_flight = Gauge("crossmodal_requests_in_flight", "RPCs being handled now", ["rpc"], registry=r)
        self.queue_seconds = Histogram(
            "crossmodal_queue_seconds",
            "time a call's items waited in a model's queue before their run",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "crossmodal_batch_size",
            "items per model run",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inferences = Counter(
            "crossmodal_inference_items", "items run, per model version", ["model", "version"], registry=r
        )
        self.runs = Counter(
            "crossmodal_inference_runs",
            "model runs (batches), by outcome",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.compute_seconds = Counter(
            "crossmodal_inference_compute_seconds",
            "time spent in model runs",
            ["model", "version"],
            registry=r,
        )

    def batch_observer(self, model: str, version: int) -> BatchMetrics:
        return BatchMetrics(self, model, str(version))

    def watch_models(self, states: Callable[[], Iterable[tuple[str, int, str]]]) -> None:
        """`states()` lists (model, version, state) of the repository, read at each scrape."""
        self.registry.register(_ModelStates(states))

    def watch_response_cache(self, cache: ResponseCache) -> None:
        """The response caches' counters and size, read at each scrape."""
        self.registry.register(_CacheStatistics(cache))

    def watch_memory_budget(self, used: Callable[[], float], limit: float, waiting: Callable[[], float]):
        """The server-wide decode memory budget, read at each scrape."""
        r = self.registry
        Gauge(
            "crossmodal_decode_memory_used_bytes",
            "bytes of the decode memory budget reserved by calls now",
            registry=r,
        ).set_function(used)
        Gauge(
            "crossmodal_decode_memory_limit_bytes",
            "the decode memory budget (--max-decode-memory)",
            registry=r,
        ).set(limit)
        Gauge(
            "crossmodal_decode_memory_waiting_calls",
            "calls waiting for room in the decode memory budget",
            registry=r,
        ).set_function(waiting)

    def serve(self, host: str, port: int):
        """Starts the HTTP exposition thread; returns the server (its port: server.server_port).
        A port that cannot be bound is a StartupError naming it."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise StartupError(
                f"cannot listen for metrics (--metrics-port) on {host}:{port}: {error.strerror}"
            ) from error
        log.info("metrics on http://%s:%d/metrics", host, server.server_port)
        return server


class BatchMetrics:
    """The batcher observer of one model version."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str) -> None:
        labels = {"model": model, "version": version}
        self._queue = metrics.queue_seconds.labels(**labels)
        self._size = metrics.batch_size.labels(**labels)
        self._items = metrics.inferences.labels(**labels)
        self._ok = metrics.runs.labels(outcome="ok", **labels)
        self._failed = metrics.runs.labels(outcome="failed", **labels)
        self._compute = metrics.compute_seconds.labels(**labels)

    def batch_done(self, size: int, waits: Sequence[float], seconds: float, failed: bool) -> None:
        for wait in waits:
            self._queue.observe(wait)
        self._size.observe(size)
        self._compute.inc(seconds)
        if failed:
            self._failed.inc()
            return
        self._ok.inc()
        self._items.inc(size)


class _ModelStates(Collector):
    def __init__(self, states: Callable[[], Iterable[tuple[str, int, str]]]) -> None:
        self._states = states

    def collect(self):
        versions = GaugeMetricFamily(
            "crossmodal_model_versions",
            "model versions known to the server, by state",
            labels=["model", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for model, _version, state in self._states():
            counts[(model, state)] = counts.get((model, state), 0) + 1
        for (model, state), count in sorted(counts.items()):
            versions.add_metric([model, state], count)
        yield versions
        ready = GaugeMetricFamily(
            "crossmodal_model_ready", "1 for each model version that serves now", labels=["model", "version"]
        )
        for model, version, state in self._states():
            if state == "READY":
                ready.add_metric([model, str(version)], 1)
        yield ready


class _CacheStatistics(Collector):
    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    def collect(self):
        stats = self._cache.stats()
        for field, what in (
            ("hits", "answers the response cache gave"),
            ("misses", "items the response cache did not hold (computed, then stored)"),
            ("evictions", "entries the response cache dropped to stay within --cache-bytes"),
        ):
            counter = CounterMetricFamily(f"crossmodal_response_cache_{field}", what, labels=["model"])
            for model, counts in sorted(stats.items()):
                counter.add_metric([model], getattr(counts, field))
            yield counter
        yield GaugeMetricFamily(
            "crossmodal_response_cache_bytes",
            "bytes the response cache holds now",
            value=self._cache.used_bytes,
        )
        yield GaugeMetricFamily(
            "crossmodal_response_cache_capacity_bytes",
            "the response cache's bound (--cache-bytes; 0: off)",
            value=self._cache.capacity_bytes,
        )
