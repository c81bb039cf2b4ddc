"""The memory decoding an image will take, estimated from its header before any pixel is decoded.

Pillow keeps 1, 2 or 4 bytes a pixel by mode (RGB takes 4); a GIF is decoded onto its whole logical screen,
which is what its header's size is. Converting to RGB makes a second image, an EXIF rotation a third, and
16-bit or float pixels pass through one 4-byte array on the way. Each Pillow image also keeps a
pointer (8 bytes) per row, which outweighs the pixels of a tall, narrow image (1x39000000: 312 MB a
copy). The estimate is what the server-wide memory budget admits a decode by; preprocessing adds its own
buffers (ImagePreprocessor.working_bytes).
"""

from __future__ import annotations

from PIL import Image

ORIENTATION_TAG = 0x0112
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
RGB_BYTES = 4
ROW_POINTER_BYTES = 8
NUMPY_CONVERSION = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}  # through a 4-byte array, then 8-bit grey


def decode_bytes(image: Image.Image) -> int:
    """Peak bytes of decoding an opened (header-only) image to upright RGB."""
    pixels = image.width * image.height
    rows = ROW_POINTER_BYTES * image.height  # of one Pillow image
    source = BYTES_PER_PIXEL.get(image.mode, 4) * pixels + rows
    if image.mode == "RGB":
        conversion = 0
    elif image.mode in NUMPY_CONVERSION:  # the 4-byte array, then an 8-bit grey and an RGB image
        conversion = (4 + 1 + 1 + RGB_BYTES) * pixels + 2 * rows
    else:
        conversion = RGB_BYTES * pixels + rows
    # A rotated copy may have as many rows as the source has columns.
    rotation = source + ROW_POINTER_BYTES * max(image.width - image.height, 0) if _rotated(image) else 0
    return source + max(rotation, conversion)


def _rotated(image: Image.Image) -> bool:
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixels: that
        # would spend the memory before it is admitted. One after the pixels is not counted.
        return False
    try:
        return image.getexif().get(ORIENTATION_TAG, 1) not in (1, None)
    except Exception:  # a corrupt EXIF block fails later, at decoding, with its own message
        return True
