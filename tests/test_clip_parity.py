"""Embeddings served over gRPC equal the reference `CLIPModel` features (normalised) within 1e-4."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor, CLIPModel

from crossmodal import CrossModalClient
from server.images.decode import decode_image
from tests.fixtures.reference import load_open_clip_tokenizer
from tests.fixtures.server import encoded_image, running_server

TOLERANCE = 1e-4
EXACT_DECODE_PARAMETER = 'parameters { key: "image_decode" value { string_value: "exact" } }\n'

IMAGES = [
    (224, 224, "PNG", "RGB"),
    (640, 480, "JPEG", "RGB"),
    (480, 640, "JPEG", "RGB"),
    (64, 64, "BMP", "RGB"),
    (33, 17, "PNG", "RGBA"),
    (100, 300, "WEBP", "RGB"),
    (300, 100, "GIF", "P"),
    (81, 81, "PNG", "L"),
    (120, 90, "JPEG", "L"),
    (77, 200, "PNG", "LA"),
    (256, 128, "JPEG", "CMYK"),
    (9, 7, "PNG", "RGB"),
    (1000, 700, "JPEG", "RGB"),
    (65, 64, "BMP", "P"),
    (128, 64, "WEBP", "RGBA"),
    (50, 50, "PNG", "1"),
    (333, 222, "GIF", "L"),
    (64, 400, "PNG", "RGB"),
    (200, 201, "WEBP", "RGB"),
    (150, 150, "BMP", "L"),
    (500, 90, "JPEG", "RGB"),
    (70, 71, "PNG", "P"),
]

# Blank texts are refused by the server (tests/test_bad_inputs.py), so they are not compared here.
TEXTS = [
    "a",
    "A photo of a dog.",
    "There are two dogs in the snow",
    "A cat is on the table",
    "London at night",
    "在雪地里有两条狗",
    "一只猫在桌子上",
    "夜晚的伦敦",
    "🐶🐶 in ❄️",
    "emoji only 😀😃😄",
    "UPPER lower MiXeD",
    "numbers 1 22 333 4444",
    "punctuation!!! ??? ... ;;;",
    "tabs\tand\nnewlines",
    "it's a dog's life, isn't it?",
    "naïve café Über straße",
    "&amp; &lt;b&gt; html",
    "日本語のテキスト",
    "mixed 中文 and English",
    "a " * 100,
    "word " * 80,
    "supercalifragilisticexpialidocious",
    "the quick brown fox jumps over the lazy dog " * 5,
    "x",
    "zzz zzz zzz",
    "red car on a road",
    "a bird in a tree",
    "three trees on the grass",
    "night city lights",
    "a beach with a dog",
    "two cats and one bird",
    "the snow is white",
    "a small brown dog",
    "a large black cat",
    "雪地上有两只狗",
    "两只狗在雪地里",
    "雪地里的两只狗",
    "一辆车在路上",
    "草地上有三棵树",
    "hello world",
    "Ünïcödé àccents everywhere",
    "C'est la vie",
    "¿Qué tal?",
    "1+1=2",
    "@user #hashtag http://example.com",
    "   leading and trailing   ",
    "ALL CAPS SENTENCE",
    "a photo of a {}",
    "😀" * 40,
    "狗" * 90,
]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    model = CLIPModel.from_pretrained(tiny_checkpoint).eval()
    return model, CLIPImageProcessor.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def client(exported_repository, tmp_path_factory):
    """A server over the exported models on the exact image path: CLIPImageProcessor is the judge of
    that path (the fast one is bounded against it in test_fast_image_path.py)."""
    repository = tmp_path_factory.mktemp("exact-decode") / "model_repository"
    shutil.copytree(exported_repository, repository)
    config = repository / "clip_vision" / "config.pbtxt"
    config.write_text(config.read_text() + EXACT_DECODE_PARAMETER)
    with running_server(repository) as (address, _process), CrossModalClient(address) as client:
        yield client


def _normalised(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_image_embeddings_match_reference(client, reference):
    model, processor = reference
    data = [encoded_image(w, h, fmt, mode, seed=i) for i, (w, h, fmt, mode) in enumerate(IMAGES)]
    served = np.array([e.values for e in client.encode(data, version=1).embeddings])
    pixels = processor(images=[decode_image(d, 10**8) for d in data], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = _normalised(model.get_image_features(pixel_values=pixels))
    assert len(IMAGES) >= 20
    np.testing.assert_allclose(served, expected, atol=TOLERANCE)


def test_text_embeddings_match_reference(client, reference):
    model, _ = reference
    tokenizer = load_open_clip_tokenizer()
    ids = tokenizer.tokenize(TEXTS, context_length=77)
    # open_clip pads with 0, which is also a real token ("!"): mask by position up to the end-of-text token.
    lengths = (ids == 49407).int().argmax(dim=1) + 1
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        expected = _normalised(model.get_text_features(input_ids=ids, attention_mask=mask))
    served = np.array([e.values for e in client.encode(TEXTS, model="clip_plain", version=1).embeddings])
    assert len(TEXTS) >= 50 and int(lengths.max()) == 77  # some texts were cut to the context
    np.testing.assert_allclose(served, expected, atol=TOLERANCE)


def test_the_exported_image_tower_has_fused_attention(exported_repository):
    """The parity above is therefore the parity of the fused graph the server runs."""
    import onnx

    graph = onnx.load(str(exported_repository / "clip_vision" / "1" / "model.onnx")).graph
    assert sum(node.op_type == "Attention" for node in graph.node) >= 1
