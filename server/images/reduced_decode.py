"""Reduced JPEG decoding: the decoder scales the DCT blocks down by 2, 4 or 8 before any pixel exists.

A 12-megapixel photo resized to 224 pixels spends most of its time decoding and filtering pixels the
resize throws away. libjpeg can decode at 1/2, 1/4 or 1/8 scale from the DCT coefficients, which is both
a faster decode and a smaller image to resize. The reduced image is kept at least twice the resize target
on every side, so the exact resize that follows still does the real (bicubic) filtering; the embedding
stays within a measured bound of the exact path (cosine >= 0.9999, tests/test_fast_image_path.py).

Only baseline single-image JPEGs are reduced; other formats (MPO included) and images less than twice
the floor keep the exact path. Reducing changes the opened image's size before it is decoded, so the
memory estimate made from that size afterwards (decode_cost) is the reduced decode's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

FAST, EXACT = "fast", "exact"
DECODE_PATHS = (FAST, EXACT)
MIN_SCALE = 2  # libjpeg's smallest reduction; below it the decode would be the full-size one anyway


@dataclass(frozen=True)
class ImageDecoding:
    floor: tuple[int, int] | None  # (width, height) a reduced decode keeps at least; None: the exact path

    def reduce(self, image: Image.Image) -> bool:
        """Asks an opened, not yet decoded JPEG for a reduced decode; True when its size changed."""
        if self.floor is None or image.format != "JPEG" or len(image.tile) != 1:
            return False
        width, height = self.floor
        if min(image.width // width, image.height // height) < MIN_SCALE:
            return False
        before = image.size
        image.draft("RGB", self.floor)
        return image.size != before


EXACT_DECODE = ImageDecoding(None)


@runtime_checkable
class ChoosesImageDecoding(Protocol):
    """An image embedder that says how its images may be decoded (others get the exact path)."""

    image_decoding: ImageDecoding


def decoding_of(embedder: object) -> ImageDecoding:
    return embedder.image_decoding if isinstance(embedder, ChoosesImageDecoding) else EXACT_DECODE
