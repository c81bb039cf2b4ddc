"""Resize-then-centre-crop computed in source coordinates, so its memory follows the output size.

The reference (CLIPImageProcessor) resizes the whole image and then crops its centre: a 1x20000 image
becomes 224x4480000 before the crop keeps 224x224. Here the crop is mapped back onto the source and only
that part is resampled, at the same scale, so the pixels are the reference's (within one 8-bit level, from
Pillow's box being float32) while the intermediates stay near the output size. Each edge of the box is
moved out to the nearest point where the source and resized grids meet, when one lies within a few
output sizes: there the float32 box is exact and the resampling weights are the whole-image resize's.

Pillow resamples in two passes and picks their order from the sizes, so a single `resize(box=...)` may
round differently from the whole-image resize (up to 15 levels on noise with Pillow 13). When the crop
removes something, the passes are run here as two explicit calls, horizontal then vertical (Pillow's order
for the aspect-keeping resizes of CLIP), the first over only the source rows the second reads. When
nothing is cropped away (a fixed-size resize), the whole-image resize is used as it is.

Ordinary photos (a resized image of at most WHOLE_RESIZE_LIMIT times the output's pixels, i.e. aspect
ratios up to about 16:1 for a square crop) take the reference's own path, whole resize then crop, so their
pixels equal CLIPImageProcessor's exactly; its cost is still bounded by that limit. Only the extreme aspect
ratios beyond it take the source-coordinate path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Half-width of each Pillow filter's kernel in source pixels at scale 1 (NEAREST, BOX, BILINEAR, HAMMING,
# BICUBIC, LANCZOS); the rows a vertical pass reads reach this far (times the downscale) past its box.
FILTER_SUPPORT = {0: 0.5, 4: 0.5, 2: 1.0, 5: 1.0, 3: 2.0, 1: 3.0}
RGB_BYTES = 4  # Pillow stores an RGB pixel in 4 bytes
# Resized images up to this many times the output's pixels are resized whole, exactly as the reference.
WHOLE_RESIZE_LIMIT = 16


@dataclass(frozen=True)
class CropPlan:
    source: tuple[int, int]  # (width, height) of the decoded image
    resized: tuple[int, int]  # (width, height) the reference resizes it to before cropping
    part: tuple[int, int]  # (width, height) resampled: the crop's visible part, widened to exact edges
    box: tuple[float, float, float, float]  # that part in source coordinates
    trim: tuple[int, int]  # (top, left) of the crop's visible part within the resampled part
    visible: tuple[int, int]  # (height, width) of the crop's visible part (less than out when padded)
    rows: tuple[int, int]  # source rows [first, last) its vertical pass reads
    offset: tuple[int, int]  # (top, left) where the part lands in the output (zero padding around it)
    out: tuple[int, int]  # (height, width) of the output
    window: tuple[int, int] = (0, 0)  # (top, left) of the crop within the whole resized image
    whole: bool = False  # resize the whole image, then crop: the reference's path, for ordinary sizes

    @property
    def working_bytes(self) -> int:
        """Memory the resampling takes beyond the source image (Pillow's buffers, 4 bytes a pixel)."""
        width = self.source[0]
        if self.whole:  # either pass order's intermediate, then the resized image
            (rw, rh), (sw, sh) = self.resized, self.source
            return (max(rw * sh, sw * rh) + rw * rh) * RGB_BYTES
        first, last = self.rows
        copied_rows = 0 if self.rows == (0, self.source[1]) else width * (last - first)
        horizontal = self.part[0] * (last - first)
        return (copied_rows + horizontal + self.part[0] * self.part[1]) * RGB_BYTES


def plan_crop(
    source: tuple[int, int], resized: tuple[int, int], crop: tuple[int, int] | None, resample: int
) -> CropPlan:
    """What resizing `source` (width, height) to `resized` and centre-cropping `crop` (height, width, or
    None for no crop) reads and writes."""
    width, height = source
    out = (resized[1], resized[0]) if crop is None else crop
    left, right, left_pad = _window(resized[0], out[1])
    top, bottom, top_pad = _window(resized[1], out[0])
    visible = (bottom - top, right - left)
    window = (top, left)
    whole = resized[0] * resized[1] <= WHOLE_RESIZE_LIMIT * out[0] * out[1]
    (left, trim_left), (right, _) = _exact_edges(left, right, width, resized[0], out[1])
    (top, trim_top), (bottom, _) = _exact_edges(top, bottom, height, resized[1], out[0])
    # Integer products before the division: an edge of the resized image maps exactly onto the source's.
    box = (left * width / resized[0], top * height / resized[1])
    box += (right * width / resized[0], bottom * height / resized[1])
    scale = max((box[3] - box[1]) / max(bottom - top, 1), 1.0)
    reach = FILTER_SUPPORT.get(resample, 3.0) * scale + 1
    rows = (max(int(box[1] - reach), 0), min(math.ceil(box[3] + reach), height))
    part = (right - left, bottom - top)
    return CropPlan(
        source,
        resized,
        part,
        box,
        (trim_top, trim_left),
        visible,
        rows,
        (top_pad, left_pad),
        out,
        window,
        whole,
    )


def resample_crop(image: Image.Image, plan: CropPlan, resample: int) -> np.ndarray:
    """The planned crop of `image` as uint8 [H, W, channels], zero-padded where the image is smaller."""
    (part_width, part_height), (x0, y0, x1, y1) = plan.part, plan.box
    first, last = plan.rows
    if plan.whole:  # the reference's own steps: the whole image resized, then its centre kept
        resized = image if plan.resized == image.size else image.resize(plan.resized, resample=resample)
        (top, left), (height, width) = plan.window, plan.visible
        pixels = np.asarray(resized, dtype=np.uint8)[top : top + height, left : left + width]
        return _padded(pixels, plan)
    if plan.part == plan.resized:  # nothing is cropped away: the reference's own resize, pass order included
        part = image if plan.resized == image.size else image.resize(plan.resized, resample=resample)
    elif plan.box == (int(x0), int(y0), int(x1), int(y1)) and (x1 - x0, y1 - y0) == plan.part:
        part = image.crop((int(x0), int(y0), int(x1), int(y1)))  # no resize, only the crop
    else:
        part = image if plan.rows == (0, image.height) else image.crop((0, first, image.width, last))
        if (x0, x1) != (0, image.width) or part_width != image.width:
            part = part.resize((part_width, last - first), resample=resample, box=(x0, 0, x1, last - first))
        if (y0 - first, y1 - first) != (0, last - first) or part_height != last - first:
            part = part.resize(
                (part_width, part_height), resample=resample, box=(0, y0 - first, part_width, y1 - first)
            )
    pixels = np.asarray(part, dtype=np.uint8)
    if pixels.shape[:2] != plan.visible:
        (top, left), (height, width) = plan.trim, plan.visible
        pixels = pixels[top : top + height, left : left + width]
    return _padded(pixels, plan)


def _padded(pixels: np.ndarray, plan: CropPlan) -> np.ndarray:
    """The crop's visible part placed in the output, zeros around it where the image is smaller."""
    if pixels.shape[:2] == plan.out:
        return pixels
    padded = np.zeros((*plan.out, pixels.shape[2]), dtype=np.uint8)
    top, left = plan.offset
    padded[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return padded


def _exact_edges(
    start: int, stop: int, source: int, resized: int, out: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((start, trim), (stop, 0)): [start, stop) of a resized axis widened to where it maps onto whole
    source pixels, if that costs at most a few output sizes more; `trim` is how far the old start moved."""
    step = resized // math.gcd(source, resized)  # resized positions between whole-pixel source positions
    wide_start, wide_stop = start - start % step, -(-stop // step) * step
    if (wide_stop - wide_start) - (stop - start) > 4 * out:
        return (start, 0), (stop, 0)
    return (wide_start, start - wide_start), (wide_stop, 0)


def _window(length: int, crop: int) -> tuple[int, int, int]:
    """(start, stop, offset): the span of a `length` axis a centre crop of `crop` keeps, and where it lands
    in the crop. Like transformers, a shorter axis is centred with the odd padding pixel before it."""
    if length >= crop:
        start = (length - crop) // 2
        return start, start + crop, 0
    return 0, length, (crop - length + 1) // 2
