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

from server.images.reduced_decode import EXACT_DECODE, ImageDecoding

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageDecodeError(ValueError):
    """The bytes are not an image this server accepts; the message says why."""


class ImageTooLarge(ValueError):
    """The image has more pixels than the configured limit."""


def decode_image(data: bytes, max_pixels: int, decoding: ImageDecoding = EXACT_DECODE) -> Image.Image:
    image = open_image(data, max_pixels)
    decoding.reduce(image)
    return load_rgb(image)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Reads only the header: the size and mode, from which decode_cost estimates the memory to decode."""
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
    return image


def load_rgb(image: Image.Image) -> Image.Image:
    """Decodes an opened image into upright RGB, copying only when the orientation or the mode needs it."""
    try:
        image.seek(0)  # GIF and other animations: the first frame
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)
    except Exception as error:  # truncated or corrupt pixel data, whatever the plugin raises for it
        raise ImageDecodeError(f"cannot decode {image.format} image: {_describe(error)}") from error


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        # round(v * 255 / 65535) in int32, in place: v / 257 is never exactly half-way, so this rounds as
        # rint does, in 4 bytes a pixel instead of float64 temporaries.
        pixels = np.array(image, dtype=np.int32)
        np.clip(pixels, 0, 65535, out=pixels)
        pixels *= 255
        pixels += 32767
        pixels //= 65535
        return Image.fromarray(pixels.astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        pixels = np.array(image, dtype=np.float32)
        np.rint(pixels, out=pixels)
        np.clip(pixels, 0, 255, out=pixels)
        return Image.fromarray(pixels.astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")
