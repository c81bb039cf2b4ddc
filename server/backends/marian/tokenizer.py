"""Marian (opus-mt) text <-> ids, as `MarianTokenizer` does it.

Source text -> SentencePiece pieces of `source.spm` -> ids through `vocab.json` (unknown pieces -> `<unk>`)
-> `</s>` appended; over-long inputs keep their first pieces and `</s>`. Decoding drops the special
tokens (`</s>`, `<unk>`, `<pad>`), joins the pieces with `target.spm` and turns `▁` into spaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm

from server.core.errors import ModelLoadError

EOS, UNK, PAD = "</s>", "<unk>", "<pad>"
SPIECE_UNDERLINE = "▁"


class MarianTokenizer:
    def __init__(self, directory: Path, max_source_tokens: int = 512) -> None:
        try:
            self._source = spm.SentencePieceProcessor(model_file=str(directory / "source.spm"))
            self._target = spm.SentencePieceProcessor(model_file=str(directory / "target.spm"))
            self._vocab: dict[str, int] = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"cannot load the Marian tokenizer files in {directory}: {error}") from error
        missing = [token for token in (EOS, UNK, PAD) if token not in self._vocab]
        if missing:
            raise ModelLoadError(f"{directory / 'vocab.json'} lacks the special tokens {missing}")
        self._pieces = {index: piece for piece, index in self._vocab.items()}
        self.eos_id, self.unk_id, self.pad_id = (self._vocab[t] for t in (EOS, UNK, PAD))
        self._special_ids = {self.eos_id, self.unk_id, self.pad_id}
        self.max_source_tokens = max_source_tokens

    def encode(self, text: str) -> list[int]:
        pieces = self._source.encode(text, out_type=str)
        ids = [self._vocab.get(piece, self.unk_id) for piece in pieces]
        return [*ids[: self.max_source_tokens - 1], self.eos_id]

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        # An id outside the vocabulary reads as <unk>, which is special and dropped too.
        pieces = [self._pieces[i] for i in ids if i not in self._special_ids and i in self._pieces]
        return self._target.decode_pieces(pieces).replace(SPIECE_UNDERLINE, " ").strip()
