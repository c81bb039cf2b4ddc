"""The inputs requests are built from: images (generated, or read from a folder) and caption sentences.

Generated images are deterministic scenes (a sky over shaded ground, a few shapes) with fine texture and
sensor noise, JPEG-encoded at quality 90 like camera photos, so that decoding and resizing cost what they
cost for real uploads of that size.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from crossmodal.client import image_item, text_item
from crossmodal.v1 import crossmodal_pb2 as pb

GENERATED_IMAGE_COUNT = 8
JPEG_QUALITY = 90  # what phone cameras and most photo software save at
TEXTURE_AMPLITUDE = 18.0  # grey levels, on the ground; a third of it in the sky
NOISE_SIGMA = 6.0  # grey levels: a phone sensor in daylight
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")

CAPTIONS = {
    "en": (
        "There are two dogs in the snow",
        "A cat is on the table",
        "London at night",
        "Three birds on the grass",
        "A red car on the road",
        "Two trees on the beach",
        "A dog is running on the beach",
        "Cats are sleeping on the grass",
        "A bird is sitting in a tree",
        "Two cars in London at night",
        "A photo of a dog",
        "An empty road in the snow",
    ),
    "zh": (
        "在雪地里有两条狗",
        "一只猫在桌子上",
        "夜晚的伦敦",
        "草地上有三只鸟",
        "马路上有一辆车",
        "沙滩上有两棵树",
        "一只狗在沙滩上奔跑",
        "草地上有两只猫",
        "一只鸟在树上",
        "夜晚的伦敦街头有两辆车",
        "雪地上有一棵树",
        "桌子上有三只猫",
    ),
}
LABELS = {
    "en": ("dog", "cat", "bird", "car", "tree", "snow", "beach", "city"),
    "zh": ("狗", "猫", "鸟", "车", "树", "雪地", "沙滩", "城市"),
}
PROMPT_TEMPLATES = {"en": "a photo of {}", "zh": "一张{}的照片"}


def generated_images(size: tuple[int, int], count: int = GENERATED_IMAGE_COUNT, seed: int = 0) -> list[bytes]:
    """`count` distinct photo-like JPEGs of `size` (width, height); the same arguments give the same bytes."""
    return [_photo(size, seed * 1000 + index) for index in range(count)]


def _photo(size: tuple[int, int], seed: int) -> bytes:
    width, height = size
    scene, horizon = _scene(width, height, random.Random(seed))
    pixels = scene.astype(np.float32)
    pixels += _grain(width, height, horizon, np.random.default_rng(seed))[:, :, None]
    np.clip(pixels, 0, 255, out=pixels)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _grain(width: int, height: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """Fine texture (fabric, foliage, brickwork) of a few pixels' period, stronger on the ground than in
    the sky, plus Gaussian sensor noise: the high frequencies that make a camera JPEG large and slow to
    decode. A height x width float32 offset in grey levels, the same for the three channels."""
    wavenumber = 2 * np.pi / rng.uniform(3.0, 8.0)
    angle = rng.uniform(0.0, np.pi)
    rows = np.arange(height, dtype=np.float32)[:, None]
    columns = np.arange(width, dtype=np.float32)[None, :]
    # Constants folded into the row and column factors, so each full-size operation runs once.
    phase = columns * np.float32(wavenumber * np.cos(angle)) + rows * np.float32(wavenumber * np.sin(angle))
    amplitude = np.where(rows >= horizon, np.float32(TEXTURE_AMPLITUDE), np.float32(TEXTURE_AMPLITUDE / 3))
    grain = np.sin(phase, out=phase)
    grain *= amplitude
    grain += rng.standard_normal((height, width), dtype=np.float32) * np.float32(NOISE_SIGMA)
    return grain


def _scene(width: int, height: int, rng: random.Random) -> tuple[np.ndarray, int]:
    """A sky over a shaded ground with a few outlined shapes, as an RGB array, and the horizon row."""
    sky = np.array([rng.randrange(60, 230) for _ in range(3)], dtype=np.float32)
    ground = np.array([rng.randrange(20, 200) for _ in range(3)], dtype=np.float32)
    horizon = rng.randrange(height // 3, 2 * height // 3 + 1)
    # The ground darkens towards the horizon, as light falls off with distance.
    shade = 0.6 + 0.4 * np.arange(height - horizon, dtype=np.float32) / max(height - horizon, 1)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:horizon] = sky.astype(np.uint8)
    pixels[horizon:] = (shade[:, None, None] * ground).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(1, 4)):
        shape_width = rng.randrange(width // 8 + 1, width // 3 + 2)
        shape_height = rng.randrange(height // 8 + 1, height // 3 + 2)
        left = rng.randrange(0, max(width - shape_width, 0) + 1)
        top = rng.randrange(0, max(height - shape_height, 0) + 1)
        colour = tuple(rng.randrange(0, 256) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(
            [left, top, left + shape_width, top + shape_height],
            fill=colour,
            outline=(0, 0, 0),
            width=max(min(width, height) // 400, 1),
        )
    return np.asarray(image), horizon


def folder_images(folder: Path) -> list[bytes]:
    """The encoded bytes of every image file directly in `folder`, by name (sent as they are)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return [path.read_bytes() for path in paths]


@dataclass(frozen=True)
class InputPool:
    """Ready-made request items, built once so that the load loop only picks them."""

    images: tuple[pb.Item, ...]
    texts: dict[str, tuple[pb.Item, ...]]
    chinese_texts: tuple[str, ...]
    labels: dict[str, tuple[str, ...]]

    @classmethod
    def build(
        cls, image_size: tuple[int, int], image_dir: Path | None, languages: tuple[str, ...], seed: int = 0
    ):
        images = (
            folder_images(image_dir) if image_dir is not None else generated_images(image_size, seed=seed)
        )
        return cls(
            images=tuple(image_item(data) for data in images),
            texts={language: tuple(text_item(text) for text in CAPTIONS[language]) for language in languages},
            # Translation is zh -> en, so translate requests always carry Chinese sentences.
            chinese_texts=CAPTIONS["zh"],
            labels={language: LABELS[language] for language in languages},
        )
