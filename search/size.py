"""Bytes of a model under a configuration: each layer's weights at their stored precision.

The flatbuffer keeps everything else as it is (graph, non-compressed constants, metadata).
A quantized weight tensor stores its values (int4 packed two per byte) and its
quantization parameters (a float32 scale and an int64 zero point per channel or block); a
float16 one adds the DEQUANTIZE op and float32 tensor the converter writes to use it.
Sparsity does not shrink a dense flatbuffer; ``compressed_bytes`` estimates what it saves
in a compressed download (the zeroed fraction of the weight bytes plus a one-bit mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analyzer.graph import LayerGraph
from analyzer.simulation.choices import LayerChoice
from analyzer.simulation.rewrite import Rewriter

_BITS = {"float32": 32, "float16": 16, "int16": 16, "int8": 8, "int4": 4, "int2": 2}
PARAM_BYTES = 4 + 8  # float32 scale + int64 zero point, per channel
BLOCK_PARAM_BYTES = 2  # a float16 scale per block (ai-edge-quantizer's blockwise layout)
DEQUANTIZE_OVERHEAD = 96  # an extra op and tensor table in the flatbuffer (measured on converter output)


@dataclass(frozen=True)
class LayerWeights:
    layer: int
    tensors: tuple[tuple[int, int, int], ...]  # (elements, channels, channel axis length product)

    @property
    def elements(self) -> int:
        return sum(n for n, _, _ in self.tensors)


def layer_weights(graph: LayerGraph, rewriter: Rewriter) -> dict[int, LayerWeights]:
    out = {}
    for layer in graph.main.layers:
        tensors = []
        for t, axis in rewriter.weights_of(layer):
            tensor = graph.main.tensors[t]
            channels = tensor.shape[axis] if tensor.shape else 1
            tensors.append((tensor.elements, channels, 0))
        if tensors:
            out[layer.index] = LayerWeights(layer.index, tuple(tensors))
    return out


SPARSE_WEIGHTS = ("float32", "int8")  # the sparse formats the runtime reads
SPARSITY_OVERHEAD = 64  # the SparsityParameters table and its DimensionMetadata


def _index_bytes(limit: int) -> int:
    return 1 if limit < 2**8 else (2 if limit < 2**16 else 4)


def _sparse_values(n: int, channels: int, bits: int, sparsity: float) -> int:
    nnz = math.ceil(n * (1 - sparsity))
    rest = max(1, n // max(1, channels))
    return (nnz * bits // 8 + nnz * _index_bytes(rest) + (channels + 1) * _index_bytes(nnz + 1)
            + SPARSITY_OVERHEAD)


def weight_bytes(w: LayerWeights, choice: LayerChoice) -> int:
    total = 0
    for n, channels, _ in w.tensors:
        bits = _BITS[choice.weights]
        data = math.ceil(n * bits / 8)
        if choice.sparsity and choice.weights in SPARSE_WEIGHTS:
            data = min(data, _sparse_values(n, channels, bits, choice.sparsity))
        if choice.weights in ("int8", "int4", "int2", "int16"):
            data += (math.ceil(n / choice.block) * BLOCK_PARAM_BYTES if choice.block else channels * PARAM_BYTES)
            data += DEQUANTIZE_OVERHEAD
        elif choice.weights == "float16":
            data += DEQUANTIZE_OVERHEAD
        total += data
    return total


def compressed_bytes(w: LayerWeights, choice: LayerChoice) -> int:
    dense = weight_bytes(w, choice)
    if not choice.sparsity:
        return dense
    values = sum(math.ceil(n * _BITS[choice.weights] / 8) for n, _, _ in w.tensors)
    mask = sum(math.ceil(n / 8) for n, _, _ in w.tensors)
    return int(dense - values * choice.sparsity + mask)
