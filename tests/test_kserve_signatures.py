"""KServe metadata and config tensors rendered from signatures, and the generic input checks."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal.v1 import model_config_pb2 as mc
from server.backends.base import Backend, Signature, TensorSpec
from server.core.errors import InvalidInput
from server.protocols.kserve.signatures import (
    check_inputs,
    config_dims,
    config_with_tensors,
    describe_model,
    describe_pipeline,
    metadata_tensors,
)
from server.protocols.kserve.tensors import Tensor
from server.repository.model_config import PIPELINE_PLATFORM


class Tower(Backend):
    """A backend that only declares itself: rendering needs nothing else."""

    model_type = "test_tower"
    platform = "test_platform"

    def __init__(self, signature: Signature) -> None:
        self._signature = signature

    @property
    def provider(self) -> str:
        return "CPU"

    def signature(self) -> Signature:
        return self._signature

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


IDS = Signature(
    inputs=(
        TensorSpec("input_ids", "INT64", (-1, -1)),
        TensorSpec("attention_mask", "INT64", (-1, -1), True),
    ),
    outputs=(TensorSpec("text_embeds", "FP32", (-1, 8)),),
)


def ids(name: str = "input_ids", datatype: str = "INT64") -> Tensor:
    return Tensor(name, datatype, (1, 2), np.ones((1, 2), np.int64))


def test_a_model_is_described_by_its_backend():
    described = describe_model("clip_text", Tower(IDS))
    assert (described.name, described.platform, described.signature) == ("clip_text", "test_platform", IDS)
    shown = metadata_tensors(described.signature.outputs)
    assert [(t.name, t.datatype, list(t.shape)) for t in shown] == [("text_embeds", "FP32", [-1, 8])]


def test_a_pipeline_has_one_signature_of_its_embedding_size():
    described = describe_pipeline("clip", 16)
    assert described.platform == PIPELINE_PLATFORM
    assert [(s.name, s.datatype, s.shape) for s in described.signature.inputs] == [
        ("IMAGE", "BYTES", (-1,)),
        ("TEXT", "BYTES", (-1,)),
    ]
    assert [s.shape for s in described.signature.outputs] == [(-1, 16), (-1, 16)]


def test_config_tensors_leave_out_the_batch_dimension_and_keep_what_the_config_says():
    assert config_dims(TensorSpec("TEXT", "BYTES", (-1,))) == (1,)
    assert config_dims(TensorSpec("pixel_values", "FP32", (-1, 3, 4, 4))) == (3, 4, 4)
    config = mc.ModelConfig(name="clip_text")
    rendered = config_with_tensors(config, IDS)
    assert [(t.name, t.data_type, list(t.dims)) for t in rendered.input] == [
        ("input_ids", mc.TYPE_INT64, [-1]),
        ("attention_mask", mc.TYPE_INT64, [-1]),
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in rendered.output] == [
        ("text_embeds", mc.TYPE_FP32, [8])
    ]
    assert not config.input  # the repository's config is not changed
    written = mc.ModelConfig(name="clip_text")
    written.output.add(name="text_embeds", data_type=mc.TYPE_FP32, dims=[64])
    assert list(config_with_tensors(written, IDS).output[0].dims) == [64] and not written.input


def test_inputs_are_checked_against_the_signature():
    check_inputs("clip_text", IDS, {"input_ids": ids()})
    with pytest.raises(
        InvalidInput, match=r"model 'clip_text' has no input 'pixels' \(inputs: \['attention_mask'"
    ):
        check_inputs("clip_text", IDS, {"pixels": ids("pixels")})
    with pytest.raises(InvalidInput, match="input 'input_ids' must be INT64, got FP32"):
        check_inputs("clip_text", IDS, {"input_ids": ids(datatype="FP32")})
    with pytest.raises(InvalidInput, match=r"model 'clip_text': missing input \['input_ids'\]"):
        check_inputs("clip_text", IDS, {"attention_mask": ids("attention_mask")})
    with pytest.raises(InvalidInput, match=r"model 'clip_text': missing input \['input_ids'\]"):
        check_inputs("clip_text", IDS, {})


def test_a_pipeline_needs_an_image_or_a_text():
    signature = describe_pipeline("clip", 16).signature
    texts = Tensor("TEXT", "BYTES", (1,), [b"a dog"])
    check_inputs("clip", signature, {"TEXT": texts})
    with pytest.raises(InvalidInput, match=r"model 'clip': missing input \['IMAGE', 'TEXT'\]"):
        check_inputs("clip", signature, {})
