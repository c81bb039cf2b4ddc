"""The size of generated images: `PIXELS` (square), `WIDTHxHEIGHT`, or the name of a common photo size."""

from __future__ import annotations

from numbers import Integral

# The sizes users upload most: a VGA webcam frame, a Full HD frame, a 12-megapixel phone photo.
NAMED_IMAGE_SIZES = {"vga": (640, 480), "1080p": (1920, 1080), "12mp": (4032, 3024)}
# Far above any camera's side; a side this large already makes a 190 MiB image in memory.
MAX_IMAGE_SIDE = 8192
IMAGE_SIZE_FORMS = (
    f"PIXELS (square, e.g. 224), WIDTHxHEIGHT (e.g. 1920x1080) or one of "
    f"{', '.join(f'{name} ({width}x{height})' for name, (width, height) in NAMED_IMAGE_SIZES.items())}"
)


def check_image_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) when both sides are whole numbers from 1 to MAX_IMAGE_SIDE; ValueError otherwise."""
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, Integral) or not 1 <= side <= MAX_IMAGE_SIDE:
            raise ValueError(
                f"image sides must be whole numbers from 1 to {MAX_IMAGE_SIDE} pixels, not {width}x{height}"
            )
    return int(width), int(height)


def parse_image_size(text: str) -> tuple[int, int]:
    """(width, height) from `224`, `1920x1080` or a name in NAMED_IMAGE_SIZES; ValueError otherwise."""
    spelled = text.strip().lower()
    if spelled in NAMED_IMAGE_SIZES:
        return NAMED_IMAGE_SIZES[spelled]
    sides = spelled.split("x")
    if len(sides) > 2 or not all(side.strip().isascii() and side.strip().isdigit() for side in sides):
        raise ValueError(f"image size must be {IMAGE_SIZE_FORMS}, not {text!r}")
    numbers = [int(side) for side in sides]
    width, height = numbers if len(numbers) == 2 else numbers * 2
    return check_image_size(width, height)
