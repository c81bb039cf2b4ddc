"""Which operation each request performs: named operations drawn by weight from a seeded generator."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

ENCODE_IMAGES = "encode_images"
ENCODE_TEXTS = "encode_texts"
COMPARE = "compare"
CLASSIFY = "classify"
TRANSLATE = "translate"
OPERATIONS = (ENCODE_IMAGES, ENCODE_TEXTS, COMPARE, CLASSIFY, TRANSLATE)


@dataclass(frozen=True)
class OperationMix:
    """Relative weights of the operations; an operation left out (or weighted 0) is never sent."""

    weights: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        names = [name for name, _ in self.weights]
        unknown = sorted(set(names) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; choose from {list(OPERATIONS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"an operation is named twice in the mix: {names}")
        if any(weight < 0 for _, weight in self.weights):
            raise ValueError("mix weights must not be negative")
        if sum(weight for _, weight in self.weights) <= 0:
            raise ValueError("the mix needs at least one operation with a positive weight")

    @classmethod
    def parse(cls, text: str) -> OperationMix:
        """`encode_images=2,compare=1`; a bare name counts as weight 1."""
        weights = []
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            name, _, weight = part.partition("=")
            try:
                weights.append((name.strip(), float(weight) if weight else 1.0))
            except ValueError:
                raise ValueError(f"mix entry {part!r}: the weight must be a number") from None
        return cls(tuple(weights))

    @cached_property
    def operations(self) -> tuple[str, ...]:
        """Operations with a positive weight, in the order given."""
        return tuple(name for name, weight in self.weights if weight > 0)

    @cached_property
    def _positive_weights(self) -> tuple[float, ...]:
        return tuple(weight for _, weight in self.weights if weight > 0)

    def probabilities(self) -> dict[str, float]:
        total = sum(weight for _, weight in self.weights)
        return {name: weight / total for name, weight in self.weights if weight > 0}

    def choose(self, rng: random.Random) -> str:
        return rng.choices(self.operations, weights=self._positive_weights)[0]

    def __str__(self) -> str:
        return ",".join(f"{name}={weight:g}" for name, weight in self.weights)


DEFAULT_MIX = OperationMix.parse("encode_images=2,encode_texts=2,compare=1,classify=1,translate=1")
