"""Store pruned constant tensors in TFLite's sparse format, read back by a DENSIFY op.

The layout is the one the TFLite converter writes for sparse weights: every dimension but
the last DENSE, the last SPARSE_CSR (``array_segments``: where each row's non-zeros start;
``array_indices``: their column), the buffer holding the non-zero values only. A DENSIFY
op (run once, its input constant) restores the dense tensor the layer's kernel reads, so
any kernel runs the model. Index vectors use the narrowest unsigned type that holds them.
The same arithmetic gives ``search.size``'s estimate (:func:`sparse_bytes`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from analyzer.simulation.rewrite import inline_buffers, pack, unpack

def storable(choice) -> bool:
    """Whether a pruned layer under ``choice`` keeps its weights sparse in the written model:
    float32 weights, or int8 per channel read through DEQUANTIZE (float kernels). Integer
    kernels would read the DENSIFY output as a non-constant filter, which XNNPACK refuses."""
    return choice.weights in ("float32", "int8") and not choice.block and choice.activations == "float"


SPARSE_DTYPES = {fb.TensorType.FLOAT32: np.float32, fb.TensorType.INT8: np.int8}
# The SparsityParameters and DimensionMetadata tables, the DENSIFY op and its output tensor
# (named after the weights + "_densified"): measured on written models, within ~20 bytes.
SPARSITY_OVERHEAD = 400


def _index_type(limit: int):
    if limit < 2**8:
        return np.uint8, fb.SparseIndexVector.Uint8Vector, fb.Uint8VectorT
    if limit < 2**16:
        return np.uint16, fb.SparseIndexVector.Uint16Vector, fb.Uint16VectorT
    return np.int32, fb.SparseIndexVector.Int32Vector, fb.Int32VectorT


def sparse_bytes(shape: tuple[int, ...], nnz: int, value_bytes: int, channels_quantized: int = 0) -> int:
    """Bytes of a tensor of ``shape`` with ``nnz`` non-zeros stored sparse (values, indices,
    segments, tables); a quantized tensor's DENSIFY output repeats its ``channels_quantized``
    scales and zero points (12 bytes each)."""
    cols = shape[-1] if shape else 1
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return (nnz * value_bytes + nnz * np.dtype(_index_type(cols)[0]).itemsize
            + (rows + 1) * np.dtype(_index_type(nnz + 1)[0]).itemsize + SPARSITY_OVERHEAD
            + 12 * channels_quantized)


def _vector(values: np.ndarray, limit: int):
    dtype, kind, cls = _index_type(limit)
    v = cls()
    v.values = values.astype(dtype).tolist()
    return kind, v


def _densify_opcode(model: fb.ModelT) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == fb.BuiltinOperator.DENSIFY:
            return i
    code = fb.OperatorCodeT()
    code.builtinCode = fb.BuiltinOperator.DENSIFY
    code.deprecatedBuiltinCode = min(fb.BuiltinOperator.DENSIFY, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def sparsify(model_bytes: bytes, names: Iterable[str]) -> tuple[bytes, list[str]]:
    """``model_bytes`` with each named constant float32 / int8 tensor of the main subgraph
    stored sparse where that is smaller; returns the model and the names it converted."""
    model = unpack(model_bytes)
    inline_buffers(model, model_bytes)  # ai-edge-quantizer appends buffers after the flatbuffer
    sg = model.subgraphs[0]
    wanted = set(names)
    done = []
    for t_index, tensor in enumerate(list(sg.tensors)):
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        if name not in wanted or tensor.type not in SPARSE_DTYPES or not tensor.buffer:
            continue
        buf = model.buffers[tensor.buffer]
        if buf.data is None or len(buf.data) == 0:
            continue
        shape = tuple(int(d) for d in tensor.shape)
        dense = np.frombuffer(bytes(bytearray(buf.data)), SPARSE_DTYPES[tensor.type]).reshape(shape)
        cols = shape[-1]
        rows = dense.reshape(-1, cols)
        mask = rows != 0
        nnz = int(mask.sum())
        itemsize = dense.dtype.itemsize
        if sparse_bytes(shape, nnz, itemsize) >= dense.nbytes:
            continue
        if sum(1 for t in sg.tensors if t.buffer == tensor.buffer) > 1:
            continue  # a buffer shared with another tensor stays dense
        segments = np.concatenate([[0], np.cumsum(mask.sum(1))])
        indices = np.nonzero(mask)[1]
        sparsity = fb.SparsityParametersT()
        sparsity.traversalOrder = list(range(len(shape)))
        sparsity.dimMetadata = []
        for d in shape[:-1]:
            m = fb.DimensionMetadataT()
            m.format = fb.DimensionType.DENSE
            m.denseSize = d
            sparsity.dimMetadata.append(m)
        m = fb.DimensionMetadataT()
        m.format = fb.DimensionType.SPARSE_CSR
        m.arraySegmentsType, m.arraySegments = _vector(segments, nnz + 1)
        m.arrayIndicesType, m.arrayIndices = _vector(indices, cols)
        sparsity.dimMetadata.append(m)
        tensor.sparsity = sparsity
        buf.data = np.frombuffer(rows[mask].tobytes(), np.uint8).tolist()

        out = fb.TensorT()
        out.name = (name + "_densified").encode()
        out.shape, out.type, out.buffer = list(shape), tensor.type, 0
        out.quantization = tensor.quantization
        sg.tensors.append(out)
        out_index = len(sg.tensors) - 1
        for op in sg.operators:
            op.inputs = [out_index if i == t_index else i for i in op.inputs]
        op = fb.OperatorT()
        op.opcodeIndex = _densify_opcode(model)
        op.inputs, op.outputs = [t_index], [out_index]
        sg.operators.insert(0, op)
        done.append(name)
    return (pack(model) if done else model_bytes), done  # unchanged: its external buffers stay as they were
