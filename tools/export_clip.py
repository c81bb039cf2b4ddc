"""Exports a `transformers` CLIP checkpoint into `clip_vision/` + `clip_text/` model repository entries.

CHECKPOINT is a local folder in hub layout, or a hub id when online (e.g. openai/clip-vit-base-patch32).
Each tower becomes `<name>/<version>/model.onnx` with its preprocessing files beside it:
  clip_vision/<v>/model.onnx      pixel_values [N,3,H,W] f32 -> image_embeds [N,D], L2-normalised
  clip_vision/<v>/preprocessor_config.json
  clip_text/<v>/model.onnx        input_ids, attention_mask [N,L] i64 -> text_embeds [N,D], L2-normalised
  clip_text/<v>/tokenizer.json
Model facts the server needs (logit scale, context length, embedding size) are written into the ONNX
metadata, so they travel with the version. The `clip` pipeline config is written when it does not exist.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

from crossmodal.v1 import model_config_pb2 as mc
from server.repository.model_config import PIPELINE_PLATFORM
from tools.ort_fusion import fuse_vision_attention
from tools.pbtxt import CPU_IMAGE_INSTANCES, dynamic_batching, instance_group, write_config

log = logging.getLogger(__name__)

OPSET = 17


def _export(module, args: tuple, path: Path, input_names, output_names, dynamic_axes, metadata) -> None:
    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        # The tracer warns about Python control flow in transformers that is constant for CLIP towers.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(raw),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                dynamo=False,
            )
        model = onnx.load(str(raw))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _towers(model):
    import torch

    class VisionTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return torch.nn.functional.normalize(
                self.model.get_image_features(pixel_values=pixel_values), dim=-1
            )

    class TextTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            features = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            return torch.nn.functional.normalize(features, dim=-1)

    return VisionTower().eval(), TextTower().eval()


def export_clip(
    checkpoint: str,
    repository: Path,
    version: int = 1,
    vision_name: str = "clip_vision",
    text_name: str = "clip_text",
    pipeline_name: str = "clip",
    kind: str = "cpu",
    max_batch_size: int = 64,
) -> None:
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

    # Eager attention exports to plain ONNX ops that every runtime version supports.
    model = CLIPModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    tokenizer = CLIPTokenizerFast.from_pretrained(checkpoint)
    processor = CLIPImageProcessor.from_pretrained(checkpoint)
    vision, text = _towers(model)

    dim = model.config.projection_dim
    image_size = model.config.vision_config.image_size
    context_length = model.config.text_config.max_position_embeddings
    metadata = {
        "logit_scale": float(model.logit_scale.exp().item()),
        "context_length": context_length,
        "embedding_dim": dim,
        "image_size": image_size,
        "source": checkpoint if not Path(checkpoint).exists() else Path(checkpoint).name,
    }

    vision_dir = repository / vision_name / str(version)
    _export(
        vision,
        (torch.zeros(2, 3, image_size, image_size),),
        vision_dir / "model.onnx",
        ["pixel_values"],
        ["image_embeds"],
        {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
        metadata,
    )
    tower = model.config.vision_config
    fuse_vision_attention(vision_dir / "model.onnx", tower.num_attention_heads, tower.hidden_size)
    processor.save_pretrained(vision_dir)

    text_dir = repository / text_name / str(version)
    ids = torch.tensor([[49406, 320, 49407], [49406, 320, 49407]], dtype=torch.long)
    _export(
        text,
        (ids, torch.ones_like(ids)),
        text_dir / "model.onnx",
        ["input_ids", "attention_mask"],
        ["text_embeds"],
        {
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "text_embeds": {0: "batch"},
        },
        metadata,
    )
    tokenizer.backend_tokenizer.save(str(text_dir / "tokenizer.json"), pretty=False)

    vision_config = mc.ModelConfig(
        name=vision_name,
        platform="onnxruntime_onnx",
        max_batch_size=max_batch_size,
        input=[mc.ModelInput(name="pixel_values", data_type=mc.TYPE_FP32, dims=[3, image_size, image_size])],
        output=[mc.ModelOutput(name="image_embeds", data_type=mc.TYPE_FP32, dims=[dim])],
        instance_group=[instance_group(kind, CPU_IMAGE_INSTANCES)],
        dynamic_batching=dynamic_batching(),
        parameters={"model_type": mc.ModelParameter(string_value="clip_vision")},
    )
    text_config = mc.ModelConfig(
        name=text_name,
        platform="onnxruntime_onnx",
        max_batch_size=max_batch_size,
        input=[
            mc.ModelInput(name="input_ids", data_type=mc.TYPE_INT64, dims=[-1]),
            mc.ModelInput(name="attention_mask", data_type=mc.TYPE_INT64, dims=[-1]),
        ],
        output=[mc.ModelOutput(name="text_embeds", data_type=mc.TYPE_FP32, dims=[dim])],
        instance_group=[instance_group(kind)],
        dynamic_batching=dynamic_batching(),
        parameters={"model_type": mc.ModelParameter(string_value="clip_text")},
        # Texts repeat (label sets, frequent queries) and a text's answer never changes within a load.
        response_cache=mc.ModelResponseCache(enable=True),
    )
    write_config(repository / vision_name, vision_config)
    write_config(repository / text_name, text_config)
    pipeline_dir = repository / pipeline_name
    if not (pipeline_dir / "config.pbtxt").exists():
        write_config(
            pipeline_dir,
            mc.ModelConfig(
                name=pipeline_name,
                platform=PIPELINE_PLATFORM,
                parameters={
                    "vision_model": mc.ModelParameter(string_value=vision_name),
                    "text_model": mc.ModelParameter(string_value=text_name),
                },
            ),
        )
    log.info(
        "exported %s as %s/%s version %d into %s", checkpoint, vision_name, text_name, version, repository
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="transformers CLIP checkpoint: a local folder or a hub id")
    parser.add_argument("--repository", type=Path, required=True, help="model repository to write into")
    parser.add_argument("--version", type=int, default=1, help="version folder to write (positive integer)")
    parser.add_argument("--vision-name", default="clip_vision", help="model name of the image tower")
    parser.add_argument("--text-name", default="clip_text", help="model name of the text tower")
    parser.add_argument("--pipeline-name", default="clip", help="pipeline config written if absent")
    parser.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="instance_group kind to write")
    args = parser.parse_args(argv)
    if args.version < 1:
        parser.error("--version must be a positive integer")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    export_clip(
        args.checkpoint,
        args.repository,
        args.version,
        args.vision_name,
        args.text_name,
        args.pipeline_name,
        args.kind,
    )


if __name__ == "__main__":
    main()
