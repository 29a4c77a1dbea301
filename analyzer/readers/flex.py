"""Decode custom-op options: Flex ops' TensorFlow NodeDef and FlexBuffer maps.

A Flex op's custom options are a FlexBuffer vector ``[op name, serialized NodeDef]``.
The NodeDef is a protobuf; we read the few fields we report (name, op, attr keys) with a
minimal wire-format walk rather than importing TensorFlow's protobuf classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flatbuffers import flexbuffers


@dataclass(frozen=True)
class NodeDef:
    name: str
    op: str
    attrs: tuple[str, ...]


def decode(raw: bytes) -> NodeDef | None:
    """The NodeDef inside a Flex op's custom options, or None if they are not readable."""
    if not raw:
        return None
    try:
        vec = flexbuffers.GetRoot(bytearray(raw)).AsVector
        if len(vec) < 2:
            return None
        op_name = vec[0].AsStringBytes.decode("utf-8", "replace")
        node = _parse_nodedef(bytes(vec[1].AsStringBytes))
    except (ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError):
        return None
    if node is None:
        return NodeDef("", op_name, ())
    return NodeDef(node.name, node.op or op_name, node.attrs)


def custom_options(raw: bytes) -> dict[str, Any] | None:
    """A custom op's FlexBuffer map of options (scalars only), or None."""
    try:
        value = flexbuffers.Loads(bytearray(raw))
    except (ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError, AttributeError):
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): v for k, v in value.items() if isinstance(v, (bool, int, float, str))}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError("truncated varint")
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(b: bytes):
    """Yield (field number, wire type, value) of a protobuf message; values of type 2 as bytes."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 1:
            value, i = b[i:i + 8], i + 8
        elif wire == 5:
            value, i = b[i:i + 4], i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated field")
            value, i = b[i:i + n], i + n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


def _parse_nodedef(b: bytes) -> NodeDef | None:
    name = op = ""
    attrs: list[str] = []
    try:
        for field, wire, value in _fields(b):
            if wire != 2:
                continue
            if field == 1:
                name = value.decode("utf-8", "replace")
            elif field == 2:
                op = value.decode("utf-8", "replace")
            elif field == 5:  # map<string, AttrValue> entry: key is field 1
                for f2, w2, v2 in _fields(value):
                    if f2 == 1 and w2 == 2:
                        attrs.append(v2.decode("utf-8", "replace"))
    except ValueError:
        return None
    return NodeDef(name, op, tuple(attrs))
