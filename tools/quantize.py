"""Makes an int8 variant of a repository model, checks it against its fp32 source, and writes it only
when it holds the int8 bound (tools.accuracy); a variant that misses it is refused (exit 1).

    python -m tools.quantize clip_vision [--repository model_repository] [--version V]
        [--name clip_vision_int8 | --as-version N] [--world]

Every ONNX graph of the version (both towers' model.onnx; Marian's encoder and decoders) is quantized
with ONNX Runtime's dynamic quantization: int8 weights per output channel (QInt8), activations quantized
at run time. Only the matrix products are quantized (MatMul, Gemm and fused Attention); the patch
convolution stays float: with it as ConvInteger the demo image tower ran 3x slower on CPU.
Static QDQ quantization (per channel, calibrated on 32 demo-world pictures) was measured on the demo
image tower too: cosine min 0.9892 / mean 0.9991 over the 200 check images, against 0.9991 / 0.99985
for dynamic, and no faster; so dynamic it is.

The variant is a new model folder (default `<model>_int8`, version 1, with the source's config under its
new name) or, with --as-version N, version N of the same model. The other files of the version
(tokenizer.json, preprocessor_config.json, the spm files ...) are copied. Each graph's ONNX metadata
keeps the source's entries ("source" = the checkpoint, where the exporter writes it) and adds
"variant" = "int8-dynamic", "variant_of" = the sha256 of the source file (so variants of one checkpoint
can be paired) and "variant_of_model" = the model/version it was made from. With --as-version the
variant becomes the model's newest version, the one a request for version 0 gets.

The int8 bound (tools.accuracy.INT8_BOUND): embedding cosine with the source min >= 0.99 and mean
>= 0.995 over 200 photo-like images or English captions; translators: top-1 translation equal for >= 95%
of the demo world's 364 Chinese sentences; with the demo world's figures (checked for the committed demo
repository, or with --world) zero-shot top-1 and Chinese text -> image top-1 at most 0.5 points lower.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from tools.accuracy import (
    DEFAULT_INPUTS,
    INT8_BOUND,
    VARIANT_KEY,
    VARIANT_OF_KEY,
    VARIANT_OF_MODEL_KEY,
    Bound,
    Figures,
    ModelVersion,
    bound_text,
    compare,
    newest,
    read_config,
    sha256,
)
from tools.local_server import ROOT
from tools.pbtxt import write_config

log = logging.getLogger(__name__)

INT8_DYNAMIC = "int8-dynamic"
QUANTIZED_OPS = ("MatMul", "Gemm", "Attention")
DEMO_REPOSITORY = ROOT / "model_repository"


class VariantRefused(Exception):
    """The variant missed its bound; nothing was written."""

    def __init__(self, figures: Figures, failures: list[str], bound: str) -> None:
        super().__init__(f"{figures.variant} refused: {'; '.join(failures)} (bound: {bound})")
        self.figures = figures


def quantize_graph(source: Path, target: Path) -> None:
    """`source` -> `target` with int8 weights, its metadata kept plus what the variant is made of."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / source.name
        # Constant folding and shape inference first, as ONNX Runtime recommends; its symbolic shape
        # inference cannot follow the fused contrib operators, the ONNX one is enough for weights.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            prepared,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS),
            # Outputs of contrib operators (Attention) have no inferred type; they are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    model = onnx.load(str(target))
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    # "source" (the checkpoint) stays as the exporter wrote it; the file's hash pairs the variant with
    # its source wherever the two are copied, the model/version says where it was made from.
    metadata |= {
        VARIANT_KEY: INT8_DYNAMIC,
        VARIANT_OF_KEY: sha256(source),
        VARIANT_OF_MODEL_KEY: f"{source.parent.parent.name}/{source.parent.name}",
    }
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))


def make_int8(source: ModelVersion, folder: Path) -> None:
    """Writes the int8 version folder of `source` into `folder` (which must not exist)."""
    folder.mkdir(parents=True)
    for path in sorted(source.directory.iterdir()):
        if path.suffix == ".onnx":
            quantize_graph(path, folder / path.name)
        elif path.is_file():
            shutil.copy2(path, folder / path.name)


def checked_variant(
    source: ModelVersion, variant: ModelVersion, world: bool, bound: Bound, inputs: int
) -> Figures:
    figures = compare(source, variant, world, inputs)
    failures = figures.failures(bound)
    if failures:
        raise VariantRefused(figures, failures, bound_text(bound, source.kind, world))
    return figures


def quantize_model(
    repository: Path,
    model: str,
    version: int | None = None,
    name: str | None = None,
    as_version: int | None = None,
    world: bool | None = None,
    bound: Bound = INT8_BOUND,
    inputs: int = DEFAULT_INPUTS,
) -> tuple[ModelVersion, Figures]:
    """Makes, checks and writes the int8 variant of `model` (newest version unless `version`); returns
    where it went and its figures, or raises VariantRefused (nothing written)."""
    repository = Path(repository)
    source = ModelVersion(repository, model, version) if version else newest(repository, model)
    if not source.directory.is_dir():
        raise FileNotFoundError(f"no version folder {source.directory}")
    if world is None:
        world = repository.resolve() == DEMO_REPOSITORY.resolve()
    target_name = model if as_version else (name or f"{model}_int8")
    target = ModelVersion(repository, target_name, as_version or 1)
    if as_version is None and (repository / target_name).exists():
        raise FileExistsError(f"{repository / target_name} exists; choose another --name")
    if target.directory.exists():
        raise FileExistsError(f"{target.directory} exists; choose another --as-version")
    # Made and checked in a folder the repository does not serve (its name is no model or version name),
    # then moved into place: a server polling the repository never sees a half-written or refused variant.
    staging_root = repository / model if as_version else repository
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=staging_root) as staging:
        staged = ModelVersion(Path(staging), target_name, target.version) if not as_version else None
        if staged is not None:
            config = read_config(repository / model)
            config.name = target_name
            write_config(staged.repository / target_name, config)
            folder = staged.directory
        else:
            folder = Path(staging) / "version"
        make_int8(source, folder)
        candidate = staged or ModelVersion(repository, model, as_version, folder)
        figures = checked_variant(source, candidate, world, bound, inputs)
        if staged is not None:
            shutil.move(str(staged.repository / target_name), str(repository / target_name))
        else:
            shutil.move(str(folder), str(target.directory))
    return target, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="model folder to quantize (clip_vision, clip_text, opus_mt_zh_en ...)")
    parser.add_argument("--repository", type=Path, default=DEMO_REPOSITORY, help="model repository")
    parser.add_argument("--version", type=int, help="source version (default: the newest)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--name", help="model folder of the variant (default: <model>_int8)")
    where.add_argument("--as-version", type=int, help="write the variant as this version of the model")
    parser.add_argument(
        "--world",
        action="store_true",
        help="also check the demo world's top-1 figures (always for the committed demo repository)",
    )
    parser.add_argument(
        "--inputs", type=int, default=DEFAULT_INPUTS, help="images or captions per tower (>= 200)"
    )
    args = parser.parse_args(argv)
    if args.as_version is not None and args.as_version < 1:
        parser.error("--as-version must be a positive integer")
    if args.inputs < 200:
        parser.error("--inputs must be at least 200: the bound is measured over 200 inputs or more")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        target, figures = quantize_model(
            args.repository,
            args.model,
            args.version,
            args.name,
            args.as_version,
            True if args.world else None,
            inputs=args.inputs,
        )
    except VariantRefused as refused:
        print(refused.figures.report(), file=sys.stderr)
        print(refused, file=sys.stderr)
        return 1
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(figures.report())
    print(f"wrote {target.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
