"""The CLIP image tower: decoded image -> preprocessed pixels -> L2-normalised embedding."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np
from PIL import Image

from server.backends.clip.preprocessing import ImagePreprocessor
from server.backends.onnx.model import DEFAULT_MAX_BATCH, ModelSource, OnnxModel, l2_normalise
from server.backends.onnx.session import SessionFactory
from server.batching.batcher import DynamicBatcher


class ClipVisionModel(OnnxModel):
    model_type = "clip_vision"

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        super().__init__(source, self.open_session(source, factory))
        self.preprocessor = ImagePreprocessor.from_file(source.directory / "preprocessor_config.json")
        self.logit_scale = self.float_setting("logit_scale")
        self.pixels_input = self.input_names[0]
        settings = source.batch_settings(DEFAULT_MAX_BATCH)
        self.batcher = DynamicBatcher(f"{self.name}/{self.version}", self._run, settings)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 [3, H, W]."""
        return self.preprocessor(image)

    def submit(self, pixels: Sequence[np.ndarray]) -> Future:
        """Queues preprocessed images ([3, H, W] each); the future gives one embedding [D] per image."""
        return self.batcher.submit(list(pixels))

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """[N, 3, H, W] -> [N, D], L2-normalised, through the batcher."""
        return np.stack(self.batcher.run(list(pixels)))

    def _run(self, pixels: Sequence[np.ndarray]) -> list[np.ndarray]:
        embeds = self.session.run([self.output_name], {self.pixels_input: np.stack(pixels)})[0]
        return list(l2_normalise(embeds))

    def warmup(self) -> None:
        height, width = self.preprocessor.output_size
        grey = Image.new("RGB", (width, height), (128, 128, 128))
        self.embed(np.stack([self.preprocess(grey)] * 2))

    def close(self) -> None:
        self.batcher.stop()
        # Frees the ONNX Runtime session (GPU memory) now, not at some later garbage collection.
        self.session = self.loaded = None
