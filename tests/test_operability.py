"""Health, reflection, metrics and model control through real server subprocesses."""

from __future__ import annotations

import re
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from crossmodal import CrossModalClient
from crossmodal.cli import main as cli_main
from server.core.config import ServerConfig
from tests.fixtures.server import ROOT, encoded_image, free_port, running_server

REPOSITORY = ROOT / "model_repository"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def metric(text: str, name: str, default: float | None = None, **labels) -> float:
    """The value of one sample of the Prometheus text, by name and labels; `default` when there is none
    (a labelled counter appears only once something has counted in it)."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(match.group(3))
    if default is not None:
        return default
    raise AssertionError(f"no sample {name}{labels}")


def scrape(metrics_port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()


def increase(before: str, after: str, name: str, **labels) -> float:
    """How much a counter (or a histogram's _count / _sum) grew between two scrapes."""
    return metric(after, name, **labels) - metric(before, name, default=0.0, **labels)


@pytest.fixture(scope="module")
def served():
    metrics_port = free_port()
    with running_server(REPOSITORY, "--metrics-port", str(metrics_port)) as (address, _process):
        yield address, metrics_port


def test_health_per_server_service_pipeline_and_model(served):
    address, _ = served
    for name in ("", "crossmodal.v1.CrossModal", "clip", "clip_vision", "clip_text", "opus_mt_zh_en"):
        assert health(address, name) == SERVING, name
    with pytest.raises(grpc.RpcError) as unknown:
        health(address, "no_such_model")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(served):
    address, _ = served
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in next(iter(replies)).list_services_response.service}
    assert {"crossmodal.v1.CrossModal", "grpc.health.v1.Health"} <= names


TEXTS = ["a dog", "a red car", "two cats on a sofa"]
IMAGES = [encoded_image(40, 30), encoded_image(24, 24, seed=1)]
CHINESE = ["两只狗", "一只猫在桌子上"]


def test_metrics_count_calls_batches_and_models(served):
    """Each count grows by exactly what this test's calls did: one Encode of 3 texts and 2 images, one
    Translate of 2 texts, one refused Encode; every model ran its items in one batch."""
    address, metrics_port = served
    before = scrape(metrics_port)
    with CrossModalClient(address) as client:
        client.encode([*TEXTS, *IMAGES])
        client.translate(CHINESE)
        with pytest.raises(grpc.RpcError):
            client.encode([])
    text = scrape(metrics_port)
    assert increase(before, text, "crossmodal_requests_total", rpc="Encode", code="OK") == 1
    assert increase(before, text, "crossmodal_requests_total", rpc="Encode", code="INVALID_ARGUMENT") == 1
    assert increase(before, text, "crossmodal_requests_total", rpc="Translate", code="OK") == 1
    assert increase(before, text, "crossmodal_request_seconds_count", rpc="Translate") == 1
    assert increase(before, text, "crossmodal_request_seconds_count", rpc="Encode") == 2
    assert metric(text, "crossmodal_requests_in_flight", rpc="Encode") == 0
    # The decode memory budget: every reservation is given back once its call has answered.
    assert metric(text, "crossmodal_decode_memory_limit_bytes") == ServerConfig(REPOSITORY).max_decode_memory
    assert metric(text, "crossmodal_decode_memory_used_bytes") == 0
    assert metric(text, "crossmodal_decode_memory_waiting_calls") == 0
    for model, items in (
        ("clip_text", len(TEXTS)),
        ("clip_vision", len(IMAGES)),
        ("opus_mt_zh_en", len(CHINESE)),
    ):
        labels = {"model": model, "version": 1}
        assert increase(before, text, "crossmodal_inference_items_total", **labels) == items, model
        assert increase(before, text, "crossmodal_batch_size_count", **labels) == 1, model  # one run
        assert increase(before, text, "crossmodal_batch_size_sum", **labels) == items, model
        assert increase(before, text, "crossmodal_inference_runs_total", outcome="ok", **labels) == 1, model
        assert increase(before, text, "crossmodal_inference_runs_total", outcome="failed", **labels) == 0
        assert increase(before, text, "crossmodal_queue_seconds_count", **labels) == 1, model  # one call
        assert increase(before, text, "crossmodal_inference_compute_seconds_total", **labels) > 0, model
        assert metric(text, "crossmodal_model_ready", **labels) == 1
        assert metric(text, "crossmodal_model_versions", model=model, state="READY") == 1


def test_index_lists_every_version_and_load_needs_explicit_mode(served):
    address, _ = served
    with CrossModalClient(address) as client:
        index = {(m.name, m.version): m for m in client.repository_index().models}
        assert index[("clip", 0)].kind == "pipeline" and index[("clip", 0)].state == "READY"
        assert index[("clip_vision", 1)].state == "READY" and index[("clip_vision", 1)].provider == "CPU"
        with pytest.raises(grpc.RpcError) as refused:
            client.load_model("clip_text")
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "explicit" in refused.value.details()


def test_explicit_mode_loads_and_unloads_on_request(tmp_path, capsys):
    args = ("--model-control-mode", "explicit", "--load-model", "clip")
    with running_server(REPOSITORY, *args) as (address, _), CrossModalClient(address) as client:
        assert health(address, "crossmodal.v1.CrossModal") == NOT_SERVING  # towers not loaded yet
        with pytest.raises(grpc.RpcError) as missing:
            client.encode(["a dog"])
        assert missing.value.code() == grpc.StatusCode.UNAVAILABLE  # its towers are not loaded (yet)
        assert "not loaded" in missing.value.details()
        for name in ("clip_vision", "clip_text"):
            loaded = client.load_model(name).models
            assert [(m.version, m.state) for m in loaded] == [(1, "READY")]
        assert len(client.encode(["a dog"]).embeddings) == 1
        assert health(address, "crossmodal.v1.CrossModal") == SERVING
        assert cli_main(["models", "--server", address]) == 0
        assert "clip_vision" in capsys.readouterr().out
        assert cli_main(["unload", "--server", address, "clip_text"]) == 0
        with pytest.raises(grpc.RpcError) as gone:
            client.encode(["a dog"])
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
        assert health(address, "clip_text") == NOT_SERVING
        for name, code in (
            ("../clip_text", grpc.StatusCode.INVALID_ARGUMENT),
            ("/etc", grpc.StatusCode.INVALID_ARGUMENT),
            ("..", grpc.StatusCode.INVALID_ARGUMENT),
            ("no_such_model", grpc.StatusCode.NOT_FOUND),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                client.load_model(name)
            assert refused.value.code() == code, name
