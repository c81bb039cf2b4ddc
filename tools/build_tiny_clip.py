"""Builds a small random-weight CLIP checkpoint folder (deterministic seed) in `transformers` layout.

The folder looks like a real hub checkpoint: model weights + config, the real CLIP BPE tokenizer and the
OpenAI image preprocessing, so `tools.export_clip` treats it exactly like `openai/clip-vit-base-patch32`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.clip_bpe import write_vocab_and_merges

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TinyClipShape:
    image_size: int
    patch_size: int
    vision_width: int
    text_width: int
    layers: int
    heads: int
    projection_dim: int
    context_length: int = 77


PRESETS = {
    # Unit-test size: a non-224 input proves the preprocessing reads its size from the model's files.
    "tiny": TinyClipShape(
        image_size=64, patch_size=16, vision_width=32, text_width=32, layers=2, heads=2, projection_dim=24
    ),
}


def new_clip_model(
    *,
    image_size: int,
    patch_size: int,
    vision_width: int,
    vision_layers: int,
    vision_heads: int,
    text_width: int,
    text_layers: int,
    text_heads: int,
    projection_dim: int,
    context_length: int,
    seed: int,
):
    """A randomly initialised CLIPModel with the OpenAI special tokens and the full CLIP BPE vocabulary."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={
            "vocab_size": 49408,
            "hidden_size": text_width,
            "intermediate_size": text_width * 4,
            "num_hidden_layers": text_layers,
            "num_attention_heads": text_heads,
            "max_position_embeddings": context_length,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
        vision_config={
            "image_size": image_size,
            "patch_size": patch_size,
            "hidden_size": vision_width,
            "intermediate_size": vision_width * 4,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": vision_heads,
        },
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    return CLIPModel(config)


def build_tiny_clip(out_dir: Path, shape: TinyClipShape, seed: int = 0) -> Path:
    model = new_clip_model(
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        vision_width=shape.vision_width,
        vision_layers=shape.layers,
        vision_heads=shape.heads,
        text_width=shape.text_width,
        text_layers=shape.layers,
        text_heads=shape.heads,
        projection_dim=shape.projection_dim,
        context_length=shape.context_length,
        seed=seed,
    ).eval()
    # A random init leaves logit_scale at ln(1/0.07); keep it, it is what an untrained CLIP carries.
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    write_preprocessing(out_dir, shape.image_size, shape.context_length)
    log.info("built %s CLIP checkpoint in %s", shape, out_dir)
    return out_dir


def write_preprocessing(out_dir: Path, image_size: int, context_length: int) -> None:
    """The real CLIP BPE tokenizer (slow files + tokenizer.json) and the OpenAI image preprocessing."""
    from transformers import CLIPImageProcessor, CLIPTokenizer, CLIPTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = write_vocab_and_merges(Path(tmp))
        slow = CLIPTokenizer(vocab_file=str(vocab), merges_file=str(merges))
        slow.model_max_length = context_length
        slow.save_pretrained(out_dir)
    (out_dir / "tokenizer.json").unlink(missing_ok=True)  # else the stale file would be loaded, not converted
    # Loading the fast tokenizer converts the slow one and lets us write tokenizer.json beside it.
    CLIPTokenizerFast.from_pretrained(out_dir).save_pretrained(out_dir)

    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_tiny_clip(args.out, PRESETS[args.preset], args.seed)


if __name__ == "__main__":
    main()
