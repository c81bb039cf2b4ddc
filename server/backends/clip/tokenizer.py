"""The CLIP BPE tokenizer, from the model's `tokenizer.json`, with the original CLIP text cleaning.

The `tokenizers` file already collapses whitespace; the original tokenizer also repairs mojibake
(ftfy), unescapes HTML entities and lowercases with Python's rules, so that is done here first.
Sequences longer than the context are cut with the end-of-text token kept last; a batch is padded only
to its longest sequence.
"""

from __future__ import annotations

import html
from pathlib import Path

import ftfy
import numpy as np
from tokenizers import Tokenizer

from server.core.cancellation import check_cancelled
from server.core.errors import ModelLoadError

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
PAD_ID = 0  # masked out; the CLIP text tower pools at the end-of-text token, never at padding
# Texts encoded between cancellation checks: a chunk of long texts takes milliseconds.
TEXTS_PER_CHECK = 32


def clean_text(text: str) -> str:
    text = ftfy.fix_text(text)
    # Python's lower() knows word-final sigma (Σ -> ς); the tokenizer's per-character lowercase does not.
    return html.unescape(html.unescape(text)).strip().lower()


class ClipTokenizer:
    def __init__(self, tokenizer: Tokenizer, context_length: int) -> None:
        if context_length < 2:
            raise ModelLoadError(f"context length must be at least 2, got {context_length}")
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        # "<|endoftext|>" typed by a user is text, not a token that would end the sequence early.
        self._tokenizer.encode_special_tokens = True
        self.context_length = context_length
        self.start_id = self._special_id(START_OF_TEXT)
        self.end_id = self._special_id(END_OF_TEXT)

    @classmethod
    def from_file(cls, path: Path, context_length: int) -> ClipTokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a plain Exception for unreadable files
            raise ModelLoadError(f"cannot load tokenizer {path}: {error}") from error
        return cls(tokenizer, context_length)

    def _special_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ModelLoadError(f"tokenizer has no {token} token; is it a CLIP tokenizer?")
        return token_id

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Ids per text with start/end tokens, at most context_length long (end token kept last).

        Stops (Cancelled) between chunks of texts when the call was cancelled."""
        result = []
        for start in range(0, len(texts), TEXTS_PER_CHECK):
            check_cancelled("CLIP tokenising")
            chunk = [clean_text(t) for t in texts[start : start + TEXTS_PER_CHECK]]
            result.extend(self._ids(encoding) for encoding in self._tokenizer.encode_batch(chunk))
        return result

    def _ids(self, encoding) -> list[int]:
        ids = list(encoding.ids)
        if ids[:1] != [self.start_id]:  # a tokenizer.json without the post-processor
            ids = [self.start_id, *ids, self.end_id]
        if len(ids) > self.context_length:
            ids = ids[: self.context_length]
            ids[-1] = self.end_id
        return ids

    def pad(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """[N, longest] input_ids and attention_mask (int64)."""
        longest = max(len(s) for s in sequences)
        ids = np.full((len(sequences), longest), PAD_ID, dtype=np.int64)
        mask = np.zeros((len(sequences), longest), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        return ids, mask
