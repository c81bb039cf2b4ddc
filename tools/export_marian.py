"""Exports a `transformers` Marian checkpoint (e.g. Helsinki-NLP/opus-mt-zh-en) into the model repository.

Runs `optimum-cli export onnx --task text2text-generation-with-past` and puts its output as a version of
`<name>/` with a config.pbtxt: encoder_model.onnx, decoder_model.onnx, decoder_with_past_model.onnx,
decoder_model_merged.onnx, source.spm, target.spm, vocab.json, generation_config.json and the configs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from tools.pbtxt import dynamic_batching, instance_group, write_config

log = logging.getLogger(__name__)

KEEP = (
    "encoder_model.onnx",
    "decoder_model.onnx",
    "decoder_with_past_model.onnx",
    "decoder_model_merged.onnx",
    "source.spm",
    "target.spm",
    "vocab.json",
    "generation_config.json",
    "config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def optimum_export(checkpoint: str, out_dir: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "optimum.commands.optimum_cli",
        "export",
        "onnx",
        "--model",
        checkpoint,
        "--task",
        "text2text-generation-with-past",
        str(out_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"optimum-cli export failed ({result.returncode}):\n{result.stderr[-3000:]}")


def export_marian(
    checkpoint: str,
    repository: Path,
    version: int = 1,
    name: str = "opus_mt_zh_en",
    kind: str = "cpu",
    keep_merged: bool = True,
) -> Path:
    target = repository / name / str(version)
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "onnx"
        optimum_export(checkpoint, exported)
        target.mkdir(parents=True, exist_ok=True)
        for filename in KEEP:
            if (exported / filename).is_file() and (keep_merged or filename != "decoder_model_merged.onnx"):
                shutil.copy2(exported / filename, target / filename)
    write_config(
        repository / name,
        mc.ModelConfig(
            name=name,
            platform="onnxruntime_onnx",
            max_batch_size=16,
            instance_group=[instance_group(kind)],
            dynamic_batching=dynamic_batching(),
            parameters={"model_type": mc.ModelParameter(string_value="marian")},
            # Texts repeat (label sets, frequent queries) and a text's answer never changes within a load.
            response_cache=mc.ModelResponseCache(enable=True),
        ),
    )
    log.info("exported %s as %s version %d into %s", checkpoint, name, version, repository)
    return target


def name_translator(repository: Path, pipeline: str, translator: str) -> None:
    """Sets the `translator` parameter of an existing pipeline config."""
    path = repository / pipeline / "config.pbtxt"
    if not path.is_file():
        raise FileNotFoundError(f"no pipeline config at {path}; export the CLIP towers first")
    config = text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())
    config.parameters["translator"].string_value = translator
    write_config(repository / pipeline, config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="transformers Marian checkpoint: a local folder or a hub id")
    parser.add_argument("--repository", type=Path, required=True, help="model repository to write into")
    parser.add_argument("--version", type=int, default=1, help="version folder to write (positive integer)")
    parser.add_argument("--name", default="opus_mt_zh_en", help="model name in the repository")
    parser.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="instance_group kind to write")
    parser.add_argument("--no-merged", action="store_true", help="leave out decoder_model_merged.onnx")
    parser.add_argument(
        "--pipeline", help="also name this model as the translator of this pipeline (e.g. clip)"
    )
    args = parser.parse_args(argv)
    if args.version < 1:
        parser.error("--version must be a positive integer")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    export_marian(args.checkpoint, args.repository, args.version, args.name, args.kind, not args.no_merged)
    if args.pipeline:
        name_translator(args.repository, args.pipeline, args.name)


if __name__ == "__main__":
    main()
