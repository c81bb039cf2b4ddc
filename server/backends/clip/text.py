"""The CLIP text tower: texts -> CLIP BPE ids -> L2-normalised embeddings.

Token ids go through the batcher, so texts of many calls share runs; a run is split into length buckets,
each padded only to its own longest text (never to the context length).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from server.backends.clip.tokenizer import ClipTokenizer
from server.backends.onnx.model import DEFAULT_MAX_BATCH, ModelSource, OnnxModel, l2_normalise
from server.backends.onnx.session import SessionFactory
from server.batching.batcher import DynamicBatcher
from server.batching.buckets import length_buckets
from server.core.errors import InvalidInput, ModelLoadError


class ClipTextModel(OnnxModel):
    model_type = "clip_text"

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        super().__init__(source, self.open_session(source, factory))
        context_length = int(self.float_setting("context_length"))
        self.tokenizer = ClipTokenizer.from_file(source.directory / "tokenizer.json", context_length)
        self.logit_scale = self.float_setting("logit_scale")
        if "input_ids" not in self.input_names:
            raise ModelLoadError(
                f"model '{self.name}': the ONNX graph has no 'input_ids' input ({self.input_names})"
            )
        settings = source.batch_settings(DEFAULT_MAX_BATCH)
        self.batcher = DynamicBatcher(f"{self.name}/{self.version}", self._run, settings)

    def submit(self, texts: Sequence[str]) -> Future:
        """Tokenises here (in the caller's thread) and queues; the future gives one embedding per text."""
        return self.batcher.submit(self.tokenizer.token_ids(list(texts)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[N] texts -> [N, D], L2-normalised, in input order."""
        return np.stack(self.batcher.wait(self.submit(texts)))

    def embed_token_ids(self, sequences: Sequence[list[int]]) -> np.ndarray:
        """Already tokenised texts (each with its start and end token) -> [N, D], through the batcher."""
        limit, vocab = self.tokenizer.context_length, self.tokenizer.vocab_size
        for row, sequence in enumerate(sequences):
            if not 0 < len(sequence) <= limit:
                raise InvalidInput(f"input_ids row {row}: {len(sequence)} tokens; 1 to {limit} are accepted")
            if min(sequence) < 0 or max(sequence) >= vocab:
                raise InvalidInput(f"input_ids row {row}: token ids must be in 0..{vocab - 1}")
        return np.stack(self.batcher.run(list(sequences)))

    def _run(self, sequences: Sequence[list[int]]) -> list[np.ndarray]:
        result: list[np.ndarray] = [None] * len(sequences)
        for rows in length_buckets([len(s) for s in sequences]):
            ids, mask = self.tokenizer.pad([sequences[i] for i in rows])
            feeds = {"input_ids": ids}
            if "attention_mask" in self.input_names:
                feeds["attention_mask"] = mask
            embeds = l2_normalise(self.session.run([self.output_name], feeds)[0])
            for row, vector in zip(rows, embeds, strict=True):
                result[row] = vector
        return result

    def warmup(self) -> None:
        self.embed(["a photo of a dog in the snow", "a cat"])

    def close(self) -> None:
        self.batcher.stop()
        # Frees the ONNX Runtime session (GPU memory) now, not at some later garbage collection.
        self.session = self.loaded = None
