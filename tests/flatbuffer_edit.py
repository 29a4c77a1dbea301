"""Edit and synthesise .tflite flatbuffers with the schema's object API (tests, benchmarks).

- ``externalize_buffers``: move constant data after the flatbuffer (offset/size), the
  layout the converter uses for models over 2 GB.
- ``synthetic_fc_model``: a FULLY_CONNECTED chain with a chosen total weight size,
  written in streaming fashion so a 1 GB model costs little memory to create.
- ``corrupt``: a model whose op, tensor, buffer or subgraph indices point out of range.
"""

from __future__ import annotations

import os

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from analyzer.simulation.rewrite import pack, unpack

ALIGN = 16


def _pad(n: int) -> int:
    return (-n) % ALIGN


def _layout(model: fb.ModelT, blobs: list[bytes | None]) -> bytes:
    """Pack with buffer offsets pointing after the flatbuffer; returns flatbuffer + data."""
    for buf, blob in zip(model.buffers, blobs):
        if blob is not None:
            buf.data, buf.offset, buf.size = None, 1 << 40, len(blob)  # placeholders, same width
    head = pack(model)
    pos = len(head) + _pad(len(head))
    for buf, blob in zip(model.buffers, blobs):
        if blob is not None:
            buf.offset = pos
            pos += len(blob) + _pad(len(blob))
    head = pack(model)
    out = bytearray(head + b"\0" * _pad(len(head)))
    for blob in blobs:
        if blob is not None:
            out += blob + b"\0" * _pad(len(blob))
    return bytes(out)


def externalize_buffers(data: bytes) -> bytes:
    """The same model with every non-empty buffer stored after the flatbuffer."""
    model = unpack(data)
    blobs = []
    for buf in model.buffers:
        raw = None if buf.data is None or len(buf.data) == 0 else np.asarray(buf.data, np.uint8).tobytes()
        blobs.append(raw)
    return _layout(model, blobs)


def _tensor(name: str, shape: list[int], buffer: int = 0) -> fb.TensorT:
    t = fb.TensorT()
    t.name, t.shape, t.type, t.buffer = name, shape, fb.TensorType.FLOAT32, buffer
    return t


def synthetic_fc_model(path: str, weight_bytes: int, width: int = 4096, external: bool = False,
                       seed: int = 0) -> int:
    """Write a float32 FULLY_CONNECTED chain holding about ``weight_bytes`` of weights.

    Weights are written chunk by chunk (external layout) or built inline; returns the
    number of layers. Inline models over 2 GB are not possible (flatbuffer limit).
    """
    layer_bytes = width * width * 4
    n_layers = max(1, weight_bytes // layer_bytes)
    model = fb.ModelT()
    model.version = 3
    model.description = "synthetic FC chain"
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    sg = fb.SubGraphT()
    sg.tensors, sg.operators = [_tensor("input", [1, width])], []
    model.buffers = [fb.BufferT()]
    for i in range(n_layers):
        model.buffers.append(fb.BufferT())
        w = _tensor(f"model/dense_{i}/MatMul", [width, width], len(model.buffers) - 1)
        sg.tensors += [w, _tensor(f"model/dense_{i}/MatMul;model/dense_{i}/Relu", [1, width])]
        op = fb.OperatorT()
        op.opcodeIndex = 0
        op.inputs = [len(sg.tensors) - 3 if i else 0, len(sg.tensors) - 2, -1]
        op.outputs = [len(sg.tensors) - 1]
        op.builtinOptionsType = fb.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = fb.FullyConnectedOptionsT()
        op.builtinOptions.fusedActivationFunction = fb.ActivationFunctionType.RELU
        sg.operators.append(op)
    sg.inputs, sg.outputs = [0], [len(sg.tensors) - 1]
    model.subgraphs = [sg]
    rng = np.random.default_rng(seed)
    chunk = rng.normal(0, 0.01, width * width).astype(np.float32)
    if external:
        for buf in model.buffers[1:]:
            buf.offset, buf.size = 1 << 40, layer_bytes
        head = pack(model)
        pos = len(head) + _pad(len(head))
        for buf in model.buffers[1:]:
            buf.offset = pos
            pos += layer_bytes + _pad(layer_bytes)
        head = pack(model)
        with open(path + ".tmp", "wb") as f:
            f.write(head + b"\0" * _pad(len(head)))
            for _ in model.buffers[1:]:
                f.write(chunk.tobytes())
    else:
        for buf in model.buffers[1:]:
            buf.data = chunk.view(np.uint8)
        with open(path + ".tmp", "wb") as f:
            f.write(pack(model))
    os.replace(path + ".tmp", path)
    return n_layers


def oddity(data: bytes, what: str) -> bytes:
    """A copy of a valid-looking model with something unusual a reader must survive."""
    model = unpack(data)
    sg = model.subgraphs[0]
    if what == "nan_scale":
        for t in sg.tensors:
            if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale):
                t.quantization.scale[0] = float("nan")
                break
        else:
            raise ValueError("oddity(nan_scale) needs a quantized model")
    elif what == "control_chars":
        sg.tensors[sg.operators[0].outputs[0]].name = "bad\x01name\x1f"
    elif what == "garbage_custom_options":
        op = next(o for o in sg.operators if model.operatorCodes[o.opcodeIndex].customCode)
        op.customOptions = list(b"\xff\x00\x13\x37" * 3)
    elif what == "missing_weights":  # a FULLY_CONNECTED cut to its data input
        op = next(o for o in sg.operators
                  if max(model.operatorCodes[o.opcodeIndex].builtinCode,
                         model.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode)
                  == fb.BuiltinOperator.FULLY_CONNECTED)
        op.inputs = op.inputs[:1]
    else:
        raise ValueError(what)
    return pack(model)


def corrupt(data: bytes, what: str) -> bytes:
    """A copy of the model with one index out of range: tensor, buffer, opcode or subgraph."""
    model = unpack(data)
    sg = model.subgraphs[0]
    if what == "tensor":
        sg.operators[0].inputs[0] = len(sg.tensors) + 7
    elif what == "buffer":
        sg.tensors[0].buffer = len(model.buffers) + 7
    elif what == "opcode":
        sg.operators[0].opcodeIndex = len(model.operatorCodes) + 7
    elif what == "subgraph":
        for op in (o for s in model.subgraphs for o in s.operators):
            if op.builtinOptionsType == fb.BuiltinOptions.WhileOptions:
                op.builtinOptions.bodySubgraphIndex = len(model.subgraphs) + 7
                break
        else:
            raise ValueError("corrupt(subgraph) needs a model with a WHILE op")
    elif what == "signature":
        model.signatureDefs[0].subgraphIndex = len(model.subgraphs) + 7
    elif what == "cycle":  # op 0 reads the last op's output
        sg.operators[0].inputs[0] = sg.operators[-1].outputs[0]
    elif what == "negative_dim":
        sg.tensors[sg.operators[0].outputs[0]].shape[0] = -5
    elif what == "buffer_offset":  # external weights cut short
        ext = externalize_buffers(data)
        return ext[: len(ext) - 1024]
    else:
        raise ValueError(what)
    return pack(model)


def published(data: bytes, what: str) -> bytes:
    """A copy of a model in a form published files take, which today's converter no longer
    writes: ``old_converter`` (op codes only in the int8 ``deprecated_builtin_code``, no
    signature), ``no_signature``."""
    model = unpack(data)
    if what == "old_converter":
        for oc in model.operatorCodes:
            code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
            if code >= 127:
                raise ValueError("an older converter could not store op code {code}")
            oc.builtinCode, oc.deprecatedBuiltinCode = 0, code
        model.signatureDefs = []
    elif what == "no_signature":
        model.signatureDefs = []
    else:
        raise ValueError(what)
    return pack(model)


def _model(*ops: int | str) -> fb.ModelT:
    """An empty model (schema version 3) with one op code per builtin code or custom name."""
    model = fb.ModelT()
    model.version = 3
    model.operatorCodes = []
    for op in ops:
        oc = fb.OperatorCodeT()
        code = fb.BuiltinOperator.CUSTOM if isinstance(op, str) else op
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, code, 1
        oc.customCode = op if isinstance(op, str) else None
        model.operatorCodes.append(oc)
    return model


def scalar_reshape_model() -> bytes:
    """x [1, 4] -> FULLY_CONNECTED (4 -> 1) -> RESHAPE to a scalar, the shape input a
    zero-element constant with an empty buffer (as published audio models have it)."""
    model = _model(fb.BuiltinOperator.FULLY_CONNECTED, fb.BuiltinOperator.RESHAPE)
    weights = fb.BufferT()
    weights.data = np.arange(1, 5, dtype=np.float32).view(np.uint8)
    model.buffers = [fb.BufferT(), weights, fb.BufferT()]
    sg = fb.SubGraphT()
    sg.tensors = [_tensor("x", [1, 4]), _tensor("dense/weights", [1, 4], buffer=1), _tensor("dense", [1, 1]),
                  _tensor("empty_shape", [0], buffer=2), _tensor("score", [])]
    sg.tensors[3].type = fb.TensorType.INT32
    fc, reshape = fb.OperatorT(), fb.OperatorT()
    fc.opcodeIndex, fc.inputs, fc.outputs = 0, [0, 1, -1], [2]
    fc.builtinOptionsType, fc.builtinOptions = fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT()
    reshape.opcodeIndex, reshape.inputs, reshape.outputs = 1, [2, 3], [4]
    sg.operators, sg.inputs, sg.outputs = [fc, reshape], [0], [4]
    model.subgraphs = [sg]
    return pack(model)


def fc_chain(sizes: list[int], seed: int = 0, signature: bool = True, rows: int = 1) -> bytes:
    """A float32 FULLY_CONNECTED chain (tanh between layers) with random weights, e.g.
    ``[30, 16, 2]`` for a tabular classifier on 30 features (no converter needed). ``rows``
    > 1 makes the input ``[rows, features]`` with no batch axis (a frame of a sequence)."""
    rng = np.random.default_rng(seed)
    model = _model(fb.BuiltinOperator.FULLY_CONNECTED, fb.BuiltinOperator.TANH)
    model.buffers = [fb.BufferT()]
    sg = fb.SubGraphT()
    sg.tensors, sg.operators = [_tensor("x", [rows, sizes[0]])], []
    current = 0
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        for name, shape, scale in ((f"dense_{k}/kernel", [n_out, n_in], 1 / np.sqrt(n_in)),
                                   (f"dense_{k}/bias", [n_out], 0.1)):
            buf = fb.BufferT()
            buf.data = (rng.normal(size=shape) * scale).astype(np.float32).view(np.uint8).reshape(-1)
            model.buffers.append(buf)
            sg.tensors.append(_tensor(name, shape, buffer=len(model.buffers) - 1))
        sg.tensors.append(_tensor(f"dense_{k}", [rows, n_out]))
        fc = fb.OperatorT()
        fc.opcodeIndex, fc.inputs, fc.outputs = 0, [current, len(sg.tensors) - 3, len(sg.tensors) - 2], \
            [len(sg.tensors) - 1]
        fc.builtinOptionsType, fc.builtinOptions = fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT()
        sg.operators.append(fc)
        current = len(sg.tensors) - 1
        if k < len(sizes) - 2:
            sg.tensors.append(_tensor(f"tanh_{k}", [rows, n_out]))
            act = fb.OperatorT()
            act.opcodeIndex, act.inputs, act.outputs = 1, [current], [len(sg.tensors) - 1]
            sg.operators.append(act)
            current = len(sg.tensors) - 1
    sg.inputs, sg.outputs = [0], [current]
    model.subgraphs = [sg]
    if signature:
        sig = fb.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "serving_default", 0
        sig.inputs, sig.outputs = [fb.TensorMapT()], [fb.TensorMapT()]
        sig.inputs[0].name, sig.inputs[0].tensorIndex = "x", 0
        sig.outputs[0].name, sig.outputs[0].tensorIndex = "output_0", current
        model.signatureDefs = [sig]
    return pack(model)


def sdpa_model(seed: int = 0) -> bytes:
    """x [1, 4, 128] -> FULLY_CONNECTED (128 -> 16) -> RESHAPE [1, 4, 2, 8] -> the custom op
    ``odml.scaled_dot_product_attention`` (LiteRT's GenAI op, not in the stock resolver)
    against constant keys, values and mask -> [1, 4, 2, 8]."""
    from flatbuffers import flexbuffers

    rng = np.random.default_rng(seed)
    model = _model(fb.BuiltinOperator.FULLY_CONNECTED, fb.BuiltinOperator.RESHAPE,
                   "odml.scaled_dot_product_attention")

    def const(values: np.ndarray) -> int:
        buf = fb.BufferT()
        buf.data = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
        model.buffers.append(buf)
        return len(model.buffers) - 1

    model.buffers = [fb.BufferT()]
    sg = fb.SubGraphT()
    sg.tensors = [
        _tensor("x", [1, 4, 128]),
        _tensor("q_proj/kernel", [16, 128], const(rng.normal(0, 0.1, (16, 128)).astype(np.float32))),
        _tensor("q_proj/bias", [16], const(rng.normal(0, 0.1, 16).astype(np.float32))),
        _tensor("q_proj", [4, 16]),
        _tensor("q_shape", [4], const(np.array([1, 4, 2, 8], np.int32))),
        _tensor("q", [1, 4, 2, 8]),
        _tensor("keys", [1, 4, 2, 8], const(rng.normal(size=(1, 4, 2, 8)).astype(np.float32))),
        _tensor("values", [1, 4, 2, 8], const(rng.normal(size=(1, 4, 2, 8)).astype(np.float32))),
        _tensor("mask", [1, 1, 4, 4], const(np.zeros((1, 1, 4, 4), np.float32))),
        _tensor("attention", [1, 4, 2, 8]),
    ]
    sg.tensors[4].type = fb.TensorType.INT32
    fc, reshape, sdpa = fb.OperatorT(), fb.OperatorT(), fb.OperatorT()
    fc.opcodeIndex, fc.inputs, fc.outputs = 0, [0, 1, 2], [3]
    fc.builtinOptionsType, fc.builtinOptions = fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT()
    reshape.opcodeIndex, reshape.inputs, reshape.outputs = 1, [3, 4], [5]
    sdpa.opcodeIndex, sdpa.inputs, sdpa.outputs = 2, [5, 6, 7, 8], [9]
    sdpa.customOptions = list(flexbuffers.Dumps({"scale": 0.0}))
    sg.operators, sg.inputs, sg.outputs = [fc, reshape, sdpa], [0], [9]
    model.subgraphs = [sg]
    return pack(model)
