"""The OpenAI CLIP preprocessing, configured by the model's `preprocessor_config.json`.

Same steps and arithmetic as `transformers.CLIPImageProcessor`: resize (shortest edge, PIL resampling from
the file, bicubic by default) on 8-bit pixels, center crop, rescale by 1/255, normalise with mean/std; the
crop is taken in source coordinates, so memory follows the output size whatever the aspect ratio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from server.core.errors import ModelLoadError
from server.images.crop_resize import CropPlan, plan_crop, resample_crop

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
        """RGB image -> float32 [3, H, W], in memory proportional to the output (see crop_resize): every
        aspect ratio is accepted, and a 1x20000 image costs about what a 224x224 one does."""
        pixels = resample_crop(image, self.plan(*image.size), self.resample)
        scaled = pixels.astype(np.float32) * np.float32(self.rescale_factor)
        normalised = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)

    def plan(self, width: int, height: int) -> CropPlan:
        if self.shortest_edge is not None:
            resized = self._shortest_edge_size(width, height)
        elif self.resize_to is not None:
            resized = (self.resize_to[1], self.resize_to[0])
        else:
            resized = (width, height)
        return plan_crop((width, height), resized, self.crop, self.resample)

    def working_bytes(self, width: int, height: int) -> int:
        """Memory that preprocessing a decoded width x height image takes beyond the image itself: the
        resampling buffers, then the uint8, scaled, normalised and transposed arrays of the output."""
        plan = self.plan(width, height)
        out_height, out_width = plan.out
        return plan.working_bytes + out_height * out_width * 3 * (1 + 4 * 3)

    def _shortest_edge_size(self, width: int, height: int) -> tuple[int, int]:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
