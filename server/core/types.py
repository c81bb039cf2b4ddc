"""Engine-level request inputs and results, free of protobuf so the engine runs without a network."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ImageInput:
    data: bytes


@dataclass(frozen=True)
class TextInput:
    text: str


Input = ImageInput | TextInput


@dataclass(frozen=True)
class ModelRef:
    name: str = ""  # "" = the default pipeline
    version: int = 0  # 0 = newest version ready


@dataclass(frozen=True)
class Hypothesis:
    text: str
    score: float


@dataclass(frozen=True)
class TextOutcome:
    """What happened to one input text on its way to the CLIP text tower."""

    text: str
    language: str
    encoded_text: str
    tokens: tuple[str, ...] = ()
    translations: tuple[Hypothesis, ...] = ()


@dataclass(frozen=True)
class EncodeResult:
    embeddings: np.ndarray  # [N, D], L2-normalised, in item order
    texts: list[TextOutcome]
    models: list[tuple[str, int]]


@dataclass(frozen=True)
class CompareResult:
    similarity: np.ndarray  # [Q, C] cosine
    probabilities: np.ndarray  # [Q, C] softmax per row of logit_scale * cosine
    logit_scale: float
    texts: list[TextOutcome]
    models: list[tuple[str, int]]


@dataclass(frozen=True)
class LabelScore:
    index: int
    label: str
    probability: float
    similarity: float


@dataclass(frozen=True)
class TranslateResult:
    texts: list[TextOutcome]
    models: list[tuple[str, int]]


@dataclass(frozen=True)
class ClassifyResult:
    results: list[list[LabelScore]]  # per item, best first
    labels: list[TextOutcome]
    models: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class TranslateOptions:
    """A request's choices; 0 means the model's default (n-best: 5, like the reference example)."""

    num_beams: int = 0
    num_hypotheses: int = 0
    max_length: int = 0
    length_penalty: float = 0.0
    early_stopping: bool | str | None = None  # None: the model's setting
