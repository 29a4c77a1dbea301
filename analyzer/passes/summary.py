"""Summary pass: what the model is, at a glance: ops by kind, I/O, quantization state."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from analyzer.passes.cost import weight_inputs
from analyzer.dtypes import FLOATS
from analyzer.graph import LayerGraph, Tensor
from analyzer.op_roles import WEIGHTED_OPS

# Ops whose tensors are not the model's working precision (boundaries, shapes, indices).
_INDEX_TYPES = {"int32", "int64", "bool"}  # shapes, indices, quantized biases
_LOW_BIT = {"int8", "int4", "uint8", "int2", "uint4"}


@dataclass(frozen=True)
class QuantizationState:
    """How the model is quantized: the scheme name and the dtypes behind it.

    Schemes: ``float``; ``float16`` (float16 weights dequantized at load); ``dynamic_range``
    (int8/int4 weights read directly by hybrid kernels, float activations);
    ``weight_only`` (int8/int4 weights dequantized to float at load, float kernels);
    ``full_int8``; ``int16x8``; ``mixed`` (anything else, e.g. some layers int8 and some float).
    """

    scheme: str
    weight_dtypes: dict[str, int]  # dtype -> number of weight tensors
    activation_dtypes: dict[str, int]  # dtype -> number of activation tensors of compute ops
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "weight_dtypes": dict(self.weight_dtypes),
                "activation_dtypes": dict(self.activation_dtypes), "detail": self.detail}


def _io(graph: LayerGraph, tensors: tuple[int, ...]) -> list[dict[str, Any]]:
    out = []
    for i in tensors:
        t: Tensor = graph.main.tensors[i]
        d = {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
        if t.shape_signature is not None and t.shape_signature != t.shape:
            d["shape_signature"] = list(t.shape_signature)
        if t.quantization is not None and t.quantization.scale:
            d["quantization"] = t.quantization.to_dict()
        out.append(d)
    return out


def quantization_state(graph: LayerGraph) -> QuantizationState:
    """Classify the model's quantization from its weighted layers (all layers if it has none)."""
    weighted = [layer for layer in graph.layers() if layer.op in WEIGHTED_OPS]
    layers = weighted or [layer for layer in graph.layers() if layer.op not in ("QUANTIZE", "DEQUANTIZE")]
    producers = {sg.index: graph.producers(sg.index) for sg in graph.subgraphs}
    weights: Counter[str] = Counter()
    acts: Counter[str] = Counter()
    decoded = False  # low-bit weights reached through a DEQUANTIZE: not run by hybrid kernels
    for layer in layers:
        for t, w in weight_inputs(graph, layer, producers[layer.subgraph]):
            if w.dtype not in _INDEX_TYPES:  # int32/int64 biases follow the activations
                weights[w.dtype] += 1
                decoded |= w.dtype in _LOW_BIT and not graph.tensor(layer.subgraph, t).is_constant
        for t in graph.inputs_of(layer) + graph.outputs_of(layer):
            if t is not None and t.buffer is None and t.dtype not in _INDEX_TYPES:
                acts[t.dtype] += 1
    return QuantizationState(_scheme(weights, acts, decoded), dict(weights), dict(acts),
                             _detail(weights, acts))


def _scheme(weights: Counter[str], acts: Counter[str], decoded: bool) -> str:
    w, a = set(weights), set(acts)
    if a <= FLOATS:
        if w <= {"float32"}:
            return "float"
        if w <= {"float32", "float16"}:
            return "float16"
        if w & _LOW_BIT:
            return "weight_only" if decoded else "dynamic_range"
        return "mixed"
    if a <= {"int8", "uint8"}:
        return "full_int8"
    if a <= {"int16"}:
        return "int16x8"
    return "mixed"


def _detail(weights: Counter[str], acts: Counter[str]) -> str:
    w = ", ".join(f"{n} {d}" for d, n in weights.most_common())
    a = ", ".join(f"{n} {d}" for d, n in acts.most_common())
    return f"weights: {w or 'none'}; activations of compute ops: {a or 'none'}"


def ops_by_kind(graph: LayerGraph) -> dict[str, int]:
    return dict(Counter(layer.op for layer in graph.layers()).most_common())


def model_io(graph: LayerGraph) -> dict[str, list[dict[str, Any]]]:
    return {"inputs": _io(graph, graph.main.inputs), "outputs": _io(graph, graph.main.outputs)}
