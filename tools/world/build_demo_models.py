"""`make demo-models`: trains the demo-world CLIP and translator, exports them into the model repository
as version 1 (replacing what was there), names the translator in the `clip` pipeline, and renders the
example picture. Prints what it measured and how long each part took."""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import time
from pathlib import Path

from tools.export_clip import export_clip
from tools.export_marian import export_marian, name_translator
from tools.local_server import ROOT
from tools.world.render import render
from tools.world.scenes import Scene
from tools.world.train_clip import DEFAULT_BATCH, DEFAULT_STEPS, held_out_zero_shot, train_world_clip
from tools.world.train_marian import evaluate, print_figures, split_sentences, train_world_marian

EXAMPLE_PICTURE = ROOT / "clients" / "python" / "examples" / "data" / "two_dogs_in_snow.jpg"
EXAMPLE_SEED = 7
MODELS = ("clip", "clip_vision", "clip_text", "opus_mt_zh_en")


def render_example_picture(path: Path = EXAMPLE_PICTURE) -> None:
    render(Scene("snow", "dog", 2), random.Random(EXAMPLE_SEED)).save(path, format="JPEG", quality=92)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument(
        "--work", type=Path, default=ROOT / ".cache" / "demo-models", help="checkpoint folders"
    )
    parser.add_argument("--clip-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--clip-batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="export the checkpoints already trained in --work instead of training again",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    timings = {}
    started = time.monotonic()
    clip_dir, marian_dir = args.work / "clip", args.work / "marian"
    if args.reuse and (clip_dir / "model.safetensors").is_file():
        accuracy = held_out_zero_shot(clip_dir, args.seed)
    else:
        accuracy = train_world_clip(clip_dir, args.clip_steps, args.clip_batch_size, args.seed)
    timings["clip training"] = time.monotonic() - started

    mark = time.monotonic()
    if args.reuse and (marian_dir / "model.safetensors").is_file():
        _, heldout = split_sentences(args.seed)
    else:
        marian_dir, _, heldout = train_world_marian(marian_dir, seed=args.seed)
    translation = evaluate(marian_dir, heldout)
    timings["translator training"] = time.monotonic() - mark

    mark = time.monotonic()
    for name in MODELS:
        shutil.rmtree(args.repository / name, ignore_errors=True)
    export_clip(str(args.work / "clip"), args.repository, version=1)
    export_marian(str(marian_dir), args.repository, version=1, keep_merged=False)
    name_translator(args.repository, "clip", "opus_mt_zh_en")
    render_example_picture()
    timings["export"] = time.monotonic() - mark

    print(f"CLIP held-out zero-shot top-1: {accuracy:.1%}")
    print_figures(translation)
    for part, seconds in timings.items():
        print(f"{part}: {seconds:.0f}s")
    print(f"total: {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
