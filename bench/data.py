"""Deterministic benchmark inputs: JPEG photos-to-be, English captions, Chinese sentences."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

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
