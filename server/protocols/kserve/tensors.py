"""Tensors of the KServe v2 protocol: typed or raw contents in, raw contents out.

Raw contents are row-major little-endian elements; a BYTES element is a 4-byte little-endian length followed
by that many bytes. Everything a client can get wrong is an InvalidInput naming the tensor.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from server.core.errors import InvalidInput

NUMERIC = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]  # numeric array in `shape`, or BYTES elements, flattened


def decode_inputs(request, max_rows: int) -> dict[str, Tensor]:
    """The request's input tensors by name (raw_input_contents or typed contents). The first dimension is
    the batch: at least 1 and at most `max_rows` (the server's items-per-request limit)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
    tensors = {}
    for index, spec in enumerate(request.inputs):
        if spec.name in tensors:
            raise InvalidInput(f"input '{spec.name}' is given twice")
        shape = list(spec.shape)
        if not shape or not 1 <= shape[0] <= max_rows:
            raise InvalidInput(
                f"input '{spec.name}': shape {shape} needs a batch dimension of 1 to {max_rows} first"
            )
        if spec.datatype == "BYTES" and math.prod(shape) > max_rows:
            raise InvalidInput(f"input '{spec.name}': at most {max_rows} BYTES elements, shape {shape}")
        tensors[spec.name] = _decode(spec, raw[index] if raw else None)
    return tensors


def _decode(spec, raw: bytes | None) -> Tensor:
    name, datatype, shape = spec.name, spec.datatype, tuple(spec.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{name}': shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if datatype == "BYTES":
        elements = decode_bytes(name, raw) if raw is not None else list(spec.contents.bytes_contents)
        if len(elements) != count:
            raise InvalidInput(f"input '{name}': {len(elements)} BYTES elements for shape {list(shape)}")
        return Tensor(name, datatype, shape, elements)
    dtype = NUMERIC.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input '{name}': unsupported datatype '{datatype}'")
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"input '{name}': {len(raw)} bytes of raw contents for {datatype} shape {list(shape)} "
                f"(expected {count * dtype.itemsize})"
            )
        array = np.frombuffer(raw, dtype=dtype)
    else:
        field = CONTENTS_FIELD.get(datatype)
        if field is None:
            raise InvalidInput(f"input '{name}': {datatype} needs raw_input_contents")
        values = list(getattr(spec.contents, field))
        if dtype.kind in "iu" and values:
            bounds = np.iinfo(dtype)  # the typed fields are wider than INT8/UINT8/...: check, never wrap
            if min(values) < bounds.min or max(values) > bounds.max:
                raise InvalidInput(f"input '{name}': a value does not fit {datatype}")
        array = np.asarray(values, dtype=dtype)
        if array.size != count:
            raise InvalidInput(f"input '{name}': {array.size} elements for shape {list(shape)}")
    return Tensor(name, datatype, shape, array.reshape(shape))


def decode_bytes(name: str, buffer: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(buffer):
        if offset + LENGTH.size > len(buffer):
            raise InvalidInput(f"input '{name}': BYTES contents end inside an element's length prefix")
        (length,) = LENGTH.unpack_from(buffer, offset)
        offset += LENGTH.size
        if offset + length > len(buffer):
            raise InvalidInput(f"input '{name}': a BYTES element of {length} bytes runs past the contents")
        elements.append(bytes(buffer[offset : offset + length]))
        offset += length
    return elements


def encode_bytes(elements: list[bytes]) -> bytes:
    return b"".join(LENGTH.pack(len(e)) + e for e in elements)


def raw_contents(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return encode_bytes(tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=NUMERIC[tensor.datatype]).tobytes()
