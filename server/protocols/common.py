"""The call runner every protocol shares: one call, from its arrival to its status and metrics.

An engine call runs as a coroutine on the event loop, with a cancellation token of its own in the
context (its worker stages and the Pendings it awaits see it) and registered on the server's executor,
so that a stopping server can cut it off and name it. When its task is cancelled (client gone, deadline
passed, server stopping) the token withdraws its work still queued and stops its running stages at
their next check. Every answer is recorded in the metrics (count by status, latency, in flight) before
it leaves, so a client that reads the metrics after its answer always finds its call there. Errors map
to the protocol-neutral status of server/core/errors.py; each protocol turns that into its own code
(gRPC: server/protocols/grpc_status.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

from server.core.cancellation import CancelToken, calls_on, current_call, run_in_worker, stage_name
from server.core.errors import CrossModalError, Status, status_of
from server.metrics import ServerMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class CallFailed(Exception):
    """A call that ended with an error status; `details` is what the caller is told."""

    def __init__(self, status: Status, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.details = details


async def run_as_call(executor: Executor, function, *args):
    """Runs function(*args) as one call: an engine coroutine awaited on the loop, a plain function on a
    worker thread of `executor`. The call is known by the function it runs (e.g. Engine.translate)."""
    token = CancelToken()
    what = stage_name(function)
    with calls_on(executor).registered(token, what), current_call(token):
        try:
            if inspect.iscoroutinefunction(function):
                return await function(*args)
            return await run_in_worker(executor, function, *args)
        except asyncio.CancelledError:
            token.cancel()
            raise


class CallRunner:
    """What every protocol handler goes through: metrics and status for each call, engine calls run
    as calls (run_as_call) on the server's executor."""

    def __init__(self, executor: Executor, metrics: ServerMetrics | None = None) -> None:
        self.executor = executor
        self._metrics = metrics
        self._rpc_series: dict[str, RpcSeries] = {}

    async def call(self, function, *args):
        """function(*args) as one call of this server (see run_as_call)."""
        return await run_as_call(self.executor, function, *args)

    async def offload(self, function, *args):
        """function(*args) on a worker thread as a stage of the current call (e.g. a large response)."""
        return await run_in_worker(self.executor, function, *args)

    async def answer(self, rpc: str, handler: Callable[[], Awaitable[T]]) -> T:
        """The handler's result; an error raises CallFailed with its status (anything unexpected:
        INTERNAL, logged). The call is recorded under `rpc` either way."""
        started = time.perf_counter()
        series = self._series(rpc) if self._metrics else None

        def record(status: Status) -> None:
            if series:
                series.in_flight.dec()
                series.requests(status).inc()
                series.seconds.observe(time.perf_counter() - started)

        if series:
            series.in_flight.inc()
        try:
            result = await handler()
        except CrossModalError as error:
            status, details = status_of(error), str(error)
        except asyncio.CancelledError:
            record(Status.CANCELLED)
            raise
        except Exception:
            log.exception("%s failed unexpectedly", rpc)
            status, details = Status.INTERNAL, f"{rpc}: internal error (see server log)"
        else:
            record(Status.OK)
            return result
        record(status)
        raise CallFailed(status, details)

    def _series(self, rpc: str) -> RpcSeries:
        series = self._rpc_series.get(rpc)
        if series is None:
            series = self._rpc_series[rpc] = RpcSeries(self._metrics, rpc)
        return series


class RpcSeries:
    """The metric series of one RPC, looked up once: a labelled lookup takes a lock and builds a key,
    which every call would otherwise pay three times."""

    def __init__(self, metrics: ServerMetrics, rpc: str) -> None:
        self.in_flight = metrics.in_flight.labels(rpc)
        self.seconds = metrics.request_seconds.labels(rpc)
        self._counter, self._rpc = metrics.requests, rpc
        self._by_status: dict[Status, object] = {}

    def requests(self, status: Status):
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._counter.labels(self._rpc, status.value)
        return counter
