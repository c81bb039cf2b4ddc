"""KServe v2 tensor decoding and encoding, without a network."""

from __future__ import annotations

import numpy as np
import pytest

from inference import grpc_service_pb2 as kpb
from server.core.errors import InvalidInput
from server.protocols.kserve.tensors import Tensor, decode_bytes, decode_inputs, encode_bytes, raw_contents

Input = kpb.ModelInferRequest.InferInputTensor


def test_bytes_round_trip_including_empty_and_binary_elements():
    elements = [b"", "两只狗".encode(), bytes(range(256)), b"x" * 70000]
    assert decode_bytes("t", encode_bytes(elements)) == elements


@pytest.mark.parametrize(
    ("buffer", "reason"), [(b"\x05\x00", "length prefix"), (b"\x05\x00\x00\x00abc", "runs past")]
)
def test_malformed_bytes_contents_are_refused(buffer, reason):
    with pytest.raises(InvalidInput, match=reason):
        decode_bytes("TEXT", buffer)


def test_raw_and_typed_contents_decode_to_the_same_tensor():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = kpb.ModelInferRequest(inputs=[Input(name="x", datatype="FP32", shape=[2, 3])])
    raw.raw_input_contents.append(values.tobytes())
    typed = kpb.ModelInferRequest(inputs=[Input(name="x", datatype="FP32", shape=[2, 3])])
    typed.inputs[0].contents.fp32_contents.extend(values.ravel().tolist())
    for request in (raw, typed):
        tensor = decode_inputs(request, 64)["x"]
        np.testing.assert_array_equal(tensor.data, values)


@pytest.mark.parametrize(
    ("tensor", "raw", "reason"),
    [
        (Input(name="x", datatype="FP32", shape=[2, 3]), b"\x00" * 20, "expected 24"),
        (Input(name="x", datatype="FP32", shape=[2, -3]), b"", "negative"),
        (Input(name="x", datatype="FP32", shape=[0, 3]), b"", "batch dimension of 1 to 64"),
        (Input(name="x", datatype="FP32", shape=[65, 1]), b"\x00" * 260, "batch dimension of 1 to 64"),
        (Input(name="x", datatype="BYTES", shape=[8, 9]), b"", "at most 64 BYTES"),
        (Input(name="x", datatype="COMPLEX", shape=[1]), b"\x00", "unsupported datatype"),
        (Input(name="x", datatype="BYTES", shape=[2]), encode_bytes([b"a"]), "1 BYTES elements"),
    ],
)
def test_inconsistent_tensors_name_the_input_and_reason(tensor, raw, reason):
    request = kpb.ModelInferRequest(inputs=[tensor], raw_input_contents=[raw])
    with pytest.raises(InvalidInput, match=reason):
        decode_inputs(request, 64)


def test_raw_contents_must_cover_every_input():
    request = kpb.ModelInferRequest(
        inputs=[Input(name="a", datatype="INT64", shape=[1]), Input(name="b", datatype="INT64", shape=[1])],
        raw_input_contents=[np.int64(1).tobytes()],
    )
    with pytest.raises(InvalidInput, match="1 entries for 2 inputs"):
        decode_inputs(request, 64)


def test_outputs_encode_little_endian_and_bytes():
    numbers = Tensor("y", "FP32", (2,), np.array([1.5, -2.0], dtype=np.float32))
    assert raw_contents(numbers) == np.array([1.5, -2.0], dtype="<f4").tobytes()
    texts = Tensor("t", "BYTES", (2,), [b"ab", b""])
    assert raw_contents(texts) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_typed_values_that_do_not_fit_the_datatype_are_invalid():
    request = kpb.ModelInferRequest(inputs=[Input(name="x", datatype="UINT8", shape=[1])])
    request.inputs[0].contents.uint_contents.append(300)
    with pytest.raises(InvalidInput, match="does not fit UINT8"):
        decode_inputs(request, 64)
