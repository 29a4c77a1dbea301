"""The float model every evaluation and writer works on, made from the file a user gives.

Published ``.tflite`` files differ from what today's converter writes in ways that do not
change what the LiteRT interpreter computes, but that break tools reading the flatbuffer
naively (ai-edge-quantizer among them). :func:`normalize` makes one canonical copy, once,
at the reader edge, so sensitivity, search, the writers and the measurer all see the same
model:

- **Op codes as LiteRT resolves them.** Older converters store the op in the int8
  ``deprecated_builtin_code`` and leave ``builtin_code`` 0 (ADD); LiteRT takes the larger of
  the two. Both fields are set.
- **Weights decoded once.** A constant read through DEQUANTIZE from float16 (the usual
  published "float16" model) or through DENSIFY (sparse weights) becomes the float32
  constant the kernel sees; the decoding op is dropped. float16 to float32 is exact, and
  DENSIFY output is taken from the interpreter itself, so the model computes the same.
- **A signature.** A model without SignatureDefs gets ``serving_default`` over the main
  subgraph's inputs and outputs (named after their tensors), which the writers need.
- **Unique tensor names.** ai-edge-quantizer keys tensors by name; control-flow bodies often
  repeat names (``arg0``), so repeats get a suffix.
- **Names in UTF-8.** Names that are not UTF-8 are escaped (``\\xaf``); the interpreter's
  Python API cannot return them.
- **Weights inside the flatbuffer.** Buffers stored after it (offset/size) are brought in.

Unused tensors and buffers are dropped so the normalised model's size is that of the float
model. Layer indices of the normalised graph follow its own op list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from analyzer.errors import ModelFormatError, UnsupportedModelError
from analyzer.graph import LayerGraph

PLACEHOLDER_FOR_GREATER_OP_CODES = 127  # schema.fbs: codes above it live in builtin_code only
SIGNATURE_KEY = "serving_default"
_DECODERS = (fb.BuiltinOperator.DEQUANTIZE, fb.BuiltinOperator.DENSIFY)


@dataclass(frozen=True)
class Normalized:
    """The normalised float model: ``graph`` read from ``model``; ``changes`` says in words
    what differs from the file given (empty: the file is used as it is); ``given_bytes`` is
    the size of the file given, which compressed sizes are compared against."""

    graph: LayerGraph
    model: bytes
    changes: tuple[str, ...]
    given_bytes: int
    origin: tuple[int, ...] = ()  # main-subgraph op index in the file given, per op of ``graph``

    def original_index(self, index: int) -> int:
        """The index in the file given of the normalised model's main-subgraph op ``index``."""
        return self.origin[index] if self.origin else index

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def normalize(graph: LayerGraph) -> Normalized:
    """The canonical float copy of ``graph`` (read from a .tflite file held in memory).

    Raises UnsupportedModelError if sparse weights must be decoded and the interpreter
    cannot run the model to decode them."""
    from analyzer.readers.tflite import read_bytes
    from analyzer.simulation.rewrite import inline_buffers, pack, unpack

    data = graph.model_bytes()
    model = unpack(data)
    changes = []
    if inline_buffers(model, data):
        changes.append("weights stored after the flatbuffer moved inside it")
    if _fix_opcodes(model):
        changes.append("op codes stored in deprecated_builtin_code (an older converter) written to builtin_code")
    origin: list[int] = []
    folded = _fold_decoders(model, graph, origin)
    if folded:
        changes.append(folded)
    escaped = _utf8_names(model)
    if escaped:
        changes.append(f"{escaped} names with bytes that are not UTF-8 or control characters escaped (the "
                       "interpreter cannot return them; a NUL cuts them short)")
    renamed = _unique_tensor_names(model)
    if renamed:
        changes.append(f"{renamed} tensors renamed so every tensor name is unique (ai-edge-quantizer needs it)")
    if not model.signatureDefs:
        _add_signature(model)
        changes.append(f"no signature: '{SIGNATURE_KEY}' added over the main subgraph's inputs and outputs")
    if not changes:
        return Normalized(graph, data, (), len(data))
    _compact(model)
    out = pack(model)
    return Normalized(read_bytes(out, graph.info.path), out, tuple(changes), len(data), tuple(origin))


def _fix_opcodes(model: fb.ModelT) -> bool:
    changed = False
    for oc in model.operatorCodes or ():
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        dep = min(code, PLACEHOLDER_FOR_GREATER_OP_CODES)
        if (oc.builtinCode, oc.deprecatedBuiltinCode) != (code, dep):
            oc.builtinCode, oc.deprecatedBuiltinCode = code, dep
            changed = True
    return changed


def _op_code(model: fb.ModelT, op: fb.OperatorT) -> int:
    oc = model.operatorCodes[op.opcodeIndex]
    return max(oc.builtinCode, oc.deprecatedBuiltinCode)


def _fold_decoders(model: fb.ModelT, graph: LayerGraph, origin: list[int]) -> str:
    """Replace DEQUANTIZE(float16 constant) and DENSIFY(constant) by float32 / dense constants.
    Returns a description of what was folded, or ''; ``origin`` receives, per op kept in the
    main subgraph, its index in the file."""
    folded = {"float16": 0, "sparse": 0}
    dense_values = None
    for s, sg in enumerate(model.subgraphs):
        keep = []
        for i, op in enumerate(sg.operators):
            code = _op_code(model, op)
            if s == 0:
                origin.append(i)  # popped again below if the op is folded
            if code not in _DECODERS or len(op.inputs) != 1 or len(op.outputs) != 1:
                keep.append(op)
                continue
            src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
            if not _is_constant(model, src) and src.sparsity is None:
                keep.append(op)
                continue
            if code == fb.BuiltinOperator.DEQUANTIZE:
                if src.type != fb.TensorType.FLOAT16 or dst.type != fb.TensorType.FLOAT32 or src.sparsity is not None:
                    keep.append(op)  # int8 weight-only weights stay as they are (a quantized model)
                    continue
                values = _constant(model, src, np.float16, graph.info.path).astype(np.float32)
                folded["float16"] += 1
            else:
                if dense_values is None:
                    dense_values = _densified(graph)
                values = dense_values[(s, op.outputs[0])]
                folded["sparse"] += 1
            _set_constant(model, dst, values)
            if s == 0:
                origin.pop()
        sg.operators = keep
    parts = []
    if folded["float16"]:
        parts.append(f"{folded['float16']} float16 weight tensors (read through DEQUANTIZE) expanded to float32, "
                     "exactly")
    if folded["sparse"]:
        parts.append(f"{folded['sparse']} sparse weight tensors (read through DENSIFY) stored dense")
    return "; ".join(parts)


def _is_constant(model: fb.ModelT, t: fb.TensorT) -> bool:
    if not t.buffer:
        return False
    data = model.buffers[t.buffer].data
    return data is not None and len(data) > 0


def _constant(model: fb.ModelT, t: fb.TensorT, dtype, path: str) -> np.ndarray:
    raw = np.asarray(model.buffers[t.buffer].data, dtype=np.uint8)
    shape = [int(d) for d in t.shape] if t.shape is not None else []
    need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if raw.size != need or any(d < 0 for d in shape):
        from analyzer.readers.tflite import escaped_name

        raise ModelFormatError(f"{path}: constant tensor {escaped_name(t.name)!r} has {raw.size} bytes of data for "
                               f"shape {shape} of {np.dtype(dtype).name} ({need} bytes)")
    return raw.view(dtype).reshape(shape)


_TENSOR_TYPES = {np.dtype(np.float32): fb.TensorType.FLOAT32, np.dtype(np.float16): fb.TensorType.FLOAT16,
                 np.dtype(np.int8): fb.TensorType.INT8}


def _set_constant(model: fb.ModelT, t: fb.TensorT, values: np.ndarray) -> None:
    """Make ``t`` a constant holding ``values`` (its dtype kept: a densified float16 tensor
    stays float16 for the DEQUANTIZE that reads it)."""
    values = np.ascontiguousarray(values)
    if values.dtype not in _TENSOR_TYPES:
        raise UnsupportedModelError(f"decoded weights of type {values.dtype} are not supported")
    buf = fb.BufferT()
    buf.data = values.view(np.uint8).reshape(-1)
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1
    t.type = _TENSOR_TYPES[values.dtype]


def _densified(graph: LayerGraph) -> dict[tuple[int, int], np.ndarray]:
    """The output of every DENSIFY op of a constant, as the interpreter computes it (one run
    on zero inputs, every tensor kept), in a worker process (``analyzer.simulation.cage``)."""
    from analyzer.errors import InterpreterError
    from analyzer.simulation.cage import caged

    wanted = [(la.subgraph, la.outputs[0]) for la in graph.layers() if la.op == "DENSIFY"]
    if any(s != 0 for s, _ in wanted):
        raise UnsupportedModelError(f"{graph.info.path}: sparse weights outside the main subgraph cannot be decoded")
    try:
        values = caged(graph.info.path, "decoding sparse weights (DENSIFY)", _densify_run, graph.model_bytes(),
                       [t for _, t in wanted])
    except InterpreterError as exc:
        raise UnsupportedModelError(f"{graph.info.path}: sparse weights (DENSIFY) are decoded by running the model, "
                                    f"which failed: {str(exc).partition(': ')[2] or exc}") from None
    return {(0, t): v for t, v in values.items()}


def _densify_run(model: bytes, tensors: list[int]) -> dict[int, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from analyzer.simulation.runner import quiet_native_stderr

    with quiet_native_stderr():
        it = Interpreter(model_content=model, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                         experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
    return {t: np.array(it.get_tensor(t)) for t in tensors}


def _escaped(name) -> tuple[bytes | None, bool]:
    """``name`` as the reader shows it (bytes that are not UTF-8 and control characters
    escaped as ``\\xNN``: a NUL ends the name for C++ readers, so LiteRT and
    ai-edge-quantizer disagree on it), and whether that differs."""
    from analyzer.readers.tflite import escaped_name

    if not isinstance(name, bytes):
        return name, False
    out = escaped_name(name).encode("utf-8")
    return out, out != name


def _utf8_names(model: fb.ModelT) -> int:
    """Escape every tensor, subgraph and signature name that is not UTF-8 (``\\xaf``): the
    interpreter's Python API decodes names and fails on them. Returns how many changed."""
    count = 0
    holders = [t for sg in model.subgraphs or [] for t in sg.tensors or []] + list(model.subgraphs or [])
    for sig in model.signatureDefs or []:
        holders += [sig] + list(sig.inputs or []) + list(sig.outputs or [])
    for h in holders:
        for attr in ("name", "signatureKey"):
            if hasattr(h, attr):
                new, changed = _escaped(getattr(h, attr))
                if changed:
                    setattr(h, attr, new)
                    count += 1
    return count


def _unique_tensor_names(model: fb.ModelT) -> int:
    """Give every tensor a name no other tensor of the model has (the main subgraph first, so
    its names stay as they are unless repeated within it); returns how many were renamed."""
    seen: set[bytes] = set()
    renamed = 0
    for s, sg in enumerate(model.subgraphs):
        for i, t in enumerate(sg.tensors):
            name = t.name if isinstance(t.name, bytes) else (t.name or "").encode()
            if name in seen:
                k = 1
                while name + f"_sg{s}_{k}".encode() in seen:
                    k += 1
                name = name + f"_sg{s}_{k}".encode()
                t.name = name
                renamed += 1
            seen.add(name)
    return renamed


def _unique_names(tensors: list[fb.TensorT], indices: Iterable[int], prefix: str) -> list[tuple[str, int]]:
    out, seen = [], set()
    for k, t in enumerate(indices):
        raw = tensors[t].name
        name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
        if not name or name in seen:
            name = f"{prefix}_{k}"
        seen.add(name)
        out.append((name, t))
    return out


def _add_signature(model: fb.ModelT) -> None:
    sg = model.subgraphs[0]
    sig = fb.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = SIGNATURE_KEY, 0
    sig.inputs, sig.outputs = [], []
    for attr, indices, prefix in (("inputs", sg.inputs, "input"), ("outputs", sg.outputs, "output")):
        for name, t in _unique_names(sg.tensors, indices if indices is not None else [], prefix):
            tm = fb.TensorMapT()
            tm.name, tm.tensorIndex = name, int(t)
            getattr(sig, attr).append(tm)
    model.signatureDefs = [sig]


def _compact(model: fb.ModelT) -> None:
    """Drop tensors no op, subgraph or signature refers to, then buffers no tensor uses."""
    for s, sg in enumerate(model.subgraphs):
        used = set(int(t) for t in (sg.inputs if sg.inputs is not None else []))
        used |= set(int(t) for t in (sg.outputs if sg.outputs is not None else []))
        for op in sg.operators:
            for seq in (op.inputs, op.outputs, op.intermediates):
                used |= {int(t) for t in (seq if seq is not None else []) if t >= 0}
        for sig in model.signatureDefs or ():
            if sig.subgraphIndex == s:
                used |= {tm.tensorIndex for tm in (sig.inputs or []) + (sig.outputs or [])}
        details = [t.quantization.details for t in sg.tensors if _blockwise(t)]
        for d in details:  # blockwise scales (and zero points) live in tensors named only here
            used |= {int(i) for i in (d.scales, d.zeroPoints) if i is not None and i >= 0}
        remap = {old: new for new, old in enumerate(sorted(used))}
        if len(remap) == len(sg.tensors):
            continue
        sg.tensors = [sg.tensors[old] for old in sorted(used)]

        def re(seq):
            return [remap[int(t)] if t >= 0 else -1 for t in seq] if seq is not None else seq
        sg.inputs, sg.outputs = re(sg.inputs), re(sg.outputs)
        for op in sg.operators:
            op.inputs, op.outputs, op.intermediates = re(op.inputs), re(op.outputs), re(op.intermediates)
        for sig in model.signatureDefs or ():
            if sig.subgraphIndex == s:
                for tm in (sig.inputs or []) + (sig.outputs or []):
                    tm.tensorIndex = remap[tm.tensorIndex]
        for d in details:
            d.scales = remap[int(d.scales)]
            if d.zeroPoints is not None and d.zeroPoints >= 0:
                d.zeroPoints = remap[int(d.zeroPoints)]
    _drop_unused_buffers(model)


def _blockwise(t: fb.TensorT) -> bool:
    q = t.quantization
    return q is not None and q.detailsType == fb.QuantizationDetails.BlockwiseQuantization and q.details is not None


def _drop_unused_buffers(model: fb.ModelT) -> None:
    used = {0} | {t.buffer for sg in model.subgraphs for t in sg.tensors}
    used |= {m.buffer for m in model.metadata or ()}
    used |= {int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else [])}
    remap = {old: new for new, old in enumerate(sorted(used))}
    if len(remap) == len(model.buffers):
        return
    model.buffers = [model.buffers[old] for old in sorted(used)]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = remap[t.buffer]
    for m in model.metadata or ():
        m.buffer = remap[m.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [remap[int(b)] for b in model.metadataBuffer]
