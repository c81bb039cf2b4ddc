"""Runs the crossmodal benchmarks side by side and writes latest.json, latest.md and latest.png.

  p1  image Encode throughput through gRPC vs in-process ONNX Runtime / transformers (best batch)
  p2  caption Encode throughput through gRPC vs ONNX Runtime with every caption padded to 77 tokens
  p3  our beam search vs CTranslate2 (1 and 8 sentences) and vs transformers generate(), 5 beams,
      exactly 20 tokens
  p4  Compare latency over loopback gRPC minus the in-process engine, on the committed demo models
  p5  retrieval on the demo models: images indexed per second, and Search p50 over 10,000 vectors
      (recorded figures, no targets)
  p6  what users send: photo-size JPEGs (640x480, 1920x1080, 4032x3024) - preprocessing exact vs fast,
      photos/s through the server vs transformers and vs ONNX Runtime with exact preprocessing - and
      Classify against a fixed Chinese label set, first call vs again (response cache)

p1-p3 and p6 run on random-weight models of real size (ViT-B/32 CLIP, opus-mt-zh-en Marian) built by
`make bench-models` (python -m tools.bench_models); `--tiny` builds tiny ones itself and runs briefly,
which checks the machinery, not the speed. Load tests run first against a server subprocess; it is
stopped before the in-process baselines run, each in a fresh interpreter, so nothing competes for the
cores. The p1/p2 server runs without response caches (--cache-bytes=0): those sections measure the
model path, and their captions repeat; the p6 server runs with the defaults, as users run it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench import image, overhead, photos, report, retrieval, text, translate
from bench.figures import SECTIONS, TARGETS, Figure
from bench.isolation import in_fresh_process, progress, quiet_known_warnings
from bench.serving import serving
from bench.settings import FULL, TINY, BenchSettings
from tools.bench_models import DEFAULT_OUT, DEFAULT_TINY_OUT, PRESETS, ROOT, BenchModels, build

DEFAULT_RESULTS = ROOT / "bench" / "results"
# The sections that run on the bench models; p4 and p5 use the committed demo models.
MODEL_SECTIONS = {"p1", "p2", "p3", "p6"}
NO_CACHE = ["--cache-bytes=0"]


def bench_models(path: Path | None, tiny: bool) -> BenchModels:
    """The models to run on; tiny ones are built when missing, real-size ones must be built beforehand."""
    path = path or (DEFAULT_TINY_OUT if tiny else DEFAULT_OUT)
    models = BenchModels(path)
    wanted = "tiny" if tiny else "full"
    if not models.is_complete():
        if not tiny:
            sys.exit(
                f"no benchmark models in {path}: run `make bench-models` first (python -m tools.bench_models "
                f"--out {path}; a few minutes, about 1.5 GB), or pass --tiny for a quick run on tiny models"
            )
        print(f"[models] building tiny models in {path}", flush=True)
        build(path, PRESETS["tiny"])
    if models.preset != wanted:
        hint = "drop --tiny" if models.preset == "full" else "add --tiny"
        sys.exit(f"{path} holds {models.preset} models; {hint} or point --models elsewhere")
    return models


def run_served(models: BenchModels, sections: set[str], settings: BenchSettings, server_args: list[str]):
    """p1 and p2 through one server; returns their load results (None for a section not run)."""
    if not sections & {"p1", "p2"}:
        return None, None
    print(f"[server] starting a server over {models.repository}", flush=True)
    with serving(models.repository, [*NO_CACHE, *server_args]) as address:
        images = image.served(address, settings, progress("p1")) if "p1" in sections else None
        texts = text.served(address, settings, progress("p2")) if "p2" in sections else None
    return images, texts


def run_photos(models: BenchModels, settings: BenchSettings, server_args: list[str]) -> list[Figure]:
    """p6: the photo loads and the cached Classify through one server, then the in-process sides."""
    say = progress("p6")
    say("generating photo-like JPEGs (640x480, 1920x1080, 4032x3024)")
    sets = photos.photo_sets(settings)
    say(f"[server] starting a server over {models.repository}")
    with serving(models.repository, server_args) as address:
        loads = photos.served(address, sets, settings, say)
        classified = photos.cached_classify(address, sets[1].jpegs[0], say)
    prepared = in_fresh_process(photos.preprocessing, models, sets, "p6")
    torch_result = in_fresh_process(photos.transformers_sweep, models, sets, settings, "p6")
    ort_result = in_fresh_process(photos.ort_exact_sweep, models, sets, settings, "p6")
    return photos.figures(prepared, loads, torch_result, ort_result, classified)


def run(
    models: BenchModels | None,
    sections: set[str],
    settings: BenchSettings,
    server_args: list[str],
    retrieval_args: Sequence[str] = (),
) -> list[Figure]:
    served_images, served_texts = run_served(models, sections, settings, server_args)
    figures: list[Figure] = []
    # Each in-process baseline runs in an interpreter of its own (see bench.isolation).
    if served_images is not None:
        ort_images = in_fresh_process(image.ort_sweep, models, settings, "p1")
        torch_images = in_fresh_process(image.torch_sweep, models, settings, "p1")
        figures += image.figures(served_images, ort_images, torch_images)
    if served_texts is not None:
        sweep, mean_tokens = in_fresh_process(text.ort_padded_sweep, models, settings, "p2")
        figures += text.figures(served_texts, sweep, mean_tokens, settings)
    if "p3" in sections:
        ours = in_fresh_process(translate.ours, models, settings, "p3")
        ct2 = in_fresh_process(translate.ctranslate2, models, settings, "p3")
        hf = in_fresh_process(translate.transformers_generate, models, settings, "p3")
        figures += translate.figures(ours, ct2, hf)
    if "p4" in sections:
        figures.append(overhead.measure(settings, progress("p4")))
    if "p5" in sections:
        figures += retrieval.measure(settings, progress("p5"), retrieval_args)
    if "p6" in sections:
        figures += run_photos(models, settings, server_args)
    return figures


def _models_context(models: BenchModels | None, tiny: bool) -> dict[str, str]:
    """Which models the report names: the bench models, or the demo models alone when only p4/p5 ran."""
    if models is None:
        return {"preset": "tiny" if tiny else "full", "models": "model_repository (demo models)"}
    shown = models.root.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    return {"preset": models.preset, "models": str(shown)}


def print_summary(figures: list[Figure]) -> None:
    width = max(len(key) for key in TARGETS)
    for figure in figures:
        target = figure.target
        if target.has_target:
            verdict = f"target {target.goal} {target.value:g}  {'met' if figure.met else 'NOT met'}"
        else:
            verdict = "(recorded, no target)"
        print(f"  {figure.key:<{width}}  {figure.value:8.3f} {target.unit:<5}  {verdict}", flush=True)


def parse_sections(value: str) -> set[str]:
    sections = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sections - set(SECTIONS)
    if unknown or not sections:
        choices = ", ".join(SECTIONS)
        raise argparse.ArgumentTypeError(f"choose from {choices} (comma-separated), got {value!r}")
    return sections


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        type=Path,
        help=f"folder built by tools.bench_models (default: {DEFAULT_OUT.relative_to(ROOT)}, "
        f"or {DEFAULT_TINY_OUT.relative_to(ROOT)} with --tiny)",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny models (built if missing) and short runs")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_RESULTS, help="results folder (default: bench/results)"
    )
    parser.add_argument(
        "--only",
        type=parse_sections,
        default=set(SECTIONS),
        help="sections to run, comma-separated, e.g. p1,p3 (default: all)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the p1/p2 and p6 servers, repeatable (e.g. --server-arg=--workers=8)",
    )
    parser.add_argument(
        "--retrieval-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the p5 server, repeatable (e.g. --retrieval-arg=--milvus-uri=URI; "
        "default: a Milvus Lite file in a temporary folder)",
    )
    args = parser.parse_args(argv)
    quiet_known_warnings()
    settings = TINY if args.tiny else FULL
    started = time.monotonic()
    models = bench_models(args.models, args.tiny) if args.only & MODEL_SECTIONS else None
    figures = run(models, args.only, settings, args.server_arg, args.retrieval_arg)
    context = {**_models_context(models, args.tiny), "settings": asdict(settings)}
    report.write(args.out, figures, context)
    elapsed = time.monotonic() - started
    print(f"[done] {elapsed:.0f}s; results in {args.out}/latest.{{json,md,png}}", flush=True)
    print_summary(figures)


if __name__ == "__main__":
    main()
