"""Cost pass: parameters, weight bytes, MACs and activation memory per layer.

MACs are counted per op kind by functions registered with :func:`register_op_cost`;
an op kind with no entry moves data only and costs 0 MACs (RESHAPE, CONCATENATION...).
Conventions (the same as the usual FLOP counters): a multiply-accumulate is one MAC;
pooling counts one per window element; elementwise ops and activations one per output
element; reductions one per input element. FLOPs are about 2 x MACs for conv/matmul.

Peak activation memory is the largest sum of live non-constant tensors over the
execution order, a lower bound of the arena LiteRT's planner allocates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from analyzer.dtypes import WEIGHT_TYPES
from analyzer.graph import Layer, LayerGraph, Tensor
from analyzer.op_roles import WEIGHT_INPUTS

CostFn = Callable[[Layer, list, list], int]
_MACS: dict[str, CostFn] = {}


def register_op_cost(*ops: str) -> Callable[[CostFn], CostFn]:
    """Register a MAC counter ``fn(layer, inputs, outputs) -> int`` for the given op names."""

    def deco(fn: CostFn) -> CostFn:
        for op in ops:
            _MACS[op] = fn
        return fn

    return deco


def _elems(t: Tensor | None) -> int:
    return t.elements if t is not None else 0


def _arg(seq: list, i: int) -> Tensor | None:
    """The i-th tensor of an op's inputs or outputs, None if absent (a damaged op may lack it)."""
    return seq[i] if -len(seq) <= i < len(seq) else None


def _weight(ins: list, i: int, rank: int) -> Tensor | None:
    w = _arg(ins, i)
    return w if w is not None and len(w.shape) == rank else None


@register_op_cost("CONV_2D")
def _conv2d(layer: Layer, ins: list, outs: list) -> int:
    w = _weight(ins, 1, 4)  # [out_c, kh, kw, in_c / groups]
    return _elems(_arg(outs, 0)) * w.shape[1] * w.shape[2] * w.shape[3] if w else 0


@register_op_cost("DEPTHWISE_CONV_2D")
def _depthwise(layer: Layer, ins: list, outs: list) -> int:
    w = _weight(ins, 1, 4)  # [1, kh, kw, out_c]
    return _elems(_arg(outs, 0)) * w.shape[1] * w.shape[2] if w else 0


@register_op_cost("TRANSPOSE_CONV")
def _transpose_conv(layer: Layer, ins: list, outs: list) -> int:
    w = _weight(ins, 1, 4)  # [out_c, kh, kw, in_c]; every input pixel scatters a kernel
    return _elems(_arg(ins, 2)) * w.shape[0] * w.shape[1] * w.shape[2] if w else 0


@register_op_cost("Convolution2DTransposeBias")
def _mediapipe_transpose_conv(layer: Layer, ins: list, outs: list) -> int:
    """MediaPipe's custom transposed convolution (inputs: x, weights [out_c, kh, kw, in_c], bias),
    which XNNPACK runs natively."""
    w = _weight(ins, 1, 4)
    return _elems(_arg(ins, 0)) * w.shape[0] * w.shape[1] * w.shape[2] if w else 0


@register_op_cost("CONV_3D")
def _conv3d(layer: Layer, ins: list, outs: list) -> int:
    w = _weight(ins, 1, 5)  # [kd, kh, kw, in_c, out_c]
    return _elems(_arg(outs, 0)) * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3] if w else 0


@register_op_cost("CONV_3D_TRANSPOSE")
def _conv3d_transpose(layer: Layer, ins: list, outs: list) -> int:
    w = _weight(ins, 1, 5)  # [kd, kh, kw, out_c, in_c]; every input voxel scatters a kernel
    return _elems(_arg(ins, 2)) * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3] if w else 0


@register_op_cost("FULLY_CONNECTED")
def _fully_connected(layer: Layer, ins: list, outs: list) -> int:
    w = _weight(ins, 1, 2)  # [units, in_features]
    return _elems(_arg(outs, 0)) * w.shape[1] if w else 0


@register_op_cost("BATCH_MATMUL")
def _batch_matmul(layer: Layer, ins: list, outs: list) -> int:
    a = _arg(ins, 0)
    if a is None or len(a.shape) < 2:
        return 0
    k = a.shape[-2] if layer.options.get("adj_x") else a.shape[-1]
    return _elems(_arg(outs, 0)) * k


@register_op_cost("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D")
def _pool(layer: Layer, ins: list, outs: list) -> int:
    o = layer.options
    return _elems(_arg(outs, 0)) * int(o.get("filter_height", 1)) * int(o.get("filter_width", 1))


@register_op_cost("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY",
                  "REDUCE_ALL", "SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION",
                  "LOCAL_RESPONSE_NORMALIZATION", "ARG_MAX", "ARG_MIN", "CUMSUM")
def _reduce(layer: Layer, ins: list, outs: list) -> int:
    return _elems(_arg(ins, 0))


@register_op_cost(
    "ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "POW", "FLOOR_DIV",
    "FLOOR_MOD", "ADD_N", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU",
    "LOGISTIC", "TANH", "HARD_SWISH", "GELU", "ELU", "EXP", "LOG", "SQRT", "RSQRT", "SQUARE",
    "ABS", "NEG", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SIGN", "QUANTIZE", "DEQUANTIZE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SELECT", "SELECT_V2", "LESS", "GREATER",
    "EQUAL", "NOT_EQUAL", "LESS_EQUAL", "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR",
    "LOGICAL_NOT", "CAST", "ATAN2")
def _elementwise(layer: Layer, ins: list, outs: list) -> int:
    x = _arg(ins, 0)
    if layer.op == "DEQUANTIZE" and x is not None and x.is_constant:
        return 0  # weight decompression runs once when the interpreter is prepared
    return _elems(_arg(outs, 0))


@register_op_cost("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM")
def _lstm(layer: Layer, ins: list, outs: list) -> int:
    """Per step, each gate present multiplies the input and the previous output by its weights.

    Gates: input (weights at 1 and 5, absent in CIFG LSTMs), forget (2, 6), cell (3, 7),
    output (4, 8); bidirectional LSTMs repeat the layout for the backward direction at 18.
    """
    x = _arg(ins, 0)
    if x is None or len(x.shape) < 2:
        return 0
    steps = math.prod(x.shape[:-1])  # time x batch
    total = 0
    for base in ((0, 17) if layer.op == "BIDIRECTIONAL_SEQUENCE_LSTM" else (0,)):
        for w_in, w_rec in ((1, 5), (2, 6), (3, 7), (4, 8)):
            a, b = _weight(ins, base + w_in, 2), _weight(ins, base + w_rec, 2)
            if a is not None:
                total += a.shape[0] * a.shape[1]
            if b is not None:
                total += b.shape[0] * b.shape[1]
    return steps * total


@register_op_cost("UNIDIRECTIONAL_SEQUENCE_RNN", "RNN")
def _rnn(layer: Layer, ins: list, outs: list) -> int:
    x, w, w_rec = _arg(ins, 0), _weight(ins, 1, 2), _weight(ins, 2, 2)  # w: [units, input]
    if x is None or w is None:
        return 0
    per_step = w.shape[0] * w.shape[1] + (w_rec.shape[0] * w_rec.shape[1] if w_rec else 0)
    return math.prod(x.shape[:-1]) * per_step


@register_op_cost("SVDF")
def _svdf(layer: Layer, ins: list, outs: list) -> int:
    x, w_feat, w_time = _arg(ins, 0), _weight(ins, 1, 2), _weight(ins, 2, 2)
    if x is None or w_feat is None or w_time is None:
        return 0  # w_feat: [filters, input]; w_time: [filters, memory]
    return math.prod(x.shape[:-1]) * w_feat.shape[0] * (w_feat.shape[1] + w_time.shape[1])


@register_op_cost("EMBEDDING_LOOKUP", "GATHER")
def _lookup(layer: Layer, ins: list, outs: list) -> int:
    return 0  # data movement


def op_macs(layer: Layer, ins: list, outs: list) -> int:
    fn = _MACS.get(layer.op)
    return int(fn(layer, ins, outs)) if fn else 0


@dataclass(frozen=True)
class LayerCost:
    subgraph: int
    index: int
    name: str
    op: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    params: int
    weight_bytes: int
    weight_dtypes: tuple[str, ...]
    macs: int
    output_bytes: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shapes"] = [list(s) for s in self.input_shapes]
        d["output_shapes"] = [list(s) for s in self.output_shapes]
        d["weight_dtypes"] = list(self.weight_dtypes)
        return d


@dataclass(frozen=True)
class MemoryPeak:
    bytes: int
    at_layer: int  # execution index in the main subgraph where the peak happens
    live_tensors: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "at_layer": self.at_layer, "live_tensors": list(self.live_tensors)}


@dataclass(frozen=True)
class CostResult:
    layers: tuple[LayerCost, ...]
    params: int
    macs: int
    weight_bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    peak_activation: MemoryPeak | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params, "macs": self.macs,
            "weight_bytes_by_dtype": dict(self.weight_bytes_by_dtype),
            "peak_activation_memory": self.peak_activation.to_dict() if self.peak_activation else None,
            "layers": [lc.to_dict() for lc in self.layers],
        }


def weight_inputs(graph: LayerGraph, layer: Layer,
                  producers: dict[int, Layer] | None = None) -> list[tuple[int, Tensor]]:
    """The (subgraph, tensor) constants that are this layer's parameters.

    A constant reached through a DEQUANTIZE (float16 or int8 weights decompressed at load)
    counts as the consumer's weight, not the DEQUANTIZE's.
    """
    if producers is None:
        producers = graph.producers(layer.subgraph)
    params = WEIGHT_INPUTS.get(layer.op, ())
    out = []
    for pos, t in enumerate(layer.inputs):
        if t < 0:
            continue
        tensor = graph.tensor(layer.subgraph, t)
        src = producers.get(t)
        if tensor.buffer is None and src is not None and src.op == "DEQUANTIZE" \
                and src.inputs and src.inputs[0] >= 0:
            tensor = graph.tensor(layer.subgraph, src.inputs[0])
        if tensor.buffer is None or layer.op == "DEQUANTIZE":
            continue
        if tensor.dtype in WEIGHT_TYPES or pos in params:
            out.append((t, tensor))
    return out


def analyze_cost(graph: LayerGraph) -> CostResult:
    """Per-layer and total cost of every subgraph's layers."""
    rows = []
    seen: dict[object, Tensor] = {}  # keyed by buffer: a weight two subgraphs share counts once
    producers = {sg.index: graph.producers(sg.index) for sg in graph.subgraphs}
    for layer in graph.layers():
        ins, outs = graph.inputs_of(layer), graph.outputs_of(layer)
        weights = weight_inputs(graph, layer, producers[layer.subgraph])
        for t, tensor in weights:
            seen[tensor.buffer] = tensor
        rows.append(LayerCost(
            subgraph=layer.subgraph, index=layer.index, name=layer.name, op=layer.op,
            input_shapes=tuple(t.shape for t in ins if t is not None and t.buffer is None),
            output_shapes=tuple(t.shape for t in outs),
            params=sum(w.elements for _, w in weights),
            weight_bytes=sum(w.nbytes for _, w in weights),
            weight_dtypes=tuple(sorted({w.dtype for _, w in weights})),
            macs=op_macs(layer, ins, outs),
            output_bytes=sum(t.nbytes for t in outs if t.buffer is None),
        ))
    by_dtype: dict[str, int] = {}
    for tensor in seen.values():  # shared weights counted once
        by_dtype[tensor.dtype] = by_dtype.get(tensor.dtype, 0) + tensor.nbytes
    return CostResult(
        layers=tuple(rows),
        params=sum(t.elements for t in seen.values()),
        macs=sum(r.macs for r in rows),
        weight_bytes_by_dtype=dict(sorted(by_dtype.items())),
        peak_activation=peak_activation_memory(graph),
    )


def peak_activation_memory(graph: LayerGraph, subgraph: int = 0) -> MemoryPeak:
    """Largest total size of tensors alive at once, in execution order.

    A tensor lives from the step that writes it (0 for graph inputs) to the last step
    that reads it (the end for graph outputs). Constants and variables are not arena
    memory and are left out. A sweep over lifetime starts and ends: linear in the graph.
    """
    sg = graph.subgraphs[subgraph]
    n = max(len(sg.layers), 1)
    first: dict[int, int] = {t: 0 for t in sg.inputs}
    last: dict[int, int] = {t: n - 1 for t in sg.outputs}
    for step, layer in enumerate(sg.layers):
        for t in layer.outputs:
            if t >= 0:
                first.setdefault(t, step)
        for t in layer.inputs:
            if t >= 0:
                last[t] = max(last.get(t, step), step)
    spans = []
    delta = [0] * (n + 1)
    for t, start in first.items():
        tensor = sg.tensors[t]
        if tensor.buffer is not None or tensor.is_variable:
            continue
        end = min(max(last.get(t, start), start), n - 1)
        spans.append((t, start, end))
        delta[start] += tensor.nbytes
        delta[end + 1] -= tensor.nbytes
    live, peak, peak_step = 0, -1, 0
    for step in range(n):
        live += delta[step]
        if live > peak:
            peak, peak_step = live, step
    members = tuple(sorted(t for t, a, b in spans if a <= peak_step <= b))
    return MemoryPeak(max(peak, 0), peak_step, members)
