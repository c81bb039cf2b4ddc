"""The `clip` pipeline: routes items to the image and text towers and puts the embeddings back in order.

A pipeline config names its parts (`vision_model`, `text_model`). The two towers of one CLIP are only
comparable when they come from the same checkpoint, so a pipeline version is a version that is ready in
both towers; version 0 picks the newest such version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from server.config import Limits
from server.errors import InvalidInput, LimitExceeded, ModelLoadError, ModelNotFound, ModelNotReady
from server.images.decode import ImageDecodeError, ImageTooLarge, decode_image
from server.inputs import ImageInput, Input, TextOutcome
from server.models.clip_text import ClipTextModel
from server.models.clip_vision import ClipVisionModel
from server.repository.model_config import parameter
from server.repository.repository import ModelRepository
from server.text.language import detect_language

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipPipeline:
    name: str
    vision: ClipVisionModel
    text: ClipTextModel

    @property
    def logit_scale(self) -> float:
        return self.text.logit_scale

    @property
    def models(self) -> list[tuple[str, int]]:
        return [(self.vision.name, self.vision.version), (self.text.name, self.text.version)]

    def embed(
        self, named_inputs: list[tuple[str, Input]], limits: Limits
    ) -> tuple[np.ndarray, list[TextOutcome]]:
        """Embeds (name, input) pairs, in order; `name` (e.g. "items[3]") is what errors call the item."""
        image_rows, pixels, text_rows, outcomes = [], [], [], []
        for row, (item_name, item) in enumerate(named_inputs):
            if isinstance(item, ImageInput):
                pixels.append(self.vision.preprocess(self._decode(item_name, item.data, limits)))
                image_rows.append(row)
            else:
                outcomes.append(self._text_outcome(item_name, item.text, limits))
                text_rows.append(row)
        dim = None
        parts = []
        if pixels:
            parts.append((image_rows, self.vision.embed(np.stack(pixels))))
        if outcomes:
            parts.append((text_rows, self.text.embed([o.encoded_text for o in outcomes])))
        for _, vectors in parts:
            if dim is not None and vectors.shape[1] != dim:
                raise ModelLoadError(f"pipeline '{self.name}': image and text embeddings differ in size")
            dim = vectors.shape[1]
        embeddings = np.empty((len(named_inputs), dim), dtype=np.float32)
        for rows, vectors in parts:
            embeddings[rows] = vectors
        return embeddings, outcomes

    @staticmethod
    def _decode(item_name: str, data: bytes, limits: Limits):
        if len(data) > limits.max_image_bytes:
            raise LimitExceeded(
                f"{item_name}: image is {len(data)} bytes; the limit is {limits.max_image_bytes}"
            )
        try:
            return decode_image(data, limits.max_image_pixels)
        except ImageTooLarge as error:
            raise LimitExceeded(f"{item_name}: {error}") from error
        except ImageDecodeError as error:
            raise InvalidInput(f"{item_name}: {error}") from error

    @staticmethod
    def _text_outcome(item_name: str, text: str, limits: Limits) -> TextOutcome:
        if len(text) > limits.max_text_chars:
            raise LimitExceeded(
                f"{item_name}: text has {len(text)} characters; the limit is {limits.max_text_chars}"
            )
        return TextOutcome(text=text, language=detect_language(text), encoded_text=text)


def resolve_pipeline(repository: ModelRepository, name: str, version: int) -> ClipPipeline:
    config = repository.pipeline_config(name)
    vision_name = parameter(config, "vision_model")
    text_name = parameter(config, "text_model")
    if not vision_name or not text_name:
        raise ModelNotReady(f"pipeline '{name}': config.pbtxt must name vision_model and text_model")
    common = sorted(set(repository.ready_versions(vision_name)) & set(repository.ready_versions(text_name)))
    if version == 0:
        if not common:
            raise ModelNotReady(
                f"pipeline '{name}': no version is ready in both {vision_name} and {text_name}"
            )
        version = common[-1]
    elif version not in common:
        raise ModelNotFound(
            f"pipeline '{name}' has no version {version} ready in both {vision_name} and {text_name} "
            f"(ready: {common})"
        )
    vision = repository.model(vision_name, version)
    text = repository.model(text_name, version)
    if not isinstance(vision, ClipVisionModel) or not isinstance(text, ClipTextModel):
        raise ModelNotReady(f"pipeline '{name}': {vision_name} must be clip_vision and {text_name} clip_text")
    return ClipPipeline(name, vision, text)
