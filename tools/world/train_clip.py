"""Trains a small `transformers` CLIPModel on rendered scenes and their English captions (CPU, seeded).

Every step renders a fresh batch (rendering takes well under a millisecond a picture), so the model never
sees the same picture twice. The loss is CLIP's symmetric contrastive loss; as many pictures of a batch
share a scene, every caption of the same scene counts as a positive (soft targets), not a false negative.
Small linear heads on the image and text embeddings also predict the scene's background, object kind and
count during training (auxiliary losses that speed up learning to count); they are not part of the saved
model.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.build_tiny_clip import new_clip_model
from tools.world.captions import english
from tools.world.render import render
from tools.world.scenes import ALL_SCENES, BACKGROUNDS, COUNTS, OBJECTS, Scene

log = logging.getLogger(__name__)

DEFAULT_STEPS = 5200
DEFAULT_BATCH = 64
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


@dataclass(frozen=True)
class ClipShape:
    vision_width: int = 64
    vision_layers: int = 4
    text_width: int = 32
    text_layers: int = 2
    heads: int = 4
    projection_dim: int = 64
    patch_size: int = 32


def new_model(shape: ClipShape, seed: int):
    return new_clip_model(
        image_size=224,
        patch_size=shape.patch_size,
        vision_width=shape.vision_width,
        vision_layers=shape.vision_layers,
        vision_heads=shape.heads,
        text_width=shape.text_width,
        text_layers=shape.text_layers,
        text_heads=max(1, shape.text_width // 16),
        projection_dim=shape.projection_dim,
        context_length=77,
        seed=seed,
    )


def pixels(images) -> np.ndarray:
    """224x224 RGB pictures -> normalised [N, 3, 224, 224] (the OpenAI preprocessing is the identity
    resize/crop at this size, then rescale and normalise)."""
    batch = np.stack([np.asarray(image, dtype=np.float32) for image in images]) / 255.0
    return ((batch - MEAN) / STD).transpose(0, 3, 1, 2).copy()


class CaptionIds:
    """CLIP BPE ids of every caption, tokenised once."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[str, list[int]] = {}

    def batch(self, captions: list[str]):
        import torch

        missing = [c for c in captions if c not in self._cache]
        if missing:
            for caption, ids in zip(missing, self.tokenizer(missing)["input_ids"], strict=True):
                self._cache[caption] = ids
        rows = [self._cache[c] for c in captions]
        longest = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), longest), dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask


class SceneHeads:
    """Auxiliary linear classifiers of background, kind and count on the image embedding."""

    def __init__(self, dim: int) -> None:
        import torch

        self.background = torch.nn.Linear(dim, len(BACKGROUNDS))
        self.kind = torch.nn.Linear(dim, len(OBJECTS) + 1)
        self.count = torch.nn.Linear(dim, max(COUNTS) + 1)

    def parameters(self):
        return [*self.background.parameters(), *self.kind.parameters(), *self.count.parameters()]

    def loss(self, embeddings, scenes: list[Scene]):
        import torch
        import torch.nn.functional as F

        background = torch.tensor([BACKGROUNDS.index(s.background) for s in scenes])
        kind = torch.tensor([OBJECTS.index(s.kind) + 1 if s.kind else 0 for s in scenes])
        count = torch.tensor([s.count for s in scenes])
        return (
            F.cross_entropy(self.background(embeddings), background)
            + F.cross_entropy(self.kind(embeddings), kind)
            + 4 * F.cross_entropy(self.count(embeddings), count)  # counting is the hard part
        )


def sample_batch(rng: random.Random, size: int) -> tuple[list[Scene], list, list[str]]:
    scenes = [rng.choice(ALL_SCENES) for _ in range(size)]
    images = [render(scene, rng) for scene in scenes]
    captions = [rng.choice(english(scene)) for scene in scenes]
    return scenes, images, captions


def train(model, tokenizer, steps: int, batch_size: int, seed: int, lr: float = 3e-3, log_every: int = 500):
    import torch
    import torch.nn.functional as F

    rng = random.Random(seed)
    ids_of = CaptionIds(tokenizer)
    image_heads, text_heads = SceneHeads(model.config.projection_dim), SceneHeads(model.config.projection_dim)
    trained = [*model.parameters(), *image_heads.parameters(), *text_heads.parameters()]
    optimiser = torch.optim.AdamW(trained, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    model.train()
    started = time.monotonic()
    for step in range(steps):
        scenes, images, captions = sample_batch(rng, batch_size)
        ids, mask = ids_of.batch(captions)
        image_features = model.get_image_features(pixel_values=torch.from_numpy(pixels(images)))
        image_embeds = F.normalize(image_features, dim=-1)
        text_features = model.get_text_features(input_ids=ids, attention_mask=mask)
        text_embeds = F.normalize(text_features, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * image_embeds @ text_embeds.T
        same = torch.tensor([[a == b for b in scenes] for a in scenes], dtype=torch.float32)
        targets = same / same.sum(dim=1, keepdim=True)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        loss = loss + image_heads.loss(image_features, scenes) + text_heads.loss(text_features, scenes)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % log_every == 0 or step == steps - 1:
            model.eval()
            accuracy = zero_shot_accuracy(model, tokenizer, images_per_scene=1, seed=seed + 999)
            model.train()
            log.info(
                "step %d/%d loss %.3f scale %.1f zero-shot %.0f%% (%.0fs)",
                step,
                steps,
                loss.item(),
                model.logit_scale.exp().item(),
                100 * accuracy,
                time.monotonic() - started,
            )
    model.eval()


def zero_shot_accuracy(model, tokenizer, images_per_scene: int, seed: int) -> float:
    """Top-1 over the caption set (every caption of every scene) on freshly rendered pictures: right when
    the best caption describes the picture's scene."""
    import torch
    import torch.nn.functional as F

    rng = random.Random(seed)
    captions = [(index, caption) for index, scene in enumerate(ALL_SCENES) for caption in english(scene)]
    ids, mask = CaptionIds(tokenizer).batch([caption for _, caption in captions])
    scene_of = torch.tensor([index for index, _ in captions])
    correct = total = 0
    with torch.no_grad():
        text = F.normalize(model.get_text_features(input_ids=ids, attention_mask=mask), dim=-1)
        for _ in range(images_per_scene):
            images = [render(scene, rng) for scene in ALL_SCENES]
            image = F.normalize(
                model.get_image_features(pixel_values=torch.from_numpy(pixels(images))), dim=-1
            )
            predicted = scene_of[(image @ text.T).argmax(dim=1)]
            correct += int((predicted == torch.arange(len(ALL_SCENES))).sum())
            total += len(ALL_SCENES)
    return correct / total


def held_out_zero_shot(checkpoint: Path, seed: int = 0) -> float:
    from transformers import CLIPModel, CLIPTokenizerFast

    model = CLIPModel.from_pretrained(checkpoint).eval()
    return zero_shot_accuracy(model, CLIPTokenizerFast.from_pretrained(checkpoint), 3, seed + 1000)


def train_world_clip(
    out_dir: Path, steps: int, batch_size: int, seed: int = 0, shape: ClipShape = ClipShape()
):
    """Trains and saves the demo CLIP checkpoint folder; returns its held-out zero-shot accuracy."""
    import torch
    from transformers import CLIPTokenizerFast

    from tools.build_tiny_clip import write_preprocessing

    torch.set_num_threads(2)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_preprocessing(out_dir, 224, 77)
    tokenizer = CLIPTokenizerFast.from_pretrained(out_dir)
    model = new_model(shape, seed)
    train(model, tokenizer, steps, batch_size, seed)
    model.save_pretrained(out_dir)
    return zero_shot_accuracy(model, tokenizer, images_per_scene=3, seed=seed + 1000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="pictures per step")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and pictures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    accuracy = train_world_clip(args.out, args.steps, args.batch_size, args.seed)
    print(
        f"trained in {time.monotonic() - started:.0f}s; held-out zero-shot top-1 over {len(ALL_SCENES)} "
        f"captions: {accuracy:.1%}"
    )


if __name__ == "__main__":
    main()
