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
# A reduced decode keeps at least this many times the resize target, so the resize still filters.
REDUCED_DECODE_MARGIN = 2


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
        return self.normalised(pixels)

    def normalised(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [3, H, W]: (pixels * rescale - mean) / std, in float32, written channel
        by channel into the one output buffer (the same operations, so the same bits, as whole-array
        arithmetic, without its three float temporaries)."""
        out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
        rescale = np.float32(self.rescale_factor)
        for channel, (mean, std) in enumerate(zip(self.mean, self.std, strict=True)):
            plane = out[channel]
            np.multiply(pixels[:, :, channel], rescale, out=plane, dtype=np.float32)
            plane -= np.float32(mean)
            plane /= np.float32(std)
        return out

    @property
    def decode_floor(self) -> tuple[int, int] | None:
        """The smallest (width, height) a reduced decode may give the resize: twice its target on every
        side, whichever way the image turns out to be oriented; None when nothing is resized down."""
        if self.shortest_edge is not None:
            side = REDUCED_DECODE_MARGIN * self.shortest_edge
        elif self.resize_to is not None:
            side = REDUCED_DECODE_MARGIN * max(self.resize_to)
        else:
            return None
        return side, side

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
        resampling buffers, then the uint8 and float32 arrays of the output."""
        plan = self.plan(width, height)
        out_height, out_width = plan.out
        return plan.working_bytes + out_height * out_width * 3 * (1 + 4)

    def _shortest_edge_size(self, width: int, height: int) -> tuple[int, int]:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
