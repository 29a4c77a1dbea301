"""What an op's latency depends on, as numbers: one function for sweep ops and real models alike.

Features are computed from the layer graph, so a single-op model from the sweep and the same
op inside a real model get the same description. The ``variant`` says which kernels run:
``float32``, ``float16`` (float16 weights behind a DEQUANTIZE), ``int8`` (int8 activations),
``dynamic`` (float activations with int8 weights), ``int16`` (16x8 activations).
"""

from __future__ import annotations

import math

from analyzer.passes.cost import op_macs
from analyzer.graph import Layer, LayerGraph

FEATURES = ("macs", "in_elems", "out_elems", "w_elems", "kernel", "stride", "cin", "cout", "out_hw", "inputs")
VARIANTS = ("float32", "float16", "int8", "dynamic", "int16")


def variant_of(graph: LayerGraph, layer: Layer, producers: dict | None = None) -> str:
    tensors = graph.subgraphs[layer.subgraph].tensors
    acts = [tensors[i] for i in layer.inputs if i >= 0 and not tensors[i].is_constant]
    acts += [tensors[i] for i in layer.outputs if i >= 0]
    if any(t.dtype == "uint8" for t in acts) and layer.op not in ("QUANTIZE", "DEQUANTIZE"):
        return "uint8"  # the old converter's asymmetric quantization: other kernels than int8's
    if any(t.dtype == "int8" for t in acts) and layer.op not in ("QUANTIZE", "DEQUANTIZE"):
        return "int8"
    if any(t.dtype == "int16" for t in acts):
        return "int16"
    weights = [tensors[i] for i in layer.inputs[1:] if i >= 0 and tensors[i].is_constant]
    if any(t.dtype in ("int4", "int2") for t in weights):
        return "int4_dynamic"  # packed weights read by the hybrid kernel
    if any(t.dtype in ("int8", "uint8") for t in weights):
        return "dynamic"
    producers = producers if producers is not None else graph.producers(layer.subgraph)
    for i in layer.inputs[1:]:
        p = producers.get(i)
        if p is not None and p.op == "DEQUANTIZE" and all(_static(graph, p, j, producers) for j in p.inputs if j >= 0):
            packed = any(tensors[j].dtype in ("int4", "int2") for j in p.inputs if j >= 0)
            return "int4_weightonly" if packed else "float16"
    return "float32"


FOLDED_OPS = ("DEQUANTIZE", "DENSIFY")


def _static(graph: LayerGraph, layer: Layer, i: int, producers: dict) -> bool:
    """Tensor ``i`` is a constant, or the output of a constant-folded op (weights unpacked once)."""
    t = graph.subgraphs[layer.subgraph].tensors[i]
    if t.is_constant:
        return True
    p = producers.get(i)
    return p is not None and constant_folded(graph, p, producers)


def constant_folded(graph: LayerGraph, layer: Layer, producers: dict | None = None) -> bool:
    """A DEQUANTIZE or DENSIFY of constant weights (stored small or sparse): float16 and int8
    are unpacked once when the model is prepared (the interpreter and XNNPACK both do), and so
    are sparse weights; an int4 DEQUANTIZE runs at every invoke, and its time is counted in the
    layer that reads it (the ``int4_weightonly`` variant, timed as the pair)."""
    if layer.op not in FOLDED_OPS:
        return False
    producers = producers if producers is not None else graph.producers(layer.subgraph)
    return all(_static(graph, layer, i, producers) for i in layer.inputs if i >= 0)


# recurrent ops that run their cell once per time step (``out_hw`` counts the steps)
SEQUENCE_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
                          "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN"})


def op_features(graph: LayerGraph, layer: Layer, producers: dict | None = None) -> dict[str, float]:
    tensors = graph.subgraphs[layer.subgraph].tensors
    producers = producers if producers is not None else graph.producers(layer.subgraph)
    ins = [tensors[i] if i >= 0 else None for i in layer.inputs]
    outs = [tensors[i] for i in layer.outputs if i >= 0]
    static = {i for i in layer.inputs if i >= 0 and _static(graph, layer, i, producers)}
    acts = [tensors[i] for i in layer.inputs if i >= 0 and i not in static]
    weights = [tensors[i] for i in layer.inputs if i in static]
    w = ins[1] if len(ins) > 1 and ins[1] is not None else None
    first_in = acts[0] if acts else None
    out = outs[0] if outs else None
    kernel = stride = 1.0
    opts = layer.options or {}
    if layer.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and w is not None and len(w.shape) == 4:
        kernel = float(w.shape[1] * w.shape[2])
        stride = float(max(opts.get("stride_h", opts.get("strideH", 1)) or 1,  # 1-D audio convolutions
                           opts.get("stride_w", opts.get("strideW", 1)) or 1))  # stride along W only
    elif layer.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        kernel = float((opts.get("filter_height", opts.get("filterHeight", 1)) or 1)
                       * (opts.get("filter_width", opts.get("filterWidth", 1)) or 1))
        stride = float(opts.get("stride_h", opts.get("strideH", 1)) or 1)
    out_hw = float(out.shape[1] * out.shape[2]) if out is not None and len(out.shape) == 4 else 1.0
    if layer.op in SEQUENCE_OPS and out is not None and len(out.shape) == 3:  # time steps, one after another
        out_hw = float(out.shape[0] * out.shape[1])
    return {
        "macs": float(op_macs(layer, ins, outs)),
        "in_elems": float(sum(t.elements for t in acts)),
        "out_elems": float(sum(t.elements for t in outs)),
        "w_elems": float(sum(t.elements for t in weights)),
        "kernel": kernel, "stride": stride,
        "cin": float(first_in.shape[-1]) if first_in is not None and first_in.shape else 1.0,
        "cout": float(out.shape[-1]) if out is not None and out.shape else 1.0,
        "out_hw": out_hw, "inputs": float(len(acts)),
    }


def log_vector(f: dict[str, float]) -> list[float]:
    return [math.log1p(max(0.0, f[k])) for k in FEATURES]
