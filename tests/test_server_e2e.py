"""A real server subprocess, called through the client library (blocking and asyncio) and the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import grpc
import numpy as np
import pytest

from crossmodal import AsyncCrossModalClient, CrossModalClient
from crossmodal.v1 import crossmodal_pb2 as pb
from tests.fixtures.server import ROOT, encoded_image

CLI = [sys.executable, "-m", "crossmodal.cli"]


@pytest.fixture(scope="module")
def client(server_address):
    with CrossModalClient(server_address, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "scene.jpg"
    path.write_bytes(encoded_image(160, 120, "JPEG", seed=5))
    return path


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_every_rpc_through_the_blocking_client(client, image_file):
    encoded = client.encode([image_file, "a dog", "一只狗"])
    assert len(encoded.embeddings) == 3 and len(encoded.texts) == 2
    assert [m.name for m in encoded.model.models] == ["clip_vision", "clip_text", "opus_mt_zh_en"]
    vectors = np.array([e.values for e in encoded.embeddings])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    compared = client.compare([image_file], ["a dog", "a cat"])
    assert (compared.rows, compared.cols) == (1, 2)
    assert all(-1.0 <= s <= 1.0 for s in compared.similarity)
    assert sum(compared.probabilities) == pytest.approx(1.0, abs=1e-5)

    classified = client.classify(
        [image_file], ["dog", "cat", "car"], prompt_template="a photo of {}", top_k=2
    )
    scores = classified.results[0].scores
    assert len(scores) == 2 and scores[0].probability >= scores[1].probability
    assert [t.text for t in classified.labels] == ["a photo of dog", "a photo of cat", "a photo of car"]

    translated = client.translate(["在雪地里有两条狗"], num_hypotheses=3)
    result = translated.results[0]
    assert result.language == "zh" and list(result.tokens) == ["在", "雪地", "里", "有", "两条", "狗"]
    assert len(result.translations) == 3 and result.encoded_text == result.translations[0].text
    assert [(m.name, m.version) for m in translated.model.models] == [("opus_mt_zh_en", 1)]


def test_chinese_text_in_compare_is_embedded_as_its_best_translation(client, image_file):
    compared = client.compare([image_file], ["在雪地里有两条狗", "a cat"])
    chinese = compared.texts[0]
    assert chinese.language == "zh" and len(chinese.translations) == 5
    assert chinese.encoded_text == chinese.translations[0].text
    assert "opus_mt_zh_en" in [m.name for m in compared.model.models]
    encoded = client.encode([image_file, chinese.encoded_text])
    vectors = np.array([e.values for e in encoded.embeddings])
    assert compared.similarity[0] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)


@pytest.mark.parametrize(
    "text",
    ["。，！？", "混合 English 和中文", "🐶在雪地里🐶", "狗" * 5000, "a\x00b\x07 控制字符", "   雪   "],
)
def test_awkward_texts_get_sensible_results(client, text):
    translated = client.translate([text]).results[0]
    assert translated.text == text and translated.translations
    encoded = client.encode([text])
    assert len(encoded.embeddings[0].values) == 24


def test_translate_errors_name_the_problem(client):
    error = _error(lambda: client.translate(["好", ""]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "texts[1]: text is empty" in error.details()
    error = _error(lambda: client.translate(["好"], num_beams=2, num_hypotheses=4))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "cannot exceed num_beams" in error.details()
    error = _error(lambda: client.translate(["好"], model="clip_vision"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "not a translator" in error.details()
    error = _error(lambda: client.translate(["好" * 9000]))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "texts[0]" in error.details()


def test_compare_matches_encode(client, image_file):
    encoded = client.encode([image_file, "a dog", "a cat"])
    vectors = np.array([e.values for e in encoded.embeddings])
    compared = client.compare([image_file], ["a dog", "a cat"])
    np.testing.assert_allclose(compared.similarity, vectors[0] @ vectors[1:].T, atol=1e-5)


def test_asyncio_client(server_address, image_file):
    async def calls():
        async with AsyncCrossModalClient(server_address, timeout=30) as client:
            return await asyncio.gather(
                client.encode([image_file.read_bytes(), "a dog"]),
                client.compare(["a dog"], ["a cat", "a dog"]),
                client.classify(["a dog"], ["dog", "cat"]),
            )

    encoded, compared, classified = asyncio.run(calls())
    assert len(encoded.embeddings) == 2
    assert compared.similarity[1] == pytest.approx(1.0, abs=1e-5)
    assert classified.results[0].scores[0].label == "dog"


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (pb.EncodeRequest(), grpc.StatusCode.INVALID_ARGUMENT, "items: empty"),
        (
            pb.EncodeRequest(items=[pb.Item(text="x"), pb.Item(image=b"\xff\xd8\xff\xe0 corrupt jpeg")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[1]: ",
        ),
        (
            pb.EncodeRequest(items=[pb.Item(image=b"")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[0]: image is empty",
        ),
        (
            pb.EncodeRequest(items=[pb.Item(text="x"), pb.Item()]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[1]: neither image nor text",
        ),
        (
            pb.EncodeRequest(model=pb.ModelSpec(name="unknown"), items=[pb.Item(text="x")]),
            grpc.StatusCode.NOT_FOUND,
            "no pipeline named 'unknown'",
        ),
        (
            pb.EncodeRequest(model=pb.ModelSpec(version=9), items=[pb.Item(text="x")]),
            grpc.StatusCode.NOT_FOUND,
            "no version 9",
        ),
    ],
)
def test_errors_have_status_and_name_the_item(client, request_, code, message):
    error = _error(lambda: client._stub.Encode(request_, timeout=30))
    assert error.code() == code
    assert message in error.details()


def test_truncated_image_and_empty_compare_sides(client, image_file):
    truncated = image_file.read_bytes()[:200]
    error = _error(lambda: client.compare(["x"], [truncated]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "candidates[0]" in error.details()
    error = _error(lambda: client.compare([], ["x"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "queries: empty" in error.details()


def test_server_keeps_serving_after_errors(client):
    for _ in range(3):
        _error(lambda: client.encode([b"garbage"]))
    assert len(client.encode(["still here"]).embeddings) == 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_cli_json_uses_proto_field_names(server_address, image_file):
    result = _cli(
        "encode", "--server", server_address, "--image", str(image_file), "--text", "a dog", "--json"
    )
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert len(response["embeddings"]) == 2 and response["texts"][0]["encoded_text"] == "a dog"

    result = _cli(
        "classify",
        "--server",
        server_address,
        "--image",
        str(image_file),
        "--label",
        "dog",
        "--label",
        "cat",
        "--prompt-template",
        "a photo of {}",
        "--top-k",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["results"][0]["scores"]) == 1


def test_cli_readable_reports(server_address, image_file):
    result = _cli(
        "compare",
        "--server",
        server_address,
        "--image",
        str(image_file),
        "--text",
        "在雪地里有两条狗",
        "--text",
        "夜晚的伦敦",
    )
    assert result.returncode == 0, result.stderr
    assert "1 queries x 2 candidates" in result.stdout
    assert "similarity" in result.stdout and "%" in result.stdout and "probabilities: [" in result.stdout
    assert "language: zh" in result.stdout and "tokens: [在, 雪地, 里, 有, 两条, 狗]" in result.stdout
    assert "translations:" in result.stdout and "encoded as:" in result.stdout

    result = _cli("encode", "--server", server_address, "--text", "a dog")
    assert "vector dimension: 24" in result.stdout and "embedding: [" in result.stdout

    result = _cli(
        "classify", "--server", server_address, "--text", "a dog", "--label", "dog", "--label", "cat"
    )
    assert "1. " in result.stdout and "probability" in result.stdout


def test_cli_translate(server_address):
    result = _cli(
        "translate", "--server", server_address, "--text", "在雪地里有两条狗", "--num-hypotheses", "2"
    )
    assert result.returncode == 0, result.stderr
    assert "tokens: [在, 雪地, 里, 有, 两条, 狗]" in result.stdout and "  2. " in result.stdout
    result = _cli("translate", "--server", server_address, "--text", "夜晚的伦敦", "--json")
    response = json.loads(result.stdout)
    assert response["results"][0]["tokens"] == ["夜晚", "的", "伦敦"]
    assert len(response["results"][0]["translations"]) == 5


def test_cli_reports_errors_with_status(server_address, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    result = _cli("encode", "--server", server_address, "--image", str(bad))
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "items[0]" in result.stderr
    result = _cli("encode", "--server", server_address, "--image", str(tmp_path / "missing.png"))
    assert result.returncode != 0 and "cannot read image" in result.stderr


def test_server_help_explains_every_flag():
    result = subprocess.run(
        [sys.executable, "-m", "server", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for flag in (
        "--model-repository",
        "--host",
        "--port",
        "--strict-gpu",
        "--max-items",
        "--max-image-bytes",
        "--max-image-pixels",
        "--max-text-chars",
        "--grace-period",
        "--workers",
        "--log-level",
    ):
        assert flag in result.stdout


def test_server_refuses_a_missing_repository(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "server", "--model-repository", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "is not a directory" in result.stderr
