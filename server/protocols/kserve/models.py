"""What each model looks like through the KServe v2 protocol, and how a ModelInfer runs on it.

  clip_vision   pixel_values FP32 [-1,3,H,W]                      -> image_embeds FP32 [-1,D]
  clip_text     input_ids INT64 [-1,-1], attention_mask (optional) -> text_embeds FP32 [-1,D]
  marian        TEXT BYTES [-1]      (parameters num_beams, num_hypotheses, max_length, length_penalty)
                                     -> TRANSLATIONS BYTES [-1,K], SCORES FP32 [-1,K]
  pipeline      IMAGE BYTES [-1] (encoded images) and/or TEXT BYTES [-1]
                                     -> IMAGE_EMBEDS FP32 [-1,D], TEXT_EMBEDS FP32 [-1,D]
All of them run through the same engine and dynamic batchers as the crossmodal.v1 RPCs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.backends.clip.text import ClipTextModel
from server.backends.clip.vision import ClipVisionModel
from server.backends.marian.model import MarianModel
from server.core.errors import InvalidInput, ModelNotFound
from server.core.types import ImageInput, ModelRef, TextInput, TranslateOptions
from server.engine import Engine
from server.pipelines.clip import resolve_pipeline
from server.protocols.kserve.tensors import Tensor

PIPELINE_PLATFORM = "crossmodal_pipeline"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Exposed:
    """One model as the protocol sees it."""

    name: str
    platform: str
    kind: str  # clip_vision | clip_text | marian | pipeline
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


PIPELINE_INPUTS = (TensorSpec("IMAGE", "BYTES", (-1,)), TensorSpec("TEXT", "BYTES", (-1,)))


def describe(engine: Engine, name: str, version: int) -> Exposed:
    repository = engine.repository
    if repository.is_pipeline(name):
        return _pipeline_exposed(name, resolve_pipeline(repository, name, version).text.embedding_dim)
    return _model_exposed(name, repository.model(name, version))


def _pipeline_exposed(name: str, dim: int) -> Exposed:
    outputs = (TensorSpec("IMAGE_EMBEDS", "FP32", (-1, dim)), TensorSpec("TEXT_EMBEDS", "FP32", (-1, dim)))
    return Exposed(name, PIPELINE_PLATFORM, "pipeline", PIPELINE_INPUTS, outputs)


def _model_exposed(name: str, model) -> Exposed:
    if isinstance(model, ClipVisionModel):
        height, width = model.preprocessor.output_size
        pixels = TensorSpec(model.pixels_input, "FP32", (-1, 3, height, width))
        embeds = TensorSpec(model.output_name, "FP32", (-1, model.embedding_dim))
        return Exposed(name, "onnxruntime_onnx", model.model_type, (pixels,), (embeds,))
    if isinstance(model, ClipTextModel):
        ids = (TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec("attention_mask", "INT64", (-1, -1)))
        embeds = TensorSpec(model.output_name, "FP32", (-1, model.embedding_dim))
        return Exposed(name, "onnxruntime_onnx", model.model_type, ids, (embeds,))
    if isinstance(model, MarianModel):
        outputs = (TensorSpec("TRANSLATIONS", "BYTES", (-1, -1)), TensorSpec("SCORES", "FP32", (-1, -1)))
        return Exposed(
            name, "onnxruntime_onnx", model.model_type, (TensorSpec("TEXT", "BYTES", (-1,)),), outputs
        )
    raise ModelNotFound(f"model '{name}' cannot be served through the inference protocol")


async def infer(
    engine: Engine, name: str, version: int, inputs: dict[str, Tensor], parameters: dict[str, object]
) -> tuple[int, list[Tensor]]:
    """Runs one ModelInfer; returns the version that ran and every output tensor. The model is looked up
    once, so the version checked against is the version that runs."""
    repository = engine.repository
    with repository.call_scope():
        if repository.is_pipeline(name):
            _check_inputs(_pipeline_exposed(name, -1), inputs)  # inputs do not depend on the version
            return await _pipeline(engine, name, version, inputs)
        model = repository.model(name, version)
        exposed = _model_exposed(name, model)
        _check_inputs(exposed, inputs)
        if isinstance(model, MarianModel):
            return await _translate(engine, name, model.version, inputs, parameters)
        if isinstance(model, ClipVisionModel):
            pixels = inputs[model.pixels_input].data
            _check_shape(pixels, exposed.inputs[0])
            _check_finite(pixels, model.pixels_input)
            embeds = await engine.offload(model.embed, pixels.astype(np.float32))
            return model.version, [_fp32(model.output_name, embeds)]
        ids = inputs["input_ids"].data
        mask = inputs["attention_mask"].data if "attention_mask" in inputs else np.ones_like(ids)
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise InvalidInput(
                f"input_ids and attention_mask must both be [batch, tokens], got {list(ids.shape)} "
                f"and {list(mask.shape)}"
            )
        sequences = [row[keep != 0].astype(np.int64).tolist() for row, keep in zip(ids, mask, strict=True)]
        embeds = await engine.offload(model.embed_token_ids, sequences)
        return model.version, [_fp32(model.output_name, embeds)]


def _check_inputs(exposed: Exposed, inputs: dict[str, Tensor]) -> None:
    known = {spec.name: spec for spec in exposed.inputs}
    for tensor in inputs.values():
        spec = known.get(tensor.name)
        if spec is None:
            raise InvalidInput(
                f"model '{exposed.name}' has no input '{tensor.name}' (inputs: {sorted(known)})"
            )
        if tensor.datatype != spec.datatype:
            raise InvalidInput(f"input '{tensor.name}' must be {spec.datatype}, got {tensor.datatype}")
    required = {"clip_vision": 1, "clip_text": 1, "marian": 1}.get(exposed.kind, 0)
    missing = [s.name for s in exposed.inputs[:required] if s.name not in inputs]
    if missing or not inputs:
        raise InvalidInput(
            f"model '{exposed.name}': missing input {missing or [s.name for s in exposed.inputs]}"
        )


def _check_shape(array: np.ndarray, spec: TensorSpec) -> None:
    if array.ndim != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
    ):
        raise InvalidInput(f"input '{spec.name}' must have shape {list(spec.shape)}, got {list(array.shape)}")


def _check_finite(array: np.ndarray, name: str) -> None:
    """NaN or infinite pixels would come back as NaN embeddings with an OK status."""
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise InvalidInput(f"input '{name}': row {row} holds NaN or infinite values; pixels must be finite")


def _texts(tensor: Tensor) -> list[str]:
    try:
        return [element.decode("utf-8") for element in tensor.data]
    except UnicodeDecodeError as error:
        raise InvalidInput(f"input '{tensor.name}': element is not UTF-8 text ({error.reason})") from error


async def _translate(engine: Engine, name: str, version: int, inputs, parameters) -> tuple[int, list[Tensor]]:
    options = TranslateOptions(
        num_beams=_int(parameters, "num_beams"),
        num_hypotheses=_int(parameters, "num_hypotheses"),
        max_length=_int(parameters, "max_length"),
        length_penalty=_float(parameters, "length_penalty"),
    )
    result = await engine.translate(ModelRef(name, version), _texts(inputs["TEXT"]), options)
    width = max(len(o.translations) for o in result.texts)
    texts = [
        [h.text.encode() for h in o.translations] + [b""] * (width - len(o.translations))
        for o in result.texts
    ]
    scores = np.array(
        [[h.score for h in o.translations] + [np.nan] * (width - len(o.translations)) for o in result.texts],
        dtype=np.float32,
    )
    rows = len(result.texts)
    translations = Tensor("TRANSLATIONS", "BYTES", (rows, width), [t for row in texts for t in row])
    return result.models[0][1], [translations, Tensor("SCORES", "FP32", (rows, width), scores)]


async def _pipeline(engine: Engine, name: str, version: int, inputs) -> tuple[int, list[Tensor]]:
    images = [ImageInput(data) for data in inputs["IMAGE"].data] if "IMAGE" in inputs else []
    texts = [TextInput(text) for text in _texts(inputs["TEXT"])] if "TEXT" in inputs else []
    result = await engine.encode(ModelRef(name, version), images + texts)
    outputs = []
    if images:
        outputs.append(_fp32("IMAGE_EMBEDS", result.embeddings[: len(images)]))
    if texts:
        outputs.append(_fp32("TEXT_EMBEDS", result.embeddings[len(images) :]))
    return result.models[0][1], outputs


def _fp32(name: str, array: np.ndarray) -> Tensor:
    return Tensor(name, "FP32", tuple(array.shape), array.astype(np.float32))


def _int(parameters: dict[str, object], key: str) -> int:
    value = parameters.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"parameter '{key}' must be an integer")
    try:
        return int(value)
    except ValueError as error:
        raise InvalidInput(f"parameter '{key}' must be an integer, got {value!r}") from error


def _float(parameters: dict[str, object], key: str) -> float:
    value = parameters.get(key, 0.0)
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"parameter '{key}' must be a number, got {value!r}") from error
