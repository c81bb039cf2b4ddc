"""p6: what users send. Camera-size JPEGs through the server, and a fixed Chinese label set asked twice.

  preprocessing  decode + resize + crop + normalise per photo, one thread: the exact path (pixels equal
                 CLIPImageProcessor's) against the fast one (reduced DCT-scale JPEG decode), with the
                 cosine between their embeddings on the ViT-B/32-size model
  end to end     images/s at concurrency 32, one photo per Encode, against (a) transformers
                 CLIPImageProcessor + get_image_features on the same JPEG bytes and (b) in-process ONNX
                 Runtime with the server's exact preprocessing, each at its best batch size
  cached labels  Classify(1 photo, 20 Chinese labels) on the opus-mt-size translator: the first call
                 translates and embeds the labels, the next ones find them in the response cache

Photos are generated once (bench.data.photo_jpegs: lighting, shapes, texture, sensor noise, quality 90)
and handed to each fresh process, so every side decodes the same bytes.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.data import photo_jpegs
from bench.figures import Figure
from bench.isolation import progress
from bench.measure import BatchSweep, LoadResult, closed_loop, summarise, sweep_batches
from bench.settings import BenchSettings
from tools.bench_models import VISION, BenchModels

# name -> (width, height); the end-to-end loads run on the two large ones.
PHOTO_SIZES = {"640x480": (640, 480), "1080p": (1920, 1080), "12mp": (4032, 3024)}
LOADED_SIZES = ("1080p", "12mp")
PHOTOS_PER_SIZE = {"640x480": 16, "1080p": 16, "12mp": 8}
MAX_PIXELS = 40_000_000

COLOURS = ("红色的", "蓝色的", "白色的", "黑色的", "绿色的", "黄色的")
THINGS = ("狗", "猫", "汽车", "鸟", "自行车", "房子", "船", "花", "椅子", "雨伞")
LABELS_PER_CALL = 20
LABEL_SETS = 3  # each set's first call is a cold one; sets share no label
WARM_REPEATS = 5


@dataclass(frozen=True)
class PhotoSet:
    name: str
    size: tuple[int, int]
    jpegs: list[bytes]

    @property
    def megapixels(self) -> float:
        return self.size[0] * self.size[1] / 1e6


def photo_sets(settings: BenchSettings) -> list[PhotoSet]:
    """The photos of every size (`settings.photos_per_size` each, when set)."""
    sets = []
    for index, (name, size) in enumerate(PHOTO_SIZES.items()):
        count = settings.photos_per_size or PHOTOS_PER_SIZE[name]
        sets.append(PhotoSet(name, size, photo_jpegs(count, size, seed=index + 1)))
    return sets


def chinese_label_sets() -> list[list[str]]:
    """LABEL_SETS disjoint sets of LABELS_PER_CALL Chinese labels ("a red dog", "a blue car", ...)."""
    labels = [colour + thing for thing in THINGS for colour in COLOURS]
    return [labels[i * LABELS_PER_CALL : (i + 1) * LABELS_PER_CALL] for i in range(LABEL_SETS)]


# -- preprocessing, exact vs fast (in a fresh process) -----------------------------------------------------


def preprocessing(models: BenchModels, sets: list[PhotoSet], section: str) -> dict:
    """Per photo size: median ms of decode + preprocess on each path, and the embeddings' cosine."""
    from server.backends.clip.vision import ClipVisionModel
    from server.backends.onnx.session import SessionFactory
    from server.backends.source import ModelSource
    from server.images.decode import decode_image
    from server.images.reduced_decode import EXACT_DECODE
    from server.repository.model_config import load_model_config
    from server.repository.specs import model_spec

    say = progress(section)
    directory = models.repository / VISION
    spec = model_spec(load_model_config(directory))
    model = ClipVisionModel(ModelSource(VISION, 1, directory / "1", spec), SessionFactory())
    paths = {"exact": EXACT_DECODE, "fast": model.image_decoding}
    results = {}
    try:
        for photos in sets:
            timings: dict[str, list[float]] = {"exact": [], "fast": []}
            pixels: dict[str, list[np.ndarray]] = {"exact": [], "fast": []}
            for data in photos.jpegs:
                for path, decoding in paths.items():  # untimed: the pixels the cosine is taken on
                    pixels[path].append(model.preprocess(decode_image(data, MAX_PIXELS, decoding)))
                for _ in range(3):  # alternating, so a slow moment of the machine hits both paths
                    for path, decoding in paths.items():
                        started = time.perf_counter()
                        model.preprocess(decode_image(data, MAX_PIXELS, decoding))
                        timings[path].append(time.perf_counter() - started)
            exact = model.submit_images(pixels["exact"]).result()
            fast = model.submit_images(pixels["fast"]).result()
            cosines = np.sum(exact * fast, axis=1)
            entry = {
                "exact_ms": statistics.median(timings["exact"]) * 1e3,
                "fast_ms": statistics.median(timings["fast"]) * 1e3,
                "min_cosine": float(cosines.min()),
                "photos": len(photos.jpegs),
            }
            entry["speedup"] = entry["exact_ms"] / entry["fast_ms"]
            say(
                f"{photos.name}: exact {entry['exact_ms']:.1f} ms, fast {entry['fast_ms']:.1f} ms per photo "
                f"({entry['speedup']:.2f}x), cosine >= {entry['min_cosine']:.6f}"
            )
            results[photos.name] = entry
    finally:
        model.close()
    return results


# -- end to end through the server ---------------------------------------------------------------------


def served(address: str, sets: list[PhotoSet], settings: BenchSettings, say) -> dict[str, LoadResult]:
    """Concurrent Encode(1 photo) per large size."""
    from crossmodal import AsyncCrossModalClient

    async def load(jpegs: list[bytes]) -> LoadResult:
        async with AsyncCrossModalClient(address, timeout=300) as client:
            return await closed_loop(
                lambda i: client.encode([jpegs[i % len(jpegs)]]),
                items_per_call=1,
                concurrency=settings.concurrency,
                seconds=settings.serve_seconds,
                warmup_seconds=settings.serve_warmup_seconds,
            )

    results = {}
    for photos in sets:
        if photos.name not in LOADED_SIZES:
            continue
        say(
            f"server: {settings.concurrency} concurrent Encode(1 photo of {photos.name}) for "
            f"{settings.serve_seconds:.0f}s after {settings.serve_warmup_seconds:g}s warm-up"
        )
        results[photos.name] = result = asyncio.run(load(photos.jpegs))
        say(f"server: {result.items_per_s:.2f} photos/s at {photos.name}")
    return results


def transformers_sweep(models: BenchModels, sets: list[PhotoSet], settings: BenchSettings, section: str):
    """CLIPImageProcessor + get_image_features on the JPEG bytes, per large size: best batch."""
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel

    say = progress(section)
    model = CLIPModel.from_pretrained(models.hf_clip).eval()
    processor = CLIPImageProcessor.from_pretrained(models.hf_clip)
    results = {}
    for photos in _loaded(sets):

        def make_run(batch: int, jpegs=photos.jpegs):
            chosen = [jpegs[i % len(jpegs)] for i in range(batch)]

            def run():
                images = [Image.open(io.BytesIO(data)).convert("RGB") for data in chosen]
                inputs = processor(images=images, return_tensors="pt")
                with torch.no_grad():
                    return model.get_image_features(**inputs)

            return run

        say(f"transformers at {photos.name} ({torch.get_num_threads()} torch threads):")
        results[photos.name] = sweep_batches(
            make_run, settings.photo_batches, settings.sweep_seconds, lambda s: say(f"  torch {s}")
        )
    return results


def ort_exact_sweep(models: BenchModels, sets: list[PhotoSet], settings: BenchSettings, section: str):
    """Plain ONNX Runtime in process, the server's exact preprocessing before it, per large size."""
    import onnxruntime as ort

    from server.backends.clip.preprocessing import ImagePreprocessor
    from server.images.decode import decode_image

    say = progress(section)
    version = models.repository / VISION / "1"
    session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    preprocess = ImagePreprocessor.from_file(version / "preprocessor_config.json")
    results = {}
    for photos in _loaded(sets):

        def make_run(batch: int, jpegs=photos.jpegs):
            chosen = [jpegs[i % len(jpegs)] for i in range(batch)]

            def run():
                pixels = np.stack([preprocess(decode_image(data, MAX_PIXELS)) for data in chosen])
                return session.run(None, {"pixel_values": pixels})

            return run

        say(f"onnxruntime with exact preprocessing at {photos.name}:")
        results[photos.name] = sweep_batches(
            make_run, settings.photo_batches, settings.sweep_seconds, lambda s: say(f"  ort {s}")
        )
    return results


def _loaded(sets: list[PhotoSet]) -> list[PhotoSet]:
    return [photos for photos in sets if photos.name in LOADED_SIZES]


# -- cached classification -------------------------------------------------------------------------------


def cached_classify(address: str, photo: bytes, say: Callable[[str], None]) -> dict:
    """First and repeated Classify(1 photo, 20 Chinese labels) per label set, over gRPC."""
    from crossmodal import CrossModalClient

    cold, warm = [], []
    with CrossModalClient(address, timeout=600) as client:
        client.encode([photo])  # the image path is warm; only the labels are new
        for labels in chinese_label_sets():
            started = time.perf_counter()
            client.classify([photo], labels)
            cold.append(time.perf_counter() - started)
            for _ in range(WARM_REPEATS):
                started = time.perf_counter()
                client.classify([photo], labels)
                warm.append(time.perf_counter() - started)
    first, again = summarise(cold), summarise(warm)
    say(
        f"Classify(1 photo, {LABELS_PER_CALL} Chinese labels): first {first['median_ms']:.0f} ms, "
        f"again {again['median_ms']:.1f} ms (medians over {LABEL_SETS} label sets)"
    )
    return {"first": first, "again": again}


# -- figures ---------------------------------------------------------------------------------------------


def figures(
    prepared: dict,
    server: dict[str, LoadResult],
    torch_result: dict[str, BatchSweep],
    ort_result: dict[str, BatchSweep],
    classified: dict,
) -> list[Figure]:
    worst = min(entry["min_cosine"] for entry in prepared.values())
    raw_prepared = {"min_cosine_all_sizes": worst, "per_size": prepared}
    found = [Figure("p6_preprocess_12mp_speedup", prepared["12mp"]["speedup"], raw_prepared)]
    for name in LOADED_SIZES:
        raw = {
            "server": server[name].as_dict("photos"),
            "transformers": torch_result[name].as_dict("photos"),
            "onnxruntime_exact": ort_result[name].as_dict("photos"),
        }
        for baseline, sweep in (("transformers", torch_result), ("ort_exact", ort_result)):
            found.append(
                Figure(f"p6_photo_{name}_vs_{baseline}", server[name].items_per_s / sweep[name].best, raw)
            )
    ratio = classified["first"]["median_ms"] / classified["again"]["median_ms"]
    found.append(Figure("p6_cached_classify_speedup", ratio, classified))
    return found
