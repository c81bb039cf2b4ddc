"""Image decode + preprocessing must match transformers' CLIPImageProcessor (the slow, PIL-based class) on the
exact decode path (the fast path is bounded against this one in test_fast_image_path.py)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw
from transformers import CLIPImageProcessor

from server.backends.clip.preprocessing import ImagePreprocessor
from server.images.crop_resize import resample_crop
from server.images.decode import ImageDecodeError, ImageTooLarge, decode_image
from server.images.reduced_decode import EXACT_DECODE

MAX_PIXELS = 4_000_000

# (width, height, mode, format): every mode in the formats that can store it, every size class.
CASES = [
    (7, 5, "RGB", "PNG"),
    (5, 7, "RGB", "JPEG"),
    (1, 1, "RGB", "PNG"),
    (2, 150, "L", "PNG"),  # extreme aspect ratio
    (1000, 700, "RGB", "JPEG"),
    (700, 1000, "RGB", "WEBP"),
    (300, 500, "RGBA", "PNG"),
    (500, 300, "RGBA", "WEBP"),
    (256, 256, "RGB", "BMP"),
    (224, 224, "RGB", "GIF"),  # Pillow quantises RGB to a palette when writing GIF
    (225, 301, "LA", "PNG"),
    (640, 360, "L", "JPEG"),
    (360, 640, "L", "BMP"),
    (123, 77, "L", "GIF"),
    (200, 120, "P", "PNG"),
    (120, 200, "P", "BMP"),
    (99, 99, "P", "GIF"),
    (320, 240, "CMYK", "JPEG"),
    (63, 65, "1", "PNG"),
    (65, 63, "1", "BMP"),
    (100, 40, "1", "GIF"),
    (64, 64, "RGB", "PNG"),
    (800, 31, "RGBA", "PNG"),
    (31, 800, "RGB", "JPEG"),
    # Extreme aspect ratios: the reference's resized intermediate is 224 x (224 x ratio).
    (1, 1000, "RGB", "PNG"),
    (1200, 1, "RGB", "PNG"),
    (3, 700, "L", "JPEG"),
    (900, 5, "RGBA", "PNG"),
]

# Settings other model kinds use: a crop larger than the resize (zero padding), a fixed size without a
# crop, a crop without a resize, and other resampling filters.
OTHER_SETTINGS = {
    "crop-pads": {"size": {"shortest_edge": 50}, "crop_size": {"height": 64, "width": 61}},
    "square-no-crop": {"size": {"height": 64, "width": 48}, "do_center_crop": False},
    "crop-only": {"do_resize": False, "crop_size": {"height": 40, "width": 64}},
    "bilinear": {"size": {"shortest_edge": 64}, "crop_size": 64, "resample": 2},
    "lanczos": {"size": {"shortest_edge": 64}, "crop_size": 64, "resample": 1},
    "box": {"size": {"shortest_edge": 33}, "crop_size": 32, "resample": 4},
}


def make_image(seed: int, width: int, height: int, mode: str) -> Image.Image:
    """Random noise with solid shapes on top: noise exercises resampling, shapes exercise edges."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), mode="RGBA")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        colour = tuple(rng.integers(0, 256, 4).tolist())
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    if mode == "P":
        return image.convert("RGB").quantize(colors=64)
    return image.convert(mode)


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module", params=["tiny-64", "openai-224"])
def processors(request, tiny_checkpoint):
    if request.param == "tiny-64":
        reference = CLIPImageProcessor.from_pretrained(tiny_checkpoint)
        ours = ImagePreprocessor.from_file(tiny_checkpoint / "preprocessor_config.json")
        assert ours.output_size == (64, 64)  # the file's size is used, not a hard-coded 224
    else:
        reference = CLIPImageProcessor()
        ours = ImagePreprocessor.from_dict(reference.to_dict())
        assert ours.output_size == (224, 224)
    return ours, reference


def reference_pixels(reference: CLIPImageProcessor, image: Image.Image) -> np.ndarray:
    # channels_last is explicit: inference would mistake a 3-pixel-high image for channels-first.
    out = reference(images=image, return_tensors="np", input_data_format="channels_last")
    return out["pixel_values"][0]


def assert_within_one_level(ours: np.ndarray, theirs: np.ndarray, std) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape
    # Back to [0, 1] pixel units: a difference of at most one 8-bit level is allowed.
    pixel_diff = np.abs(ours - theirs) * np.asarray(std, np.float64)[:, None, None]
    assert pixel_diff.max() <= 1 / 255 + 1e-6, f"max pixel difference {pixel_diff.max() * 255:.3f}/255"


@pytest.mark.parametrize(("width", "height", "mode", "fmt"), CASES, ids=lambda v: str(v))
def test_matches_clip_image_processor(processors, width, height, mode, fmt):
    ours, reference = processors
    data = encode(make_image(width * 7919 + height, width, height, mode), fmt)
    decoded = decode_image(data, MAX_PIXELS, EXACT_DECODE)
    assert decoded.mode == "RGB"
    assert decoded.size == (width, height)

    expected = reference_pixels(reference, decoded)
    assert_within_one_level(ours(decoded), expected, reference.image_std)
    # The reference also does its own RGB conversion of the undecoded image; ours must agree with it.
    raw = reference_pixels(reference, Image.open(io.BytesIO(data)))
    assert_within_one_level(ours(decoded), raw, reference.image_std)


@pytest.mark.parametrize(
    ("width", "height"), [(1600, 1200), (1200, 1600), (1920, 1080), (640, 480), (3000, 200), (7, 5)], ids=str
)
def test_ordinary_photos_take_the_reference_pixels_exactly(width, height):
    """Up to the whole-resize limit, the 8-bit pixels are the reference's resize-then-crop, bit for bit."""
    ours = ImagePreprocessor.from_dict(CLIPImageProcessor().to_dict())
    image = make_image(width * 31 + height, width, height, "RGB")
    plan = ours.plan(width, height)
    assert plan.whole
    short = min(width, height)
    size = (224, int(224 * height / short)) if width <= height else (int(224 * width / short), 224)
    resized = np.asarray(image.resize(size, resample=3))
    top, left = (size[1] - 224) // 2, (size[0] - 224) // 2
    expected = resized[top : top + 224, left : left + 224]
    np.testing.assert_array_equal(resample_crop(image, plan, 3), expected)


@pytest.mark.parametrize("settings", list(OTHER_SETTINGS), ids=str)
@pytest.mark.parametrize(("width", "height"), [(7, 5), (300, 40), (40, 300), (100, 100), (2, 500)], ids=str)
def test_other_settings_match_clip_image_processor(settings, width, height):
    reference = CLIPImageProcessor(**OTHER_SETTINGS[settings])
    ours = ImagePreprocessor.from_dict(reference.to_dict())
    data = encode(make_image(width + height, width, height, "RGB"), "PNG")
    decoded = decode_image(data, MAX_PIXELS, EXACT_DECODE)
    assert_within_one_level(ours(decoded), reference_pixels(reference, decoded), reference.image_std)


def test_exif_orientation_is_applied():
    # Stored landscape with a red block top-left; Orientation 6 means "rotate 90° clockwise to view".
    stored = Image.new("RGB", (80, 40), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif, quality=95)

    decoded = decode_image(buffer.getvalue(), MAX_PIXELS, EXACT_DECODE)
    assert decoded.size == (40, 80)
    red, green, blue = decoded.getpixel((30, 5))  # the block is now top-right
    assert red > 200 and green < 60 and blue < 60
    assert decoded.getpixel((5, 5))[2] > 200  # and top-left is background blue


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 12), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 3

    decoded = decode_image(buffer.getvalue(), MAX_PIXELS, EXACT_DECODE)
    assert decoded.size == (16, 12)
    assert (np.asarray(decoded) == (255, 0, 0)).all()


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    pixels = np.array([[0, 65535, 32768, 257]], dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I")

    decoded = np.asarray(decode_image(buffer.getvalue(), MAX_PIXELS, EXACT_DECODE))
    assert decoded.shape == (1, 4, 3)
    assert decoded[0, :, 0].tolist() == [0, 255, 128, 1]
    assert (decoded == decoded[..., :1]).all()  # grey stays grey


def test_empty_bytes_are_rejected():
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"", MAX_PIXELS, EXACT_DECODE)


def test_garbage_is_rejected_with_accepted_formats():
    with pytest.raises(ImageDecodeError, match=r"not a recognised image .*JPEG, PNG, WebP, BMP, GIF"):
        decode_image(b"this is not an image at all" * 10, MAX_PIXELS, EXACT_DECODE)


def test_unaccepted_format_is_rejected():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        decode_image(buffer.getvalue(), MAX_PIXELS, EXACT_DECODE)


def test_truncated_jpeg_is_rejected():
    data = encode(make_image(1, 200, 150, "RGB"), "JPEG")
    with pytest.raises(ImageDecodeError, match="JPEG") as info:
        decode_image(data[: len(data) // 2], MAX_PIXELS, EXACT_DECODE)
    assert "truncated" in str(info.value)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size but whose pixel data stops after a few bytes: decoding would fail."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(bytes(64))[:8])


def test_too_many_pixels_is_rejected_before_decoding():
    # Without pixel data, only a check made from the header can give ImageTooLarge rather than a decode error.
    with pytest.raises(ImageTooLarge, match=r"3000x2000 = 6000000 pixels; the limit is 5000000"):
        decode_image(png_header_only(3000, 2000), 5_000_000)
    with pytest.raises(ImageDecodeError):
        decode_image(png_header_only(3000, 2000), 10_000_000)  # under the limit it does try to decode


def test_decompression_bomb_is_too_large():
    # Far beyond Pillow's own bomb threshold: Pillow refuses at open, which is still "too large".
    with pytest.raises(ImageTooLarge):
        decode_image(png_header_only(30000, 30000), MAX_PIXELS, EXACT_DECODE)
