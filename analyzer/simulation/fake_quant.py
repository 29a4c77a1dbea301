"""Quantize-dequantize and magnitude pruning in numpy: what a compressed layer computes.

Weights: symmetric integer quantization with one scale per output channel (or per block
of ``block`` values along the reduction axis), float16 rounding, and magnitude pruning.
Activations: the per-tensor scale and zero point the converter would choose from a
calibrated range (asymmetric int8, symmetric int16).
"""

from __future__ import annotations

import numpy as np

from analyzer.simulation.choices import LayerChoice

# Symmetric integer ranges, scale = max|w| / qmax: int8 [-127, 127] as in the converter
# (quantize.cc narrow range); int4 [-7, 7] and int2 [-1, 1] as ai-edge-quantizer's symmetric
# weights (qmax = 2^(bits-1) - 1); int16 [-32767, 32767].
_QMAX = {"int16": 32767, "int8": 127, "int4": 7, "int2": 1}


def prune(w: np.ndarray, fraction: float) -> np.ndarray:
    """Zero the ``fraction`` of weights with the smallest magnitude (ties: a stable order)."""
    if fraction <= 0:
        return w
    flat = w.reshape(-1)
    k = int(round(fraction * flat.size))
    if k == 0:
        return w
    order = np.argsort(np.abs(flat), kind="stable")
    out = flat.copy()
    out[order[:k]] = 0
    return out.reshape(w.shape)


def _symmetric(rows: np.ndarray, qmax: int) -> np.ndarray:
    """Quantize-dequantize each row of a 2-D array with its own scale max|row| / qmax."""
    amax = np.abs(rows).max(axis=1, keepdims=True)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    return (np.clip(np.rint(rows / scale), -qmax, qmax) * scale).astype(np.float32)


def quantize_weights(w: np.ndarray, choice: LayerChoice, axis: int) -> np.ndarray:
    """``w`` as the layer computes with it under ``choice``: pruned, then rounded to the
    weight precision; float32 out, same shape. ``axis`` is the output-channel axis."""
    w = prune(np.asarray(w, np.float32), choice.sparsity)
    if choice.weights == "float32":
        return w
    if choice.weights == "float16":
        return w.astype(np.float16).astype(np.float32)
    axis = axis % w.ndim if w.ndim else 0
    moved = np.moveaxis(w, axis, 0) if w.ndim else w.reshape(1)
    rows = moved.reshape(moved.shape[0], -1)
    if choice.block:
        rows = _blockwise(rows, choice.block, _QMAX[choice.weights])
    else:
        rows = _symmetric(rows, _QMAX[choice.weights])
    return np.moveaxis(rows.reshape(moved.shape), 0, axis) if w.ndim else rows.reshape(w.shape)


def _blockwise(rows: np.ndarray, block: int, qmax: int) -> np.ndarray:
    channels, n = rows.shape
    pad = (-n) % block
    padded = np.pad(rows, ((0, 0), (0, pad))) if pad else rows
    blocks = padded.reshape(-1, block)
    out = _symmetric(blocks, qmax).reshape(channels, n + pad)
    return out[:, :n]


def activation_params(lo: float, hi: float, dtype: str) -> tuple[float, int]:
    """(scale, zero_point) for a tensor with calibrated range [lo, hi]: asymmetric int8 with
    the range widened to hold 0 (as the converter does), symmetric int16 with zero point 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if dtype == "int16":
        amax = max(abs(lo), abs(hi))
        return (amax / 32767 if amax > 0 else 1.0), 0
    if hi - lo <= 0:
        return 1.0, 0
    scale = (hi - lo) / 255.0
    zero_point = int(np.clip(np.rint(-128 - lo / scale), -128, 127))
    return scale, zero_point


def quantize_activation(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Reference quantize-dequantize of an activation (what QUANTIZE then DEQUANTIZE compute)."""
    lo, hi = (-32768, 32767) if dtype == "int16" else (-128, 127)
    q = np.clip(np.rint(x / scale) + zero_point, lo, hi)
    return ((q - zero_point) * scale).astype(np.float32)
