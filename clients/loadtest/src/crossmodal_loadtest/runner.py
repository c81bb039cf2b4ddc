"""Runs a whole load test: connects, runs each stage in turn, and collects the report."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import grpc

from crossmodal.client import AsyncCrossModalClient, CrossModalClient, Security
from crossmodal_loadtest.config import CONCURRENCY, LoadConfig, Stage
from crossmodal_loadtest.drivers import StageContext, run_closed_loop, run_open_loop
from crossmodal_loadtest.inputs import InputPool
from crossmodal_loadtest.machine import machine_info
from crossmodal_loadtest.phases import StagePhases
from crossmodal_loadtest.progress import StageProgress
from crossmodal_loadtest.results import LoadReport, StageResult
from crossmodal_loadtest.stats import LatencySummary, StageRecorder
from crossmodal_loadtest.workload import WorkloadPlanner


class ServerUnreachable(ConnectionError):
    pass


def run_load(config: LoadConfig, show_progress: bool = False) -> LoadReport:
    """Runs every stage of `config` against its server and returns the measurements."""
    return asyncio.run(run_load_async(config, show_progress))


async def run_load_async(config: LoadConfig, show_progress: bool = False) -> LoadReport:
    pool = InputPool.build(config.image_size, config.image_dir, config.languages, config.seed)
    await asyncio.to_thread(wait_for_server, config.target, config.connect_timeout, config.security)
    started_at = _now()
    stages = []
    async with AsyncCrossModalClient(
        config.target, timeout=config.timeout, security=config.security
    ) as client:
        for index, stage in enumerate(config.stages):
            stages.append(await run_stage(client, config, pool, stage, index, show_progress))
    return LoadReport(
        config=config, started_at=started_at, finished_at=_now(), machine=machine_info(), stages=stages
    )


async def run_stage(
    client: AsyncCrossModalClient,
    config: LoadConfig,
    pool: InputPool,
    stage: Stage,
    index: int,
    show_progress: bool = False,
) -> StageResult:
    # Each stage has its own seed, so adding or removing a stage leaves the others' requests unchanged.
    stage_seed = config.seed * 10_000 + index
    stage_start = time.perf_counter()
    phases = StagePhases(
        stage_start, config.warmup_seconds, config.warmup_requests, config.duration, config.requests
    )
    recorder = StageRecorder(config.mix.operations)
    progress = StageProgress(stage.name, config.duration, config.requests, show_progress)
    context = StageContext(client, WorkloadPlanner(config, pool, stage_seed), phases, recorder, progress)
    try:
        if stage.mode == CONCURRENCY:
            await run_closed_loop(context, int(stage.level))
        else:
            await run_open_loop(context, stage.level, stage_seed, stage_start)
    finally:
        progress.close()
    operations, total = recorder.stats(phases.measure_start)
    send_lag = LatencySummary.from_seconds(recorder.send_lags) if stage.mode != CONCURRENCY else None
    return StageResult(stage=stage, operations=operations, total=total, send_lag=send_lag)


def wait_for_server(target: str, timeout: float, security: Security | None = None) -> None:
    """Returns once a connection to `target` is up; raises ServerUnreachable after `timeout` seconds."""
    with CrossModalClient(target, security=security) as client:
        try:
            client.wait_until_ready(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ServerUnreachable(f"no server answered at {target} within {timeout:g}s") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
