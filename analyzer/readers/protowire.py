"""A minimal protobuf wire-format reader, enough to read TensorFlow's graph protos.

Reading a SavedModel's ``saved_model.pb`` or a Flex op's NodeDef with TensorFlow's own
generated classes would import TensorFlow (seconds and hundreds of MiB); the fields we
need are few and stable, so we walk the wire format. Unknown fields are skipped, as
protobuf itself does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def varint(b: bytes | memoryview, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b) or shift > 63:
            raise WireError("truncated varint")
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def fields(b: bytes | memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a message; type 2 values are bytes slices."""
    i, n = 0, len(b)
    while i < n:
        key, i = varint(b, i)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, i = varint(b, i)
        elif wire == 1:
            if i + 8 > n:
                raise WireError("truncated fixed64")
            value, i = bytes(b[i:i + 8]), i + 8
        elif wire == 5:
            if i + 4 > n:
                raise WireError("truncated fixed32")
            value, i = bytes(b[i:i + 4]), i + 4
        elif wire == 2:
            size, i = varint(b, i)
            if i + size > n:
                raise WireError("truncated length-delimited field")
            value, i = b[i:i + size], i + size
        else:
            raise WireError(f"unsupported wire type {wire}")
        yield field, wire, value


def text(v: object) -> str:
    """A string field's value; raises WireError if the field was not length-delimited."""
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise WireError("a string field has the wrong wire type")
    return bytes(v).decode("utf-8", "replace")


def signed(v: int) -> int:
    """An int64 field's value (negative numbers arrive as 64-bit two's complement)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def float32(v: object) -> float:
    if not isinstance(v, (bytes, bytearray, memoryview)) or len(v) != 4:
        raise WireError("a float field is not 4 bytes")
    return struct.unpack("<f", v)[0]


def packed_varints(v: object) -> list[int]:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise WireError("a packed field is not length-delimited")
    out, i, b = [], 0, bytes(v)
    while i < len(b):
        x, i = varint(b, i)
        out.append(signed(x))
    return out
