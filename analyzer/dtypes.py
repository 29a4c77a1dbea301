"""Tensor element types: the names used everywhere in the IR and their sizes."""

from __future__ import annotations

import numpy as np

# name -> bits per element. Names are the lowercase TFLite TensorType names.
BITS: dict[str, int] = {
    "float32": 32, "float16": 16, "bfloat16": 16, "float64": 64,
    "int64": 64, "int32": 32, "int16": 16, "int8": 8, "int4": 4, "int2": 2,
    "uint64": 64, "uint32": 32, "uint16": 16, "uint8": 8, "uint4": 4,
    "bool": 8, "complex64": 64, "complex128": 128,
    "float8_e4m3fn": 8, "float8_e5m2": 8,
    "string": 0, "resource": 0, "variant": 0,
}

FLOATS = frozenset({"float32", "float16", "bfloat16", "float64"})
# Element types weights are stored in (params); int32/int64 constants are usually shapes/indices.
WEIGHT_TYPES = FLOATS | {"int8", "int4", "int2", "uint8", "int16", "uint4", "float8_e4m3fn", "float8_e5m2"}

_NUMPY = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
    "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16, "uint8": np.uint8,
    "bool": np.bool_, "complex64": np.complex64, "complex128": np.complex128,
}


def nbytes(dtype: str, elements: int) -> int:
    """Bytes that `elements` values of `dtype` occupy when densely packed."""
    return (BITS.get(dtype, 0) * elements + 7) // 8


def numpy_dtype(dtype: str) -> np.dtype | None:
    """The numpy dtype for a tensor type, or None where numpy has none (int4, string...)."""
    t = _NUMPY.get(dtype)
    return np.dtype(t) if t is not None else None
