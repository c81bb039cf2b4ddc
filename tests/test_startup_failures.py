"""A server that cannot start says why in one line and exits non-zero: a taken gRPC or metrics port, an
unusable TLS certificate or key. Each case runs `python -m server` as a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest

from tests.certificates import authority, issued
from tests.fixtures.server import ROOT

REPOSITORY = ROOT / "model_repository"


def start_server(*args: str) -> subprocess.CompletedProcess:
    """Runs the server; one that starts anyway is killed after the timeout (and the test fails)."""
    command = [sys.executable, "-m", "server", "--model-repository", str(REPOSITORY), *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the server started instead of failing: {expired.stderr!r}"[-2000:])


def assert_one_clear_line(finished: subprocess.CompletedProcess, *words: str) -> None:
    assert finished.returncode != 0
    assert "Traceback" not in finished.stderr, finished.stderr
    errors = [line for line in finished.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, finished.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


@contextmanager
def grpc_server_on_a_port():
    """Another gRPC server, bound as gRPC binds by default (SO_REUSEPORT on)."""
    other = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        yield port
    finally:
        other.stop(0)


@contextmanager
def listening_socket():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_second_server_on_a_taken_port_refuses_to_start():
    with grpc_server_on_a_port() as port:
        finished = start_server("--port", str(port), "--metrics-port", "0")
    assert_one_clear_line(finished, str(port), "--port", "already in use")


def test_a_taken_metrics_port_refuses_to_start():
    with listening_socket() as port:
        finished = start_server("--port", "0", "--metrics-port", str(port))
    assert_one_clear_line(finished, str(port), "--metrics-port", "already in use")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    _, ca_cert, ca_key = authority(folder)
    return (
        folder,
        issued(folder, "server", ca_cert, ca_key, server=True),
        issued(folder, "other", ca_cert, ca_key, server=True),
    )


def test_a_file_that_is_not_a_certificate_refuses_to_start(pki):
    folder, server, _ = pki
    garbage = folder / "garbage.crt"
    garbage.write_text("this is not a certificate\n")
    finished = start_server(
        "--port", "0", "--metrics-port", "0", "--tls-cert", str(garbage), "--tls-key", str(server.key)
    )
    assert_one_clear_line(finished, "--tls-cert", str(garbage), "PEM")


def test_a_key_of_another_certificate_refuses_to_start(pki):
    _, server, other = pki
    args = ("--tls-cert", str(server.cert), "--tls-key", str(other.key))
    finished = start_server("--port", "0", "--metrics-port", "0", *args)
    assert_one_clear_line(finished, str(server.cert), str(other.key))


def test_a_missing_key_refuses_to_start(pki):
    folder, server, _ = pki
    missing = folder / "missing.key"
    finished = start_server(
        "--port", "0", "--metrics-port", "0", "--tls-cert", str(server.cert), "--tls-key", str(missing)
    )
    assert_one_clear_line(finished, str(missing))
