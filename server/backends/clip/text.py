"""The CLIP text tower: texts -> CLIP BPE ids -> L2-normalised embeddings.

Token ids go through the batcher, so texts of many calls share runs; a run is split into length buckets,
each padded only to its own longest text (never to the context length).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

from server.backends.base import Capability, Signature, TensorSpec, queued
from server.backends.clip.tokenizer import ClipTokenizer
from server.backends.onnx.model import DEFAULT_MAX_BATCH, OnnxModel, l2_normalise, stacked
from server.backends.onnx.session import SessionFactory
from server.backends.source import ModelSource
from server.batching.batcher import DynamicBatcher
from server.batching.buckets import length_buckets
from server.core.cache import through_cache
from server.core.errors import InvalidInput, ModelLoadError
from server.core.pending import Pending

IDS, MASK = "input_ids", "attention_mask"


def _kept_rows(embeds: np.ndarray) -> list[np.ndarray]:
    """Each row as its own read-only array: a cached row must not keep its whole batch alive."""
    rows = []
    for row in embeds:
        kept = row.copy()
        kept.flags.writeable = False
        rows.append(kept)
    return rows


class ClipTextModel(OnnxModel):
    model_type = "clip_text"
    capabilities = frozenset({Capability.EMBED_TEXTS})

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        super().__init__(source, self.open_session(source, factory))
        context_length = int(self.float_setting("context_length"))
        self.tokenizer = ClipTokenizer.from_file(source.directory / "tokenizer.json", context_length)
        self.logit_scale = self.float_setting("logit_scale")
        if IDS not in self.input_names:
            raise ModelLoadError(
                f"model '{self.name}': the ONNX graph has no 'input_ids' input ({self.input_names})"
            )
        settings = source.batch_settings(DEFAULT_MAX_BATCH)
        self.batcher = DynamicBatcher(f"{self.name}/{self.version}", self.guarded(self._run), settings)
        self.cache = source.cache

    def signature(self) -> Signature:
        return Signature(
            inputs=(TensorSpec(IDS, "INT64", (-1, -1)), TensorSpec(MASK, "INT64", (-1, -1), optional=True)),
            outputs=(TensorSpec(self.output_name, "FP32", (-1, self.embedding_dim)),),
        )

    def submit_texts(self, texts: Sequence[str]) -> Pending[np.ndarray]:
        """Tokenises here (in the caller's thread) and queues; the answer is [N, D]. With the response
        cache on, texts this load embedded before are neither tokenised nor run again."""
        texts = list(texts)
        if self.cache is None:
            return self._submit_ids(self.tokenizer.token_ids(texts))

        def embed(indices: list[int]) -> Pending[list[np.ndarray]]:
            ids = self.tokenizer.token_ids([texts[i] for i in indices])
            return self._submit_ids(ids).then(_kept_rows)

        dim = self.embedding_dim
        pending = through_cache(self.cache, texts, embed, lambda text, row: row.nbytes + sys.getsizeof(text))
        return pending.then(lambda rows: stacked(rows, dim))

    def infer(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]) -> Pending:
        """input_ids [N, L] (and attention_mask, else every token counts) -> text embeddings [N, D]."""
        ids = inputs[IDS]
        mask = inputs[MASK] if MASK in inputs else np.ones_like(ids)
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise InvalidInput(
                f"input_ids and attention_mask must both be [batch, tokens], got {list(ids.shape)} "
                f"and {list(mask.shape)}"
            )
        sequences = [row[keep != 0].astype(np.int64).tolist() for row, keep in zip(ids, mask, strict=True)]
        output = self.output_name
        self._check_token_ids(sequences)
        return self._submit_ids(sequences).then(lambda embeds: {output: embeds})

    def _check_token_ids(self, sequences: list[list[int]]) -> None:
        """Ids from a caller (each with its start and end token) must fit the context and the vocabulary."""
        limit, vocab = self.tokenizer.context_length, self.tokenizer.vocab_size
        for row, sequence in enumerate(sequences):
            if not 0 < len(sequence) <= limit:
                raise InvalidInput(f"input_ids row {row}: {len(sequence)} tokens; 1 to {limit} are accepted")
            if min(sequence) < 0 or max(sequence) >= vocab:
                raise InvalidInput(f"input_ids row {row}: token ids must be in 0..{vocab - 1}")

    def _submit_ids(self, sequences: list[list[int]]) -> Pending[np.ndarray]:
        dim = self.embedding_dim
        return queued(self.batcher, sequences, lambda outputs: stacked(outputs, dim))

    def _run(self, sequences: Sequence[list[int]]) -> list[np.ndarray]:
        result: list[np.ndarray] = [None] * len(sequences)
        for rows in length_buckets([len(s) for s in sequences]):
            ids, mask = self.tokenizer.pad([sequences[i] for i in rows])
            feeds = {IDS: ids}
            if MASK in self.input_names:
                feeds[MASK] = mask
            embeds = l2_normalise(self.session.run([self.output_name], feeds)[0])
            for row, vector in zip(rows, embeds, strict=True):
                result[row] = vector
        return result

    def warmup(self) -> None:
        self.submit_texts(["a photo of a dog in the snow", "a cat"]).result()

    def close(self) -> None:
        self.batcher.stop()
        # Frees the ONNX Runtime session (GPU memory) now, not at some later garbage collection.
        self.session = self.loaded = None
