"""What every ONNX-backed model version shares: its identity, session, settings from config and metadata."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from server.backends.base import Backend
from server.backends.onnx.failures import unrecoverable
from server.backends.onnx.session import LoadedSession, SessionFactory
from server.backends.source import ModelSource
from server.core.errors import ModelLoadError
from server.repository.model_config import ONNX_PLATFORM

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 32  # items per run when config.pbtxt gives no max_batch_size
# ONNX metadata keys: the exporter writes the checkpoint's name, tools.quantize what a variant is and
# the model/version it was made from.
SOURCE_KEY, VARIANT_KEY, VARIANT_OF_MODEL_KEY = "source", "variant", "variant_of_model"
FP32 = "fp32"


@dataclass(frozen=True)
class CheckpointIdentity:
    """Where a model's weights came from: the checkpoint ("" when the files do not say) and the variant
    of it (an int8 file of a checkpoint is still that checkpoint, within the variant's bound)."""

    checkpoint: str = ""
    variant: str = FP32
    variant_of_model: str = ""  # "clip_vision/1": what the variant was made from ("" for fp32)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> CheckpointIdentity:
        return cls(
            metadata.get(SOURCE_KEY, ""),
            metadata.get(VARIANT_KEY) or FP32,
            metadata.get(VARIANT_OF_MODEL_KEY, ""),
        )


class OnnxModel(Backend):
    """One loaded version of an ONNX model (one graph; its output is the first graph output)."""

    platform = ONNX_PLATFORM

    def unrecoverable(self, error: BaseException) -> str | None:
        return unrecoverable(error)

    def __init__(self, source: ModelSource, loaded: LoadedSession) -> None:
        self.name = source.name
        self.version = source.version
        self.spec = source.spec
        self.loaded = loaded
        self.session = loaded.session
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        self.embedding_dim = self._embedding_dim()  # known after close too: a closed model refuses work
        self._identity = CheckpointIdentity.from_metadata(loaded.metadata)  # known after close too
        if self._identity.variant != FP32:
            log.info(
                "%s v%d: %s variant of %s (made from %s)",
                self.name,
                self.version,
                self._identity.variant,
                self._identity.checkpoint or "an unnamed checkpoint",
                self._identity.variant_of_model or "an unnamed model",
            )

    @staticmethod
    def open_session(source: ModelSource, factory: SessionFactory) -> LoadedSession:
        filename = source.spec.default_model_filename or "model.onnx"
        return factory.create(source.directory / filename, source.spec)

    def _embedding_dim(self) -> int:
        """Size of the output vectors: the graph's static output shape, else the exporter's metadata."""
        size = self.session.get_outputs()[0].shape[-1]
        return size if isinstance(size, int) else int(self.float_setting("embedding_dim"))

    @property
    def provider(self) -> str:
        return self.loaded.provider

    @property
    def checkpoint_identity(self) -> CheckpointIdentity:
        """The checkpoint its ONNX metadata names, and which variant of it this file is."""
        return self._identity

    def setting(self, key: str) -> str | None:
        """A model fact: config.pbtxt `parameters` win over the ONNX metadata the exporter wrote."""
        return self.spec.parameters.get(key, self.loaded.metadata.get(key))

    def float_setting(self, key: str) -> float:
        value = self.setting(key)
        if value is None:
            raise ModelLoadError(
                f"model '{self.name}' version {self.version}: '{key}' is neither in the ONNX metadata "
                "nor in config.pbtxt parameters"
            )
        try:
            return float(value)
        except ValueError as error:
            raise ModelLoadError(f"model '{self.name}': '{key}' is not a number: {value!r}") from error


def stacked(outputs: list[np.ndarray], dim: int) -> np.ndarray:
    """A batcher's per-item vectors as one [N, D] array (N may be 0)."""
    return np.stack(outputs) if outputs else np.zeros((0, dim), dtype=np.float32)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
