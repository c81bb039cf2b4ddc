"""Beam search in NumPy with the semantics of `transformers` `generate(num_beams=k)` for encoder-decoders.

Per step: log_softmax of the logits, then the logits processors (min length, banned words, forced EOS at
max_length, optional renormalisation), scores accumulated per beam, the top 2k candidates over all beams
of a sentence, the best k unfinished ones continue, and candidates among the first k that end (EOS or
max_length) enter the sentence's n-best with score = sum_logprobs / generated_len ** length_penalty.
`early_stopping` True stops a sentence once k hypotheses are done; False/"never" use the transformers
heuristic. num_beams=1 is greedy decoding, as `generate` does it.

Sentences are independent: a sentence whose n-best can no longer change is pruned from the batch, and
so is one that nobody waits for any more (its call was cancelled). Every step first checks whether the
whole search was cancelled. The decoder is behind `StepDecoder`, so the search runs without ONNX Runtime
in unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from server.core.cancellation import check_cancelled

NEG = np.float32(-1.0e9)  # the "impossible" score transformers adds; -inf would poison sums


@dataclass(frozen=True)
class SearchSettings:
    num_beams: int
    num_return: int
    max_length: int  # decoder length including the start token, as transformers counts it
    eos_id: int
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    bad_words: tuple[tuple[int, ...], ...] = ()
    forced_eos_id: int | None = None
    min_length: int = 0
    renormalize: bool = False

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, got {self.num_beams}")
        if not 1 <= self.num_return <= self.num_beams:
            raise ValueError(f"num_return must be in 1..num_beams ({self.num_beams}), got {self.num_return}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 (start token + one), got {self.max_length}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")


@dataclass(frozen=True)
class ScoredTokens:
    tokens: tuple[int, ...]  # generated tokens (no start token), EOS included when generated
    score: float


class StepDecoder(Protocol):
    def start(self, num_beams: int) -> np.ndarray:
        """Runs the first step of every sentence; logits [sentences * num_beams, V], beams repeated."""

    def advance(self, parents: np.ndarray, tokens: np.ndarray, kept_rows: np.ndarray | None) -> np.ndarray:
        """Continues row `parents[i]` of the previous step with `tokens[i]`; returns logits [len(parents), V].

        `kept_rows` (or None when no sentence was pruned) lists one previous row per remaining sentence and
        beam, for the per-sentence state (cross-attention, encoder mask) that beams of a sentence share.
        """


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float32, copy=False)
    peak = np.max(logits, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, np.float32(0))
    shifted = logits - peak  # the one new [R, V] array; the rest works in place (a step's hot path)
    total = np.sum(np.exp(shifted), axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        shifted -= np.log(total)
    return shifted


STRIDES = 64  # top_candidates' group size: small enough to gather cheaply, large enough to prune well


def top_candidates(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` best columns of each row of [R, N] and their scores, best first (ties: lower column).

    A full partition of N = beams x vocabulary (325k for opus-mt) per step costs more than the decoder
    run itself. So the columns are dealt into G groups (column c joins group c mod G): the best `count`
    values lie in the `count` groups with the highest maxima, and only those are partitioned. Groups are
    strided so that their maxima are an element-wise max over contiguous rows, which NumPy does fast.
    """
    rows, width = scores.shape
    groups = width // STRIDES
    if groups <= 2 * count:
        top = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    else:
        dealt = scores[:, : groups * STRIDES].reshape(rows, STRIDES, groups)
        best_groups = np.argpartition(-dealt.max(axis=1), count - 1, axis=1)[:, :count]
        columns = (best_groups[:, :, None] + groups * np.arange(STRIDES)).reshape(rows, -1)
        leftover = np.arange(groups * STRIDES, width)  # the last width % G columns are always candidates
        columns = np.concatenate([columns, np.broadcast_to(leftover, (rows, len(leftover)))], axis=1)
        gathered = np.take_along_axis(scores, columns, axis=1)
        top = np.take_along_axis(columns, np.argpartition(-gathered, count - 1, axis=1)[:, :count], axis=1)
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


@dataclass
class _Batch:
    """Search state of the active sentences (all arrays lead with the sentence axis)."""

    ids: np.ndarray  # original sentence index of each active sentence
    running: np.ndarray  # [A, K, L] tokens (start token at 0)
    running_scores: np.ndarray  # [A, K] float32
    finished: np.ndarray  # [A, K, L]
    finished_scores: np.ndarray  # [A, K] float32, normalised by length
    finished_lengths: np.ndarray  # [A, K] generated tokens per finished hypothesis
    finished_flags: np.ndarray  # [A, K] bool
    improvable: np.ndarray  # [A] bool: the early-stop heuristic still allows a better hypothesis

    def take(self, keep: np.ndarray) -> _Batch:
        return _Batch(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


@dataclass
class BeamSearch:
    settings: SearchSettings
    start_id: int
    results: dict[int, list[ScoredTokens]] = field(default_factory=dict)

    def run(
        self,
        decoder: StepDecoder,
        sentences: int,
        abandoned: Callable[[], Collection[int]] | None = None,
    ) -> list[list[ScoredTokens]]:
        """n-best per sentence. `abandoned()` (asked before every step) names sentences nobody waits for
        any more: they leave the batch and get an empty n-best."""
        s = self.settings
        k, length = s.num_beams, s.max_length
        greedy = k == 1  # transformers decodes greedily then: it stops at the first EOS
        early_stopping = True if greedy else s.early_stopping
        running = np.zeros((sentences, k, length), dtype=np.int64)
        running[:, :, 0] = self.start_id
        running_scores = np.zeros((sentences, k), dtype=np.float32)
        running_scores[:, 1:] = NEG  # beams start identical: only beam 0 may expand at step one
        batch = _Batch(
            ids=np.arange(sentences),
            running=running,
            running_scores=running_scores,
            finished=running.copy(),
            finished_scores=np.full((sentences, k), NEG, dtype=np.float32),
            finished_lengths=np.zeros((sentences, k), dtype=np.int64),
            finished_flags=np.zeros((sentences, k), dtype=bool),
            improvable=np.ones(sentences, dtype=bool),
        )
        check_cancelled("beam search")
        logits = decoder.start(k)
        cur_len = 1
        while True:
            check_cancelled("beam search step")
            batch, parents, tokens, done = self._step(batch, logits, cur_len, early_stopping)
            cur_len += 1
            dropped = self._dropped(batch, abandoned)
            for row in np.flatnonzero(done & ~dropped):
                self._collect(batch, row)
            done |= dropped
            if done.all():
                break
            keep = np.flatnonzero(~done)
            kept_rows = None
            if len(keep) < len(done):
                rows = (keep[:, None] * k + np.arange(k)[None, :]).ravel()
                parents, tokens = parents[rows], tokens[rows]
                kept_rows = np.repeat(keep * k, k)
                batch = batch.take(keep)
            logits = decoder.advance(parents, tokens, kept_rows)
        return [self.results[i] for i in range(sentences)]

    def _dropped(self, batch: _Batch, abandoned: Callable[[], Collection[int]] | None) -> np.ndarray:
        """[A] bool: active sentences nobody waits for; they are recorded with an empty n-best."""
        gone = abandoned() if abandoned is not None else ()
        if not gone:
            return np.zeros(len(batch.ids), dtype=bool)
        dropped = np.isin(batch.ids, np.fromiter(gone, dtype=np.int64))
        for sentence in batch.ids[dropped]:
            self.results[int(sentence)] = []
        return dropped

    def _process(self, log_probs: np.ndarray, running: np.ndarray, cur_len: int) -> np.ndarray:
        """The logits processors of transformers, on log-probabilities [R, V]; `running` is [R, L]."""
        s = self.settings
        if cur_len < s.min_length:
            log_probs[:, s.eos_id] = -np.inf
        for banned in s.bad_words:
            if len(banned) == 1:
                log_probs[:, banned[0]] = -np.inf
            elif len(banned) - 1 <= cur_len:
                prefix = np.asarray(banned[:-1])
                matches = np.all(running[:, cur_len - len(prefix) : cur_len] == prefix, axis=1)
                log_probs[matches, banned[-1]] = -np.inf
        if s.forced_eos_id is not None and cur_len == s.max_length - 1:
            log_probs[:] = -np.inf
            log_probs[:, s.forced_eos_id] = 0.0
        if s.renormalize:
            log_probs = log_softmax(log_probs)
        return log_probs

    def _step(self, batch: _Batch, logits: np.ndarray, cur_len: int, early_stopping):
        s = self.settings
        active, k = batch.running.shape[:2]
        vocab = logits.shape[-1]
        log_probs = self._process(log_softmax(logits), batch.running.reshape(active * k, -1), cur_len)
        scores = (log_probs.reshape(active, k, vocab) + batch.running_scores[:, :, None]).reshape(active, -1)

        # Top 2k candidates per sentence, best first.
        wanted = 2 * k
        top, top_scores = top_candidates(scores, wanted)
        origin, token = top // vocab, top % vocab
        sentence = np.arange(active)[:, None]
        candidates = batch.running[sentence, origin].copy()  # [A, 2k, L]
        candidates[:, :, cur_len] = token
        ends = (token == s.eos_id) | (cur_len + 1 >= s.max_length)

        # The best k candidates that did not end continue.
        masked = top_scores + ends.astype(np.float32) * NEG
        next_order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        batch.running = np.take_along_axis(candidates, next_order[:, :, None], axis=1)
        batch.running_scores = np.take_along_axis(masked, next_order, axis=1)
        parents = (sentence * k + np.take_along_axis(origin, next_order, axis=1)).ravel()
        tokens = np.take_along_axis(token, next_order, axis=1).ravel()

        # Candidates among the first k that ended may enter the n-best.
        just_finished = ends & (np.arange(wanted) < k)[None, :]
        normalised = top_scores / np.float32(cur_len**s.length_penalty)
        full = batch.finished_flags.all(axis=1, keepdims=True) & (early_stopping is True)
        normalised = normalised + full * NEG + (~batch.improvable[:, None]) * NEG + (~just_finished) * NEG
        merged_scores = np.concatenate([batch.finished_scores, normalised.astype(np.float32)], axis=1)
        best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        batch.finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        merged = np.concatenate([batch.finished, candidates], axis=1)
        batch.finished = np.take_along_axis(merged, best[:, :, None], axis=1)
        lengths = np.concatenate([batch.finished_lengths, np.full((active, wanted), cur_len)], axis=1)
        batch.finished_lengths = np.take_along_axis(lengths, best, axis=1)
        flags = np.concatenate([batch.finished_flags, just_finished], axis=1)
        batch.finished_flags = np.take_along_axis(flags, best, axis=1)

        # The early-stop heuristic, after the step (cur_len + 1 tokens now).
        best_length = s.max_length - 1 if early_stopping == "never" and s.length_penalty > 0.0 else cur_len
        best_possible = batch.running_scores[:, 0] / np.float32(best_length**s.length_penalty)
        worst = np.where(batch.finished_flags, batch.finished_scores.min(axis=1, keepdims=True), NEG)
        batch.improvable = batch.improvable & np.any(best_possible[:, None] > worst, axis=1)

        closed = batch.finished_flags.all(axis=1) & (early_stopping is True)
        done = ~batch.improvable | closed | ends.all(axis=1)
        return batch, parents, tokens, done

    def _collect(self, batch: _Batch, row: int) -> None:
        hypotheses = []
        for j in range(self.settings.num_return):
            length = int(batch.finished_lengths[row, j])
            tokens = tuple(int(t) for t in batch.finished[row, j, 1 : length + 1])
            hypotheses.append(ScoredTokens(tokens, float(batch.finished_scores[row, j])))
        self.results[int(batch.ids[row])] = hypotheses
