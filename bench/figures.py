"""The benchmark's figures of merit: one key each, its target, and the raw numbers it came from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

AT_LEAST, AT_MOST = ">=", "<="


@dataclass(frozen=True)
class Target:
    value: float
    goal: str  # AT_LEAST or AT_MOST
    unit: str  # "x" for ratios, "ms" for p4
    meaning: str


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
        1.5, AT_MOST, "ms", "p50 of Compare over loopback gRPC minus p50 of the in-process engine"
    ),
}
SECTIONS = ("p1", "p2", "p3", "p4")


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
    def met(self) -> bool:
        if not math.isfinite(self.value):
            return False
        if self.target.goal == AT_LEAST:
            return self.value >= self.target.value
        return self.value <= self.target.value
