"""p2: text embedding throughput of real-length captions through the server vs padding every text to 77.

The baseline is what a naive CLIP deployment does: tokenise, pad every caption to the 77-token context,
run the text tower at its best batch size. The server batches requests and pads a batch only to its
longest caption, so with captions of 5 to 20 words it should do several times less work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.data import english_captions
from bench.figures import Figure
from bench.isolation import progress
from bench.measure import BatchSweep, LoadResult, sweep_batches
from bench.serving import encode_load
from bench.settings import BenchSettings
from tools.bench_models import TEXT, BenchModels

DISTINCT_CAPTIONS = 1024


def served(address: str, settings: BenchSettings, say: Callable[[str], None]) -> LoadResult:
    captions = english_captions(DISTINCT_CAPTIONS)
    per_request = settings.texts_per_request

    def texts(call: int) -> list[str]:
        start = (call * per_request) % len(captions)
        return [captions[(start + k) % len(captions)] for k in range(per_request)]

    return encode_load(address, settings, texts, per_request, "captions", say)


def padded_tokens(
    tokenizer_file: Path, texts: list[str], context: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """input_ids and attention_mask [N, context] and the mean real length in tokens."""
    from tokenizers import Tokenizer

    encoded = [e.ids for e in Tokenizer.from_file(str(tokenizer_file)).encode_batch(texts)]
    end_of_text = encoded[0][-1]
    ids = np.full((len(texts), context), end_of_text, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(encoded):
        tokens = [*tokens[: context - 1], end_of_text] if len(tokens) > context else tokens
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask, float(np.mean([min(len(t), context) for t in encoded]))


def ort_padded_sweep(models: BenchModels, settings: BenchSettings, section: str) -> tuple[BatchSweep, float]:
    import onnxruntime as ort

    say = progress(section)

    text_dir = models.repository / TEXT / "1"
    session = ort.InferenceSession(str(text_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    context = int(session.get_modelmeta().custom_metadata_map.get("context_length", 77))
    # The same caption set the server gets; its mean length is reported, the padding ignores it.
    captions = english_captions(DISTINCT_CAPTIONS)
    ids, mask, mean_tokens = padded_tokens(text_dir / "tokenizer.json", captions, context)

    def make_run(batch: int):
        feed = {"input_ids": ids[:batch], "attention_mask": mask[:batch]}
        return lambda: session.run(None, feed)

    say(f"onnxruntime in process, captions of {mean_tokens:.1f} tokens on average padded to {ids.shape[1]}:")
    sweep = sweep_batches(
        make_run, settings.text_batches, settings.sweep_seconds, lambda s: say(f"  ort {s}")
    )
    return sweep, mean_tokens


def figures(
    server: LoadResult, padded: BatchSweep, mean_tokens: float, settings: BenchSettings
) -> list[Figure]:
    raw = {
        "server": server.as_dict("captions"),
        "captions_per_request": settings.texts_per_request,
        "onnxruntime_padded_to_context": padded.as_dict("captions"),
        "mean_caption_tokens": mean_tokens,
    }
    return [Figure("p2_text_vs_padded", server.items_per_s / padded.best, raw)]
