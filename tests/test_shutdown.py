"""SIGTERM drains: calls in flight complete, new calls are refused, health says NOT_SERVING, exit 0."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crossmodal import CrossModalClient
from tests.helpers import ROOT, in_process_server, running_server

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
    with served as (address, server), grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="crossmodal.v1.CrossModal")
        assert stub.Check(request).status == health_pb2.HealthCheckResponse.SERVING
        asyncio.run_coroutine_threadsafe(server.health.drain(), server.loop).result(10)
        for name in ("", "crossmodal.v1.CrossModal", "clip", "clip_vision"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=name)).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING, name


def test_calls_beyond_the_concurrency_limit_are_refused_at_once(slow_repository):
    with (
        running_server(slow_repository, "--max-concurrent-calls", "3") as (address, _),
        CrossModalClient(address, timeout=30) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        calls = [pool.submit(client.encode, [f"call {i}"]) for i in range(8)]
        codes = []
        for call in calls:
            try:
                call.result(timeout=30)
                codes.append("OK")
            except grpc.RpcError as error:
                codes.append(error.code().name)
    assert codes.count("OK") >= 1 and "RESOURCE_EXHAUSTED" in codes, codes
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}


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
