"""Bytes of a model under a configuration: each layer's weights at their stored precision.

The flatbuffer keeps everything else as it is (graph, non-compressed constants, metadata).
A quantized weight tensor stores its values (int4 packed two per byte) and its
quantization parameters (a float32 scale and an int64 zero point per channel or block); a
float16 one adds the DEQUANTIZE op and float32 tensor the converter writes to use it.
Pruned weights are stored in TFLite's sparse format (``sparse_format``: CSR on the last
dimension, read back by DENSIFY) where the materializer writes it and it is smaller;
otherwise sparsity does not shrink the flatbuffer and ``compressed_bytes`` estimates what it
saves in a compressed download (the zeroed fraction of the weight bytes plus a one-bit mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analyzer.graph import LayerGraph
from analyzer.op_roles import QUANTIZED_WEIGHTS, WEIGHT_INPUTS
from analyzer.simulation.choices import WEIGHT_BITS, LayerChoice
from analyzer.simulation.rewrite import Rewriter
from analyzer.simulation.sparse_format import sparse_bytes, storable

PARAM_BYTES = 4 + 8  # float32 scale + int64 zero point, per channel
BLOCK_PARAM_BYTES = 2  # a float16 scale per block (ai-edge-quantizer's blockwise layout)
# A DEQUANTIZE op and its float output tensor (named after the weights + "_dequant"): about
# 100 bytes plus the name (fitted on ai-edge-quantizer's output, within ~120 bytes per model).
DEQUANTIZE_OVERHEAD = 100


@dataclass(frozen=True)
class LayerWeights:
    layer: int
    tensors: tuple[tuple[int, int, tuple[int, ...], int], ...]  # (elements, channels, shape, name length)
    bias: int = 0  # elements of the float bias (quantized with the activations: int32 / int64 + per-channel scales)

    @property
    def elements(self) -> int:
        return sum(t[0] for t in self.tensors)


def layer_weights(graph: LayerGraph, rewriter: Rewriter) -> dict[int, LayerWeights]:
    out = {}
    for layer in graph.main.layers:
        tensors = []
        for t, axis in rewriter.weights_of(layer):
            tensor = graph.main.tensors[t]
            channels = tensor.shape[axis] if tensor.shape else 1
            tensors.append((tensor.elements, channels, tuple(tensor.shape), len(tensor.name.encode())))
        if tensors:
            rounded = QUANTIZED_WEIGHTS.get(layer.op, {})
            bias = sum(graph.main.tensors[layer.inputs[p]].elements for p in WEIGHT_INPUTS.get(layer.op, ())
                       if p not in rounded and p < len(layer.inputs) and layer.inputs[p] >= 0
                       and graph.main.tensors[layer.inputs[p]].is_constant
                       and graph.main.tensors[layer.inputs[p]].dtype == "float32")
            out[layer.index] = LayerWeights(layer.index, tuple(tensors), bias)
    return out


def weight_bytes(w: LayerWeights, choice: LayerChoice) -> int:
    total = 0
    for n, channels, shape, name_bytes in w.tensors:
        bits = WEIGHT_BITS[choice.weights]
        data = math.ceil(n * bits / 8)
        if choice.sparsity and storable(choice):
            nnz = n - int(round(n * choice.sparsity))  # as fake_quant.prune
            data = min(data, sparse_bytes(shape, nnz, bits // 8, channels if choice.weights == "int8" else 0))
        if choice.weights in ("int8", "int4", "int2", "int16"):
            data += (math.ceil(n / choice.block) * BLOCK_PARAM_BYTES if choice.block else channels * PARAM_BYTES)
            data += DEQUANTIZE_OVERHEAD + name_bytes
        elif choice.weights == "float16":
            data += DEQUANTIZE_OVERHEAD + name_bytes
        total += data
    if w.bias and choice.activations in ("int8", "int16"):  # int32 (int64 under int16) bias with its scales
        total += w.bias * (4 if choice.activations == "int16" else 0) + w.bias * PARAM_BYTES
    return total


def dequantize_overhead(graph: LayerGraph, layer: int) -> int:
    """Bytes a weight-only layer spends on its DEQUANTIZE ops and tensors (what writing it with
    dynamic-range kernels saves)."""
    rewriter_free = QUANTIZED_WEIGHTS.get(graph.main.layers[layer].op, {})
    names = [graph.main.tensors[graph.main.layers[layer].inputs[pos]].name for pos in rewriter_free
             if pos < len(graph.main.layers[layer].inputs) and graph.main.layers[layer].inputs[pos] >= 0]
    return sum(DEQUANTIZE_OVERHEAD + len(n.encode()) for n in names)


def compressed_bytes(w: LayerWeights, choice: LayerChoice) -> int:
    dense = weight_bytes(w, choice)
    if not choice.sparsity:
        return dense
    values = sum(math.ceil(n * WEIGHT_BITS[choice.weights] / 8) for n, _, _, _ in w.tensors)
    mask = sum(math.ceil(n / 8) for n, _, _, _ in w.tensors)
    return int(dense - values * choice.sparsity + mask)
