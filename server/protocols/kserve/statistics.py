"""Cumulative per-version statistics (Triton's ModelStatistics) from the batchers' own counts."""

from __future__ import annotations

from inference import grpc_service_pb2 as kpb
from server.batching.batcher import BatchStats


def duration(count: int, ns: int) -> kpb.StatisticDuration:
    return kpb.StatisticDuration(count=count, ns=ns)


def model_statistics(name: str, version: int, stats: BatchStats) -> kpb.ModelStatistics:
    return kpb.ModelStatistics(
        name=name,
        version=str(version),
        last_inference=stats.last_run_ms,
        inference_count=stats.items,
        execution_count=stats.runs,
        inference_stats=kpb.InferStatistics(
            success=duration(stats.calls_ok, stats.calls_ok_ns),
            fail=duration(stats.calls_failed, stats.calls_failed_ns),
            queue=duration(stats.queued, stats.queue_ns),
            compute_infer=duration(stats.runs + stats.failed_runs, stats.compute_ns),
        ),
        batch_stats=[
            kpb.InferBatchStatistics(batch_size=size, compute_infer=duration(runs, stats.batch_ns[size]))
            for size, runs in sorted(stats.batch_sizes.items())
        ],
    )
