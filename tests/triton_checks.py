"""Checks run with Triton's own client (tritonclient[grpc]) in its virtualenv, against a crossmodal server.

Usage: .venv-triton/bin/python tests/triton_checks.py ADDRESS EXPECTATIONS_DIR
The directory holds expectations.json and pixels.npy, made with crossmodal's own client and preprocessing.
Every check raises AssertionError with what differed; the exit status is 0 only when all pass.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def close(name: str, got, want, tolerance: float = 1e-5) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    difference = float(np.abs(got - want).max())
    assert difference <= tolerance, f"{name}: max difference {difference} > {tolerance}"


def infer(client, model: str, inputs: list, outputs: list[str] | None = None):
    requested = [triton.InferRequestedOutput(name) for name in outputs] if outputs else None
    return client.infer(model, inputs, outputs=requested)


def tensor(name: str, array: np.ndarray, datatype: str):
    made = triton.InferInput(name, list(array.shape), datatype)
    made.set_data_from_numpy(array)
    return made


def expect_error(code: str, call) -> None:
    try:
        call()
    except InferenceServerException as error:
        assert code in str(error.status()), f"expected {code}, got {error.status()}: {error.message()}"
        return
    raise AssertionError(f"expected {code}, the call succeeded")


def check_server(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "crossmodal" and "model_repository" in metadata.extensions
    text = client.get_model_metadata("clip_text")
    assert [(t.name, t.datatype, list(t.shape)) for t in text.inputs] == [
        ("input_ids", "INT64", [-1, -1]),
        ("attention_mask", "INT64", [-1, -1]),
    ]
    vision = client.get_model_metadata("clip_vision")
    assert vision.inputs[0].shape[0] == -1 and vision.outputs[0].datatype == "FP32"
    config = client.get_model_config("clip_vision").config
    assert (
        config.name == "clip_vision" and config.max_batch_size > 0 and config.platform == "onnxruntime_onnx"
    )
    assert client.get_model_config("opus_mt_zh_en").config.input[0].name == "TEXT"
    assert client.is_model_ready("clip") and not client.is_model_ready("no_such_model")


def check_towers(client, expected: dict, pixels: np.ndarray) -> None:
    ids = np.array([expected["token_ids"]], dtype=np.int64)
    reply = infer(
        client,
        "clip_text",
        [tensor("input_ids", ids, "INT64"), tensor("attention_mask", np.ones_like(ids), "INT64")],
    )
    close("clip_text text_embeds", reply.as_numpy("text_embeds")[0], expected["text_embedding"])
    padded = np.zeros((2, ids.shape[1] + 3), dtype=np.int64)
    padded[:, : ids.shape[1]] = ids
    mask = (padded != 0).astype(np.int64)
    reply = infer(
        client, "clip_text", [tensor("input_ids", padded, "INT64"), tensor("attention_mask", mask, "INT64")]
    )
    close("clip_text padded rows", reply.as_numpy("text_embeds"), [expected["text_embedding"]] * 2)
    reply = infer(client, "clip_vision", [tensor("pixel_values", pixels, "FP32")])
    close("clip_vision image_embeds", reply.as_numpy("image_embeds")[0], expected["image_embedding"])
    assert reply.get_response().model_version == "1"


def check_bytes(client, expected: dict, image: bytes) -> None:
    texts = np.array([expected["chinese"].encode()], dtype=np.object_)
    reply = infer(client, "opus_mt_zh_en", [tensor("TEXT", texts, "BYTES")])
    translations = [t.decode() for t in reply.as_numpy("TRANSLATIONS")[0]]
    assert translations == expected["translations"], (translations, expected["translations"])
    close("translator SCORES", reply.as_numpy("SCORES")[0], expected["scores"])
    images = np.array([image], dtype=np.object_)
    captions = np.array([expected["caption"].encode()], dtype=np.object_)
    reply = infer(client, "clip", [tensor("IMAGE", images, "BYTES"), tensor("TEXT", captions, "BYTES")])
    close("clip IMAGE_EMBEDS", reply.as_numpy("IMAGE_EMBEDS")[0], expected["image_file_embedding"])
    close("clip TEXT_EMBEDS", reply.as_numpy("TEXT_EMBEDS")[0], expected["text_embedding"])


def check_statistics(client, expected: dict) -> None:
    def counts():
        stats = client.get_inference_statistics("clip_text").model_stats[0]
        return stats.inference_count, stats.execution_count, stats.inference_stats.success.count

    before = counts()
    ids = np.array([expected["token_ids"]] * 3, dtype=np.int64)
    infer(client, "clip_text", [tensor("input_ids", ids, "INT64")])
    after = counts()
    assert after[0] == before[0] + 3 and after[1] > before[1] and after[2] > before[2], (before, after)
    stats = client.get_inference_statistics("clip_text").model_stats[0]
    assert stats.inference_stats.compute_infer.ns > 0 and stats.batch_stats


def check_repository(client) -> None:
    index = {(m.name, m.version): m.state for m in client.get_model_repository_index().models}
    assert index[("clip_vision", "1")] == "READY" and ("clip", "") in index
    client.unload_model("opus_mt_zh_en")
    assert not client.is_model_ready("opus_mt_zh_en")
    client.load_model("opus_mt_zh_en")
    assert client.is_model_ready("opus_mt_zh_en")


def check_errors(client, pixels: np.ndarray) -> None:
    expect_error("NOT_FOUND", lambda: infer(client, "no_such_model", [tensor("x", pixels, "FP32")]))
    small = np.zeros((1, 3, 8, 8), dtype=np.float32)
    expect_error(
        "INVALID_ARGUMENT", lambda: infer(client, "clip_vision", [tensor("pixel_values", small, "FP32")])
    )
    wrong_type = np.zeros((1, 4), dtype=np.int32)
    expect_error(
        "INVALID_ARGUMENT", lambda: infer(client, "clip_text", [tensor("input_ids", wrong_type, "INT32")])
    )
    expect_error("INVALID_ARGUMENT", lambda: infer(client, "clip_vision", [tensor("pixels", pixels, "FP32")]))


def main(address: str, folder: Path) -> None:
    expected = json.loads((folder / "expectations.json").read_text(encoding="utf-8"))
    pixels = np.load(folder / "pixels.npy")
    image = (folder / "image.jpg").read_bytes()
    client = triton.InferenceServerClient(url=address)
    for check in (
        lambda: check_server(client),
        lambda: check_towers(client, expected, pixels),
        lambda: check_bytes(client, expected, image),
        lambda: check_statistics(client, expected),
        lambda: check_repository(client),
        lambda: check_errors(client, pixels),
    ):
        check()
    print("all tritonclient checks passed")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
