"""Decode custom-op options: Flex ops' TensorFlow NodeDef and FlexBuffer maps.

A Flex op's custom options are a FlexBuffer vector ``[op name, serialized NodeDef]``.
The NodeDef is a protobuf; we read the few fields we report (name, op, attr keys) with
:mod:`analyzer.readers.protowire` rather than importing TensorFlow's protobuf classes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from flatbuffers import flexbuffers

from analyzer.readers.protowire import WireError, fields


# What the flexbuffers package raises on bytes that are not a FlexBuffer. Custom options
# are opaque third-party bytes: a model TFLite loads must not fail here, so any of these
# just means "options not decoded".
_FLEXBUFFER_ERRORS = (ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError, AttributeError,
                      AssertionError, RecursionError, OverflowError, struct.error)


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
    except _FLEXBUFFER_ERRORS:
        return None
    if node is None:
        return NodeDef("", op_name, ())
    return NodeDef(node.name, node.op or op_name, node.attrs)


def custom_options(raw: bytes) -> dict[str, Any] | None:
    """A custom op's FlexBuffer map of options (scalars only), or None."""
    try:
        value = flexbuffers.Loads(bytearray(raw))
    except _FLEXBUFFER_ERRORS:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): v for k, v in value.items() if isinstance(v, (bool, int, float, str))}


def _parse_nodedef(b: bytes) -> NodeDef | None:
    name = op = ""
    attrs: list[str] = []
    try:
        for field, wire, value in fields(b):
            if wire != 2:
                continue
            if field == 1:
                name = bytes(value).decode("utf-8", "replace")
            elif field == 2:
                op = bytes(value).decode("utf-8", "replace")
            elif field == 5:  # map<string, AttrValue> entry: key is field 1
                for f2, w2, v2 in fields(value):
                    if f2 == 1 and w2 == 2:
                        attrs.append(bytes(v2).decode("utf-8", "replace"))
    except WireError:
        return None
    return NodeDef(name, op, tuple(attrs))
