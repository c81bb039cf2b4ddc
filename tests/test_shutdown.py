"""SIGTERM drains: calls in flight complete, new calls are refused, health says NOT_SERVING, exit 0."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crossmodal import CrossModalClient
from server.app import STOP_MARGIN_SECONDS
from server.core.cancellation import calls_on
from server.protocols.common import run_as_call
from tests.fixtures.server import ROOT, in_process_server, running_server
from tests.test_cancellation import chinese_texts

IN_FLIGHT = 6


@pytest.fixture
def slow_repository(tmp_path):
    """The demo models, with text runs that wait 1.5 s for company: calls stay in flight that long."""
    repository = tmp_path / "repository"
    shutil.copytree(ROOT / "model_repository", repository)
    config = repository / "clip_text" / "config.pbtxt"
    text = config.read_text()
    config.write_text(
        text.replace("dynamic_batching {\n}", "dynamic_batching { max_queue_delay_microseconds: 1500000 }")
    )
    return repository


def test_sigterm_finishes_calls_in_flight_refuses_new_ones_and_exits_zero(slow_repository):
    with (
        running_server(slow_repository) as (address, process),
        CrossModalClient(address, timeout=30) as client,
    ):
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            calls = [pool.submit(client.encode, [f"call {i}: a dog in the snow"]) for i in range(IN_FLIGHT)]
            time.sleep(0.5)  # all queued, waiting for their batch
            assert not any(call.done() for call in calls)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with CrossModalClient(address, timeout=5) as late, pytest.raises(grpc.RpcError) as refused:
                late.encode(["too late"])
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            replies = [call.result(timeout=30) for call in calls]
        assert all(len(reply.embeddings) == 1 for reply in replies)
        assert process.wait(timeout=30) == 0


def test_draining_health_is_not_serving():
    served = in_process_server(ROOT / "model_repository")
    with served as running, grpc.insecure_channel(running.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="crossmodal.v1.CrossModal")
        assert stub.Check(request).status == health_pb2.HealthCheckResponse.SERVING
        running.run(running.server.health.drain(), 10)
        for name in ("", "crossmodal.v1.CrossModal", "clip", "clip_vision"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=name)).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING, name


def test_calls_beyond_the_concurrency_limit_are_refused_at_once(slow_repository):
    limit, sent = 3, 8
    with (
        running_server(slow_repository, "--max-concurrent-calls", str(limit)) as (address, _),
        CrossModalClient(address, timeout=30) as client,
        ThreadPoolExecutor(sent) as pool,
    ):
        calls = [pool.submit(client.encode, [f"call {i}"]) for i in range(sent)]
        codes = []
        for call in calls:
            try:
                call.result(timeout=30)
                codes.append("OK")
            except grpc.RpcError as error:
                codes.append(error.code().name)
    # All calls arrive within milliseconds and the admitted ones wait 1.5 s for their batch: exactly
    # `limit` are in flight when the others arrive.
    assert codes.count("OK") == limit and codes.count("RESOURCE_EXHAUSTED") == sent - limit, codes


def test_sigterm_during_the_start_up_load_exits_cleanly():
    import subprocess
    import sys

    from tools.local_server import free_port, listening

    port = free_port()
    command = [sys.executable, "-m", "server", "--model-repository", str(ROOT / "model_repository")]
    command += ["--port", str(port), "--metrics-port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not listening("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)  # the port opens before the models load
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output[-3000:]
    assert "signal received: stopping" in output and "stopped" in output


GRACE = 1.0
STOP_MARGIN = 8.0  # cancelled calls get 3 s to stop, closing the models 3 s more, then the process ends


def test_sigterm_cuts_off_a_busy_call_after_the_grace_period_and_exits_zero():
    with running_server(ROOT / "model_repository", "--grace-period", str(GRACE)) as (address, process):
        log = Path(tempfile.gettempdir()) / f"crossmodal-test-server-{address.rsplit(':', 1)[1]}.log"
        with CrossModalClient(address, timeout=120) as client, ThreadPoolExecutor(1) as pool:
            busy = pool.submit(client.translate, chinese_texts(1024, 8000))  # 30 s of jieba alone
            time.sleep(1.5)
            assert not busy.done()
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
            stopped_after = time.monotonic() - signalled
            with pytest.raises(grpc.RpcError):
                busy.result(10)
    assert code == 0
    assert stopped_after < GRACE + STOP_MARGIN, f"exited {stopped_after:.1f}s after SIGTERM"
    output = log.read_text()
    assert "grace period over: cancelled 1 call(s) still running: Engine.translate x1" in output, output[
        -3000:
    ]
    assert "stopped" in output


def test_stop_does_not_wait_for_work_that_ignores_its_cancellation():
    with in_process_server(ROOT / "model_repository", grace_seconds=0.5) as running:
        server = running.server
        release = threading.Event()
        stuck = running.submit(run_as_call(server._executor, release.wait, 60))
        calls = calls_on(server._executor)
        deadline = time.monotonic() + 5
        while not calls.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls.running() == ["Event.wait"]
        started = time.monotonic()
        clean = running.run(server.stop(), 60)
        took = time.monotonic() - started
        release.set()
        stuck.result(10)
    assert clean is False  # the caller (the command line) then exits without waiting for that thread
    assert took < 0.5 + 2 * STOP_MARGIN_SECONDS + 1
