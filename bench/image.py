"""p1: image embedding throughput through the server vs in-process ONNX Runtime and transformers.

The server gets one JPEG per request from 32 concurrent callers and must decode, resize, crop and batch
them itself; the baselines get ready pixel tensors and the batch size that suits them best. So the ratios
say what the whole served path keeps of the bare model speed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.data import jpeg_images
from bench.figures import Figure
from bench.isolation import progress
from bench.measure import BatchSweep, LoadResult, sweep_batches
from bench.serving import encode_load
from bench.settings import BenchSettings
from tools.bench_models import VISION, BenchModels

DISTINCT_IMAGES = 64


def served(address: str, settings: BenchSettings, say: Callable[[str], None]) -> LoadResult:
    images = jpeg_images(DISTINCT_IMAGES)
    return encode_load(address, settings, lambda i: [images[i % len(images)]], 1, "JPEG images", say)


def pixels(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 3, size, size), dtype=np.float32)


def ort_sweep(models: BenchModels, settings: BenchSettings, section: str) -> BatchSweep:
    import onnxruntime as ort

    say = progress(section)

    # Default options, as a user who just opens the exported model would run it.
    session = ort.InferenceSession(
        str(models.repository / VISION / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    size = session.get_inputs()[0].shape[-1]

    def make_run(batch: int):
        feed = {"pixel_values": pixels(batch, size)}
        return lambda: session.run(None, feed)

    say("onnxruntime in process, pre-made pixel tensors:")
    return sweep_batches(
        make_run, settings.image_batches, settings.sweep_seconds, lambda s: say(f"  ort {s}")
    )


def torch_sweep(models: BenchModels, settings: BenchSettings, section: str) -> BatchSweep:
    import torch
    from transformers import CLIPModel

    say = progress(section)

    model = CLIPModel.from_pretrained(models.hf_clip).eval()
    size = model.config.vision_config.image_size

    def make_run(batch: int):
        tensor = torch.from_numpy(pixels(batch, size))

        def run():
            with torch.no_grad():
                return model.get_image_features(pixel_values=tensor)

        return run

    say(f"transformers CLIPModel.get_image_features in process ({torch.get_num_threads()} torch threads):")
    return sweep_batches(
        make_run, settings.image_batches, settings.sweep_seconds, lambda s: say(f"  torch {s}")
    )


def figures(server: LoadResult, ort_result: BatchSweep, torch_result: BatchSweep) -> list[Figure]:
    served_raw = server.as_dict("images")
    return [
        Figure(
            "p1_image_vs_ort",
            server.items_per_s / ort_result.best,
            {"server": served_raw, "onnxruntime": ort_result.as_dict("images")},
        ),
        Figure(
            "p1_image_vs_torch",
            server.items_per_s / torch_result.best,
            {"server": served_raw, "transformers": torch_result.as_dict("images")},
        ),
    ]
