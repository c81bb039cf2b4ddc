"""How each model and pipeline is described through the KServe v2 protocol, and how a ModelInfer runs.

A ModelInfer is dispatched by what the model can do, never by its class:
  a pipeline    IMAGE / TEXT -> the engine's encode -> IMAGE_EMBEDS / TEXT_EMBEDS
  a translator  TEXT (parameters num_beams, num_hypotheses, max_length, length_penalty)
                -> the engine's translate (language and text checks, jieba) -> TRANSLATIONS, SCORES
  any other     its backend's own infer, on the tensors of its signature (it validates them and queues)
All of them run through the same engine and dynamic batchers as the crossmodal.v1 RPCs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from server.backends.base import Backend, Capability, TensorSpec, has
from server.core.errors import InvalidInput
from server.core.pending import Pending
from server.core.types import ImageInput, ModelRef, TextInput, TranslateOptions
from server.engine import Engine
from server.pipelines.clip import resolve_pipeline
from server.protocols.kserve.signatures import (
    Described,
    check_inputs,
    describe_model,
    describe_pipeline,
    pipeline_signature,
)
from server.protocols.kserve.tensors import Tensor


def describe(engine: Engine, name: str, version: int) -> Described:
    repository = engine.repository
    if repository.is_pipeline(name):
        return describe_pipeline(name, resolve_pipeline(repository, name, version).embedding_dim)
    return describe_model(name, repository.model(name, version))


async def infer(
    engine: Engine, name: str, version: int, inputs: dict[str, Tensor], parameters: dict[str, object]
) -> tuple[int, list[Tensor]]:
    """Runs one ModelInfer; returns the version that ran and every output tensor. The model is looked up
    once, so the version checked against is the version that runs."""
    repository = engine.repository
    with repository.call_scope():
        if repository.is_pipeline(name):
            check_inputs(name, pipeline_signature(-1), inputs)  # inputs do not depend on the version
            return await _pipeline(engine, name, version, inputs)
        backend = repository.model(name, version)
        signature = backend.signature()
        check_inputs(name, signature, inputs)
        if has(backend, Capability.TRANSLATE):
            return await _translate(engine, name, backend.version, inputs, parameters)
        arrays = {tensor.name: tensor.data for tensor in inputs.values()}
        queued = await engine.offload(_queued, backend, arrays, parameters)  # checking large arrays
        outputs = await queued.wait()
        return backend.version, [_output(spec, outputs[spec.name]) for spec in signature.outputs]


def _queued(backend: Backend, arrays: Mapping[str, np.ndarray], parameters: Mapping[str, object]) -> Pending:
    return backend.infer(arrays, parameters).withdrawn_on_cancel()


def _output(spec: TensorSpec, array: np.ndarray) -> Tensor:
    if spec.datatype == "BYTES":
        return Tensor(spec.name, spec.datatype, tuple(np.shape(array)), list(np.ravel(array)))
    return Tensor(spec.name, spec.datatype, tuple(array.shape), array)


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
