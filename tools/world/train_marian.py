"""Trains a small Marian zh->en on the demo world's captions (CPU, deterministic) and evaluates it.

Every Chinese phrasing of a scene is paired with each English paraphrase of that scene, its preferred
paraphrase weighted more, so that the preferred one becomes the top-1 translation and the others follow
it in the n-best. About 15% of the Chinese sentences are held out (never the sentences of the reference
example, nor the empty night city) and scored by exact match of the top-1 translation against any
paraphrase of their scene. The checkpoint folder is in `transformers` layout, ready for
`tools.export_marian`:

    python -m tools.world.train_marian --out /tmp/world-marian [--seed 0] [--steps 1500]
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from tools.build_tiny_marian import opus_mt_model, write_tokenizer
from tools.world.captions import chinese, english
from tools.world.scenes import ALL_SCENES, Scene

log = logging.getLogger(__name__)

HELDOUT_FRACTION = 0.15
PREFERRED_WEIGHT = 3
# The reference example: these must come out exactly as top-1 (and are never held out).
EXAMPLES = {
    "在雪地里有两条狗": "There are two dogs in the snow",
    "一只猫在桌子上": "A cat is on the table",
    "夜晚的伦敦": "London at night",
}
NUM_BEAMS = 5
MAX_LENGTH = 32
THREADS = 2
WORD_REPEATS = 5


@dataclass(frozen=True)
class SentencePair:
    """One Chinese phrasing of a scene with its preferred English paraphrase and all correct ones."""

    scene: Scene
    chinese: str
    pattern: int  # index of the phrasing among chinese(scene)
    preferred: str
    references: tuple[str, ...]  # every English paraphrase of the scene, the preferred one included


@dataclass(frozen=True)
class WorldMarianShape:
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    max_positions: int = 128
    source_pieces: int = 40  # about one piece per character: the corpus has 34 Chinese characters
    target_pieces: int = 64


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    label_smoothing: float = 0.0


def all_pairs() -> list[SentencePair]:
    """Every (scene, Chinese phrasing) pair of the world."""
    pairs = []
    for scene in ALL_SCENES:
        references = english(scene)
        for pattern, (text, preferred) in enumerate(chinese(scene)):
            pairs.append(SentencePair(scene, text, pattern, references[preferred], references))
    return pairs


def _protected(pair: SentencePair) -> bool:
    return pair.chinese in EXAMPLES or pair.scene.kind is None


def split_sentences(seed: int = 0) -> tuple[list[SentencePair], list[SentencePair]]:
    """(training pairs, held-out pairs): about 15% of the (scene, Chinese phrasing) pairs held out.

    Deterministic for a seed. At most one phrasing of a scene is held out (every scene keeps three in
    training), the held-out sentences are spread evenly over the four phrasing patterns, and the
    sentences of the reference example and of the empty night city always stay in training.
    """
    pairs = all_pairs()
    count = round(HELDOUT_FRACTION * len(pairs))
    per_pattern = math.ceil(count / 4)
    candidates = [pair for pair in pairs if not _protected(pair)]
    random.Random(seed).shuffle(candidates)
    heldout: set[str] = set()
    scenes_used: set[Scene] = set()
    taken = [0, 0, 0, 0]
    for pair in candidates:
        if len(heldout) == count:
            break
        if pair.scene in scenes_used or taken[pair.pattern] >= per_pattern:
            continue
        heldout.add(pair.chinese)
        scenes_used.add(pair.scene)
        taken[pair.pattern] += 1
    train = [pair for pair in pairs if pair.chinese not in heldout]
    held = [pair for pair in pairs if pair.chinese in heldout]
    return train, held


def training_examples(
    pairs: list[SentencePair], preferred_weight: int = PREFERRED_WEIGHT
) -> list[tuple[str, str]]:
    """(Chinese, English) examples: each sentence with every paraphrase of its scene, the preferred
    one repeated `preferred_weight` times."""
    examples = []
    for pair in pairs:
        for reference in pair.references:
            repeat = preferred_weight if reference == pair.preferred else 1
            examples.extend([(pair.chinese, reference)] * repeat)
    return examples


def with_words(sentences: list[str], repeats: int = WORD_REPEATS) -> list[str]:
    """The sentences and, `repeats` times, each of their words alone: on a corpus this small the unigram
    model otherwise keeps few whole words (`▁t w o`); with them every word of the world is one piece."""
    words = sorted({word for sentence in sentences for word in sentence.split()})
    return [*sentences, *(words * repeats)]


def build_tokenizer(out_dir: Path, pairs: list[SentencePair], shape: WorldMarianShape):
    """SentencePiece models on the training corpus (each side), the opus-mt shared vocabulary and a
    `MarianTokenizer` saved into `out_dir`."""
    source_sentences = sorted({pair.chinese for pair in pairs})
    target_sentences = sorted({reference for pair in pairs for reference in pair.references})
    return write_tokenizer(out_dir, source_sentences, with_words(target_sentences), shape)


def build_model(vocab_size: int, pad_id: int, shape: WorldMarianShape, seed: int):
    # The n-best of these short captions is complete long before max_length: stop once num_beams
    # hypotheses have ended.
    return opus_mt_model(
        vocab_size, pad_id, shape, seed, max_length=MAX_LENGTH, num_beams=NUM_BEAMS, early_stopping=True
    )


def train_model(
    model, tokenizer, examples: list[tuple[str, str]], settings: TrainSettings, seed: int
) -> float:
    """Shuffled epochs of `examples` for `settings.steps` steps (AdamW, warm-up then cosine decay);
    returns the mean loss of the last 50 steps."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )

    def schedule(step: int) -> float:
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=settings.label_smoothing)
    order: list[tuple[str, str]] = []
    recent: list[float] = []
    model.train()
    for step in range(settings.steps):
        if len(order) < settings.batch_size:
            epoch = list(examples)
            rng.shuffle(epoch)
            order.extend(epoch)
        batch, order = order[: settings.batch_size], order[settings.batch_size :]
        inputs = tokenizer(
            [b[0] for b in batch], text_target=[b[1] for b in batch], return_tensors="pt", padding=True
        )
        labels = inputs.pop("labels")
        labels[labels == tokenizer.pad_token_id] = -100
        logits = model(**inputs, labels=labels).logits
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        scheduler.step()
        recent = [*recent[-49:], loss.item()]
        if (step + 1) % 250 == 0:
            log.info("step %d: loss %.4f", step + 1, sum(recent) / len(recent))
    model.eval()
    return sum(recent) / len(recent)


def train_world_marian(
    out_dir: Path,
    seed: int = 0,
    settings: TrainSettings = TrainSettings(),
    shape: WorldMarianShape = WorldMarianShape(),
) -> tuple[Path, list[SentencePair], list[SentencePair]]:
    """Trains on the training split of `seed` and saves the checkpoint folder; returns it with the
    split (training pairs, held-out pairs)."""
    import torch

    torch.set_num_threads(THREADS)
    train, heldout = split_sentences(seed)
    tokenizer = build_tokenizer(out_dir, train, shape)
    model = build_model(len(tokenizer.encoder), tokenizer.pad_token_id, shape, seed)
    examples = training_examples(train)
    loss = train_model(model, tokenizer, examples, settings, seed)
    model.save_pretrained(out_dir)
    log.info(
        "trained on %d sentences (%d examples), %d steps, final loss %.4f; saved %s",
        len(train),
        len(examples),
        settings.steps,
        loss,
        out_dir,
    )
    return out_dir, train, heldout


def translate_nbest(
    model, tokenizer, texts: list[str], batch_size: int = 64
) -> list[list[tuple[str, float]]]:
    """The `NUM_BEAMS`-best translations with their scores, as generate() computes them."""
    import torch

    results = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        inputs = tokenizer(chunk, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                num_beams=NUM_BEAMS,
                num_return_sequences=NUM_BEAMS,
                output_scores=True,
                return_dict_in_generate=True,
            )
        decoded = tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
        scores = out.sequences_scores.tolist()
        for i in range(len(chunk)):
            rows = range(i * NUM_BEAMS, (i + 1) * NUM_BEAMS)
            results.append([(decoded[r], scores[r]) for r in rows])
    return results


def _score(pairs: list[SentencePair], nbests: list[list[tuple[str, float]]]) -> dict:
    top1 = [nbest[0][0] for nbest in nbests]
    count = max(1, len(pairs))
    return {
        "sentences": len(pairs),
        # top-1 is one of the paraphrases of the scene
        "exact_match": sum(t in p.references for t, p in zip(top1, pairs, strict=True)) / count,
        # top-1 is the preferred paraphrase of the phrasing
        "preferred": sum(t == p.preferred for t, p in zip(top1, pairs, strict=True)) / count,
        # mean share of the scene's paraphrases found in the n-best
        "paraphrases_in_nbest": sum(
            len(set(p.references) & {text for text, _ in nbest}) / len(p.references)
            for p, nbest in zip(pairs, nbests, strict=True)
        )
        / count,
        "errors": [
            {"chinese": p.chinese, "top1": t, "references": list(p.references)}
            for t, p in zip(top1, pairs, strict=True)
            if t not in p.references
        ],
    }


def evaluate(
    checkpoint_dir: Path | str,
    heldout_pairs: list[SentencePair],
    train_pairs: list[SentencePair] | None = None,
) -> dict:
    """Exact match of the top-1 translation (beam search, `NUM_BEAMS` beams) against any paraphrase of
    the scene on the held-out sentences (and on the training sentences when given), and the n-best of
    the reference example's sentences."""
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    torch.set_num_threads(THREADS)
    model = MarianMTModel.from_pretrained(checkpoint_dir).eval()
    tokenizer = MarianTokenizer.from_pretrained(checkpoint_dir)
    result = {
        "heldout": _score(
            heldout_pairs, translate_nbest(model, tokenizer, [p.chinese for p in heldout_pairs])
        )
    }
    if train_pairs is not None:
        result["train"] = _score(
            train_pairs, translate_nbest(model, tokenizer, [p.chinese for p in train_pairs])
        )
    examples = {}
    for (text, expected), nbest in zip(
        EXAMPLES.items(), translate_nbest(model, tokenizer, list(EXAMPLES)), strict=True
    ):
        examples[text] = {
            "expected": expected,
            "top1": nbest[0][0],
            "ok": nbest[0][0] == expected,
            "nbest": nbest,
        }
    result["examples"] = examples
    result["examples_ok"] = all(e["ok"] for e in examples.values())
    return result


def print_figures(result: dict) -> None:
    """Prints what `evaluate` found: accuracies, the sentences it got wrong, the examples' n-best."""
    for split in ("heldout", "train"):
        if split not in result:
            continue
        figures = result[split]
        print(
            f"{split}: {figures['sentences']} sentences, "
            f"top-1 exact match {100 * figures['exact_match']:.1f}%, "
            f"preferred paraphrase {100 * figures['preferred']:.1f}%, "
            f"paraphrases in the {NUM_BEAMS}-best {100 * figures['paraphrases_in_nbest']:.1f}%"
        )
        for error in figures["errors"]:
            print(f"  wrong: {error['chinese']} -> {error['top1']!r}")
    for text, example in result["examples"].items():
        verdict = "ok" if example["ok"] else f"expected {example['expected']!r}"
        print(f"{text} -> {example['top1']!r} ({verdict})")
        for rank, (hypothesis, score) in enumerate(example["nbest"], 1):
            print(f"  {rank}. {hypothesis} ({score:.4f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the batches")
    parser.add_argument("--steps", type=int, default=TrainSettings.steps, help="training steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    checkpoint, train, heldout = train_world_marian(args.out, args.seed, TrainSettings(steps=args.steps))
    trained = time.perf_counter() - start
    result = evaluate(checkpoint, heldout, train)
    print_figures(result)
    print(f"training {trained:.1f} s, total {time.perf_counter() - start:.1f} s")
    if not result["examples_ok"]:
        raise SystemExit("the reference example's sentences do not come out as expected")


if __name__ == "__main__":
    main()
