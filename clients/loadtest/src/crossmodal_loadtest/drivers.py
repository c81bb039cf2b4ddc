"""The two ways of applying load to a server during one stage.

Closed loop (`concurrency`): N workers, each sending its next request when the previous one completes.
Latency is measured from the actual send. A slow server slows the senders down, so this measures
capacity at a given parallelism, not the experience of users arriving independently.

Open loop (`rate`): requests go out on a Poisson schedule whether or not earlier ones completed. Latency
is measured from the *scheduled* send time, so time a request spent waiting for the generator itself
counts against it too; otherwise a stall would hide exactly the requests that suffered most
("coordinated omission").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from crossmodal.client import AsyncCrossModalClient
from crossmodal_loadtest.phases import Phase, StagePhases
from crossmodal_loadtest.progress import StageProgress
from crossmodal_loadtest.schedule import poisson_arrivals
from crossmodal_loadtest.stats import StageRecorder
from crossmodal_loadtest.workload import PlannedRequest, WorkloadPlanner


@dataclass
class StageContext:
    """What both drivers share while a stage runs."""

    client: AsyncCrossModalClient
    planner: WorkloadPlanner
    phases: StagePhases
    recorder: StageRecorder
    progress: StageProgress

    async def issue(self, planned: PlannedRequest, phase: Phase, latency_origin: float) -> None:
        """Sends one request and records its outcome; a failure is recorded, never raised, so one bad
        request cannot end the run."""
        error_code, message = None, ""
        try:
            await planned.send(self.client)
        except grpc.aio.AioRpcError as error:
            error_code, message = error.code().name, error.details() or ""
        except Exception as error:  # a client-side failure (e.g. a closed channel) is still an outcome
            error_code, message = type(error).__name__, str(error)
        completed_at = time.perf_counter()
        if phase is Phase.MEASURE:
            self.recorder.record(
                planned.operation,
                planned.items,
                completed_at - latency_origin,
                completed_at,
                error_code,
                message,
            )
        self.progress.completed(phase, error_code is not None, self.phases.measure_start)


async def run_closed_loop(context: StageContext, concurrency: int) -> None:
    async def worker() -> None:
        while True:
            planned = context.planner.next()
            sent_at = time.perf_counter()
            phase = context.phases.admit(sent_at)
            if phase is Phase.STOP:
                return
            await context.issue(planned, phase, sent_at)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_open_loop(context: StageContext, rate: float, seed: int, stage_start: float) -> None:
    in_flight: set[asyncio.Task] = set()
    for offset in poisson_arrivals(rate, seed):
        scheduled_at = stage_start + offset
        phase = context.phases.admit(scheduled_at)
        if phase is Phase.STOP:
            break
        planned = context.planner.next()
        delay = scheduled_at - time.perf_counter()
        # Behind schedule, still yield once so that the requests already started get to run.
        await asyncio.sleep(max(delay, 0.0))
        if phase is Phase.MEASURE:
            context.recorder.record_send_lag(time.perf_counter() - scheduled_at)
        task = asyncio.create_task(context.issue(planned, phase, scheduled_at))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
