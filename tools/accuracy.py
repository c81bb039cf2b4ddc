"""How far a model variant (int8, ...) is from its fp32 source, against the bound a variant must hold.

Measured on the same inputs through both models:
- CLIP towers: cosine of the variant's embedding with the source's, min and mean, over photo-like JPEGs
  (bench.data) for an image tower and generated English captions for a text tower;
- translators: top-1 agreement, the fraction of Chinese sentences (every sentence of the demo world)
  whose best translation is the same;
- with `--world` (the demo models): zero-shot top-1 over the world's captions and Chinese text -> image
  top-1 against galleries of freshly rendered pictures, through the serving engine, once with the source
  and once with the variant in its place; neither may drop by more than `world_drop`.

    python -m tools.accuracy --repository model_repository [--world] [VARIANT ...]
        checks the variants in the repository (all of them when none is named) against their sources,
        found by the sha256 each variant records in its ONNX metadata ("variant_of");
    python -m tools.accuracy --repository model_repository --int8 clip_vision clip_text opus_mt_zh_en
        measures int8 variants of those models, made in a scratch folder (`make accuracy`).

Exits 1 when a variant misses its bound, 2 when there is nothing to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import logging
import random
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from server.repository.model_config import PIPELINE_PLATFORM
from server.repository.versions import discover_versions
from tools.pbtxt import write_config

CLIP_VISION, CLIP_TEXT, MARIAN = "clip_vision", "clip_text", "marian"
KINDS = (CLIP_VISION, CLIP_TEXT, MARIAN)
# ONNX metadata of a variant file: what it is, the sha256 of its source file, and that file's model/version.
VARIANT_KEY, VARIANT_OF_KEY, VARIANT_OF_MODEL_KEY = "variant", "variant_of", "variant_of_model"
DEFAULT_INPUTS = 200
BATCH = 8
# The image tower's bound for the fastest variant elsewhere (fast JPEG path); reported, not enforced here.
FASTEST_IMAGE_TARGET = 0.9995
WORLD_SEED = 20_261_203  # never used by training nor by `make eval`
PICTURES_PER_SCENE = 3
GALLERIES = 5


@dataclass(frozen=True)
class Bound:
    """What a variant must hold against its source. The defaults are the int8 bound."""

    cosine_min: float = 0.99
    cosine_mean: float = 0.995
    agreement: float = 0.95  # translators: top-1 equal for at least this fraction of sentences
    world_drop: float = 0.005  # demo world top-1 figures: at most this much lower than the source's


INT8_BOUND = Bound()


@dataclass(frozen=True)
class WorldFigure:
    name: str
    reference: float
    variant: float
    count: int  # queries measured

    @property
    def drop(self) -> float:
        return self.reference - self.variant


@dataclass(frozen=True)
class Figures:
    variant: str
    kind: str
    inputs: int
    cosine_min: float | None = None
    cosine_mean: float | None = None
    agreement: float | None = None  # top-1 translations equal
    nbest_agreement: float | None = None  # whole n-best lists equal (reported, no bound)
    world: tuple[WorldFigure, ...] = field(default=())

    def failures(self, bound: Bound) -> list[str]:
        # Written as "not (figure >= bound)" so that a NaN figure (a variant answering zero vectors) fails.
        failed = []
        if self.cosine_min is not None and not self.cosine_min >= bound.cosine_min:
            failed.append(f"cosine min {self.cosine_min:.5f} < {bound.cosine_min}")
        if self.cosine_mean is not None and not self.cosine_mean >= bound.cosine_mean:
            failed.append(f"cosine mean {self.cosine_mean:.5f} < {bound.cosine_mean}")
        if self.agreement is not None and not self.agreement >= bound.agreement:
            failed.append(f"top-1 agreement {self.agreement:.1%} < {bound.agreement:.0%}")
        for figure in self.world:
            if not figure.drop <= bound.world_drop:
                failed.append(
                    f"{figure.name} drops {100 * figure.drop:.2f} points > {100 * bound.world_drop:.1f}"
                )
        return failed

    def report(self) -> str:
        lines = [f"{self.variant} ({self.kind}) against its source, {self.inputs} inputs:"]
        if self.cosine_min is not None:
            meets = "meets" if self.cosine_min >= FASTEST_IMAGE_TARGET else "misses"
            fastest = f"; {meets} the fastest-variant target {FASTEST_IMAGE_TARGET}"
            fastest = fastest if self.kind == CLIP_VISION else ""
            lines.append(f"  cosine min {self.cosine_min:.5f}, mean {self.cosine_mean:.5f}{fastest}")
        if self.agreement is not None:
            lines.append(
                f"  top-1 translation agreement {self.agreement:.1%}, "
                f"whole n-best equal {self.nbest_agreement:.1%}"
            )
        for figure in self.world:
            lines.append(
                f"  {figure.name}: source {figure.reference:.1%}, variant {figure.variant:.1%} "
                f"({figure.count} queries)"
            )
        return "\n".join(lines)


def bound_text(bound: Bound, kind: str, world: bool) -> str:
    parts = (
        [f"top-1 agreement >= {bound.agreement:.0%}"]
        if kind == MARIAN
        else [f"cosine min >= {bound.cosine_min}", f"mean >= {bound.cosine_mean}"]
    )
    if world:
        parts.append(f"world top-1 drop <= {100 * bound.world_drop:.1f} points")
    return ", ".join(parts)


# -- model folders ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """One version folder of a repository model."""

    repository: Path
    name: str
    version: int
    folder: Path | None = None  # where the version folder is while it is not yet in the repository

    @property
    def directory(self) -> Path:
        return self.folder or self.repository / self.name / str(self.version)

    @property
    def config(self) -> mc.ModelConfig:
        return read_config(self.repository / self.name)

    @property
    def kind(self) -> str:
        return self.config.parameters["model_type"].string_value

    def graphs(self) -> list[Path]:
        return sorted(self.directory.glob("*.onnx"))

    def __str__(self) -> str:
        return f"{self.name}/{self.version}" + (f" (at {self.folder})" if self.folder else "")


def read_config(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), mc.ModelConfig())


def newest(repository: Path, name: str) -> ModelVersion:
    versions = discover_versions(repository / name)
    if not versions:
        raise ValueError(f"{repository / name} has no version folder")
    return ModelVersion(repository, name, versions[-1])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def source_of(variant: ModelVersion) -> ModelVersion:
    """The repository's model version holding the file the variant's first graph was made from (by its
    sha256): the model/version the variant names first, then every other one."""
    graph = variant.graphs()[0]
    metadata = onnx_metadata(graph)
    wanted = metadata.get(VARIANT_OF_KEY)
    if not wanted:
        raise ValueError(f"{graph} records no '{VARIANT_OF_KEY}': it is not a variant")
    named, _, number = metadata.get(VARIANT_OF_MODEL_KEY, "").rpartition("/")
    hinted = [ModelVersion(variant.repository, named, int(number))] if number.isdecimal() else []
    for candidate in hinted + model_versions(variant.repository):
        path = candidate.directory / graph.name
        if candidate != variant and path.is_file() and sha256(path) == wanted:
            return candidate
    raise ValueError(f"{variant}: no model in {variant.repository} holds the file it was made from")


def model_versions(repository: Path) -> list[ModelVersion]:
    return [
        ModelVersion(repository, model_dir.name, version)
        for model_dir in sorted(p for p in repository.iterdir() if (p / "config.pbtxt").is_file())
        for version in discover_versions(model_dir)
    ]


def variants_in(repository: Path) -> list[ModelVersion]:
    return [
        model
        for model in model_versions(repository)
        if model.graphs() and VARIANT_OF_KEY in onnx_metadata(model.graphs()[0])
    ]


# -- embeddings through plain ONNX Runtime sessions ------------------------------------------------------


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _cosines(reference: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """Row-wise cosine; NaN where a row is all zeros (no direction, so no agreement either)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
        variant = variant / np.linalg.norm(variant, axis=1, keepdims=True)
        return np.sum(reference * variant, axis=1)


def image_pixels(directory: Path, count: int) -> np.ndarray:
    """[count, 3, H, W] from photo-like JPEGs and smooth noisy ones, preprocessed as the server does."""
    from PIL import Image

    from bench.data import jpeg_images, photo_jpegs
    from server.backends.clip.preprocessing import ImagePreprocessor

    preprocessor = ImagePreprocessor.from_file(directory / "preprocessor_config.json")
    photos = photo_jpegs(count - count // 2, (320, 240), seed=3) + jpeg_images(count // 2, seed=4)
    return np.stack([preprocessor(Image.open(io.BytesIO(data)).convert("RGB")) for data in photos])


def caption_tokens(directory: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of (input_ids, attention_mask) of generated English captions, padded per batch."""
    from bench.data import english_captions
    from server.backends.clip.tokenizer import ClipTokenizer

    graph = directory / "model.onnx"
    context = int(onnx_metadata(graph).get("context_length", 77))
    tokenizer = ClipTokenizer.from_file(directory / "tokenizer.json", context)
    ids = tokenizer.token_ids(english_captions(count, seed=5))
    return [tokenizer.pad(ids[start : start + BATCH]) for start in range(0, len(ids), BATCH)]


def tower_cosines(source: ModelVersion, variant: ModelVersion, count: int) -> np.ndarray:
    reference, candidate = (
        _session(source.directory / "model.onnx"),
        _session(variant.directory / "model.onnx"),
    )
    names = [i.name for i in reference.get_inputs()]
    if source.kind == CLIP_VISION:
        pixels = image_pixels(source.directory, count)
        feeds = [{names[0]: pixels[start : start + BATCH]} for start in range(0, count, BATCH)]
    else:
        feeds = [dict(zip(names, batch, strict=True)) for batch in caption_tokens(source.directory, count)]
    cosines = [_cosines(reference.run(None, feed)[0], candidate.run(None, feed)[0]) for feed in feeds]
    return np.concatenate(cosines)


# -- through the serving engine: translations and the demo world ------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """The parts of a CLIP pipeline in an evaluation repository."""

    vision: ModelVersion
    text: ModelVersion
    translator: ModelVersion | None


def _link_model(root: Path, name: str, model: ModelVersion) -> None:
    """`root/name/1` is `model`'s version folder, served with `model`'s config under the new name."""
    config = model.config
    config.name = name
    config.ClearField("version_policy")
    write_config(root / name, config)
    (root / name / "1").symlink_to(model.directory.resolve(), target_is_directory=True)


def _write_pipeline(root: Path, name: str, vision: str, text: str, translator: str | None) -> None:
    parameters = {"vision_model": vision, "text_model": text} | (
        {"translator": translator} if translator else {}
    )
    config = mc.ModelConfig(
        name=name,
        platform=PIPELINE_PLATFORM,
        parameters={key: mc.ModelParameter(string_value=value) for key, value in parameters.items()},
    )
    write_config(root / name, config)


@contextmanager
def evaluation_engine(pipelines: dict[str, Pipeline], translators: dict[str, ModelVersion]) -> Iterator:
    """An engine over a scratch repository serving each pipeline and translator under its name (version
    folders linked, not copied)."""
    from server.backends.onnx.session import SessionFactory
    from server.core.config import Limits
    from server.engine import Engine
    from server.repository.repository import ModelRepository

    with tempfile.TemporaryDirectory(prefix="accuracy-") as scratch:
        root = Path(scratch)
        for name, model in translators.items():
            _link_model(root, name, model)
        for name, pipeline in pipelines.items():
            _link_model(root, f"{name}_vision", pipeline.vision)
            _link_model(root, f"{name}_text", pipeline.text)
            if pipeline.translator is not None:
                _link_model(root, f"{name}_translator", pipeline.translator)
            translator = f"{name}_translator" if pipeline.translator else None
            _write_pipeline(root, name, f"{name}_vision", f"{name}_text", translator)
        repository = ModelRepository(root, SessionFactory())
        repository.load_all()
        engine = Engine(repository, Limits(max_items=100_000))
        try:
            yield engine
        finally:
            engine.close()
            repository.close()


def _translations(engine, model: str, sentences: list[str]) -> list[tuple[str, ...]]:
    """Each sentence's n-best translations (the model's default beams), best first."""
    from server.core.types import ModelRef, TranslateOptions

    result = asyncio.run(engine.translate(ModelRef(model), sentences, TranslateOptions()))
    return [tuple(h.text for h in outcome.translations) for outcome in result.texts]


def _embeddings(engine, pipeline: str, items: list) -> np.ndarray:
    from server.core.types import ModelRef

    return asyncio.run(engine.encode(ModelRef(pipeline), items)).embeddings


def world_sentences() -> list[str]:
    """Every Chinese sentence of the demo world (364): plain Chinese captions for any zh->en model."""
    from tools.world.train_marian import all_pairs

    return list(dict.fromkeys(pair.chinese for pair in all_pairs()))


def _jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def world_figures(engine, pipeline: str) -> dict[str, tuple[float, int]]:
    """Zero-shot top-1 over the world's captions and Chinese text -> image top-1, as `make eval` measures
    them (held-out sentences), on pictures of a seed of their own."""
    from server.core.types import ImageInput, TextInput
    from tools.world.captions import english
    from tools.world.render import render
    from tools.world.scenes import ALL_SCENES
    from tools.world.train_marian import split_sentences

    rng = random.Random(WORLD_SEED)
    captions = [(index, caption) for index, scene in enumerate(ALL_SCENES) for caption in english(scene)]
    pictures = [
        (i, _jpeg(render(s, rng))) for _ in range(PICTURES_PER_SCENE) for i, s in enumerate(ALL_SCENES)
    ]
    images = _embeddings(engine, pipeline, [ImageInput(data) for _, data in pictures])
    texts = _embeddings(engine, pipeline, [TextInput(caption) for _, caption in captions])
    best = np.argmax(images @ texts.T, axis=1)
    zero_shot = np.mean([captions[b][0] == scene for b, (scene, _) in zip(best, pictures, strict=True)])

    _, heldout = split_sentences()
    queries = _embeddings(engine, pipeline, [TextInput(pair.chinese) for pair in heldout])
    scenes = {scene: index for index, scene in enumerate(ALL_SCENES)}
    right = 0
    for _ in range(GALLERIES):
        gallery = [ImageInput(_jpeg(render(scene, rng))) for scene in ALL_SCENES]
        best = np.argmax(queries @ _embeddings(engine, pipeline, gallery).T, axis=1)
        right += sum(int(b) == scenes[pair.scene] for b, pair in zip(best, heldout, strict=True))
    return {
        "zero-shot top-1": (float(zero_shot), len(pictures)),
        "Chinese text -> image top-1": (right / (GALLERIES * len(heldout)), GALLERIES * len(heldout)),
    }


def pipeline_of(model: ModelVersion) -> Pipeline:
    """The parts `model` serves with: from the first pipeline of its repository that names it."""
    for config_path in sorted(model.repository.glob("*/config.pbtxt")):
        config = read_config(config_path.parent)
        if config.platform != PIPELINE_PLATFORM:
            continue
        parts = {key: value.string_value for key, value in config.parameters.items()}
        if model.name not in (parts.get("vision_model"), parts.get("text_model"), parts.get("translator")):
            continue
        if model.name == parts.get("translator"):
            vision = newest(model.repository, parts["vision_model"])
            text = ModelVersion(model.repository, parts["text_model"], vision.version)
            return Pipeline(vision, text, model)
        tower_version = model.version
        translator = newest(model.repository, parts["translator"]) if parts.get("translator") else None
        vision = ModelVersion(model.repository, parts["vision_model"], tower_version)
        text = ModelVersion(model.repository, parts["text_model"], tower_version)
        return Pipeline(vision, text, translator)
    raise ValueError(f"no pipeline in {model.repository} names {model.name}: the world figures need one")


def _replaced(pipeline: Pipeline, source: ModelVersion, variant: ModelVersion) -> Pipeline:
    kind = source.kind
    return Pipeline(
        variant if kind == CLIP_VISION else pipeline.vision,
        variant if kind == CLIP_TEXT else pipeline.text,
        variant if kind == MARIAN else pipeline.translator,
    )


# -- the comparison -------------------------------------------------------------------------------------


def compare(
    source: ModelVersion, variant: ModelVersion, world: bool = False, inputs: int = DEFAULT_INPUTS
) -> Figures:
    """The variant's figures against its source (`world`: also the demo world's top-1 figures)."""
    kind = source.kind
    if kind not in KINDS:
        raise ValueError(f"{source}: model_type '{kind}' has no accuracy check (known: {', '.join(KINDS)})")
    cosine_min = cosine_mean = agreement = nbest_agreement = None
    world_results: tuple[WorldFigure, ...] = ()
    counted = inputs
    if kind in (CLIP_VISION, CLIP_TEXT):
        cosines = tower_cosines(source, variant, inputs)
        cosine_min, cosine_mean = float(cosines.min()), float(cosines.mean())
    if kind == MARIAN or world:
        pipelines = {}
        if world:
            reference = pipeline_of(source)
            pipelines = {"reference": reference, "variant": _replaced(reference, source, variant)}
        translators = {"source": source, "candidate": variant} if kind == MARIAN else {}
        with evaluation_engine(pipelines, translators) as engine:
            if kind == MARIAN:
                sentences = world_sentences()
                before, after = (_translations(engine, name, sentences) for name in translators)
                pairs = list(zip(before, after, strict=True))
                agreement = float(np.mean([a[0] == b[0] for a, b in pairs]))
                nbest_agreement = float(np.mean([a == b for a, b in pairs]))
                counted = len(sentences)
            if world:
                measured = {name: world_figures(engine, name) for name in pipelines}
                world_results = tuple(
                    WorldFigure(name, measured["reference"][name][0], measured["variant"][name][0], count)
                    for name, (_, count) in measured["reference"].items()
                )
    return Figures(
        str(variant), kind, counted, cosine_min, cosine_mean, agreement, nbest_agreement, world_results
    )


def _int8_figures(repository: Path, models: list[str], world: bool, inputs: int) -> list[tuple]:
    """Figures of fresh int8 variants of `models`, made in a scratch folder beside nothing served."""
    from tools.quantize import make_int8

    results = []
    with tempfile.TemporaryDirectory(prefix="int8-") as scratch:
        for name in models:
            source = newest(repository, name)
            # The source's config describes the variant too (it is read from the variant's model name).
            variant = ModelVersion(repository, name, 0, Path(scratch) / name)
            make_int8(source, variant.directory)
            figures = compare(source, variant, world, inputs)
            results.append((source, replace(figures, variant=f"{name} int8")))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repository", type=Path, required=True, help="model repository")
    parser.add_argument("models", nargs="*", help="variants to check (default: every variant)")
    parser.add_argument(
        "--int8", action="store_true", help="the models are sources: measure int8 variants made of them"
    )
    parser.add_argument("--world", action="store_true", help="also the demo world's top-1 figures")
    parser.add_argument("--inputs", type=int, default=DEFAULT_INPUTS, help="images / captions per tower")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.int8:
        results = _int8_figures(args.repository, args.models, args.world, args.inputs)
    else:
        variants = [newest(args.repository, name) for name in args.models] or variants_in(args.repository)
        results = [
            (source, compare(source, v, args.world, args.inputs))
            for v in variants
            for source in [source_of(v)]
        ]
    if not results:
        print(f"no variants in {args.repository}; make one with python -m tools.quantize", file=sys.stderr)
        return 2
    failed = False
    for source, figures in results:
        bound = bound_text(INT8_BOUND, figures.kind, args.world)
        print(f"{figures.report()}\n  source {source}; bound: {bound}")
        for failure in figures.failures(INT8_BOUND):
            print(f"  MISSED: {failure}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
