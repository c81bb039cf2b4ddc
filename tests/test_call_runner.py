"""The call runner every protocol shares: status of each error kind, metrics, tokens and registration."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import pytest

from server.core import errors
from server.core.cancellation import calls_on, check_cancelled, current_token
from server.core.errors import Status, status_of
from server.core.pending import Pending
from server.metrics import ServerMetrics
from server.protocols.common import CallFailed, CallRunner, run_as_call
from server.protocols.grpc_status import status_code

KINDS = [
    (errors.InvalidInput, Status.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.LimitExceeded, Status.RESOURCE_EXHAUSTED, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ModelNotFound, Status.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
    (errors.ModelNotReady, Status.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
    (errors.Overloaded, Status.RESOURCE_EXHAUSTED, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Cancelled, Status.CANCELLED, grpc.StatusCode.CANCELLED),
    (errors.NotAllowed, Status.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable, Status.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
    (errors.ModelLoadError, Status.INTERNAL, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("kind", "status", "code"), KINDS)
def test_each_error_kind_has_one_status_and_the_grpc_code_of_its_name(kind, status, code):
    assert status_of(kind("why")) is status
    assert status_code(kind("why")) == code


def test_a_subclass_takes_its_kind_status_and_anything_else_is_internal():
    class Stale(errors.ModelNotReady):
        pass

    assert status_of(Stale("x")) is Status.UNAVAILABLE
    assert status_of(ValueError("bug")) is Status.INTERNAL


def metric(metrics: ServerMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def runner():
    with ThreadPoolExecutor(2) as executor:
        yield CallRunner(executor, ServerMetrics())


def test_the_runner_answers_and_counts_each_call_by_status(runner):
    metrics = runner._metrics

    async def ok():
        return "answer"

    async def refused():
        raise errors.ModelNotFound("no model named 'x'")

    async def broken():
        raise ValueError("a bug")

    assert asyncio.run(runner.answer("Encode", ok)) == "answer"
    with pytest.raises(CallFailed) as failed:
        asyncio.run(runner.answer("Encode", refused))
    assert (failed.value.status, failed.value.details) == (Status.NOT_FOUND, "no model named 'x'")
    with pytest.raises(CallFailed) as failed:
        asyncio.run(runner.answer("Encode", broken))
    assert failed.value.status is Status.INTERNAL and "a bug" not in failed.value.details
    for code in ("OK", "NOT_FOUND", "INTERNAL"):
        assert metric(metrics, "crossmodal_requests_total", rpc="Encode", code=code) == 1
    assert metric(metrics, "crossmodal_request_seconds_count", rpc="Encode") == 3
    assert metric(metrics, "crossmodal_requests_in_flight", rpc="Encode") == 0


def test_a_cancelled_task_is_counted_cancelled_and_stays_cancelled(runner):
    async def main():
        started = asyncio.Event()

        async def forever():
            started.set()
            await asyncio.sleep(60)

        task = asyncio.create_task(runner.answer("Translate", forever))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert metric(runner._metrics, "crossmodal_requests_total", rpc="Translate", code="CANCELLED") == 1


class Model:
    """A coroutine named like an engine operation, awaiting work that never runs on its own."""

    def __init__(self) -> None:
        self.future: Future = Future()
        self.withdrawn = threading.Event()
        self.waiting = asyncio.Event()

    async def translate(self):
        def withdraw():
            self.withdrawn.set()
            self.future.set_exception(errors.Cancelled("withdrawn"))

        self.waiting.set()
        return await Pending(self.future, withdraw=withdraw).wait()


def test_a_call_is_registered_under_its_function_while_its_coroutine_runs():
    with ThreadPoolExecutor(1) as executor:
        model, calls = Model(), calls_on(executor)

        async def main():
            task = asyncio.create_task(run_as_call(executor, model.translate))
            await model.waiting.wait()
            assert calls.running() == ["Model.translate"]
            # A stopping server cuts the call off through its token: its queued work is withdrawn.
            assert await asyncio.to_thread(calls.cancel_all) == ["Model.translate"]
            with pytest.raises(errors.Cancelled):
                await task
            assert calls.running() == []

        asyncio.run(main())
    assert model.withdrawn.is_set()


def test_a_cancelled_task_cancels_the_token_its_worker_stage_checks():
    with ThreadPoolExecutor(1) as executor:
        calls, entered, stopped = calls_on(executor), threading.Event(), threading.Event()

        def stage():
            entered.set()
            while True:
                try:
                    check_cancelled("a long stage")
                except errors.Cancelled:
                    stopped.set()
                    raise
                threading.Event().wait(0.01)

        async def main():
            task = asyncio.create_task(run_as_call(executor, stage))
            await asyncio.to_thread(entered.wait, 5)
            assert current_token() is None  # the call's token lives in its own task only
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert stopped.wait(5)
        assert calls.wait_idle(5)  # registered until the worker stage itself returned
