"""Triton's own Python client against crossmodal: metadata, config, ModelInfer equal to Encode, BYTES,
statistics, repository control and errors. tritonclient needs protobuf < 7, so it runs in .venv-triton
(made by `make setup`) on expectations computed here with crossmodal's client."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from crossmodal import CrossModalClient
from server.backends.clip.preprocessing import ImagePreprocessor
from server.backends.clip.tokenizer import ClipTokenizer
from server.images.decode import decode_image
from tests.fixtures.server import ROOT, running_server

REPOSITORY = ROOT / "model_repository"
TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
IMAGE = ROOT / "clients" / "python" / "examples" / "data" / "two_dogs_in_snow.jpg"


def expectations(client: CrossModalClient, folder) -> None:
    caption, chinese = "a photo of two dogs in the snow", "两只狗在雪地里"
    tokenizer = ClipTokenizer.from_file(REPOSITORY / "clip_text" / "1" / "tokenizer.json", 77)
    preprocessor = ImagePreprocessor.from_file(REPOSITORY / "clip_vision" / "1" / "preprocessor_config.json")
    pixels = preprocessor(decode_image(IMAGE.read_bytes(), 10**8))[None]
    np.save(folder / "pixels.npy", pixels)
    (folder / "image.jpg").write_bytes(IMAGE.read_bytes())
    encoded = client.encode([caption, IMAGE])
    translated = client.translate([chinese]).results[0]
    expected = {
        "caption": caption,
        "token_ids": tokenizer.token_ids([caption])[0],
        "text_embedding": list(encoded.embeddings[0].values),
        "image_file_embedding": list(encoded.embeddings[1].values),
        "image_embedding": list(encoded.embeddings[1].values),
        "chinese": chinese,
        "translations": [h.text for h in translated.translations],
        "scores": [h.score for h in translated.translations],
    }
    (folder / "expectations.json").write_text(json.dumps(expected, ensure_ascii=False), encoding="utf-8")


def test_tritonclient_speaks_to_crossmodal(tmp_path):
    if not TRITON_PYTHON.exists():
        pytest.fail(f"{TRITON_PYTHON} is missing: run `make setup` (it makes the tritonclient virtualenv)")
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with running_server(REPOSITORY, *args) as (address, _), CrossModalClient(address) as client:
        expectations(client, tmp_path)
        checked = subprocess.run(
            [str(TRITON_PYTHON), str(ROOT / "tests" / "triton_checks.py"), address, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-5000:]
    assert "all tritonclient checks passed" in checked.stdout
