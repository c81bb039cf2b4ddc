"""The CLIP image tower: decoded image -> preprocessed pixels -> L2-normalised embedding."""

from __future__ import annotations

import numpy as np
from PIL import Image

from server.images.preprocess import ImagePreprocessor
from server.models.onnx_model import ModelSource, OnnxModel, l2_normalise
from server.runtime.session import SessionFactory


class ClipVisionModel(OnnxModel):
    model_type = "clip_vision"

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        super().__init__(source, self.open_session(source, factory))
        self.preprocessor = ImagePreprocessor.from_file(source.directory / "preprocessor_config.json")
        self.logit_scale = self.float_setting("logit_scale")
        self.pixels_input = self.input_names[0]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 [3, H, W]."""
        return self.preprocessor(image)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """[N, 3, H, W] -> [N, D], L2-normalised."""
        return l2_normalise(self.run_batches({self.pixels_input: pixels}))

    def warmup(self) -> None:
        height, width = self.preprocessor.output_size
        grey = Image.new("RGB", (width, height), (128, 128, 128))
        self.embed(np.stack([self.preprocess(grey)] * 2))
