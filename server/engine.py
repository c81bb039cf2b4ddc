"""The engine: the high-level operations (encode, compare, classify, translate) over the repository.

Each operation is a coroutine on the event loop. Its CPU stages (decoding, jieba, tokenising, scoring)
run on the worker threads of `executor`, carrying the call's cancellation token, when they outweigh the
hop to a thread; smaller ones (a few short texts, a small score matrix) run on the loop. The batches it
queues are awaited as Pendings, so a call waiting for its batch holds no thread. ONNX Runtime runs only on the
batchers' own threads. No protocol is known here: the protocols' call runner turns results and errors
into answers.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np

from server.core.cancellation import run_here, run_in_worker
from server.core.config import Limits
from server.core.errors import CrossModalError, InvalidInput, LimitExceeded, ModelNotReady
from server.core.types import (
    ClassifyResult,
    CompareResult,
    EncodeResult,
    Input,
    LabelScore,
    ModelRef,
    TextInput,
    TextOutcome,
    TranslateOptions,
    TranslateResult,
)
from server.memory_budget import MemoryBudget
from server.pipelines.clip import ClipPipeline, heavy_texts, resolve_pipeline
from server.pipelines.text import describe_text, resolve_translator, translate_outcomes
from server.repository.repository import ModelRepository

PLACEHOLDER = "{}"
# Scoring more (query, candidate) pairs than this runs on a worker thread; a smaller matrix (its product,
# softmax and, for Classify, the ranked label scores) takes less time on the event loop than the hop.
INLINE_SCORES = 1024


def _leasing_models(operation):
    """Runs an engine operation in a repository call scope: the versions it uses stay loaded until it
    ends, across all its stages (the scope travels to worker threads with the call's context)."""

    @functools.wraps(operation)
    async def leased(self, *args, **kwargs):
        if not self.accepting:
            raise ModelNotReady("the server is still loading its models; retry shortly")
        with self.repository.call_scope():
            return await operation(self, *args, **kwargs)

    return leased


class Engine:
    def __init__(
        self,
        repository: ModelRepository,
        limits: Limits,
        default_pipeline: str = "clip",
        memory_budget: MemoryBudget | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.repository = repository
        self.limits = limits
        self.default_pipeline = default_pipeline
        # Decoded images of all calls together stay within it (None: not bounded, for tools and tests).
        self.memory_budget = memory_budget
        self.accepting = True  # False while the server's start-up load runs
        # The worker threads of the CPU stages: the server's (its calls are registered on it), or our own.
        self._owned_executor = None if executor is not None else _threads(os.cpu_count() or 1, "stage")
        self.executor = executor or self._owned_executor
        # Decodes the images of one request in parallel (Pillow releases the GIL while decoding).
        self._preprocess_pool = _threads(os.cpu_count() or 1, "preprocess")

    def close(self) -> None:
        self._preprocess_pool.shutdown(wait=True, cancel_futures=True)
        if self._owned_executor is not None:
            self._owned_executor.shutdown(wait=True, cancel_futures=True)

    async def offload(self, function, *args):
        """Runs function(*args) on a worker thread, as a stage of the current call."""
        return await run_in_worker(self.executor, function, *args)

    def pipeline(self, ref: ModelRef) -> ClipPipeline:
        if ref.version < 0:
            raise InvalidInput(f"model.version must be 0 (newest) or a positive version, got {ref.version}")
        return resolve_pipeline(self.repository, ref.name or self.default_pipeline, ref.version)

    @_leasing_models
    async def encode(
        self,
        ref: ModelRef,
        items: list[Input],
        item_errors: dict[int, CrossModalError] | None = None,
        field: str = "items",
    ) -> EncodeResult:
        """Embeddings in item order. With `item_errors`, items that cannot be embedded are recorded there
        (by position, rows left NaN) instead of failing the call; `field` is what errors call the items."""
        self._check_count(field, len(items))
        pipeline = self.pipeline(ref)
        embedded = await self._embed(pipeline, _named(field, items), item_errors)
        return EncodeResult(embedded.embeddings, embedded.texts, embedded.models)

    @_leasing_models
    async def compare(self, ref: ModelRef, queries: list[Input], candidates: list[Input]) -> CompareResult:
        self._check_count("queries", len(queries))
        self._check_count("candidates", len(candidates))
        self._check_count("queries + candidates", len(queries) + len(candidates))
        pipeline = self.pipeline(ref)
        embedded = await self._embed(pipeline, _named("queries", queries) + _named("candidates", candidates))
        similarity, probabilities = await self._scoring(len(queries) * len(candidates))(
            _scores, embedded.embeddings, len(queries), pipeline.logit_scale
        )
        return CompareResult(similarity, probabilities, pipeline.logit_scale, embedded.texts, embedded.models)

    @_leasing_models
    async def classify(
        self, ref: ModelRef, items: list[Input], labels: list[str], prompt_template: str, top_k: int
    ) -> ClassifyResult:
        self._check_count("items", len(items))
        self._check_count("labels", len(labels))
        if top_k < 0:
            raise InvalidInput(f"top_k must be 0 (all labels) or positive, got {top_k}")
        if prompt_template and PLACEHOLDER not in prompt_template:
            raise InvalidInput(
                f"prompt_template must contain {PLACEHOLDER} where the label goes: {prompt_template!r}"
            )
        for index, label in enumerate(labels):
            if not label.strip():
                raise InvalidInput(f"labels[{index}]: label is empty")
        prompts = label_prompts(labels, prompt_template)
        pipeline = self.pipeline(ref)
        named = _named("items", items) + [(f"labels[{i}]", TextInput(p)) for i, p in enumerate(prompts)]
        embedded = await self._embed(pipeline, named)
        scoring = self._scoring(len(items) * len(labels))
        results = await scoring(_classifications, embedded.embeddings, labels, pipeline.logit_scale, top_k)
        label_texts = embedded.texts[len(embedded.texts) - len(labels) :]
        return ClassifyResult(results, label_texts, embedded.models)

    @_leasing_models
    async def translate(self, ref: ModelRef, texts: list[str], options: TranslateOptions) -> TranslateResult:
        self._check_count("texts", len(texts))
        translator = resolve_translator(self.repository, ref.name or self.default_pipeline, ref.version)
        translator.check_options(options)  # before jieba: a bad option must not cost the texts' work
        stage = self.offload if heavy_texts(texts) else run_here
        outcomes = await stage(_described, texts, self.limits)
        translated = await translate_outcomes(outcomes, translator, options, stage)
        return TranslateResult(translated, [(translator.name, translator.version)])

    def _scoring(self, pairs: int):
        """Where scoring that many (query, candidate) pairs runs: a worker thread, or the loop itself."""
        return self.offload if pairs > INLINE_SCORES else run_here

    async def _embed(self, pipeline: ClipPipeline, named: list[tuple[str, Input]], item_errors=None):
        return await pipeline.embed(
            named, self.limits, self.offload, self._preprocess_pool, item_errors, self.memory_budget
        )

    def _check_count(self, what: str, count: int) -> None:
        if count == 0:
            raise InvalidInput(f"{what}: empty; send at least one")
        if count > self.limits.max_items:
            raise LimitExceeded(f"{what}: {count} given; the limit is {self.limits.max_items} per request")


def label_prompts(labels: list[str], prompt_template: str) -> list[str]:
    """The texts embedded for the labels: each put into the template, or as it is without one."""
    return [prompt_template.replace(PLACEHOLDER, label) if prompt_template else label for label in labels]


def _threads(count: int, prefix: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix=prefix)


def _named(field: str, items: list[Input]) -> list[tuple[str, Input]]:
    return [(f"{field}[{i}]", item) for i, item in enumerate(items)]


def _described(texts: list[str], limits: Limits) -> list[TextOutcome]:
    return [describe_text(f"texts[{index}]", text, limits) for index, text in enumerate(texts)]


def _scores(embeddings: np.ndarray, rows: int, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of the first `rows` embeddings with the rest, and its softmax per row."""
    similarity = embeddings[:rows] @ embeddings[rows:].T
    return similarity, softmax(logit_scale * similarity)


def _classifications(
    embeddings: np.ndarray, labels: list[str], logit_scale: float, top_k: int
) -> list[list[LabelScore]]:
    """Each item's labels, best first, the `top_k` best (0: all); the label embeddings come last."""
    items = len(embeddings) - len(labels)
    similarity, probabilities = _scores(embeddings, items, logit_scale)
    keep = min(top_k or len(labels), len(labels))
    results = []
    for row in range(items):
        best = np.argsort(-probabilities[row], kind="stable")[:keep]
        results.append(
            [
                LabelScore(int(i), labels[i], float(probabilities[row, i]), float(similarity[row, i]))
                for i in best
            ]
        )
    return results


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
