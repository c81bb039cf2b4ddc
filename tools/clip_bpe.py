"""The real CLIP BPE vocabulary, as shipped inside the open-clip-torch wheel, turned into tokenizer files.

No model hub is needed: the byte-level vocabulary is derived from the merges exactly as the original CLIP
tokenizer does it, then written as the `vocab.json` + `merges.txt` pair that `transformers` understands.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

# The original CLIP tokenizer keeps this many merges of the file (vocabulary of 49408 with the two specials).
NUM_MERGES = 49152 - 256 - 2
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"


def bundled_bpe_path() -> Path:
    """Path of `bpe_simple_vocab_16e6.txt.gz` inside the installed open_clip package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open-clip-torch is not installed; run `make setup`")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise RuntimeError(f"CLIP BPE vocabulary not found at {path}")
    return path


def byte_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character table of GPT-2/CLIP byte-level BPE.

    Order matters: the vocabulary lists the printable bytes first, then the remapped ones.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    remapped = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + i) for i, b in enumerate(remapped)})
    return table


def read_merges(bpe_path: Path) -> list[tuple[str, str]]:
    with gzip.open(bpe_path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    return [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    base = list(byte_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + [START_OF_TEXT, END_OF_TEXT]
    return {token: i for i, token in enumerate(tokens)}


def write_vocab_and_merges(out_dir: Path, bpe_path: Path | None = None) -> tuple[Path, Path]:
    """Writes `vocab.json` and `merges.txt` (with the `#version` header line the readers skip)."""
    merges = read_merges(bpe_path or bundled_bpe_path())
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = out_dir / "vocab.json"
    merges_path = out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(build_vocab(merges), ensure_ascii=False), encoding="utf-8")
    merges_path.write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    return vocab_path, merges_path
