"""Builds a small random-weight Marian zh->en checkpoint folder (deterministic) in `transformers` layout.

SentencePiece models are trained here on a generated corpus (Chinese from jieba's dictionary words,
English from common words), the shared vocabulary is written as opus-mt does it (`</s>` = 0,
`<unk>` = 1, `<pad>` last), and a `MarianMTModel` is initialised from a config with the opus-mt
generation settings. The folder is what `optimum-cli export onnx` and `tools.export_marian` expect.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EOS, UNK, PAD = "</s>", "<unk>", "<pad>"

ENGLISH_WORDS = [
    "a",
    "an",
    "the",
    "there",
    "is",
    "are",
    "in",
    "on",
    "at",
    "of",
    "with",
    "two",
    "three",
    "one",
    "dog",
    "dogs",
    "cat",
    "cats",
    "bird",
    "birds",
    "car",
    "cars",
    "tree",
    "trees",
    "snow",
    "grass",
    "table",
    "beach",
    "road",
    "city",
    "night",
    "london",
    "photo",
    "picture",
    "small",
    "large",
    "red",
    "blue",
    "green",
    "white",
    "black",
    "brown",
    "running",
    "sitting",
    "standing",
    "near",
    "under",
    "over",
    "and",
    "by",
    "field",
    "water",
    "sky",
    "sun",
    "day",
    "light",
    "lights",
    "street",
    "house",
    "people",
    "man",
    "woman",
    "child",
    "children",
    "playing",
    "looking",
    "it",
    "this",
    "that",
    "these",
    "those",
    "very",
    "quite",
    "some",
    "many",
    "few",
]


@dataclass(frozen=True)
class TinyMarianShape:
    d_model: int = 32
    layers: int = 2
    heads: int = 4
    ffn: int = 64
    max_positions: int = 256
    source_pieces: int = 2000
    target_pieces: int = 300


def chinese_corpus(count: int, seed: int) -> list[str]:
    import jieba

    words = []
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as handle:
        for line in handle:
            word, freq = line.split(" ")[:2]
            if int(freq) >= 2000 and all("\u4e00" <= ch <= "\u9fff" for ch in word):
                words.append(word)
    rng = random.Random(seed)
    return ["".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(count)]


def english_corpus(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    sentences = [" ".join(rng.choice(ENGLISH_WORDS) for _ in range(rng.randint(2, 12))) for _ in range(count)]
    return [s[0].upper() + s[1:] + rng.choice([".", "", "!", "?"]) for s in sentences]


def train_sentencepiece(sentences: list[str], vocab_size: int, path: Path) -> None:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=0.9995,
        unk_id=0,
        bos_id=-1,
        eos_id=1,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())


def shared_vocab(source_spm: Path, target_spm: Path) -> dict[str, int]:
    """opus-mt layout: `</s>` 0, `<unk>` 1, every piece of both models once, `<pad>` last."""
    import sentencepiece as spm

    vocab = {EOS: 0, UNK: 1}
    for path in (source_spm, target_spm):
        processor = spm.SentencePieceProcessor(model_file=str(path))
        for index in range(processor.get_piece_size()):
            if processor.is_control(index) or processor.is_unknown(index):
                continue
            vocab.setdefault(processor.id_to_piece(index), len(vocab))
    vocab[PAD] = len(vocab)
    return vocab


def pseudo_translation(source_pieces: list[str]) -> str:
    """A deterministic stand-in target: one English word per source piece, chosen by a stable hash."""
    words = [ENGLISH_WORDS[zlib.crc32(piece.encode()) % len(ENGLISH_WORDS)] for piece in source_pieces]
    return " ".join(words[: max(1, len(words) * 2 // 3)])


def train_briefly(model, tokenizer, sentences: list[str], steps: int, seed: int) -> None:
    """A few hundred steps on pseudo-translations: outputs then depend on the input, end at varied
    lengths and keep several plausible continuations, which random weights alone never do."""
    import torch

    pairs = [(s, pseudo_translation(tokenizer.spm_source.encode(s, out_type=str))) for s in sentences]
    rng = random.Random(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = rng.sample(pairs, 32)
        inputs = tokenizer(
            [p[0] for p in batch], text_target=[p[1] for p in batch], return_tensors="pt", padding=True
        )
        inputs["labels"][inputs["labels"] == tokenizer.pad_token_id] = -100
        loss = model(**inputs).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    log.info("trained %d steps, last loss %.3f", steps, loss.item())


def fill_vocab(vocab: dict[str, int], size: int) -> dict[str, int]:
    """A vocabulary of exactly `size` ids from small SentencePiece models: filler pieces between the real
    ones and `<pad>`, which stays last (so a model gets the embedding rows of a real opus-mt)."""
    if len(vocab) > size:
        raise ValueError(f"the SentencePiece models already give {len(vocab)} tokens, more than {size}")
    filled = {piece: index for piece, index in vocab.items() if piece != PAD}
    serial = 0
    while len(filled) < size - 1:
        filled.setdefault(f"▁filler{serial}", len(filled))
        serial += 1
    filled[PAD] = size - 1
    return filled


def write_tokenizer(
    out_dir: Path, source: list[str], target: list[str], shape, vocab_size: int | None = None
):
    """Trains both SentencePiece models, writes the shared vocabulary and saves a MarianTokenizer in
    `out_dir`; `shape` gives source_pieces, target_pieces and max_positions. With `vocab_size` the
    vocabulary is filled up to that many ids (see fill_vocab)."""
    from transformers import MarianTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    train_sentencepiece(source, shape.source_pieces, out_dir / "source.spm")
    train_sentencepiece(target, shape.target_pieces, out_dir / "target.spm")
    vocab = shared_vocab(out_dir / "source.spm", out_dir / "target.spm")
    if vocab_size is not None:
        vocab = fill_vocab(vocab, vocab_size)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
    tokenizer = MarianTokenizer(
        str(out_dir / "source.spm"),
        str(out_dir / "target.spm"),
        str(out_dir / "vocab.json"),
        source_lang="zh",
        target_lang="en",
        model_max_length=shape.max_positions,
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def opus_mt_model(vocab_size: int, pad_id: int, shape, seed: int, **generation):
    """A randomly initialised MarianMTModel configured like opus-mt (`</s>` = 0, decoding starts at `<pad>`,
    `<pad>` banned, EOS forced at max_length, renormalised log-probabilities); `shape` gives d_model,
    layers, heads, ffn and max_positions; `generation` adds decoding defaults (num_beams, max_length...)."""
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=vocab_size,
        d_model=shape.d_model,
        encoder_layers=shape.layers,
        decoder_layers=shape.layers,
        encoder_attention_heads=shape.heads,
        decoder_attention_heads=shape.heads,
        encoder_ffn_dim=shape.ffn,
        decoder_ffn_dim=shape.ffn,
        max_position_embeddings=shape.max_positions,
        pad_token_id=pad_id,
        eos_token_id=0,
        decoder_start_token_id=pad_id,
        forced_eos_token_id=0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config)
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad_id]],
        bos_token_id=0,
        decoder_start_token_id=pad_id,
        eos_token_id=0,
        forced_eos_token_id=0,
        pad_token_id=pad_id,
        renormalize_logits=True,
        **generation,
    )
    return model


def build_tiny_marian(
    out_dir: Path, shape: TinyMarianShape = TinyMarianShape(), seed: int = 0, train_steps: int = 300
) -> Path:
    corpus = chinese_corpus(3000, seed)
    tokenizer = write_tokenizer(out_dir, corpus, english_corpus(3000, seed), shape)
    vocab = tokenizer.encoder

    model = opus_mt_model(len(vocab), vocab[PAD], shape, seed, max_length=64, num_beams=4).eval()
    if train_steps:
        train_briefly(model, tokenizer, corpus, train_steps, seed)
    model.save_pretrained(out_dir)
    log.info("built tiny Marian (%d tokens) in %s", len(vocab), out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed of corpus and weights")
    parser.add_argument(
        "--train-steps", type=int, default=300, help="steps of training on pseudo-translations"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_tiny_marian(args.out, seed=args.seed, train_steps=args.train_steps)


if __name__ == "__main__":
    main()
