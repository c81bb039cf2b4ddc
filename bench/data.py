"""Deterministic benchmark inputs: JPEG photos-to-be, English captions, Chinese sentences."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Slightly off-square, like a typical photo thumbnail, so the server really resizes and crops.
IMAGE_SIZE = (240, 224)

CAPTION_WORDS = tuple(
    " ".join(
        (
            "a an the two three small large young old red blue green white black brown dog dogs cat cats",
            "bird birds car cars tree trees man woman child children people snow grass table beach road",
            "city night park street field water sky sun light house bridge river boat ball bicycle running",
            "sitting standing playing looking walking riding near under over beside behind in on at with",
            "and of by during morning evening winter summer",
        )
    ).split()
)

CHINESE_SENTENCES = (
    "在雪地里有两条狗",
    "一只猫在桌子上",
    "夜晚的伦敦",
    "海滩上有三只鸟在飞",
    "一个男人在街上骑自行车",
    "两个孩子在公园里踢足球",
    "桌子上放着一杯咖啡和一本书",
    "一辆红色的汽车停在河边的路上",
)


def jpeg_images(count: int, seed: int = 0, size: tuple[int, int] = IMAGE_SIZE) -> list[bytes]:
    """Distinct smooth images with some noise (so JPEG decoding does real work), quality 90."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        scale = rng.uniform(0.01, 0.05, 3)
        channels = [127 + 100 * np.sin(scale[c] * x + phase[c]) * np.cos(scale[c] * y) for c in range(3)]
        pixels = np.stack(channels, axis=2) + rng.normal(0, 12, (height, width, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def photo_like(seed: int, width: int, height: int) -> Image.Image:
    """Smooth lighting, shapes with hard and blurred edges, fine texture and sensor noise."""
    rng = np.random.default_rng(seed)
    # Low-frequency colour field (lighting, sky, walls), upsampled smoothly to the photo's size.
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), 3)
    draw = ImageDraw.Draw(field)
    for _ in range(12):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        colour = tuple(rng.integers(0, 256, 3).tolist())
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0), width=max(width // 400, 1))
    field = field.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 1.5))))
    # Texture: stripes of a few pixels' period, like fabric, foliage or brickwork.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    period = float(rng.uniform(3, 12))
    texture = 18 * np.sin((xs * 0.8 + ys * 0.6) * (2 * np.pi / period))
    noise = rng.normal(0, 6, (height, width)).astype(np.float32)
    pixels = np.asarray(field, dtype=np.float32) + (texture + noise)[:, :, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photo_jpegs(count: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    """`count` distinct photo-like JPEGs of `size` (width, height) at quality 90, as cameras save them."""
    photos = []
    for index in range(count):
        buffer = io.BytesIO()
        photo_like(seed * 1000 + index, *size).save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def english_captions(count: int, seed: int = 0, words: tuple[int, int] = (5, 20)) -> list[str]:
    """Captions of 5 to 20 words: the length spread real caption sets have, which padding to 77 wastes."""
    rng = random.Random(seed)
    captions = []
    for _ in range(count):
        text = " ".join(rng.choice(CAPTION_WORDS) for _ in range(rng.randint(*words)))
        captions.append(text[0].upper() + text[1:] + ".")
    return captions


def chinese_sentences(count: int) -> list[str]:
    """The first `count` sentences (repeated when more are asked for than there are)."""
    return [CHINESE_SENTENCES[i % len(CHINESE_SENTENCES)] for i in range(count)]
