"""TLS, mutual TLS and bearer tokens, with certificates made here; through real server subprocesses."""

from __future__ import annotations

import threading
import time

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crossmodal import CrossModalClient, Security
from crossmodal.cli import main as cli_main
from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from tests.certificates import authority, issued
from tests.fixtures.server import ROOT, running_server

REPOSITORY = ROOT / "model_repository"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = authority(folder)
    _, other_cert, other_key = authority(folder, "other-ca")
    return {
        "folder": folder,
        "ca": ca,
        "server": issued(folder, "server", ca_cert, ca_key, server=True),
        "client": issued(folder, "client", ca_cert, ca_key, server=False),
        "stranger": issued(folder, "stranger", other_cert, other_key, server=False),
    }


def tls_channel(ca, client=None):
    def make(address: str) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            ca.cert.read_bytes(),
            client.key.read_bytes() if client else None,
            client.cert.read_bytes() if client else None,
        )
        return grpc.secure_channel(address, credentials)

    return make


def security(ca, client=None, token=None) -> Security:
    return Security(
        token=token,
        root_certificates=ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def test_tls_serves_trusted_clients_and_refuses_plaintext(pki):
    args = ("--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key))
    with running_server(REPOSITORY, *args, channel_factory=tls_channel(pki["ca"])) as (address, _):
        with CrossModalClient(address, timeout=10, security=security(pki["ca"])) as client:
            assert len(client.encode(["a dog in the snow"]).embeddings) == 1
        with CrossModalClient(address, timeout=5) as plaintext, pytest.raises(grpc.RpcError) as refused:
            plaintext.encode(["a dog"])
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_from_the_trusted_authority(pki):
    args = (
        "--tls-cert",
        str(pki["server"].cert),
        "--tls-key",
        str(pki["server"].key),
        "--tls-client-ca",
        str(pki["ca"].cert),
    )
    ready = tls_channel(pki["ca"], pki["client"])
    with running_server(REPOSITORY, *args, channel_factory=ready) as (address, _):
        with CrossModalClient(address, timeout=10, security=security(pki["ca"], pki["client"])) as client:
            assert len(client.encode(["a dog"]).embeddings) == 1
        for who in (None, pki["stranger"]):
            with CrossModalClient(address, timeout=5, security=security(pki["ca"], who)) as client:
                with pytest.raises(grpc.RpcError) as refused:
                    client.encode(["a dog"])
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bearer_token_is_required_except_for_health(tmp_path, monkeypatch, capsys):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with running_server(REPOSITORY, "--auth-token-file", str(token_file)) as (address, _):
        with CrossModalClient(address, timeout=10, security=Security(token="s3cret-token")) as client:
            assert len(client.encode(["a dog"]).embeddings) == 1
            assert client.compare(["a dog"], ["a cat", "两只狗"]).cols == 2
            assert [len(r.scores) for r in client.classify(["a dog"], ["dog", "cat"]).results] == [2]
            assert len(client.translate(["两只狗"]).results[0].translations) == 5  # the default n-best
            names = {m.name for m in client.repository_index().models}
            assert names == {"clip", "clip_vision", "clip_text", "opus_mt_zh_en"}
        for token, reason in ((None, "missing bearer token"), ("wrong", "wrong bearer token")):
            with CrossModalClient(address, timeout=10, security=Security(token=token)) as client:
                with pytest.raises(grpc.RpcError) as refused:
                    client.encode(["a dog"])
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert reason in refused.value.details()
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        monkeypatch.setenv("CROSSMODAL_AUTH_TOKEN", "s3cret-token")
        assert cli_main(["encode", "--server", address, "--text", "a dog"]) == 0
        monkeypatch.setenv("CROSSMODAL_AUTH_TOKEN", "nope")
        assert cli_main(["encode", "--server", address, "--text", "a dog"]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_the_token_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CROSSMODAL_AUTH_TOKEN", "from-env")
    with running_server(REPOSITORY) as (address, _):
        with CrossModalClient(address, timeout=10, security=Security(token="from-env")) as client:
            assert len(client.encode(["a dog"]).embeddings) == 1
        with CrossModalClient(address, timeout=10) as client, pytest.raises(grpc.RpcError) as refused:
            client.encode(["a dog"])
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_load_tester_speaks_to_a_token_server_and_never_writes_the_token(tmp_path):
    import json
    import subprocess
    import sys

    token_file = tmp_path / "token"
    token_file.write_text("load-token-123\n")
    with running_server(REPOSITORY, "--auth-token-file", str(token_file)) as (address, _):
        host, port = address.rsplit(":", 1)
        command = [sys.executable, "-m", "crossmodal_loadtest", "--host", host, "--port", port]
        command += ["--concurrency", "2", "--requests", "20", "--warmup-requests", "2", "--no-progress"]
        command += ["--mix", "encode_texts=1,compare=1"]
        report_path = tmp_path / "run.json"
        with_token = subprocess.run(
            [*command, "--token-file", str(token_file), "--json", str(report_path)],
            capture_output=True,
            text=True,
        )
        without = subprocess.run([*command, "--fail-on-error"], capture_output=True, text=True)
    assert with_token.returncode == 0, with_token.stdout + with_token.stderr
    report = report_path.read_text()
    assert "load-token-123" not in report
    stage = json.loads(report)["stages"][0]["total"]
    assert stage["succeeded"] == stage["requests"] == 20  # --requests, after the warm-up ones
    assert without.returncode == 1 and "UNAUTHENTICATED" in without.stdout + without.stderr


def peak_rss_growth(process: psutil.Process, load) -> int:
    """How far the process's resident memory rose above where it was while `load()` ran (sampled)."""
    baseline, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        load()
    finally:
        done.set()
        sampler.join(5)
    return max(peak[0] - baseline, 0)


def test_unauthenticated_bodies_are_refused_unread(tmp_path):
    """16 concurrent unauthenticated 20 MiB bodies: refused without buffering or parsing them, so the
    server's memory grows by far less than the 320 MiB they add up to."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    request = pb.EncodeRequest(items=[pb.Item(image=b"\x00" * (20 * 2**20))])
    options = [("grpc.max_send_message_length", -1)]
    with (
        running_server(REPOSITORY, "--auth-token-file", str(token_file)) as (address, process),
        grpc.insecure_channel(address, options=options) as channel,
    ):
        encode = pb_grpc.CrossModalStub(channel).Encode

        def send_all() -> None:
            calls = [encode.future(request, timeout=60) for _ in range(16)]
            codes = {call.exception().code() for call in calls}
            assert codes == {grpc.StatusCode.UNAUTHENTICATED}

        growth = peak_rss_growth(psutil.Process(process.pid), send_all)
    print(f"server RSS growth under 16 unauthenticated 20 MiB bodies: {growth / 2**20:.1f} MiB")
    assert growth < 100 * 2**20, f"the server grew by {growth / 2**20:.0f} MiB"


def test_request_bodies_count_in_the_memory_budget():
    """A body (with the message parsed from it, twice its size) larger than the whole memory budget is
    refused naming the budget; a smaller one is served."""
    budget = 16 * 2**20
    with (
        running_server(REPOSITORY, "--max-decode-memory", str(budget)) as (address, _),
        grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as channel,
    ):
        compare = pb_grpc.CrossModalStub(channel).Compare
        padding = [pb.Item(text="a dog")] * 2
        large = pb.CompareRequest(queries=[pb.Item(text="x" * (10 * 2**20))], candidates=padding)
        with pytest.raises(grpc.RpcError) as refused:
            compare(large, timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "request body" in refused.value.details() and "--max-decode-memory" in refused.value.details()
        small = pb.CompareRequest(queries=[pb.Item(text="two dogs " * 200)], candidates=padding)
        assert compare(small, timeout=60).cols == 2
