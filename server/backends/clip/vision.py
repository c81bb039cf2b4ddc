"""The CLIP image tower: decoded image -> preprocessed pixels -> L2-normalised embedding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from server.backends.base import Capability, Signature, TensorSpec, queued
from server.backends.clip.preprocessing import ImagePreprocessor
from server.backends.onnx.model import DEFAULT_MAX_BATCH, OnnxModel, l2_normalise, stacked
from server.backends.onnx.session import SessionFactory
from server.backends.source import ModelSource
from server.batching.batcher import DynamicBatcher
from server.core.errors import InvalidInput, ModelLoadError
from server.core.pending import Pending
from server.images.reduced_decode import DECODE_PATHS, EXACT, EXACT_DECODE, FAST, ImageDecoding

# Config parameter choosing how JPEGs are decoded: "fast" (reduced DCT-domain decode) or "exact".
IMAGE_DECODE_PARAMETER = "image_decode"


class ClipVisionModel(OnnxModel):
    model_type = "clip_vision"
    capabilities = frozenset({Capability.EMBED_IMAGES})

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        super().__init__(source, self.open_session(source, factory))
        self.preprocessor = ImagePreprocessor.from_file(source.directory / "preprocessor_config.json")
        self.image_decoding = image_decoding(source, self.preprocessor)
        self.logit_scale = self.float_setting("logit_scale")
        self.pixels_input = self.input_names[0]
        settings = source.batch_settings(DEFAULT_MAX_BATCH)
        self.batcher = DynamicBatcher(f"{self.name}/{self.version}", self.guarded(self._run), settings)

    def signature(self) -> Signature:
        height, width = self.preprocessor.output_size
        return Signature(
            inputs=(TensorSpec(self.pixels_input, "FP32", (-1, 3, height, width)),),
            outputs=(TensorSpec(self.output_name, "FP32", (-1, self.embedding_dim)),),
        )

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 [3, H, W]."""
        return self.preprocessor(image)

    def preprocess_bytes(self, width: int, height: int) -> int:
        return self.preprocessor.working_bytes(width, height)

    def submit_images(self, pixels: Sequence[np.ndarray]) -> Pending[np.ndarray]:
        """Queues preprocessed images ([3, H, W] each); the answer is [N, D]."""
        dim = self.embedding_dim
        return queued(self.batcher, list(pixels), lambda outputs: stacked(outputs, dim))

    def infer(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]) -> Pending:
        pixels = inputs[self.pixels_input]
        self.signature().inputs[0].check_shape(pixels)
        _check_finite(pixels, self.pixels_input)
        output = self.output_name
        return self.submit_images(list(pixels.astype(np.float32))).then(lambda embeds: {output: embeds})

    def _run(self, pixels: Sequence[np.ndarray]) -> list[np.ndarray]:
        embeds = self.session.run([self.output_name], {self.pixels_input: np.stack(pixels)})[0]
        return list(l2_normalise(embeds))

    def warmup(self) -> None:
        height, width = self.preprocessor.output_size
        grey = Image.new("RGB", (width, height), (128, 128, 128))
        self.submit_images([self.preprocess(grey)] * 2).result()

    def close(self) -> None:
        self.batcher.stop()
        # Frees the ONNX Runtime session (GPU memory) now, not at some later garbage collection.
        self.session = self.loaded = None


def image_decoding(source: ModelSource, preprocessor: ImagePreprocessor) -> ImageDecoding:
    path = source.spec.parameters.get(IMAGE_DECODE_PARAMETER, FAST)
    if path not in DECODE_PATHS:
        raise ModelLoadError(
            f"model '{source.name}' version {source.version}: parameter '{IMAGE_DECODE_PARAMETER}' is "
            f"{path!r}; allowed values: {', '.join(DECODE_PATHS)}"
        )
    return EXACT_DECODE if path == EXACT else ImageDecoding(preprocessor.decode_floor)


def _check_finite(array: np.ndarray, name: str) -> None:
    """NaN or infinite pixels would come back as NaN embeddings with an OK status."""
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise InvalidInput(f"input '{name}': row {row} holds NaN or infinite values; pixels must be finite")
