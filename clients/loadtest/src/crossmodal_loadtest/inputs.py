"""The inputs requests are built from: images (generated, or read from a folder) and caption sentences.

Generated images are small deterministic scenes (a gradient sky over ground, a few shapes), JPEG-encoded
like camera photos, so that decoding and resizing cost what they cost for real uploads of that size.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from crossmodal.client import image_item, text_item
from crossmodal.v1 import crossmodal_pb2 as pb

GENERATED_IMAGE_COUNT = 8
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


def generated_images(size: int, count: int = GENERATED_IMAGE_COUNT, seed: int = 0) -> list[bytes]:
    """`count` distinct size×size JPEG scenes; the same arguments always give the same bytes."""
    return [_scene(size, random.Random(seed * 1000 + index)) for index in range(count)]


def _scene(size: int, rng: random.Random) -> bytes:
    sky = tuple(rng.randrange(60, 230) for _ in range(3))
    ground = tuple(rng.randrange(20, 200) for _ in range(3))
    image = Image.new("RGB", (size, size), sky)
    draw = ImageDraw.Draw(image)
    horizon = rng.randrange(size // 3, 2 * size // 3 + 1)
    # A vertical gradient gives the encoder real frequency content rather than flat colour.
    for row in range(horizon, size):
        shade = (row - horizon) / max(size - horizon, 1)
        draw.line([(0, row), (size, row)], fill=tuple(int(c * (0.6 + 0.4 * shade)) for c in ground))
    for _ in range(rng.randrange(1, 4)):
        width, height = (
            rng.randrange(size // 8 + 1, size // 3 + 2),
            rng.randrange(size // 8 + 1, size // 3 + 2),
        )
        left, top = rng.randrange(0, size - width + 1), rng.randrange(0, size - height + 1)
        colour = tuple(rng.randrange(0, 256) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([left, top, left + width, top + height], fill=colour, outline=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


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
    def build(cls, image_size: int, image_dir: Path | None, languages: tuple[str, ...], seed: int = 0):
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
