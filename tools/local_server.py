"""Starts a crossmodal server subprocess on this machine and waits until it serves (demo, eval, tests)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


@contextmanager
def running_server(
    repository: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    *extra_args: str,
    log_path: Path | None = None,
    ready_timeout: float = 180.0,
    channel_factory=None,
):
    """Yields (address, process) of a server that accepts calls; stops it afterwards.

    Its output goes to `log_path` (or this process's output); a server that dies or does not become
    ready in time raises RuntimeError with its log.
    """
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "server",
        "--model-repository",
        str(repository),
        "--host",
        host,
        "--port",
        str(port),
        "--metrics-port",  # no fixed metrics port: servers started here may run side by side
        "0",
        *extra_args,
    ]
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT if log else None)
    address = f"{host}:{port}"
    try:
        _wait_until_serving(address, process, log_path, ready_timeout, channel_factory)
        yield address, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if log:
            log.close()


def _wait_until_serving(
    address: str, process: subprocess.Popen, log_path: Path | None, timeout: float, channel_factory=None
) -> None:
    """Until health says SERVING; `channel_factory(address)` makes the channel (TLS) when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log_path.read_text() if log_path else "(see the output above)"
            raise RuntimeError(f"the server exited with status {process.returncode}:\n{output}")
        channel = channel_factory(address) if channel_factory else None
        try:
            if serving(address, channel):
                return
        finally:
            if channel is not None:
                channel.close()
        time.sleep(0.2)
    output = log_path.read_text() if log_path else "(see the output above)"
    raise RuntimeError(f"the server was not ready after {timeout:.0f}s:\n{output}")


def serving(address: str, channel: grpc.Channel | None = None) -> bool:
    """Whether the server's health check says SERVING (its start-up load has finished)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    own = channel is None
    channel = channel or grpc.insecure_channel(address)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False
    finally:
        if own:
            channel.close()


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--host, --port and --model-repository, for commands that use or start a server (see server_at)."""
    parser.add_argument("--host", default="127.0.0.1", help="server host")
    parser.add_argument("--port", type=int, default=8001, help="server port")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=ROOT / "model_repository",
        help="repository for a server started here when none listens on host:port",
    )


@contextmanager
def server_at(host: str, port: int, repository: Path):
    """The server already listening on host:port, or one started there (and stopped afterwards)."""
    if listening(host, port):
        print(f"using the server already listening on {host}:{port}", flush=True)
        yield f"{host}:{port}"
        return
    print(f"starting a server on {host}:{port} over {repository}", flush=True)
    with running_server(repository, host, port) as (address, _process):
        yield address
