"""The OpenAI CLIP preprocessing, configured by the model's `preprocessor_config.json`.

Same steps and arithmetic as `transformers.CLIPImageProcessor`: resize (shortest edge, PIL resampling from
the file, bicubic by default) on 8-bit pixels, center crop, rescale by 1/255, normalise with mean/std.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from server.errors import ModelLoadError

PIL_BICUBIC = 3


@dataclass(frozen=True)
class ImagePreprocessor:
    shortest_edge: int | None  # resize so the short side has this length (aspect kept) ...
    resize_to: tuple[int, int] | None  # ... or to exactly (height, width)
    crop: tuple[int, int] | None  # (height, width)
    resample: int
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_file(cls, path: Path) -> ImagePreprocessor:
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot read {path}: {error}") from error
        return cls.from_dict(settings, str(path))

    @classmethod
    def from_dict(cls, settings: dict, source: str = "preprocessor_config") -> ImagePreprocessor:
        try:
            size = settings.get("size") if settings.get("do_resize", True) else None
            shortest = resize_to = None
            if isinstance(size, int):
                shortest = size
            elif isinstance(size, dict) and "shortest_edge" in size:
                shortest = int(size["shortest_edge"])
            elif isinstance(size, dict):
                resize_to = (int(size["height"]), int(size["width"]))
            crop = None
            if settings.get("do_center_crop", True):
                crop_size = settings["crop_size"]
                crop = (
                    (crop_size, crop_size)
                    if isinstance(crop_size, int)
                    else (int(crop_size["height"]), int(crop_size["width"]))
                )
            rescale = (
                float(settings.get("rescale_factor", 1 / 255)) if settings.get("do_rescale", True) else 1.0
            )
            normalise = settings.get("do_normalize", True)
            mean = tuple(settings["image_mean"]) if normalise else (0.0, 0.0, 0.0)
            std = tuple(settings["image_std"]) if normalise else (1.0, 1.0, 1.0)
            return cls(
                shortest, resize_to, crop, int(settings.get("resample", PIL_BICUBIC)), rescale, mean, std
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelLoadError(f"{source}: incomplete image preprocessing settings: {error!r}") from error

    @property
    def output_size(self) -> tuple[int, int]:
        if self.crop:
            return self.crop
        if self.resize_to:
            return self.resize_to
        raise ValueError("the output size depends on the input when neither crop nor fixed resize is set")

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 [3, H, W]."""
        if self.shortest_edge is not None:
            image = image.resize(self._shortest_edge_size(*image.size), resample=self.resample)
        elif self.resize_to is not None:
            image = image.resize((self.resize_to[1], self.resize_to[0]), resample=self.resample)
        pixels = np.asarray(image, dtype=np.uint8)
        if self.crop is not None:
            pixels = center_crop(pixels, *self.crop)
        scaled = pixels.astype(np.float32) * np.float32(self.rescale_factor)
        normalised = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)

    def _shortest_edge_size(self, width: int, height: int) -> tuple[int, int]:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crops [H, W, C] around the centre; pads with zeros where the image is smaller, as transformers does."""
    h, w = pixels.shape[:2]
    if h < height or w < width:
        padded = np.zeros((max(h, height), max(w, width), pixels.shape[2]), dtype=pixels.dtype)
        top, left = (padded.shape[0] - h) // 2, (padded.shape[1] - w) // 2
        padded[top : top + h, left : left + w] = pixels
        pixels, h, w = padded, padded.shape[0], padded.shape[1]
    top, left = (h - height) // 2, (w - width) // 2
    return pixels[top : top + height, left : left + width]
