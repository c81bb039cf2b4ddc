"""The benchmark's figures of merit: one key each, its target, and the raw numbers it came from.

A key without a target (goal REPORT) is recorded as measured: it says how fast something is, not whether
a goal was reached."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

AT_LEAST, AT_MOST, REPORT = ">=", "<=", "report"


@dataclass(frozen=True)
class Target:
    value: float | None  # None with goal REPORT
    goal: str  # AT_LEAST, AT_MOST or REPORT
    unit: str  # "x" for ratios, "ms" for latencies, "img/s" for throughput
    meaning: str

    def __post_init__(self) -> None:
        if (self.goal == REPORT) != (self.value is None):
            raise ValueError("a target has a value unless its goal is REPORT")

    @property
    def has_target(self) -> bool:
        return self.goal != REPORT


TARGETS = {
    "p1_image_vs_ort": Target(
        0.9, AT_LEAST, "x", "images/s through gRPC ÷ in-process ONNX Runtime at its best batch size"
    ),
    "p1_image_vs_torch": Target(
        1.3, AT_LEAST, "x", "images/s through gRPC ÷ transformers get_image_features at its best batch size"
    ),
    "p2_text_vs_padded": Target(
        3.0, AT_LEAST, "x", "captions/s through gRPC ÷ ONNX Runtime with every caption padded to 77"
    ),
    "p3_translate_vs_ct2_b1": Target(
        1.0, AT_MOST, "x", "our beam search latency ÷ CTranslate2, 1 sentence, 5 beams, 20 tokens"
    ),
    "p3_translate_vs_ct2_b8": Target(
        1.0, AT_MOST, "x", "our beam search latency ÷ CTranslate2, 8 sentences, 5 beams, 20 tokens"
    ),
    "p3_hf_speedup": Target(
        2.0, AT_LEAST, "x", "transformers generate() latency ÷ our beam search, 1 sentence"
    ),
    "p4_overhead_ms": Target(
        1.0, AT_MOST, "ms", "p50 of Compare over loopback gRPC minus p50 of the in-process engine"
    ),
    "p5_index_images_per_s": Target(
        None,
        REPORT,
        "img/s",
        "JPEG images indexed per second: Index calls of 32 images one after another, as `crossmodal index` "
        "sends them (demo models, Milvus Lite)",
    ),
    "p5_search_p50_ms": Target(
        None,
        REPORT,
        "ms",
        "p50 of Search (English text query, top 10) over a collection of 10,000 vectors (500 with --tiny), "
        "demo models, Milvus Lite",
    ),
    "p6_preprocess_12mp_speedup": Target(
        3.0,
        AT_LEAST,
        "x",
        "decode + preprocess ms per 4032x3024 photo, exact path ÷ fast path (one thread; the embeddings' "
        "cosine beside it)",
    ),
    "p6_photo_1080p_vs_transformers": Target(
        1.6,
        AT_LEAST,
        "x",
        "1920x1080 photos/s through gRPC (concurrency 32) ÷ transformers CLIPImageProcessor + "
        "get_image_features on the same JPEGs at its best batch",
    ),
    "p6_photo_12mp_vs_transformers": Target(
        3.5,
        AT_LEAST,
        "x",
        "4032x3024 photos/s through gRPC (concurrency 32) ÷ transformers CLIPImageProcessor + "
        "get_image_features on the same JPEGs at its best batch",
    ),
    "p6_photo_1080p_vs_ort_exact": Target(
        None,
        REPORT,
        "x",
        "1920x1080 photos/s through gRPC ÷ in-process ONNX Runtime after the server's exact preprocessing",
    ),
    "p6_photo_12mp_vs_ort_exact": Target(
        None,
        REPORT,
        "x",
        "4032x3024 photos/s through gRPC ÷ in-process ONNX Runtime after the server's exact preprocessing",
    ),
    "p6_cached_classify_speedup": Target(
        20.0,
        AT_LEAST,
        "x",
        "Classify(1 photo, 20 Chinese labels), opus-mt-size translator: first call ÷ the same call again "
        "(response cache)",
    ),
}
SECTIONS = ("p1", "p2", "p3", "p4", "p5", "p6")


@dataclass(frozen=True)
class Figure:
    key: str
    value: float
    raw: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.key not in TARGETS:
            raise ValueError(f"unknown figure {self.key!r} (known: {sorted(TARGETS)})")

    @property
    def target(self) -> Target:
        return TARGETS[self.key]

    @property
    def met(self) -> bool | None:
        """Whether the target was reached; None for a figure without a target."""
        if not self.target.has_target:
            return None
        if not math.isfinite(self.value):
            return False
        if self.target.goal == AT_LEAST:
            return self.value >= self.target.value
        return self.value <= self.target.value
