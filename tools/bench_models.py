"""Builds the random-weight models the benchmarks run on (no model hub needed).

Real-size by default: CLIP with ViT-B/32 dimensions and the real CLIP BPE vocabulary, and a Marian with
opus-mt-zh-en dimensions (65001 tokens, 6+6 layers of width 512). `--tiny` builds the same layout with
tiny dimensions in seconds. The output folder holds:
  hf/clip, hf/marian        transformers checkpoints (the reference implementations load these)
  repository/               a model repository: pipeline `clip` with clip_vision/1, clip_text/1 and
                            opus_mt_zh_en/1, exported by tools.export_clip and tools.export_marian,
                            with dynamic batching switched on
  ct2/marian                the Marian checkpoint converted to CTranslate2 (float32)
  stamp.json                what was built; finished steps are skipped on the next run

Weights are random: the models cost exactly what the real ones cost, but say nothing meaningful.
The Marian pins decoding to 20 generated tokens (min_length = max_length = 21 with the start token),
so that every decoder compared on it does the same amount of work.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from tools.build_tiny_clip import new_clip_model, write_preprocessing
from tools.build_tiny_marian import chinese_corpus, english_corpus, opus_mt_model, write_tokenizer
from tools.export_clip import export_clip
from tools.export_marian import export_marian, name_translator
from tools.pbtxt import CPU_IMAGE_INSTANCES, instance_group, write_config

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "models"
DEFAULT_TINY_OUT = DEFAULT_OUT / "tiny"
STAMP = "stamp.json"
PIPELINE, VISION, TEXT, TRANSLATOR = "clip", "clip_vision", "clip_text", "opus_mt_zh_en"
# Decoder length including the start token: 20 generated tokens, the last one the forced </s>.
FORCED_DECODER_LENGTH = 21
BENCH_BEAMS = 5
QUEUE_DELAY_US = 2000


@dataclass(frozen=True)
class ClipDims:
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    projection_dim: int
    context_length: int = 77


@dataclass(frozen=True)
class MarianDims:
    # d_model, layers, heads, ffn and max_positions are what tools.build_tiny_marian.opus_mt_model reads;
    # source_pieces, target_pieces and max_positions what its write_tokenizer reads.
    d_model: int
    layers: int
    heads: int
    ffn: int
    max_positions: int
    source_pieces: int
    target_pieces: int
    corpus_sentences: int
    vocab_size: int | None  # None: just the SentencePiece pieces; else filled up to this many ids


@dataclass(frozen=True)
class Preset:
    name: str
    clip: ClipDims
    marian: MarianDims
    max_batch_sizes: tuple[int, int, int]  # vision, text, translator


PRESETS = {
    # transformers' CLIPConfig defaults are exactly openai/clip-vit-base-patch32.
    "full": Preset(
        "full",
        ClipDims(224, 32, 768, 12, 12, 512, 12, 8, 512),
        # Helsinki-NLP/opus-mt-zh-en: 65001 shared tokens, 6 encoder + 6 decoder layers.
        MarianDims(512, 6, 8, 2048, 512, 8000, 8000, 20000, 65001),
        (32, 64, 16),
    ),
    "tiny": Preset(
        "tiny",
        ClipDims(64, 16, 32, 2, 2, 32, 2, 2, 24),
        MarianDims(32, 2, 4, 64, 64, 2000, 300, 3000, None),
        (32, 64, 16),
    ),
}


@dataclass(frozen=True)
class BenchModels:
    """Where everything lives inside the output folder."""

    root: Path

    @property
    def hf_clip(self) -> Path:
        return self.root / "hf" / "clip"

    @property
    def hf_marian(self) -> Path:
        return self.root / "hf" / "marian"

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    @property
    def ct2_marian(self) -> Path:
        return self.root / "ct2" / "marian"

    @property
    def stamp(self) -> Path:
        return self.root / STAMP

    def read_stamp(self) -> dict:
        return json.loads(self.stamp.read_text(encoding="utf-8")) if self.stamp.is_file() else {}

    def is_complete(self) -> bool:
        return bool(self.read_stamp().get("complete"))

    @property
    def preset(self) -> str | None:
        return self.read_stamp().get("preset")


def build_clip_checkpoint(out_dir: Path, dims: ClipDims, seed: int) -> None:
    model = new_clip_model(**asdict(dims), seed=seed).eval()
    model.save_pretrained(out_dir)
    write_preprocessing(out_dir, dims.image_size, dims.context_length)


def build_marian_checkpoint(out_dir: Path, dims: MarianDims, seed: int) -> None:
    tokenizer = write_tokenizer(
        out_dir,
        chinese_corpus(dims.corpus_sentences, seed),
        english_corpus(dims.corpus_sentences, seed),
        dims,
        dims.vocab_size,
    )
    model = opus_mt_model(
        len(tokenizer.encoder),
        tokenizer.pad_token_id,
        dims,
        seed,
        num_beams=BENCH_BEAMS,
        min_length=FORCED_DECODER_LENGTH,
        max_length=FORCED_DECODER_LENGTH,
    ).eval()
    model.save_pretrained(out_dir)


def export_repository_clip(models: BenchModels) -> None:
    export_clip(str(models.hf_clip), models.repository, version=1)


def export_repository_marian(models: BenchModels) -> None:
    # The server decodes with the separate decoder graphs when both exist; the merged one only costs disk.
    export_marian(str(models.hf_marian), models.repository, version=1, name=TRANSLATOR, keep_merged=False)
    name_translator(models.repository, PIPELINE, TRANSLATOR)


def enable_batching(repository: Path, max_batch_sizes: tuple[int, int, int]) -> None:
    """Each model: its batch limit, its CPU instances (two for the image tower, as the exporter writes), and
    a short window in which requests join a batch."""
    for name, max_batch_size in zip((VISION, TEXT, TRANSLATOR), max_batch_sizes, strict=True):
        path = repository / name / "config.pbtxt"
        config = text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())
        config.max_batch_size = max_batch_size
        del config.instance_group[:]
        config.instance_group.append(instance_group("cpu", CPU_IMAGE_INSTANCES if name == VISION else 1))
        config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
        write_config(repository / name, config)


def convert_ct2(checkpoint: Path, out_dir: Path) -> None:
    converter = Path(sys.executable).parent / "ct2-transformers-converter"
    command = [str(converter), "--model", str(checkpoint), "--output_dir", str(out_dir), "--force"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"ct2-transformers-converter failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )


def steps(models: BenchModels, preset: Preset, seed: int) -> list[tuple[str, Path, Callable[[], None]]]:
    """(name, folder it writes, action) in order; a step that failed midway is redone from scratch."""
    return [
        ("hf_clip", models.hf_clip, lambda: build_clip_checkpoint(models.hf_clip, preset.clip, seed)),
        (
            "hf_marian",
            models.hf_marian,
            lambda: build_marian_checkpoint(models.hf_marian, preset.marian, seed),
        ),
        ("export_clip", None, lambda: export_repository_clip(models)),
        ("export_marian", models.repository / TRANSLATOR, lambda: export_repository_marian(models)),
        ("batching", None, lambda: enable_batching(models.repository, preset.max_batch_sizes)),
        ("ct2_marian", models.ct2_marian, lambda: convert_ct2(models.hf_marian, models.ct2_marian)),
    ]


def build(out: Path, preset: Preset, seed: int = 0, force: bool = False) -> BenchModels:
    models = BenchModels(out)
    stamp = models.read_stamp()
    if stamp and stamp.get("preset") != preset.name and not force:
        raise SystemExit(
            f"{out} holds {stamp.get('preset')} models; use another --out or --force to replace them"
        )
    if force or stamp.get("preset") != preset.name:
        clear(models)
        stamp = {}
    done = set(stamp.get("steps", []))
    stamp = {"preset": preset.name, "seed": seed, "dims": asdict(preset), "steps": sorted(done)}
    for name, folder, action in steps(models, preset, seed):
        if name in done:
            print(f"[bench-models] {name}: already built", flush=True)
            continue
        if folder is not None and folder.exists():
            shutil.rmtree(folder)
        started = time.monotonic()
        print(f"[bench-models] {name} ...", flush=True)
        action()
        print(f"[bench-models] {name}: done in {time.monotonic() - started:.1f}s", flush=True)
        done.add(name)
        stamp["steps"] = sorted(done)
        write_stamp(models, stamp)
    stamp["complete"] = True
    write_stamp(models, stamp)
    return models


def clear(models: BenchModels) -> None:
    for folder in (models.root / "hf", models.repository, models.root / "ct2"):
        if folder.exists():
            shutil.rmtree(folder)
    models.stamp.unlink(missing_ok=True)


def write_stamp(models: BenchModels, stamp: dict) -> None:
    models.root.mkdir(parents=True, exist_ok=True)
    models.stamp.write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"output folder (default: {DEFAULT_OUT.relative_to(ROOT)}, "
        f"or {DEFAULT_TINY_OUT.relative_to(ROOT)} with --tiny)",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny dimensions: builds in seconds, for tests")
    parser.add_argument("--seed", type=int, default=0, help="random seed of corpora and weights")
    parser.add_argument("--force", action="store_true", help="rebuild everything, even what exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # MarianTokenizer recommends sacremoses, which only its unused source normalisation would need.
    warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
    preset = PRESETS["tiny" if args.tiny else "full"]
    out = args.out or (DEFAULT_TINY_OUT if args.tiny else DEFAULT_OUT)
    started = time.monotonic()
    build(out, preset, args.seed, args.force)
    elapsed = time.monotonic() - started
    print(f"[bench-models] {preset.name} models ready in {out} ({elapsed:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
