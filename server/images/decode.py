"""Turns encoded image bytes into an RGB Pillow image, or a clear error saying why not.

JPEG, PNG, WebP, BMP and GIF (first frame) are accepted. EXIF orientation is applied. Other modes are
converted to RGB the way CLIPImageProcessor does (`Image.convert("RGB")`), except 16-bit greyscale, which
is scaled to 8 bits instead of being clipped to white.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageDecodeError(ValueError):
    """The bytes are not an image this server accepts; the message says why."""


class ImageTooLarge(ValueError):
    """The image has more pixels than the configured limit."""


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageDecodeError("image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # The pixel limit is ours to enforce (below); Pillow's own bomb warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as error:
        raise ImageDecodeError(
            f"not a recognised image ({len(data)} bytes); accepted formats: JPEG, PNG, WebP, BMP, GIF"
        ) from error
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(str(error)) from error
    except Exception as error:  # Pillow's plugins raise many kinds of errors on corrupt headers
        raise ImageDecodeError(f"corrupt image header ({len(data)} bytes): {_describe(error)}") from error
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width == 0 or height == 0:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    try:
        image.seek(0)  # GIF and other animations: the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except Exception as error:  # truncated or corrupt pixel data, whatever the plugin raises for it
        raise ImageDecodeError(f"cannot decode {image.format} image: {_describe(error)}") from error


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        scaled = np.clip(np.rint(pixels * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")
