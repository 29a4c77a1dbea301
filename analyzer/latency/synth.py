"""Synthetic single-op models for the latency sweep, built with the schema's object API.

A spec is a plain dict: ``{"op": "CONV_2D", "variant": "int8", "h": 28, "w": 28, "cin": 32,
"cout": 64, "k": 3, "stride": 1}``. Variants: ``float32``; ``int8`` (int8 activations,
per-channel int8 weights, int32 bias); ``dynamic`` (float activations, int8 weights: the
hybrid kernels); ``float16`` (float16 weights behind a DEQUANTIZE, as the converter writes);
``int4_weightonly`` (int4 weights packed two per byte behind a DEQUANTIZE, float kernel, as
ai-edge-quantizer's weight-only recipe writes them: XNNPACK takes neither op, so both run in
the builtin kernels at every invoke); ``int4_dynamic`` (the packed int4 weights read by the
kernel itself, activations quantized on the fly: ai-edge-quantizer's dynamic int4 recipe).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from analyzer.simulation.rewrite import pack

OP = fb.BuiltinOperator
_T = {"float32": fb.TensorType.FLOAT32, "int8": fb.TensorType.INT8, "int32": fb.TensorType.INT32,
      "complex64": fb.TensorType.COMPLEX64,
      "float16": fb.TensorType.FLOAT16, "int4": fb.TensorType.INT4}
_NP = {"float32": np.float32, "int8": np.int8, "int32": np.int32, "float16": np.float16}


class _Builder:
    def __init__(self) -> None:
        self.model = fb.ModelT()
        self.model.version = 3
        self.model.description = "latency sweep"
        self.model.buffers = [fb.BufferT()]
        self.model.operatorCodes = []
        self.sg = fb.SubGraphT()
        self.sg.tensors, self.sg.operators, self.sg.inputs, self.sg.outputs = [], [], [], []
        self.sg.name = "main"
        self.rng = np.random.default_rng(0)

    def tensor(self, shape, dtype: str, *, data: np.ndarray | None = None, scale=None, zero_point=None,
               axis: int = 0, graph_input: bool = False) -> int:
        t = fb.TensorT()
        t.shape, t.type, t.name = list(shape), _T[dtype], f"t{len(self.sg.tensors)}"
        t.buffer = 0
        if data is not None:
            buf = fb.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data.astype(_NP[dtype])).tobytes(), np.uint8)
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        if scale is not None:
            q = fb.QuantizationParametersT()
            q.scale = list(np.atleast_1d(scale).astype(float))
            q.zeroPoint = list(np.atleast_1d(zero_point if zero_point is not None else 0).astype(int))
            q.quantizedDimension = axis
            t.quantization = q
        self.sg.tensors.append(t)
        if graph_input:
            self.sg.inputs.append(len(self.sg.tensors) - 1)
        return len(self.sg.tensors) - 1

    def op(self, code: int, inputs, outputs, options_type: int = 0, options: Any = None, version: int = 1) -> None:
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
        self.model.operatorCodes.append(oc)
        o = fb.OperatorT()
        o.opcodeIndex = len(self.model.operatorCodes) - 1
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.sg.operators.append(o)

    def finish(self, outputs) -> bytes:
        self.sg.outputs = list(outputs)
        self.model.subgraphs = [self.sg]
        return pack(self.model)

    def act(self, shape, variant: str, graph_input: bool = False, scale: float = 0.05, zero_point: int = -10) -> int:
        if variant == "int8":
            return self.tensor(shape, "int8", scale=scale, zero_point=zero_point, graph_input=graph_input)
        return self.tensor(shape, "float32", graph_input=graph_input)

    def weights(self, shape, variant: str, axis: int) -> int:
        w = self.rng.normal(0, 0.1, shape).astype(np.float32)
        if variant in ("int8", "dynamic"):
            channels = shape[axis]
            q = self.rng.integers(-127, 128, shape)
            return self.tensor(shape, "int8", data=q, scale=np.full(channels, 0.002), zero_point=np.zeros(channels),
                               axis=axis)
        if variant == "float16":
            half = self.tensor(shape, "float16", data=w)
            out = self.tensor(shape, "float32")
            self.op(OP.DEQUANTIZE, [half], [out], version=3)
            return out
        if variant in ("int4_weightonly", "int4_dynamic"):
            channels = shape[axis]
            q = self.rng.integers(-7, 8, int(np.prod(shape))).astype(np.int8)
            nibbles = (q & 0x0F).astype(np.uint8)
            if len(nibbles) % 2:
                nibbles = np.append(nibbles, np.uint8(0))
            packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)  # low nibble first
            t = self.tensor(shape, "int4", scale=np.full(channels, 0.01), zero_point=np.zeros(channels), axis=axis)
            buf = fb.BufferT()
            buf.data = packed
            self.model.buffers.append(buf)
            self.sg.tensors[t].buffer = len(self.model.buffers) - 1
            if variant == "int4_dynamic":  # the kernel reads the packed weights (hybrid, activations on the fly)
                return t
            out = self.tensor(shape, "float32")
            self.op(OP.DEQUANTIZE, [t], [out], version=1)  # the version ai-edge-quantizer writes
            return out
        return self.tensor(shape, "float32", data=w)

    def bias(self, n: int, variant: str) -> int:
        if variant == "int8":
            return self.tensor([n], "int32", data=self.rng.integers(-1000, 1000, n), scale=np.full(n, 1e-4),
                               zero_point=np.zeros(n))
        return self.tensor([n], "float32", data=self.rng.normal(0, 0.1, n))


def _conv_out(size: int, stride: int) -> int:
    return -(-size // stride)  # SAME padding


def build(spec: dict[str, Any]) -> bytes:
    """The single-op model for ``spec``; raises KeyError for an op kind the sweep lacks."""
    return _BUILDERS[spec["op"]](_Builder(), spec)


def _conv(b: _Builder, s: dict) -> bytes:
    v, st = s["variant"], s["stride"]
    kh, kw = s.get("kh", s["k"]), s.get("kw", s["k"])
    x = b.act([1, s["h"], s["w"], s["cin"]], v, graph_input=True)
    w = b.weights([s["cout"], kh, kw, s["cin"]], v, axis=0)
    y = b.act([1, _conv_out(s["h"], st), _conv_out(s["w"], st), s["cout"]], v, scale=0.1)
    o = fb.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = fb.Padding.SAME, st, st
    o.fusedActivationFunction = fb.ActivationFunctionType.RELU6
    o.dilationHFactor = o.dilationWFactor = 1
    b.op(OP.CONV_2D, [x, w, b.bias(s["cout"], v)], [y], fb.BuiltinOptions.Conv2DOptions, o,
         version=3 if v == "int8" else (2 if v == "dynamic" else 1))
    return b.finish([y])


def _depthwise(b: _Builder, s: dict) -> bytes:
    v, st, c = s["variant"], s["stride"], s["cin"]
    kh, kw = s.get("kh", s["k"]), s.get("kw", s["k"])
    x = b.act([1, s["h"], s["w"], c], v, graph_input=True)
    w = b.weights([1, kh, kw, c], v, axis=3)
    y = b.act([1, _conv_out(s["h"], st), _conv_out(s["w"], st), c], v, scale=0.1)
    o = fb.DepthwiseConv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.depthMultiplier = fb.Padding.SAME, st, st, 1
    o.fusedActivationFunction = fb.ActivationFunctionType.RELU6
    o.dilationHFactor = o.dilationWFactor = 1
    b.op(OP.DEPTHWISE_CONV_2D, [x, w, b.bias(c, v)], [y], fb.BuiltinOptions.DepthwiseConv2DOptions, o,
         version=3 if v == "int8" else (6 if v == "dynamic" else 1))
    return b.finish([y])


def _fully_connected(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    x = b.act([s.get("batch", 1), s["cin"]], v, graph_input=True)
    w = b.weights([s["cout"], s["cin"]], v, axis=0)
    y = b.act([s.get("batch", 1), s["cout"]], v, scale=0.1)
    o = fb.FullyConnectedOptionsT()
    o.fusedActivationFunction = fb.ActivationFunctionType.NONE
    b.op(OP.FULLY_CONNECTED, [x, w, b.bias(s["cout"], v)], [y], fb.BuiltinOptions.FullyConnectedOptions, o,
         version=4 if v == "int8" else (3 if v == "dynamic" else 1))
    return b.finish([y])


def _shape(s: dict) -> list[int]:
    return [1, s["h"], s["w"], s["cin"]]


def _binary(code: int, options_type: int, options_cls):
    def build_binary(b: _Builder, s: dict) -> bytes:
        v = s["variant"]
        other = [1, 1, 1, s["cin"]] if s.get("broadcast") else _shape(s)
        x, z = b.act(_shape(s), v, graph_input=True), b.act(other, v, graph_input=True)
        y = b.act(_shape(s), v, scale=0.1)
        b.op(code, [x, z], [y], options_type, options_cls(), version=2 if v == "int8" else 1)
        return b.finish([y])
    return build_binary


def _pool(code: int):
    def build_pool(b: _Builder, s: dict) -> bytes:
        v, k, st = s["variant"], s["k"], s["stride"]
        x = b.act(_shape(s), v, graph_input=True)
        y = b.act([1, _conv_out(s["h"], st), _conv_out(s["w"], st), s["cin"]], v)
        o = fb.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = fb.Padding.SAME, st, st, k, k
        b.op(code, [x], [y], fb.BuiltinOptions.Pool2DOptions, o, version=2 if v == "int8" else 1)
        return b.finish([y])
    return build_pool


def _mean(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    x = b.act(_shape(s), v, graph_input=True)
    axes = b.tensor([2], "int32", data=np.array([1, 2]))
    y = b.act([1, s["cin"]], v)
    o = fb.ReducerOptionsT()
    o.keepDims = False
    b.op(OP.MEAN, [x, axes], [y], fb.BuiltinOptions.ReducerOptions, o, version=2 if v == "int8" else 1)
    return b.finish([y])


def _pad(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    x = b.act(_shape(s), v, graph_input=True)
    pad_c = s.get("pad_c", 0)  # channel padding: the shortcut of a block that widens
    grow = 0 if pad_c else 1
    pads = b.tensor([4, 2], "int32", data=np.array([[0, 0], [0, grow], [0, grow], [0, pad_c]]))
    y = b.act([1, s["h"] + grow, s["w"] + grow, s["cin"] + pad_c], v)
    b.op(OP.PAD, [x, pads], [y], fb.BuiltinOptions.PadOptions, fb.PadOptionsT(), version=2 if v == "int8" else 1)
    return b.finish([y])


def _concat(b: _Builder, s: dict) -> bytes:
    v, parts, axis = s["variant"], s.get("parts", 2), s.get("axis", 3)
    xs = [b.act(_shape(s), v, graph_input=True) for _ in range(parts)]
    out = _shape(s)
    out[axis] *= parts
    y = b.act(out, v)
    o = fb.ConcatenationOptionsT()
    o.axis = axis
    b.op(OP.CONCATENATION, xs, [y], fb.BuiltinOptions.ConcatenationOptions, o, version=2 if v == "int8" else 1)
    return b.finish([y])


def _unary(code: int, options_type: int = 0, options_cls=None, out_scale: float | None = None,
           int8_version: int = 2):
    def build_unary(b: _Builder, s: dict) -> bytes:
        v = s["variant"]
        x = b.act(_shape(s), v, graph_input=True)
        y = b.act(_shape(s), v, scale=out_scale or 0.05, zero_point=-128 if out_scale else -10)
        b.op(code, [x], [y], options_type, options_cls() if options_cls else None,
             version=int8_version if v == "int8" else 1)
        return b.finish([y])
    return build_unary


def _softmax(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    shape = [1, s.get("rows", 1), s["cin"]]  # rows: attention scores [heads * queries, keys]
    x = b.act(shape, v, graph_input=True)
    y = b.act(shape, v, scale=1 / 256, zero_point=-128)
    o = fb.SoftmaxOptionsT()
    o.beta = 1.0
    b.op(OP.SOFTMAX, [x], [y], fb.BuiltinOptions.SoftmaxOptions, o, version=2 if v == "int8" else 1)
    return b.finish([y])


def _reshape(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    x = b.act(_shape(s), v, graph_input=True)
    shape = b.tensor([2], "int32", data=np.array([1, s["h"] * s["w"] * s["cin"]]))
    y = b.act([1, s["h"] * s["w"] * s["cin"]], v)
    b.op(OP.RESHAPE, [x, shape], [y], fb.BuiltinOptions.ReshapeOptions, fb.ReshapeOptionsT())
    return b.finish([y])


def _quantize(b: _Builder, s: dict) -> bytes:
    x = b.act(_shape(s), "float32", graph_input=True)
    y = b.act(_shape(s), "int8")
    b.op(OP.QUANTIZE, [x], [y])
    return b.finish([y])


def _dequantize(b: _Builder, s: dict) -> bytes:
    x = b.act(_shape(s), "int8", graph_input=True)
    y = b.act(_shape(s), "float32")
    b.op(OP.DEQUANTIZE, [x], [y], version=2)
    return b.finish([y])


def _transpose(b: _Builder, s: dict) -> bytes:
    v, perm = s["variant"], s.get("perm", (0, 2, 1, 3))
    x = b.act(_shape(s), v, graph_input=True)
    p = b.tensor([4], "int32", data=np.array(perm))
    y = b.act([_shape(s)[i] for i in perm], v)
    b.op(OP.TRANSPOSE, [x, p], [y], fb.BuiltinOptions.TransposeOptions, fb.TransposeOptionsT(),
         version=2 if v == "int8" else 1)
    return b.finish([y])


def _strided_slice(b: _Builder, s: dict) -> bytes:
    v, shape = s["variant"], _shape(s)
    axis = s.get("axis", 3)
    end = list(shape)
    end[axis] = max(1, shape[axis] // 2)
    x = b.act(shape, v, graph_input=True)
    begin_t = b.tensor([4], "int32", data=np.zeros(4))
    end_t = b.tensor([4], "int32", data=np.array(end))
    stride_t = b.tensor([4], "int32", data=np.ones(4))
    y = b.act(end, v)
    b.op(OP.STRIDED_SLICE, [x, begin_t, end_t, stride_t], [y], fb.BuiltinOptions.StridedSliceOptions,
         fb.StridedSliceOptionsT(), version=2 if v == "int8" else 1)
    return b.finish([y])


def _mirror_pad(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    x = b.act(_shape(s), v, graph_input=True)
    pads = b.tensor([4, 2], "int32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]]))
    y = b.act([1, s["h"] + 2, s["w"] + 2, s["cin"]], v)
    o = fb.MirrorPadOptionsT()
    o.mode = fb.MirrorPadMode.REFLECT
    b.op(OP.MIRROR_PAD, [x, pads], [y], fb.BuiltinOptions.MirrorPadOptions, o)
    return b.finish([y])


def _resize(code: int, options_type: int, options_cls):
    def build_resize(b: _Builder, s: dict) -> bytes:
        v = s["variant"]
        x = b.act(_shape(s), v, graph_input=True)
        size = b.tensor([2], "int32", data=np.array([s["h"] * 2, s["w"] * 2]))
        y = b.act([1, s["h"] * 2, s["w"] * 2, s["cin"]], v)
        o = options_cls()
        o.halfPixelCenters = True
        b.op(code, [x, size], [y], options_type, o, version=3 if v == "int8" else 1)
        return b.finish([y])
    return build_resize


def _prelu(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    x = b.act(_shape(s), v, graph_input=True)
    alpha = b.tensor([1, 1, s["cin"]], "float32", data=b.rng.uniform(0, 0.3, (1, 1, s["cin"])))
    y = b.act(_shape(s), v)
    b.op(OP.PRELU, [x, alpha], [y])
    return b.finish([y])


def _batch_matmul(b: _Builder, s: dict) -> bytes:
    v, m, k, n = s["variant"], s["m"], s["k"], s["n"]
    x = b.act([s.get("batch", 1), m, k], v, graph_input=True)
    z = b.act([s.get("batch", 1), k, n], v, graph_input=True)
    y = b.act([s.get("batch", 1), m, n], v)
    b.op(OP.BATCH_MATMUL, [x, z], [y], fb.BuiltinOptions.BatchMatMulOptions, fb.BatchMatMulOptionsT())
    return b.finish([y])


def _pack(b: _Builder, s: dict) -> bytes:
    v, parts, axis = s["variant"], s.get("parts", 2), s.get("axis", 0)
    shape = [s["h"], s["w"], s["cin"]]
    xs = [b.act(shape, v, graph_input=True) for _ in range(parts)]
    y = b.act(shape[:axis] + [parts] + shape[axis:], v)
    o = fb.PackOptionsT()
    o.valuesCount, o.axis = parts, axis
    b.op(OP.PACK, xs, [y], fb.BuiltinOptions.PackOptions, o)
    return b.finish([y])


def _sum(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    x = b.act(_shape(s), v, graph_input=True)
    axis = s.get("axis", 3)
    axes = b.tensor([1], "int32", data=np.array([axis]))
    y = b.act([d for i, d in enumerate(_shape(s)) if i != axis], v)
    o = fb.ReducerOptionsT()
    o.keepDims = False
    b.op(OP.SUM, [x, axes], [y], fb.BuiltinOptions.ReducerOptions, o)
    return b.finish([y])


def _gather(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    table = b.tensor([s["cin"] * 8, s["w"]], "float32", data=b.rng.normal(0, 1, (s["cin"] * 8, s["w"])))
    idx = b.tensor([s["h"]], "int32", data=b.rng.integers(0, s["cin"] * 8, s["h"]))
    y = b.act([s["h"], s["w"]], v)
    o = fb.GatherOptionsT()
    o.axis = 0
    b.op(OP.GATHER, [table, idx], [y], fb.BuiltinOptions.GatherOptions, o)
    return b.finish([y])


def _depth_to_space(b: _Builder, s: dict) -> bytes:
    v = s["variant"]
    c = max(4, s["cin"] - s["cin"] % 4)
    x = b.act([1, s["h"], s["w"], c], v, graph_input=True)
    y = b.act([1, s["h"] * 2, s["w"] * 2, c // 4], v)
    o = fb.DepthToSpaceOptionsT()
    o.blockSize = 2
    b.op(OP.DEPTH_TO_SPACE, [x], [y], fb.BuiltinOptions.DepthToSpaceOptions, o)
    return b.finish([y])



def _transpose_conv(b: _Builder, s: dict) -> bytes:
    v, k, st = s["variant"], s["k"], s["stride"]
    out_shape = [1, s["h"] * st, s["w"] * st, s["cout"]]
    shape = b.tensor([4], "int32", data=np.array(out_shape))
    w = b.weights([s["cout"], k, k, s["cin"]], v, axis=0)
    x = b.act(_shape(s), v, graph_input=True)
    y = b.act(out_shape, v, scale=0.1)
    o = fb.TransposeConvOptionsT()
    o.padding, o.strideH, o.strideW = fb.Padding.SAME, st, st
    b.op(OP.TRANSPOSE_CONV, [shape, w, x, b.bias(s["cout"], v)], [y], fb.BuiltinOptions.TransposeConvOptions, o,
         version=3 if v == "int8" else 4)
    return b.finish([y])


def _rfft2d(b: _Builder, s: dict) -> bytes:
    n = s["cin"]  # frames of n samples -> n // 2 + 1 complex bins each, as audio front ends use it
    x = b.tensor([s["h"], 1, n], "float32", graph_input=True)
    length = b.tensor([2], "int32", data=np.array([1, n]))
    y = b.tensor([s["h"], 1, n // 2 + 1], "complex64")
    b.op(OP.RFFT2D, [x, length], [y], fb.BuiltinOptions.Rfft2dOptions, fb.Rfft2dOptionsT())
    return b.finish([y])


_BUILDERS = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
    "ADD": _binary(OP.ADD, fb.BuiltinOptions.AddOptions, fb.AddOptionsT),
    "MUL": _binary(OP.MUL, fb.BuiltinOptions.MulOptions, fb.MulOptionsT),
    "AVERAGE_POOL_2D": _pool(OP.AVERAGE_POOL_2D), "MAX_POOL_2D": _pool(OP.MAX_POOL_2D),
    "MEAN": _mean, "PAD": _pad, "CONCATENATION": _concat, "SOFTMAX": _softmax, "RESHAPE": _reshape,
    "HARD_SWISH": _unary(OP.HARD_SWISH, fb.BuiltinOptions.HardSwishOptions, fb.HardSwishOptionsT, int8_version=1),
    "LOGISTIC": _unary(OP.LOGISTIC, out_scale=1 / 256),
    "QUANTIZE": _quantize, "DEQUANTIZE": _dequantize,
    "TRANSPOSE": _transpose, "STRIDED_SLICE": _strided_slice, "MIRROR_PAD": _mirror_pad,
    "RESIZE_BILINEAR": _resize(OP.RESIZE_BILINEAR, fb.BuiltinOptions.ResizeBilinearOptions, fb.ResizeBilinearOptionsT),
    "RESIZE_NEAREST_NEIGHBOR": _resize(OP.RESIZE_NEAREST_NEIGHBOR, fb.BuiltinOptions.ResizeNearestNeighborOptions,
                                       fb.ResizeNearestNeighborOptionsT),
    "SUB": _binary(OP.SUB, fb.BuiltinOptions.SubOptions, fb.SubOptionsT),
    "MAXIMUM": _binary(OP.MAXIMUM, fb.BuiltinOptions.MaximumMinimumOptions, fb.MaximumMinimumOptionsT),
    "DIV": _binary(OP.DIV, fb.BuiltinOptions.DivOptions, fb.DivOptionsT),
    "SQUARED_DIFFERENCE": _binary(OP.SQUARED_DIFFERENCE, fb.BuiltinOptions.SquaredDifferenceOptions,
                                  fb.SquaredDifferenceOptionsT),
    "RELU": _unary(OP.RELU), "TANH": _unary(OP.TANH), "RSQRT": _unary(OP.RSQRT), "NEG": _unary(OP.NEG),
    "LEAKY_RELU": _unary(OP.LEAKY_RELU, fb.BuiltinOptions.LeakyReluOptions, fb.LeakyReluOptionsT),
    "PRELU": _prelu, "BATCH_MATMUL": _batch_matmul, "PACK": _pack, "SUM": _sum, "GATHER": _gather,
    "DEPTH_TO_SPACE": _depth_to_space, "TRANSPOSE_CONV": _transpose_conv, "RFFT2D": _rfft2d,
}
SWEPT_OPS = tuple(_BUILDERS)
