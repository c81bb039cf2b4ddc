"""Our Marian translator (optimum ONNX export + NumPy beam search) against `transformers` generate()."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from transformers import MarianMTModel
from transformers import MarianTokenizer as ReferenceTokenizer

from server.backends.marian.decoder import MarianStepDecoder
from server.backends.marian.model import MarianModel
from server.backends.onnx.session import SessionFactory
from server.backends.source import ModelSource
from server.core.types import TranslateOptions
from server.repository.model_config import load_model_config
from server.repository.specs import model_spec
from tools.build_tiny_marian import chinese_corpus

SCORE_TOLERANCE = 1e-4
# Two different hypotheses whose scores differ by less than this are a tie at float32 noise (ONNX Runtime
# and torch differ by ~1e-6 per logit): either order is right, and the rest of the n-best must still agree.
TIE = 1e-5
TIES_SEEN: list[str] = []
CONFIGS = [
    (beams, penalty, early, max_length)
    for beams in (1, 4, 6)
    for penalty in (0.6, 1.0, 2.0)
    for early, max_length in ((True, 40), (False, 12))
]
TEXTS_PER_CONFIG = 12


def load_translator(repository, layout: str) -> MarianModel:
    directory = repository / "opus_mt_zh_en"
    config = load_model_config(directory)
    config.parameters["decoder_layout"].string_value = layout
    spec = model_spec(config)
    return MarianModel(ModelSource("opus_mt_zh_en", 1, directory / "1", spec), SessionFactory())


@pytest.fixture(scope="module")
def translator(marian_repository) -> MarianModel:
    return load_translator(marian_repository, "separate")


@pytest.fixture(scope="module")
def reference(marian_checkpoint):
    return MarianMTModel.from_pretrained(marian_checkpoint).eval(), ReferenceTokenizer.from_pretrained(
        marian_checkpoint
    )


def mixed_length_texts(count: int, seed: int) -> list[str]:
    """Short and long Chinese texts: single characters up to about 100 source tokens."""
    rng = random.Random(seed)
    texts = chinese_corpus(count, seed)
    for i in range(0, count, 4):
        texts[i] = "".join(chinese_corpus(rng.randint(4, 12), seed + i))  # long
    texts[1] = texts[1][:1]  # one character
    texts[2] = ""  # nothing but </s>
    return texts


def reference_nbest(reference, text: str, beams: int, penalty: float, early: bool, max_length: int):
    model, tokenizer = reference
    inputs = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **inputs,
            num_beams=beams,
            num_return_sequences=beams,
            output_scores=True,
            return_dict_in_generate=True,
            max_length=max_length,
            length_penalty=penalty,
            early_stopping=early,
        )
    texts = tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
    if beams > 1:
        return texts, out.sequences_scores.tolist(), out.sequences
    # generate() decodes greedily with one beam and reports no sequence score: compute it the same way.
    steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    generated = len(out.scores)
    return texts, [float(steps.sum()) / generated**penalty], out.sequences


@pytest.mark.parametrize(("beams", "penalty", "early", "max_length"), CONFIGS)
def test_nbest_matches_generate(translator, reference, beams, penalty, early, max_length):
    seed = CONFIGS.index((beams, penalty, early, max_length))
    texts = mixed_length_texts(TEXTS_PER_CONFIG, seed)
    options = TranslateOptions(
        num_beams=beams,
        num_hypotheses=beams,
        max_length=max_length,
        length_penalty=penalty,
        early_stopping=early,
    )
    ours = translator.translate(texts, options)  # one mixed-length batch
    for text, hypotheses in zip(texts, ours, strict=True):
        expected_texts, expected_scores, _ = reference_nbest(
            reference, text, beams, penalty, early, max_length
        )
        assert_same_nbest(text, hypotheses, expected_texts, expected_scores)


def assert_same_nbest(
    source: str, hypotheses, expected_texts: list[str], expected_scores: list[float]
) -> None:
    scores = [h.score for h in hypotheses]
    np.testing.assert_allclose(scores, expected_scores, atol=SCORE_TOLERANCE, err_msg=source)
    for rank, (hypothesis, text, score) in enumerate(
        zip(hypotheses, expected_texts, expected_scores, strict=True)
    ):
        if hypothesis.text != text:
            assert abs(hypothesis.score - score) < TIE, (source, rank, hypothesis.text, text)
            TIES_SEEN.append(
                f"{source} #{rank}: {hypothesis.text!r} vs {text!r} ({hypothesis.score} vs {score})"
            )


def test_ties_are_rare():
    # Runs after the parity tests: float-level ties must stay exceptional, not the way texts pass.
    assert len(TIES_SEEN) <= 3, TIES_SEEN


def test_the_parity_inputs_cover_lengths_and_stopping_kinds(translator, reference):
    tokenizer = reference[1]
    lengths = [len(tokenizer(t).input_ids) for c in range(len(CONFIGS)) for t in mixed_length_texts(12, c)]
    assert len(lengths) >= 200 and min(lengths) <= 2 and max(lengths) >= 100
    ended, capped = 0, 0
    for text in mixed_length_texts(12, 1):
        *_, sequences = reference_nbest(reference, text, 4, 1.0, False, 12)
        for row in sequences.tolist():
            ended += 0 in row[1:-1] or (row[-1] == 0 and len(row) < 12)
            capped += len(row) == 12
    assert ended > 0 and capped > 0  # some hypotheses end with </s>, some run into max_length


def test_batch_of_16_equals_batch_of_1(translator):
    texts = mixed_length_texts(16, 99)
    options = TranslateOptions(num_beams=5, num_hypotheses=5, max_length=30)
    together = translator.translate(texts, options)
    for text, batched in zip(texts, together, strict=True):
        alone = translator.translate([text], options)[0]
        assert [h.text for h in alone] == [h.text for h in batched]
        np.testing.assert_allclose([h.score for h in alone], [h.score for h in batched], atol=1e-5)


def test_merged_decoder_gives_the_same_results(translator, marian_repository):
    merged = load_translator(marian_repository, "merged")
    assert merged.graphs.merged and not translator.graphs.merged
    texts = mixed_length_texts(10, 7)
    options = TranslateOptions(num_beams=4, num_hypotheses=4, max_length=25)
    for a, b in zip(translator.translate(texts, options), merged.translate(texts, options), strict=True):
        assert [h.text for h in a] == [h.text for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_teacher_forced_logits_match(translator, reference):
    model, tokenizer = reference
    texts = mixed_length_texts(6, 3)
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    targets = torch.randint(
        2, model.config.vocab_size - 1, (len(texts), 15), generator=torch.Generator().manual_seed(0)
    )
    start = model.config.decoder_start_token_id
    decoder_inputs = torch.cat([torch.full((len(texts), 1), start), targets[:, :-1]], dim=1)
    with torch.no_grad():
        expected = model(**inputs, decoder_input_ids=decoder_inputs).logits.numpy()
    step = MarianStepDecoder(
        translator.graphs, inputs["input_ids"].numpy(), inputs["attention_mask"].numpy(), start
    )
    logits = [step.start(1)]
    rows = np.arange(len(texts))
    for t in range(targets.shape[1] - 1):
        logits.append(step.advance(rows, targets[:, t].numpy(), None))
    np.testing.assert_allclose(np.stack(logits, axis=1), expected, atol=1e-4)


def test_tokenizer_matches_marian_tokenizer(translator, reference):
    tokenizer = reference[1]
    texts = [
        *mixed_length_texts(40, 11),
        "",
        "Hello, world!",
        "混合 English 文本",
        "🐶🐱 emoji",
        "。，！？",
        "  空格  ",
        "数字123和字母abc",
    ]
    for text in texts:
        assert translator.tokenizer.encode(text) == tokenizer(text).input_ids, text
    rng = np.random.default_rng(0)
    for _ in range(200):
        ids = rng.integers(0, tokenizer.vocab_size + 3, size=rng.integers(0, 20)).tolist()
        ids = [i if i < tokenizer.vocab_size else tokenizer.pad_token_id for i in ids]
        assert translator.tokenizer.decode(ids) == tokenizer.decode(ids, skip_special_tokens=True), ids


def test_long_sources_are_cut_to_the_model_maximum(translator):
    encoded = translator.tokenizer.encode("雪地" * 2000)
    assert (
        len(encoded) == translator.tokenizer.max_source_tokens and encoded[-1] == translator.tokenizer.eos_id
    )
