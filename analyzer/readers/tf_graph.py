"""Read a SavedModel's graph protobuf statically: signatures, functions, nodes, variables.

Nothing is executed and TensorFlow is not imported: ``saved_model.pb`` is walked with
:mod:`analyzer.readers.protowire`. Field numbers are those of TensorFlow's
``saved_model.proto``, ``meta_graph.proto``, ``graph.proto``, ``function.proto``,
``node_def.proto``, ``attr_value.proto``, ``tensor.proto`` and ``tensor_shape.proto``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from analyzer.readers.protowire import WireError, fields, float32, packed_varints, signed, text

# TensorFlow's DataType enum (types.proto); reference types (+100) map to their base.
TF_DTYPES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8", 13: "qint32",
    14: "bfloat16", 15: "qint16", 16: "quint16", 17: "uint16", 18: "complex128", 19: "float16",
    20: "resource", 21: "variant", 22: "uint32", 23: "uint64", 24: "float8_e5m2",
    25: "float8_e4m3fn", 29: "int4", 30: "uint4",
}


def dtype_name(code: int) -> str:
    return TF_DTYPES.get(code % 100, f"dtype_{code}")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...] | None  # None: unknown rank; -1: unknown dim


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    device: str = ""

    def called_functions(self, library: Mapping[str, Any] | None = None) -> list[str]:
        """Functions this node calls: through attrs (PartitionedCall ``f``, While ``body``/
        ``cond``, If branches) and, given the library, by using a function's name as its op."""
        out = [self.op] if library is not None and self.op in library else []
        for value in self.attrs.values():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, dict) and "func" in v:
                    out.append(v["func"])
        return out


@dataclass(frozen=True)
class Function:
    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Signature:
    key: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method: str


@dataclass(frozen=True)
class MetaGraph:
    tags: tuple[str, ...]
    tensorflow_version: str
    nodes: tuple[Node, ...]
    functions: Mapping[str, Function]
    signatures: Mapping[str, Signature]
    function_aliases: Mapping[str, str] = field(default_factory=dict)

    def all_nodes(self) -> list[tuple[str, Node]]:
        """(function name or '' for the top graph, node) for every node."""
        out = [("", n) for n in self.nodes]
        for fname, fn in self.functions.items():
            out.extend((fname, n) for n in fn.nodes)
        return out


@dataclass(frozen=True)
class SavedModelProto:
    schema_version: int
    meta_graphs: tuple[MetaGraph, ...]


def parse_saved_model(data: bytes) -> SavedModelProto:
    """Parse ``saved_model.pb`` bytes. Raises WireError (a ValueError) if malformed."""
    version, metas = 0, []
    for f, w, v in fields(data):
        if f == 1 and w == 0:
            version = v
        elif f == 2 and w == 2:
            metas.append(_meta_graph(v))
    if not metas:
        raise WireError("no meta graph in the SavedModel")
    return SavedModelProto(version, tuple(metas))


def _meta_graph(b: Any) -> MetaGraph:
    tags: list[str] = []
    tf_version = ""
    aliases: dict[str, str] = {}
    nodes: tuple[Node, ...] = ()
    functions: dict[str, Function] = {}
    sigs: dict[str, Signature] = {}
    for f, w, v in fields(b):
        if f == 1 and w == 2:  # MetaInfoDef
            for f2, w2, v2 in fields(v):
                if f2 == 4 and w2 == 2:
                    tags.append(text(v2))
                elif f2 == 5 and w2 == 2:
                    tf_version = text(v2)
                elif f2 == 8 and w2 == 2:
                    k, val = _map_entry(v2)
                    aliases[text(k)] = text(val)
        elif f == 2 and w == 2:  # GraphDef
            nodes, functions = _graph_def(v)
        elif f == 5 and w == 2:  # map<string, SignatureDef>
            k, val = _map_entry(v)
            sigs[text(k)] = _signature(text(k), val)
    return MetaGraph(tuple(tags), tf_version, nodes, MappingProxyType(functions),
                     MappingProxyType(sigs), MappingProxyType(aliases))


def _map_entry(b: Any) -> tuple[Any, Any]:
    key = value = b""
    for f, w, v in fields(b):
        if w != 2:
            raise WireError("a map entry field is not length-delimited")
        if f == 1:
            key = v
        elif f == 2:
            value = v
    return key, value


def _graph_def(b: Any) -> tuple[tuple[Node, ...], dict[str, Function]]:
    nodes, functions = [], {}
    for f, w, v in fields(b):
        if f == 1 and w == 2:
            nodes.append(_node(v))
        elif f == 2 and w == 2:  # FunctionDefLibrary
            for f2, w2, v2 in fields(v):
                if f2 == 1 and w2 == 2:
                    fn = _function(v2)
                    functions[fn.name] = fn
    return tuple(nodes), functions


def _function(b: Any) -> Function:
    name, nodes, ins, outs = "", [], [], []
    for f, w, v in fields(b):
        if f == 1 and w == 2:  # OpDef signature
            for f2, w2, v2 in fields(v):
                if f2 == 1 and w2 == 2:
                    name = text(v2)
                elif f2 in (2, 3) and w2 == 2:  # input_arg / output_arg: ArgDef name = 1
                    arg = next((text(v3) for f3, w3, v3 in fields(v2) if f3 == 1 and w3 == 2), "")
                    (ins if f2 == 2 else outs).append(arg)
        elif f == 3 and w == 2:
            nodes.append(_node(v))
    return Function(name, tuple(nodes), tuple(ins), tuple(outs))


def _node(b: Any) -> Node:
    name = op = device = ""
    inputs, attrs = [], {}
    for f, w, v in fields(b):
        if w != 2:
            continue
        if f == 1:
            name = text(v)
        elif f == 2:
            op = text(v)
        elif f == 3:
            inputs.append(text(v))
        elif f == 4:
            device = text(v)
        elif f == 5:
            k, val = _map_entry(v)
            attrs[text(k)] = _attr(val)
    return Node(name, op, tuple(inputs), MappingProxyType(attrs), device)


def _attr(b: Any) -> Any:
    """An AttrValue as a plain Python value (function references as {"func": name})."""
    for f, w, v in fields(b):
        if f == 2 and w == 2:
            raw = bytes(v)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw
        if f == 3 and w == 0:
            return signed(v)
        if f == 4 and w == 5:
            return float32(v)
        if f == 5 and w == 0:
            return bool(v)
        if f == 6 and w == 0:
            return dtype_name(v)
        if f == 7 and w == 2:
            return shape(v)
        if f == 8 and w == 2:
            return tensor_summary(v)
        if f == 1 and w == 2:
            return _attr_list(v)
        if f == 10 and w == 2:
            return {"func": next((text(v2) for f2, w2, v2 in fields(v) if f2 == 1 and w2 == 2), "")}
        if f == 9 and w == 2:
            return {"placeholder": text(v)}
    return None


def _attr_list(b: Any) -> list[Any]:
    out: list[Any] = []
    for f, w, v in fields(b):
        if f == 2 and w == 2:
            out.append(bytes(v).decode("utf-8", "replace"))
        elif f == 3:
            out.extend(signed(x) if w == 0 else x for x in _ints(w, v))
        elif f == 4:
            if w == 2:
                raw = bytes(v)
                if len(raw) % 4:
                    raise WireError("a packed float list is not a multiple of 4 bytes")
                out.extend(float32(raw[i:i + 4]) for i in range(0, len(raw), 4))
            else:
                out.append(float32(v))
        elif f == 5:
            out.extend(bool(x) for x in _ints(w, v))
        elif f == 6:
            out.extend(dtype_name(x) for x in _ints(w, v))
        elif f == 7 and w == 2:
            out.append(shape(v))
        elif f == 8 and w == 2:
            out.append(tensor_summary(v))
        elif f == 9 and w == 2:
            out.append({"func": next((text(v2) for f2, w2, v2 in fields(v) if f2 == 1 and w2 == 2), "")})
    return out


def _ints(wire: int, v: Any) -> list[int]:
    """A repeated integer field, packed (wire 2) or not (wire 0)."""
    if wire == 2:
        return packed_varints(v)
    if wire == 0:
        return [v]
    raise WireError("an integer list has the wrong wire type")


def shape(b: Any) -> tuple[int, ...] | None:
    """A TensorShapeProto: None for unknown rank, -1 for unknown dims."""
    dims: list[int] = []
    for f, w, v in fields(b):
        if f == 3 and w == 0 and v:
            return None
        if f == 2 and w == 2:
            size = 0
            for f2, w2, v2 in fields(v):
                if f2 == 1 and w2 == 0:
                    size = signed(v2)
            dims.append(size)
    return tuple(dims)


def tensor_summary(b: Any) -> dict[str, Any]:
    """dtype, shape and stored size of a TensorProto (its values are not decoded)."""
    dtype, shp, nbytes = "unknown", (), 0
    for f, w, v in fields(b):
        if f == 1 and w == 0:
            dtype = dtype_name(v)
        elif f == 2 and w == 2:
            shp = shape(v) or ()
        elif w == 2 and f >= 4:
            nbytes += len(v)  # tensor_content or a repeated *_val field
    return {"dtype": dtype, "shape": shp, "bytes": nbytes}


def _signature(key: str, b: Any) -> Signature:
    ins: dict[str, TensorSpec] = {}
    outs: dict[str, TensorSpec] = {}
    method = ""
    for f, w, v in fields(b):
        if f in (1, 2) and w == 2:
            k, val = _map_entry(v)
            (ins if f == 1 else outs)[text(k)] = _tensor_info(val)
        elif f == 3 and w == 2:
            method = text(v)
    return Signature(key, MappingProxyType(ins), MappingProxyType(outs), method)


def _tensor_info(b: Any) -> TensorSpec:
    name, dtype, shp = "", "unknown", None
    for f, w, v in fields(b):
        if f == 1 and w == 2:
            name = text(v)
        elif f == 2 and w == 0:
            dtype = dtype_name(v)
        elif f == 3 and w == 2:
            shp = shape(v)
    return TensorSpec(name, dtype, shp)
