"""The zh->en translator: Marian encoder-decoder ONNX graphs + our beam search + Marian tokenizer."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from server.backends.base import Backend, Capability, Signature, TensorSpec, queued
from server.backends.marian.beam_search import BeamSearch, SearchSettings
from server.backends.marian.decoder import MarianGraphs, MarianStepDecoder
from server.backends.marian.generation import (
    decoder_start_id,
    default_settings,
    read_generation_config,
    search_settings,
)
from server.backends.marian.tokenizer import MarianTokenizer
from server.backends.onnx.failures import unrecoverable
from server.backends.onnx.session import SessionFactory
from server.backends.source import ModelSource
from server.batching.batch_run import abandoned_items
from server.batching.batcher import DynamicBatcher
from server.core.cache import through_cache
from server.core.cancellation import check_cancelled
from server.core.errors import ModelLoadError
from server.core.pending import Pending
from server.core.types import Hypothesis, TranslateOptions
from server.repository.model_config import ONNX_PLATFORM

DEFAULT_SENTENCES_PER_BATCH = 16
SEPARATE = ("decoder_model.onnx", "decoder_with_past_model.onnx")
MERGED = "decoder_model_merged.onnx"


def _translation_bytes(key: tuple[str, SearchSettings], hypotheses: list[Hypothesis]) -> int:
    # The settings object is shared by every key of a call; the texts are what grows.
    return sys.getsizeof(key[0]) + sum(sys.getsizeof(h.text) + 64 for h in hypotheses)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error


SIGNATURE = Signature(
    inputs=(TensorSpec("TEXT", "BYTES", (-1,)),),
    outputs=(TensorSpec("TRANSLATIONS", "BYTES", (-1, -1)), TensorSpec("SCORES", "FP32", (-1, -1))),
    parameters=("num_beams", "num_hypotheses", "max_length", "length_penalty"),
)


class MarianModel(Backend):
    """Runs only through the engine (infer is left out): texts need its language and text checks first."""

    model_type = "marian"
    platform = ONNX_PLATFORM
    capabilities = frozenset({Capability.TRANSLATE})

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        self.name, self.version, self.spec = source.name, source.version, source.spec
        directory = source.directory
        model_config = _read_json(directory / "config.json")
        tokenizer_config = _read_json(directory / "tokenizer_config.json")
        self.max_positions = int(model_config.get("max_position_embeddings", 512))
        # Longer sources are cut: the encoder has no positions beyond max_position_embeddings.
        max_source = min(
            int(tokenizer_config.get("model_max_length", self.max_positions)), self.max_positions
        )
        self.tokenizer = MarianTokenizer(directory, max_source)
        generation_file = directory / "generation_config.json"
        generation = read_generation_config(generation_file)
        self.defaults = default_settings(generation, self.tokenizer.eos_id, generation_file)
        self.decoder_start_id = decoder_start_id(generation, self.tokenizer.pad_id)
        self.graphs, self._provider = self._open_graphs(source, factory)
        settings = source.batch_settings(DEFAULT_SENTENCES_PER_BATCH)
        self.batcher = DynamicBatcher(f"{self.name}/{self.version}", self.guarded(self._run), settings)
        self.cache = source.cache

    @staticmethod
    def _open_graphs(source: ModelSource, factory: SessionFactory) -> tuple[MarianGraphs, str]:
        directory = source.directory
        layout = source.spec.parameters.get("decoder_layout", "auto")
        if layout not in ("auto", "separate", "merged"):
            raise ModelLoadError(f"model '{source.name}': decoder_layout must be auto, separate or merged")
        separate = all((directory / f).is_file() for f in SEPARATE)
        merged = (directory / MERGED).is_file()
        use_merged = layout == "merged" or (layout == "auto" and not separate and merged)
        if not (merged if use_merged else separate):
            raise ModelLoadError(
                f"model '{source.name}' version {source.version}: needs encoder_model.onnx with "
                f"{' + '.join(SEPARATE)} or {MERGED} in {directory}"
            )
        encoder = factory.create(directory / "encoder_model.onnx", source.spec)
        if use_merged:
            decoder = factory.create(directory / MERGED, source.spec).session
            return MarianGraphs(encoder.session, decoder, decoder, merged=True), encoder.provider
        first = factory.create(directory / SEPARATE[0], source.spec).session
        with_past = factory.create(directory / SEPARATE[1], source.spec).session
        return MarianGraphs(encoder.session, first, with_past, merged=False), encoder.provider

    @property
    def provider(self) -> str:
        return self._provider

    def signature(self) -> Signature:
        return SIGNATURE

    def unrecoverable(self, error: BaseException) -> str | None:
        return unrecoverable(error)

    def check_options(self, options: TranslateOptions) -> None:
        """Raises InvalidInput naming a bad option, before any text is prepared for translating."""
        search_settings(self.defaults, options, self.max_positions)

    def submit_translations(
        self, texts: Sequence[str], options: TranslateOptions
    ) -> Pending[list[list[Hypothesis]]]:
        """Queues the sentences; only sentences with the same search settings decode together."""
        settings = search_settings(self.defaults, options, self.max_positions)
        texts = list(texts)

        def translate(indices: list[int]) -> Pending[list[list[Hypothesis]]]:
            items = []
            for index in indices:
                check_cancelled("Marian tokenising")
                items.append((settings, self.tokenizer.encode(texts[index])))
            return queued(self.batcher, items, group=settings)

        if self.cache is None:
            return translate(list(range(len(texts))))
        # Same text, same settings, same load: the same n-best list (the search is deterministic).
        keys = [(text, settings) for text in texts]
        pending = through_cache(self.cache, keys, translate, _translation_bytes)
        return pending.then(lambda answers: [list(hypotheses) for hypotheses in answers])

    def translate(self, texts: list[str], options: TranslateOptions) -> list[list[Hypothesis]]:
        """n-best translations per text, best first, through the batcher (waiting on this thread: for
        tools and benchmarks)."""
        return self.submit_translations(texts, options).result()

    def _run(self, items: Sequence[tuple[SearchSettings, list[int]]]) -> list[list[Hypothesis]]:
        """One beam search over sentences from any number of calls (one group: same settings)."""
        settings = items[0][0]
        order = sorted(range(len(items)), key=lambda i: len(items[i][1]))
        position = {item: sentence for sentence, item in enumerate(order)}
        input_ids, mask = self._pad([items[i][1] for i in order])
        check_cancelled("Marian encoder")
        decoder = MarianStepDecoder(self.graphs, input_ids, mask, self.decoder_start_id)
        search = BeamSearch(settings, self.decoder_start_id)
        results: list[list[Hypothesis]] = [[] for _ in items]

        def abandoned() -> list[int]:  # sentences of calls that were cancelled stop decoding
            return [position[item] for item in abandoned_items()]

        for row, hypotheses in zip(order, search.run(decoder, len(order), abandoned), strict=True):
            results[row] = [Hypothesis(self.tokenizer.decode(h.tokens), h.score) for h in hypotheses]
        return results

    def _pad(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        longest = max(len(s) for s in sequences)
        ids = np.full((len(sequences), longest), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), longest), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        return ids, mask

    def warmup(self) -> None:
        self.translate(
            ["在雪地里有两条狗", "你好"], TranslateOptions(num_beams=2, num_hypotheses=2, max_length=8)
        )

    def close(self) -> None:
        self.batcher.stop()
        self.graphs = None  # frees the ONNX Runtime sessions (GPU memory) now, not at a GC cycle
