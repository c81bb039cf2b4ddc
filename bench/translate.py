"""p3: latency of our NumPy beam search over ONNX Runtime vs CTranslate2 and transformers generate().

Every engine decodes 5 beams, returns 5 hypotheses and is held to exactly 20 generated tokens (the
bench Marian's generation_config.json pins min_length = max_length = 21 counting the start token;
CTranslate2 gets min/max_decoding_length 20), so all of them run 20 decoder steps on the same inputs.
The lengths are checked, not assumed. Engines run one after another, each after an untimed call.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

from bench.data import chinese_sentences
from bench.figures import Figure
from bench.isolation import progress
from bench.measure import latencies, summarise
from bench.serving import close_in_process
from bench.settings import BenchSettings
from tools.bench_models import BENCH_BEAMS, FORCED_DECODER_LENGTH, TRANSLATOR, BenchModels

GENERATED_TOKENS = FORCED_DECODER_LENGTH - 1
BATCHES = (1, 8)


@dataclass(frozen=True)
class Timed:
    seconds: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1e3


def check_length(engine: str, lengths: list[int]) -> None:
    if any(length != GENERATED_TOKENS for length in lengths):
        raise RuntimeError(f"{engine} generated {sorted(set(lengths))} tokens, not {GENERATED_TOKENS}")


def ours(models: BenchModels, settings: BenchSettings, section: str) -> dict[int, Timed]:
    from server.backends.onnx.session import SessionFactory
    from server.core.types import TranslateOptions
    from server.repository.repository import ModelRepository

    say = progress(section)
    repository = ModelRepository(models.repository, SessionFactory())
    repository.load_model(TRANSLATOR)
    model = repository.model(TRANSLATOR, 0)
    try:
        options = TranslateOptions(num_beams=BENCH_BEAMS, num_hypotheses=BENCH_BEAMS, length_penalty=1.0)
        check_length("our beam search", our_lengths(model, options))
        timed = {}
        for batch in BATCHES:
            texts = chinese_sentences(batch)
            run = lambda t=texts: model.translate(t, options)  # noqa: E731
            timed[batch] = Timed(latencies(run, settings.translate_repeats))
            say(f"ours  batch {batch}: median {timed[batch].median_ms:8.1f} ms")
        return timed
    finally:
        close_in_process(repository)


def our_lengths(model, options) -> list[int]:
    """Generated lengths from the served API alone, which gives texts and scores but no tokens: the score
    is sum_logprobs / length ** length_penalty, so two penalties (same hypotheses, as every one has the
    same forced length) differ exactly by a factor of the length."""
    from dataclasses import replace

    texts = chinese_sentences(max(BATCHES))
    plain = model.translate(texts, options)
    squared = model.translate(texts, replace(options, length_penalty=2.0))
    return [
        round(a.score / b.score)
        for row_a, row_b in zip(plain, squared, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    ]


def source_tokens(models: BenchModels, texts: list[str]) -> list[list[str]]:
    """The Marian source pieces (with `</s>`), as CTranslate2 takes them, from the checkpoint's tokenizer."""
    from transformers import MarianTokenizer

    tokenizer = MarianTokenizer.from_pretrained(models.hf_marian)
    return [tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids) for text in texts]


def ctranslate2(models: BenchModels, settings: BenchSettings, section: str) -> dict[int, Timed]:
    import ctranslate2 as ct2

    say = progress(section)

    translator = ct2.Translator(
        str(models.ct2_marian),
        device="cpu",
        compute_type="float32",
        inter_threads=1,
        intra_threads=os.cpu_count() or 1,
    )
    options = {
        "beam_size": BENCH_BEAMS,
        "num_hypotheses": BENCH_BEAMS,
        "return_scores": True,
        "min_decoding_length": GENERATED_TOKENS,
        "max_decoding_length": GENERATED_TOKENS,
    }
    results = translator.translate_batch(source_tokens(models, chinese_sentences(max(BATCHES))), **options)
    check_length("CTranslate2", [len(h) for r in results for h in r.hypotheses])
    timed = {}
    for batch in BATCHES:
        tokens = source_tokens(models, chinese_sentences(batch))
        run = lambda t=tokens: translator.translate_batch(t, **options)  # noqa: E731
        timed[batch] = Timed(latencies(run, settings.translate_repeats))
        say(f"ct2   batch {batch}: median {timed[batch].median_ms:8.1f} ms")
    return timed


def transformers_generate(models: BenchModels, settings: BenchSettings, section: str) -> Timed:
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    say = progress(section)

    tokenizer = MarianTokenizer.from_pretrained(models.hf_marian)
    model = MarianMTModel.from_pretrained(models.hf_marian).eval()
    inputs = tokenizer(chinese_sentences(1), return_tensors="pt")

    def run():
        with torch.no_grad():
            return model.generate(
                **inputs,
                num_beams=BENCH_BEAMS,
                num_return_sequences=BENCH_BEAMS,
                min_length=FORCED_DECODER_LENGTH,
                max_length=FORCED_DECODER_LENGTH,
            )

    sequences = run()
    # The start token is part of the sequences; the last generated token is the forced </s>.
    check_length("transformers generate()", [len(s) - 1 for s in sequences.tolist()])
    timed = Timed(latencies(run, settings.translate_repeats))
    say(f"hf    batch 1: median {timed.median_ms:8.1f} ms")
    return timed


def figures(our: dict[int, Timed], ct2: dict[int, Timed], hf: Timed) -> list[Figure]:
    def raw(batch: int) -> dict:
        return {
            "sentences": batch,
            "beams": BENCH_BEAMS,
            "hypotheses": BENCH_BEAMS,
            "generated_tokens": GENERATED_TOKENS,
            "ours": summarise(our[batch].seconds),
            "ctranslate2_fp32": summarise(ct2[batch].seconds),
        }

    return [
        Figure("p3_translate_vs_ct2_b1", our[1].median_ms / ct2[1].median_ms, raw(1)),
        Figure("p3_translate_vs_ct2_b8", our[8].median_ms / ct2[8].median_ms, raw(8)),
        Figure(
            "p3_hf_speedup",
            hf.median_ms / our[1].median_ms,
            {
                "sentences": 1,
                "generated_tokens": GENERATED_TOKENS,
                "transformers_generate": summarise(hf.seconds),
                "ours": summarise(our[1].seconds),
            },
        ),
    ]
