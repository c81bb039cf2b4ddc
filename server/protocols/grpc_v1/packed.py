"""`repeated float` fields written from NumPy buffers, as protobuf wire bytes.

A proto3 `repeated float` travels packed: a tag, a length and the floats as little-endian float32. Filling
the field from Python puts every float through a Python object; writing those bytes from the array's
buffer and merging them into the message costs one copy (about ten times less for a batch of
embeddings). The messages read back exactly what the array held, NaN rows included.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.descriptor import Descriptor, FieldDescriptor

LENGTH_DELIMITED = 2  # the wire type of packed fields and of embedded messages
LITTLE_ENDIAN_FLOAT32 = np.dtype("<f4")


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_key(descriptor: Descriptor, name: str, packed_floats: bool = False) -> bytes:
    """The key (field number and wire type) of `name` in `descriptor`, checked to be what is written
    under it: a packed repeated float, or else a repeated message."""
    field = descriptor.fields_by_name[name]
    expected = FieldDescriptor.TYPE_FLOAT if packed_floats else FieldDescriptor.TYPE_MESSAGE
    if field.type != expected or not field.is_repeated:
        kind = "float" if packed_floats else "message"
        raise TypeError(f"{descriptor.full_name}.{name} is not a repeated {kind}")
    return varint(field.number << 3 | LENGTH_DELIMITED)


def delimited(key: bytes, payload: bytes) -> bytes:
    return key + varint(len(payload)) + payload


def floats(key: bytes, values: np.ndarray) -> bytes:
    """A packed float field holding `values` (any shape, row-major); nothing when there are none."""
    data = np.ascontiguousarray(values, dtype=LITTLE_ENDIAN_FLOAT32).tobytes()
    return delimited(key, data) if data else b""


def float_rows(outer_key: bytes, inner_key: bytes, rows: np.ndarray) -> bytes:
    """One message per row of `rows` (a 2-D array) under `outer_key`, each holding its row as the packed
    float field `inner_key`: e.g. the `embeddings` of an EncodeResponse, one Embedding per row."""
    matrix = np.ascontiguousarray(rows, dtype=LITTLE_ENDIAN_FLOAT32)
    return b"".join(delimited(outer_key, floats(inner_key, row)) for row in matrix)
