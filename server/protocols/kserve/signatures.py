"""What a model or pipeline looks like through KServe v2, rendered from signatures, and the input checks
every ModelInfer goes through before anything runs (shapes and values are the backend's to check, in its
`infer`: TensorSpec.check_shape and the model's own rules).

A model's tensors are its backend's `signature()`; a pipeline's are one signature for every pipeline:
  IMAGE BYTES [-1] (encoded images) and/or TEXT BYTES [-1]
    -> IMAGE_EMBEDS FP32 [-1,D], TEXT_EMBEDS FP32 [-1,D]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crossmodal.v1 import model_config_pb2 as mc
from inference import grpc_service_pb2 as kpb
from server.backends.base import Backend, Signature, TensorSpec
from server.core.errors import InvalidInput
from server.protocols.kserve.tensors import Tensor
from server.repository.model_config import PIPELINE_PLATFORM

CONFIG_DATATYPES = {"FP32": mc.TYPE_FP32, "INT64": mc.TYPE_INT64, "BYTES": mc.TYPE_STRING}


@dataclass(frozen=True)
class Described:
    """One model or pipeline as the protocol shows it."""

    name: str
    platform: str
    signature: Signature


def pipeline_signature(dim: int) -> Signature:
    """IMAGE and TEXT are each optional, but a request needs at least one (see check_inputs)."""
    return Signature(
        inputs=(
            TensorSpec("IMAGE", "BYTES", (-1,), optional=True),
            TensorSpec("TEXT", "BYTES", (-1,), optional=True),
        ),
        outputs=(TensorSpec("IMAGE_EMBEDS", "FP32", (-1, dim)), TensorSpec("TEXT_EMBEDS", "FP32", (-1, dim))),
    )


def describe_model(name: str, backend: Backend) -> Described:
    return Described(name, backend.platform, backend.signature())


def describe_pipeline(name: str, dim: int) -> Described:
    return Described(name, PIPELINE_PLATFORM, pipeline_signature(dim))


def metadata_tensors(specs: Sequence[TensorSpec]) -> list[kpb.ModelMetadataResponse.TensorMetadata]:
    return [
        kpb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=s.shape)
        for s in specs
    ]


def config_dims(spec: TensorSpec) -> tuple[int, ...]:
    """Config dims leave out the batch dimension; a batch of scalars is dims [1], as in Triton."""
    return spec.shape[1:] or (1,)


def config_with_tensors(config: mc.ModelConfig, signature: Signature) -> mc.ModelConfig:
    """A copy of the config as written; when it lists no tensors, those the protocol serves are added."""
    rendered = mc.ModelConfig()
    rendered.CopyFrom(config)
    if not rendered.input and not rendered.output:
        for spec in signature.inputs:
            rendered.input.add(
                name=spec.name, data_type=CONFIG_DATATYPES[spec.datatype], dims=config_dims(spec)
            )
        for spec in signature.outputs:
            rendered.output.add(
                name=spec.name, data_type=CONFIG_DATATYPES[spec.datatype], dims=config_dims(spec)
            )
    return rendered


def check_inputs(name: str, signature: Signature, inputs: Mapping[str, Tensor]) -> None:
    """Every input is one of the signature's, of its datatype; inputs not marked optional are there, and
    a request has at least one input (a pipeline's are all optional, but one of them is needed)."""
    known = {spec.name: spec for spec in signature.inputs}
    for tensor in inputs.values():
        spec = known.get(tensor.name)
        if spec is None:
            raise InvalidInput(f"model '{name}' has no input '{tensor.name}' (inputs: {sorted(known)})")
        if tensor.datatype != spec.datatype:
            raise InvalidInput(f"input '{tensor.name}' must be {spec.datatype}, got {tensor.datatype}")
    missing = [s.name for s in signature.inputs if not s.optional and s.name not in inputs]
    if missing or not inputs:
        raise InvalidInput(f"model '{name}': missing input {missing or [s.name for s in signature.inputs]}")
