"""The fast image path (reduced JPEG decode) against the exact one: a bounded embedding difference on
photo-like JPEGs, the exact path kept for everything it does not apply to, and the config switch."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data import photo_like
from server.backends.clip.vision import ClipVisionModel
from server.backends.onnx.session import SessionFactory
from server.backends.source import ModelSource
from server.core.errors import ModelLoadError
from server.images.decode import decode_image
from server.images.reduced_decode import EXACT_DECODE
from server.repository.model_config import load_model_config
from server.repository.specs import model_spec
from tests.fixtures.server import ROOT

MAX_PIXELS = 40_000_000
MIN_COSINE = 0.9999
# 20 photo sizes, landscape and portrait, from VGA to a 12-megapixel phone photo.
SIZES = [
    (640, 480),
    (480, 640),
    (800, 600),
    (1024, 768),
    (768, 1024),
    (1280, 720),
    (720, 1280),
    (1280, 960),
    (1600, 1200),
    (1920, 1080),
    (1080, 1920),
    (2048, 1536),
    (2560, 1440),
    (1440, 2560),
    (3000, 2000),
    (2000, 3000),
    (3264, 2448),
    (3840, 2160),
    (4032, 3024),
    (3024, 4032),
]


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [encoded(photo_like(i, w, h), "JPEG", quality=90) for i, (w, h) in enumerate(SIZES)]


def vision_model(repository: Path, **parameters: str) -> ClipVisionModel:
    directory = repository / "clip_vision"
    spec = model_spec(load_model_config(directory))
    if parameters:
        spec = dataclasses.replace(spec, parameters={**spec.parameters, **parameters})
    return ClipVisionModel(ModelSource("clip_vision", 1, directory / "1", spec), SessionFactory())


@pytest.fixture(scope="module", params=["demo", "tiny"])
def model(request):
    repository = ROOT / "model_repository" if request.param == "demo" else None
    if repository is None:
        repository = request.getfixturevalue("exported_repository")
    model = vision_model(repository)
    yield model
    model.close()


def embeddings(model: ClipVisionModel, images: list[bytes], decoding) -> np.ndarray:
    pixels = [model.preprocess(decode_image(data, MAX_PIXELS, decoding)) for data in images]
    return model.submit_images(pixels).result()


def test_fast_path_embeddings_stay_within_the_bound(model, photos):
    assert model.image_decoding != EXACT_DECODE  # on by default
    exact = embeddings(model, photos, EXACT_DECODE)
    fast = embeddings(model, photos, model.image_decoding)
    cosines = np.sum(exact * fast, axis=1)  # both L2-normalised
    assert cosines.min() >= MIN_COSINE, dict(zip(SIZES, cosines.round(6).tolist(), strict=True))
    # The bound is not met trivially: the large photos really were decoded smaller.
    assert not np.array_equal(exact[-1], fast[-1])


def test_reduced_decode_keeps_twice_the_resize_on_every_side(model, photos):
    floor = min(model.image_decoding.floor)
    shortest = model.preprocessor.shortest_edge
    for data, (width, height) in zip(photos, SIZES, strict=True):
        decoded = decode_image(data, MAX_PIXELS, model.image_decoding)
        assert min(decoded.size) >= 2 * shortest == floor
        if min(width, height) >= 4 * shortest:
            assert decoded.width < width and decoded.height < height
        ratio = (decoded.width / decoded.height) / (width / height)
        assert abs(ratio - 1) < 0.01  # the aspect ratio survives the reduction


def pixels_of(model: ClipVisionModel, data: bytes, decoding) -> np.ndarray:
    return model.preprocess(decode_image(data, MAX_PIXELS, decoding))


def test_png_and_small_jpeg_take_the_exact_path(model):
    png = encoded(photo_like(100, 2400, 1800), "PNG", compress_level=1)
    small = model.preprocessor.shortest_edge * 3  # under twice the floor: no reduction is possible
    small_jpeg = encoded(photo_like(101, small * 4 // 3, small), "JPEG", quality=90)
    for data in (png, small_jpeg):
        fast = pixels_of(model, data, model.image_decoding)
        np.testing.assert_array_equal(fast, pixels_of(model, data, EXACT_DECODE))


def test_normalisation_matches_whole_array_arithmetic(model):
    """The in-place per-channel normalisation gives the bits of the straightforward float32 formula."""
    pre = model.preprocessor
    pixels = np.random.default_rng(7).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    scaled = pixels.astype(np.float32) * np.float32(pre.rescale_factor)
    expected = (scaled - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    np.testing.assert_array_equal(pre.normalised(pixels), expected.transpose(2, 0, 1))


def test_config_parameter_selects_the_exact_path(exported_repository, photos):
    model = vision_model(exported_repository, image_decode="exact")
    try:
        assert model.image_decoding == EXACT_DECODE
        decoded = decode_image(photos[-1], MAX_PIXELS, model.image_decoding)
        assert decoded.size == SIZES[-1]
    finally:
        model.close()
    fast = vision_model(exported_repository, image_decode="fast")
    try:
        assert decode_image(photos[-1], MAX_PIXELS, fast.image_decoding).width < SIZES[-1][0]
    finally:
        fast.close()


def test_an_unknown_decode_path_is_a_load_error(exported_repository):
    with pytest.raises(ModelLoadError, match=r"image_decode.*'sloppy'.*fast, exact"):
        vision_model(exported_repository, image_decode="sloppy")
