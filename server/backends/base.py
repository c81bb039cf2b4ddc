"""The contract every backend implements, whatever runs it (ONNX Runtime, OpenVINO, a test's NumPy).

A backend is one loaded version of one model kind. It declares:
  - its capabilities: what a pipeline may ask of it (embed images, embed texts, translate); pipelines
    compose backends by capability, never by class;
  - its signature: named, typed tensors in and out, which protocols render (KServe metadata, config);
  - warm-up, close, and `failed`: a reason once an unrecoverable error (a lost GPU, a broken session)
    means the version must not be chosen again; the repository then reports it UNAVAILABLE.
Work is queued, never waited for: every submit_* and infer returns a Pending (server/core/pending.py).
Backends are synchronous and do no I/O after loading; their batchers run them on worker threads.

Adding a model kind: one module with a class implementing Backend (and the capability methods it
declares), and one line in server/backends/registry.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from server.core.errors import InvalidInput
from server.core.pending import Pending

if TYPE_CHECKING:  # only for annotations: backends import no PIL or protocol at run time here
    from PIL import Image

    from server.batching.batcher import DynamicBatcher
    from server.core.types import Hypothesis, TranslateOptions


class Capability(StrEnum):
    EMBED_IMAGES = "embed_images"  # ImageEmbedder
    EMBED_TEXTS = "embed_texts"  # TextEmbedder
    TRANSLATE = "translate"  # Translator


DATATYPES = ("FP32", "INT64", "BYTES")


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor; -1 in `shape` is any size (the first dimension is the batch)."""

    name: str
    datatype: str  # FP32 | INT64 | BYTES (KServe names)
    shape: tuple[int, ...]
    optional: bool = False  # an input a request may leave out

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"tensor {self.name}: datatype must be one of {DATATYPES}, got {self.datatype}")

    def check_shape(self, array: np.ndarray) -> None:
        """Raises InvalidInput unless `array` has this rank and every fixed dimension."""
        if array.ndim != len(self.shape) or any(
            want not in (-1, got) for want, got in zip(self.shape, array.shape, strict=True)
        ):
            raise InvalidInput(
                f"input '{self.name}' must have shape {list(self.shape)}, got {list(array.shape)}"
            )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: tuple[str, ...] = ()  # request parameters it reads (e.g. num_beams)


class Backend(ABC):
    """One loaded version of a model. Subclasses set `model_type` and `capabilities`."""

    model_type: ClassVar[str]
    platform: ClassVar[str] = ""  # what runs it, as config.pbtxt and KServe name it (onnxruntime_onnx)
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    name: str
    version: int
    batcher: DynamicBatcher
    failed: str | None = None  # set by mark_failed: the version serves no more

    @property
    @abstractmethod
    def provider(self) -> str:
        """What runs it, e.g. "CPU" or "CUDA:0"."""

    @abstractmethod
    def signature(self) -> Signature:
        """The tensors it takes and gives, as protocols show them."""

    def infer(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]) -> Pending:
        """Runs on named tensors of its signature; the Pending gives {output name: array}. Validation
        errors (InvalidInput naming the tensor) are raised here, before anything is queued. Backends whose
        inputs need the engine's preparation (translators: language and text checks) leave this out."""
        raise NotImplementedError(f"model '{self.name}' ({self.model_type}) runs only through the engine")

    @abstractmethod
    def warmup(self) -> None:
        """Runs a small request so that the first real one is not slow; raises if the model cannot run."""

    @abstractmethod
    def close(self) -> None:
        """Finishes queued work and stops the batcher's threads; the version serves no more."""

    def mark_failed(self, reason: str) -> None:
        """After an unrecoverable error: the repository takes the version out of selection (UNAVAILABLE)."""
        if self.failed is None:
            self.failed = reason

    def unrecoverable(self, error: BaseException) -> str | None:
        """Why an error of a run means the version can never run again; None for errors of one batch
        (bad input, a cancelled run). Backends whose runtime reports such failures override it."""
        return None

    def guarded(self, run_batch: Callable[[Sequence], Sequence]) -> Callable[[Sequence], Sequence]:
        """`run_batch` as the batcher should call it: an unrecoverable error marks the version failed
        (and still fails the batch it happened in)."""

        def run(items: Sequence) -> Sequence:
            try:
                return run_batch(items)
            except Exception as error:
                reason = self.unrecoverable(error)
                if reason is not None:
                    self.mark_failed(reason)
                raise

        return run


class ImageEmbedder(Protocol):
    """Capability EMBED_IMAGES: decoded images -> L2-normalised vectors."""

    embedding_dim: int
    logit_scale: float

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """An RGB image -> what submit_images takes for it (runs on the caller's worker thread)."""

    def preprocess_bytes(self, width: int, height: int) -> int:
        """Working memory preprocessing an image of this size takes, beyond the decoded image."""

    def submit_images(self, pixels: Sequence[np.ndarray]) -> Pending[np.ndarray]:
        """Queues preprocessed images; the answer is [N, D]."""


class TextEmbedder(Protocol):
    """Capability EMBED_TEXTS: texts -> L2-normalised vectors."""

    embedding_dim: int
    logit_scale: float

    def submit_texts(self, texts: Sequence[str]) -> Pending[np.ndarray]:
        """Tokenises (on the caller's thread) and queues; the answer is [N, D]."""


class Translator(Protocol):
    """Capability TRANSLATE: texts -> n-best translations."""

    def check_options(self, options: TranslateOptions) -> None:
        """Raises InvalidInput naming a bad option, before any text is prepared."""

    def submit_translations(
        self, texts: Sequence[str], options: TranslateOptions
    ) -> Pending[list[list[Hypothesis]]]:
        """Queues the texts; the answer is the n-best per text, best first."""


def queued(
    batcher: DynamicBatcher,
    items: Sequence[object],
    finish: Callable[[list], object] | None = None,
    group: Hashable = None,
) -> Pending:
    """Submits `items` to `batcher`; the Pending withdraws them from that batcher when nobody waits."""
    future = batcher.submit(items, group)
    if finish is None:
        return Pending(future, withdraw=lambda: batcher.withdraw(future))
    return Pending(future, finish, lambda: batcher.withdraw(future))


def has(backend: object, capability: Capability) -> bool:
    return capability in getattr(backend, "capabilities", frozenset())
